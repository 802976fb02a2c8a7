"""A record is judged by what the code computes (identity.py, reference.py): a comment changes nothing, a recipe
key is named with both values, a change that moves one bit names the model and where its canary diverges; a
record made on another machine class is judged by replaying its own commit here."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT
from mnistbench import identity, lockfile, reference
from mnistbench.config import load_params
from mnistbench.scratch import copy_project

MODELS = ["mlp", "cnn_tuned"]  # the write-up's recipe and a tuned one (AdamW, onecycle, augmentation)


def small_data(folder: Path) -> Path:
    """Processed splits of random digits, enough for any canary (the canary needs no real MNIST)."""
    g = torch.Generator().manual_seed(0)
    folder.mkdir(parents=True)
    for split, n in (("train", 2048), ("valid", 256)):
        torch.save({"images": torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8),
                    "labels": torch.randint(0, 10, (n,), generator=g)}, folder / f"{split}.pt")
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project whose reports/ hold records of MODELS made by its own code, on this machine."""
    root = tmp_path_factory.mktemp("project")
    copy_project(root, skip=["reports", "reproduce", "fashion-mnist"])
    data = small_data(root / "data" / "processed")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["pipeline"]["models"] = MODELS
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(root / "params.yaml")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    for name in MODELS:
        for seed in (0, 1):
            write(root / "reports", name, seed, identity.identity(params, name, data), commit)
    return root


def write(reports: Path, name: str, seed: int, made: dict, commit: str) -> None:
    for folder, body in (("train", {"model": name, "seed": seed, "identity": made,
                                    "environment": {"git_commit": commit}}),
                         ("metrics", {"model": name, "seed": seed, "test_accuracy": 0.9})):
        (reports / folder).mkdir(parents=True, exist_ok=True)
        (reports / folder / f"{name}-{seed}.json").write_text(json.dumps(body))


def status(project: Path) -> str:
    """`python -m mnistbench.reference reports` as a user runs it in that copy, with its own code."""
    done = subprocess.run([sys.executable, "-m", "mnistbench.reference", "reports"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(project / "src"), "PATH": "/usr/bin:/bin"}, cwd=project)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().removeprefix("reports: ")


def edited(path: Path, old: str, new: str):
    """Replace `old` by `new` in `path` (exactly once) for the duration of a with-block."""
    class Edit:
        def __enter__(self):
            self.original = path.read_text()
            assert self.original.count(old) == 1, f"{path}: expected {old!r} once"
            path.write_text(self.original.replace(old, new))

        def __exit__(self, *exc):
            path.write_text(self.original)
    return Edit()


@pytest.mark.slow
def test_a_comment_in_every_file_a_training_imports_leaves_the_record_current(project):
    assert status(project).startswith("current (2 models, 4 trainings:")
    package = project / "src" / "mnistbench"
    originals = {p: p.read_text() for p in package.rglob("*.py")}
    try:
        for path in originals:
            path.write_text(originals[path] + "\n# a comment, and nothing that runs\n")
        assert status(project).startswith("current (2 models, 4 trainings:")
    finally:
        for path, text in originals.items():
            path.write_text(text)


@pytest.mark.slow
def test_a_record_with_fewer_seeds_than_its_params_ask_for_is_incomplete_not_current(project):
    with edited(project / "params.yaml", "  per_model: {}", "  per_model: {cnn_tuned: [0, 1, 2, 3, 5]}"):
        verdict = status(project)
        check = subprocess.run([sys.executable, "-m", "mnistbench.reference", "reports", "--check"], cwd=project,
                               env={"PYTHONPATH": str(project / "src"), "PATH": "/usr/bin:/bin"}, capture_output=True)
    assert verdict.startswith("incomplete: the 4 trainings it holds are current"), verdict
    assert "its params ask for 3 more (cnn_tuned seeds 2-3, 5)" in verdict and check.returncode == 1


@pytest.mark.slow
def test_a_changed_recipe_key_is_named_with_both_values(project):
    with edited(project / "params.yaml", "  lr: 0.001\n", "  lr: 0.01\n"):
        verdict = status(project)
    # cnn_tuned sets its own lr: only the model whose recipe moved is stale
    assert verdict == "stale: mlp: train.lr 0.001 -> 0.01", verdict


