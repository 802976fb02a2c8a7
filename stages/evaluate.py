"""DVC stage `evaluate`: every model-seed pair of the pipeline on the test set (src/mnistbench/evaluate_stage.py),
or one pair when a model and --seed are given."""

from pathlib import Path

from mnistbench import evaluate_stage
from mnistbench.cli import exit_on_error, seed, stage_parser
from mnistbench.config import load_params


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("model", nargs="?", help="one name under `models` in params.yaml (default: every pair)")
    parser.add_argument("--seed", type=seed, help="the training seed of that model")
    parser.add_argument("--data", type=Path, required=True, help="the processed splits (data/processed)")
    parser.add_argument("--models-dir", type=Path, required=True, help="the trained weights (models)")
    parser.add_argument("--reports", type=Path, required=True, help="where train wrote its records; metrics go here")
    args = parser.parse_args()
    if (args.model is None) != (args.seed is None):
        parser.error("a model and --seed go together: one pair; neither: every pair")
    only = (args.model, args.seed) if args.model else None
    evaluate_stage.evaluate_all(load_params(*args.params), args.data, args.models_dir, args.reports, only=only)


if __name__ == "__main__":
    main()
