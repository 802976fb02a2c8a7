"""A reproduction's record as a reference: its per-seed test accuracies, and whether the code that made them is
still today's.

    python -m mnistbench.reference reproduce/reports    # current, or stale: which files changed since which commit

Each training records the hashes of the files it ran (train_stage.code_files); the record is current while
every one of them, and requirements.lock, is unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from mnistbench import codebase
from mnistbench.errors import MnistbenchError, exit_on_error
from mnistbench.settings import LOCK_FILE

TRAINING_CODE = codebase.PACKAGE / "train_stage.py"  # the module whose closure a training fingerprints


def _records(folder: Path) -> list[dict]:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise MnistbenchError(f"{folder}: no records (expected <model>-<seed>.json of a pipeline run)")
    return [json.loads(f.read_text()) for f in files]


def accuracies(reports: Path) -> dict[str, dict[int, float]]:
    """{model: {seed: test accuracy}} of a pipeline's reports/metrics, models in the order first seen."""
    found: dict[str, dict[int, float]] = {}
    for record in _records(reports / "metrics"):
        found.setdefault(record["model"], {})[record["seed"]] = record["test_accuracy"]
    return found


def status(reports: Path) -> str:
    """'current', or 'stale: <files> changed since <commit>' for the code and lock the trainings ran."""
    trainings = _records(reports / "train")
    commits = sorted({t["environment"]["git_commit"][:12] for t in trainings})
    since = ", ".join(commits)
    if any("code_files" not in t for t in trainings):
        return f"stale: made at {since}, before trainings recorded their code"
    changed = sorted({name for t in trainings for name in codebase.changed_files(t["code_files"], TRAINING_CODE)})
    lock = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest() if LOCK_FILE.is_file() else "none"
    if any(t["environment"].get("lock_sha256") != lock for t in trainings):
        changed.append(LOCK_FILE.name)
    return "current" if not changed else f"stale: {', '.join(changed)} changed since {since}"


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, help="a pipeline's reports folder, e.g. reproduce/reports")
    args = parser.parse_args()
    print(f"{args.reports}: {status(args.reports)}")


if __name__ == "__main__":
    main()
