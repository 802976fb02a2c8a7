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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from mnistbench import benchreport
from mnistbench.files import write_json

ROOT = Path(__file__).resolve().parents[2]
BENCH_LIMIT_S = 180
PIPELINE_LIMIT_S = 360


def device_slug(device: str) -> str:
    """'cuda-nvidia-h100-80gb-hbm3' or 'cpu-<cpu model>': the JSON files' names."""
    from mnistbench.environment import cpu_name

    name = torch.cuda.get_device_name(0) if device == "cuda" else cpu_name()
    return f"{device}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def copy_project(dest: Path) -> None:
    """The files git would commit (tracked, and untracked ones not ignored), as a fresh checkout has them."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


def shrink(params: dict) -> dict:
    """The tiny profile: one model, one epoch on 500 images, no time-to-accuracy targets."""
    params["pipeline"]["models"] = ["mlp"]
    params["train"].update(epochs=1, limit_train_images=500)
    params["time_to_accuracy"]["models"] = {}
    return params


def run_benchmarks(device: str, out: Path, tiny: bool) -> dict:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "benchmarks"), "-q", "-p", "no:cacheprovider",
           "-k", device + ("" if not tiny else " and sgemm"), f"--benchmark-json={out}"]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, timeout=BENCH_LIMIT_S, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {BENCH_LIMIT_S} s"}
    print(done.stdout[-1500:], done.stderr[-1500:], sep="\n")
    return {"status": "passed" if done.returncode == 0 else f"failed (pytest exit {done.returncode})",
            "seconds": time.perf_counter() - started}


def run_pipeline(device: str, tiny: bool) -> dict:
    """`dvc repro` of the default pipeline on `device`, in a scratch copy; its results, read back."""
    with tempfile.TemporaryDirectory(prefix="mnistbench-gpu-check-") as scratch:
        project = Path(scratch)
        copy_project(project)
        for stale in ("dvc.lock", "reports"):
            path = project / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["train"]["device"] = device  # explicit: fail loudly if torch sees no such device
        if tiny:
            params = shrink(params)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
                            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        started = time.perf_counter()
        try:
            done = subprocess.run(["dvc", "repro"], cwd=project, env=env, timeout=PIPELINE_LIMIT_S,
                                  capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {PIPELINE_LIMIT_S} s"}
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return {"status": f"failed (dvc repro exit {done.returncode})", "seconds": seconds}
        runs = {}
        for path in sorted((project / "reports" / "train").glob("*.json")):
            trained = json.loads(path.read_text())
            tested = json.loads((project / "reports" / "metrics" / path.name).read_text())
            runs[path.stem] = {"test_accuracy": tested["test_accuracy"], "precision": trained["precision"],
                               "train_seconds": trained["train_seconds"], "wall_seconds": trained["wall_seconds"],
                               "environment": trained["environment"]}
        tta = json.loads((project / "reports" / "time_to_accuracy.json").read_text())
        return {"status": "passed", "seconds": seconds, "profile": "tiny" if tiny else "default", "runs": runs,
                "time_to_accuracy": {k: {f: v[f] for f in ("seconds", "epochs", "valid_accuracy", "test_accuracy",
                                                           "precision", "threshold")} for k, v in tta.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="sgemm only and a one-epoch, one-model pipeline")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: gpu-check: torch sees no CUDA device on this machine; run it where one is "
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
