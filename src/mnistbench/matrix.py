"""Stage `train`: every pair of pipeline.models x seeds.train, each a Ray task or, locally, one after another.

With `matrix.executor: ray` (the default) the stage starts a Ray on this machine for its own use, or joins the
cluster that $RAY_ADDRESS names (`ray start --head` on one machine, `ray start --address=<head>:6379` on the
others; every node runs the project from the same path, as a shared folder or an identical clone). Each
training is one task that asks for `matrix.cpus_per_training` CPUs (its torch threads) and
`matrix.gpus_per_training` GPUs, and runs train_stage.train, the function the local executor calls: a seed
gives the same weights either way. A task whose worker dies (killed, out of memory) is retried by Ray, and
the retry resumes from the training's checkpoint. Pairs whose outputs already match their settings, code and
data are skipped; outputs of pairs no longer in the matrix are removed, so models/ and reports/ hold this
matrix only, as dvc.lock says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from mnistbench import layout, settings, tracking, train_stage
from mnistbench.settings import PROBE_TIMEOUT_S
from mnistbench.config import MatrixParams, Params, parse_params, run_name
from mnistbench.errors import MnistbenchError, stop_on_sigterm

WAIT_CHECK_S = 10  # how often a waiting stage checks that the cluster can still run its trainings
WAIT_REPORT_S = 300  # how often it says what it waits for, while no training finishes
RETRIES_ON_WORKER_DEATH = 2
# A training whose node Ray marks dead while the training never ends (a frozen node: Ray does not retry it) is
# submitted again, at most this often; it resumes its checkpoint.
RESUBMITS_ON_NODE_DEATH = 2


def prune(params: Params, models_dir: Path, reports: Path) -> list[Path]:
    """Remove what trainings of pairs outside the matrix left (a smaller `dvc exp run -S ...` after a larger one)."""
    keep = {run_name(m, s) for m, s in params.runs()}
    stale = [path for folder, suffix in ((models_dir, ".pt"), (reports / layout.TRAIN, ".json"), (reports / layout.HISTORY, ".csv"))
             if folder.is_dir() for path in folder.glob(f"*{suffix}") if path.name.removesuffix(suffix) not in keep]
    for path in stale:
        path.unlink()
    return stale


@dataclass
class Training:
    """One model-seed pair to train: its params, and the folders it reads and writes (absolute paths)."""

    params: Params
    model: str
    seed: int
    folders: list[Path]  # processed data, models, reports, checkpoints
    tags: dict = field(default_factory=dict)  # MLflow tags, e.g. a sweep's point
    point: str = ""  # what this training varies, for messages (a sweep's point)

    @property
    def label(self) -> str:
        return run_name(self.model, self.seed) + (f" [{self.point}]" if self.point else "")


def run(params: Params, processed: Path, models_dir: Path, reports: Path, checkpoints: Path) -> None:
    for path in prune(params, models_dir, reports):
        print(f"removed {path}: its pair is not in pipeline.models x seeds.train")
    models_dir.mkdir(parents=True, exist_ok=True)  # DVC's output, even when every pair's weights are elsewhere
    folders = [p.resolve() for p in (processed, models_dir, reports, checkpoints)]
    execute([Training(params, m, s, folders) for m, s in params.runs()], params.matrix)


def execute(trainings: list[Training], how: MatrixParams, on_done: Callable[[Training], None] = lambda t: None) -> None:
    """Train each, as Ray tasks or one after another (`how.executor`); every failure is reported, none hides another.
    `on_done(training)` runs in this process after each training that ended well (trained, or up to date)."""
    if how.executor == "ray":
        # Judged here first: a rerun whose pairs are all current (a comment changed) starts no Ray at all.
        current = [train_stage.up_to_date(t.params, t.model, t.seed, *t.folders[:3]) for t in trainings]
        for t in (t for t, done in zip(trainings, current) if done):
            on_done(t)
        stale = longest_first([t for t, done in zip(trainings, current) if not done])
        trained = [False] * sum(current) + (_run_on_ray(stale, how, on_done) if stale else [])
    else:
        trained = []
        for t in tqdm(trainings, desc="train (local)", unit="training", file=sys.stdout):
            trained.append(train_stage.train(t.params, t.model, t.seed, *t.folders, tags=t.tags))
            on_done(t)
    print(f"{sum(trained)} trained, {len(trained) - sum(trained)} up to date (not trained again)")


def recorded_seconds(reports: Path) -> dict[str, float]:
    """Each model's longest wall time in its records under reports/train (any seed). A scheduling hint, read
    without the checks a result gets: a record that does not parse is left out."""
    times: dict[str, float] = {}
    for path in (reports / layout.TRAIN).glob(f"*{layout.SUFFIX[layout.TRAIN]}"):
        model = path.stem.rsplit("-", 1)[0]
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, KeyError):
            times[model] = max(times.get(model, 0.0), float(json.loads(path.read_text())["wall_seconds"]))
    return times


def longest_first(trainings: list[Training]) -> list[Training]:
    """Ray starts tasks in the order they are submitted, as CPUs free up: the longest first, so that a long training
    does not start last and run alone at the end (docs/pipeline.md). A model never trained here goes first, its
    length unknown. Only the order changes: a training's weights do not depend on it."""
    recorded = {folder: recorded_seconds(folder) for folder in {t.folders[2] for t in trainings}}  # each read once
    return sorted(trainings, key=lambda t: -recorded[t.folders[2]].get(t.model, float("inf")))


