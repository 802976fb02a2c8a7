"""DVC stage `split`: decode the IDX files and write the seeded train/valid split and the test set."""

from pathlib import Path

from mnistbench import data
from mnistbench.cli import exit_on_error, stage_parser
from mnistbench.datasets import DataParams, SplitParams
from mnistbench.params_file import load_sections
from mnistbench.files import write_json


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="data/raw")
    parser.add_argument("--out", type=Path, required=True, help="data/processed")
    parser.add_argument("--summary", type=Path, required=True, help="reports/split.json")
    args = parser.parse_args()
    params = load_sections(args.params, data=DataParams, split=SplitParams)
    s = params.split
    summary = {"dataset": params.data.dataset, **data.make_splits(args.raw, args.out, s.train_size, s.valid_size, s.seed)}
    write_json(args.summary, summary)
    counts = ", ".join(f"{k} {v['count']}" for k, v in summary["splits"].items())
    print(f"split (seed {s.seed}): {counts}")


if __name__ == "__main__":
    main()
