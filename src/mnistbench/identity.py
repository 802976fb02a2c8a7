"""A training's identity: what decides its weights, not the bytes of the files it imports.

    python -m mnistbench.identity [models ...]   # each model's canary on this machine, with its time

Four parts, each compared on its own so that a difference can be named:
- the recipe: every setting the training runs with, after params.yaml's merges (`recipe`);
- the data: a hash of the processed train and valid splits (`data_digest`);
- the packages: the SHA-256 of requirements.lock (where it differs, the pins of what a training can import are
  compared: lockfile.runtime_pins), and how the installed packages differ from it (normally not);
- the canary: the model's own recipe replayed on a small fixed slice of the training data, its whole schedule
  squeezed into two epochs, checkpointed after the first and resumed into a fresh model, validated after each
  (`canary`). The output of every forward pass, each epoch's metrics and the final weights are hashed in order:
  a comment, a log line or a refactor leaves every one of them alone; a change to what the code computes
  moves at least one bit, and the first entry that differs says where (epoch, step).

A canary's bits depend on the machine class (instruction set, native bf16, threads, torch, device), so a
record keeps the class that made it and canaries are compared within one class only; on another class the
record's own commit is replayed here (`replay`) and its canary compared with today's code's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mnistbench import data, environment, lockfile, training
from mnistbench.errors import MnistbenchError
from mnistbench.models import build_model
from mnistbench.settings import ROOT

CANARY_SEED = 0
CANARY_EPOCHS = 2  # the checkpoint sits between them
CANARY_STEPS = 8  # training steps per epoch: the slice is this many batches of the model's own batch size
CANARY_VALID = 256  # validation images


def data_digest(processed_dir: Path) -> str:
    """A hash of the processed train and valid splits a training reads."""
    return hashlib.sha256(b"".join((Path(processed_dir) / f"{split}.pt").read_bytes() for split in ("train", "valid"))
                          ).hexdigest()[:16]


def recipe(params, name: str) -> dict:
    """Every setting that decides a training of `name` but its seed, by the key a user edits: `train.*` is the
    model's resolved recipe (models.<name>.train merged onto train), `models.<name>.*` its architecture."""
    tp = params.train_for(name).model_copy(update={"threads": params.threads_for(name)})
    arch = params.model_section(name).model_dump(exclude={"train"})
    return {"model": name, "data.dataset": params.data.dataset, "split": params.split.model_dump(),
            "train": tp.model_dump(), f"models.{name}": arch}


def machine_class(device: torch.device, threads: int) -> str:
    """What a canary's bits depend on besides the code: instruction set, native bf16, threads, torch, device."""
    where = environment.capability(device) if device.type == "cpu" else \
        f"{torch.cuda.get_device_name(device)} {environment.capability(device)}"
    return (f"{platform.machine()} {where}, bf16 {'native' if environment.native_bf16(device) else 'emulated'}, "
            f"{threads} thread{'s' * (threads != 1)}, torch {torch.__version__}")


def _hash(*arrays) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(a.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
                      if isinstance(a, torch.Tensor) else json.dumps(a, sort_keys=True).encode())
    return digest.hexdigest()[:12]


class _Interrupted(Exception):
    pass


class _StopAfterFirstEpoch(training.Checkpoint):
    """Saves like any checkpoint, then stops the training, as a kill after the first epoch would."""

    def save(self, state: dict) -> None:
        super().save(state)
        if state["epoch"] == 1:
            raise _Interrupted


