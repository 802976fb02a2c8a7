"""`make gpu-check`: what a rented GPU must measure, in one run of a few minutes.

    python -m mnistbench.gpu_check                       # on a machine with a CUDA GPU
    python -m mnistbench.gpu_check --device cpu --tiny   # the same steps on CPU, small (the tests run this)

1. The kernel and training-step benchmarks on the device (pytest-benchmark; synchronised inside the timed
   function, warmed up first, TF32 off) -> reports/benchmarks/<device>-<name>.json.
2. The default pipeline, `dvc repro` with train.device set to the device, in a scratch copy of the project
   (the project's own dvc.lock, reports and MLflow store stay as they are), timed as a whole
   -> reports/benchmarks/<device>-<name>-pipeline.json: every run's test accuracy, precision and training
   time, and the time-to-accuracy results.
3. reports/benchmarks.md, regenerated from every JSON in reports/benchmarks/.

Each step has a time limit, so that the whole check ends inside one short rental; a step that runs out
is recorded as such, not waited for.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from mnistbench import benchreport, layout, scratch
from mnistbench.errors import fail
from mnistbench.files import write_json
from mnistbench.settings import ROOT
BENCH_LIMIT_S = 180
PIPELINE_LIMIT_S = 360


def device_slug(device: str) -> str:
    """'cuda-nvidia-h100-80gb-hbm3' or 'cpu-<cpu model>': the JSON files' names."""
    from mnistbench.environment import cpu_name

    name = torch.cuda.get_device_name(0) if device == "cuda" else cpu_name()
    return f"{device}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# The tiny profile's pipeline ends at the test evaluation: the stages after it read nothing from the device.
TINY_TARGETS = ("evaluate",)


def shrink(params: dict) -> dict:
    """The tiny profile: one model, one epoch on 500 images, no time-to-accuracy targets."""
    params["pipeline"]["models"] = ["mlp"]
    params["train"].update(epochs=1, limit_train_images=500)
    params["time_to_accuracy"]["sprints"] = {}
    return params


def run_benchmarks(device: str, out: Path, tiny: bool) -> dict:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "benchmarks"), "-q", "-p", "no:cacheprovider",
           "-k", device + ("" if not tiny else " and sgemm"), f"--benchmark-json={out}"]
    # A pytest run of its own: pytest-benchmark stays off in a pytest-xdist worker, and would in a child that
    # inherited an outer run's worker variables (gpu_check started by a test under `pytest -n`).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))}
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, timeout=BENCH_LIMIT_S, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {BENCH_LIMIT_S} s"}
    print(done.stdout[-1500:], done.stderr[-1500:], sep="\n")
    return {"status": "passed" if done.returncode == 0 else f"failed (pytest exit {done.returncode})",
            "seconds": time.perf_counter() - started}


def run_pipeline(device: str, tiny: bool) -> dict:
    """`dvc repro` of the default pipeline on `device`, in a scratch copy; its results, read back."""
    def edit(params: dict) -> None:
        params["train"]["device"] = device  # explicit: fail loudly if torch sees no such device
        if tiny:
            shrink(params)

    try:
        targets = TINY_TARGETS if tiny else ()
        with scratch.repro(edit, targets=targets, timeout=PIPELINE_LIMIT_S) as (project, done, seconds):
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
                return {"status": f"failed (dvc repro exit {done.returncode})", "seconds": seconds}
            runs = {}
            for path in sorted((project / "reports" / layout.TRAIN).glob("*.json")):
                trained = json.loads(path.read_text())
                tested = json.loads((project / "reports" / layout.METRICS / path.name).read_text())
                runs[path.stem] = {"test_accuracy": tested["test_accuracy"], "precision": trained["precision"],
                                   "train_seconds": trained["train_seconds"], "wall_seconds": trained["wall_seconds"],
                                   "environment": trained["environment"]}
            tta_file = project / "reports" / "time_to_accuracy.json"  # not made by the tiny profile
            tta = json.loads(tta_file.read_text()) if tta_file.exists() else {}
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {PIPELINE_LIMIT_S} s"}
    return {"status": "passed", "seconds": seconds, "profile": "tiny" if tiny else "default", "runs": runs,
            "time_to_accuracy": {k: {f: v[f] for f in ("olympic_mean_seconds", "min_seconds", "max_seconds", "runs",
                                                       "reached_on_valid", "confirmed_on_test", "precision",
                                                       "threshold", "valid", "reason")} for k, v in tta.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true",
                        help="sgemm only and a one-epoch, one-model pipeline up to the test evaluation")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("gpu-check: torch sees no CUDA device on this machine; run it where one is "
             "(or with --device cpu --tiny to try the steps)")
    bench_dir = args.out / "benchmarks"
    bench_dir.mkdir(parents=True, exist_ok=True)
    slug = device_slug(args.device)
    bench = run_benchmarks(args.device, bench_dir / f"{slug}.json", args.tiny)
    print(f"benchmarks: {bench['status']}")
    pipeline = run_pipeline(args.device, args.tiny)
    print(f"pipeline: {pipeline['status']} in {pipeline.get('seconds', 0):.0f} s")
    write_json(bench_dir / f"{slug}-pipeline.json", {"device": args.device, "name": slug, "benchmarks": bench,
                                                     "pipeline": pipeline})
    benchreport.write(sorted(bench_dir.glob("*.json")), args.out / "benchmarks.md")
    print(f"wrote {bench_dir / (slug + '-pipeline.json')} and {args.out / 'benchmarks.md'}")
    if bench["status"] != "passed" or pipeline["status"] != "passed":
        sys.exit(1)


if __name__ == "__main__":
    main()
