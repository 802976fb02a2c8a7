"""Real `dvc repro` of the whole pipeline, on a tiny profile, in a temporary copy of the project."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import ROOT
from mnistbench import reference
from mnistbench.scratch import copy_project


# A handful: the write-up's three, one tuned recipe (warm-up, augmentation, precision auto) and the added model.
MODELS = ["mlp", "cnn", "vit", "cnn_tuned", "linear"]
SPRINTS = ["cnn_tuned_99"]  # one sprint, three seeds: the olympic mean's rules need no more
# A model added the documented way, two files and nothing else: its module and its params section.
ADDED_MODEL = '''"""Softmax regression: one linear layer on the 784 pixels."""

from torch import nn

from mnistbench.models import register
from mnistbench.schema import ModelSection

register("linear", ModelSection, lambda p: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
'''
LEARN_IN_ONE_EPOCH = ["mlp", "cnn", "vit"]  # the tuned recipes' warm-up and augmentation need more than 16 steps


GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def run(cmd, cwd, env):
    bindir = str(Path(sys.executable).parent)  # the venv's dvc and python
    env = {**env, "PATH": bindir + os.pathsep + env.get("PATH", "")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory, mnist_dir):
    project = tmp_path_factory.mktemp("project")
    copy_project(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "src" / "mnistbench" / "models" / "linear.py").write_text(ADDED_MODEL)
    params["models"]["linear"] = {"train": {}}
    params["pipeline"]["models"] = MODELS
    params["train"].update(epochs=1, limit_train_images=2000)
    # One epoch everywhere: the tuned models' own recipes and the time-to-accuracy runs set theirs.
    one_epoch = {"epochs": 1, "warmup_epochs": 0.5}
    for section in params["models"].values():
        if "epochs" in section["train"]:
            section["train"] = {**section["train"], **one_epoch}
    params["time_to_accuracy"]["sprints"] = {name: params["time_to_accuracy"]["sprints"][name] for name in SPRINTS}
    for target in params["time_to_accuracy"]["sprints"].values():
        target["train"] = {**target["train"], **one_epoch}
    params["time_to_accuracy"]["seeds"] = [0, 1, 2]  # three: the olympic mean drops the fastest and the slowest
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / "reproduce" / "params.yaml").write_text(yaml.safe_dump({
        "pipeline": {"models": ["mlp", "vit_writeup"]}, "seeds": {"train": [0, 1]},
        # The local executor: the default pipeline above runs its trainings as Ray tasks; here Ray is not the
        # subject, and its start (a local cluster, workers importing torch) is most of a tiny stage's time.
        "matrix": {"without_weights": "keep", "executor": "local"}, "mlflow": {"experiment": "mnistbench-reproduce"},
    }))
    page = ROOT / ".dvc" / "plots" / "index.html"  # made by `make setup`, ignored by git
    shutil.copyfile(page, project / ".dvc" / "plots" / "index.html")
    for stale in ("dvc.lock", "reports", "reproduce/dvc.lock", "reproduce/reports"):  # the committed full runs
        path = project / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {
        "MNIST_DIR": str(mnist_dir), "PYTHONPATH": str(project / "src")}  # the copy's code, its added model included
    for cmd in (["dvc", "repro"], reproduce_cmd()):
        result = run(cmd, project, env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Committed as a user commits a run: `dvc exp show` compares with it, a second clone starts from it.
    for cmd in (GIT + ["add", "-A"], GIT + ["commit", "-qm", "the tiny profile, run"]):
        result = run(cmd, project, env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project, env


def reproduce_cmd():
    return [sys.executable, "-m", "mnistbench.variant", "reproduce"]  # what `make reproduce` runs


@pytest.mark.slow
def test_report_has_a_row_per_model(tiny_project):
    project, _ = tiny_project
    lines = (project / "reports" / "comparison.md").read_text().splitlines()
    first_table = lines[lines.index(next(line for line in lines if line.startswith("| model"))):]
    first_table = first_table[:first_table.index("")]
    rows = first_table[2:]
    assert [row.split("|")[1].strip() for row in rows] == MODELS
    assert len(rows[0].split("|")) - 2 <= 8  # the main table reads at a glance
    details = lines[lines.index(next(line for line in lines if line.startswith("| run"))):]
    assert "| 2,000 |" in details[2]  # the tiny profile's train images
    for name in MODELS:
        assert (project / "reports" / "figures" / f"{name}_curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_time_to_accuracy_stage(tiny_project):
    project, _ = tiny_project
    results = json.loads((project / "reports" / "time_to_accuracy.json").read_text())
    assert sorted(results) == SPRINTS
    for name, r in results.items():
        runs = r["seeds"]
        assert [run["seed"] for run in runs] == [0, 1, 2] and r["runs"] == 3
        assert all(run["epochs"] == run["max_epochs"] == 1 and run["seconds"] > 0 for run in runs)
        reached = sum(run["valid_accuracy"] >= r["threshold"] for run in runs)  # 1 epoch on 2,000 images: not 99%
        assert r["reached_on_valid"] == reached and r["valid"] == (reached >= 2)
        times = sorted(run["seconds"] for run in runs if run["reached_on_valid"])  # a miss has no time
        assert r["olympic_mean_seconds"] == (times[1] if r["valid"] else None)
        assert (r["min_seconds"], r["max_seconds"]) == ((times[0], times[-1]) if times else (None, None))
        assert r["environment"]["threads"] >= 1
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnistbench").experiment_id
    for name, r in results.items():  # one parent run per sprint model, its seeds as children
        [parent] = client.search_runs([experiment], f"attributes.run_name = '{name}-time-to-accuracy'")
        assert parent.data.metrics.get("olympic_mean_seconds") == (r["olympic_mean_seconds"] and pytest.approx(r["olympic_mean_seconds"]))
        assert parent.data.metrics["reached_on_valid"] == r["reached_on_valid"]
        children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(c.info.run_name for c in children) == [f"{name}-time-to-accuracy-{s}" for s in (0, 1, 2)]
    report = (project / "reports" / "comparison.md").read_text()
    assert "time to accuracy (valid)" in report and "## Time to accuracy" in report and "olympic mean" in report
    assert "## Goals and tuned variants" in report and "https://github.com/asnelt/mnistvit" in report


@pytest.mark.slow
def test_metrics_files(tiny_project):
    project, env = tiny_project
    for name in MODELS:
        metrics = json.loads((project / "reports" / "metrics" / f"{name}-0.json").read_text())
        assert metrics["test_count"] == 10_000
        if name in LEARN_IN_ONE_EPOCH:
            assert 0.3 < metrics["test_accuracy"] <= 1.0  # 1 epoch on 2,000 images: well above chance
        assert sum(map(sum, metrics["confusion_matrix"])) == 10_000
    shown = run(["dvc", "metrics", "show", "--json"], project, env)
    assert shown.returncode == 0 and "test_accuracy" in shown.stdout


@pytest.mark.slow
def test_dvc_metrics_are_a_small_summary_of_the_main_pipeline(tiny_project):
    project, env = tiny_project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, env).stdout)
    files = next(iter(shown.values()))["data"]  # keyed by revision: the workspace
    assert sorted(files) == sorted(f"reports/summary/{m}-0.json" for m in MODELS)  # no reproduce/, no environment
    for summary in files.values():
        assert sorted(summary["data"]) == ["parameters", "test_accuracy", "test_loss", "train_seconds"]
    table = run(["dvc", "metrics", "show"], project, env).stdout
    assert max(map(len, table.splitlines())) <= 200
    asked = run(["dvc", "metrics", "show", "reproduce/reports/summary"], project, env)
    assert asked.returncode == 0 and "reproduce/reports/summary/vit_writeup-1.json" in asked.stdout


@pytest.mark.slow
def test_dvc_plots_render_offline_with_labelled_axes_and_a_colour_per_run(tiny_project):
    project, env = tiny_project
    shown = run(["dvc", "plots", "show", "-o", "plots-page"], project, env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    page = (project / "plots-page" / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "vegaEmbed" in page and page.count("<script>") >= 3
    spec = json.loads(run(["dvc", "plots", "show", "--json"], project, env).stdout)["data"]
    curves = spec["valid_accuracy"][0]["content"]
    assert curves["encoding"]["color"]["field"] == "run"  # one chart, one colour per run
    assert curves["encoding"]["y"]["title"] == "valid accuracy" and curves["encoding"]["x"]["title"] == "epoch"
    assert sorted({v["run"] for v in curves["data"]["values"]}) == sorted(f"{m}-0" for m in MODELS)  # the added one too
    assert sorted(k for k in spec if k.startswith("reports/predictions/")) == sorted(
        f"reports/predictions/{m}-0.csv" for m in MODELS)  # a confusion matrix per run
    assert not any(key.startswith("reproduce/") for key in spec)  # the reproduction's runs are not in the main view


@pytest.mark.slow
def test_one_mlflow_run_per_model_with_metrics(tiny_project):
    project, _ = tiny_project
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnistbench")
    everything = client.search_runs([experiment.experiment_id])
    runs = [r for r in everything if not {"mnistbench.model", "mnistbench.sprint"} & set(r.data.tags)]  # trainings
    assert sorted(r.info.run_name for r in runs) == sorted(f"{name}-0" for name in MODELS)
    summaries = {r.info.run_name: r.info.run_id for r in everything if "mnistbench.model" in r.data.tags}
    assert sorted(summaries) == sorted(MODELS)  # the report stage groups each model's trainings
    for r in runs:
        assert r.data.tags["mlflow.parentRunId"] == summaries[r.info.run_name.removesuffix("-0")]
        assert r.info.status == "FINISHED"
        assert 0.0 < r.data.metrics["test_accuracy"] <= 1.0
        if r.info.run_name.removesuffix("-0") in LEARN_IN_ONE_EPOCH:
            assert r.data.metrics["test_accuracy"] > 0.3
        assert r.data.params["train.epochs"] == "1"
        assert r.data.tags["env.deterministic"] == "True"
        assert len(client.get_metric_history(r.info.run_id, "valid_accuracy")) == 1


@pytest.mark.slow
def test_nothing_to_do_on_a_second_repro(tiny_project):
    project, env = tiny_project
    status = run(["dvc", "status", "--json"], project, env)
    # download re-verifies its source on every repro ($MNIST_DIR is invisible to DVC); nothing else is stale
    assert status.returncode == 0 and json.loads(status.stdout) == {"download": ["always changed"]}


@pytest.mark.slow
def test_mnist_dir_is_verified_again_and_unchanged_bytes_keep_the_rest(tiny_project, tmp_path):
    project, env = tiny_project
    copy = tmp_path / "mnist-copy"
    shutil.copytree(env["MNIST_DIR"], copy)
    again = run(["dvc", "repro"], project, env | {"MNIST_DIR": str(copy)})
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"MNIST from {copy}" in again.stdout and "Running stage 'split'" not in again.stdout
    (copy / "t10k-labels-idx1-ubyte.gz").chmod(0o644)
    (copy / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the labels")
    bad = run(["dvc", "repro"], project, env | {"MNIST_DIR": str(copy)})
    assert bad.returncode != 0 and "t10k-labels-idx1-ubyte.gz: corrupt or truncated gzip data" in bad.stderr
    assert run(["dvc", "repro"], project, env).returncode == 0  # back to the good source: data/raw restored


@pytest.mark.slow
def test_a_change_to_the_training_loop_stales_train_and_what_reads_it_only(tiny_project):
    """train and time_to_accuracy run the loop; report and claims state whether the code that made the record is
    today's, so they read it too. Evaluation does not import it; download and split never did."""
    project, env = tiny_project
    loop = project / "src" / "mnistbench" / "training.py"
    original = loop.read_text()
    loop.write_text(original + "\n# changed\n")
    try:
        status = json.loads(run(["dvc", "status", "--json"], project, env).stdout)
    finally:
        loop.write_text(original)
    stale = {stage for stage, changes in status.items() if any("src/mnistbench/training.py" in str(c) for c in changes)}
    assert stale == {"train", "time_to_accuracy", "report", "claims"}, status


