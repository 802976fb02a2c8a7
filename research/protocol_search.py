"""Which optimizer and learning rate did the write-up use? Train candidates, compare curves.

    python research/protocol_search.py --data data/processed --out reference/protocol_search

One-off research, kept for its committed output (reference/protocol_search.{csv,md}, quoted in
reports/claims.md); it needs data/processed (`dvc repro split`) and takes about 15 minutes on 2 cores.
For each candidate, the MLP and CNN are trained under the write-up's protocol (params.yaml's shared
`train` section: batch 32, 10 epochs; seed 0) and their per-epoch valid accuracy and losses (write-up convention) are
compared with the write-up's logs. Distance: RMS difference of valid accuracy (points) plus
RMS relative difference of train and valid losses (percent). The lowest total wins.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from mnistbench import data, environment, training
from mnistbench.config import Params, load_params
from mnistbench.files import write_text
from mnistbench.models import build_model
from mnistbench.tables import markdown_table
from mnistbench.writeup import load_logs

CANDIDATES = [
    {"optimizer": "adam", "lr": 1e-3},
    {"optimizer": "adam", "lr": 5e-4},
    {"optimizer": "adam", "lr": 2e-3},
    {"optimizer": "sgd", "lr": 0.01},
    {"optimizer": "sgd", "lr": 0.1},
    {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9},
]


def distance(history: pd.DataFrame, logged: pd.DataFrame) -> dict:
    ours = history.set_index("epoch")
    theirs = logged.set_index("epoch")
    acc = ((100 * ours["valid_accuracy"] - theirs["accuracy_percent"]) ** 2).mean() ** 0.5
    rel = lambda a, b: (((a - b) / b) ** 2).mean() ** 0.5 * 100  # noqa: E731
    train = rel(ours["train_loss_writeup"], theirs["train_loss_writeup"])
    valid = rel(ours["valid_loss_writeup"], theirs["loss_writeup"])
    return {"valid acc RMS (points)": acc, "train loss RMS (%)": train, "valid loss RMS (%)": valid,
            "total": acc + (train + valid) / 10}


def search(params: Params, processed: Path, logs: Path, models: list[str], candidates: list[dict]) -> pd.DataFrame:
    logged = load_logs(logs)
    train_set, valid_set = data.load_split(processed, "train"), data.load_split(processed, "valid")
    rows = []
    for model in models:
        theirs = logged[(logged["model"] == model) & (logged["split"] == "valid")]
        for candidate in candidates:
            tp = params.train.model_copy(update=candidate)
            environment.make_deterministic(0, tp.threads)
            result = training.train(build_model(model, params), tp, train_set, valid_set, torch.device("cpu"), 0,
                                    name=model)
            history = pd.DataFrame(result.history)
            label = f"{tp.optimizer} lr={tp.lr:g}" + (f" momentum={tp.momentum:g}" if tp.momentum else "")
            rows.append({"model": model, "candidate": label, **distance(history, theirs),
                         "epoch-1 valid acc (%)": 100 * history["valid_accuracy"].iloc[0],
                         "final valid acc (%)": 100 * history["valid_accuracy"].iloc[-1]})
    return pd.DataFrame(rows)


def summary_markdown(results: pd.DataFrame) -> str:
    lines = [
        "Command: `python research/protocol_search.py` (seed 0, batch 32, 10 epochs, pixels in [0, 1]).",
        "Distance to the write-up's per-epoch logs: RMS of valid-accuracy differences (points) + one tenth of",
        "the RMS relative differences of train and valid 'Average loss' (percent). Lower is closer.",
        "",
        markdown_table(results.round(3).to_dict("records")),
        "",
    ]
    totals = results.groupby("candidate", sort=False)["total"].sum().sort_values()
    lines.append(f"Closest over both models: **{totals.index[0]}** (summed distance {totals.iloc[0]:.2f}; next: "
                 f"{totals.index[1]}, {totals.iloc[1]:.2f}). It is the default protocol in params.yaml.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--logs", type=Path, default=Path("reference/writeup_logs.csv"))
    parser.add_argument("--out", type=Path, default=Path("reference/protocol_search"))
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    results = search(load_params(args.params), args.data, args.logs, args.models, CANDIDATES)
    write_text(args.out.with_suffix(".csv"), results.to_csv(index=False))
    write_text(args.out.with_suffix(".md"), summary_markdown(results) + "\n")
    print(summary_markdown(results))


if __name__ == "__main__":
    main()
