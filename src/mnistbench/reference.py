"""A pipeline's record as a reference: its per-seed test accuracies, and whether today's code still computes
what made them.

    python -m mnistbench.reference reproduce/reports           # current; stale: <model>: <what differs>; incomplete
    python -m mnistbench.reference reproduce/reports --check   # the same, exit 1 unless current (CI)

Judged by behaviour, model by model (identity.py): the record is current when every model's recipe (params.yaml,
with the variant's keys for a variant's reports), processed data and requirements.lock are the record's, and its
canary on this machine equals the record's; on another machine class the record's own commit is replayed here
and its canary compared with today's code's. The bytes of the code do not matter: a comment is no change. A
record that lacks trainings its params ask for (seeds added) is "incomplete", naming them.

A record made before trainings recorded their identity has the hashes of its files and a fingerprint of its
settings instead: its commit (or, where that commit is gone, the first commit of this history that holds those
files) is replayed. `--upgrade` then writes the identity and that commit into such records, and into evaluations
made before they named their training, the training they are of (checked against the dvc.lock beside them).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from mnistbench import codebase, identity, layout
from mnistbench.errors import MnistbenchError, exit_on_error
from mnistbench.files import read_json, sha256_of, write_json
from mnistbench.settings import ROOT

TRAINING_CODE = codebase.PACKAGE / "train_stage.py"  # the module whose closure a training's record lists


def _record_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise MnistbenchError(f"{folder}: no records (expected <model>-<seed>.json of a pipeline run)")
    return files


def accuracies(reports: Path) -> dict[str, dict[int, float]]:
    """{model: {seed: test accuracy}} of a pipeline's reports/metrics, models in the order first seen."""
    found: dict[str, dict[int, float]] = {}
    for path in _record_files(reports / layout.METRICS):
        record = read_json(path)
        found.setdefault(record["model"], {})[record["seed"]] = record["test_accuracy"]
    return found


def params_for(reports: Path):
    """The params a pipeline's reports folder is judged by: params.yaml, with the variant's keys on top when the
    folder is a variant's (its parent holds a params.yaml of its own)."""
    from mnistbench.config import load_params

    folder = Path(reports).resolve().parent
    overlay = folder / "params.yaml"
    return load_params(ROOT / "params.yaml", *([overlay] if folder != ROOT and overlay.is_file() else []))


def commit_exists(commit: str) -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True).returncode == 0


@functools.cache
def _commit_holding(code_files: str, limit: int = 300) -> str | None:
    return commit_holding(json.loads(code_files), limit)


def commit_holding(code_files: dict[str, str], limit: int = 300) -> str | None:
    """The first commit of HEAD's history (oldest of the newest run of matches) whose package files are exactly
    `code_files`; None when none of the last `limit` is."""
    def holds(commit: str) -> bool:
        for name, digest in code_files.items():
            shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:src/mnistbench/{name}"],
                                   capture_output=True)
            if shown.returncode != 0 or hashlib.sha256(shown.stdout).hexdigest()[:16] != digest:
                return False
        return True

    if not code_files:  # a record from before trainings listed their files: nothing to match
        return None
    commits = subprocess.run(["git", "-C", str(ROOT), "rev-list", f"--max-count={limit}", "HEAD"],
                             capture_output=True, text=True).stdout.split()
    found = None
    for commit in commits:
        if holds(commit):
            found = commit
        elif found:
            break
    return found


