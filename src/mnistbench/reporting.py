"""reports/comparison.md and its pictures, from the files the train and evaluate stages wrote."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from mnistbench.files import atomic_path, read_csv, read_json, write_text  # noqa: E402
from mnistbench.config import run_name  # noqa: E402
from mnistbench.datasets import DATASETS, Dataset  # noqa: E402
from mnistbench.writeup import load_logs  # noqa: E402

# One line per difference between the write-up's ViT (vit_writeup) and ours (vit).
VIT_DIFFERENCES = [
    "attention projections: vit_writeup draws new random Q/K/V weights on every forward pass and never trains them; vit learns one fused QKV projection",
    "values: vit_writeup projects values with the key matrix (v = w_k(x)); vit has its own value projection",
    "attention kernel: vit_writeup computes softmax(QK^T/sqrt(d))V by hand per head; vit calls F.scaled_dot_product_attention for all heads at once",
    "normalisation: vit_writeup puts LayerNorm at the end of each residual branch (post-branch); vit normalises the input of each branch (pre-norm)",
    "MLP activation: vit_writeup uses ReLU (as written); vit uses GELU",
    "training recipe: vit_writeup uses the write-up's protocol (Adam, constant LR); vit uses AdamW, weight decay 0.05, 1 warm-up epoch and cosine decay",
]


HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "train_loss_writeup",
                   "valid_loss_writeup")


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t confidence interval (nan for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    sd = stats.tstd(values)
    return mean, stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)


def load_runs(models: list[str], seeds: list[int], reports: Path) -> pd.DataFrame:
    """One row per (model, seed): what the train and evaluate stages recorded."""
    rows = []
    for model in models:
        for seed in seeds:
            run = read_json(reports / "train" / f"{run_name(model, seed)}.json")
            metrics = read_json(reports / "metrics" / f"{run_name(model, seed)}.json")
            rows.append({**{k: v for k, v in run.items() if k != "environment"}, **run["environment"],
                         **{k: v for k, v in metrics.items() if k not in ("model", "seed")}})
    return pd.DataFrame(rows)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_curves(name: str, history: pd.DataFrame, path: Path) -> None:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for split, style in (("train", "-o"), ("valid", "-s")):
        ax_loss.plot(history["epoch"], history[f"{split}_loss"], style, label=split, markersize=3)
        ax_acc.plot(history["epoch"], 100 * history[f"{split}_accuracy"], style, label=split, markersize=3)
    ax_loss.set(title=f"{name}: loss (mean cross-entropy)", xlabel="epoch", ylabel="loss")
    ax_acc.set(title=f"{name}: accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def plot_vs_writeup(name: str, history: pd.DataFrame, logged: pd.DataFrame, path: Path) -> None:
    """Our per-epoch numbers beside the write-up's, in the write-up's loss convention."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(history["epoch"], history["train_loss_writeup"], "-o", markersize=3, label="train, ours")
    ax_loss.plot(history["epoch"], history["valid_loss_writeup"], "-s", markersize=3, label="valid, ours")
    ax_loss.plot(logged["epoch"], logged["train_loss_writeup"], "--o", markersize=3, label="train, write-up")
    ax_loss.plot(logged["epoch"], logged["loss_writeup"], "--s", markersize=3, label="valid, write-up")
    ax_acc.plot(history["epoch"], 100 * history["valid_accuracy"], "-s", markersize=3, label="valid, ours")
    ax_acc.plot(logged["epoch"], logged["accuracy_percent"], "--s", markersize=3, label="valid, write-up")
    ax_loss.set(title=f"{name}: 'Average loss' (write-up's convention)", xlabel="epoch", ylabel="loss / batch")
    ax_acc.set(title=f"{name}: valid accuracy vs write-up", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_confusion(name: str, matrix: list[list[int]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.imshow(matrix, cmap="Blues")
    top = max(max(row) for row in matrix)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, count, ha="center", va="center", fontsize=7, color="white" if count > top / 2 else "black")
    ax.set(title=f"{name}: test confusion matrix", xlabel="predicted", ylabel="actual", xticks=range(10), yticks=range(10))
    _save(fig, path)


def plot_seeds(runs: pd.DataFrame, claimed: dict[str, float], path: Path) -> None:
    """Test accuracy of every seed, per model, with the write-up's claim where it makes one."""
    models = list(dict.fromkeys(runs["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(2.8 * len(models), 3.2), constrained_layout=True, squeeze=False)
    axes = axes[0]
    for ax, model in zip(axes, models):
        accs = 100 * runs.loc[runs["model"] == model, "test_accuracy"]
        ax.plot([0] * len(accs), accs, "o", alpha=0.7, label="our seeds")
        mean, half = mean_ci(list(accs))
        if not math.isnan(half):
            ax.errorbar([0.15], [mean], yerr=[half], fmt="s", color="black", capsize=4, label="mean, 95% CI")
        if model in claimed:
            ax.axhline(claimed[model], color="red", linestyle="--", label="write-up")
        ax.set(title=model, xticks=[], xlim=(-0.5, 0.5))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    _save(fig, path)


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


def accuracy_interval(accuracies: list[float]) -> str:
    mean, half = mean_ci([100 * a for a in accuracies])
    n = len(accuracies)
    return f"{mean:.2f} (n=1)" if n == 1 else f"{mean:.2f} ± {half:.2f} (n={n})"


def time_to_accuracy_cell(result: dict | None) -> str:
    if not result:
        return "-"
    if not result["reached_on_valid"]:
        return f"not {result['threshold']:.1%} in {result['epochs']} epochs ({result['seconds']:.0f} s)"
    return f"{result['threshold']:.1%} in {result['seconds']:.1f} s ({result['epochs']} epochs)"


def comparison_rows(runs: pd.DataFrame, time_to_accuracy: dict) -> list[dict]:
    rows = []
    for model, group in runs.groupby("model", sort=False):
        first = group.iloc[0]  # the first seed's run gives the curves and per-run details
        rows.append({
            "model": model,
            "parameters": int(first["parameters"]),
            f"test accuracy (%), seed {first['seed']}": 100 * first["test_accuracy"],
            "test accuracy (%), mean ± 95% CI": accuracy_interval(list(group["test_accuracy"])),
            "time to accuracy (valid)": time_to_accuracy_cell(time_to_accuracy.get(model)),
            "test loss": float(first["test_loss"]),
            "best valid accuracy (%)": 100 * first["best_valid_accuracy"],
            "best valid epoch": int(first["best_valid_epoch"]),
            "epochs": int(first["epochs"]),
            "batch size": int(first["batch_size"]),
            "train images": int(first["train_images"]),
            "train time (s)": float(first["train_seconds"]),
            "throughput (images/s)": float(first["images_per_second"]),
            "precision": _recorded(first, "precision") or "not recorded",
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


def time_to_accuracy_section(results: dict) -> list[str]:
    if not results:
        return []
    rows = [{
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
    env = next(iter(results.values()))["environment"]
    def recipe(r: dict) -> str:
        tp, aug = r["recipe"], r["recipe"]["augment"]
        augmented = any(aug.values())
        return (f"batch {tp['batch_size']}, {r.get('precision', tp['precision'])}, {tp['optimizer']} lr {tp['lr']}, {tp['schedule']} schedule, "
                f"label smoothing {tp['label_smoothing']}, augmentation {'on' if augmented else 'off'}, seed {r['seed']}")

    recipes = [f"- `{name}`: {r['epochs']} of {r['max_epochs']} epochs, {recipe(r)}" for name, r in results.items()]
    return [
        "## Time to accuracy",
        "",
        "Stage `time_to_accuracy` (`make time-to-accuracy` re-measures it): each model trains with its recipe,",
        "shortened by `time_to_accuracy.models.<name>.train` in params.yaml, until the valid accuracy after an",
        "epoch reaches the threshold; then the test set is read once to confirm it. The wall time covers",
        "building the model, every training step and each epoch's validation (not loading the data).",
        "",
        markdown_table(rows),
        "",
        *recipes,
        f"- Machine: {machine_summary(env)}, {env['cpu_count']} CPUs, torch {env['torch']}.",
        "",
    ]


def write_report(models: list[str], seeds: list[int], reports: Path, split_summary: Path, writeup_logs: Path,
                 time_to_accuracy: Path | None = None, goals: dict[str, float] | None = None,
                 dataset: Dataset = DATASETS["mnist"]) -> Path:
    """Write reports/comparison.md and reports/figures/*.png; return the markdown's path.
    `goals`: test accuracy each model should reach (gates.yaml's `accuracy`, the goals' one home).
    The write-up's logs and claims are about MNIST: on another dataset they are left out, and the report says so."""
    figures = reports / "figures"
    runs = load_runs(models, seeds, reports)
    tta = read_json(time_to_accuracy) if time_to_accuracy else {}
    tuned = goal_rows(runs, goals or {})
    logged = load_logs(writeup_logs)
    claimed = {m: float(g["accuracy_percent"].iloc[0]) for m, g in logged[logged["split"] == "test"].groupby("model")}
    if not dataset.writeup:
        logged, claimed = logged.iloc[0:0], {}
    first_seed = seeds[0]
    for name in models:
        run = run_name(name, first_seed)
        history = read_csv(reports / "history" / f"{run}.csv", HISTORY_COLUMNS)
        plot_curves(run, history, figures / f"{name}_curves.png")
        plot_confusion(run, read_json(reports / "metrics" / f"{run}.json")["confusion_matrix"],
                       figures / f"{name}_confusion.png")
        theirs = logged[(logged["model"] == name) & (logged["split"] == "valid")]
        if len(theirs):
            plot_vs_writeup(run, history, theirs, figures / f"{name}_vs_writeup.png")
    plot_seeds(runs, claimed, figures / "seeds.png")
    env = runs.iloc[0]
    splits = read_json(split_summary)
    compared = [m for m in models if m in claimed]

    lines = [
        f"# {dataset.title}: MLP vs CNN vs ViT",
        "",
        *([] if dataset.writeup else [
            f"The write-up's claims and logs are about MNIST; they do not apply to {dataset.title} and are left out.",
            f"Classes: {', '.join(dataset.classes)}.", ""]),
        "Generated by the `report` stage of `dvc repro` (or of `make reproduce`, for reproduce/reports/);",
        "do not edit by hand. `mlp` and `cnn` are the write-up's architectures; `vit` is a correct ViT;",
        "`vit_writeup` is the write-up's ViT *as written*, bugs included (see `reports/claims.md`);",
        "`*_tuned` are the same families trained with today's practice (see \"Goals and tuned variants\").",
        "",
        markdown_table(comparison_rows(runs, tta)),
        "",
        f"Seeds: {', '.join(map(str, seeds))}. The interval is the mean ± the half-width of the two-sided 95%",
        "Student-t interval over seeds (`make reproduce` trains five). Train time counts optimisation steps only",
        "(not validation); throughput is training images per second over that time. Precision is what trained",
        "(`train.precision: auto` resolved for the machine in the next column).",
        "",
        "![test accuracy per seed](figures/seeds.png)",
        "",
        *([
            "## Goals and tuned variants",
            "",
            "Each model's goal is its accuracy gate in `gates.yaml`; the tuned variants' goals are stated as means",
            "over five seeds (`make reproduce`), the write-up models' as the gate CI applies to seed 0.",
            "",
            "`mlp_tuned`, `cnn_tuned` (≤ 50,000 parameters) and `vit_tuned`: the same families with today's",
            "small-model practice (BatchNorm or LayerNorm, dropout, label smoothing 0.1, random rotation/shift/zoom,",
            "AdamW with OneCycle, a batch size chosen for speed), hyperparameters picked on the valid split only.",
            "`train.precision` in params.yaml says which may train in bf16 (autocast; float32 weights and evaluation;",
            "`auto`: only where the machine runs bf16 natively); the precision column says what did.",
            "",
            markdown_table(tuned),
            "",
            *([f"Published {dataset.title} results, for context (trained on all 60,000 images, so not the same "
               "protocol):", "", markdown_table(dataset.published), ""] if dataset.published else []),
        ] if tuned else []),
        *time_to_accuracy_section(tta),
        "## Curves",
        "",
        *[f"![{name} curves](figures/{name}_curves.png)" for name in models],
        "",
        *([
            "## Against the write-up's logs",
            "",
            "Our per-epoch numbers (solid) beside the write-up's (dashed), losses in its convention",
            "(sum of per-batch mean losses / number of images, about loss / 32).",
            "",
            *[f"![{name} vs write-up](figures/{name}_vs_writeup.png)" for name in compared],
            "",
        ] if compared else []),
        "## Confusion matrices (test set)",
        "",
        " ".join(f"![{name} confusion](figures/{name}_confusion.png)" for name in models),
        "",
        "## vit_writeup (the write-up's ViT) vs vit (ours)",
        "",
        *[f"- {line}" for line in VIT_DIFFERENCES],
        "",
        "## What these numbers rest on",
        "",
        f"- Data: the four standard {dataset.title} IDX files, their decompressed contents checked by SHA-256; "
        f"split seed {splits['seed']}: "
        + ", ".join(f"{k} {v['count']:,}" for k, v in splits["splits"].items())
        + " images (per-class counts and SHA-256 of each split in `reports/split.json`).",
        f"- Training seeds {', '.join(map(str, seeds))}; deterministic algorithms "
        f"{'on' if env['deterministic'] else 'off'}, cuDNN benchmark {'on' if env['cudnn_benchmark'] else 'off'}.",
        f"- Machine: {machine_summary(env)}, {env['cpu_count']} CPUs; "
        f"torch {env['torch']} (CUDA {env['cuda']}), Python {env['python']}, {env['platform']}. Every run's machine"
        " is in its row above and in `reports/train/<run>.json`; the sgemm figure, measured when the run started,"
        " is the yardstick for comparing its times with another machine's (docs/hardware.md).",
        f"- Code: git commit {env['git_commit']}. Every run is in MLflow (experiment `{env['mlflow_experiment']}`,"
        " run name `<model>-<seed>`) with its params, curves, model and environment.",
        f"- Test set: the 10,000 {dataset.title} test images, read once per run, after training.",
    ]
    out = reports / "comparison.md"
    write_text(out, "\n".join(lines) + "\n")
    return out
