"""DVC stage `evaluate@<model>`: test loss, accuracy, per-class accuracy and confusion matrix."""

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
    args = parser.parse_args()
    name = args.model
    pipeline.evaluate(
        load_params(), name, args.data,
        model_path=args.models_dir / f"{name}.pt",
        run_json=args.reports / "train" / f"{name}.json",
        metrics_out=args.reports / "metrics" / f"{name}.json",
        predictions_out=args.reports / "predictions" / f"{name}.csv",
    )


if __name__ == "__main__":
    main()