def canary(params, name: str, processed_dir: Path) -> dict:
    """The model's recipe replayed on the first CANARY_STEPS batches of the train split and CANARY_VALID valid
    images: {"machine", "digest", "trace": [[where, hash], ...], "seconds"}."""
    tp = params.train_for(name)
    threads = params.threads_for(name)
    images = CANARY_STEPS * tp.batch_size
    scale = CANARY_EPOCHS / tp.epochs  # the whole schedule, warm-up included, in two epochs
    short = tp.model_copy(update={"epochs": CANARY_EPOCHS, "warmup_epochs": tp.warmup_epochs * scale,
                                  "limit_train_images": min(images, tp.limit_train_images or images),
                                  "threads": threads})
    train_images, train_labels = data.load_split(processed_dir, "train")
    valid_images, valid_labels = data.load_split(processed_dir, "valid")
    train_set = (train_images[:images], train_labels[:images])
    valid_set = (valid_images[:CANARY_VALID], valid_labels[:CANARY_VALID])
    device = environment.resolve_device(tp.device)

    trace: list[list[str]] = []
    at = {"epoch": 1, "train": 0, "valid": 0}

    def on_forward(module, inputs, output) -> None:
        kind = "train" if module.training else "valid"
        at[kind] += 1
        trace.append([f"epoch {at['epoch']}, {'training step' if kind == 'train' else 'validation batch'} "
                      f"{at[kind]}", _hash(output)])

    def on_epoch(record: dict) -> None:
        if record["epoch"] >= at["epoch"]:  # not an epoch a resumed run inherits
            trace.append([f"epoch {record['epoch']}, metrics",
                          _hash({k: v for k, v in record.items() if k != "epoch_seconds"})])
        at.update(epoch=record["epoch"] + 1, train=0, valid=0)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stderr(io.StringIO()):
        path = Path(scratch) / "canary.ckpt"
        for checkpoint in (_StopAfterFirstEpoch(path, "canary"), training.Checkpoint(path, "canary")):
            environment.make_deterministic(CANARY_SEED, threads)
            model = build_model(name, params)  # the second is fresh: everything comes from the checkpoint
            model.register_forward_hook(on_forward)
            try:
                training.train(model, short, train_set, valid_set, device, CANARY_SEED, checkpoint,
                               on_epoch=on_epoch, name=f"canary {name}")
            except _Interrupted:
                continue
            except MnistbenchError as err:  # a recipe that diverges: where it does is its behaviour too
                trace.append([f"diverged: {err}", _hash(str(err))])
            break
    trace.append(["final weights", _hash(*model.state_dict().values())])
    return {"machine": machine_class(device, threads), "digest": _hash([h for _, h in trace]), "trace": trace,
            "seconds": round(time.perf_counter() - started, 2)}


_canaries: dict[str, dict] = {}  # by model, recipe and data: a matrix computes each model's canary once


@functools.cache
def installed_differences() -> list[str]:
    """How the installed packages differ from requirements.lock (empty when they are exactly it): a package changed
    by hand after `make setup` is part of what a training ran on."""
    try:
        return lockfile.differences(lockfile.pins(), lockfile.installed())
    except Exception as err:  # noqa: BLE001 - no lock to compare with is itself a difference
        return [f"not compared with the lock ({err})"]


