"""The project's expected failures: reported as one line `error: ...`, without a traceback, exit status 1."""

from __future__ import annotations

import functools
import signal
import sys
from typing import NoReturn


class MnistbenchError(Exception):
    """Bad data, a bad checkpoint, an unreachable store: the message names the file or key."""


class ParamsError(MnistbenchError, ValueError):
    """A bad params.yaml: the message names the key, what was expected and what was found."""


def fail(message: object) -> NoReturn:
    """The one way a command stops on an expected failure."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _report_expected(kind, err, tb, default=sys.excepthook) -> None:
    if issubclass(kind, MnistbenchError):
        print(f"error: {err}", file=sys.stderr)  # Python then exits with status 1
    else:
        default(kind, err, tb)


# An expected error raised before a command's main() runs (a broken model module, found while the command
# imports the registry) is one line too.
sys.excepthook = _report_expected


_signals: list[int] = []  # the stopping signals received, in order


def _raise_terminated(signum, frame) -> NoReturn:
    """SIGTERM unwinds as Ctrl-C does, as a KeyboardInterrupt: the one exception Ray's wait lets through a signal
    (a SystemExit raised there ends the process with status 1; another exception becomes a SystemError, and Ray
    re-raises a KeyboardInterrupt of its own, so which signal it was is kept here)."""
    _signals.append(signal.SIGTERM)
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (a killed `dvc repro`, a CI timeout) unwinds like Ctrl-C: every temporary output is removed on the
    way out (files.atomic_path), where the default handler would exit on the spot. Installed again by whatever
    replaces it (ray.init installs its own, which prints a stack dump)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def exit_on_error(main):
    """Wrap a command's main(): an expected error (or an OSError, which names its file) is one line and exit 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        stop_on_sigterm()
        try:
            return main(*args, **kwargs)
        except (MnistbenchError, OSError) as err:
            fail(err)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: one line, not a traceback through whatever waited
            sig = _signals[0] if _signals else signal.SIGINT
            name = "SIGTERM" if sig == signal.SIGTERM else "SIGINT (Ctrl-C)"
            print(f"error: stopped by {name}; the outputs it was writing are removed", file=sys.stderr)
            sys.exit(128 + sig)

    return wrapper