@pytest.mark.slow
def test_a_comment_in_a_file_every_training_imports_reruns_the_train_stage_but_trains_nothing(tiny_project):
    """DVC sees the file change; the stage judges each pair by what it computes (identity.py) and keeps them all,
    before it starts Ray (matrix.execute)."""
    project, env = tiny_project
    tracking = project / "src" / "mnistbench" / "tracking.py"
    original, lock = tracking.read_text(), (project / "dvc.lock").read_text()
    try:
        tracking.write_text(original + "\n# a comment, and nothing that runs\n")
        again = run(["dvc", "repro", "train"], project, env)
    finally:  # the project as the other tests know it: the file and the lock of its bytes
        tracking.write_text(original)
        (project / "dvc.lock").write_text(lock)
    assert again.returncode == 0, again.stderr[-2000:]
    pairs = len(list((project / "reports" / "train").glob("*.json")))
    assert "Running stage 'train'" in again.stdout and f"0 trained, {pairs} up to date" in again.stdout, again.stdout
    assert "Ray: local" not in again.stdout  # judged in the stage's process: nothing to train, no Ray to start


@pytest.mark.slow
def test_the_reproduction_variant_writes_claims_with_seed_intervals_into_its_own_folder(tiny_project):
    project, _ = tiny_project
    comparison = (project / "reproduce" / "reports" / "comparison.md").read_text()
    assert "± " in comparison and "(n=2)" in comparison
    lock = yaml.safe_load((project / "reproduce" / "dvc.lock").read_text())["stages"]
    assert {"train", "evaluate", "report", "claims"} <= set(lock)
    tested = sorted(p.name for p in (project / "reproduce" / "reports" / "metrics").iterdir())
    assert tested == ["mlp-0.json", "mlp-1.json", "vit_writeup-0.json", "vit_writeup-1.json"]
    trained = sorted(p.name for p in (project / "reproduce" / "reports" / "train").iterdir())
    assert trained == ["mlp-0.json", "mlp-1.json", "vit_writeup-0.json", "vit_writeup-1.json"]
    one_seed = (project / "reports" / "claims.md").read_text()  # the main pipeline's own, over seed 0
    assert "| mlp: test accuracy 97.60% |" in one_seed and "no distribution" in one_seed
    claims = (project / "reproduce" / "reports" / "claims.md").read_text()
    for claim in ("output 98 x 1", "output 12 x 12 x 3", "CNN: total params 40730", "mlp: test accuracy 97.60%",
                  "vit_writeup: test accuracy 26.91%"):
        assert claim in claims
    assert "| output 12 x 12 x 3 | output 13 x 13 x 8 (formula and torch agree) | refuted |" in claims
    assert "cnn: test accuracy 98.80% | measured | not checkable" not in claims
    assert "| cnn is not in pipeline.models of this run |" in claims  # tiny profile: mlp and vit_writeup only


