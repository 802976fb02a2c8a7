"""The report's pictures: curves per run, our curves over the write-up's, confusion matrices, seeds."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mnistbench.files import atomic_path  # noqa: E402


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


def plot_seeds(runs: pd.DataFrame, intervals: dict[str, tuple[float, float]], claimed: dict[str, float],
               path: Path) -> None:
    """Test accuracy of every seed, per model, with its mean and 95% interval (`intervals`, in percent: mean and
    half-width, nan for one seed) and the write-up's claim where it makes one."""
    models = list(dict.fromkeys(runs["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(2.8 * len(models), 3.2), constrained_layout=True, squeeze=False)
    axes = axes[0]
    for ax, model in zip(axes, models):
        accs = 100 * runs.loc[runs["model"] == model, "test_accuracy"]
        ax.plot([0] * len(accs), accs, "o", alpha=0.7, label="our seeds")
        mean, half = intervals[model]
        if not math.isnan(half):
            ax.errorbar([0.15], [mean], yerr=[half], fmt="s", color="black", capsize=4, label="mean, 95% CI")
        if model in claimed:
            ax.axhline(claimed[model], color="red", linestyle="--", label="write-up")
        ax.set(title=model, xticks=[], xlim=(-0.5, 0.5))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    _save(fig, path)
