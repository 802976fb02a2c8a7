"""MLflow: one run per model per training, in the experiment named in params.yaml.

The default store is `mlflow.db` (SQLite) in the project root, addressed by an absolute
path; `MLFLOW_TRACKING_URI` overrides it. When DVC runs a queued experiment in a temporary
copy under `.dvc/tmp/exps/`, the default still points at the original project's store.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

# Offline-first: no usage data leaves the machine. Set before mlflow is imported.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
import sqlalchemy.exc  # noqa: E402
import torch  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402

from mnistbench.errors import MnistbenchError  # noqa: E402

# SQLite allows one writer at a time; concurrent runs (dvc queue start -j 3) retry instead of failing.
LOCK_RETRIES = 20


def project_root(start: Path | None = None) -> Path:
    """The DVC project's root (the folder holding .dvc/), climbing out of DVC's temporary copies."""
    here = Path(os.environ.get("DVC_ROOT") or start or Path.cwd()).resolve()
    parts = here.parts
    if ".dvc" in parts:  # <project>/.dvc/tmp/exps/<tmpdir>/... -> <project>
        here = Path(*parts[: parts.index(".dvc")])
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _retry_locked(fn, *args, **kwargs):
    """Call fn, retrying while SQLite says the database is locked."""
    for attempt in range(LOCK_RETRIES):
        try:
            return fn(*args, **kwargs)
        except (mlflow.exceptions.MlflowException, sqlalchemy.exc.OperationalError) as err:
            if "locked" not in str(err) or attempt == LOCK_RETRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@contextmanager
def _store_lock(uri: str):
    """Serialise opening a SQLite store across processes: its first opening creates and migrates
    the schema, and two processes migrating at once corrupt the migration ('dvc queue start -j 3')."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri.removeprefix("sqlite:///") + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def connect(experiment: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; return its id.

    Artifacts go to `mlartifacts/` beside the SQLite file, so that runs from anywhere
    (a DVC temporary copy included) keep their models in one place.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with _store_lock(uri):
            return _experiment_id(uri, experiment)
    except Exception as err:
        raise MnistbenchError(
            f"MLflow tracking store {uri} cannot be reached ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "check MLFLOW_TRACKING_URI, or unset it to use the project's mlflow.db"
        ) from None


def _experiment_id(uri: str, experiment: str) -> str:
    found = _retry_locked(mlflow.get_experiment_by_name, experiment)
    if found:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return _retry_locked(mlflow.create_experiment, experiment, artifact_location=location)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def start_run(experiment: str, run_name: str, params: dict, tags: dict) -> mlflow.ActiveRun:
    experiment_id = connect(experiment)
    run = _retry_locked(mlflow.start_run, experiment_id=experiment_id, run_name=run_name, tags=tags)
    _retry_locked(mlflow.log_params, flatten(params))
    return run


def log_metrics(metrics: dict, step: int | None = None) -> None:
    _retry_locked(mlflow.log_metrics, {k: float(v) for k, v in metrics.items()}, step=step)


def log_model(model: torch.nn.Module, example: torch.Tensor) -> None:
    """Log the trained model with its signature; pip requirements are given so nothing is resolved online."""
    model = model.cpu().eval()
    with torch.no_grad():
        output = model(example)
    signature = infer_signature(example.numpy(), output.numpy())
    _retry_locked(
        mlflow.pytorch.log_model,
        model,
        name="model",
        signature=signature,
        input_example=example.numpy(),
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )


def log_test_metrics(experiment: str, run_id: str, metrics: dict) -> None:
    """Add the final test metrics to a finished training run."""
    connect(experiment)
    with _retry_locked(mlflow.start_run, run_id=run_id):
        log_metrics(metrics)
