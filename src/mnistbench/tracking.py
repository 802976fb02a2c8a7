"""MLflow: one run per model per training, in the experiment named in params.yaml.

The default store is `mlflow.db` (SQLite) in the project root, addressed by an absolute
path; `MLFLOW_TRACKING_URI` overrides it. When DVC runs a queued experiment in a temporary
copy under `.dvc/tmp/exps/`, the default still points at the original project's store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path

from mnistbench import settings  # noqa: F401,E402  (telemetry off before mlflow is imported)

# A tracking server that stops mid-run fails the run in seconds, not after MLflow's default retries (7, with
# exponential back-off: minutes); a hung one after at most 4 x 20 s.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import mlflow  # noqa: E402

# Not two INFO lines per training, nor two when a training creates a store's tables.
for _logger in ("mlflow.system_metrics", "mlflow.store.db.utils"):
    logging.getLogger(_logger).setLevel(logging.WARNING)
import mlflow.data  # noqa: E402
import sqlalchemy.exc  # noqa: E402
import torch  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402

from mnistbench.errors import MnistbenchError  # noqa: E402
from mnistbench.files import process_alive  # noqa: E402

# SQLite allows one writer at a time; concurrent runs (dvc queue start -j 3) retry instead of failing.
LOCK_RETRIES = 20
# What a store says when a concurrent writer won a race: SQLite's lock, and a unique key inserted by two runs at
# once (MLflow checks that a dataset exists, then inserts it: two trainings logging one split collide). A retry
# waits for the lock, or finds the other run's row and uses it.
TRANSIENT = ("is locked", "UNIQUE constraint failed", "duplicate key value violates unique constraint")
READ_ONLY = "attempt to write a readonly database"  # SQLite's words, buried in SQLAlchemy's autoflush message
# MLflow 3's UI opens an experiment of this kind on its training runs, not on the GenAI (traces) view.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# The run list's columns and order, as an MLflow UI "shared view" stored on the experiment; the links
# `make ui` prints open it (...&viewStateShareKey=mnistbench). MLflow has no server-side default columns.
RUN_LIST_VIEW = ("mlflow.sharedViewState.mnistbench", json.dumps({
    "selectedColumns": ["metrics.`test_accuracy`", "metrics.`test_accuracy_mean`", "metrics.`test_accuracy_ci95`",
                        "metrics.`n`", "params.`model`", "params.`seed`", "params.`precision`",
                        "metrics.`train_seconds`"],
    "orderByKey": "metrics.`test_accuracy`", "orderByAsc": False}))
# A tracking server is probed once, briefly, before a run: one that does not answer fails the stage in
# seconds instead of after MLflow's retries (minutes). The run itself keeps MLflow's retries.
from mnistbench.server import ask_store  # noqa: E402
from mnistbench.settings import PROBE_TIMEOUT_S, project_root  # noqa: E402


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def read_only_store() -> MnistbenchError:
    return MnistbenchError(f"MLflow tracking store {tracking_uri()}: the database is read-only (SQLite: {READ_ONLY}); "
                           f"expected a store this user can write: check the permissions of the file and its folder, "
                           f"or set MLFLOW_TRACKING_URI to another store")


def _retry_transient(fn, *args, **kwargs):
    """Call fn, retrying while a concurrent writer holds or won (TRANSIENT); any other failure is one clear error."""
    for attempt in range(LOCK_RETRIES):
        try:
            return fn(*args, **kwargs)
        except (mlflow.exceptions.MlflowException, sqlalchemy.exc.OperationalError) as err:
            if READ_ONLY in str(err):
                raise read_only_store() from None
            if not any(sign in str(err) for sign in TRANSIENT) or attempt == LOCK_RETRIES - 1:
                first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
                raise MnistbenchError(f"MLflow tracking store {tracking_uri()}: {getattr(fn, '__name__', fn)} failed "
                                      f"({type(err).__name__}: {first}){_database_gone(tracking_uri())}") from None
            time.sleep(0.2 * (attempt + 1))


def _database_gone(uri: str) -> str:
    """For a tracking server that answers but cannot reach its database: a clause that says so (MLflow's own error is
    only 'too many 500 error responses'); else ''."""
    if not uri.startswith(("http://", "https://")):
        return ""
    status, body = ask_store(uri, timeout=2 * PROBE_TIMEOUT_S)
    if status is None and "timed out" in body:
        return f"; the server accepts connections but did not answer a question of its database within " \
               f"{2 * PROBE_TIMEOUT_S} s (is its database gone?)"
    if status is None or status < 500:
        return ""
    try:
        said = json.loads(body).get("message", body)
    except ValueError:
        said = body
    return f"; the server answers, but not from its database: {said.strip().splitlines()[0][:200] if said.strip() else status}"


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
    """Raise if an HTTP tracking server does not answer within PROBE_TIMEOUT_S (any HTTP answer will do), or if a
    SQLite store's folder does not exist: MLflow would create it, and a typo would start a new, invisible store."""
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise MnistbenchError(f"MLflow tracking store {uri}: the folder {folder} does not exist; expected the "
                                  "folder of an SQLite store (create it for a new store, or unset MLFLOW_TRACKING_URI "
                                  "to use the project's mlflow.db)")
        return
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
        if READ_ONLY in str(err):
            raise read_only_store() from None
        raise MnistbenchError(
            f"MLflow tracking store {uri} cannot be reached ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "check MLFLOW_TRACKING_URI, or unset it to use the project's mlflow.db"
        ) from None


