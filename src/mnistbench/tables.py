"""The report's tables, as lists of rows (dicts) and as markdown."""

from __future__ import annotations

import math

import pandas as pd

from mnistbench.comparisons import McNemar, PairedComparison
from mnistbench.stats import accuracy_interval


def _recorded(env, key: str):
    """A field of a run's record, or None where the run predates it (pandas fills a missing one with NaN)."""
    value = env.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def machine_summary(env) -> str:
    """One line that tells two machines apart: the device, what its kernels can use, threads, a matmul's speed."""
    device, capability = _recorded(env, "device") or "cpu", _recorded(env, "cpu_capability")
    bf16 = _recorded(env, "device_native_bf16")
    sgemm = _recorded(env, "sgemm_gflops")
    if capability is None:
        kernels = "CPU capability and bf16 not recorded"
    else:
        kernels = f"{capability if device == 'cpu' else device}, {'native' if bf16 else 'no native'} bf16"
    return (f"{_recorded(env, 'device_name') or '?'} ({kernels}), {_recorded(env, 'threads') or '?'} threads"
            + (f", sgemm {sgemm:,.0f} GFLOP/s" if sgemm is not None else ""))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown_table(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(row[h]) for h in head) + " |" for row in rows]
    return "\n".join(lines)


def sprint_result(summary: dict, digits: int = 1) -> str:
    """'olympic mean 11.3 s of 5 (range 10.8-11.8 s)', or 'no result: <why>'."""
    if not summary["valid"]:
        return f"no result: {summary['reason'] or 'more than one run missed'}"
    return (f"olympic mean {summary['olympic_mean_seconds']:.{digits}f} s of {summary['runs']} (range "
            f"{summary['min_seconds']:.{digits}f}-{summary['max_seconds']:.{digits}f} s)")


def time_to_accuracy_cell(result: dict | None) -> str:
    """One sprint's summary in a cell: its olympic mean, or why it has none."""
    if not result:
        return "-"
    if not result["valid"]:
        return (f"no result: {result['reached_on_valid']} of {result['runs']} runs reached {result['threshold']:.2%}; "
                f"{result.get('reason') or 'more than one run missed'}")
    return f"{result['threshold']:.2%} in {result['olympic_mean_seconds']:.1f} s (olympic mean of {result['runs']})"


def comparison_rows(runs: pd.DataFrame, time_to_accuracy: dict) -> list[dict]:
    """The table read at a glance: one row per model, seven columns."""
    rows = []
    for model, group in runs.groupby("model", sort=False):
        accuracies = list(group["test_accuracy"])
        rows.append({
            "model": model,
            "parameters": int(group.iloc[0]["parameters"]),
            "test accuracy (%)": accuracy_interval(accuracies) if len(accuracies) > 1 else 100 * accuracies[0],
            "test loss": float(group["test_loss"].mean()),
            "training time (s)": _seconds(group["train_seconds"].mean()),
            "precision": "/".join(sorted({_recorded(r, "precision") or "not recorded" for _, r in group.iterrows()})),
            "time to accuracy (valid)": "; ".join(f"{sprint}: {time_to_accuracy_cell(result)}"
                                                  for sprint, result in time_to_accuracy.items()
                                                  if result.get("model", sprint) == model) or "-",
        })
    return rows


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds < 100 else f"{seconds:.0f}"


def detail_rows(runs: pd.DataFrame) -> list[dict]:
    """Everything else about each model's first run: its recipe's size, its best epoch, its speed, its machine."""
    rows = []
    for model, group in runs.groupby("model", sort=False):
        first = group.iloc[0]
        rows.append({
            "run": f"{model}-{first['seed']}",
            "epochs": int(first["epochs"]),
            "batch size": int(first["batch_size"]),
            "train images": int(first["train_images"]),
            "best valid accuracy (%)": 100 * first["best_valid_accuracy"],
            "best valid epoch": int(first["best_valid_epoch"]),
            "throughput (images/s)": float(first["images_per_second"]),
            "machine": machine_summary(first),
        })
    return rows


