"""The DVC remote as the project configures it: a file corrupted in the remote, or never pushed, is refused by
`make pull` (python -m mnistbench.remote pull) in one line naming the remote and the file; nothing unverified
reaches the workspace, the verified files of the same folder do, and a failed pull leaves no empty folder."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DVC = str(Path(sys.executable).parent / "dvc")


def run(cmd: list[str], cwd: Path, **env_vars: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env_vars}  # the venv's dvc
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


MODELS = {f"models/{name}-0.pt": bytes([i]) * 4096 + bytes(range(256)) * 40 for i, name in enumerate(["mlp", "cnn", "vit"])}


def first_clone(tmp_path: Path, remote: Path, push: bool = True) -> Path:
    """A DVC project with the project's remote settings, pointed at `remote`, one tracked file and one tracked
    folder of three (pushed or not)."""
    first = tmp_path / "first"
    first.mkdir()
    assert run(["git", "init", "-q"], first).returncode == 0
    assert run([DVC, "init", "-q"], first).returncode == 0
    shutil.copyfile(ROOT / ".dvc" / "config", first / ".dvc" / "config")
    assert run([DVC, "remote", "modify", "--local", "local", "url", str(remote)], first).returncode == 0
    (first / "model.pt").write_bytes(bytes(range(256)) * 400)
    (first / "models").mkdir()
    for path, content in MODELS.items():
        (first / path).write_bytes(content)
    for cmd in ([DVC, "add", "-q", "model.pt", "models"], *([[DVC, "push", "-q"]] if push else []), ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "model"]):
        done = run(cmd, first)
        assert done.returncode == 0, done.stderr
    return first


def pull_in_a_second_clone(tmp_path: Path, first: Path, remote: Path) -> tuple[Path, subprocess.CompletedProcess]:
    second = tmp_path / "second"
    assert run(["git", "clone", "-q", str(first), str(second)], tmp_path).returncode == 0
    assert run([DVC, "remote", "modify", "--local", "local", "url", str(remote)], second).returncode == 0
    # A narrow terminal: DVC's tables wrap the remote's long url there, and the message must still name it.
    return second, run([sys.executable, "-m", "mnistbench.remote", "pull"], second, COLUMNS="40")


def corrupt(remote: Path, content: bytes) -> None:
    """16 bytes flipped in the remote's copy of the file with this content."""
    [stored] = [p for p in remote.rglob("*") if p.is_file() and p.name == hashlib.md5(content).hexdigest()[2:]]
    stored.chmod(0o644)
    with open(stored, "r+b") as f:
        f.seek(100)
        f.write(b"X" * 16)


@pytest.mark.slow
def test_a_corrupted_file_in_the_remote_is_refused_by_a_pull_in_a_second_clone(tmp_path):
    remote = tmp_path / "storage"
    first = first_clone(tmp_path, remote)
    corrupt(remote, (first / "model.pt").read_bytes())
    corrupt(remote, MODELS["models/cnn-0.pt"])
    second, pulled = pull_in_a_second_clone(tmp_path, first, remote)
    assert pulled.returncode == 1 and "Traceback" not in pulled.stderr
    assert pulled.stderr.strip().splitlines()[-1].startswith(
        f"error: DVC remote 'local' ({remote}): could not fetch model.pt, models/cnn-0.pt: missing there, or its copy "
        "failed the hash check; the 2 intact files beside them are checked out"), pulled.stderr
    assert "up to date" not in pulled.stdout
    assert not (second / "model.pt").exists() and not (second / "models" / "cnn-0.pt").exists()  # nothing unverified
    for path in ("models/mlp-0.pt", "models/vit-0.pt"):  # the folder's verified files, as pushed
        assert (second / path).read_bytes() == MODELS[path]


@pytest.mark.slow
def test_a_pull_from_a_remote_with_nothing_pushed_names_the_remote_and_what_to_do(tmp_path):
    remote = tmp_path / "storage"
    second, pulled = pull_in_a_second_clone(tmp_path, first_clone(tmp_path, remote, push=False), remote)
    assert pulled.returncode == 1 and f"error: DVC remote 'local' ({remote}): could not fetch " in pulled.stderr
    assert "model.pt" in pulled.stderr and "models" in pulled.stderr and "up to date" not in pulled.stdout
    assert "make push" in pulled.stderr and not (second / "model.pt").exists()
    assert not (second / "models").exists()  # no empty folder left behind