@pytest.mark.slow
def test_a_change_that_moves_one_bit_names_the_model_and_the_step_where_the_canary_diverges(project):
    training = project / "src" / "mnistbench" / "training.py"
    with edited(training, "weight_decay=tp.weight_decay, fused=True)", "weight_decay=tp.weight_decay, fused=False)"):
        verdict = status(project)
    assert verdict.startswith("stale: "), verdict
    stale = dict(part.split(": ", 1) for part in verdict.removeprefix("stale: ").split("; "))
    assert stale["mlp"] == "the canary diverges at epoch 1, training step 2", verdict  # fp32: the first step moved
    # bf16 rounds the first step's difference away in the next forward pass; the fp32 validation sees it
    assert stale["cnn_tuned"].startswith("the canary diverges at epoch 1, "), verdict


@pytest.mark.slow
def test_another_machine_class_replays_the_records_commit_here(project, tmp_path):
    """A record whose canary is of another class is compared with its own commit's canary, replayed here."""
    other = tmp_path / "reports"
    shutil.copytree(project / "reports", other)
    for path in (other / "train").glob("*.json"):
        record = json.loads(path.read_text())
        record["identity"]["canary"] = {**record["identity"]["canary"], "machine": "another CPU", "digest": "0" * 12}
        path.write_text(json.dumps(record))
    params = load_params(project / "params.yaml")
    verdicts, _, n, _ = reference_judge(other, project, params)
    assert n == 4 and verdicts == {"mlp": [], "cnn_tuned": []}
    for path in (other / "train").glob("mlp-*.json"):  # a commit this repository does not hold
        record = json.loads(path.read_text())
        record["environment"]["git_commit"] = "f" * 40
        path.write_text(json.dumps(record))
    verdicts, *_ = reference_judge(other, project, params)
    assert verdicts["cnn_tuned"] == [] and "another machine class (another CPU)" in verdicts["mlp"][0]
    assert "cannot replay commit ffffffffffff here" in verdicts["mlp"][0]


def reference_judge(reports: Path, project: Path, params):
    """reference.judge on `reports` with the copy's params, in this process (the canaries are today's code's)."""
    original = reference.params_for
    reference.params_for = lambda _: params
    try:
        return reference.judge(reports, project / "data" / "processed")
    finally:
        reference.params_for = original


@pytest.mark.slow
def test_the_canary_repeats_bit_for_bit_and_covers_checkpoint_and_resume(tmp_path):
    data = small_data(tmp_path / "processed")
    params = load_params(ROOT / "params.yaml")
    first, second = identity.canary(params, "cnn", data), identity.canary(params, "cnn", data)
    assert first["digest"] == second["digest"] and first["trace"] == second["trace"]
    places = [where for where, _ in first["trace"]]
    assert places[0] == "epoch 1, training step 1" and "epoch 1, metrics" in places and "epoch 2, metrics" in places
    assert f"epoch 2, training step {identity.CANARY_STEPS}" in places and places[-1] == "final weights"


def test_recipe_differences_name_nested_keys_added_and_removed():
    old = {"train": {"lr": 0.001, "augment": {"degrees": 0.0}}, "models.cnn": {"max_params": 50000}}
    new = {"train": {"lr": 0.001, "augment": {"degrees": 10.0}}, "models.cnn": {}}
    assert identity.recipe_differences(old, new) == ["models.cnn.max_params 50000 -> (none)",
                                                     "train.augment.degrees 0.0 -> 10.0"]


def test_a_record_without_processed_data_is_not_checked_rather_than_called_current(tmp_path):
    write(tmp_path / "reports", "mlp", 0, {}, "0" * 40)
    verdict = reference.status(tmp_path / "reports", tmp_path / "no-data")
    assert verdict.startswith("not checked: ") and "no-data: no processed data" in verdict


def test_every_committed_record_names_a_commit_this_history_holds():
    """A fresh clone can `git show` the code that made each committed record with an identity; a record from
    before trainings recorded their code (fashion-mnist's, until `make fashion-mnist` remakes it) cannot name one."""
    missing = {}
    for path in sorted(ROOT.glob("*/train/*.json")) + sorted(ROOT.glob("*/reports/train/*.json")):
        record = json.loads(path.read_text())
        if "identity" in record or "code_files" in record:
            if not reference.commit_exists(record["environment"]["git_commit"]):
                missing[str(path.relative_to(ROOT))] = record["environment"]["git_commit"]
        else:
            assert reference.commit_holding(record.get("code_files", {})) is None
    assert not missing, missing


