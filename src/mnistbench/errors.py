"""The project's expected failures: reported as one line `error: ...`, without a traceback, exit status 1."""

from __future__ import annotations

import functools
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


def exit_on_error(main):
    """Wrap a command's main(): an expected error (or an OSError, which names its file) is one line and exit 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (MnistbenchError, OSError) as err:
            fail(err)

    return wrapper
