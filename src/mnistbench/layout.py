"""Where a pipeline's files lie under its reports folder: one home for the layout that dvc.yaml's outs name
(tests/test_dvc_graph.py checks that they agree).

Per training (a model-seed pair, named by config.run_name): its record (train/) and per-epoch curves
(history/), written by the train stage; its test metrics (metrics/), predictions (predictions/) and the four
numbers `dvc metrics` reads (summary/), written by the evaluate stage.
"""

from __future__ import annotations

from pathlib import Path

TRAIN, HISTORY = "train", "history"
METRICS, PREDICTIONS, SUMMARY = "metrics", "predictions", "summary"
SUFFIX = {TRAIN: ".json", HISTORY: ".csv", METRICS: ".json", PREDICTIONS: ".csv", SUMMARY: ".json"}


def run_file(reports: str | Path, folder: str, run: str) -> Path:
    """reports/<folder>/<run>.<its suffix>, e.g. reports/train/mlp-0.json."""
    return Path(reports) / folder / f"{run}{SUFFIX[folder]}"
