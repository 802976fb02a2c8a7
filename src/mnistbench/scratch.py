"""The default pipeline, run by `dvc repro` in a throw-away copy of the project with some params changed.

For runs whose results must not touch the project's own dvc.lock, reports and outputs, and need not be kept:
the pipeline on a GPU (gpu_check.py). The copy holds what a fresh checkout has; variant.py keeps its copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import yaml

from mnistbench.settings import ROOT


def copy_project(dest: Path, skip: list[str] = ()) -> None:
    """The files git would commit (tracked, and untracked ones not ignored), as a fresh checkout has them,
    but for those under the top-level names in `skip`; a git repository whose HEAD is the project's commit."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if rel.split("/")[0] in skip:
            continue
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    # The project's objects, borrowed: every commit of its history can be read in the copy (a record's commit is
    # replayed there, identity.py) without copying them.
    objects = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=ROOT,
                             capture_output=True, text=True)
    if objects.returncode == 0:
        (dest / ".git" / "objects" / "info" / "alternates").write_text(f"{objects.stdout.strip()}/objects\n")
    # The copy's HEAD is the project's commit (fetched, index read, files as copied): what runs in it records the
    # commit it was made from, and uncommitted changes show as such. A project without commits has none to give.
    fetched = subprocess.run(["git", "fetch", "-q", "--depth=1", str(ROOT), "HEAD"], cwd=dest, capture_output=True)
    if fetched.returncode == 0:
        subprocess.run(["git", "update-ref", "HEAD", "FETCH_HEAD"], cwd=dest, check=True)
        subprocess.run(["git", "read-tree", "HEAD"], cwd=dest, check=True)


@contextmanager
def repro(edit: Callable[[dict], None], env: dict | None = None, targets: tuple[str, ...] = (),
          timeout: float | None = None) -> Iterator[tuple[Path, subprocess.CompletedProcess, float]]:
    """Yield (the scratch project, the finished `dvc repro [targets]`, its wall seconds) after `edit` changed its
    params.yaml in place; the copy is deleted afterwards. A run past `timeout` raises TimeoutExpired."""
    with tempfile.TemporaryDirectory(prefix="mnistbench-scratch-") as scratch:
        project = Path(scratch)
        copy_project(project, skip=["dvc.lock", "reports"])  # the committed run's: this one writes its own
        params = yaml.safe_load((project / "params.yaml").read_text())
        edit(params)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        full_env = os.environ | (env or {}) | {
            # DVC runs each stage's `python` from PATH: this interpreter's, importing the copy's code (its
            # dvc.lock records that code's hashes), not the project's, which may change while the copy runs.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(project / "src")}
        started = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", *targets], cwd=project, env=full_env,
                              timeout=timeout, capture_output=True, text=True)
        yield project, done, time.perf_counter() - started
