import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT
from mnistbench import claims
from mnistbench.comparisons import Reference
from mnistbench.writeup import load_logs, parse_file

WRITEUP = ROOT.parent / "shared" / "reference" / "homework6-writeup.md"


@pytest.fixture(scope="module")
def committed_logs():
    return load_logs(ROOT / "reference" / "writeup_logs.csv")


def test_committed_logs_are_the_parse_of_the_writeup(committed_logs):
    if not WRITEUP.is_file():
        pytest.fail(f"{WRITEUP} not found: the write-up lies in ../shared/reference beside the project")
    pd.testing.assert_frame_equal(parse_file(WRITEUP), committed_logs)


def test_parse_spot_checks(committed_logs):
    assert committed_logs.groupby("model", sort=False).size().to_dict() == {"mlp": 11, "cnn": 11, "vit_writeup": 11}
    mlp1 = committed_logs[(committed_logs["model"] == "mlp") & (committed_logs["epoch"] == 1)].iloc[0]
    assert (mlp1["train_loss_writeup"], mlp1["correct"], mlp1["accuracy_percent"]) == (0.0102, 11321, 94.3417)
    tests = committed_logs[committed_logs["split"] == "test"].set_index("model")["accuracy_percent"]
    assert tests.to_dict() == {"mlp": 97.6, "cnn": 98.8, "vit_writeup": 26.91}
    vit10 = committed_logs[(committed_logs["model"] == "vit_writeup") & (committed_logs["epoch"] == 10)].iloc[0]
    assert (vit10["loss_writeup"], vit10["correct"]) == (0.0592, 3122)


@pytest.mark.parametrize("setting,params,shape", [
    (claims.PROBLEM_1A, 40, (99, 8)),
    (claims.PROBLEM_1B, 392, (13, 13, 8)),
])
def test_problem_1_formula_and_torch_agree(setting, params, shape):
    assert setting.parameters_by_formula() == params
    assert setting.output_by_formula() == shape
    assert setting.measured_with_torch() == (params, shape)


def test_problem_1_verdicts():
    rows = {(r["where"], r["claim"]): r for r in claims.problem_1_rows()}
    assert rows[("I (a)", "40 parameters")]["verdict"] == "reproduced"
    assert rows[("I (b)", "392 parameters")]["verdict"] == "reproduced"
    wrong_b = rows[("I (b)", "output 12 x 12 x 3")]
    assert wrong_b["verdict"] == "refuted"
    assert "'+1'" in wrong_b["evidence"] and "number of filters (8), not 3" in wrong_b["evidence"]


def test_seed_verdicts_place_the_claim_in_our_distribution_of_one_more_seed():
    ours = [97.5, 97.61, 97.59, 97.6, 98.0]
    lo, hi = Reference(ours).prediction_interval()
    inside, evidence = claims.seed_verdict(hi - 0.01, ours)  # far outside our seeds' range, inside the interval
    assert inside == "reproduced" and f"[{lo:.2f}, {hi:.2f}]" in evidence and "with p = " in evidence
    assert float(evidence.rsplit("p = ", 1)[1]) > 0.05
    outside, evidence = claims.seed_verdict(hi + 0.01, ours)
    assert outside == "refuted" and float(evidence.rsplit("p = ", 1)[1]) < 0.05
    assert claims.seed_verdict(97.6, [97.5])[0] == "not checkable"


def test_log_arithmetic_catches_a_wrong_percentage(committed_logs):
    assert all(r["verdict"] == "reproduced" for r in claims.log_arithmetic_rows(committed_logs))
    broken = committed_logs.copy()
    broken.loc[0, "accuracy_percent"] = 94.3
    row = claims.log_arithmetic_rows(broken)[0]
    assert row["verdict"] == "refuted" and "epochs [1]" in row["evidence"]


@pytest.mark.slow
def test_the_protocol_search_runs_and_names_a_winner(tmp_path):
    """research/protocol_search.py, on a small random split: every candidate trains and is scored."""
    from test_reliability import fake_processed

    processed = fake_processed(tmp_path / "processed", n_train=320, n_valid=64)
    out = tmp_path / "search"
    done = subprocess.run([sys.executable, str(ROOT / "research" / "protocol_search.py"), "--data", str(processed),
                           "--out", str(out), "--models", "mlp", "--params", str(ROOT / "params.yaml")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "search.md").read_text()
    assert "Command: `python research/protocol_search.py`" in text and "Closest over both models: **" in text
    assert len((tmp_path / "search.csv").read_text().splitlines()) == 1 + 6  # a header and six candidates
