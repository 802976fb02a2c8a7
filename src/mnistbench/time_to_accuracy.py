"""Time-to-accuracy: train a model until its valid accuracy reaches a threshold, then confirm on test.

The clock covers what a user waits for: building the model, every training step and the
validation after each epoch. It stops at the first epoch whose valid accuracy reaches the
threshold; the test set is read once, afterwards, to confirm that the threshold holds there too.
"""

from __future__ import annotations

import time
from pathlib import Path

from mnistbench import data, environment, training
from mnistbench.config import Params
from mnistbench.models import build_model, count_parameters


def measure(params: Params, name: str, seed: int, processed_dir: Path) -> dict:
    target = params.time_to_accuracy.models[name]
    tp = params.time_to_accuracy_recipe(name)
    environment.make_deterministic(seed, tp.threads)
    device = environment.resolve_device(tp.device)
    train_set = data.load_split(processed_dir, "train")
    valid_set = data.load_split(processed_dir, "valid")

    start = time.perf_counter()
    model = build_model(name, params)
    result = training.train(model, tp, train_set, valid_set, device, seed, name=f"{name} (to {target.threshold:.1%})",
                            until_valid_accuracy=target.threshold)
    seconds = time.perf_counter() - start

    last = result.history[-1]
    test_images, test_labels = data.load_split(processed_dir, "test")
    test = training.score(model, test_images, test_labels, tp.batch_size, device)
    reached = last["valid_accuracy"] >= target.threshold
    return {
        "model": name,
        "seed": seed,
        "parameters": count_parameters(model),
        "threshold": target.threshold,
        "reached_on_valid": reached,
        "confirmed_on_test": reached and test["accuracy"] >= target.threshold,
        "seconds": seconds,
        "epochs": last["epoch"],
        "max_epochs": tp.epochs,
        "precision": result.precision,
        "valid_accuracy": last["valid_accuracy"],
        "test_accuracy": test["accuracy"],
        "goal_seconds": target.goal_seconds,
        "recipe": tp.model_dump(),
        "valid_curve": [r["valid_accuracy"] for r in result.history],
        "environment": environment.describe(device),
    }
