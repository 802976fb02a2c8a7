"""DVC stage `split`: decode the IDX files and write the seeded train/valid split and the test set."""

from pathlib import Path

from mnistbench import pipeline
from mnistbench.cli import exit_on_error, params_of, stage_parser


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/processed"))
    parser.add_argument("--summary", type=Path, default=Path("reports/split.json"))
    args = parser.parse_args()
    pipeline.split(params_of(args), args.raw, args.out, args.summary)


if __name__ == "__main__":
    main()
