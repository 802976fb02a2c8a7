import multiprocessing
import os

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from mnistbench import tracking
from mnistbench.errors import MnistbenchError
from mnistbench.models.cnn import build_cnn


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    mlflow.end_run()


def test_run_logs_params_curves_model_and_tags(store, tmp_path):
    params = {"model": "cnn", "train": {"lr": 0.001, "epochs": 2}}
    with tracking.start_run("exp-a", "cnn", params, {"env.device": "cpu"}) as run:
        for epoch in (1, 2):
            tracking.log_metrics({"valid_accuracy": 0.5 + epoch / 10}, step=epoch)
        tracking.log_model(build_cnn(), torch.rand(2, 1, 28, 28))
    tracking.log_test_metrics("exp-a", run.info.run_id, {"test_accuracy": 0.75})

    client = MlflowClient(store)
    got = client.get_run(run.info.run_id)
    assert got.data.params == {"model": "cnn", "train.lr": "0.001", "train.epochs": "2"}
    assert got.data.tags["env.device"] == "cpu"
    assert got.data.metrics["test_accuracy"] == 0.75
    history = client.get_metric_history(run.info.run_id, "valid_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.6), (2, 0.7)]
    models = client.search_logged_models(experiment_ids=[got.info.experiment_id])
    assert len(models) == 1 and models[0].source_run_id == run.info.run_id
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the SQLite file


def test_unreachable_server_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(MnistbenchError, match=r"MLflow tracking store http://127.0.0.1:9 cannot be reached"):
        tracking.connect("exp")


def test_default_store_is_the_original_project_from_a_dvc_temp_copy(tmp_path, monkeypatch):
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    (copy / ".dvc").mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(copy))
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_a_deleted_experiment_is_named_with_the_way_out(store):
    experiment_id = tracking.connect("exp-gone")
    MlflowClient(store).delete_experiment(experiment_id)
    with pytest.raises(MnistbenchError, match=rf"MLflow experiment 'exp-gone' \(mlflow.experiment in params.yaml\) is "
                                              rf"deleted in .*mlflow experiments restore --experiment-id {experiment_id}"):
        tracking.start_run("exp-gone", "mlp-0", {}, {})


def test_an_mlflow_failure_is_one_clear_error(store):
    with tracking.start_run("exp-b", "mlp-0", {"a": 1}, {}):
        # MLflow refuses to change a logged param: the refusal comes back naming the store and the call
        with pytest.raises(MnistbenchError, match=r"MLflow tracking store sqlite:///.*: log_params failed \(Mlflow"):
            tracking._retry_transient(mlflow.log_params, {"a": 2})


def _log_one_split_at_the_barrier(uri: str, barrier, answers) -> None:
    """One training's start, in its own process: a run, then the split every training logs, all at once."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    with tracking.start_run("exp-race", f"mlp-{os.getpid()}", {}, {}):
        barrier.wait()
        try:
            tracking.log_split("train", torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long),
                               "ab" * 32, "training")
            answers.put("ok")
        except MnistbenchError as err:
            answers.put(str(err))


@pytest.mark.slow
def test_trainings_starting_at_once_all_log_the_split_they_share(store):
    """MLflow checks whether a dataset exists, then inserts it: runs that log one split at the same moment race
    for its row, and the losers' insert breaks a unique key. Each must retry and find the winner's row."""
    tracking.connect("exp-race")  # the store's tables exist before the race, as after a pipeline's first stage
    context = multiprocessing.get_context("spawn")
    n = 6
    barrier, answers = context.Barrier(n), context.Queue()
    processes = [context.Process(target=_log_one_split_at_the_barrier, args=(store, barrier, answers))
                 for _ in range(n)]
    try:
        for p in processes:
            p.start()
        got = [answers.get(timeout=300) for _ in processes]
        for p in processes:
            p.join(timeout=60)
    finally:
        for p in processes:  # a failed test leaves none of its processes waiting at the barrier
            if p.is_alive():
                p.kill()
    assert got == ["ok"] * n
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("exp-race").experiment_id])
    assert len(runs) == n and all(len(r.inputs.dataset_inputs) == 1 for r in runs)
    assert len({r.inputs.dataset_inputs[0].dataset.digest for r in runs}) == 1  # one dataset, shared


def test_a_read_only_store_is_named_in_one_line_not_buried_in_an_autoflush_message(monkeypatch):
    """SQLAlchemy reports SQLite's 'attempt to write a readonly database' inside a 'Query-invoked autoflush' text."""
    import sqlalchemy.exc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/store/mlflow.db")

    def write():
        raise sqlalchemy.exc.OperationalError("(raised as a result of Query-invoked autoflush; consider using a "
                                              "session.no_autoflush block ...)", {}, Exception(tracking.READ_ONLY))

    with pytest.raises(MnistbenchError) as raised:
        tracking._retry_transient(write)
    assert str(raised.value) == ("MLflow tracking store sqlite:////srv/store/mlflow.db: the database is read-only "
                                 "(SQLite: attempt to write a readonly database); expected a store this user can "
                                 "write: check the permissions of the file and its folder, or set MLFLOW_TRACKING_URI "
                                 "to another store")
