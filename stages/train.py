"""DVC stage `train`: every model-seed pair of the pipeline (src/mnistbench/matrix.py), or one pair when a model
and --seed are given; each tracked in MLflow, with its weights and curves saved."""

from pathlib import Path

from mnistbench import matrix, train_stage
from mnistbench.cli import exit_on_error, seed, stage_parser
from mnistbench.config import load_params


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("model", nargs="?", help="one name under `models` in params.yaml (default: the matrix)")
    parser.add_argument("--seed", type=seed, help="the training seed (weights, shuffling, dropout) of that model")
    parser.add_argument("--data", type=Path, required=True, help="the processed splits (data/processed)")
    parser.add_argument("--models-dir", type=Path, required=True, help="where the weights go (models)")
    parser.add_argument("--reports", type=Path, required=True, help="where records and curves go (reports)")
    parser.add_argument("--checkpoints", type=Path, required=True, help="resume state, kept across runs (checkpoints)")
    args = parser.parse_args()
    if (args.model is None) != (args.seed is None):
        parser.error("a model and --seed go together: one training; neither: the whole matrix")
    params = load_params(*args.params)
    if args.model:
        train_stage.train(params, args.model, args.seed, args.data, args.models_dir, args.reports, args.checkpoints)
    else:
        matrix.run(params, args.data, args.models_dir, args.reports, args.checkpoints)


if __name__ == "__main__":
    main()
