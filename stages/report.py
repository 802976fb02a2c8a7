"""DVC stage `report`: reports/comparison.md and the pictures it links; in MLflow, each model's trainings
grouped under an aggregate run, and its best one registered."""

from pathlib import Path

from mnistbench.config import load_params
from mnistbench.errors import ParamsError
from mnistbench.params_file import read_yaml
from mnistbench import registry
from mnistbench.reporting import load_runs, write_report
from mnistbench.cli import exit_on_error, stage_parser


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--reports", type=Path, required=True, help="reports")
    parser.add_argument("--split-summary", type=Path, required=True, help="reports/split.json")
    parser.add_argument("--writeup-logs", type=Path, required=True, help="reference/writeup_logs.csv")
    parser.add_argument("--time-to-accuracy", type=Path, default=None, help="the time_to_accuracy stage's JSON")
    parser.add_argument("--gates", type=Path, required=True, help="the tuned variants' goals, its `goals` (gates.yaml)")
    args = parser.parse_args()
    params = load_params(*args.params)
    goals = read_yaml(args.gates, "the CI gates and the tuned variants' goals").get("goals")
    if not isinstance(goals, dict):
        raise ParamsError(f"{args.gates}: expected a `goals` section of model names and test accuracies")
    if not params.data.source().writeup:
        goals = {}  # the goals are MNIST's
    reference = args.gates.parent / read_yaml(args.gates, "the CI gates")["accuracy"]["reference"]
    # MLflow first: a store that fails stops the stage before any file of the report is replaced (DVC keeps the
    # previous ones: they are persistent outputs).
    runs = load_runs(params.runs(), args.reports)
    records = runs[["model", "seed", "mlflow_run_id", "test_accuracy"]].to_dict("records")
    grouped = registry.summarize_models(params.mlflow.experiment, records)
    print(f"MLflow (experiment {params.mlflow.experiment}): {sum(grouped.values())} trainings grouped under "
          f"{len(grouped)} model runs, the best of each registered with the alias 'best'")
    out = write_report(params.runs(), args.reports, args.split_summary, args.writeup_logs,
                       args.time_to_accuracy, goals, params.data.source(), reference)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
