"""The reference write-up (../shared/reference/homework6-writeup.md): its logged numbers.

`parse_logs` reads the three training logs (MLP, CNN, ViT, in that order in the document)
into one row per epoch plus one row for the test line. The result is committed once as
`reference/writeup_logs.csv`; a test checks that parsing the document still gives it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mnistbench.files import read_csv

MODELS_IN_ORDER = ("mlp", "cnn", "vit_writeup")  # the write-up's ViT is reproduced by our vit_writeup

_EPOCH = re.compile(r"Train Epoch: (\d+) Average loss: ([\d.]+)")
_VALID = re.compile(r"Valid set: Average loss: ([\d.]+), Accuracy: (\d+)/(\d+) \(([\d.]+)\)")
_TEST = re.compile(r"Test set: Average loss: ([\d.]+), Accuracy: (\d+)/(\d+) \(([\d.]+)\)")


def parse_logs(text: str) -> pd.DataFrame:
    """One row per logged epoch (split='valid') and per test line (split='test')."""
    rows, model_index, pending = [], 0, None
    # Train and valid lines come in pairs; a test line closes a model's log.
    events = sorted(
        [(m.start(), "epoch", m) for m in _EPOCH.finditer(text)]
        + [(m.start(), "valid", m) for m in _VALID.finditer(text)]
        + [(m.start(), "test", m) for m in _TEST.finditer(text)],
        key=lambda e: e[0],
    )
    for _, kind, m in events:
        model = MODELS_IN_ORDER[model_index]
        if kind == "epoch":
            pending = {"model": model, "split": "valid", "epoch": int(m[1]), "train_loss_writeup": float(m[2])}
        elif kind == "valid":
            rows.append({**pending, "loss_writeup": float(m[1]), "correct": int(m[2]), "total": int(m[3]),
                         "accuracy_percent": float(m[4])})
        else:
            rows.append({"model": model, "split": "test", "epoch": None, "train_loss_writeup": None,
                         "loss_writeup": float(m[1]), "correct": int(m[2]), "total": int(m[3]),
                         "accuracy_percent": float(m[4])})
            model_index += 1
    frame = pd.DataFrame(rows)
    frame["epoch"] = frame["epoch"].astype("Int64")
    return frame


def parse_file(path: str | Path) -> pd.DataFrame:
    return parse_logs(Path(path).read_text())


def load_logs(path: str | Path) -> pd.DataFrame:
    frame = read_csv(path, ("model", "split", "epoch", "accuracy_percent"))
    frame["epoch"] = frame["epoch"].astype("Int64")
    return frame
