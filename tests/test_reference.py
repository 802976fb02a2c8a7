"""A reproduction's record says whether today's code is the code that made it: a training module changed in a
copy of the project turns it from 'current' to 'stale', naming the file and the commit."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from mnistbench import train_stage


def record(reports: Path, code_files: dict, lock: str, commit: str = "0123456789abcdef") -> Path:
    """reports/train and reports/metrics of one run, with the fields the reference reads."""
    for folder, body in (("train", {"environment": {"git_commit": commit, "lock_sha256": lock}, "code_files": code_files}),
                         ("metrics", {"model": "mlp", "seed": 0, "test_accuracy": 0.975})):
        (reports / folder).mkdir(parents=True, exist_ok=True)
        (reports / folder / "mlp-0.json").write_text(json.dumps(body))
    return reports


def status(project: Path, reports: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "mnistbench.reference", str(reports)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(project / "src"), "PATH": ""}, cwd=project)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().removeprefix(f"{reports}: ")


@pytest.mark.slow
def test_a_changed_training_module_makes_the_record_stale(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "requirements.lock", project / "requirements.lock")
    lock = __import__("hashlib").sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()
    reports = record(tmp_path / "reports", train_stage.code_files(), lock)
    assert status(project, reports) == "current"

    training = project / "src" / "mnistbench" / "training.py"
    training.write_text(training.read_text() + "\n# a change to the training loop\n")
    assert status(project, reports) == "stale: training.py changed since 0123456789ab"

    (project / "requirements.lock").write_text("torch==0.0\n")
    assert status(project, reports) == "stale: training.py, requirements.lock changed since 0123456789ab"


@pytest.mark.slow
def test_a_record_from_before_code_was_recorded_is_stale(tmp_path):
    reports = record(tmp_path / "reports", {}, "none")
    (reports / "train" / "mlp-0.json").write_text(json.dumps({"environment": {"git_commit": "abc"}}))
    assert status(ROOT, reports) == "stale: made at abc, before trainings recorded their code"
