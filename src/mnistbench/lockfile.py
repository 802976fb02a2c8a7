"""requirements.lock, the exact environment: every package (transitive ones too) pinned with its hashes.

`make lock` writes it from pyproject.toml with pip-compile; `make setup` installs it with
`pip install --require-hashes`; `python -m mnistbench.lockfile check` (run by `make setup`, so by CI) fails
when what is installed differs from it. Every run records the lock's SHA-256 (environment.describe).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
from pathlib import Path

from mnistbench.errors import MnistbenchError, exit_on_error
from mnistbench.settings import LOCK_FILE

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
