"""A record grows without its older weights: a pair whose weights are not here keeps its recorded evaluation only
when that is of the training its record names, on today's test images, with the predictions it wrote
(evaluate_stage.evaluation_differs); otherwise evaluate refuses, naming the file and what to do. Evaluations made
before they named their training are bound to it only on the evidence of the dvc.lock beside them."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT
from mnistbench import evaluate_stage, reference
from mnistbench.config import load_params
from mnistbench.errors import MnistbenchError
from mnistbench.files import sha256_of


def processed(folder: Path) -> Path:
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for split in ("train", "valid", "test"):
        torch.save({"images": torch.randint(0, 256, (16, 28, 28), generator=g, dtype=torch.uint8),
                    "labels": torch.randint(0, 10, (16,), generator=g)}, folder / f"{split}.pt")
    return folder


def recorded_pair(reports: Path, data: Path, run="mlp-0", training="run-a", legacy=False) -> None:
    """A training record and the evaluation it had; `legacy`: one written before evaluations named their training."""
    model, seed = run.rsplit("-", 1)
    for folder in ("train", "metrics", "predictions", "summary"):
        (reports / folder).mkdir(parents=True, exist_ok=True)
    (reports / "train" / f"{run}.json").write_text(json.dumps({"model": model, "seed": int(seed),
                                                              "mlflow_run_id": training}))
    predictions = reports / "predictions" / f"{run}.csv"
    predictions.write_text("actual,predicted\n7,7\n")
    tested = {"model": model, "seed": int(seed), "test_accuracy": 1.0}
    if not legacy:
        tested |= {"training": training, "model_sha256": None, "test_data": evaluate_stage.test_digest(data),
                   "predictions_sha256": sha256_of(predictions)}
    (reports / "metrics" / f"{run}.json").write_text(json.dumps(tested))
    (reports / "summary" / f"{run}.json").write_text(json.dumps({"test_accuracy": 1.0}))


def differs(reports: Path, data: Path, run="mlp-0") -> str | None:
    trained = json.loads((reports / "train" / f"{run}.json").read_text())
    return evaluate_stage.evaluation_differs(reports, run, trained, data)


def test_an_evaluation_of_the_recorded_training_on_these_test_images_stands(tmp_path):
    data = processed(tmp_path / "processed")
    recorded_pair(tmp_path / "reports", data)
    assert differs(tmp_path / "reports", data) is None


@pytest.mark.parametrize("change, said", [
    (lambda r, d: (r / "train" / "mlp-0.json").write_text(json.dumps({"seed": 0, "mlflow_run_id": "run-b"})),
     "not an evaluation of the training its record names"),
    (lambda r, d: (r / "predictions" / "mlp-0.csv").write_text("actual,predicted\n7,1\n"),
     "predictions/mlp-0.csv: not the bytes its evaluation wrote"),
    (lambda r, d: torch.save({"images": torch.zeros(1, 28, 28, dtype=torch.uint8), "labels": torch.zeros(1)},
                             d / "test.pt"), "was evaluated on other test images"),
    (lambda r, d: (r / "summary" / "mlp-0.json").unlink(), "summary/mlp-0.json missing"),
])
def test_an_evaluation_of_another_training_other_images_or_changed_bytes_does_not(tmp_path, change, said):
    data = processed(tmp_path / "processed")
    recorded_pair(tmp_path / "reports", data)
    change(tmp_path / "reports", data)
    assert said in differs(tmp_path / "reports", data)


def test_evaluate_refuses_a_pair_without_weights_or_a_standing_evaluation_before_writing_anything(tmp_path):
    data = processed(tmp_path / "processed")
    reports = tmp_path / "reports"
    recorded_pair(reports, data, run="mlp-0", training="run-a")
    recorded_pair(reports, data, run="mlp-1", training="run-b")
    (reports / "train" / "mlp-1.json").write_text(json.dumps({"seed": 1, "mlflow_run_id": "retrained"}))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["pipeline"]["models"], raw["seeds"] = ["mlp"], {"train": [0, 1], "per_model": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    before = {p: p.read_bytes() for p in reports.rglob("*") if p.is_file()}
    with pytest.raises(MnistbenchError) as refused:
        evaluate_stage.evaluate_all(params, data, tmp_path / "models", reports)
    assert f"{tmp_path / 'models' / 'mlp-1.pt'}: not here" in str(refused.value)
    assert "make pull" in str(refused.value) and "reports/train/mlp-1.json" in str(refused.value)
    assert {p: p.read_bytes() for p in reports.rglob("*") if p.is_file()} == before


def lock_of(reports: Path) -> dict:
    """The train and evaluate entries DVC would have written for `reports` as they are."""
    md5 = {folder: reference.dvc_folder_md5(reports / folder) + ".dir"
           for folder in ("train", "metrics", "predictions", "summary")}
    return {"stages": {
        "train": {"outs": [{"path": "models", "md5": "m.dir"}, {"path": "reports/train", "md5": md5["train"]}]},
        "evaluate": {"deps": [{"path": "models", "md5": "m.dir"}, {"path": "reports/train", "md5": md5["train"]}],
                     "outs": [{"path": f"reports/{f}", "md5": md5[f]} for f in ("metrics", "predictions", "summary")]}}}


def test_older_evaluations_are_bound_to_their_training_on_the_evidence_of_the_lock(tmp_path):
    data = processed(tmp_path / "processed")
    reports = tmp_path / "record" / "reports"
    recorded_pair(reports, data, legacy=True)
    (reports.parent / "dvc.lock").write_text(yaml.safe_dump(lock_of(reports)))
    assert "not an evaluation of the training its record names" in differs(reports, data)  # it names none yet
    assert reference.bind_evaluations(reports, data) == 1
    assert differs(reports, data) is None
    assert reference.bind_evaluations(reports, data) == 0  # nothing left to bind


def test_without_that_evidence_nothing_is_bound(tmp_path):
    data = processed(tmp_path / "processed")
    reports = tmp_path / "record" / "reports"
    recorded_pair(reports, data, legacy=True)
    (reports.parent / "dvc.lock").write_text(yaml.safe_dump(lock_of(reports)))
    (reports / "predictions" / "mlp-0.csv").write_text("actual,predicted\n7,1\n")  # changed after the evaluation
    before = (reports / "metrics" / "mlp-0.json").read_bytes()
    with pytest.raises(MnistbenchError, match="dvc.lock: does not show"):
        reference.bind_evaluations(reports, data)
    assert (reports / "metrics" / "mlp-0.json").read_bytes() == before


def test_a_pair_without_weights_is_retrained_by_default_and_kept_where_the_record_grows(tmp_path):
    """matrix.without_weights: the default pipeline's clone trains its runs itself; reproduce/ keeps what it has."""
    from mnistbench import train_stage

    data = processed(tmp_path / "processed")
    reports = tmp_path / "reports"
    recorded_pair(reports, data)
    made = {"recipe": {}, "data": "d", "lock": "l", "installed_vs_lock": [],
            "canary": {"machine": "m", "digest": "c", "trace": []}}
    record = reports / "train" / "mlp-0.json"
    record.write_text(json.dumps(json.loads(record.read_text()) | {"identity": made, "environment": {"git_commit": "0"}}))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for setting, kept in (("retrain", False), ("keep", True)):
        raw["matrix"]["without_weights"] = setting
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
        params = load_params(tmp_path / "params.yaml")
        assert train_stage.is_current(reports, "mlp-0", tmp_path / "models" / "mlp-0.pt", params, "mlp", 0, made,
                                      data) is kept, setting
