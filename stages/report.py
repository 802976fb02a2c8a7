"""DVC stage `report`: reports/comparison.md and the pictures it links."""

import argparse
from pathlib import Path

from mnistbench import pipeline
from mnistbench.config import load_params
from mnistbench.errors import exit_on_error


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    args = parser.parse_args()
    pipeline.report(load_params(), args.reports, args.reports / "split.json")


if __name__ == "__main__":
    main()
