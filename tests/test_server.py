"""`make server`'s MLflow server on a real PostgreSQL cluster: clones logging at once lose nothing, and a server
that stops mid-run fails the training in seconds with a message naming it."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import ROOT
from mnistbench import server, settings, tracking  # noqa: F401  (tracking sets MLflow's retries)
from test_reliability import fake_processed, tiny_params, train_cmd

pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and not (shutil.which("initdb") or server.glob.glob("/usr/lib/postgresql/*/bin/initdb")),
    reason="PostgreSQL is not installed (`make postgresql` installs it; under CI this is a failure, not a skip)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def a_server():
    """A server of the test's own (PostgreSQL + MLflow), stopped and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="mnistbench-server-"))
    os.chmod(folder, 0o755)  # run as root, the cluster belongs to `postgres`, which must reach it (pytest's tmp is 0700)
    url = server.start(folder, free_port(), free_port())
    yield folder, url
    server.stop(folder)
    shutil.rmtree(folder, ignore_errors=True)


tracking_server = pytest.fixture(scope="module")(a_server)  # shared by the tests that leave it running
own_server = pytest.fixture(a_server)  # for a test that stops it: any order of the tests stays valid


def trainer(tmp_path, url, seed, epochs, model="mlp"):
    work = tmp_path / f"{model}-{seed}"
    processed = fake_processed(work / "processed", n_train=512, n_valid=64)
    cmd = train_cmd(work, processed, tiny_params(work / "params.yaml", epochs=epochs), model=model)
    cmd[cmd.index("--seed") + 1] = str(seed)
    return subprocess.Popen(cmd, env={**os.environ, "MLFLOW_TRACKING_URI": url}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def until_each_logged_an_epoch(url: str, trainings: list[subprocess.Popen], names: list[str], timeout=300) -> None:
    """Return once the run of each name (one per training) has logged a validation epoch."""
    client = MlflowClient(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = [t for t in trainings if t.poll() is not None]
        assert not ended, f"a training ended before the fault: {ended[0].communicate()[1][-2000:]}"
        experiment = client.get_experiment_by_name("mnistbench")
        runs = [run for name in names if experiment
                for run in client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")]
        if len(runs) == len(names) and all(client.get_metric_history(r.info.run_id, "valid_accuracy") for r in runs):
            return
        time.sleep(0.5)
    raise AssertionError(f"no epoch logged by each of {names} within {timeout} s")


@pytest.mark.slow
def test_two_clones_log_at_once_and_nothing_is_lost(tracking_server, tmp_path):
    _, url = tracking_server
    trainings = [trainer(tmp_path, url, seed, epochs=3) for seed in (0, 1)]  # two processes, as two clones
    for t in trainings:
        out, err = t.communicate(timeout=600)
        assert t.returncode == 0, err[-2000:]
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("mnistbench")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["mlp-0", "mlp-1"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(r.info.run_id, "valid_accuracy")] == [1, 2, 3]
        assert r.info.artifact_uri.startswith("mlflow-artifacts:")  # stored by the server, not by the client
        history = client.download_artifacts(r.info.run_id, f"history/{r.info.run_name}.csv", str(tmp_path))
        assert len(Path(history).read_text().splitlines()) == 1 + 3  # a header and an epoch per line
    models = client.search_logged_models([experiment.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(r.info.run_id for r in runs)


@pytest.mark.slow
def test_ray_workers_log_every_run_and_epoch_to_the_server(tracking_server, tmp_path):
    _, url = tracking_server
    processed = fake_processed(tmp_path / "processed", n_train=512, n_valid=64)
    params = yaml.safe_load(tiny_params(tmp_path / "params.yaml", epochs=3).read_text())
    params["pipeline"]["models"], params["seeds"]["train"] = ["mlp", "cnn"], [0, 1]
    params["matrix"]["executor"], params["mlflow"]["experiment"] = "ray", "ray-workers"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, str(ROOT / "stages" / "train.py"), "--data", str(processed), "--params",
           str(tmp_path / "params.yaml"), "--models-dir", str(tmp_path / "models"), "--reports",
           str(tmp_path / "reports"), "--checkpoints", str(tmp_path / "checkpoints")]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"MLFLOW_TRACKING_URI": url}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    client = MlflowClient(url)
    runs = client.search_runs([client.get_experiment_by_name("ray-workers").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["cnn-0", "cnn-1", "mlp-0", "mlp-1"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(r.info.run_id, "valid_accuracy")] == [1, 2, 3]


@pytest.mark.slow
def test_a_taken_port_is_refused_before_anything_starts():
    folder = Path(tempfile.mkdtemp(prefix="mnistbench-server-"))
    os.chmod(folder, 0o755)
    with socket.socket() as taken:  # a program of this test's own listening where the MLflow server would
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "mnistbench.server", "start", "--dir", str(folder),
                               "--pg-port", str(free_port()), "--port", str(port)], capture_output=True, text=True,
                              timeout=120)
    try:
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip() == (f"error: 127.0.0.1:{port}: another program listens there; expected a free port "
                                       "for the MLflow server (--port): stop that program or choose another port")
        assert not (folder / "postgres").exists()  # no PostgreSQL was started, so none is left running
    finally:
        server.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_server_stopping_mid_run_fails_the_training_in_seconds(own_server, tmp_path):
    folder, url = own_server
    training = trainer(tmp_path, url, seed=7, epochs=400)
    until_each_logged_an_epoch(url, [training], ["mlp-7"])
    server.stop_mlflow(folder)
    stopped = time.monotonic()
    try:
        _, err = training.communicate(timeout=90)
    finally:
        training.kill()
    failed_after = time.monotonic() - stopped
    print(f"training failed {failed_after:.1f} s after the server stopped")
    assert training.returncode == 1 and failed_after < 60
    assert f"MLflow tracking store {url}" in err and "Traceback" not in err


# What the client promises when its server stops answering: MLflow's request, retried 3 times with backoff 1 s (1 +
# 2 + 4 s), each within MLFLOW_HTTP_REQUEST_TIMEOUT (tracking.py sets these), then one question of the database.
PROMISED_S = 4 * int(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", 20)) + 7 + 2 * settings.PROBE_TIMEOUT_S


@pytest.mark.slow
def test_postgresql_dying_under_the_server_fails_the_running_trainings_within_a_minute(tmp_path):
    """The database, not the server, goes: the server answers with errors, and each training gives up after the
    client's retries with one line naming the store and saying its database is gone (docs/failing-loudly.md's "about
    20-30 s" is this test's time on an idle machine); `make server` then starts both again, and stops an MLflow whose
    pid file is lost."""
    folder = Path(tempfile.mkdtemp(prefix="mnistbench-server-"))
    os.chmod(folder, 0o755)
    pg_port, port = free_port(), free_port()
    url = server.start(folder, pg_port, port)
    trainings = [trainer(tmp_path, url, seed, epochs=400) for seed in (0, 1)]
    try:
        until_each_logged_an_epoch(url, trainings, ["mlp-0", "mlp-1"])
        postmaster = int((folder / "postgres" / "postmaster.pid").read_text().split()[0])  # the cluster this test made
        mlflow_server = psutil.Process(int((folder / "mlflow.pid").read_text()))
        ours = [*psutil.Process(postmaster).children(recursive=True), mlflow_server,
                *mlflow_server.children(recursive=True)]
        os.kill(postmaster, signal.SIGKILL)
        killed = time.monotonic()
        for training in trainings:
            _, err = training.communicate(timeout=120)
            failed_after = time.monotonic() - killed
            print(f"training failed {failed_after:.1f} s after PostgreSQL was killed: {err.strip().splitlines()[-1:]}")
            assert training.returncode == 1 and failed_after < 2 * PROMISED_S, err[-2000:]  # 2x: a busy machine
            assert f"MLflow tracking store {url}" in err and "Traceback" not in err
            # The server answers 503 with the database's error, or (busy retrying it) not within 10 s: either way said.
            assert "the server answers, but not from its database" in err or \
                "did not answer a question of its database" in err, err[-2000:]
        assert not server.healthy(url)  # MLflow's /health still says OK; a question of its database does not
        # `make server` again: its own MLflow, still running without a database, is started again, not "another
        # program"; then the server stops without its pid file (an orphan), found by its folder.
        assert server.start(folder, pg_port, port) == url and server.healthy(url)
        restarted = server.our_mlflow(folder)
        assert restarted and mlflow_server.pid not in {p.pid for p in restarted}
        ours += restarted
        (folder / "mlflow.pid").unlink()
    finally:
        for training in trainings:
            training.kill()
        server.stop(folder)  # the server, and PostgreSQL if the test failed before killing it
        shutil.rmtree(folder, ignore_errors=True)
    # PostgreSQL's backends notice their postmaster died and exit; `server.stop` ends the MLflow server's group.
    _, left = psutil.wait_procs(ours, timeout=120)  # returns as soon as they are gone
    assert not left, f"still running: {[p.pid for p in left]}"
