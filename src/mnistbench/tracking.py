"""MLflow: one run per model per training, in the experiment named in params.yaml.

The default store is `mlflow.db` (SQLite) in the project root, addressed by an absolute
path; `MLFLOW_TRACKING_URI` overrides it. When DVC runs a queued experiment in a temporary
copy under `.dvc/tmp/exps/`, the default still points at the original project's store.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
import urllib.error
import urllib.request
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
# A tracking server is probed once, briefly, before a run: one that does not answer fails the stage in
# seconds instead of after MLflow's retries (minutes). The run itself keeps MLflow's retries.
PROBE_TIMEOUT_S = 5


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
    """Call fn, retrying while SQLite says the database is locked; any other MLflow failure is one clear error."""
    for attempt in range(LOCK_RETRIES):
        try:
            return fn(*args, **kwargs)
        except (mlflow.exceptions.MlflowException, sqlalchemy.exc.OperationalError) as err:
            if "locked" not in str(err) or attempt == LOCK_RETRIES - 1:
                first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
                raise MnistbenchError(f"MLflow tracking store {tracking_uri()}: {getattr(fn, '__name__', fn)} failed "
                                      f"({type(err).__name__}: {first})") from None
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


def _probe(uri: str) -> None:
    """Raise if an HTTP tracking server does not answer within PROBE_TIMEOUT_S; any HTTP answer will do."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        pass  # it answered, if only with an error: the server is there
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(f"no answer within {PROBE_TIMEOUT_S} s: {reason}") from None


def connect(experiment: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; return its id.

    Artifacts go to `mlartifacts/` beside the SQLite file, so that runs from anywhere
    (a DVC temporary copy included) keep their models in one place.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        _probe(uri)
        with _store_lock(uri):
            return _experiment_id(uri, experiment)
    except MnistbenchError:
        raise
    except Exception as err:
        raise MnistbenchError(
            f"MLflow tracking store {uri} cannot be reached ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "check MLFLOW_TRACKING_URI, or unset it to use the project's mlflow.db"
        ) from None


def _experiment_id(uri: str, experiment: str) -> str:
    found = _retry_locked(mlflow.get_experiment_by_name, experiment)
    if found and found.lifecycle_stage == "deleted":
        raise MnistbenchError(f"MLflow experiment '{experiment}' (mlflow.experiment in params.yaml) is deleted in {uri}; "
                              f"restore it (mlflow experiments restore --experiment-id {found.experiment_id}) or name "
                              "another one")
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


def _process_tags() -> dict:
    return {"mnistbench.host": socket.gethostname(), "mnistbench.pid": str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_abandoned(experiment_id: str, run_name: str, keep: str | None = None) -> list[str]:
    """Mark KILLED the RUNNING runs named `run_name` whose process on this machine is gone (killed, say,
    and not resumed); return their ids. Runs of live processes and of other machines are left alone."""
    client = mlflow.MlflowClient()
    running = _retry_locked(client.search_runs, [experiment_id],
                            filter_string=f"attributes.run_name = '{run_name}' and attributes.status = 'RUNNING'")
    closed = []
    for r in running:
        pid, host = r.data.tags.get("mnistbench.pid"), r.data.tags.get("mnistbench.host")
        if r.info.run_id != keep and host == socket.gethostname() and pid and pid.isdigit() and not _alive(int(pid)):
            _retry_locked(client.set_terminated, r.info.run_id, "KILLED")
            closed.append(r.info.run_id)
    return closed


def start_run(experiment: str, run_name: str, params: dict, tags: dict, resume: str | None = None) -> mlflow.ActiveRun:
    """Start the run `run_name`, or continue the run `resume` (a killed training's) when this store has it."""
    experiment_id = connect(experiment)
    if resume:
        try:
            found = mlflow.MlflowClient().get_run(resume)
        except mlflow.exceptions.MlflowException:
            found = None  # another store, or deleted: start a new run
        if found and found.info.experiment_id == experiment_id and found.info.lifecycle_stage == "active":
            run = _retry_locked(mlflow.start_run, run_id=resume)
            _retry_locked(mlflow.set_tags, _process_tags())
            return run
    close_abandoned(experiment_id, run_name)
    run = _retry_locked(mlflow.start_run, experiment_id=experiment_id, run_name=run_name, tags=tags | _process_tags())
    _retry_locked(mlflow.log_params, flatten(params))
    return run


def logged_steps(run_id: str, metric: str) -> set[int]:
    return {m.step for m in _retry_locked(mlflow.MlflowClient().get_metric_history, run_id, metric)}


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