# A client's HTTP/2 connection preface and an empty SETTINGS frame: a Ray head (gRPC, over HTTP/2) answers with a
# SETTINGS frame of its own; anything else (an HTTP/1 server, a database) answers otherwise or not at all.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4  # the frame type byte of a SETTINGS frame


def _probe(address: str) -> None:
    """Fail in seconds, naming the address, when no Ray head answers there: nothing listens, what listens does not
    speak gRPC, a gRPC server that is not Ray's GCS, or a head that refuses this machine's token (ray.init would
    retry each of these for minutes, past Ctrl-C)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    expected = ("expected the address `ray start --head` printed (host:6379), or RAY_ADDRESS unset to run on a Ray "
                "of this machine")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=PROBE_TIMEOUT_S) as connection:
            connection.sendall(HTTP2_PREFACE)
            answer = connection.recv(9)
    except (OSError, ValueError) as err:
        raise MnistbenchError(f"RAY_ADDRESS={address}: no Ray cluster answers there ({err}); {expected}") from None
    if len(answer) < 9 or answer[3] != HTTP2_SETTINGS:
        raise MnistbenchError(f"RAY_ADDRESS={address}: something answers there, but not a Ray head (no gRPC "
                              f"handshake; it said {answer[:24]!r}); {expected}")
    code, details = _ask_the_gcs(f"{host or '127.0.0.1'}:{port}")
    if code == "UNIMPLEMENTED":
        raise MnistbenchError(f"RAY_ADDRESS={address}: a gRPC server answers there, but not a Ray head (it does not "
                              f"know the call every Ray head answers, GetClusterId); {expected}")
    if code == "UNAUTHENTICATED":
        raise MnistbenchError(f"RAY_ADDRESS={address}: the cluster refused {_token_source()} ({details}); expected "
                              f"RAY_AUTH_MODE=token and the head's token: in RAY_AUTH_TOKEN, in the file "
                              f"RAY_AUTH_TOKEN_PATH names, or the head's ~/.ray/auth_token copied to this machine")
    if code is not None:
        raise MnistbenchError(f"RAY_ADDRESS={address}: the Ray head did not answer within {PROBE_TIMEOUT_S} s "
                              f"({code}: {details}); is it frozen or overloaded? {expected}")


def _ask_the_gcs(address: str) -> tuple[str | None, str]:
    """Ask Ray's GCS at `address` its cluster id, with this machine's token as ray.init would send it, within
    PROBE_TIMEOUT_S: (None, '') when it answers, else the gRPC status code's name and its details."""
    import grpc
    from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    from ray._raylet import AuthenticationTokenLoader
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)  # ray.init's rule (Ray is pinned: the lock)
    tokens = AuthenticationTokenLoader.instance()
    metadata = tuple(tokens.get_token_for_http_header().items()) if tokens.has_token() else ()
    with grpc.insecure_channel(address) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=PROBE_TIMEOUT_S, metadata=metadata)
        except grpc.RpcError as err:
            return err.code().name, (err.details() or "").strip()[:200]
    return None, ""


