"""`make reproduce`, `make fashion-mnist`: the one pipeline (dvc.yaml) run with other params, kept apart.

    python -m mnistbench.variant reproduce

A variant is a folder of the project whose params.yaml says what differs from the project's params.yaml,
key by key (reproduce/: ten seeds and the write-up's ViT as written; fashion-mnist/: another
dataset). Its run happens in a workspace, .variants/<name>/ (ignored by git and DVC): the project's files,
params.yaml = the project's with the variant's keys on top, and the workspace's own dvc.lock and
outputs. The workspace is kept, so a rerun (or a run after an interruption) retrains only what DVC finds
stale; a new workspace starts from the variant's committed record, so that a fresh clone adds seeds to it
without training again what it holds (train_stage.is_current). Afterwards the workspace's dvc.lock and reports/ are copied into the variant's folder: the
committed record of the run. Its MLflow runs go to the project's store, in the variant's experiment.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mnistbench import tracking
from mnistbench.config import load_params
from mnistbench.params_file import merge, read_yaml
from mnistbench.errors import MnistbenchError, exit_on_error
from mnistbench.datasets import DATASETS
from mnistbench.scratch import copy_project
from mnistbench.settings import ROOT

RECORD = ("dvc.lock", "reports")  # what a run leaves in the variant's folder


def workspace_of(name: str) -> Path:
    return ROOT / ".variants" / name


def prepare(name: str) -> tuple[Path, dict]:
    """The workspace with today's code and the merged params (returned too); its own dvc.lock and outputs kept."""
    overlay = ROOT / name / "params.yaml"
    changes = read_yaml(overlay, f"the keys of params.yaml that the variant '{name}' changes")
    # A bad value stops here, naming the variant's own file and the key, before any workspace is written.
    load_params(ROOT / "params.yaml", overlay)
    merged = merge(read_yaml(ROOT / "params.yaml"), changes)
    workspace = workspace_of(name)
    workspace.mkdir(parents=True, exist_ok=True)
    # The project's own record and the variants' folders are not the workspace's: it writes its own.
    variants = [p.parent.name for p in ROOT.glob("*/params.yaml")]
    copy_project(workspace, skip=[*RECORD, *variants])
    if not (workspace / "dvc.lock").exists() and (ROOT / name / "dvc.lock").is_file():
        # A fresh workspace (a fresh clone) starts from the committed record: its trainings whose identity still
        # holds are kept, without their weights, by their recorded evaluations, and only what is new is trained.
        shutil.rmtree(workspace / "reports", ignore_errors=True)
        shutil.copytree(ROOT / name / "reports", workspace / "reports")
        shutil.copy2(ROOT / name / "dvc.lock", workspace / "dvc.lock")
    (workspace / "params.yaml").write_text(
        f"# params.yaml + {name}/params.yaml, written by mnistbench.variant: edit those, not this\n"
        + yaml.safe_dump(merged, sort_keys=False))
    page = ROOT / ".dvc" / "plots" / "index.html"  # made by `make setup`, ignored by git
    if page.is_file():
        shutil.copy2(page, workspace / page.relative_to(ROOT))
    return workspace, merged


def environment(workspace: Path, params: dict) -> dict:
    env = os.environ | {
        # DVC runs each stage's `python` from PATH: this interpreter's, importing the workspace's code.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(workspace / "src"),
        "MLFLOW_TRACKING_URI": tracking.tracking_uri(),  # the project's store, or the server it names
    }
    data = params.get("data", {})
    dataset = DATASETS[data.get("dataset", "mnist")]
    if dataset.name == "mnist" and data.get("local_dir", "default") == "default" and "MNIST_DIR" not in env:
        env["MNIST_DIR"] = str((ROOT / dataset.local_dir).resolve())  # relative to the project, not the workspace
    return env


def record(name: str, workspace: Path) -> Path:
    """Copy the run's dvc.lock and reports/ into the variant's folder, replacing the previous record whole."""
    folder = ROOT / name
    staged = folder / ".record.tmp"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(workspace / "reports", staged / "reports")
    shutil.copy2(workspace / "dvc.lock", staged / "dvc.lock")
    for item in RECORD:
        old = folder / item
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        (staged / item).rename(old)
    staged.rmdir()
    return folder


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the variant's folder: reproduce, fashion-mnist, or one of your own")
    args = parser.parse_args()
    workspace, params = prepare(args.name)
    print(f"dvc repro of the variant '{args.name}' in {workspace.relative_to(ROOT)}/ "
          f"(what is already done there is kept)", flush=True)
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=workspace,
                          env=environment(workspace, params))
    if done.returncode != 0:
        raise MnistbenchError(f"dvc repro of the variant '{args.name}' failed (exit {done.returncode}); "
                              f"its workspace {workspace} keeps what finished: rerun to go on")
    folder = record(args.name, workspace)
    print(f"wrote {folder.relative_to(ROOT)}/dvc.lock and reports/ "
          f"({(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    main()
