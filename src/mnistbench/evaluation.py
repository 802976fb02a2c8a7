"""Scoring a model: loss and accuracy on a split (validation during training), and the test-set metrics:
per-class accuracy and the confusion matrix. Loading a trained model's weights safely."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mnistbench.data import NUM_CLASSES, to_float
from mnistbench.errors import MnistbenchError
from mnistbench.files import load_tensors

EVAL_CHUNK = 1000  # images per forward pass when evaluating: big enough to be fast, small enough for memory


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move `model` to `device`, its convolution weights channels-last (only 4-d tensors change layout).
    oneDNN runs convolutions and pooling on channels-last tensors without reordering them on every call:
    on one CPU thread the write-up CNN's training step takes about two thirds of the time
    (reports/benchmarks.md). Training and evaluation both place the model, so they compute alike."""
    return model.to(device, memory_format=torch.channels_last)


def writeup_loss(per_image_losses: torch.Tensor, batch_size: int) -> float:
    """The write-up's convention: sum over batches of the batch's mean loss, divided by the image count."""
    n = len(per_image_losses)
    batch_means = [chunk.mean() for chunk in per_image_losses.split(batch_size)]
    return float(torch.stack(batch_means).sum() / n)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Logits for uint8 images, in chunks, in eval mode."""
    model.eval()
    out = [model(to_float(chunk).to(device)).float().cpu() for chunk in images.split(EVAL_CHUNK)]
    return torch.cat(out)


def score(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device) -> dict:
    logits = predict(model, images, device)
    losses = F.cross_entropy(logits, labels, reduction="none")
    return {
        "loss": float(losses.mean()),
        "loss_writeup": writeup_loss(losses, batch_size),
        "accuracy": float((logits.argmax(1) == labels).float().mean()),
        "logits": logits,
    }


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state_dict saved by the train stage, safely (weights_only), into `model`."""
    path = Path(path)
    if not path.is_file():
        raise MnistbenchError(f"{path}: model file not found; run its train stage first")
    state = load_tensors(path, "model file")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[:3]
        raise MnistbenchError(
            f"{path}: checkpoint does not fit the {type(model).__name__} built from params.yaml "
            f"(a checkpoint from another architecture?): {' '.join(first)}"
        ) from None
    return model


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """counts[actual, predicted]."""
    flat = labels * NUM_CLASSES + predictions
    return torch.bincount(flat, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def test_metrics(model: nn.Module, images, labels, batch_size: int, device) -> tuple[dict, torch.Tensor]:
    result = score(model, images, labels, batch_size, device)
    predictions = result["logits"].argmax(1)
    matrix = confusion_matrix(labels, predictions)
    per_class = (matrix.diag().float() / matrix.sum(1).clamp(min=1)).tolist()
    metrics = {
        "test_accuracy": result["accuracy"],
        "test_loss": result["loss"],
        "test_loss_writeup": result["loss_writeup"],
        "test_correct": int(matrix.diag().sum()),
        "test_count": len(labels),
        "per_class_accuracy": {str(c): acc for c, acc in enumerate(per_class)},
        "confusion_matrix": matrix.tolist(),
    }
    return metrics, predictions
