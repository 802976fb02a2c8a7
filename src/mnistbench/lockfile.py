"""requirements.lock, the exact environment: every package (transitive ones too) pinned with its hashes.

`make lock` writes it from pyproject.toml with pip-compile; `make setup` installs it with
`pip install --require-hashes`; `python -m mnistbench.lockfile check` (run by `make setup`, so by CI) fails
when what is installed differs from it. Every run records the lock's SHA-256 (environment.describe).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.metadata
import re
import subprocess
import tomllib
from pathlib import Path

from mnistbench.errors import MnistbenchError, exit_on_error
from mnistbench.settings import LOCK_FILE, ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# Installed but never locked: the project itself (installed from its checkout) and the installer.
NOT_LOCKED = {"mnistbench", "pip"}


def normalize(name: str) -> str:
    """A distribution's name as PEP 503 compares them: case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path = LOCK_FILE) -> dict[str, str]:
    """{package: version} of every `name==version` line of the lock."""
    if not lock.is_file():
        raise MnistbenchError(f"{lock}: file not found; expected the pinned environment (`make lock` writes it)")
    found = (PIN.match(line) for line in lock.read_text().splitlines())
    return {normalize(m[1]): m[2] for m in found if m}


def runtime_pins(lock_text: str, pyproject_text: str) -> dict[str, str]:
    """{package: version} of what the project's code can import: pyproject's [project] dependencies and, by the
    `# via` lines pip-compile writes under each pin, what they need. The extras' tools (pytest and its plugins,
    pip-tools) and what only they need are left out: adding one changes the lock, not what a training computes."""
    direct = {normalize(PIN_NAME.match(dep)[0]) for dep in tomllib.loads(pyproject_text)["project"]["dependencies"]}
    versions, needed_by, name = {}, {}, None
    for line in lock_text.splitlines():
        pinned = PIN.match(line)
        if pinned:
            name = normalize(pinned[1])
            versions[name], needed_by[name] = pinned[2], set()
        elif name and line.strip().startswith("#") and not line.startswith("#"):  # `# via a`, or `#   a` below it
            parent = line.strip().lstrip("#").strip().removeprefix("via").strip()
            if parent:
                needed_by[name].add(normalize(parent.split(" (")[0]))
    runtime = direct & versions.keys()
    while grown := {n for n in versions.keys() - runtime if needed_by[n] & runtime}:
        runtime |= grown
    return {n: versions[n] for n in sorted(runtime)}


PIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def at_commit(commit: str, name: str, root: Path = ROOT) -> str | None:
    """The text of the project's file `name` as `commit` holds it; None where git cannot show it."""
    try:
        shown = subprocess.run(["git", "show", f"{commit}:{name}"], cwd=root, capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return shown.stdout if shown.returncode == 0 else None


@functools.cache  # a record of 70 trainings holds a few commits
def runtime_pins_at(commit: str, recorded_lock: str, root: Path = ROOT) -> dict[str, str] | None:
    """runtime_pins of the lock `commit` holds; None where it holds none, or another than the one whose SHA-256 a
    record holds (a lock changed but not committed when the record was made)."""
    lock = at_commit(commit, LOCK_FILE.relative_to(ROOT).as_posix(), root)
    project = at_commit(commit, "pyproject.toml", root)
    if lock is None or project is None or hashlib.sha256(lock.encode()).hexdigest() != recorded_lock:
        return None
    return runtime_pins(lock, project)


def runtime_differences(recorded_lock: str, commit: str, root: Path = ROOT) -> list[str] | None:
    """How the packages a training can import differ between the lock whose SHA-256 a record holds (made at
    `commit`) and today's: empty when they are the same; None when nothing can be said but that the files differ."""
    before = runtime_pins_at(commit, recorded_lock, root)
    if before is None:
        return None
    now = runtime_pins((root / LOCK_FILE.relative_to(ROOT)).read_text(), (root / "pyproject.toml").read_text())
    return [f"{n} {before.get(n, '(none)')} -> {now.get(n, '(none)')}"
            for n in sorted(before.keys() | now.keys()) if before.get(n) != now.get(n)]


def installed() -> dict[str, str]:
    return {normalize(d.metadata["Name"]): d.version for d in importlib.metadata.distributions() if d.metadata["Name"]}


def differences(locked: dict[str, str], present: dict[str, str]) -> list[str]:
    """One line per package that is missing, at another version, or not in the lock; empty when they match."""
    lines = []
    for name in sorted(locked.keys() | present.keys()):
        if name in NOT_LOCKED:
            continue
        want, have = locked.get(name), present.get(name)
        if want is None:
            lines.append(f"{name} {have} is installed but not in the lock")
        elif have is None:
            lines.append(f"{name}=={want} is locked but not installed")
        elif have != want:
            lines.append(f"{name}: {have} installed, {want} locked")
    return lines


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("--lock", type=Path, default=LOCK_FILE)
    args = parser.parse_args()
    found = differences(pins(args.lock), installed())
    if found:
        raise MnistbenchError(f"{args.lock}: the installed packages differ from the lock in {len(found)} place(s):\n"
                              + "\n".join(found) + "\nrun `make setup` (a fresh .venv: rm -r .venv first)")
    print(f"{args.lock}: every installed package matches the lock ({len(pins(args.lock))} packages)")


if __name__ == "__main__":
    main()
