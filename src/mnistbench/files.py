"""Reading and writing the project's files safely.

Outputs are written to a temporary name beside their destination and renamed into place at the
end (a rename within one folder is atomic on POSIX), so a failed or killed stage never leaves half
a file behind. JSON is strict (no bare NaN), and tensor files are loaded with `weights_only=True`.
"""

from __future__ import annotations

import csv
import io
import hashlib
import json
import math
import os
import pickle
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from mnistbench.errors import MnistbenchError


def _remove_orphans(path: Path) -> None:
    """Remove what a killed writer of `path` left (SIGKILL runs no cleanup): temporaries of dead processes."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None:  # a failed write() (a full disk) names no file: name the one being written
            err.filename = str(path)
        raise
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Like atomic_path, for a folder: fill the yielded folder, then it replaces `path` whole."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        yield tmp
        if path.exists():
            shutil.rmtree(path)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def csv_text(rows: list[dict]) -> str:
    """Rows of one shape as CSV text, with a header line."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _non_finite(obj, key: str = "") -> str | None:
    """The key of the first NaN or infinity in obj, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return key or "(top level)"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{key}.{k}" if key else str(k))
        if found:
            return found
    return None


def json_text(path: str | Path, obj) -> str:
    """obj as strict JSON; a NaN or infinity is an error naming the file and the key, never a bare NaN."""
    bad = _non_finite(obj)
    if bad:
        raise MnistbenchError(f"{path}: refusing to write a non-finite number at key {bad!r}; expected finite metrics")
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def write_json(path: str | Path, obj) -> None:
    write_text(path, json_text(path, obj))


def read_json(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise MnistbenchError(f"{path}: file not found; run the stage that writes it first (dvc repro)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MnistbenchError(f"{path}: not valid JSON ({err}); delete it and rerun the stage that writes it") from None


def read_csv(path: str | Path, required: tuple[str, ...] = ()):
    """A CSV the pipeline wrote, as a pandas DataFrame; a missing, unreadable or incomplete file is one clear error."""
    import pandas as pd  # only the report stages read CSV; the others need not load pandas

    path = Path(path)
    if not path.is_file():
        raise MnistbenchError(f"{path}: file not found; run the stage that writes it first (dvc repro)")
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise MnistbenchError(f"{path}: not a readable CSV table ({str(err).strip()[:200]}); delete it and rerun "
                              "the stage that writes it") from None
    missing = [c for c in required if c not in frame.columns]
    if missing or frame.empty:
        raise MnistbenchError(f"{path}: expected columns {', '.join(required)} and at least one row, found columns "
                              f"{', '.join(map(str, frame.columns)) or 'none'} and {len(frame)} rows")
    return frame


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_recorded_hash(path: Path, expected: str, recorded_in: Path) -> None:
    """Refuse a file whose bytes are no longer those recorded when it was written (torch.load checks no CRC:
    a flipped byte in a weight loads, and evaluates, silently)."""
    found = sha256_of(path)
    if found != expected:
        raise MnistbenchError(f"{path}: its SHA-256 {found[:16]}... is not the {expected[:16]}... that {recorded_in} "
                              f"recorded when it was written: the file changed since (a corrupt cache, copy or "
                              f"disk); delete it and run `dvc repro`, which trains it again")


def load_tensors(path: str | Path, what: str) -> Any:
    """torch.load with weights_only=True, onto the CPU. A file that needs more than plain tensors to load (a
    pickle with code in it) is refused, and the message says why without suggesting to lift the guard."""
    path = Path(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise MnistbenchError(f"{path}: not a plain tensor file; refusing to load it as a {what} (it may have been "
                              "tampered with); delete it and rerun the stage that writes it") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise MnistbenchError(f"{path}: unreadable {what} ({first}); delete it and rerun the stage that writes it") from None
