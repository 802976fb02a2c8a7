"""`make pull`: fetch what dvc.lock names from the DVC remote, and say in one line what is wrong when it cannot.

    python -m mnistbench.remote pull

The remote verifies what it fetches (.dvc/config: verify = true), so a file that is missing there and one that
fails its hash check both end here, named (the file, also inside a tracked folder), with what to do. DVC checks a
folder out whole or not at all; the verified files of a folder with a failed one are checked out one by one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from mnistbench.errors import MnistbenchError, exit_on_error


def default_remote() -> tuple[str, str]:
    """(name, url) of the project's default DVC remote, as DVC merges its config files (--local over the
    project's). `dvc config` prints one value; `dvc remote list` is a table that wraps a long url at the
    terminal's width."""
    def value(key: str) -> str:
        return subprocess.run(["dvc", "config", key], capture_output=True, text=True).stdout.strip()

    name = value("core.remote")
    return name or "(none)", (value(f"remote.{name}.url") if name else "") or "(no url)"


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


def recorded_outputs(project: Path) -> dict[str, str]:
    """{output path: its recorded md5} from dvc.lock and every .dvc file (a folder's md5 ends in `.dir`)."""
    outputs = {}
    lock = project / "dvc.lock"
    stages = yaml.safe_load(lock.read_text()).get("stages", {}) if lock.is_file() else {}
    recorded = [out for stage in stages.values() for out in stage.get("outs", [])]
    tracked = subprocess.run(["git", "ls-files", "-z", "--", "*.dvc"], cwd=project, capture_output=True, text=True)
    for name in filter(None, tracked.stdout.split("\0")):
        dvcfile = project / name
        recorded += [{**out, "path": str(dvcfile.parent.relative_to(project) / out["path"])}
                     for out in (yaml.safe_load(dvcfile.read_text()) or {}).get("outs", [])]
    for out in recorded:
        if out.get("md5"):
            outputs[out["path"]] = out["md5"]
    return outputs


def cached(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def split_folder(cache: Path, folder: str, md5: str) -> tuple[list[str], list[str]]:
    """(files of a tracked folder that the cache holds, files it lacks); all lacking when even its list is."""
    listing = cached(cache, md5)
    if not listing.is_file():
        return [], [folder]
    here, lacking = [], []
    for entry in json.loads(listing.read_text()):
        (here if cached(cache, entry["md5"]).is_file() else lacking).append(f"{folder}/{entry['relpath']}")
    return here, lacking


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pull"])
    parser.parse_args()
    if shutil.which("dvc") is None:
        raise MnistbenchError("dvc: not on PATH; expected the project's virtual environment (make setup)")
    project = Path.cwd()
    outputs = recorded_outputs(project)
    absent = [path for path in outputs if not (project / path).exists()]
    done = subprocess.run(["dvc", "pull"], capture_output=True, text=True)
    if done.returncode == 0:
        sys.stdout.write(done.stdout)
        return
    sys.stdout.writelines(line for line in done.stdout.splitlines(keepends=True) if "up to date" not in line)
    cache = Path(subprocess.run(["dvc", "cache", "dir"], capture_output=True, text=True).stdout.strip()
                 or project / ".dvc" / "cache")
    failed, intact = [], []
    for target in failed_targets(done.stdout + done.stderr) or ["what dvc.lock names"]:
        md5 = outputs.get(target, "")
        here, lacking = split_folder(cache, target, md5) if md5.endswith(".dir") else ([], [target])
        failed += lacking
        intact += here
    if intact:  # the folder's verified files: DVC checks a folder out whole or not at all
        subprocess.run(["dvc", "checkout", *intact], capture_output=True, text=True)
    for path in absent:  # a folder the failed pull made and left empty
        folder = project / path
        if folder.is_dir() and not any(folder.rglob("*")):
            folder.rmdir()
    name, url = default_remote()
    kept = f"; the {len(intact)} intact files beside them are checked out" if intact else ""
    raise MnistbenchError(f"DVC remote '{name}' ({url}): could not fetch {', '.join(sorted(failed))}: missing there, or its "
                          f"copy failed the hash check{kept}; run `make push` in a clone that has them, or rebuild "
                          "them with `dvc repro`")


if __name__ == "__main__":
    main()
