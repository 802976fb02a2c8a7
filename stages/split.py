"""DVC stage `split`: decode the IDX files and write the seeded train/valid split and the test set."""

import argparse
from pathlib import Path

from mnistbench import pipeline
from mnistbench.config import load_params
from mnistbench.errors import exit_on_error


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/processed"))
    parser.add_argument("--summary", type=Path, default=Path("reports/split.json"))
    args = parser.parse_args()
    pipeline.split(load_params(), args.raw, args.out, args.summary)


if __name__ == "__main__":
    main()
