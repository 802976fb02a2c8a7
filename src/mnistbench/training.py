"""One training loop for every model: preloaded tensors, seeded shuffling, a checkpoint per epoch.

Losses are reported two ways:
- `loss`: the usual mean cross-entropy per image;
- `loss_writeup`: the write-up's "Average loss", the sum of per-batch mean losses divided by
  the number of images (about loss / batch_size), so our logs compare with its logs line by line.
With label smoothing or augmentation (the tuned recipes), the train loss and accuracy are those of
the smoothed targets and the augmented images; the valid and test numbers never are.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mnistbench import augment, environment
from mnistbench.data import to_float
from mnistbench.evaluation import place, score
from mnistbench.config import TrainParams
from mnistbench.errors import MnistbenchError
from mnistbench.files import atomic_path, load_tensors

def make_optimizer(model: nn.Module, tp: TrainParams) -> torch.optim.Optimizer:
    # The fused kernels are faster for these small models; they give the same results run to run.
    if tp.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=tp.lr, momentum=tp.momentum, weight_decay=tp.weight_decay)
    cls = torch.optim.Adam if tp.optimizer == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay, fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, tp: TrainParams, steps_per_epoch: int):
    """Stepped per batch: 1 x lr for `constant`; warm-up then cosine decay for `cosine`; OneCycleLR."""
    total = tp.epochs * steps_per_epoch
    warmup = int(tp.warmup_epochs * steps_per_epoch)
    if tp.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=tp.lr, total_steps=total,
                                                   pct_start=tp.warmup_epochs / tp.epochs)

    def factor(step: int) -> float:
        if tp.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly where it stopped."""

    path: Path
    fingerprint: str  # of the settings; a checkpoint from other settings is not resumed

    meta: dict = field(default_factory=dict)  # saved with every state, e.g. the MLflow run to continue

    def save(self, state: dict) -> None:
        with atomic_path(self.path) as tmp:
            torch.save({"fingerprint": self.fingerprint, "meta": self.meta, **state}, tmp)

    def load(self) -> dict | None:
        """The saved state, or None when there is none or it was written for other settings."""
        if not self.path.is_file():
            return None
        state = load_tensors(self.path, "checkpoint")
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            return None
        return state


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rng_state(shuffle: torch.Generator, augmenting: torch.Generator, device: torch.device) -> dict:
    # Only torch's RNGs are used while training: the global one (dropout; CUDA's on a GPU), the shuffle,
    # the augmentation.
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(), "augment": augmenting.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict, shuffle: torch.Generator, augmenting: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    augmenting.set_state(state["augment"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _check_finite(name: str, what: str, value: float, epoch: int, tp: TrainParams, step: int | None = None) -> None:
    """A diverged run stops here, before any model, metric or report is written for it."""
    if not math.isfinite(value):
        where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
        if epoch == 1 and step == 1:  # no optimizer step has run: the learning rate played no part
            raise MnistbenchError(
                f"{name}: {what} is not finite ({value}) at {where}, before any optimizer step: the model's output "
                f"from its initial weights is not finite; check the model's forward pass (models/), not the "
                f"learning rate")
        raise MnistbenchError(
            f"{name}: {what} is not finite ({value}) at {where}; the run diverged: lower the learning rate "
            f"(train.lr or models.<name>.train.lr; this run used {tp.lr:g}) and run it again")


def reading_back_syncs(device: torch.device) -> bool:
    """Whether reading a value back to Python waits for the device (a GPU's queue); on a CPU it is free."""
    return device.type != "cpu"


@dataclass
class TrainResult:
    precision: str = "fp32"  # what ran: train.precision with `auto` resolved for the device
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0  # time in optimisation steps only: the basis of throughput
    wall_seconds: float = 0.0  # the whole loop, validation included
    images_seen: int = 0

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.train_seconds if self.train_seconds else 0.0


def train(
    model: nn.Module,
    tp: TrainParams,
    train_set: tuple[torch.Tensor, torch.Tensor],
    valid_set: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    seed: int = 0,
    checkpoint: Checkpoint | None = None,
    on_epoch: Callable[[dict], None] = lambda record: None,
    name: str = "model",
    until_valid_accuracy: float | None = None,
) -> TrainResult:
    """Train for tp.epochs, validating after each epoch; resume from `checkpoint` if it holds one.
    With `until_valid_accuracy`, stop after the first epoch whose valid accuracy reaches it.

    `seed` drives the shuffling and the augmentation; the caller seeds torch's global RNG
    (initial weights, dropout)."""
    images, labels = train_set
    if tp.limit_train_images:
        images, labels = images[: tp.limit_train_images], labels[: tp.limit_train_images]
    x_all = to_float(images).to(device)
    y_all = labels.to(device)
    n = len(y_all)
    place(model, device)
    optimizer = make_optimizer(model, tp)
    scheduler = make_scheduler(optimizer, tp, steps_per_epoch=math.ceil(n / tp.batch_size))
    shuffle = torch.Generator().manual_seed(seed)
    augmenting = torch.Generator().manual_seed(seed + 1)
    augmented = augment.is_on(tp.augment)
    bf16 = environment.resolve_precision(tp.precision, device) == "bf16"
    result = TrainResult(precision="bf16" if bf16 else "fp32")
    start_epoch = 1

    state = checkpoint.load() if checkpoint else None
    if checkpoint and state is None and checkpoint.path.is_file():
        print(f"{checkpoint.path}: written for other settings, starting afresh", file=sys.stderr)
    if state and state["epoch"] >= tp.epochs:
        state = None  # a finished run is rerun because something changed (or -f): start afresh
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(state["rng"], shuffle, augmenting, device)
        result = TrainResult(**state["result"])
        start_epoch = state["epoch"] + 1
        print(f"{name}: resuming from {checkpoint.path} after epoch {state['epoch']}", file=sys.stderr)
        for record in result.history:  # a resumed run reports the epochs it inherited too
            on_epoch(record)

    interactive = sys.stderr.isatty()
    # A diverged step stops the run before anything is written for it. On a CPU the loss is checked after every
    # step (reading it costs nothing); on a GPU that read is a host-device sync per step, so the losses are
    # checked once per epoch, on the device, and the message still names the first bad step.
    check_each_step = not reading_back_syncs(device)
    for epoch in range(start_epoch, tp.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        batch_losses, correct = [], 0
        bar = tqdm(order.split(tp.batch_size), desc=f"{name} epoch {epoch}/{tp.epochs}", unit="batch",
                   disable=not interactive, leave=False)
        for step, idx in enumerate(bar, start=1):
            x, y = x_all[idx], y_all[idx]
            if augmented:
                x = augment.random_affine(x, tp.augment, augmenting)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=tp.label_smoothing)
            if check_each_step:
                _check_finite(name, "the training loss", float(loss.detach()), epoch, tp, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            batch_losses.append(loss.detach() * len(y))  # sum of per-image losses in this batch
            correct += (logits.argmax(1) == y).sum()
        t1 = time.perf_counter()
        sums = torch.stack(batch_losses)
        if not check_each_step:  # one read-back per epoch; names the first step whose loss was not finite
            finite = torch.isfinite(sums)
            if not bool(finite.all()):
                step = int((~finite).nonzero()[0]) + 1
                _check_finite(name, "the training loss", float(sums[step - 1] / len(order.split(tp.batch_size)[step - 1])),
                              epoch, tp, step)
        sizes = torch.tensor([len(i) for i in order.split(tp.batch_size)], device=sums.device)
        valid = score(model, *valid_set, tp.batch_size, device)
        record = {
            "epoch": epoch,
            "train_loss": float(sums.sum() / n),
            "train_loss_writeup": float((sums / sizes).sum() / n),
            "train_accuracy": float(correct) / n,
            "valid_loss": valid["loss"],
            "valid_loss_writeup": valid["loss_writeup"],
            "valid_accuracy": valid["accuracy"],
            "epoch_seconds": time.perf_counter() - t0,
        }
        _check_finite(name, "the valid loss", record["valid_loss"], epoch, tp)
        result.history.append(record)
        result.train_seconds += t1 - t0
        result.wall_seconds += record["epoch_seconds"]
        result.images_seen += n
        line = (f"{name} epoch {epoch}/{tp.epochs}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}"
                f" | valid loss {record['valid_loss']:.4f} acc {record['valid_accuracy']:.4f} | {record['epoch_seconds']:.1f}s")
        print(line, file=sys.stderr, flush=True)
        on_epoch(record)
        if checkpoint:  # after on_epoch: a run killed in between redoes this epoch, and on_epoch sees it twice
            checkpoint.save({
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(shuffle, augmenting, device),
                "result": result.__dict__,
            })
        if until_valid_accuracy is not None and record["valid_accuracy"] >= until_valid_accuracy:
            break
    return result
