"""A grid sweep over params, run as Ray tasks: one training per point, model and seed, each the stage's own
training (the same weights as stages/train.py with those params), ranked on the valid split."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import ROOT, run_module
from test_reliability import fake_processed, state_hash, tiny_params, train_cmd




def sweep_args(tmp_path) -> list[str]:
    return ["--name", "lr", "--models", "mlp", "--seeds", "0", "--params", str(tmp_path / "params.yaml"),
            "--data", str(tmp_path / "processed"), "--out", str(tmp_path / "sweeps")]


def sweep(tmp_path, env, *extra):
    cmd = [sys.executable, "-m", "mnistbench.sweep", *sweep_args(tmp_path), *extra]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_sweep_trains_each_point_as_the_stage_would_and_ranks_them_on_valid(tmp_path):
    processed = fake_processed(tmp_path / "processed", n_train=512, n_valid=64)
    params = tiny_params(tmp_path / "params.yaml", epochs=2)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(ROOT / "src")}
    done = sweep(tmp_path, env, "--set", "train.lr=0.001,0.003")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = (tmp_path / "sweeps" / "lr" / "summary.md").read_text()
    assert summary.count("| mlp | point-") == 2 and "0.003" in summary
    for i, lr in enumerate((0.001, 0.003)):
        point = tmp_path / "sweeps" / "lr" / f"point-{i}"
        assert yaml.safe_load((point / "point.yaml").read_text()) == {"train.lr": lr}
        assert json.loads((point / "reports" / "train" / "mlp-0.json").read_text())["lr"] == lr
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("mnistbench-sweep-lr").experiment_id])
    assert sorted(r.data.tags["mnistbench.sweep_point"] for r in runs) == ["train.lr=0.001", "train.lr=0.003"]
    # The point lr=0.001 is params.yaml as it is: stages/train.py gives the same weights
    subprocess.run(train_cmd(tmp_path / "direct", processed, params, model="mlp"), env=env, check=True,
                   capture_output=True)
    assert state_hash(tmp_path / "direct" / "models" / "mlp-0.pt") == \
        state_hash(tmp_path / "sweeps" / "lr" / "point-0" / "models" / "mlp-0.pt")
    again = sweep(tmp_path, env, "--set", "train.lr=0.001,0.003")
    assert again.returncode == 0 and "0 trained, 2 up to date" in again.stdout
    assert len(client.search_runs([runs[0].info.experiment_id])) == 2


@pytest.mark.slow
def test_a_points_folder_is_written_as_its_training_ends_and_not_before(tmp_path):
    """A 1,000-point sweep must not write 1,000 folders up front: here a point whose training diverges at its
    first step never gets one, and the point that trained does."""
    fake_processed(tmp_path / "processed", n_train=256, n_valid=64)
    params = yaml.safe_load(tiny_params(tmp_path / "params.yaml", epochs=1).read_text())
    params["train"]["optimizer"] = "sgd"  # at lr 1e10 its loss is NaN within the first steps
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(ROOT / "src")}
    done = sweep(tmp_path, env, "--set", "train.lr=0.001,1.0e+10")
    assert done.returncode == 1 and "1 of 2 trainings failed" in done.stderr, done.stderr[-2000:]
    assert yaml.safe_load((tmp_path / "sweeps" / "lr" / "point-0" / "point.yaml").read_text()) == {"train.lr": 0.001}
    assert not (tmp_path / "sweeps" / "lr" / "point-1").exists()


def test_a_bad_sweep_key_is_named_before_anything_runs(tmp_path):
    fake_processed(tmp_path / "processed", n_train=64, n_valid=64)
    tiny_params(tmp_path / "params.yaml", epochs=1)
    done = run_module("mnistbench.sweep", *sweep_args(tmp_path), "--set", "train.lrr=0.1,0.2", cwd=tmp_path)
    assert done.returncode == 1 and "train.lrr" in done.stderr and "did you mean 'lr'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "sweeps").exists()


@pytest.mark.slow
def test_a_sprint_sweep_times_each_point_under_mlperfs_rules_and_keeps_what_it_ran(tmp_path):
    fake_processed(tmp_path / "processed", n_train=512, n_valid=64)
    tiny_params(tmp_path / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    key = "time_to_accuracy.sprints.cnn_tuned_99"
    args = ["--sprints", "cnn_tuned_99", "--seeds", "0,1,2", "--set", f"{key}.threshold.mnist=0.01,1.0"]
    done = sweep(tmp_path, env, *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    folder = tmp_path / "sweeps" / "lr"
    runs = {i: [json.loads((folder / f"point-{i}" / "sprints" / f"cnn_tuned_99-{s}.json").read_text()) for s in range(3)]
            for i in (0, 1)}
    assert all(r["reached_on_valid"] and r["epochs"] == 1 for r in runs[0])  # 1%: reached after the first epoch
    assert not any(r["reached_on_valid"] for r in runs[1]) and all(r["epochs"] == 2 for r in runs[1])
    assert all(len(r["curve_seconds"]) == r["epochs"] and r["curve_seconds"][-1] == pytest.approx(r["seconds"])
               for r in runs[0] + runs[1])
    summary = (folder / "summary.md").read_text()
    assert "| cnn_tuned_99 | point-0 | 0.0100 | 1.00% | 3 of 3 |" in summary
    assert "| cnn_tuned_99 | point-1 | 1.00 | 100.00% | 0 of 3 |" in summary and "no result: 3 of 3 runs missed" in summary
    again = sweep(tmp_path, env, *args)  # every run is on record with the same recipe: nothing is timed again
    assert again.returncode == 0 and "epoch" not in again.stderr
    wrong = sweep(tmp_path, env, "--sprints", "cnn_tuned_100", "--set", f"{key}.goal_seconds=5")
    assert wrong.returncode == 1 and "unknown sprint 'cnn_tuned_100'" in wrong.stderr


def test_a_sweep_larger_than_an_hour_by_the_recorded_times_asks_for_yes_before_writing_anything(tmp_path):
    from mnistbench.errors import MnistbenchError
    from mnistbench.sweep import refuse_if_large

    records = tmp_path / "train"
    records.mkdir()
    for seed, seconds in ((0, 100.0), (1, 140.0)):
        (records / f"cnn-{seed}.json").write_text(json.dumps({"wall_seconds": seconds}))
    refuse_if_large(10, ["cnn"], [0], yes=False, records=(records,))  # 10 x 120 s = 20 min: runs
    with pytest.raises(MnistbenchError) as raised:
        refuse_if_large(1000, ["cnn"], [0], yes=False, records=(records,))
    assert str(raised.value) == ("the sweep is 1000 points x 1 models x 1 seeds = 1000 trainings (about 33.3 "
                                 "training-hours by the times recorded in reports/train); run it with --yes, or "
                                 "narrow --set, --models or --seeds")
    refuse_if_large(1000, ["cnn"], [0], yes=True, records=(records,))
    with pytest.raises(MnistbenchError, match=r"no estimate: lenet5 never trained in this project"):
        refuse_if_large(30, ["lenet5"], [0], yes=False, records=(records,))
