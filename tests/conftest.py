import gzip
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mnistbench import training

ROOT = Path(__file__).resolve().parents[1]


def _ctrl_c_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Popen keyword arguments for a child that a test interrupts as Ctrl-C would: a shell starts background jobs with
# SIGINT ignored, and a child inherits that (Python then never raises KeyboardInterrupt), so a suite run from a
# script's background job would test nothing. A terminal's Ctrl-C reaches a process whose SIGINT is the default.
AS_FROM_A_TERMINAL = {"preexec_fn": _ctrl_c_default}


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files: $MNIST_DIR, else ../shared/mnist beside the project."""
    path = Path(os.environ.get("MNIST_DIR") or ROOT.parent / "shared" / "mnist").resolve()
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real MNIST not found at {path}; set MNIST_DIR to the folder with the four .gz files")
    return path


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, count: int | None = None) -> Path:
    """Write `array` as a gzipped IDX file of unsigned bytes; `magic`/`count` can be falsified for tests."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 + array.ndim if magic is None else magic
    dims = list(array.shape)
    if count is not None:
        dims[0] = count
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def run_stage(script: str, *args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python stages/<script> args...`, run in this process (run_in_process)."""
    return run_in_process(["stages/" + script, *args], cwd, env)


def run_module(module: str, *args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> args...`, run in this process (run_in_process)."""
    return run_in_process(["-m", module, *args], cwd, env)


def run_in_process(command: list, cwd: Path | None, env: dict | None) -> subprocess.CompletedProcess:
    """A command line of the project (a stage script, or `-m module`) run in this process, as its interpreter would
    run it: argv, working folder and environment variables (`env`: the ones to set, None to unset) in place for
    the call, exit status and output caught. The code and its error handling are the same; what is saved is a new
    interpreter importing torch, MLflow and the package (about 4 s of CPU each), which makes a CLI error path a
    fast test. An exception that escapes the command's own handling comes back as Python would print it,
    "Traceback" first, with status 1."""
    import contextlib
    import io
    import runpy
    import sys
    import traceback
    import warnings

    command = [str(part) for part in command]
    module = command[1] if command[0] == "-m" else None
    argv = [module, *command[2:]] if module else [str(ROOT / command[0]), *command[1:]]
    stdout, stderr = io.StringIO(), io.StringIO()
    sigterm = signal.getsignal(signal.SIGTERM)  # a command's exit_on_error installs its own
    returncode = 0
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        patch.setattr(sys, "argv", argv)
        for name, value in (env or {}).items():
            patch.delenv(name, raising=False) if value is None else patch.setenv(name, str(value))
        if cwd:
            patch.chdir(cwd)
        try:
            if module:
                with warnings.catch_warnings():  # the test imported the module too: it runs again as __main__
                    warnings.filterwarnings("ignore", "'.*' found in sys.modules after import", RuntimeWarning)
                    runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as stop:
            returncode = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except Exception:  # noqa: BLE001  (what the interpreter would print and exit 1 on)
            traceback.print_exc(file=stderr)
            returncode = 1
        finally:
            signal.signal(signal.SIGTERM, sigterm)
    return subprocess.CompletedProcess(command, returncode, stdout.getvalue(), stderr.getvalue())


def _refuse_processes_and_training(item) -> pytest.MonkeyPatch:
    """For a test not marked slow: starting a process (a stage, DVC, Ray, a server) or training a model fails
    the test, naming it. `make check` runs only such tests, so it stays fast."""
    patch = pytest.MonkeyPatch()

    def refuse(what):
        def refused(*args, **kwargs):
            raise AssertionError(f"{item.nodeid} {what}: mark it @pytest.mark.slow (the fast tier, `make check`, "
                                 "starts no process and trains nothing)")
        return refused

    real_popen_init = subprocess.Popen.__init__

    def popen_init(self, args, *rest, **kwargs):
        program = Path(str(args[0] if isinstance(args, (list, tuple)) else str(args).split()[0])).name
        if program not in ("git", "uname"):  # reading the commit and the platform (environment.describe) is no work
            refuse(f"starts a process ({program})")()
        real_popen_init(self, args, *rest, **kwargs)

    patch.setattr(subprocess.Popen, "__init__", popen_init)
    patch.setattr(training, "train", refuse("trains a model"))
    return patch


def _in_the_fast_tier_unless_marked(item):
    patch = None if item.get_closest_marker("slow") else _refuse_processes_and_training(item)
    yield
    if patch:
        patch.undo()


# Setup too: a module-scoped fixture that runs `dvc repro` is the test's doing.
pytest_runtest_setup = pytest.hookimpl(hookwrapper=True)(_in_the_fast_tier_unless_marked)
pytest_runtest_call = pytest.hookimpl(hookwrapper=True)(_in_the_fast_tier_unless_marked)


def pytest_collection_modifyitems(session, config, items):
    """Modules with the most slow tests first: `make test` hands each worker whole modules (pytest-xdist,
    --dist loadfile), and a long module started last would run alone at the end.
    MNISTBENCH_TEST_ORDER_SEED=<n> make test: modules in a random order instead, and each module's tests, as
    pytest-randomly shuffles them (a module's tests stay together, so its fixtures are built once): a test that
    needs another to run first fails."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    order = sorted(modules, key=lambda module: -sum(bool(t.get_closest_marker("slow")) for t in modules[module]))
    seed = os.environ.get("MNISTBENCH_TEST_ORDER_SEED")
    if seed:
        import random

        rng = random.Random(int(seed))  # the same in every worker: pytest-xdist checks that they collect alike
        rng.shuffle(order)
        for tests in modules.values():
            rng.shuffle(tests)
    items[:] = [test for module in order for test in modules[module]]


def pytest_report_header(config):
    """The order in the header, where it shows also under pytest-xdist (whose workers collect out of sight)."""
    seed = os.environ.get("MNISTBENCH_TEST_ORDER_SEED")
    return f"test order: random, MNISTBENCH_TEST_ORDER_SEED={seed}" if seed else None