@pytest.mark.slow
def test_a_variant_rerun_retrains_nothing_and_a_bad_overlay_is_named(tiny_project):
    project, env = tiny_project
    env = env | {"PYTHONPATH": str(project / "src")}
    again = run(reproduce_cmd(), project, env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Running stage 'train'" not in again.stdout and "Running stage 'evaluate'" not in again.stdout
    overlay = project / "reproduce" / "params.yaml"
    original = overlay.read_text()
    overlay.write_text(yaml.safe_dump(yaml.safe_load(original) | {"seeds": {"train": [0, -1]}}))
    try:
        bad = run(reproduce_cmd(), project, env)
    finally:
        overlay.write_text(original)
    assert bad.returncode == 1 and "seeds.train" in bad.stderr and "Traceback" not in bad.stderr
    assert (project / "reproduce" / "reports" / "claims.md").is_file()  # the previous record is kept


@pytest.mark.slow
def test_a_fresh_clone_grows_the_reproduction_by_its_new_seed_only(tiny_project):
    """No workspace and no weights (a fresh clone): `make reproduce` starts from the committed record, keeps its
    trainings by their recorded evaluations, and trains only the seed added to the list."""
    project, env = tiny_project
    record = project / "reproduce" / "reports"
    lock = yaml.safe_load((project / "reproduce" / "dvc.lock").read_text())["stages"]
    for folder in ("train", "metrics", "predictions"):  # the hash reference.bind_evaluations checks is DVC's own
        [entry] = [e for e in lock["evaluate"]["deps"] + lock["evaluate"]["outs"] if e["path"] == f"reports/{folder}"]
        assert entry["md5"] == reference.dvc_folder_md5(record / folder) + ".dir"
    tested = {p.name: p.read_bytes() for p in (record / "metrics").iterdir()}
    overlay = project / "reproduce" / "params.yaml"
    original = overlay.read_text()
    kept = project.parent / f"{project.name}-kept"  # the record and workspace the other tests read, put back afterwards
    shutil.copytree(project / "reproduce", kept / "reproduce")
    shutil.move(project / ".variants" / "reproduce", kept / "workspace")
    overlay.write_text(yaml.safe_dump(yaml.safe_load(original) | {"seeds": {"train": [0, 1, 2]}}))
    try:
        grown = run(reproduce_cmd(), project, env)
        record_grown = {p.name: p.read_bytes() for p in (record / "metrics").iterdir()}
        comparison = (record / "comparison.md").read_text()
    finally:
        shutil.rmtree(project / "reproduce")
        shutil.move(kept / "reproduce", project / "reproduce")
        shutil.rmtree(project / ".variants" / "reproduce", ignore_errors=True)
        shutil.move(kept / "workspace", project / ".variants" / "reproduce")
    assert grown.returncode == 0, grown.stdout[-3000:] + grown.stderr[-3000:]
    assert "2 trained, 4 up to date" in grown.stdout and "4 recorded evaluations kept (mlp x2, vit_writeup x2)" in grown.stdout
    assert sorted(record_grown) == sorted([*tested, "mlp-2.json", "vit_writeup-2.json"])
    assert all(record_grown[name] == body for name, body in tested.items())
    assert "(n=3)" in comparison


@pytest.mark.slow
def test_a_second_clone_pulls_from_the_dvc_remote_and_retrains_nothing(tiny_project, tmp_path):
    project, env = tiny_project
    remote, clone = tmp_path / "dvc-storage", tmp_path / "clone-b"
    for cmd in (GIT + ["add", "-A"], GIT + ["commit", "-qm", "clone A after dvc repro", "--allow-empty"],
                ["dvc", "remote", "modify", "--local", "local", "url", str(remote)], ["dvc", "push"]):
        done = run(cmd, project, env)
        assert done.returncode == 0, f"{cmd}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
    assert any(remote.rglob("*")), "dvc push sent nothing"
    assert run(["git", "clone", "-q", str(project), str(clone)], tmp_path, env).returncode == 0
    assert not (clone / "models").exists()  # models are DVC's, not git's
    for cmd in (["dvc", "remote", "modify", "--local", "local", "url", str(remote)], ["dvc", "pull"]):
        done = run(cmd, clone, env)
        assert done.returncode == 0, f"{cmd}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
    repro = run(["dvc", "repro"], clone, env | {"PYTHONPATH": str(clone / "src")})
    assert repro.returncode == 0, repro.stderr[-2000:]
    ran = [line for line in repro.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'download':"], ran  # always_changed; its output matches, so nothing after it runs


@pytest.mark.slow
def test_the_readmes_exp_show_fits_in_200_columns(tiny_project):
    project, env = tiny_project
    params = project / "params.yaml"  # the fixture committed the run: the baseline `dvc exp show` compares with
    original = params.read_text()
    params.write_text(original.replace("lr: 0.001", "lr: 0.002", 1))  # an experiment's change, not yet run
    try:
        shown = run(["dvc", "exp", "show", "--only-changed", "--no-pager"], project, env | {"COLUMNS": "200"})
    finally:
        params.write_text(original)
    lines = shown.stdout.splitlines()
    assert shown.returncode == 0 and "train.lr" in shown.stdout and "0.002" in shown.stdout, shown.stdout[-2000:]
    assert max(map(len, lines)) <= 200 and "…" not in shown.stdout


@pytest.mark.slow
def test_both_reports_say_which_differences_are_real(tiny_project):
    project, _ = tiny_project
    one_seed = (project / "reports" / "comparison.md").read_text()
    assert "## Which differences are real" in one_seed and "McNemar's exact test" in one_seed
    pairs = json.loads((project / "reports" / "comparisons.json").read_text())["pairs"]
    assert len(pairs) == len(MODELS) * (len(MODELS) - 1) // 2  # every pair of the models, once
    assert all(0 <= p["p"] <= p["p_holm"] <= 1 and p["only_a_right"] + p["only_b_right"] <= 10_000 for p in pairs)
    seeds = (project / "reproduce" / "reports" / "comparison.md").read_text()
    assert "Paired t-test over the seeds both models ran" in seeds and "| mlp vs vit_writeup | 2 |" in seeds
    assert "mlp is better than vit_writeup by" in seeds  # 1 epoch: the write-up's ViT stays near chance
    assert "made at commit" in seeds and "**current (2 models, 4 trainings: recipe, data, packages and canary" in seeds
    assert "| on a fresh sample of digits |" in seeds  # the second interval, seeds and test images sampled


@pytest.mark.slow
def test_the_registered_model_loads_outside_the_project_and_reproduces_its_test_accuracy(tiny_project, tmp_path):
    """What a user of the registry does: mlflow.pytorch.load_model("models:/<experiment>-cnn@best") from a folder
    outside the project, in a process that never imports mnistbench, then predict the test images."""
    project, _ = tiny_project
    metrics = json.loads((project / "reports" / "metrics" / "cnn-0.json").read_text())
    script = tmp_path / "load.py"
    script.write_text(
        "import gzip, sys, numpy as np, torch, mlflow.pytorch\n"
        "model = mlflow.pytorch.load_model('models:/mnistbench-cnn@best')\n"
        "assert 'mnistbench' not in sys.modules\n"
        f"raw = gzip.open({str(project / 'data' / 'raw' / 't10k-images-idx3-ubyte.gz')!r}).read()\n"
        f"labels = np.frombuffer(gzip.open({str(project / 'data' / 'raw' / 't10k-labels-idx1-ubyte.gz')!r}).read()[8:], np.uint8)\n"
        "images = torch.tensor(np.frombuffer(raw[16:], np.uint8).reshape(-1, 1, 28, 28).copy()).float() / 255\n"
        "with torch.no_grad():\n"
        "    predicted = torch.cat([model(chunk).argmax(1) for chunk in images.split(1000)]).numpy()\n"
        "print((predicted == labels).mean())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW")} | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split()[-1]) == pytest.approx(metrics["test_accuracy"], abs=1e-6)