def identity(params, name: str, processed_dir: Path) -> dict:
    """All four parts for `name`, today, on this machine."""
    ours = {"recipe": recipe(params, name), "data": data_digest(processed_dir), "lock": environment.lock_digest(),
            "installed_vs_lock": installed_differences()}
    key = json.dumps([ours["recipe"], ours["data"], str(Path(processed_dir).resolve())], sort_keys=True)
    if key not in _canaries:
        _canaries[key] = canary(params, name, processed_dir)
    return ours | {"canary": _canaries[key]}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_differences(recorded: dict, today: dict) -> list[str]:
    """'train.lr 0.001 -> 0.01' for each setting that differs."""
    old, new = _flat(recorded), _flat(today)
    return [f"{key} {old.get(key, '(none)')} -> {new.get(key, '(none)')}"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def canary_divergence(recorded: dict, today: dict) -> str | None:
    """None when two canaries of one machine class agree; else where they first part."""
    if recorded["digest"] == today["digest"]:
        return None
    for (where, old), (_, new) in zip(recorded["trace"], today["trace"]):
        if old != new:
            return f"the canary diverges at {where}"
    return f"the canary's length differs ({len(recorded['trace'])} entries recorded, {len(today['trace'])} today)"


def lock_difference(recorded_lock: str, commit: str, today_lock: str, root: Path = ROOT) -> str | None:
    """None when a training made with the lock whose SHA-256 is `recorded_lock`, at `commit`, imported the same
    packages as one today; else what differs. Only the packages a training can import count: a test tool added to
    requirements.lock changes its hash, not what a training computes (lockfile.runtime_pins)."""
    if recorded_lock == today_lock:
        return None
    if today_lock == "none":
        return f"requirements.lock differs ({recorded_lock[:12]} -> none: this project has no lock)"
    changed = lockfile.runtime_differences(recorded_lock, commit, root)
    if changed is None:
        return (f"requirements.lock differs ({recorded_lock[:12]} -> {today_lock[:12]}), and the record's commit "
                f"{commit[:12]} does not hold its lock: which packages changed is not known")
    if not changed:
        return None
    more = f"; {len(changed) - 5} more" if len(changed) > 5 else ""
    return f"the packages a training imports differ (requirements.lock: {'; '.join(changed[:5])}{more})"


def judge(recorded: dict, commit: str, today: dict, params, name: str, processed_dir: Path) -> list[str]:
    """What differs between a record's identity (made at `commit`) and today's, in words; empty when the
    training is current. A canary recorded on another machine class is not compared with today's: the record's
    commit is replayed here and its canary compared instead."""
    found = recipe_differences(recorded["recipe"], today["recipe"])
    if recorded["data"] != today["data"]:
        found.append(f"the processed data differs ({recorded['data']} -> {today['data']})")
    if (packages := lock_difference(recorded["lock"], commit, today["lock"])):
        found.append(packages)
    if recorded.get("installed_vs_lock", []) != today["installed_vs_lock"]:
        found.append("the installed packages differ from the record's (made with: "
                     f"{'; '.join(recorded.get('installed_vs_lock', [])) or 'exactly the lock'}; today: "
                     f"{'; '.join(today['installed_vs_lock']) or 'exactly the lock'})")
    if found:
        return found
    theirs = recorded["canary"]
    if theirs["machine"] != today["canary"]["machine"]:
        try:
            theirs = replayed(commit, params, name, processed_dir)
        except Exception as err:  # noqa: BLE001 - any failure to replay leaves the record unconfirmed
            return [f"its canary is of another machine class ({theirs['machine']}), and {err}"]
    divergence = canary_divergence(theirs, today["canary"])
    if divergence is None:
        return []
    return [divergence + (f" (commit {commit[:12]} replayed here)" if theirs is not recorded["canary"] else "")]


_replays: dict[str, dict] = {}


def replayed(commit: str, params, name: str, processed_dir: Path) -> dict:
    """The canary of `name` as the code of `commit` computes it on this machine (each commit replayed once per
    process, for every model of `params`' pipeline at once)."""
    key = json.dumps([commit, recipe(params, name), str(processed_dir)], sort_keys=True)
    if key not in _replays:
        names = list(dict.fromkeys([name, *params.model_names()]))
        for other, result in replay(commit, params.model_dump(mode="json"), names, processed_dir).items():
            _replays[json.dumps([commit, recipe(params, other), str(processed_dir)], sort_keys=True)] = result
    return _replays[key]


# --- another machine class: the record's own commit, replayed here ---------------------------------------------

# Run in a fresh interpreter whose `mnistbench` is the commit's: this file's `canary` drives that code.
_REPLAY = """
import json, runpy, sys
sys.path.insert(0, sys.argv[1])
import mnistbench
assert mnistbench.__file__.startswith(sys.argv[1]), mnistbench.__file__
from mnistbench.config import load_params
driver = runpy.run_path(sys.argv[2], run_name="mnistbench_replay")
params = load_params(sys.argv[3])
print(json.dumps({name: driver["canary"](params, name, sys.argv[5]) for name in json.loads(sys.argv[4])}))
"""


def replay(commit: str, raw_params: dict, names: list[str], processed_dir: Path) -> dict[str, dict]:
    """The canaries of `names` as the code of `commit` computes them on this machine, with `raw_params` (the
    params, as params.yaml would hold them)."""
    import yaml

    from mnistbench.errors import MnistbenchError

    with tempfile.TemporaryDirectory(prefix="mnistbench-replay-") as scratch:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True)
        if archive.returncode != 0:
            raise MnistbenchError(f"cannot replay commit {commit[:12]} here: "
                                  f"{archive.stderr.decode().strip().splitlines()[-1]}")
        subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, check=True)
        (Path(scratch) / "params.yaml").write_text(yaml.safe_dump(raw_params))
        done = subprocess.run(
            [sys.executable, "-c", _REPLAY, f"{scratch}/src", __file__, f"{scratch}/params.yaml", json.dumps(names),
             str(Path(processed_dir).resolve())],
            capture_output=True, text=True, cwd=scratch)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise MnistbenchError(f"cannot replay commit {commit[:12]}: its code failed the canary ({last})")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from mnistbench.config import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="default: pipeline.models")
    parser.add_argument("--params", type=Path, nargs="+", default=[ROOT / "params.yaml"])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "processed")
    args = parser.parse_args()
    params = load_params(*args.params)
    for name in args.models or params.model_names():
        result = canary(params, name, args.data)
        print(f"{name}: {result['digest']} ({len(result['trace'])} entries, {result['seconds']:.1f} s; "
              f"{result['machine']})")


if __name__ == "__main__":
    main()