def _experiment_id(uri: str, experiment: str) -> str:
    found = _retry_transient(mlflow.get_experiment_by_name, experiment)
    if found and found.lifecycle_stage == "deleted":
        raise MnistbenchError(f"MLflow experiment '{experiment}' (mlflow.experiment in params.yaml) is deleted in {uri}; "
                              f"restore it (mlflow experiments restore --experiment-id {found.experiment_id}) or name "
                              "another one")
    if found:
        for key, value in (EXPERIMENT_KIND, RUN_LIST_VIEW):
            if found.tags.get(key) != value:
                _retry_transient(mlflow.MlflowClient().set_experiment_tag, found.experiment_id, key, value)
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(experiment, artifact_location=location, tags=dict([EXPERIMENT_KIND, RUN_LIST_VIEW]))
    except (mlflow.exceptions.MlflowException, sqlalchemy.exc.IntegrityError) as err:
        if "ALREADY_EXISTS" not in str(err) and "UNIQUE" not in str(err).upper():
            return _retry_transient(mlflow.create_experiment, experiment)  # reports the failure in one line
        # Another process (a clone, a Ray worker) created it a moment ago: use theirs.
        return _retry_transient(mlflow.get_experiment_by_name, experiment).experiment_id


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


def close_abandoned(experiment_id: str, run_name: str, keep: str | None = None) -> list[str]:
    """Mark KILLED the RUNNING runs named `run_name` whose process on this machine is gone (killed, say,
    and not resumed); return their ids. Runs of live processes and of other machines are left alone."""
    client = mlflow.MlflowClient()
    running = _retry_transient(client.search_runs, [experiment_id],
                            filter_string=f"attributes.run_name = '{run_name}' and attributes.status = 'RUNNING'")
    closed = []
    for r in running:
        pid, host = r.data.tags.get("mnistbench.pid"), r.data.tags.get("mnistbench.host")
        if r.info.run_id != keep and host == socket.gethostname() and pid and pid.isdigit() and not process_alive(int(pid)):
            _retry_transient(client.set_terminated, r.info.run_id, "KILLED")
            closed.append(r.info.run_id)
    return closed


class _Run(mlflow.ActiveRun):
    """An active run whose end, on an error, never hides that error: when the store itself has gone (a server
    stopped), marking the run FAILED fails too, and the first error is the one the user must see."""

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            _retry_transient(mlflow.end_run)
            return False
        try:
            # Ctrl-C, or SIGTERM (which errors.py raises as a KeyboardInterrupt): stopped, not failed.
            mlflow.end_run("KILLED" if issubclass(exc_type, (KeyboardInterrupt, SystemExit)) else "FAILED")
        except Exception:  # noqa: BLE001 - the store is gone; the run stays RUNNING and is closed when rerun
            pass
        return False


