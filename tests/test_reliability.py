"""Guarantees that need real processes: resume after SIGKILL, concurrent MLflow writers, bad input at the CLI."""

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from conftest import AS_FROM_A_TERMINAL, ROOT, run_stage, write_idx




def fake_processed(folder: Path, n_train=6000, n_valid=500) -> Path:
    g = torch.Generator().manual_seed(0)
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("valid", n_valid), ("test", n_valid)):
        torch.save({"images": torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g),
                    "labels": torch.randint(0, 10, (n,), generator=g)}, folder / f"{name}.pt")
    return folder


def tiny_params(path: Path, epochs=3) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["epochs"] = epochs
    path.write_text(yaml.safe_dump(params))
    return path


def train_cmd(workdir: Path, processed: Path, params: Path, model="cnn") -> list[str]:
    return [sys.executable, str(ROOT / "stages" / "train.py"), model, "--seed", "0", "--data", str(processed),
            "--params", str(params), "--models-dir", str(workdir / "models"), "--reports", str(workdir / "reports"),
            "--checkpoints", str(workdir / "checkpoints")]


def state_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for name, tensor in torch.load(path, weights_only=True).items():
        digest.update(name.encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_resumes_to_identical_results(tmp_path, env):
    processed = fake_processed(tmp_path / "processed")
    params = tiny_params(tmp_path / "params.yaml")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(train_cmd(straight, processed, params), check=True, capture_output=True,
                   env=env | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'straight.db'}"})

    proc = subprocess.Popen(train_cmd(killed, processed, params), env=env, stderr=subprocess.PIPE, text=True)
    checkpoint = killed / "checkpoints" / "cnn-0.ckpt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), "no checkpoint after the first epoch"  # written at its end: epoch 2 has begun
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "models" / "cnn-0.pt").exists()  # nothing half-written
    epoch_at_kill = torch.load(checkpoint, weights_only=True)["epoch"]
    assert epoch_at_kill < 3

    rerun = subprocess.run(train_cmd(killed, processed, params), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming from {checkpoint} after epoch {epoch_at_kill}" in rerun.stderr
    assert state_hash(killed / "models" / "cnn-0.pt") == state_hash(straight / "models" / "cnn-0.pt")
    strip = lambda f: [{k: v for k, v in r.items() if k != "epoch_seconds"}  # noqa: E731
                       for r in csv.DictReader(open(f))]
    assert strip(killed / "reports" / "history" / "cnn-0.csv") == strip(straight / "reports" / "history" / "cnn-0.csv")
    # One training is one MLflow run, across the kill: continued, whole, no step twice, not left RUNNING.
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("mnistbench").experiment_id])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("cnn-0", "FINISHED")]
    for metric in ("train_loss", "valid_accuracy"):
        assert [m.step for m in client.get_metric_history(runs[0].info.run_id, metric)] == [1, 2, 3]
    assert len(client.get_run(runs[0].info.run_id).inputs.dataset_inputs) == 2  # logged once, not again on resume


@pytest.mark.slow
def test_a_killed_run_that_is_not_resumed_is_marked_killed(tmp_path, env):
    processed = fake_processed(tmp_path / "processed", n_train=1000, n_valid=200)
    params = tiny_params(tmp_path / "params.yaml", epochs=50)
    proc = subprocess.Popen(train_cmd(tmp_path, processed, params), env=env, stderr=subprocess.DEVNULL)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "checkpoints" / "cnn-0.ckpt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (tmp_path / "checkpoints" / "cnn-0.ckpt").unlink()  # its checkpoint gone: the rerun starts a new run
    tiny_params(params, epochs=1)
    subprocess.run(train_cmd(tmp_path, processed, params), env=env, check=True, capture_output=True)
    runs = client.search_runs([client.get_experiment_by_name("mnistbench").experiment_id], order_by=["start_time"])
    assert [r.info.status for r in runs] == ["KILLED", "FINISHED"]


