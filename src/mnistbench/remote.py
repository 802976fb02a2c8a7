"""`make pull`: fetch what dvc.lock names from the DVC remote, and say in one line what is wrong when it cannot.

    python -m mnistbench.remote pull

The remote verifies what it fetches (.dvc/config: verify = true), so a file that is missing there and one that
fails its hash check both end here, named, with what to do.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from mnistbench.errors import MnistbenchError, exit_on_error


def default_remote() -> tuple[str, str]:
    """(name, url) of the project's default DVC remote."""
    name = subprocess.run(["dvc", "remote", "default"], capture_output=True, text=True).stdout.strip()
    listed = subprocess.run(["dvc", "remote", "list"], capture_output=True, text=True).stdout.splitlines()
    urls = {parts[0]: parts[1] for parts in map(str.split, listed) if len(parts) >= 2}  # name, url, (default)
    return name or "(none)", urls.get(name, "(no url)")


def failed_targets(output: str) -> list[str]:
    """The targets DVC lists after 'Checkout failed for following targets:'."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "failed for following targets" in line), None)
    if start is None:
        return []
    targets = []
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith(("Is your cache", "<http")):
            break
        targets.append(line.strip())
    return targets


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pull"])
    parser.parse_args()
    if shutil.which("dvc") is None:
        raise MnistbenchError("dvc: not on PATH; expected the project's virtual environment (make setup)")
    done = subprocess.run(["dvc", "pull"], capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    if done.returncode == 0:
        return
    name, url = default_remote()
    targets = failed_targets(done.stdout + done.stderr)
    what = ", ".join(targets) if targets else "what dvc.lock names"
    raise MnistbenchError(f"DVC remote '{name}' ({url}): could not fetch {what}: missing there, or its copy failed "
                          "the hash check; run `make push` in a clone that has them, or rebuild them with `dvc repro`")


if __name__ == "__main__":
    main()
