"""`make ui`: the MLflow UI on this machine only, and the links that open it on the training runs.

MLflow 3's UI remembers a "GenAI / Model training" switch in the browser and starts on GenAI; the
experiments are tagged as model training (tracking.EXPERIMENT_KIND), and a link with
`workflowType=machine_learning` opens the run list whatever the browser remembered, with the columns and
order of the experiment's shared view (tracking.RUN_LIST_VIEW: test accuracy, model, seed, ...).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from mnistbench import tracking


def links(host: str, port: int) -> list[str]:
    client = tracking.mlflow.MlflowClient(tracking.tracking_uri())
    view = tracking.RUN_LIST_VIEW[0].removeprefix("mlflow.sharedViewState.")
    return [f"  {e.name}: http://{host}:{port}/#/experiments/{e.experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={view}"
            for e in client.search_experiments() if e.name != "Default"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1: this machine only")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    uri = tracking.tracking_uri()
    print(f"MLflow UI for {uri}; the training runs of each experiment:", *links(args.host, args.port), sep="\n",
          flush=True)
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
