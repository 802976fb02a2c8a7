"""DVC stage `report`: reports/comparison.md and the pictures it links."""

from pathlib import Path

from mnistbench.config import ParamsError, read_yaml
from mnistbench.reporting import write_report
from mnistbench.cli import exit_on_error, params_of, stage_parser


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--split-summary", type=Path, default=Path("reports/split.json"))
    parser.add_argument("--writeup-logs", type=Path, default=Path("reference/writeup_logs.csv"))
    parser.add_argument("--time-to-accuracy", type=Path, default=None, help="the time_to_accuracy stage's JSON")
    parser.add_argument("--gates", type=Path, default=Path("gates.yaml"), help="the accuracy goals (its `accuracy`)")
    args = parser.parse_args()
    params = params_of(args)
    goals = read_yaml(args.gates).get("accuracy")
    if not isinstance(goals, dict):
        raise ParamsError(f"{args.gates}: expected an `accuracy` section of model names and test accuracies")
    out = write_report(params.model_names(), params.seeds.train, args.reports, args.split_summary, args.writeup_logs,
                       args.time_to_accuracy, goals, params.data.source())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
