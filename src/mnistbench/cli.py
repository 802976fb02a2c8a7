"""What every stage script shares: its argument parser and its one way of failing."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnistbench.errors import exit_on_error  # noqa: F401  (the stage scripts' one way of failing)


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, nargs="+", default=[Path("params.yaml")],
                        help="params files; a later one changes the keys it names in an earlier one")
    return parser


def seed(text: str) -> int:
    """argparse type of --seed: the range the params schema allows (NumPy takes 0 <= seed < 2**32)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 4294967295, found {text!r}")
    return value
