"""Stage `evaluate`: every trained pair of the pipeline on the 10,000 test images.

Per pair: test loss and accuracy, per-class accuracy, the confusion matrix (reports/metrics/), the
predictions (reports/predictions/, for `dvc plots` and the paired tests between models), four summary
numbers (reports/summary/, what `dvc metrics` reads), and the same numbers on the pair's MLflow run.
The files are written in a scratch folder and moved into place once MLflow took the same numbers: a failure
leaves the old ones. A pair whose weights are not here keeps its recorded evaluation when that is of the training
its record names, on today's test images (evaluation_differs); otherwise it is refused.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from mnistbench import data, environment, evaluation, layout, tracking
from mnistbench.config import Params, run_name
from mnistbench.errors import MnistbenchError
from mnistbench.figures import plot_confusion
from mnistbench.files import check_recorded_hash, csv_text, read_json, sha256_of, write_json, write_text
from mnistbench.models import build_model

OUTPUTS = (layout.METRICS, layout.PREDICTIONS, layout.SUMMARY)  # folders under reports/


def test_digest(processed_dir: Path) -> str:
    """A hash of the test split an evaluation reads; hashed once per process while the file stays as it was (a
    stage asks for every pair)."""
    test = (Path(processed_dir) / "test.pt").resolve()
    stat = test.stat()
    return _digest(test, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_of(path)[:16]


def evaluation_differs(reports: Path, run: str, trained: dict, processed_dir: Path) -> str | None:
    """None when reports/ holds an evaluation of the training whose record is `trained` (its MLflow run, and its
    weights' SHA-256 where the record has one) on today's test split, its predictions the bytes it wrote; else what
    is missing or differs. Such an evaluation stands without the weights: a reproduction grows by its new seeds
    without its older weights (docs/identity.md). What it computed (the forward pass in eval mode,
    evaluation.score) is the validation that the training's canary covers."""
    metrics, predictions, summary = (layout.run_file(reports, folder, run) for folder in OUTPUTS)
    missing = [str(p) for p in (metrics, predictions, summary) if not p.is_file()]
    if missing:
        return f"no recorded evaluation ({', '.join(missing)} missing)"
    tested = read_json(metrics)
    if tested.get("training") != trained.get("mlflow_run_id") or tested.get("model_sha256") != trained.get("model_sha256"):
        return f"{metrics} is not an evaluation of the training its record names (MLflow run or weights differ)"
    today = test_digest(processed_dir)
    if tested.get("test_data") != today:
        return f"{metrics} was evaluated on other test images ({tested.get('test_data')} -> {today})"
    if tested.get("predictions_sha256") != sha256_of(predictions):
        return f"{predictions}: not the bytes its evaluation wrote ({metrics} records another SHA-256)"
    return None


def evaluate(params: Params, name: str, seed: int, test_set, test_data: str, models_dir: Path, reports: Path,
             out: Path) -> dict:
    """Test one pair; write its files into the folders of `out` (a reports folder in the making); return its
    metrics. `test_data`: the test split's digest, recorded with what the evaluation is of."""
    tp = params.train_for(name)
    run = run_name(name, seed)
    environment.make_deterministic(seed, params.threads_for(name))
    device = environment.resolve_device(tp.device)
    model = evaluation.place(evaluation.load_weights(build_model(name, params), models_dir / f"{run}.pt"), device)
    images, labels = test_set
    metrics, predictions = evaluation.test_metrics(model, images, labels, tp.batch_size, device)
    trained = read_json(layout.run_file(reports, layout.TRAIN, run))
    write_text(layout.run_file(out, layout.PREDICTIONS, run),  # for `dvc plots show`'s confusion template, and McNemar's test
               csv_text([{"actual": a, "predicted": p} for a, p in zip(labels.tolist(), predictions.tolist())]))
    # What this evaluation is of: the weights, the test images, and the predictions file it wrote.
    metrics = {"model": name, "seed": seed, **metrics, "training": trained["mlflow_run_id"],
               "model_sha256": sha256_of(models_dir / f"{run}.pt"), "test_data": test_data,
               "predictions_sha256": sha256_of(layout.run_file(out, layout.PREDICTIONS, run))}
    write_json(layout.run_file(out, layout.METRICS, run), metrics)
    write_json(layout.run_file(out, layout.SUMMARY, run), {
        "test_accuracy": metrics["test_accuracy"], "test_loss": metrics["test_loss"],
        "parameters": trained["parameters"], "train_seconds": round(trained["train_seconds"], 1)})
    with tempfile.TemporaryDirectory() as scratch:
        confusion, tested = Path(scratch) / f"{run}_confusion.png", Path(scratch) / f"{run}.json"
        plot_confusion(run, metrics["confusion_matrix"], confusion)
        shutil.copyfile(layout.run_file(out, layout.METRICS, run), tested)
        tracking.log_test_metrics(
            params.mlflow.experiment, trained["mlflow_run_id"],
            {k: metrics[k] for k in ("test_accuracy", "test_loss", "test_loss_writeup")},
            artifacts={confusion: "figures", tested: "test"},
        )
    return metrics


def evaluate_all(params: Params, processed_dir: Path, models_dir: Path, reports: Path,
                 only: tuple[str, int] | None = None) -> None:
    """Every pair of params.runs(), into fresh output folders that replace the old ones whole; with `only`,
    one pair, whose files join the other pairs' there. Nothing lands unless every pair was evaluated."""
    runs = [only] if only else params.runs()
    kept = []  # pairs whose weights are not here and whose recorded evaluation stands for them
    for name, seed in runs:  # every model file is the one its training wrote, before anything is evaluated
        run = run_name(name, seed)
        record = layout.run_file(reports, layout.TRAIN, run)
        trained = read_json(record) if record.is_file() else {}
        weights = models_dir / f"{run}.pt"
        if not weights.is_file() and trained:
            differs = evaluation_differs(reports, run, trained, processed_dir)
            if differs:
                raise MnistbenchError(f"{weights}: not here, and {differs}: fetch the weights (`make pull`) or "
                                      f"delete {record} so that `dvc repro` trains the pair again")
            kept.append(run)
        elif trained.get("model_sha256"):
            check_recorded_hash(weights, trained["model_sha256"], record)
    test_set = data.load_split(processed_dir, "test")
    test_data = test_digest(processed_dir)
    for name in OUTPUTS:  # before MLflow takes any number: a destination that cannot be written fails first
        destination = reports / name
        if destination.exists() and not destination.is_dir():
            raise MnistbenchError(f"{destination}: not a folder; expected the folder of the evaluate stage's {name}")
    reports.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".evaluate.tmp-", dir=reports) as scratch:
        out = {name: Path(scratch) / name for name in OUTPUTS}
        for folder in out.values():
            folder.mkdir()
        for name, seed in tqdm(runs, desc="evaluate", unit="model", file=sys.stdout, disable=len(runs) < 2):
            if run_name(name, seed) in kept:
                for folder in OUTPUTS:
                    shutil.copy2(layout.run_file(reports, folder, run_name(name, seed)), out[folder])
                continue
            m = evaluate(params, name, seed, test_set, test_data, models_dir, reports, Path(scratch))
            print(f"{run_name(name, seed)}: test accuracy {m['test_accuracy']:.4f} ({m['test_correct']}/{m['test_count']}), "
                  f"loss {m['test_loss']:.4f}")
        for name, folder in out.items():
            if only:
                (reports / name).mkdir(exist_ok=True)
                for file in folder.iterdir():
                    os.replace(file, reports / name / file.name)
            else:
                shutil.rmtree(reports / name, ignore_errors=True)
                os.replace(folder, reports / name)
    if kept:
        per_model = Counter(run.rsplit("-", 1)[0] for run in kept)
        print(f"{len(kept)} recorded evaluations kept ({', '.join(f'{m} x{n}' for m, n in per_model.items())}): their "
              f"weights are not here, and each is of the training its record names, on these test images")