def _token_source() -> str:
    """Which token this machine offered, in the words of Ray's own rule (RAY_AUTH_MODE, RAY_AUTH_TOKEN, the file)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return f"a request without a token (RAY_AUTH_MODE is {os.environ.get('RAY_AUTH_MODE', 'unset')})"
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the token in RAY_AUTH_TOKEN"
    return f"the token of {os.environ.get('RAY_AUTH_TOKEN_PATH') or Path.home() / '.ray' / 'auth_token'}"


def refuse_unquotable_interpreter(executable: str) -> None:
    """Ray starts each worker through a shell command line that does not quote the interpreter's path: with a
    space in it every worker fails, and the stage would wait minutes for an error that never names the space."""
    if any(c.isspace() for c in executable):
        raise MnistbenchError(f"{executable}: Ray cannot start its workers from an interpreter whose path has a space "
                              f"(it builds their command line unquoted); expected a path without spaces: move the "
                              f"project (and make setup again), or set matrix.executor: local")


def _connect() -> None:
    import ray

    refuse_unquotable_interpreter(sys.executable)
    # Ray's default for a new local cluster (token authentication) is kept; its notice, once per run, is not.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    address = os.environ.get("RAY_ADDRESS")
    if address and address not in ("auto", "local"):
        _probe(address)
    if address and tracking.tracking_uri().startswith("sqlite:"):
        print(f"note: the cluster's trainings log to {tracking.tracking_uri()}, which only nodes sharing this folder "
              f"reach; a team sets MLFLOW_TRACKING_URI to a server (make server)", file=sys.stderr)
    started = time.perf_counter()
    local = {} if address else {
        "object_store_memory": 100 * 1024**2,  # trainings pass paths, not tensors
        "_node_ip_address": "127.0.0.1",  # the stage's own Ray listens on this machine only
    }
    try:
        ray.init(address=address or "local", include_dashboard=False, configure_logging=False, **local,
                 runtime_env={"env_vars": {
                     "MLFLOW_TRACKING_URI": tracking.tracking_uri(), **settings.TELEMETRY_OFF,
                     **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}})
    except ray.exceptions.AuthenticationError:
        raise MnistbenchError(f"RAY_ADDRESS={address}: the cluster refused this machine's Ray token; expected "
                              "RAY_AUTH_MODE=token and the head's token (its ~/.ray/auth_token, or RAY_AUTH_TOKEN)") from None
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        raise MnistbenchError(f"{'RAY_ADDRESS=' + address if address else 'a local Ray'}: could not start or join "
                              f"({str(err).strip().splitlines()[0][:300]})") from None
    stop_on_sigterm()  # ray.init replaced the project's handler with one that prints Ray's stack dump
    cpus = ray.cluster_resources().get("CPU", 0)
    print(f"Ray: {'cluster ' + address if address else 'local'}, {cpus:g} CPUs, "
          f"{ray.cluster_resources().get('GPU', 0):g} GPUs (ready in {time.perf_counter() - started:.1f} s)")


def _train_task(raw_params: dict, model: str, seed: int, folders: list[Path], tags: dict, cwd: Path, code: str,
                where: str) -> bool:
    """One training, in a Ray worker: the same call as the local executor's, from the project folder. It first
    writes its node's id under the key `where` of Ray's key-value store, so that the driver knows its node."""
    import ray
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(where, ray.get_runtime_context().get_node_id(), overwrite=True)
    if train_stage.code_digest() != code:
        raise MnistbenchError(f"the Ray worker on {socket.gethostname()} runs other code than the driver "
                              f"({train_stage.code_digest()} vs {code}); expected the same checkout on every node")
    os.chdir(cwd)  # git lineage, relative paths: as in the stage's own process
    return train_stage.train(parse_params(raw_params), model, seed, *folders, tags=tags)


def _gpus(trainings: list[Training], how: MatrixParams) -> float:
    import ray

    if how.gpus_per_training != "auto":
        return float(how.gpus_per_training)
    devices = {t.params.train_for(t.model).device for t in trainings}
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 and devices != {"cpu"} else 0.0


def check_fits(request: dict[str, float], nodes: list[dict[str, float]], where: str) -> None:
    """Refuse, naming the key, a request no single node can hold: Ray would leave the task pending forever."""
    keys = {"CPU": "matrix.cpus_per_training", "GPU": "matrix.gpus_per_training"}
    for resource, amount in request.items():
        largest = max((node.get(resource, 0) for node in nodes), default=0)
        if amount > largest:
            if largest == 0:  # "expected at most 0" is a value no training can have
                raise MnistbenchError(f"{keys[resource]}: each training asks for {amount:g} {resource}s, but no node of "
                                      f"{where} offers any; expected a node that does (`ray start --num-cpus=N`)")
            raise MnistbenchError(f"{keys[resource]}: each training asks for {amount:g} {resource}s, but the largest "
                                  f"node of {where} has {largest:g}; expected at most {largest:g}")


def _still_fits(request: dict[str, float], waited: float, left: int) -> None:
    """Between finished trainings: fail when the cluster lost the nodes that could run one (the rest would wait
    forever), and say every few minutes what the stage is waiting for."""
    import ray

    alive = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    check_fits({k: v for k, v in request.items() if v}, alive,
               f"the Ray cluster {os.environ.get('RAY_ADDRESS') or '(local)'} now")
    if waited % WAIT_REPORT_S < WAIT_CHECK_S:
        free = ray.available_resources()
        print(f"train (Ray): {left} training(s) running or queued, none finished for {waited / 60:.0f} min; the "
              f"cluster has {len(alive)} node(s), {free.get('CPU', 0):g} CPUs free (each training asks for "
              f"{request['CPU']:g})", file=sys.stderr)


def _on_dead_nodes(pending: dict, stage: str) -> list[tuple[object, Training, str]]:
    """(task, training, node id) for each pending training that last started on a node Ray now marks dead."""
    import ray
    from ray.experimental import internal_kv

    alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
    lost = []
    for ref, t in pending.items():
        node = internal_kv._internal_kv_get(f"mnistbench/{stage}/{t.label}")
        if node and not alive.get(node.decode(), True):
            lost.append((ref, t, node.decode()))
    return lost


def _run_on_ray(trainings: list[Training], how: MatrixParams, on_done: Callable[[Training], None]) -> list[bool]:
    """Whether each training ran (False: it was up to date); raises after all finished if any failed."""
    import ray

    _connect()
    failures, trained = [], []
    stage = uuid.uuid4().hex  # this run's keys in Ray's key-value store
    try:
        request = {"CPU": how.cpus_per_training, "GPU": _gpus(trainings, how)}
        check_fits({k: v for k, v in request.items() if v}, [n["Resources"] for n in ray.nodes() if n["Alive"]],
                   f"the Ray cluster {os.environ.get('RAY_ADDRESS') or '(local)'}")
        task = ray.remote(_train_task)
        cwd, code = Path.cwd(), train_stage.code_digest()

        def submit(t: Training):
            # Named after the training: `ray list tasks`, the dashboard and the worker's title say which runs where.
            return task.options(num_cpus=how.cpus_per_training, num_gpus=request["GPU"], name=f"train {t.label}",
                                max_retries=RETRIES_ON_WORKER_DEATH, retry_exceptions=False).remote(
                t.params.model_dump(), t.model, t.seed, t.folders, t.tags, cwd, code, f"mnistbench/{stage}/{t.label}")

        pending = {submit(t): t for t in trainings}
        resubmitted: dict[str, int] = {}
        with tqdm(total=len(pending), desc="train (Ray)", unit="training", file=sys.stdout) as bar:
            waited = 0.0
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_CHECK_S)
                if not done:  # nothing finished for a while: can the cluster still run a training at all?
                    waited += WAIT_CHECK_S
                    _still_fits(request, waited, len(pending))
                    for ref, t, node in _on_dead_nodes(pending, stage):
                        resubmitted[t.label] = resubmitted.get(t.label, 0) + 1
                        if resubmitted[t.label] > RESUBMITS_ON_NODE_DEATH:
                            raise MnistbenchError(f"{t.label}: its node {node} died (Ray marks it dead) "
                                                  f"{resubmitted[t.label]} times; expected a cluster whose nodes stay up")
                        print(f"train (Ray): {t.label} ran on node {node}, which Ray marks dead, and never ended: "
                              f"submitted again (it resumes its checkpoint)", file=sys.stderr)
                        ray.cancel(ref, force=True)
                        pending[submit(t)] = pending.pop(ref)
                    continue
                waited = 0.0
                [ready] = done
                t = pending.pop(ready)
                try:
                    trained.append(ray.get(ready))
                    on_done(t)
                except ray.exceptions.RayTaskError as err:  # the training raised: its own message, which names it
                    cause = str(err.cause)
                    failures.append(cause if cause.startswith(run_name(t.model, t.seed) + ":") else f"{t.label}: {cause}")
                except ray.exceptions.RayError as err:  # its worker died more often than Ray retries
                    failures.append(f"{t.label}: {type(err).__name__}: {str(err).strip().splitlines()[0]}")
                bar.update(1)
    finally:
        if ray.is_initialized():
            from ray.experimental import internal_kv

            with contextlib.suppress(Exception):  # the nodes' ids of this stage's trainings: no longer needed
                internal_kv._internal_kv_del(f"mnistbench/{stage}/", del_by_prefix=True)
        ray.shutdown()
    if failures:
        raise MnistbenchError(f"{len(failures)} of {len(trainings)} trainings failed (the others are kept: a rerun "
                              "trains only these):\n" + "\n".join(failures))
    return trained