def _legacy_differences(record: dict, params, name: str, data: Path, today: dict) -> tuple[list[str], str | None]:
    """A record from before identities: its settings and data by its fingerprint, its code by replaying it."""
    from mnistbench import training

    commit = record["environment"]["git_commit"]
    if not commit_exists(commit):
        commit = _commit_holding(json.dumps(record.get("code_files", {}), sort_keys=True))
        if commit is None:
            return [f"made at {record['environment']['git_commit'][:12]}, which this repository does not hold, "
                    f"before trainings recorded their identity"], None
    tp = params.train_for(name).model_copy(update={"threads": params.threads_for(name)})
    run_params = {"model": name, "seed": record["seed"], "dataset": params.data.dataset,
                  "split": params.split.model_dump(), "train": tp.model_dump(),
                  "arch": params.model_section(name).model_dump(exclude={"train"}),
                  "precision": record["precision"], "parameters": record["parameters"]}
    fingerprint = training.fingerprint(run_params, codebase.digest(record["code_files"]), today["data"])
    if fingerprint != record.get("fingerprint"):
        return ["its settings or data differ from today's (its record has a fingerprint, not the settings)"], commit
    if (packages := identity.lock_difference(record["environment"].get("lock_sha256", "none"), commit, today["lock"])):
        return [packages], commit
    try:
        theirs = identity.replayed(commit, params, name, data)
    except MnistbenchError as err:
        return [str(err)], commit
    divergence = identity.canary_divergence(theirs, today["canary"])
    return ([f"{divergence} (commit {commit[:12]} replayed here)"] if divergence else []), commit


def judge(reports: Path, data: Path) -> tuple[dict[str, list[str]], dict[Path, tuple[dict, str]], int, set[str]]:
    """{model: what differs} for every model of the record, the legacy records that are current with their
    identity and commit (for --upgrade), the number of trainings judged and the machine classes of today's
    canaries."""
    params = params_for(reports)
    if not (data / "train.pt").is_file():
        raise MnistbenchError(f"{data}: no processed data to replay the canaries on; expected the split stage's "
                              f"output (dvc repro split), or --data naming it")
    paths = _record_files(reports / layout.TRAIN)
    by_model: dict[str, list[tuple[Path, dict]]] = {}
    for path in paths:
        record = read_json(path)
        by_model.setdefault(record["model"], []).append((path, record))
    verdicts, upgrades, machines = {}, {}, set()
    for name, records in by_model.items():
        today = identity.identity(params, name, data)
        machines.add(today["canary"]["machine"])
        found: list[str] = []
        for path, record in records:
            if "identity" in record:
                differs = identity.judge(record["identity"], record["environment"]["git_commit"], today, params,
                                         name, data)
            else:
                differs, commit = _legacy_differences(record, params, name, data, today)
                if not differs:
                    upgrades[path] = (today, commit)
            found += [d for d in differs if d not in found]
        verdicts[name] = found
    return verdicts, upgrades, len(paths), machines


def status(reports: Path, data: Path | None = None) -> str:
    """'current (...)', or 'stale: <model>: <what differs>; ...' for the models whose behaviour changed."""
    data = data or ROOT / "data" / "processed"
    try:
        verdicts, _, n, machines = judge(Path(reports), data)
    except MnistbenchError as err:
        return f"not checked: {err}"
    stale = [f"{name}: {', '.join(found)}" for name, found in verdicts.items() if found]
    if stale:
        return "stale: " + "; ".join(stale)
    held = (f"{len(verdicts)} models, {n} trainings: recipe, data, packages and canary as recorded; "
            f"canaries run on {' / '.join(sorted(machines))}")
    missing = lacking(Path(reports))
    if missing:
        return (f"incomplete: the {n} trainings it holds are current ({held}), but its params ask for "
                f"{sum(map(len, missing.values()))} more ({'; '.join(f'{m} seeds {_seeds(s)}' for m, s in missing.items())}), "
                f"which the pipeline (make reproduce, for reproduce/) trains")
    return f"current ({held})"


def lacking(reports: Path) -> dict[str, list[int]]:
    """{model: seeds} that the reports' params ask for and its records do not hold."""
    held = {(r["model"], r["seed"]) for r in map(read_json, _record_files(reports / layout.TRAIN))}
    missing: dict[str, list[int]] = {}
    for name, seed in params_for(reports).runs():
        if (name, seed) not in held:
            missing.setdefault(name, []).append(seed)
    return missing


