"""What an MLflow user sees, checked through MLflow's client on a real store: trainings run by the real stage
scripts, then the report stage's model summary."""

import json
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT
from mnistbench import evaluate_stage, registry, tracking, train_stage
from mnistbench.config import load_params
from test_reliability import fake_processed, tiny_params


# Tracked files changed in this checkout, other than what the pipeline writes (locks, reports)
DIRTY = [line for line in subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                         capture_output=True, text=True).stdout.splitlines()
         if not tracking.written_by_pipeline(line[3:])]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """mlp seeds 0 and 1 and cnn seed 0, trained and evaluated (1 epoch on random images) by the functions the stage
    scripts call, in this process (what is checked is what lands in MLflow), then summarized."""
    work = tmp_path_factory.mktemp("mlflow-facts")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    processed = fake_processed(work / "processed", n_train=256, n_valid=64)
    params = load_params(tiny_params(work / "params.yaml", epochs=1))
    records = []
    for model, seed in (("mlp", 0), ("mlp", 1), ("cnn", 0)):
        train_stage.train(params, model, seed, processed, work / "models", work / "reports", work / "checkpoints")
        evaluate_stage.evaluate_all(params, processed, work / "models", work / "reports", only=(model, seed))
        trained = json.loads((work / "reports" / "train" / f"{model}-{seed}.json").read_text())
        tested = json.loads((work / "reports" / "metrics" / f"{model}-{seed}.json").read_text())
        records.append({"model": model, "seed": seed, "mlflow_run_id": trained["mlflow_run_id"],
                        "test_accuracy": tested["test_accuracy"]})
    registry.summarize_models("mnistbench", records)
    registry.summarize_models("mnistbench", records)  # a rerun of the report stage: nothing doubles
    yield MlflowClient(uri), records
    mp.undo()


@pytest.mark.slow
def test_the_experiment_opens_on_training_runs_with_accuracy_model_and_seed_columns(store):
    client, _ = store
    tags = client.get_experiment_by_name("mnistbench").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(tags["mlflow.sharedViewState.mnistbench"])  # what `make ui`'s links open
    assert {"metrics.`test_accuracy`", "params.`model`", "params.`seed`"} <= set(view["selectedColumns"])
    assert view["orderByKey"] == "metrics.`test_accuracy`" and view["orderByAsc"] is False


@pytest.mark.slow
def test_a_training_run_has_its_data_curves_artifacts_and_lineage(store):
    client, records = store
    run = client.get_run(records[0]["mlflow_run_id"])
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"mnist-train", "mnist-valid"} and all(len(d.dataset.digest) == 20 for d in inputs.values())
    assert "epoch" not in run.data.metrics and "parameters" not in run.data.metrics  # step-indexed: per epoch only
    assert run.data.params["parameters"] == "89610" and run.data.params["seed"] == "0"
    assert run.data.tags["mlflow.source.git.commit"]
    assert run.data.tags["mnistbench.git_dirty"] == str(bool(DIRTY)).lower()  # the pipeline's own outputs aside
    artifacts = {f.path for folder in ("history", "figures", "test")
                 for f in client.list_artifacts(run.info.run_id, folder)}
    assert artifacts == {"history/mlp-0.csv", "figures/mlp-0_curves.png", "figures/mlp-0_confusion.png", "test/mlp-0.json"}


@pytest.mark.slow
def test_each_model_groups_its_seeds_under_an_aggregate_run(store):
    client, records = store
    experiment = client.get_experiment_by_name("mnistbench").experiment_id
    aggregates = client.search_runs([experiment], filter_string="tags.`mnistbench.model` != ''",
                                    order_by=["metrics.test_accuracy_mean DESC"])
    assert sorted(r.info.run_name for r in aggregates) == ["cnn", "mlp"]  # one each, after two summaries
    mlp = next(r for r in aggregates if r.info.run_name == "mlp")
    accuracies = [r["test_accuracy"] for r in records if r["model"] == "mlp"]
    assert mlp.data.metrics["n"] == 2 and mlp.data.metrics["test_accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    assert "test_accuracy_ci95" in mlp.data.metrics and mlp.info.status == "FINISHED"
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{mlp.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["mlp-0", "mlp-1"]


@pytest.mark.slow
def test_the_best_training_of_each_model_is_registered_with_an_alias(store):
    client, records = store
    best = max((r for r in records if r["model"] == "mlp"), key=lambda r: r["test_accuracy"])
    version = client.get_model_version_by_alias("mnistbench-mlp", "best")
    assert version.run_id == best["mlflow_run_id"]
    assert len(client.search_model_versions("name='mnistbench-mlp'")) == 1  # the second summary registered nothing


@pytest.mark.slow
def test_best_follows_the_metric_over_every_version_not_the_last_report(store):
    """Another clone (or a queued experiment) that reports a worse training later registers it, but `best` stays
    on the best version; reporting the same training again adds no version. Under a name of its own: the
    module's registry stays as the report left it."""
    client, records = store
    mlp = [r for r in records if r["model"] == "mlp"]
    best = max(mlp, key=lambda r: r["test_accuracy"])
    [other] = [r for r in mlp if r is not best]
    name = "mnistbench-mlp-best-check"
    for run in (other, best, other, best):  # the worse first, then both again
        registry.register_best(client, name, run["mlflow_run_id"])
    versions = client.search_model_versions(f"name='{name}'")
    assert sorted(v.run_id for v in versions) == sorted([best["mlflow_run_id"], other["mlflow_run_id"]])
    chosen = client.get_model_version_by_alias(name, "best")
    tie = best["test_accuracy"] == other["test_accuracy"]  # then the earliest version: the worse one came first
    assert chosen.run_id == (other if tie else best)["mlflow_run_id"]
    assert chosen.tags["mnistbench.best_by"] == f"highest test_accuracy ({best['test_accuracy']:.4f}) of the 2 versions registered"
