"""DVC stage `train@<model>-<seed>`: train one model, track it in MLflow, save its weights and curves."""

from pathlib import Path

from mnistbench import pipeline
from mnistbench.cli import exit_on_error, params_of, seed, stage_parser


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("model", help="a name under `models` in params.yaml")
    parser.add_argument("--seed", type=seed, required=True, help="the training seed (weights, shuffling, dropout)")
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    args = parser.parse_args()
    pipeline.train(params_of(args), args.model, args.seed, args.data, args.models_dir, args.reports, args.checkpoints)


if __name__ == "__main__":
    main()