def test_a_package_changed_by_hand_after_setup_is_a_difference_of_the_record():
    """`pip install pandas==3.1.0` over the locked 3.1.1: the lock file is unchanged, what ran is not."""
    recorded = {"recipe": {"train": {"lr": 0.001}}, "data": "d", "lock": "l" * 64, "installed_vs_lock": [],
                "canary": {"machine": "m", "digest": "c", "trace": []}}
    today = recorded | {"installed_vs_lock": ["pandas: 3.1.0 installed, 3.1.1 locked"]}
    assert identity.judge(recorded, "0" * 40, today, None, "mlp", Path("unused")) == [
        "the installed packages differ from the record's (made with: exactly the lock; today: pandas: 3.1.0 "
        "installed, 3.1.1 locked)"]
    assert identity.judge(recorded, "0" * 40, recorded, None, "mlp", Path("unused")) == []


@pytest.mark.slow
def test_a_recipe_that_diverges_has_a_canary_that_says_where(tmp_path):
    """The training itself then fails with its own message; the canary records the divergence as behaviour."""
    data = small_data(tmp_path / "processed")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(optimizer="sgd", lr=1.0e10)
    params = load_params_from(raw, tmp_path)
    result = identity.canary(params, "mlp", data)
    assert result["trace"][-2][0].startswith("diverged: canary mlp: the training loss is not finite (nan) at epoch 1")
    assert result["trace"][-1][0] == "final weights" and identity.canary(params, "mlp", data)["digest"] == result["digest"]


def load_params_from(raw: dict, folder: Path):
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


PYPROJECT = '[project]\nname = "p"\ndependencies = ["psycopg[binary]==3.3.9", "numpy==2.4.6"]\n' \
            '[project.optional-dependencies]\ntest = ["pytest==9.2.0"]\n'
LOCK = """numpy==2.4.6 \\
    --hash=sha256:aa
    # via p (pyproject.toml)
psycopg==3.3.9 \\
    --hash=sha256:bb
    # via p (pyproject.toml)
psycopg-binary==3.3.9 \\
    --hash=sha256:cc
    # via psycopg
pluggy==1.6.0 \\
    --hash=sha256:dd
    # via pytest
pytest==9.2.0 \\
    --hash=sha256:ee
    # via
    #   p (pyproject.toml)
    #   pytest-benchmark
"""


def committed_lock(folder: Path, lock: str) -> tuple[str, str]:
    """A git repository holding pyproject.toml and `lock` as requirements.lock: (the lock's SHA-256, the commit)."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    (folder / "pyproject.toml").write_text(PYPROJECT)
    (folder / "requirements.lock").write_text(lock)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "lock"]):
        subprocess.run(git + cmd, cwd=folder, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True).stdout.strip()
    return hashlib.sha256(lock.encode()).hexdigest(), commit


def test_the_packages_a_training_imports_are_the_dependencies_and_theirs_not_the_test_tools():
    assert lockfile.runtime_pins(LOCK, PYPROJECT) == {"numpy": "2.4.6", "psycopg": "3.3.9", "psycopg-binary": "3.3.9"}


def test_a_test_tool_added_to_the_lock_leaves_the_record_current_and_a_changed_dependency_is_named(tmp_path):
    recorded, commit = committed_lock(tmp_path, LOCK)
    with_a_tool = LOCK + "pytest-xdist==3.8.0 \\\n    --hash=sha256:ff\n    # via p (pyproject.toml)\n"
    (tmp_path / "requirements.lock").write_text(with_a_tool)
    today = hashlib.sha256(with_a_tool.encode()).hexdigest()
    assert identity.lock_difference(recorded, commit, today, tmp_path) is None
    (tmp_path / "requirements.lock").write_text(with_a_tool.replace("numpy==2.4.6", "numpy==2.4.7"))
    assert identity.lock_difference(recorded, commit, "t" * 64, tmp_path) == \
        "the packages a training imports differ (requirements.lock: numpy 2.4.6 -> 2.4.7)"
    # A record whose lock its commit does not hold (changed, not committed): nothing to compare but the files.
    assert "does not hold its lock: which packages changed is not known" in \
        identity.lock_difference("u" * 64, commit, today, tmp_path)
    (tmp_path / "requirements.lock").unlink()  # no lock here at all
    assert identity.lock_difference(recorded, commit, "none", tmp_path) == \
        f"requirements.lock differs ({recorded[:12]} -> none: this project has no lock)"
