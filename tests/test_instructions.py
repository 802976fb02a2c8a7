"""The instruction-count gate (instructions.py) and its history (benchreport.py), on counts given here: the
counting itself runs under valgrind for minutes, in CI (.ci/run, `make counts`)."""

import json

import pytest
import yaml

from conftest import ROOT
from mnistbench import benchreport, instructions

GATES = {"instructions": {"tolerance": 0.03, "baseline": {"training step mlp, batch 32": 1_000_000,
                                                           "kernel conv1 forward, batch 32": 2_000_000}}}


def counts(mlp: int, conv: int = 2_000_000, commit: str = "a" * 40) -> dict:
    return {"machine": {"cpu": "AMD EPYC", "valgrind": "valgrind-3.19.0", "git_commit": commit}, "repeats": 3,
            "instructions": {"training step mlp, batch 32": mlp, "kernel conv1 forward, batch 32": conv}}


def test_a_step_five_percent_slower_fails_naming_the_benchmark_its_count_the_baseline_and_the_percentage():
    passes, failures = instructions.gate(counts(1_050_000), GATES)
    assert failures == ["training step mlp, batch 32: 1,050,000 instructions (baseline 1,000,000, +5.00%, tolerance "
                        "3%) [instruction count]: SLOWER beyond tolerance"]
    assert passes == ["kernel conv1 forward, batch 32: 2,000,000 instructions (baseline 2,000,000, +0.00%, tolerance "
                      "3%) [instruction count]"]


def test_an_unchanged_build_passes_and_a_benchmark_without_a_baseline_fails():
    assert instructions.gate(counts(1_000_000), GATES)[1] == []
    extra = counts(1_000_000)
    extra["instructions"]["training step lenet5, batch 32"] = 5
    assert instructions.gate(extra, GATES)[1] == [
        "training step lenet5, batch 32: 5 instructions, no baseline in gates.yaml (instructions.baseline)"]


def test_the_committed_baseline_has_a_training_step_of_every_registered_model():
    from mnistbench.models import REGISTRY

    baseline = yaml.safe_load((ROOT / "gates.yaml").read_text())["instructions"]["baseline"]
    assert {f"training step {m}, batch 32" for m in REGISTRY} <= set(baseline)


def test_a_benchmark_of_the_baseline_that_was_not_counted_fails():
    missing = counts(1_000_000)
    del missing["instructions"]["kernel conv1 forward, batch 32"]
    assert instructions.gate(missing, GATES)[1] == [
        "kernel conv1 forward, batch 32: not counted (baseline 2,000,000); expected every benchmark of the baseline"]


def test_the_history_names_the_commit_where_a_count_rose(tmp_path, monkeypatch):
    folder = tmp_path / "counts"
    folder.mkdir()
    for i, (commit, mlp) in enumerate((("1" * 40, 1_000_000), ("2" * 40, 1_001_000), ("3" * 40, 1_080_000))):
        (folder / f"{commit[:12]}.json").write_text(json.dumps(counts(mlp, commit=commit)))
    monkeypatch.setattr(benchreport, "commit_order", lambda: {"1" * 12: 0, "2" * 12: 1, "3" * 12: 2})
    lines, series = benchreport.count_history(folder, 0.03)
    assert "- training step mlp, batch 32: +7.9% at 333333333333 (1,001,000 -> 1,080,000, after 222222222222)" in lines
    assert not any("kernel conv1" in line and "at " in line for line in lines if line.startswith("- "))
    assert [c for c, _ in series[0][1]] == ["1" * 12, "2" * 12, "3" * 12]


def test_the_shards_counts_come_back_in_the_one_fixed_order():
    order = [f"benchmark {i}" for i in range(11)]
    for shards in (1, 2, 3):
        per_shard = [[(name, order.index(name)) for name in order[i::shards]] for i in range(shards)]
        assert list(instructions.in_fixed_order(per_shard).items()) == [(name, i) for i, name in enumerate(order)]
