"""DVC stage `download`: the four MNIST files into data/raw, MD5-verified."""

import argparse
from pathlib import Path

from mnistbench import pipeline
from mnistbench.config import load_params
from mnistbench.errors import exit_on_error


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    args = parser.parse_args()
    pipeline.download(load_params(), args.out)


if __name__ == "__main__":
    main()