def start_run(experiment: str, run_name: str, params: dict, tags: dict, resume: str | None = None) -> mlflow.ActiveRun:
    """Start the run `run_name`, or continue the run `resume` (a killed training's) when this store has it."""
    experiment_id = connect(experiment)
    if resume:
        try:
            found = mlflow.MlflowClient().get_run(resume)
        except mlflow.exceptions.MlflowException:
            found = None  # another store, or deleted: start a new run
        if found and found.info.experiment_id == experiment_id and found.info.lifecycle_stage == "active":
            run = _retry_transient(mlflow.start_run, run_id=resume)
            _retry_transient(mlflow.set_tags, _process_tags())
            return _Run(run)
    close_abandoned(experiment_id, run_name)
    run = _retry_transient(mlflow.start_run, experiment_id=experiment_id, run_name=run_name, log_system_metrics=True,
                        tags=tags | _process_tags() | _lineage_tags())
    _retry_transient(mlflow.log_params, flatten(params))
    return _Run(run)


def written_by_pipeline(path: str) -> bool:
    """What the pipeline itself rewrites while it runs (a dvc.lock, a reports folder: the project's or a
    variant's) does not make the code dirty."""
    return path.endswith("dvc.lock") or path.startswith("reports/") or "/reports/" in path


def _lineage_tags() -> dict:
    """Which code and which DVC experiment made a run: the commit is tagged by the caller; here the rest."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=10)
        changed = [line[3:] for line in status.stdout.splitlines() if not written_by_pipeline(line[3:])]
        dirty = "unknown" if status.returncode else str(bool(changed)).lower()
    except (OSError, subprocess.SubprocessError):
        dirty = "unknown"
    tags = {"mnistbench.git_dirty": dirty}
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run` for the stages it runs
        tags["mnistbench.dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


def log_split(name: str, images: torch.Tensor, labels: torch.Tensor, digest: str, context: str) -> None:
    """A data split as an MLflow dataset input of the active run, named and digested as reports/split.json does."""
    with warnings.catch_warnings():  # MLflow registers two local-file source classes and says so on every call
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        dataset = mlflow.data.from_numpy(images.reshape(len(images), -1).numpy(), targets=labels.numpy(), name=name,
                                         digest=digest[:20], source=f"{name}.pt")
    _retry_transient(mlflow.log_input, dataset, context=context)


def log_artifact(path: Path, folder: str) -> None:
    _retry_transient(mlflow.log_artifact, str(path), folder)


def logged_steps(run_id: str, metric: str) -> set[int]:
    return {m.step for m in _retry_transient(mlflow.MlflowClient().get_metric_history, run_id, metric)}


def log_metrics(metrics: dict, step: int | None = None) -> None:
    _retry_transient(mlflow.log_metrics, {k: float(v) for k, v in metrics.items()}, step=step)


def log_model(model: torch.nn.Module, example: torch.Tensor) -> None:
    """Log the trained model with its signature; pip requirements are given so nothing is resolved online."""
    model = model.cpu().eval()
    with torch.no_grad():
        output = model(example)
    signature = infer_signature(example.numpy(), output.numpy())
    with warnings.catch_warnings():
        # torch.export's archive writer warns about channels-last weights, for weights off the CPU only; these are on it.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        _retry_transient(
            mlflow.pytorch.log_model,
            model,
            name="model",
            signature=signature,
            input_example=example.numpy(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )


def log_test_metrics(experiment: str, run_id: str, metrics: dict, artifacts: dict[Path, str] | None = None) -> None:
    """Add the final test metrics, and artifacts (path -> folder), to a finished training run."""
    connect(experiment)
    with _retry_transient(mlflow.start_run, run_id=run_id):
        log_metrics(metrics)
        for path, folder in (artifacts or {}).items():
            _retry_transient(mlflow.log_artifact, str(path), folder)
