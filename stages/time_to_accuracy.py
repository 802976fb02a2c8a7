"""DVC stage `time_to_accuracy`: wall time for the tuned models to reach their valid-accuracy thresholds.

Re-measure on a quiet machine with `make time-to-accuracy` (dvc repro --force time_to_accuracy)."""

from pathlib import Path

from mnistbench import time_to_accuracy
from mnistbench.cli import exit_on_error, stage_parser
from mnistbench.config import load_params


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="the processed splits (data/processed)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write (reports/time_to_accuracy.json)")
    args = parser.parse_args()
    time_to_accuracy.measure_all(load_params(*args.params), args.data, args.out)


if __name__ == "__main__":
    main()
