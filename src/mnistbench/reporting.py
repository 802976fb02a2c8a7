"""reports/comparison.md and its pictures, from the files the train and evaluate stages wrote.

The prose is a template (templates/comparison.md.j2); the numbers come from tables.py, the pictures from
figures.py, the statistics from stats.py.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pandas as pd

from mnistbench.config import run_name
from mnistbench.datasets import DATASETS, Dataset
from mnistbench.figures import plot_confusion, plot_curves, plot_seeds, plot_vs_writeup
from mnistbench.files import read_csv, read_json, write_text
from mnistbench.models.vit_writeup import DIFFERENCES_FROM_VIT
from mnistbench.tables import (comparison_rows, detail_rows, goal_rows, machine_summary, markdown_table, recipe_line,
                               time_to_accuracy_rows)
from mnistbench.writeup import load_logs

TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("mnistbench"), keep_trailing_newline=True,
                               undefined=jinja2.StrictUndefined)
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "train_loss_writeup",
                   "valid_loss_writeup")


def load_runs(models: list[str], seeds: list[int], reports: Path) -> pd.DataFrame:
    """One row per (model, seed): what the train and evaluate stages recorded."""
    rows = []
    for model in models:
        for seed in seeds:
            run = read_json(reports / "train" / f"{run_name(model, seed)}.json")
            metrics = read_json(reports / "metrics" / f"{run_name(model, seed)}.json")
            rows.append({**{k: v for k, v in run.items() if k != "environment"}, **run["environment"],
                         **{k: v for k, v in metrics.items() if k not in ("model", "seed")}})
    return pd.DataFrame(rows)


def write_report(models: list[str], seeds: list[int], reports: Path, split_summary: Path, writeup_logs: Path,
                 time_to_accuracy: Path | None = None, goals: dict[str, float] | None = None,
                 dataset: Dataset = DATASETS["mnist"]) -> Path:
    """Write reports/comparison.md (from templates/comparison.md.j2) and reports/figures/*.png; return the
    markdown's path. `goals`: test accuracy each model should reach (gates.yaml's `accuracy`, their one home).
    The write-up's logs and claims are about MNIST: on another dataset they are left out, and the report says so."""
    figures = reports / "figures"
    runs = load_runs(models, seeds, reports)
    tta = read_json(time_to_accuracy) if time_to_accuracy else {}
    logged = load_logs(writeup_logs)
    claimed = {m: float(g["accuracy_percent"].iloc[0]) for m, g in logged[logged["split"] == "test"].groupby("model")}
    if not dataset.writeup:
        logged, claimed = logged.iloc[0:0], {}
    for name in models:
        run = run_name(name, seeds[0])  # the first seed's run gives the curves
        history = read_csv(reports / "history" / f"{run}.csv", HISTORY_COLUMNS)
        plot_curves(run, history, figures / f"{name}_curves.png")
        plot_confusion(run, read_json(reports / "metrics" / f"{run}.json")["confusion_matrix"],
                       figures / f"{name}_confusion.png")
        theirs = logged[(logged["model"] == name) & (logged["split"] == "valid")]
        if len(theirs):
            plot_vs_writeup(run, history, theirs, figures / f"{name}_vs_writeup.png")
    plot_seeds(runs, claimed, figures / "seeds.png")
    env = runs.iloc[0]
    splits = read_json(split_summary)
    goal_table = goal_rows(runs, goals or {})
    text = TEMPLATES.get_template("comparison.md.j2").render(
        dataset=dataset, models=models, seeds=seeds, env=env, machine=machine_summary(env),
        comparison=markdown_table(comparison_rows(runs, tta)), details=markdown_table(detail_rows(runs)),
        goals=markdown_table(goal_table) if goal_table else "",
        published=markdown_table(dataset.published) if dataset.published else "",
        time_to_accuracy=markdown_table(time_to_accuracy_rows(tta)) if tta else "",
        recipes={name: recipe_line(r) for name, r in tta.items()},
        tta_machine=(lambda e: f"{machine_summary(e)}, {e['cpu_count']} CPUs, torch {e['torch']}.")(
            next(iter(tta.values()))["environment"]) if tta else "",
        compared=[m for m in models if m in claimed],
        vit_differences=DIFFERENCES_FROM_VIT,
        split_seed=splits["seed"],
        split_counts=", ".join(f"{k} {v['count']:,}" for k, v in splits["splits"].items()),
    )
    out = reports / "comparison.md"
    write_text(out, text)
    return out
