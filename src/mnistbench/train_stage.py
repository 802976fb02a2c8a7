"""One model-seed pair: train it, track it in MLflow, write its weights, curves and record.

The matrix (matrix.py) calls `train` for every pair of the pipeline; a pair whose record holds today's identity
(identity.py: recipe, data, packages, and a canary of what the code computes) is skipped, so a comment or a
refactor retrains nothing. Each record also lists the hashes of the files the training ran (this module's
import closure, codebase.py), as information.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from mnistbench import codebase, data, environment, evaluate_stage, identity, layout, tracking, training
from mnistbench.config import Params, run_name
from mnistbench.figures import plot_curves
from mnistbench.files import atomic_path, csv_text, read_json, sha256_of, write_json, write_text
from mnistbench.models import build_model, count_parameters


def code_files() -> dict[str, str]:
    """The code a training runs (this module and what it imports), file by file, hashed."""
    return codebase.file_digests(Path(__file__))


def code_digest() -> str:
    return codebase.digest(code_files())


def is_current(reports: Path, run: str, weights: Path, params: Params, name: str, seed: int, today: dict,
               processed_dir: Path) -> bool:
    """Whether the pair's record (reports/train/<run>.json) is of this seed, holds today's identity (on another machine class, the record's own commit
    is replayed here: identity.judge), and `weights` are the bytes its training wrote, or, where they are not
    here and matrix.without_weights is keep (a record that grows by new seeds in a fresh clone), its recorded
    evaluation is of this training."""
    record = layout.run_file(reports, layout.TRAIN, run)
    if not record.is_file():
        return False
    made = read_json(record)
    if made.get("seed") != seed or "identity" not in made:
        return False
    if not weights.is_file():
        if params.matrix.without_weights == "retrain" or evaluate_stage.evaluation_differs(reports, run, made,
                                                                                             processed_dir):
            return False
    elif made.get("model_sha256") not in (None, sha256_of(weights)):
        print(f"{weights}: not the file its training wrote (its SHA-256 differs from {record}'s); trained again",
              file=sys.stderr)
        return False
    return not identity.judge(made["identity"], made["environment"]["git_commit"], today, params, name,
                              processed_dir)


def up_to_date(params: Params, name: str, seed: int, processed_dir: Path, models_dir: Path, reports: Path) -> bool:
    """Whether the pair's outputs already hold these settings' results (its record holds today's identity); says
    so when they do."""
    run = run_name(name, seed)
    recorded = [layout.run_file(reports, folder, run) for folder in (layout.TRAIN, layout.HISTORY)]
    if not all(path.is_file() for path in recorded):
        return False
    today = identity.identity(params, name, processed_dir)
    if not is_current(reports, run, models_dir / f"{run}.pt", params, name, seed, today, processed_dir):
        return False
    print(f"{run}: up to date (its record holds today's recipe, data, packages and canary), not trained again"
          + ("" if (models_dir / f"{run}.pt").is_file() else "; its weights are not here, its evaluation stands"))
    return True


def train(params: Params, name: str, seed: int, processed_dir: Path, models_dir: Path, reports: Path,
          checkpoints: Path, tags: dict | None = None) -> bool:
    """Train one model-seed pair; False when its outputs already hold these settings' results (skipped).
    `tags`: extra MLflow tags (a sweep's point)."""
    if up_to_date(params, name, seed, processed_dir, models_dir, reports):
        return False
    tp = params.train_for(name).model_copy(update={"threads": params.threads_for(name)})
    run = run_name(name, seed)
    today = identity.identity(params, name, processed_dir)  # before seeding: its canary draws from the RNGs
    record = layout.run_file(reports, layout.TRAIN, run)
    environment.make_deterministic(seed, tp.threads)
    device = environment.resolve_device(tp.device)
    precision = environment.resolve_precision(tp.precision, device)
    model = build_model(name, params)  # after seeding: the initial weights are reproducible
    section = params.model_section(name).model_dump(exclude={"train"})

    run_params = {"model": name, "seed": seed, "dataset": params.data.dataset, "split": params.split.model_dump(),
                  "train": tp.model_dump(), "arch": section, "precision": precision,
                  "parameters": count_parameters(model)}
    train_set = data.load_split(processed_dir, "train")
    valid_set = data.load_split(processed_dir, "valid")
    env = environment.describe(device)
    tags = {f"env.{k}": str(v) for k, v in env.items()} | {"mlflow.source.git.commit": env["git_commit"]} | (tags or {})
    checkpoint = training.Checkpoint(checkpoints / f"{run}.ckpt", training.fingerprint(run_params))
    saved = checkpoint.load()  # a killed training continues its MLflow run, as it continues its epochs
    resume = saved["meta"].get("mlflow_run_id") if saved and saved["epoch"] < tp.epochs else None

    # Inside the run: any failure, writing the outputs included, marks it FAILED.
    with tracking.start_run(params.mlflow.experiment, run, run_params, tags, resume=resume) as active:
        run_id = active.info.run_id
        checkpoint.meta = {"mlflow_run_id": run_id}
        logged = tracking.logged_steps(run_id, "valid_accuracy")
        if not logged:  # a new run; a resumed one has its inputs already
            for split, (images, labels) in (("train", train_set), ("valid", valid_set)):
                tracking.log_split(f"{params.data.dataset}-{split}", images, labels, data.digest(images),
                                   "training" if split == "train" else "validation")

        def on_epoch(record: dict) -> None:
            if record["epoch"] not in logged:  # a resumed run logged its first epochs before the kill
                tracking.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

        result = training.train(model, tp, train_set, valid_set, device, seed, checkpoint, on_epoch=on_epoch, name=run)
        tracking.log_metrics({"train_seconds": result.train_seconds, "images_per_second": result.images_per_second})
        tracking.log_model(model, data.to_float(valid_set[0][:4]))

        with atomic_path(models_dir / f"{run}.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        history_csv = layout.run_file(reports, layout.HISTORY, run)
        write_text(history_csv, csv_text(result.history))
        tracking.log_artifact(history_csv, "history")
        with tempfile.TemporaryDirectory() as scratch:
            curves = Path(scratch) / f"{run}_curves.png"
            plot_curves(run, pd.DataFrame(result.history), curves)
            tracking.log_artifact(curves, "figures")
        best = max(result.history, key=lambda r: r["valid_accuracy"])
        write_json(record, {
            "model": name,
            "seed": seed,
            "dataset": params.data.dataset,
            "mlflow_run_id": run_id,
            "mlflow_experiment": params.mlflow.experiment,
            "parameters": count_parameters(model),
            "epochs": tp.epochs,
            "batch_size": tp.batch_size,
            "optimizer": tp.optimizer,
            "lr": tp.lr,
            "schedule": tp.schedule,
            "precision": result.precision,
            "train_images": len(train_set[1]) if not tp.limit_train_images else min(tp.limit_train_images, len(train_set[1])),
            "best_valid_accuracy": best["valid_accuracy"],
            "best_valid_epoch": best["epoch"],
            "train_seconds": result.train_seconds,
            "wall_seconds": result.wall_seconds,
            "images_per_second": result.images_per_second,
            "environment": env,
            "model_sha256": sha256_of(models_dir / f"{run}.pt"),  # what evaluate checks before it loads the file
            "identity": today,  # what `mnistbench.reference` and the next run compare with today's
            "code_files": code_files(),  # information: which files the training ran, by hash
        })
    return True
