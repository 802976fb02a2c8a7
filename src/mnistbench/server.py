"""`make server`: an MLflow tracking server for a team, on a PostgreSQL database, on this machine's loopback.

    python -m mnistbench.server start     # prints the MLFLOW_TRACKING_URI to export
    python -m mnistbench.server stop

Everything lives in one folder (default .server/ in the project, ignored by git): the PostgreSQL cluster
(postgres/, created by initdb on first start, listening on 127.0.0.1 and a socket in that folder only), the
artifacts the server stores for its clients (artifacts/, `mlflow server --serve-artifacts`), logs and pids.
PostgreSQL refuses to run as root: run by root, the cluster belongs to the `postgres` user that Debian's
`postgresql` package creates, and its commands run as that user. SQLite (mlflow.db) stays the embedded
default; a server is for several machines, clones or Ray workers logging to one place.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from mnistbench.errors import MnistbenchError, exit_on_error
from mnistbench import settings
from mnistbench.settings import ROOT

DEFAULT_DIR = ROOT / ".server"
PG_PORT, MLFLOW_PORT = 5433, 5001  # beside a system PostgreSQL (5432) and `make ui` (5000)
DATABASE = USER = "mlflow"
# `mlflow server` has this long to answer after its log last grew (a loaded machine starts it slowly, but its log
# keeps growing), and START_TIMEOUT_S x 4 in all.
START_TIMEOUT_S = 90
# A question every MLflow store answers from its database: the Default experiment (MLflow's /health answers OK
# without asking the database, also when PostgreSQL is gone).
STORE_QUESTION = "/api/2.0/mlflow/experiments/get?experiment_id=0"


def pg_binary(name: str) -> str:
    """initdb, pg_ctl, createdb from PATH or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise MnistbenchError(f"{name}: not found; expected PostgreSQL's programs (Debian: apt-get install postgresql)")
    return found


def as_owner(cmd: list[str]) -> list[str]:
    """Run as root: as the `postgres` user instead, which PostgreSQL requires."""
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise MnistbenchError("running as root, and there is no `postgres` user to run PostgreSQL as; "
                              "expected Debian's postgresql package (apt-get install postgresql)") from None
    return ["runuser", "-u", "postgres", "--", *cmd]


