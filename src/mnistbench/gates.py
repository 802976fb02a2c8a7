"""CI gates: accuracy against the reference reproduction, speed as ratios measured in the same run.

    python -m mnistbench.gates accuracy --metrics reports/metrics --gates gates.yaml
    python -m mnistbench.gates speed --bench reports/benchmarks/ci.json --gates gates.yaml

Accuracy: each run's test accuracy must reach its model's floor, the one-sided prediction bound for one new
seed drawn from the reference reproduction's seeds (reproduce/reports), at the false-alarm rate gates.yaml
sets; a model without a reference needs an explicit floor there.

Absolute times on a shared 2-core machine vary run to run, so the speed gate never compares
seconds: it compares ratios of two timings taken in the same run (fused vs naive attention,
our loader vs the notebook loader, a model's training throughput vs a matmul calibration)
against committed baselines, each with a tolerance set from the spread of repeated runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

import yaml

from mnistbench import layout, reference
from mnistbench.comparisons import Reference
from mnistbench.errors import MnistbenchError, exit_on_error, fail
from mnistbench.files import read_json


def accuracy_floors(gate: dict, root: Path) -> dict[str, tuple[float, str]]:
    """Each gated model's floor (a fraction) and where it comes from: the one-sided prediction bound for one new
    seed of the reference reproduction (`reference`, `false_alarm`), or an explicit floor for a model without
    one (`floors`)."""
    found = reference.accuracies(root / gate["reference"])
    floors, too_few = {}, {}
    for model, values in found.items():
        ref = Reference([100 * v for v in values.values()])
        if ref.n >= 2:
            floors[model] = (ref.lower_bound(gate["false_alarm"]) / 100,
                             f"reference n={ref.n}, mean {ref.mean:.2f}, sd {ref.sd:.2f}")
        else:
            too_few[model] = ref.n
    for model, floor in (gate.get("floors") or {}).items():
        floors.setdefault(model, (floor, "explicit floor (no reference)"))
    for model, n in too_few.items():  # a bound for one new seed needs a spread: two seeds at least
        floors.setdefault(model, (None, f"the reference has {n} seed of it; a floor needs at least 2 (or an "
                                        f"explicit floor in the gates file)"))
    return floors


def accuracy_failures(metrics_dir: Path, floors: dict[str, tuple[float, str]]) -> tuple[list[str], list[str]]:
    """Lines for every run in `metrics_dir`: (passes, failures). A run of a model with no floor fails."""
    passes, failures = [], []
    files = sorted(metrics_dir.glob("*.json"))
    if not files:
        return [], [f"{metrics_dir}: no metrics (expected <model>-<seed>.json from the evaluate stage)"]
    for path in files:
        record = json.loads(path.read_text())
        model, value = record["model"], record["test_accuracy"]
        if model not in floors:
            failures.append(f"{path.stem}: test accuracy {value:.4f}, but {model} has no reference run and no "
                            f"explicit floor in the gates file")
            continue
        floor, source = floors[model]
        if floor is None:
            failures.append(f"{path.stem}: test accuracy {value:.4f}, no floor: {source}")
            continue
        line = f"{path.stem}: test accuracy {value:.4f}, floor {floor:.4f} ({source})"
        (passes if value >= floor else failures).append(
            line if value >= floor else f"{line}: BELOW by {floor - value:.4f}")
    return passes, failures


class MissingBenchmark(MnistbenchError, LookupError):
    """The benchmark JSON lacks a timing a ratio needs: a partial run, e.g. `pytest -k`."""


def _find(bench: dict, group: str, impl: str) -> dict:
    for b in bench["benchmarks"]:
        if b.get("group") == group and b.get("extra_info", {}).get("impl") == impl:
            return b
    raise MissingBenchmark(f"no benchmark {impl!r} in group {group!r}")


def _median(bench: dict, group: str, impl: str) -> float:
    return _find(bench, group, impl)["stats"]["median"]


EPOCH_GROUP = "write-up CNN, one training epoch, 10,000 images, batch 32"


def speed_ratios(bench: dict) -> dict[str, float]:
    """Ratios of timings from one benchmark run; higher is better for every one of them."""
    ratios = {
        "attention: sdpa speed-up over naive (batch 32)":
            _median(bench, "attention batch 32", "naive") / _median(bench, "attention batch 32", "sdpa"),
        "data: preloaded speed-up over notebook loader":
            _median(bench, "data pipeline, 10,000 images, batch 32", "notebook")
            / _median(bench, "data pipeline, 10,000 images, batch 32", "preloaded"),
        "write-up CNN epoch: speed-up over a notebook's":
            _median(bench, EPOCH_GROUP, "notebook") / _median(bench, EPOCH_GROUP, "mnistbench"),
    }
    for model in ("mlp", "cnn", "vit"):
        # A model's training speed in units of this machine's matmul speed, the sgemm timed in the same test.
        step = _find(bench, "training step, batch 32", model)
        ratios[f"train step {model}: per sgemm"] = step["extra_info"]["sgemm_calibration_s"] / step["stats"]["median"]
    return ratios


def speed_failures(bench: dict, baselines: dict[str, dict]) -> tuple[list[str], list[str]]:
    passes, failures = [], []
    for name, value in speed_ratios(bench).items():
        base = baselines.get(name)
        if base is None:
            failures.append(f"{name}: {value:.3f}, but no baseline in the gates file")
            continue
        floor = base["baseline"] * (1 - base["tolerance"])
        line = f"{name}: {value:.3f} (baseline {base['baseline']:.3f}, floor {floor:.3f} at -{100 * base['tolerance']:.0f}%)"
        if value >= floor:
            passes.append(line)
        else:
            failures.append(f"{line}: REGRESSED by {100 * (1 - value / base['baseline']):.1f}%")
    return passes, failures


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gate", choices=["accuracy", "speed"])
    parser.add_argument("--gates", type=Path, default=Path("gates.yaml"))
    parser.add_argument("--metrics", type=Path, default=Path("reports") / layout.METRICS)
    parser.add_argument("--bench", type=Path, default=Path("reports/benchmarks/ci.json"))
    args = parser.parse_args()
    if not args.gates.is_file():
        fail(f"{args.gates}: file not found; expected the CI gates file (gates.yaml in the project)")
    gates = yaml.safe_load(args.gates.read_text())
    if args.gate == "accuracy":
        gate = gates["accuracy"]
        folder = args.gates.parent / gate["reference"]
        print(f"reference: {folder} ({reference.status(folder)}); floors at a false-alarm rate of "
              f"{gate['false_alarm']:g} per model")
        passes, failures = accuracy_failures(args.metrics, accuracy_floors(gate, args.gates.parent))
    else:
        try:
            passes, failures = speed_failures(read_json(args.bench), gates["speed"])
        except MissingBenchmark as missing:
            fail(f"{args.bench}: {missing}; expected a full `pytest tests/benchmarks --benchmark-json` run")
    verdict(args.gate, passes, failures)


def verdict(gate: str, passes: list[str], failures: list[str]) -> NoReturn:
    """Every check's line, the count of each, and exit 1 when any failed: the one way a gate ends."""
    for line in passes:
        print(f"ok    {line}")
    for line in failures:
        print(f"FAIL  {line}")
    print(f"{gate}-gate: {len(passes)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
