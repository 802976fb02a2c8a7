"""The report's tables, as lists of rows (dicts) and as markdown."""

from __future__ import annotations

import math

import pandas as pd

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


def time_to_accuracy_cell(result: dict | None) -> str:
    if not result:
        return "-"
    if not result["reached_on_valid"]:
        return f"not {result['threshold']:.1%} in {result['epochs']} epochs ({result['seconds']:.0f} s)"
    return f"{result['threshold']:.1%} in {result['seconds']:.1f} s ({result['epochs']} epochs)"


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
            "time to accuracy (valid)": time_to_accuracy_cell(time_to_accuracy.get(model)),
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
    return [{
        "model": name,
        "threshold (valid, then test)": f"{r['threshold']:.1%}",
        "wall time (s)": f"{r['seconds']:.1f}",
        "goal (s)": f"≤ {r['goal_seconds']:.0f}",
        "epochs": f"{r['epochs']} of at most {r['max_epochs']}",
        "valid accuracy (%)": f"{100 * r['valid_accuracy']:.2f}",
        "test accuracy (%)": f"{100 * r['test_accuracy']:.2f}",
        "confirmed on test": "yes" if r["confirmed_on_test"] else "no",
        "within goal": "yes" if r["reached_on_valid"] and r["seconds"] <= r["goal_seconds"] else "no",
    } for name, r in results.items()]


def recipe_line(r: dict) -> str:
    """How a time-to-accuracy run trained, in one line."""
    tp = r["recipe"]
    augmented = any(tp["augment"].values())
    return (f"{r['epochs']} of {r['max_epochs']} epochs, batch {tp['batch_size']}, {r.get('precision', tp['precision'])}, "
            f"{tp['optimizer']} lr {tp['lr']}, {tp['schedule']} schedule, label smoothing {tp['label_smoothing']}, "
            f"augmentation {'on' if augmented else 'off'}, seed {r['seed']}")
