"""DVC stage `train@<model>`: train one model, track it in MLflow, save its weights and curves."""

import argparse
from pathlib import Path

from mnistbench import pipeline
from mnistbench.config import load_params
from mnistbench.errors import exit_on_error


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a name under `models` in params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    args = parser.parse_args()
    name = args.model
    pipeline.train(
        load_params(), name, args.data,
        model_out=args.models_dir / f"{name}.pt",
        history_out=args.reports / "history" / f"{name}.csv",
        run_out=args.reports / "train" / f"{name}.json",
        checkpoint_path=args.checkpoints / f"{name}.ckpt",
    )


if __name__ == "__main__":
    main()
