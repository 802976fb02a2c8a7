"""DVC stage `download`: the four MNIST files into data/raw, MD5-verified."""

from pathlib import Path

from mnistbench import pipeline
from mnistbench.cli import exit_on_error, params_of, stage_parser


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    args = parser.parse_args()
    pipeline.download(params_of(args), args.out)


if __name__ == "__main__":
    main()