@pytest.mark.slow
def test_a_diverging_training_fails_its_stage_and_its_run_and_writes_nothing(tmp_path, env):
    processed = fake_processed(tmp_path / "processed", n_train=512, n_valid=64)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(epochs=2, optimizer="sgd", lr=1.0e10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(train_cmd(tmp_path, processed, tmp_path / "params.yaml", model="mlp"), env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: mlp-0: the training loss is not finite (nan) at epoch 1, step" in result.stderr
    assert "lower the learning rate" in result.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    [run] = client.search_runs([client.get_experiment_by_name("mnistbench").experiment_id])
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_an_unreachable_tracking_server_fails_in_seconds(tmp_path):
    processed = fake_processed(tmp_path / "processed", n_train=64, n_valid=64)
    params = tiny_params(tmp_path / "params.yaml", epochs=1)
    # MLflow's own retries take minutes against a silent server; the probe answers in seconds. The timeout
    # is a bound on a hang, not a measurement.
    result = subprocess.run(train_cmd(tmp_path, processed, params, model="mlp"), capture_output=True, text=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: MLflow tracking store http://127.0.0.1:9 cannot be reached" in result.stderr
    assert not (tmp_path / "models").exists()


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


# A checkpoint is read inside the training (its resume), which the fast tier does not start: that case is slow.
@pytest.mark.parametrize("what", ["model", pytest.param("checkpoint", marks=pytest.mark.slow)])
def test_a_tampered_file_is_refused_without_unsafe_advice(tmp_path, env, what):
    processed = fake_processed(tmp_path / "processed", n_train=64, n_valid=64)
    params = tiny_params(tmp_path / "params.yaml", epochs=1)
    if what == "model":
        (tmp_path / "models").mkdir()
        torch.save({"weight": Payload()}, tmp_path / "models" / "cnn-0.pt")
        result = run_stage("evaluate.py", "cnn", "--seed", "0", "--data", processed, "--params", params,
                           "--models-dir", tmp_path / "models", "--reports", tmp_path / "reports", cwd=tmp_path,
                           env={"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
    else:
        (tmp_path / "checkpoints").mkdir()
        torch.save({"fingerprint": Payload()}, tmp_path / "checkpoints" / "cnn-0.ckpt")
        result = subprocess.run(train_cmd(tmp_path, processed, params), cwd=tmp_path, env=env, capture_output=True,
                                text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not a plain tensor file; refusing to load it" in result.stderr and "delete it and rerun" in result.stderr
    assert "weights_only" not in result.stderr and not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_evaluate_writes_its_files_and_its_mlflow_metrics_together(tmp_path, env):
    processed = fake_processed(tmp_path / "processed", n_train=256, n_valid=64)
    params = tiny_params(tmp_path / "params.yaml", epochs=1)
    subprocess.run(train_cmd(tmp_path, processed, params, model="mlp"), env=env, check=True, capture_output=True)
    evaluate = [sys.executable, str(ROOT / "stages" / "evaluate.py"), "mlp", "--seed", "0", "--data", str(processed),
                "--params", str(params), "--models-dir", str(tmp_path / "models"), "--reports", str(tmp_path / "reports")]
    (tmp_path / "reports" / "predictions").write_text("")  # a file where a folder must go: writing fails
    result = subprocess.run(evaluate, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    [run] = client.search_runs([client.get_experiment_by_name("mnistbench").experiment_id])
    assert "test_accuracy" not in run.data.metrics and not (tmp_path / "reports" / "metrics" / "mlp-0.json").exists()
    (tmp_path / "reports" / "predictions").unlink()
    result = subprocess.run(evaluate, env=env | {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and not (tmp_path / "reports" / "metrics" / "mlp-0.json").exists()
    subprocess.run(evaluate, env=env, check=True, capture_output=True)
    written = json.loads((tmp_path / "reports" / "metrics" / "mlp-0.json").read_text())
    assert client.get_run(run.info.run_id).data.metrics["test_accuracy"] == written["test_accuracy"]


@pytest.mark.slow
def test_a_model_file_whose_bytes_changed_after_training_is_refused_by_evaluate_and_retrained_by_train(tmp_path, env):
    """torch.load checks no CRC: a flipped byte inside a weight loads and evaluates to another accuracy, silently.
    The training records its file's SHA-256; evaluate checks it before loading anything, train retrains."""
    processed = fake_processed(tmp_path / "processed", n_train=256, n_valid=64)
    params = tiny_params(tmp_path / "params.yaml", epochs=1)
    subprocess.run(train_cmd(tmp_path, processed, params, model="mlp"), env=env, check=True, capture_output=True)
    weights = tmp_path / "models" / "mlp-0.pt"
    intact = weights.read_bytes()
    flipped = bytearray(intact)
    flipped[len(flipped) // 2] ^= 0x01  # inside the first layer's weights: the file still loads
    weights.write_bytes(bytes(flipped))
    evaluate = [sys.executable, str(ROOT / "stages" / "evaluate.py"), "mlp", "--seed", "0", "--data", str(processed),
                "--params", str(params), "--models-dir", str(tmp_path / "models"), "--reports", str(tmp_path / "reports")]
    result = subprocess.run(evaluate, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {weights}: its SHA-256" in result.stderr and "reports/train/mlp-0.json recorded" in result.stderr
    assert not (tmp_path / "reports" / "metrics").exists()
    again = subprocess.run(train_cmd(tmp_path, processed, params, model="mlp"), env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "not the file its training wrote" in again.stderr
    assert weights.read_bytes() == intact  # retrained, bit for bit the same weights


def test_non_utf8_params_stop_a_stage_without_a_traceback(tmp_path):
    (tmp_path / "params.yaml").write_bytes(b"train:\n  optimizer: ad\xe9m\n")
    result = run_stage("download.py", "--out", tmp_path / "raw", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "params.yaml: not UTF-8 text (byte 0xe9 at offset 22)" in result.stderr


@pytest.mark.slow
def test_three_concurrent_trainings_share_one_sqlite_store(tmp_path, env):
    processed = fake_processed(tmp_path / "processed", n_train=1000, n_valid=200)
    params = tiny_params(tmp_path / "params.yaml", epochs=4)
    procs = [subprocess.Popen(train_cmd(tmp_path / f"w{i}", processed, params, model=m), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, m in enumerate(["mlp", "cnn", "vit"])]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        assert "database is locked" not in err
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("mnistbench").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["cnn-0", "mlp-0", "vit-0"]
    for r in runs:
        assert r.info.status == "FINISHED"
        for metric in ("train_loss", "valid_accuracy", "valid_loss"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, metric)] == [1, 2, 3, 4]


@pytest.mark.parametrize("change,message", [
    ({"train": {"epochs": 0}}, "train.epochs: Input should be greater than 0 (found 0)"),
    ({"train": {"lr": "fast"}}, "train.lr: Input should be a valid number"),
    ({"train": {"epocs": 3}}, "train.epocs: unknown key 'epocs': expected one of epochs"),
    ({"split": {"valid_size": 1}}, "must be 60000 (the MNIST training set), found 48000 + 1"),
    ({"pipeline": {"models": ["mlp", "resnet"]}}, "unknown model name 'resnet'"),
])
def test_bad_params_stop_a_stage_with_a_named_key(tmp_path, change, message):
    """The first stage that reads the bad section stops before any work: download reads data and split only,
    the train stage the whole file."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in change.items():
        params[section].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    if "split" in change:
        result = run_stage("download.py", "--out", tmp_path / "raw", cwd=tmp_path)
    else:
        result = run_stage("train.py", "--data", tmp_path / "processed", "--models-dir", tmp_path / "raw",
                           "--reports", tmp_path / "raw", "--checkpoints", tmp_path / "raw", cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "raw").exists()


def test_checkpoint_from_another_architecture(tmp_path):
    processed = fake_processed(tmp_path / "processed", n_train=64, n_valid=64)
    (tmp_path / "models").mkdir()
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "models" / "cnn-0.pt")
    result = run_stage("evaluate.py", "cnn", "--seed", "0", "--data", processed, "--params", ROOT / "params.yaml",
                       "--models-dir", tmp_path / "models", "--reports", tmp_path / "reports")
    assert result.returncode == 1
    assert "cnn-0.pt: checkpoint does not fit the Sequential built from params.yaml" in result.stderr
    assert not (tmp_path / "reports" / "metrics").exists()


def test_output_folder_that_cannot_be_written(tmp_path, mnist_dir):
    # A folder below a regular file cannot be created, whoever runs the test (root included).
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = run_stage("download.py", "--out", blocker / "raw", cwd=ROOT, env={"MNIST_DIR": mnist_dir})
    assert result.returncode == 1
    assert "error: " in result.stderr and "not-a-folder" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_download_stops_the_stage_and_leaves_no_output(tmp_path, mnist_dir):
    local = tmp_path / "mnist"
    shutil.copytree(mnist_dir, local)
    (local / "train-images-idx3-ubyte.gz").chmod(0o644)
    (local / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
    result = run_stage("download.py", "--out", tmp_path / "raw", cwd=ROOT, env={"MNIST_DIR": local})
    assert result.returncode == 1
    assert "train-images-idx3-ubyte.gz: corrupt or truncated gzip data" in result.stderr
    assert not (tmp_path / "raw").exists()


def test_an_empty_test_set_is_refused_by_the_split_stage(tmp_path, mnist_dir):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copyfile(mnist_dir / name, raw / name)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.zeros((0,)))
    result = run_stage("split.py", "--raw", raw, "--out", tmp_path / "processed", "--summary", tmp_path / "split.json",
                       "--params", ROOT / "params.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "t10k-images-idx3-ubyte.gz: holds 0 images" in result.stderr
    assert not (tmp_path / "processed").exists() and not (tmp_path / "split.json").exists()


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """SIGKILL runs no cleanup; the next write of the same output removes what a dead process left."""
    from mnistbench.files import atomic_dir
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    orphan = tmp_path / f".processed.tmp-{dead}"
    (orphan / "train.pt").parent.mkdir()
    (orphan / "train.pt").write_bytes(b"half")
    with atomic_dir(tmp_path / "processed") as out:
        (out / "train.pt").write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]


def test_a_failed_write_that_names_no_file_is_given_the_path_being_written(tmp_path):
    """A full disk fails in write(), whose error names no file; the message names the output."""
    from mnistbench.files import atomic_path
    with pytest.raises(OSError) as err:
        with atomic_path(tmp_path / "reports" / "metrics.json"):
            raise OSError(28, "No space left on device")
    assert str(err.value) == f"[Errno 28] No space left on device: '{tmp_path / 'reports' / 'metrics.json'}'"
    assert not list((tmp_path / "reports").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stage_stopped_by_a_signal_removes_its_temporary_output(tmp_path, sig):
    script = tmp_path / "stage.py"
    script.write_text(
        "import sys, threading\n"
        "from mnistbench.errors import exit_on_error\n"
        "from mnistbench.files import atomic_dir\n"
        "@exit_on_error\n"
        "def main():\n"
        f"    with atomic_dir({str(tmp_path / 'out')!r}) as tmp:\n"
        "        (tmp / 'part').write_text('x')\n"
        "        print('writing', flush=True)\n"
        "        threading.Event().wait()\n"
        "main()\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **AS_FROM_A_TERMINAL)
    try:
        assert proc.stdout.readline() == "writing\n"  # the temporary folder exists now
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a no-op once it exited; a failed test leaves no stage waiting forever
    assert proc.returncode == 128 + sig and "Traceback" not in err, err
    assert err.startswith(f"error: stopped by {signal.Signals(sig).name}") and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage.py"], err
