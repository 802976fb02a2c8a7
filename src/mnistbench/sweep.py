"""A grid sweep over params, each point's trainings run like stage train's matrix (Ray tasks by default).

    python -m mnistbench.sweep --name cnn-lr --set models.cnn.train.lr=0.0005,0.001,0.002 \\
        --set models.cnn.train.batch_size=32,64 --models cnn --seeds 0,1

Every point of the grid (each combination of the --set values) is params.yaml with those keys changed, checked
against the schema before anything runs; each point trains --models x --seeds (default: pipeline.models x
seeds.train) into sweeps/<name>/point-<i>/ and logs to the MLflow experiment <mlflow.experiment>-sweep-<name>,
tagged with the point. sweeps/<name>/summary.md ranks the points by mean valid accuracy: choosing on the
valid split keeps the test set for the final run. A sweep explores; adopt a point by writing it into
params.yaml and running `dvc repro`, whose lineage DVC keeps. Rerunning a sweep trains only what it lacks.
It needs data/processed (`dvc repro split`).

With --sprints, the points time time-to-accuracy sprints (params.yaml's time_to_accuracy.sprints) instead:
each point runs each named sprint once per seed, one run at a time in this process (a timing shares no CPU),
and sweeps/<name>/summary.md lists MLPerf's figures per point (runs reaching the threshold, olympic mean,
range) and the highest valid accuracy all runs but one reached within the sprint's goal time:

    python -m mnistbench.sweep --name cnn-sprint --sprints cnn_tuned_99 \
        --set time_to_accuracy.sprints.cnn_tuned_99.train.lr=0.005,0.007,0.01
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
from pathlib import Path

import yaml

from mnistbench import comparisons, layout, matrix, time_to_accuracy
from mnistbench.config import ParamsError, parse_params, run_name
from mnistbench.params_file import read_yaml
from mnistbench.errors import MnistbenchError, exit_on_error
from mnistbench.files import read_json, write_json, write_text
from mnistbench.params_file import unknown
from mnistbench.settings import ROOT
from mnistbench.tables import markdown_table, sprint_result


def require_processed(data: Path) -> None:
    if not (data / "train.pt").is_file():
        raise MnistbenchError(f"{data}: no train.pt; expected the processed splits (dvc repro split)")


def grid(assignments: list[str]) -> list[dict[str, object]]:
    """['a.b=1,2', 'c=x'] -> [{'a.b': 1, 'c': 'x'}, {'a.b': 2, 'c': 'x'}]; values read as YAML (numbers, lists)."""
    axes = []
    for text in assignments:
        key, sep, values = text.partition("=")
        if not sep or not key or not values:
            raise ParamsError(f"--set {text!r}: expected KEY=VALUE[,VALUE...], for example models.cnn.train.lr=0.001,0.002")
        axes.append([(key, yaml.safe_load(v)) for v in values.split(",")])
    return [dict(point) for point in itertools.product(*axes)]


def with_point(raw: dict, point: dict[str, object]) -> dict:
    changed = copy.deepcopy(raw)
    for key, value in point.items():
        *parents, leaf = key.split(".")
        section = changed
        for part in parents:
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise ParamsError(f"--set {key}: {part} is not a section of params.yaml")
        section[leaf] = value
    return changed


LARGE_SWEEP_S = 3600  # a sweep estimated longer than this (training time, one after another) asks for --yes


def recorded_seconds(model: str, records: list[Path]) -> float | None:
    """The mean wall time of `model`'s recorded trainings in the first of `records` (reports/train folders) that
    holds any; None when none does."""
    for folder in records:
        times = [read_json(path)["wall_seconds"] for path in sorted(folder.glob(f"{model}-*.json"))]
        if times:
            return sum(times) / len(times)
    return None


def refuse_if_large(points: int, models: list[str], seeds: list[int], yes: bool,
                    records: tuple[Path, ...] = (ROOT / "reports" / layout.TRAIN, ROOT / "reproduce" / "reports" / layout.TRAIN)
                    ) -> None:
    """A sweep is points x models x seeds trainings: refuse one estimated (by the project's recorded times) at over
    LARGE_SWEEP_S unless --yes, before any folder is written; one with a model never recorded gets no estimate
    and is refused past 20 trainings."""
    trainings = points * len(models) * len(seeds)
    each = {m: recorded_seconds(m, list(records)) for m in models}
    unknown = [m for m, t in each.items() if t is None]
    estimate = None if unknown else points * len(seeds) * sum(each.values())
    if yes or (estimate is not None and estimate <= LARGE_SWEEP_S) or (estimate is None and trainings <= 20):
        return
    said = (f"about {estimate / 3600:.1f} training-hours by the times recorded in reports/train" if estimate is not None
            else f"no estimate: {', '.join(unknown)} never trained in this project")
    raise MnistbenchError(f"the sweep is {points} points x {len(models)} models x {len(seeds)} seeds = {trainings} "
                          f"trainings ({said}); run it with --yes, or narrow --set, --models or --seeds")


def describe(point: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="the sweep's name: its folder under sweeps/ and its experiment")
    parser.add_argument("--set", action="append", required=True, metavar="KEY=V1,V2", help="a params key and its values")
    parser.add_argument("--models", help="comma-separated model names (default: pipeline.models)")
    parser.add_argument("--sprints", help="comma-separated sprint names: time these instead of training --models")
    parser.add_argument("--seeds", help="comma-separated seeds (default: seeds.train)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--out", type=Path, default=Path("sweeps"))
    parser.add_argument("--yes", action="store_true", help=f"run a sweep estimated at more than "
                        f"{LARGE_SWEEP_S / 3600:g} training-hour(s) (by the project's recorded training times)")
    args = parser.parse_args()
    if args.sprints:
        print(sweep_sprints(args))
        return
    trainings, points, folder = plan(args)
    by_point = {describe(point): point for point in points}

    def record_point(t: matrix.Training) -> None:
        """A point's folder says which point it is once its first training ended: folders come as the sweep goes."""
        here = t.folders[2].parent  # <folder>/point-<i>/reports
        if not (here / "point.yaml").is_file():
            write_text(here / "point.yaml", yaml.safe_dump(by_point[t.point], sort_keys=False))

    matrix.execute(trainings, trainings[0].params.matrix, on_done=record_point)
    print(summarize(trainings, points, folder))


def plan(args: argparse.Namespace) -> tuple[list[matrix.Training], list[dict], Path]:
    raw = read_yaml(args.params)
    base = parse_params(raw, str(args.params))
    models = args.models.split(",") if args.models else base.model_names()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else base.seeds.train
    points = grid(args.set)
    require_processed(args.data)
    refuse_if_large(len(points), models, seeds, args.yes)
    folder = (args.out / args.name).resolve()
    trainings = []
    for i, point in enumerate(points):
        changed = with_point(raw, point)
        changed["mlflow"] = {**changed.get("mlflow", {}), "experiment": f"{base.mlflow.experiment}-sweep-{args.name}"}
        changed["pipeline"] = {**changed.get("pipeline", {}), "models": models}
        params = parse_params(changed, f"{args.params} with {describe(point)}")
        here = folder / f"point-{i}"  # written by the point's trainings, and its point.yaml once one ends
        folders = [args.data.resolve(), here / "models", here / "reports", here / "checkpoints"]
        tags = {"mnistbench.sweep": args.name, "mnistbench.sweep_point": describe(point)}
        trainings += [matrix.Training(params, m, s, folders, tags, describe(point)) for m in models for s in seeds]
    print(f"sweep {args.name}: {len(points)} points x {len(models)} models x {len(seeds)} seeds = "
          f"{len(trainings)} trainings -> {folder}")
    return trainings, points, folder


def sweep_sprints(args: argparse.Namespace) -> str:
    """Every point x sprint x seed timed in turn (a run already recorded with the same recipe is kept)."""
    raw = read_yaml(args.params)
    base = parse_params(raw, str(args.params))
    sprints = args.sprints.split(",")
    for name in sprints:
        if name not in base.time_to_accuracy.sprints:
            raise ParamsError(f"--sprints: {unknown('sprint', name, list(base.time_to_accuracy.sprints))}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else base.time_to_accuracy.seeds
    require_processed(args.data)
    points = grid(args.set)
    every = [parse_params(with_point(raw, point), f"{args.params} with {describe(point)}") for point in points]
    folder = (args.out / args.name).resolve()
    print(f"sweep {args.name}: {len(points)} points x {len(sprints)} sprints x {len(seeds)} seeds, one at a time -> {folder}")
    rows = []
    for i, (point, params) in enumerate(zip(points, every)):
        here = folder / f"point-{i}"
        write_text(here / "point.yaml", yaml.safe_dump(point, sort_keys=False))
        for sprint in sprints:
            runs = []
            for seed in seeds:
                path = here / "sprints" / f"{sprint}-{seed}.json"
                run = read_json(path) if path.is_file() else None
                if not run or run["recipe"] != params.sprint_recipe(sprint).model_dump() \
                        or run["threshold"] != params.sprint_threshold(sprint):
                    run = time_to_accuracy.measure(params, sprint, seed, args.data)
                    write_json(path, run)
                runs.append(run)
            summary, goal = time_to_accuracy.olympic(runs), params.time_to_accuracy.sprints[sprint].goal_seconds
            rows.append(((sprint, not summary["valid"], summary["olympic_mean_seconds"] or math.inf), {
                "sprint": sprint, "point": f"point-{i}",
                **{k.removeprefix(f"time_to_accuracy.sprints.{sprint}."): v for k, v in point.items()},
                "threshold": f"{runs[0]['threshold']:.2%}",
                "reached on valid": f"{summary['reached_on_valid']} of {summary['runs']}",
                "time": sprint_result(summary),
                "highest valid accuracy within the goal, all runs but one": f"{time_to_accuracy.highest_within(runs, goal):.2%} in {goal:.0f} s"}))
    rows = [row for _, row in sorted(rows, key=lambda r: r[0])]
    machine = read_json(folder / "point-0" / "sprints" / f"{sprints[0]}-{seeds[0]}.json")["environment"]
    text = "\n".join([f"# Sprint sweep {folder.name}", "", "Generated by `python -m mnistbench.sweep --sprints`; valid "
                      "split only for choosing (the test set confirms a chosen sprint in stage time_to_accuracy). "
                      "Fastest valid point first, per sprint; MLPerf's rules (docs/time-to-accuracy.md).", "",
                      f"Machine: {machine['cpu']} ({machine['cpu_capability']}), {machine['threads']} threads, "
                      f"sgemm {machine['sgemm_gflops']:.0f} GFLOP/s, torch {machine['torch']}.", "",
                      markdown_table(rows), ""])
    write_text(folder / "summary.md", text)
    return text


def against_best(valid: dict[str, dict[int, float]]) -> dict[str, str]:
    """For each point of one model ({point: {seed: valid accuracy}}): 'best', or whether it is distinguishable
    from the best point by a paired t-test over their shared seeds (Holm-corrected over the points)."""
    best = max(valid, key=lambda p: sum(valid[p].values()) / len(valid[p]))
    others = [p for p in valid if p != best]
    found = [comparisons.paired(best, valid[best], p, valid[p]) for p in others]
    words = {best: "best"}
    for point, c, p in zip(others, found, comparisons.holm([c.p for c in found])):
        if c.n < 2:
            words[point] = "one seed: cannot tell"
        elif p < comparisons.ALPHA:
            words[point] = f"worse by {c.difference:.2f} points [{c.low:.2f}, {c.high:.2f}], p (Holm) {p:.2g}"
        else:
            words[point] = f"not distinguishable ({-c.difference:+.2f} [{-c.high:+.2f}, {-c.low:+.2f}]), p (Holm) {p:.2g}"
    return words


def summarize(trainings: list[matrix.Training], points: list[dict], folder: Path) -> str:
    rows = []
    for model in dict.fromkeys(t.model for t in trainings):
        valid, found = {}, []
        for i, point in enumerate(points):
            records = [read_json(layout.run_file(folder / f"point-{i}" / "reports", layout.TRAIN, run_name(model, t.seed)))
                       for t in trainings if t.model == model and t.point == describe(point)]
            valid[f"point-{i}"] = {r["seed"]: r["best_valid_accuracy"] for r in records}
            found.append((i, point, records))
        verdicts = against_best(valid)
        for i, point, records in found:
            mean = sum(valid[f"point-{i}"].values()) / len(records)
            rows.append((model, -mean, {
                "model": model, "point": f"point-{i}", **point, "seeds": len(records),
                "valid accuracy (mean of best epochs)": f"{100 * mean:.2f}%",
                "against the best point": verdicts[f"point-{i}"],
                "train seconds (mean)": f"{sum(r['train_seconds'] for r in records) / len(records):.0f}"}))
    rows = [row for *_, row in sorted(rows, key=lambda r: r[:2])]
    text = "\n".join([f"# Sweep {folder.name}", "", "Generated by `python -m mnistbench.sweep`; valid split only "
                      "(the test set is for the run you adopt). Best first, per model; each other point against the "
                      "best by a paired t-test over the seeds both ran, Holm-corrected (docs/statistics.md).", "",
                      markdown_table(rows), ""])
    write_text(folder / "summary.md", text)
    return text


if __name__ == "__main__":
    main()
