"""The report's side of MLflow: each model's trainings grouped under one run, and the best one registered.

Kept apart from tracking.py, which every training imports: the report's bookkeeping is not a training's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys

import mlflow

from mnistbench.tracking import _retry_transient, connect, tracking_uri

BEST_BY = "test_accuracy"  # the metric the alias `best` follows, over every version registered under a name


def summarize_models(experiment: str, runs: list[dict]) -> dict[str, int]:
    """Group each model's trainings in MLflow, and register its best one; return model -> trainings grouped.

    Per model (runs: dicts with model, seed, mlflow_run_id, test_accuracy), an aggregate run named after
    the model holds the mean, 95% interval and count of its trainings' test accuracy as sortable metrics,
    and the trainings become its child runs (the UI nests them). Its best training's model is registered
    as `<experiment>-<model>`, and the alias `best` names the version with the highest test accuracy of all
    versions registered there (another clone's included). Reruns over the same trainings add no run and no
    version."""
    from mnistbench.stats import mean_ci

    experiment_id = connect(experiment)
    client = mlflow.MlflowClient()
    aggregates = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        group = [r for r in runs if r["model"] == model and _exists(client, r["mlflow_run_id"])]
        if not group:
            continue
        children = sorted(r["mlflow_run_id"] for r in group)
        key = hashlib.sha256(" ".join(children).encode()).hexdigest()[:16]
        found = _retry_transient(client.search_runs, [experiment_id],
                                 filter_string=f"tags.`mnistbench.aggregate` = '{key}'", max_results=1)
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = _retry_transient(client.create_run, experiment_id, run_name=model, tags={
                "mnistbench.aggregate": key, "mnistbench.model": model,
                "mlflow.note.content": f"{model}: the test accuracy of its {len(group)} training(s), seeds "
                                       f"{', '.join(str(r['seed']) for r in group)}; they are this run's children."}).info.run_id
        accuracies = [r["test_accuracy"] for r in group]
        mean, half = mean_ci(accuracies)
        metrics = {"test_accuracy_mean": mean, "n": len(group), "test_accuracy_min": min(accuracies),
                   "test_accuracy_max": max(accuracies)} | ({} if len(group) < 2 else {"test_accuracy_ci95": half})
        for name, value in metrics.items():
            _retry_transient(client.log_metric, run_id, name, float(value))
        _retry_transient(client.set_terminated, run_id, "FINISHED")
        for child in children:
            _retry_transient(client.set_tag, child, "mlflow.parentRunId", run_id)
        best = max(group, key=lambda r: r["test_accuracy"])
        register_best(client, f"{experiment}-{model}", best["mlflow_run_id"])
        aggregates[model] = len(group)
    return aggregates


def _exists(client: mlflow.MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
        return True
    except mlflow.exceptions.MlflowException:
        print(f"warning: MLflow run {run_id} is not in {tracking_uri()}; left out of the model summary", file=sys.stderr)
        return False


def register_best(client: mlflow.MlflowClient, name: str, run_id: str) -> str:
    """Register `run_id`'s model under `name` unless a version of that run is there already, then point the
    alias `best` at the version whose run has the highest BEST_BY of all versions of `name`; returns it."""
    versions = _retry_transient(client.search_model_versions, f"name = '{name}'")
    if not any(v.run_id == run_id for v in versions):
        said = io.StringIO()
        try:  # MLflow prints three notes per registration: kept back unless it fails
            with contextlib.redirect_stderr(said):
                _retry_transient(mlflow.register_model, f"runs:/{run_id}/model", name)
        except Exception:
            sys.stderr.write(said.getvalue())
            raise
        versions = _retry_transient(client.search_model_versions, f"name = '{name}'")
    scored = [(_retry_transient(client.get_run, v.run_id).data.metrics.get(BEST_BY, float("-inf")), int(v.version), v)
              for v in versions if _exists(client, v.run_id)]
    score, _, best = max(scored, key=lambda t: (t[0], -t[1]))  # a tie: the earliest version
    _retry_transient(client.set_registered_model_alias, name, "best", best.version)
    _retry_transient(client.set_model_version_tag, name, best.version, "mnistbench.best_by",
                     f"highest {BEST_BY} ({score:.4f}) of the {len(scored)} versions registered")
    return best.version
