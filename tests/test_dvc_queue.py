"""DVC's own queue (`dvc exp run --queue`, `dvc queue start`) runs each experiment in a copy of the project under
.dvc/tmp/exps/: the data folder and the MLflow store must still be the project's."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mnistbench.scratch import copy_project

LEARNING_RATES = ("0.001", "0.002")


def dvc(args, project, env, timeout=120):
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for_queue(project, env, names, deadline_s):
    """`dvc queue status` until every named task has ended (Success or Failed); their statuses."""
    deadline = time.monotonic() + deadline_s
    while True:
        status = dvc(["queue", "status"], project, env).stdout
        ended = {line.split()[1]: line.split()[-1] for line in status.splitlines()
                 if len(line.split()) >= 4 and line.split()[1] in names and line.split()[-1] in ("Success", "Failed")}
        if len(ended) == len(names) or time.monotonic() > deadline:
            return ended, status
        time.sleep(2)  # polling DVC's own record of its tasks: the workers are DVC's, not this test's


def stop_the_queue(project, env):
    """Stop this project's queue and wait for its processes (found by their folder, which this test made) to end:
    `dvc queue start` detaches its workers."""
    dvc(["queue", "stop", "--kill"], project, env)
    mine = []
    for process in psutil.process_iter():
        try:
            if Path(process.cwd()).is_relative_to(project):
                mine.append(process)
        except (psutil.Error, OSError):
            pass
    _, alive = psutil.wait_procs(mine, timeout=60)  # an idle worker ends within about 10 s (DVC's docs)
    for process in alive:
        process.kill()
    return alive


@pytest.mark.slow
def test_queued_experiments_read_the_projects_data_folder_and_log_to_its_store(tmp_path, mnist_dir):
    project = tmp_path / "project"
    project.mkdir()
    copy_project(project, skip=["dvc.lock", "reports"])
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "mnist").symlink_to(mnist_dir)  # the default data.local_dir, ../shared/mnist
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["pipeline"]["models"] = ["mlp"]
    params["train"].update(epochs=1, limit_train_images=2000)
    params["matrix"]["executor"] = "local"  # the queue's copies are the subject here, not Ray
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("MNIST_DIR", "MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(project / "src")}
    names = [f"lr-{lr}" for lr in LEARNING_RATES]
    try:
        for name, lr in zip(names, LEARNING_RATES):
            queued = dvc(["exp", "run", "--queue", "--name", name, "-S", f"train.lr={lr}", "train"], project, env)
            assert queued.returncode == 0, queued.stdout + queued.stderr
        with open(tmp_path / "queue-start.log", "w") as log:  # not a pipe: the detached workers inherit it
            started = subprocess.run([str(Path(sys.executable).parent / "dvc"), "queue", "start", "--jobs", "2"],
                                     cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120)
        assert started.returncode == 0, (tmp_path / "queue-start.log").read_text()
        ended, status = wait_for_queue(project, env, names, deadline_s=600)
        logs = {name: dvc(["queue", "logs", name], project, env).stdout for name in names}
        assert ended == {name: "Success" for name in names}, status + "\n".join(logs.values())[-4000:]
    finally:
        left_running = stop_the_queue(project, env)
    assert not left_running, f"still running 60 s after `dvc queue stop`: {left_running}"
    for name in names:
        assert f"MNIST from {project / '../shared/mnist'}: 4 files, contents verified" in logs[name], logs[name]
    # Both trainings in the project's own store (not a store inside a copy that DVC deletes), each with its lr.
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(params["mlflow"]["experiment"])
    runs = client.search_runs([experiment.experiment_id], "attributes.run_name = 'mlp-0'")
    assert sorted(run.data.params["train.lr"] for run in runs) == sorted(LEARNING_RATES)
    assert all(run.info.status == "FINISHED" for run in runs)
    assert not list((project / ".dvc" / "tmp" / "exps").glob("*/mlflow.db"))