def run(cmd: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        hint = f"; see {log}" if log else ""
        raise MnistbenchError(f"{what} failed (exit {done.returncode}): {' / '.join(detail)}{hint}")


def start_postgres(folder: Path, port: int) -> None:
    data, log = folder / "postgres", folder / "postgres.log"
    folder.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").is_file():
        data.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            log.touch()
            shutil.chown(log, "postgres", "postgres")
        # Trust on loopback and the folder's socket only: the cluster is not reachable from another machine.
        reach = " (run as root, PostgreSQL runs as `postgres`, which needs search permission, o+x, on every folder " \
                "above it)" if os.geteuid() == 0 else ""
        run(as_owner([pg_binary("initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8"]),
            f"initdb of {data}{reach}")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    status = subprocess.run(as_owner([pg_binary("pg_ctl"), "-D", str(data), "status"]), capture_output=True)
    if status.returncode != 0:  # 3: not running
        run(as_owner([pg_binary("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]),
            f"PostgreSQL on 127.0.0.1:{port}", log)
    exists = subprocess.run(as_owner(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", "postgres",
                                      "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]),
                            capture_output=True, text=True)
    if exists.stdout.strip() != "1":
        run(as_owner([pg_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE]),
            f"createdb {DATABASE}")


def ask_store(url: str, timeout: float = 5) -> tuple[int | None, str]:
    """(HTTP status, the start of its body) of the store question; (None, why) when nothing answers."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}{STORE_QUESTION}", timeout=timeout) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.read(2000).decode(errors="replace")
    except OSError as err:
        return None, str(getattr(err, "reason", err))


def healthy(url: str) -> bool:
    """Whether the server answers a question of its database."""
    return ask_store(url)[0] == 200


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def postgres_running(folder: Path) -> bool:
    data = folder / "postgres"
    return (data / "PG_VERSION").is_file() and subprocess.run(
        as_owner([pg_binary("pg_ctl"), "-D", str(data), "status"]), capture_output=True).returncode == 0


def start(folder: Path = DEFAULT_DIR, pg_port: int = PG_PORT, port: int = MLFLOW_PORT) -> str:
    """Start PostgreSQL and `mlflow server` (each only if not running); return the tracking URI. Both ports are
    checked before anything starts, and what this call started is stopped again when a later step fails."""
    url = f"http://127.0.0.1:{port}"
    if healthy(url) and postgres_running(folder):
        return url
    if our_mlflow(folder):  # running, but not answering from its database (PostgreSQL was gone): start it again
        stop_mlflow(folder)
    for taken, what in ((port, "the MLflow server (--port)"), (pg_port, "PostgreSQL (--pg-port)")):
        ours = taken == pg_port and postgres_running(folder)
        if not ours and port_taken(taken):
            raise MnistbenchError(f"127.0.0.1:{taken}: another program listens there; expected a free port for "
                                  f"{what}: stop that program or choose another port")
    started_postgres = not postgres_running(folder)
    start_postgres(folder, pg_port)
    try:
        return start_mlflow(folder, pg_port, port, url)
    except MnistbenchError:
        if started_postgres:
            stop_postgres(folder)
        raise


def start_mlflow(folder: Path, pg_port: int, port: int, url: str) -> str:
    log = folder / "mlflow.log"
    (folder / "artifacts").mkdir(exist_ok=True)
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"postgresql://{USER}@127.0.0.1:{pg_port}/{DATABASE}",
             "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=os.environ | settings.TELEMETRY_OFF)
    (folder / "mlflow.pid").write_text(str(server.pid))
    started = progress = time.monotonic()
    size = log.stat().st_size
    while not healthy(url):
        if log.stat().st_size != size:
            size, progress = log.stat().st_size, time.monotonic()
        now = time.monotonic()
        if server.poll() is not None or now - progress > START_TIMEOUT_S or now - started > 4 * START_TIMEOUT_S:
            listening = port_taken(port)
            stop_mlflow(folder)
            if listening:
                raise MnistbenchError(f"mlflow server on {url}: listening, but no answer from its database (PostgreSQL "
                                      f"on 127.0.0.1:{pg_port}) within {now - started:.0f} s: {ask_store(url)[1][:200]}; "
                                      f"see {log}")
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise MnistbenchError(f"mlflow server on {url} did not start within {now - started:.0f} s: "
                                  f"{' / '.join(tail)}; see {log}")
        time.sleep(0.5)
    return url


def our_mlflow(folder: Path) -> list[psutil.Process]:
    """The processes of this folder's `mlflow server`, its pid file lost or its first process gone: found by the
    artifacts folder that only this folder's server has, on the command line of `mlflow server` and in the
    environment it gives its uvicorn workers (which outlive it when it dies), and their children."""
    artifacts = str(folder / "artifacts")
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            ours = f"--artifacts-destination {artifacts}" in " ".join(process.info["cmdline"] or ()) or \
                process.environ().get("_MLFLOW_SERVER_ARTIFACT_DESTINATION") == artifacts
        except psutil.Error:
            continue
        if ours:
            found += [process, *_children(process)]
    return list({p.pid: p for p in found}.values())


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def stop_mlflow(folder: Path) -> None:
    """Stop this folder's MLflow server and wait for it: its process group, and any of its processes outside it,
    all found before the first signal."""
    family = our_mlflow(folder)
    pid_file = folder / "mlflow.pid"
    if pid_file.is_file():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)  # the server's group, its first process gone or not
        pid_file.unlink()
    for process in family:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(family, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)  # gone, and its port free, before a start that follows


def stop(folder: Path = DEFAULT_DIR) -> None:
    stop_mlflow(folder)
    stop_postgres(folder)


def stop_postgres(folder: Path) -> None:
    data = folder / "postgres"
    if (data / "PG_VERSION").is_file():
        subprocess.run(as_owner([pg_binary("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True)


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the server's folder (default .server/)")
    parser.add_argument("--pg-port", type=int, default=PG_PORT)
    parser.add_argument("--port", type=int, default=MLFLOW_PORT)
    args = parser.parse_args()
    if args.action == "stop":
        stop(args.dir.resolve())
        print(f"stopped the MLflow server and PostgreSQL of {args.dir}")
        return
    url = start(args.dir.resolve(), args.pg_port, args.port)
    print(f"MLflow server on {url} (PostgreSQL on 127.0.0.1:{args.pg_port}, artifacts in {args.dir}/artifacts).\n"
          f"Log to it from this shell, from Ray workers and from other clones on this machine:\n"
          f"  export MLFLOW_TRACKING_URI={url}\nStop it: make server-stop")


if __name__ == "__main__":
    main()