def goal_rows(runs: pd.DataFrame, goals: dict[str, float]) -> list[dict]:
    """Each model's accuracy goal (gates.yaml, a fraction) beside what these seeds reached."""
    rows = []
    for model, goal in goals.items():
        accs = list(runs.loc[runs["model"] == model, "test_accuracy"])
        if not accs:
            continue
        mean = sum(accs) / len(accs)
        verdict = ("reached" if mean >= goal else "NOT reached") + ("" if len(accs) >= 5 else f" (n={len(accs)}; the tuned goals are stated over 5 seeds)")
        rows.append({"model": model, "goal: test accuracy (%)": f"≥ {100 * goal:.1f}",
                     "measured (%)": accuracy_interval(accs), "verdict": verdict,
                     "train time per run (s)": f"{runs.loc[runs['model'] == model, 'wall_seconds'].max():.0f} (slowest seed)"})
    return rows


def time_to_accuracy_rows(results: dict) -> list[dict]:
    """One row per sprint: MLPerf's olympic mean over its seeds, the range, how many runs reached the threshold."""
    return [{
        "sprint": name,
        "model": r.get("model", name),
        "threshold (valid, then test)": f"{r['threshold']:.2%}",
        "olympic mean (s)": "-" if r["olympic_mean_seconds"] is None else f"{r['olympic_mean_seconds']:.1f}",
        "range (s, runs that reached)": "-" if r["min_seconds"] is None else f"{r['min_seconds']:.1f}-{r['max_seconds']:.1f}",
        "in sgemm units (GFLOP)": "-" if r["olympic_mean_sgemm_gflop"] is None else f"{r['olympic_mean_sgemm_gflop']:,.0f}",
        "reached on valid / confirmed on test": f"{r['reached_on_valid']} / {r['confirmed_on_test']} of {r['runs']}",
        "result": ("within goal" if r["olympic_mean_seconds"] <= r["goal_seconds"] else "over goal")
        + f" (≤ {r['goal_seconds']:.0f} s, n={r['runs']})" if r["valid"]
        else f"no result: {r.get('reason') or 'more than one run missed'}",
    } for name, r in results.items()]


def recipe_line(r: dict) -> str:
    """How a time-to-accuracy sprint trained, in one line, with the epochs each seed took."""
    tp = r["recipe"]
    augmented = any(tp["augment"].values())
    epochs = ", ".join(str(run["epochs"]) for run in r["seeds"])
    return (f"at most {tp['epochs']} epochs (seeds {', '.join(str(run['seed']) for run in r['seeds'])} took {epochs}), "
            f"batch {tp['batch_size']}, {r['precision']}, {tp['optimizer']} lr {tp['lr']}, {tp['schedule']} schedule, "
            f"label smoothing {tp['label_smoothing']}, augmentation {'on' if augmented else 'off'}")


def _p(p: float) -> str:
    return "-" if math.isnan(p) else f"{p:.2g}" if p >= 0.001 else "< 0.001"


def paired_rows(found: list[PairedComparison]) -> list[dict]:
    """One row per pair of models over their shared seeds (paired t-test, Holm-corrected)."""
    return [{"pair": f"{c.a} vs {c.b}", "seeds": c.n, "p": _p(c.p), "p (Holm)": _p(c.p_holm),
             "verdict (these test images)": c.verdict(),
             "on a fresh sample of digits": "-" if math.isnan(c.fresh_low) else
             f"{c.difference:+.2f} [{c.fresh_low:+.2f}, {c.fresh_high:+.2f}]"
             + (" (0 inside)" if c.fresh_low <= 0 <= c.fresh_high else "")} for c in found]


def mcnemar_rows(found: list[McNemar]) -> list[dict]:
    """One row per pair of models on the same test images (McNemar's exact test, Holm-corrected)."""
    return [{"pair": f"{c.a}-{c.seed_a} vs {c.b}-{c.seed_b}", "only the first right": c.only_a_right, "only the second right": c.only_b_right,
             "p": _p(c.p), "p (Holm)": _p(c.p_holm), "verdict": c.verdict()} for c in found]
