"""The one way a stage fails: a message that names the file or key, and a non-zero exit."""

from __future__ import annotations

import functools
import sys


class MnistbenchError(Exception):
    """An expected failure (bad data, bad params, bad checkpoint): reported without a traceback."""


def exit_on_error(main):
    """Wrap a stage's main(): expected errors print one clear message and exit with status 1."""
    from mnistbench.config import ParamsError

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (MnistbenchError, ParamsError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    return wrapper
