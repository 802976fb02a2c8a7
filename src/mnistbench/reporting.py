"""reports/comparison.md and its pictures, from the files the train and evaluate stages wrote.

The prose is a template (templates/comparison.md.j2); the numbers come from tables.py, the pictures from
figures.py, the statistics from stats.py.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import jinja2
import pandas as pd

from mnistbench import comparisons, layout, reference
from mnistbench.config import run_name
from mnistbench.datasets import DATASETS, Dataset
from mnistbench.figures import plot_confusion, plot_curves, plot_seeds, plot_vs_writeup
from mnistbench.files import csv_text, read_csv, read_json, write_json, write_text
from mnistbench.stats import mean_ci
from mnistbench.time_to_accuracy import olympic
from mnistbench.models.vit_writeup import DIFFERENCES_FROM_VIT
from mnistbench.tables import (comparison_rows, detail_rows, goal_rows, machine_summary, markdown_table, mcnemar_rows,
                               paired_rows, recipe_line, time_to_accuracy_rows)
from mnistbench.writeup import load_logs

TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("mnistbench"), keep_trailing_newline=True,
                               undefined=jinja2.StrictUndefined)
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "train_loss_writeup",
                   "valid_loss_writeup")


def load_runs(pairs: list[tuple[str, int]], reports: Path) -> pd.DataFrame:
    """One row per (model, seed) pair: what the train and evaluate stages recorded."""
    rows = []
    for model, seed in pairs:
        run = read_json(layout.run_file(reports, layout.TRAIN, run_name(model, seed)))
        metrics = read_json(layout.run_file(reports, layout.METRICS, run_name(model, seed)))
        rows.append({**{k: v for k, v in run.items() if k not in ("environment", "code_files", "identity")}, **run["environment"],
                     **{k: v for k, v in metrics.items() if k not in ("model", "seed")}})
    return pd.DataFrame(rows)


def seeds_text(pairs: list[tuple[str, int]]) -> str:
    """Which seeds each model ran, grouped: '0-9 (mlp, cnn); 0-4 (mlp_tuned)'."""
    by_model: dict[str, list[int]] = {}
    for model, seed in pairs:
        by_model.setdefault(model, []).append(seed)
    groups: dict[str, list[str]] = {}
    for model, seeds in by_model.items():
        consecutive = seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2
        groups.setdefault(f"{seeds[0]}-{seeds[-1]}" if consecutive else ", ".join(map(str, seeds)), []).append(model)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{seeds} ({', '.join(models)})" for seeds, models in groups.items())


def compare_models(runs: pd.DataFrame, reports: Path) -> dict:
    """Which differences between the models are real. With several seeds of every model: a paired t-test per
    pair over their shared seeds; with one: McNemar's exact test on the first seed's test predictions. Both
    Holm-corrected over all pairs (docs/statistics.md)."""
    accuracies = {m: dict(zip(g["seed"], g["test_accuracy"])) for m, g in runs.groupby("model", sort=False)}
    if len(accuracies) < 2:
        return {"method": "One model ran", "table": "There is no pair of models to compare.", "pairs": []}
    def correct(model: str, seed: int) -> list[bool]:
        predictions = read_csv(layout.run_file(reports, layout.PREDICTIONS, run_name(model, seed)), ("actual", "predicted"))
        return list(predictions["actual"] == predictions["predicted"])

    if all(len(seeds) >= 2 for seeds in accuracies.values()):
        found = comparisons.all_pairs(accuracies)
        right = {m: {s: correct(m, s) for s in seeds} for m, seeds in accuracies.items()}
        for c in found:
            comparisons.add_image_sampling(c, right[c.a], right[c.b])
        return {"method": "Paired t-test over the seeds both models ran, Holm-corrected; beside it, the interval "
                          "with the sampling of test images added",
                "table": markdown_table(paired_rows(found)),
                "pairs": [{**asdict(c), "verdict": c.verdict()} for c in found]}
    first = {model: min(seeds) for model, seeds in accuracies.items()}
    found = comparisons.all_mcnemar({model: correct(model, seed) for model, seed in first.items()})
    for c in found:
        c.seed_a, c.seed_b = first[c.a], first[c.b]
    return {"method": "McNemar's exact test on the same test images (one seed), Holm-corrected",
            "table": markdown_table(mcnemar_rows(found)),
            "pairs": [{**asdict(c), "difference": c.difference, "verdict": c.verdict()} for c in found]}


def write_report(pairs: list[tuple[str, int]], reports: Path, split_summary: Path, writeup_logs: Path,
                 time_to_accuracy: Path | None = None, goals: dict[str, float] | None = None,
                 dataset: Dataset = DATASETS["mnist"], reference_reports: Path | None = None) -> Path:
    """Write reports/comparison.md (from templates/comparison.md.j2), reports/comparisons.json (which
    differences between models are real) and reports/figures/*.png; return the markdown's path. `goals`: mean
    test accuracy a tuned model was built to reach (gates.yaml's `goals`, their one home). `reference_reports`:
    the reproduction the CI gates compare against, whose status the report states. The write-up's logs and
    claims are about MNIST: on another dataset they are left out, and the report says so."""
    figures = reports / "figures"
    models = list(dict.fromkeys(model for model, _ in pairs))
    first_seed = {model: seed for model, seed in reversed(pairs)}  # each model's first seed gives its curves
    runs = load_runs(pairs, reports)
    tta = read_json(time_to_accuracy) if time_to_accuracy else {}
    for result in tta.values():  # each sprint summarized by today's rules from its runs (a file may predate them)
        result.update(olympic(result["seeds"]))
    logged = load_logs(writeup_logs)
    claimed = {m: float(g["accuracy_percent"].iloc[0]) for m, g in logged[logged["split"] == "test"].groupby("model")}
    if not dataset.writeup:
        logged, claimed = logged.iloc[0:0], {}
    curves = [{"run": run_name(m, s), "epoch": int(row["epoch"]), "valid_accuracy": row["valid_accuracy"],
               "train_loss": row["train_loss"]}
              for m, s in pairs for _, row in read_csv(layout.run_file(reports, layout.HISTORY, run_name(m, s)), HISTORY_COLUMNS).iterrows()]
    write_text(reports / "curves.csv", csv_text(curves))  # one file for `dvc plots show`, whatever models ran
    for name in models:
        run = run_name(name, first_seed[name])
        history = read_csv(layout.run_file(reports, layout.HISTORY, run), HISTORY_COLUMNS)
        plot_curves(run, history, figures / f"{name}_curves.png")
        plot_confusion(run, read_json(layout.run_file(reports, layout.METRICS, run))["confusion_matrix"],
                       figures / f"{name}_confusion.png")
        theirs = logged[(logged["model"] == name) & (logged["split"] == "valid")]
        if len(theirs):
            plot_vs_writeup(run, history, theirs, figures / f"{name}_vs_writeup.png")
    intervals = {m: mean_ci(list(100 * g["test_accuracy"])) for m, g in runs.groupby("model", sort=False)}
    plot_seeds(runs, intervals, claimed, figures / "seeds.png")
    env = runs.iloc[0]
    compared = compare_models(runs, reports)
    write_json(reports / "comparisons.json", {k: v for k, v in compared.items() if k != "table"})
    record = {"commits": ", ".join(sorted({c[:12] for c in runs["git_commit"]})), "status": reference.status(reports),
              "lock": ", ".join(sorted({str(h)[:16] for h in runs.get("lock_sha256", pd.Series(["not recorded"]))})),
              "installed": ", ".join(sorted({"; ".join(read_json(layout.run_file(reports, layout.TRAIN, run_name(m, s)))
                                                       .get("identity", {}).get("installed_vs_lock", [])) or "exactly"
                                             for m, s in pairs})),
              "reference": None}
    if reference_reports is not None and (reference_reports / layout.TRAIN).is_dir() and \
            reference_reports.resolve() != reports.resolve():
        record["reference"] = reference_reports
        record["reference_status"] = reference.status(reference_reports)
    splits = read_json(split_summary)
    goal_table = goal_rows(runs, goals or {})
    text = TEMPLATES.get_template("comparison.md.j2").render(
        dataset=dataset, models=models, seeds=seeds_text(pairs), env=env, machine=machine_summary(env),
        comparison=markdown_table(comparison_rows(runs, tta)), details=markdown_table(detail_rows(runs)),
        goals=markdown_table(goal_table) if goal_table else "",
        published=markdown_table(dataset.published) if dataset.published else "",
        time_to_accuracy=markdown_table(time_to_accuracy_rows(tta)) if tta else "",
        recipes={name: recipe_line(r) for name, r in tta.items()},
        tta_machine=(lambda e: f"{machine_summary(e)}, {e['cpu_count']} CPUs, torch {e['torch']}.")(
            next(iter(tta.values()))["environment"]) if tta else "",
        compared=[m for m in models if m in claimed],
        pairwise=compared, record=record,
        vit_differences=DIFFERENCES_FROM_VIT if {"vit_writeup", "vit"} <= set(models) else [],
        split_seed=splits["seed"],
        split_counts=", ".join(f"{k} {v['count']:,}" for k, v in splits["splits"].items()),
    )
    out = reports / "comparison.md"
    write_text(out, text)
    return out
