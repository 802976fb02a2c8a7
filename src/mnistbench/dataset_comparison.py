"""`make fashion-mnist`: the default pipeline's comparison on another dataset, kept in a folder of its own.

    python -m mnistbench.dataset_comparison --dataset fashion-mnist --out fashion-mnist

Runs `dvc repro` with `data.dataset` changed, in a scratch copy of the project, so that the project's own
dvc.lock and reports (MNIST's) stay as they are; then copies that run's reports/, dvc.lock and params.yaml
into --out, which is the record of that run. Its MLflow runs go to the project's store, in the experiment
`mnistbench-<dataset>`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mnistbench import scratch, tracking
from mnistbench.datasets import DATASETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=[d for d in DATASETS if d != "mnist"], default="fashion-mnist")
    parser.add_argument("--out", type=Path, help="default: the dataset's name, in the project root")
    args = parser.parse_args()
    out = args.out or scratch.ROOT / args.dataset

    def edit(params: dict) -> None:
        params["data"]["dataset"] = args.dataset
        params["mlflow"]["experiment"] = f"mnistbench-{args.dataset}"

    print(f"dvc repro on {args.dataset} in a scratch copy (the default pipeline: minutes to tens of minutes)")
    with scratch.repro(edit, env={"MLFLOW_TRACKING_URI": tracking.tracking_uri()}) as (project, done, seconds):
        print(done.stdout[-4000:])
        if done.returncode != 0:
            sys.exit(f"error: dvc repro on {args.dataset} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        staged = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(project / "reports", staged / "reports")
        for name in ("dvc.lock", "params.yaml"):
            shutil.copy2(project / name, staged / name)
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)
    print(f"wrote {out}/ ({seconds / 60:.1f} min): reports/comparison.md, the dvc.lock and params.yaml of the run")


if __name__ == "__main__":
    main()
