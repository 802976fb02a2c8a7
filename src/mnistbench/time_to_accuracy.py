"""Time-to-accuracy under MLPerf Training's rules: each sprint trains a model until its valid accuracy reaches a
threshold, then confirms it on test; it is run once per seed, and reported as the olympic mean of the times.

The clock covers what a user waits for: building the model, every training step and the validation after
each epoch (not loading the data). It stops at the first epoch whose valid accuracy reaches the threshold;
the test set is read once, afterwards. Over the seeds (time_to_accuracy.seeds): the olympic mean drops the
fastest and the slowest run (with at least three), and the result is invalid when more than one run missed
the threshold. Thresholds belong to a dataset: a model without one for this pipeline's dataset is skipped.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from mnistbench import data, environment, evaluation, tracking, training
from mnistbench.config import Params
from mnistbench.files import write_json
from mnistbench.models import build_model, count_parameters
from mnistbench.tables import sprint_result


def measure(params: Params, sprint: str, seed: int, processed_dir: Path) -> dict:
    """One run of the sprint named `sprint` with `seed`."""
    target = params.time_to_accuracy.sprints[sprint]
    name = target.model
    threshold = params.sprint_threshold(sprint)
    tp = params.sprint_recipe(sprint)
    environment.make_deterministic(seed, tp.threads)
    device = environment.resolve_device(tp.device)
    train_set = data.load_split(processed_dir, "train")
    valid_set = data.load_split(processed_dir, "valid")

    start = time.perf_counter()
    model = build_model(name, params)
    result = training.train(model, tp, train_set, valid_set, device, seed, name=f"{name} (to {threshold:.2%})",
                            until_valid_accuracy=threshold)
    seconds = time.perf_counter() - start
    # When each epoch ended, on the sprint's clock (its first moments built the model).
    ended, before = [], seconds - sum(r["epoch_seconds"] for r in result.history)
    for record in result.history:
        before += record["epoch_seconds"]
        ended.append(before)

    last = result.history[-1]
    test_images, test_labels = data.load_split(processed_dir, "test")
    test = evaluation.score(model, test_images, test_labels, tp.batch_size, device)
    reached = last["valid_accuracy"] >= threshold
    return {
        "sprint": sprint,
        "model": name,
        "seed": seed,
        "parameters": count_parameters(model),
        "threshold": threshold,
        "reached_on_valid": reached,
        "confirmed_on_test": reached and test["accuracy"] >= threshold,
        "seconds": seconds,
        "epochs": last["epoch"],
        "max_epochs": tp.epochs,
        "precision": result.precision,
        "valid_accuracy": last["valid_accuracy"],
        "test_accuracy": test["accuracy"],
        "goal_seconds": target.goal_seconds,
        "recipe": tp.model_dump(),
        "valid_curve": [r["valid_accuracy"] for r in result.history],
        "curve_seconds": ended,
        "environment": environment.describe(device),
    }


def olympic(runs: list[dict]) -> dict:
    """MLPerf's summary of one sprint's runs. A run that missed the threshold has no time: it ranks as the
    slowest (and is the one dropped). The result is valid with at least three runs, at most one of them a miss;
    then its time is the olympic mean (the fastest and the slowest dropped), and otherwise there is none and
    `reason` says why. The range is over the runs that reached the threshold."""
    n, reached = len(runs), sum(r["reached_on_valid"] for r in runs)
    ranked = sorted(r["seconds"] if r["reached_on_valid"] else math.inf for r in runs)
    times = [t for t in ranked if t != math.inf]
    reason = (f"an olympic mean needs at least three runs (n={n})" if n < 3 else
              f"{n - reached} of {n} runs missed the threshold (MLPerf allows one)" if n - reached > 1 else None)
    mean = None if reason else sum(ranked[1:-1]) / (n - 2)
    sgemm = [r["environment"]["sgemm_gflops"] for r in runs]
    return {
        "runs": n,
        "olympic_mean_seconds": mean,
        "min_seconds": times[0] if times else None,
        "max_seconds": times[-1] if times else None,
        "reached_on_valid": reached,
        "confirmed_on_test": sum(r["confirmed_on_test"] for r in runs),
        "valid": reason is None,
        "reason": reason,
        # The time in units of the machine's matmul speed (seconds x its sgemm GFLOP/s): comparable across CPUs.
        "olympic_mean_sgemm_gflop": None if mean is None else mean * sum(sgemm) / len(sgemm),
    }


def highest_within(runs: list[dict], seconds: float) -> float:
    """The highest valid accuracy that all runs but one reached within `seconds` (MLPerf allows one miss): the
    threshold a sprint of this recipe could be set to and still count."""
    best = sorted((max([a for a, t in zip(r["valid_curve"], r["curve_seconds"]) if t <= seconds], default=0.0)
                   for r in runs), reverse=True)
    return best[max(len(best) - 2, 0)]


def log_sprint(experiment: str, name: str, summary: dict, runs: list[dict]) -> None:
    """In MLflow: one parent run per sprint with the summary as metrics, and one child run per seed (logged
    after the clock stopped: MLflow's time is not the sprint's)."""
    tags = {f"env.{k}": str(v) for k, v in runs[0]["environment"].items()} | {"mnistbench.sprint": name}
    settings = {"model": runs[0]["model"], "threshold": runs[0]["threshold"], "recipe": runs[0]["recipe"], "seeds": [r["seed"] for r in runs]}
    with tracking.start_run(experiment, f"{name}-time-to-accuracy", settings, tags) as parent:
        tracking.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float))})
    for run in runs:
        child = tags | {"mlflow.parentRunId": parent.info.run_id}
        with tracking.start_run(experiment, f"{name}-time-to-accuracy-{run['seed']}", {"seed": run["seed"]}, child):
            tracking.log_metrics({k: float(run[k]) for k in ("seconds", "epochs", "valid_accuracy", "test_accuracy",
                                                              "reached_on_valid", "confirmed_on_test")})


def measure_all(params: Params, processed_dir: Path, out: Path) -> None:
    """Stage `time_to_accuracy`: every sprint whose model is in this pipeline and which has a threshold for its
    dataset, once per seed, summarized by `olympic` ({} when none)."""
    results = {}
    for name, target in params.time_to_accuracy.sprints.items():
        if target.model not in params.model_names():
            print(f"time to accuracy: sprint {name}: {target.model} is not in pipeline.models, skipped")
            continue
        if params.sprint_threshold(name) is None:
            print(f"time to accuracy: sprint {name} has no threshold for {params.data.dataset}, skipped")
            continue
        runs = [measure(params, name, seed, processed_dir) for seed in params.time_to_accuracy.seeds]
        summary = olympic(runs)
        log_sprint(params.mlflow.experiment, name, summary, runs)
        results[name] = {**summary, "model": target.model, "threshold": runs[0]["threshold"], "goal_seconds": target.goal_seconds,
                         "recipe": runs[0]["recipe"], "precision": runs[0]["precision"],
                         "environment": runs[0]["environment"], "seeds": runs}
        print(f"{name}: {summary['reached_on_valid']}/{summary['runs']} runs reached {runs[0]['threshold']:.2%} valid; "
              f"{sprint_result(summary)}; goal {target.goal_seconds:.0f} s")
    write_json(out, results)