def _seeds(seeds: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    spans: list[list[int]] = []
    for seed in sorted(seeds):
        if spans and seed == spans[-1][-1] + 1:
            spans[-1].append(seed)
        else:
            spans.append([seed])
    return ", ".join(str(s[0]) if len(s) == 1 else f"{s[0]}-{s[-1]}" for s in spans)


def upgrade(reports: Path, data: Path) -> int:
    """Write the identity, and a commit this history holds, into the records made before identities that are
    current; returns how many."""
    _, upgrades, _, _ = judge(reports, data)
    for path, (today, commit) in upgrades.items():
        record = read_json(path)
        record.pop("fingerprint", None)
        record["environment"]["git_commit"] = commit
        write_json(path, record | {"identity": today})
    return len(upgrades)


def dvc_folder_md5(folder: Path) -> str:
    """The MD5 DVC's lock gives a folder: of the JSON list of its files' relative paths and MD5s."""
    entries = [{"md5": hashlib.md5(path.read_bytes()).hexdigest(), "relpath": path.relative_to(folder).as_posix()}
               for path in sorted(p for p in folder.rglob("*") if p.is_file())]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def bind_evaluations(reports: Path, data: Path) -> int:
    """Write into each evaluation made before evaluations named what they are of (metrics/<run>.json without
    `training`) the training (its MLflow run, its weights' SHA-256 where recorded), test split and predictions it
    is of; returns how many. Only on the evidence of the
    pipeline's dvc.lock beside `reports`: its evaluate stage read today's training records and the models folder its
    train stage wrote, and wrote exactly today's metrics, predictions and summary folders. Without that evidence
    nothing is written."""
    import yaml

    from mnistbench import evaluate_stage

    reports = Path(reports)
    lock_file = reports.parent / "dvc.lock"
    legacy = [p for p in _record_files(reports / layout.METRICS) if "training" not in read_json(p)]
    if not legacy:
        return 0
    stages = yaml.safe_load(lock_file.read_text()).get("stages", {}) if lock_file.is_file() else {}
    hashes = {(stage, kind, entry["path"]): entry.get("md5") for stage, body in stages.items()
              for kind in ("deps", "outs") for entry in body.get(kind, [])}
    models_read = hashes.get(("evaluate", "deps", "models"))
    evidence = [models_read is not None and models_read == hashes.get(("train", "outs", "models")),
                hashes.get(("evaluate", "deps", f"reports/{layout.TRAIN}")) == dvc_folder_md5(reports / layout.TRAIN) + ".dir"
                ] + [hashes.get(("evaluate", "outs", f"reports/{folder}")) == dvc_folder_md5(reports / folder) + ".dir"
                     for folder in evaluate_stage.OUTPUTS]
    if not all(evidence):
        raise MnistbenchError(f"{lock_file}: does not show that {reports}'s evaluations are of its training records "
                              f"and the models its train stage wrote (its entries and today's folders differ); "
                              f"nothing bound")
    test_data = evaluate_stage.test_digest(data)
    for path in legacy:
        tested = read_json(path)
        trained = read_json(layout.run_file(reports, layout.TRAIN, path.stem))
        predictions = layout.run_file(reports, layout.PREDICTIONS, path.stem)
        write_json(path, tested | {"training": trained["mlflow_run_id"], "model_sha256": trained.get("model_sha256"),
                                   "test_data": test_data, "predictions_sha256": sha256_of(predictions)})
    return len(legacy)


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, help="a pipeline's reports folder, e.g. reproduce/reports")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "processed",
                        help="the processed splits the canaries replay on (default: data/processed)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the record is current")
    parser.add_argument("--upgrade", action="store_true",
                        help="write identities into current records made before identities existed, and into "
                             "older evaluations the training they are of (on the evidence of the dvc.lock beside)")
    args = parser.parse_args()
    if args.upgrade:
        print(f"{args.reports}: {upgrade(args.reports, args.data)} records given their identity, "
              f"{bind_evaluations(args.reports, args.data)} evaluations the training they are of")
    verdict = status(args.reports, args.data)
    print(f"{args.reports}: {verdict}")
    if args.check and not verdict.startswith("current"):
        sys.exit(1)


if __name__ == "__main__":
    main()
