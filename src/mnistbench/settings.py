"""The process settings every entry point shares: where the project is, and no telemetry.

Importing this module is enough: the telemetry switches are set before MLflow, DVC or Ray are imported.
"""

from __future__ import annotations

import os
from pathlib import Path

# The project's checkout (the package is installed from it in editable mode): params, lock, variants, server.
ROOT = Path(__file__).resolve().parents[2]


def project_root(start: Path | None = None) -> Path:
    """The DVC project a run belongs to (the folder holding .dvc/): `start` (else $DVC_ROOT, else the current
    folder) or a folder above it; for an experiment that DVC's queue runs in a copy at
    <project>/.dvc/tmp/exps/<id>/, the project that queued it (its store, and where a relative data folder is)."""
    here = Path(start or os.environ.get("DVC_ROOT") or Path.cwd()).resolve()
    if ".dvc" in here.parts:
        here = Path(*here.parts[: here.parts.index(".dvc")])
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here


# Every installed package, pinned with hashes (pip-compile); `make setup` installs exactly these.
LOCK_FILE = ROOT / "requirements.lock"

# A tracking server or a Ray cluster that does not answer within this fails the stage in seconds, naming it.
PROBE_TIMEOUT_S = 5

# Offline-first: no usage data leaves the machine (DVC's switch is in .dvc/config).
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "RAY_USAGE_STATS_ENABLED": "0"}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)
