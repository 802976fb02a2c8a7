"""The DVC remote as the project configures it: a file corrupted in the remote is refused on pull, not used."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DVC = str(Path(sys.executable).parent / "dvc")


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_corrupted_file_in_the_remote_is_refused_by_a_pull_in_a_second_clone(tmp_path):
    first, remote = tmp_path / "first", tmp_path / "storage"
    first.mkdir()
    assert run(["git", "init", "-q"], first).returncode == 0
    assert run([DVC, "init", "-q"], first).returncode == 0
    shutil.copyfile(ROOT / ".dvc" / "config", first / ".dvc" / "config")  # the project's remote settings
    assert run([DVC, "remote", "modify", "--local", "local", "url", str(remote)], first).returncode == 0
    (first / "model.pt").write_bytes(bytes(range(256)) * 400)
    for cmd in ([DVC, "add", "-q", "model.pt"], [DVC, "push", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "model"]):
        done = run(cmd, first)
        assert done.returncode == 0, done.stderr
    [stored] = [p for p in remote.rglob("*") if p.is_file()]
    stored.chmod(0o644)
    with open(stored, "r+b") as f:  # 16 bytes flipped in the remote's copy
        f.seek(100)
        f.write(b"X" * 16)

    second = tmp_path / "second"
    assert run(["git", "clone", "-q", str(first), str(second)], tmp_path).returncode == 0
    assert run([DVC, "remote", "modify", "--local", "local", "url", str(remote)], second).returncode == 0
    pulled = run([DVC, "pull"], second)
    assert pulled.returncode != 0 and "model.pt" in pulled.stdout + pulled.stderr
    assert not (second / "model.pt").exists()  # nothing unverified reaches the workspace
