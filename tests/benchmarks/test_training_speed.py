"""Whole training steps of each model, and one epoch of the data pipeline against the notebook loader."""

import copy
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from timing import sgemm_seconds, timed
from mnistbench import data
from mnistbench.datasets import DATASETS
from mnistbench.evaluation import place
from mnistbench.config import load_params
from mnistbench.models import build_model
from mnistbench.training import make_optimizer

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "params.yaml")


def step_flops(model, x, y) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", ["mlp", "cnn", "vit", "vit_writeup"])
def test_training_step(benchmark, device, name):
    """One forward + backward + optimizer step at the default batch size (32)."""
    benchmark.group = "training step, batch 32"
    torch.manual_seed(0)
    model = place(build_model(name, PARAMS), device)  # as training.train lays it out (channels-last convolutions)
    if name == "cnn":
        model.eval()  # no dropout: the step must be repeatable to compare against the reference
    tp = PARAMS.train_for(name)
    batch = PARAMS.train.batch_size
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    reference = copy.deepcopy(model)
    optimizer = make_optimizer(model, tp)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    flops = step_flops(reference, x, y) if name != "vit_writeup" else None  # vit_writeup draws new layers inside forward
    calibration = sgemm_seconds(device)
    loss = timed(benchmark, device, step, flops or float("nan"), rounds=100, items=batch, kernel=f"train step {name}",
                 impl=name, batch=batch, sgemm_calibration_s=calibration)
    # Reference: the same model's loss on the same batch before training; the steps must have lowered it.
    with torch.no_grad():
        before = F.cross_entropy(reference(x), y)
    assert torch.isfinite(loss) and loss < before


@pytest.fixture(scope="module")
def mnist_raw(tmp_path_factory, mnist_dir):
    raw = tmp_path_factory.mktemp("raw")
    data.fetch_raw(raw / "MNIST" / "raw", DATASETS["mnist"], mnist_dir)
    return raw


def preloaded_epoch(images, labels, batch):
    x_all, total, seen = data.to_float(images), 0.0, 0
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    for idx in order.split(batch):
        x, y = x_all[idx], labels[idx]
        total += float(x.sum())
        seen += len(y)
    return total, seen


def notebook_epoch(root, batch):
    """The write-up's loader: torchvision MNIST + ToTensor + DataLoader, one image at a time."""
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(root, train=False, download=True, transform=transforms.ToTensor())
    total, seen = 0.0, 0
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True):
        total += float(x.sum())
        seen += len(y)
    return total, seen


@pytest.mark.parametrize("loader", ["preloaded", "notebook"])
def test_data_pipeline_epoch(benchmark, loader, mnist_raw, mnist_dir):
    """One epoch over the 10,000 test images at batch 32: our preloaded tensors vs the notebook loop."""
    benchmark.group = "data pipeline, 10,000 images, batch 32"
    images, labels = data.read_images_and_labels(mnist_raw / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz",
                                                 mnist_raw / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz")
    fn = (lambda: preloaded_epoch(images, labels, 32)) if loader == "preloaded" else (lambda: notebook_epoch(mnist_raw, 32))
    total, seen = timed(benchmark, torch.device("cpu"), fn, flops=float("nan"), rounds=7, warmup=2, kernel="data epoch",
                        impl=loader, reference="the other loader")
    reference_total = float(data.to_float(images).sum())
    assert seen == 10_000
    assert total == pytest.approx(reference_total, rel=1e-6)
    shutil.rmtree(mnist_raw / "MNIST" / "processed", ignore_errors=True)


def notebook_training_epoch(root, batch):
    """A notebook's epoch of the write-up CNN: torchvision MNIST + ToTensor + DataLoader, the model as built
    (NCHW), Adam, and the loss read back each step (`running_loss += loss.item()`)."""
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    model = build_model("cnn", PARAMS).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dataset = datasets.MNIST(root, train=False, download=True, transform=transforms.ToTensor())
    running = 0.0
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        running += loss.item()
    return running / len(dataset) * batch


def harness_training_epoch(images, labels, batch):
    """The same epoch through the harness's loop (training.train): preloaded tensors, channels-last weights."""
    from mnistbench import training

    torch.manual_seed(0)
    model = build_model("cnn", PARAMS)
    tp = PARAMS.train_for("cnn").model_copy(update={"epochs": 1, "batch_size": batch})
    result = training.train(model, tp, (images, labels), (images[:batch], labels[:batch]), torch.device("cpu"))
    return result.history[-1]["train_loss"]


@pytest.mark.slow  # it trains (training.train): the tests' guard asks for the marker
@pytest.mark.parametrize("loop", ["mnistbench", "notebook"])
def test_writeup_cnn_epoch(benchmark, loop, mnist_raw):
    """The write-up CNN trained for one epoch over 10,000 images at batch 32: the harness against a notebook."""
    benchmark.group = "write-up CNN, one training epoch, 10,000 images, batch 32"
    images, labels = data.read_images_and_labels(mnist_raw / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz",
                                                 mnist_raw / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz")
    fn = (lambda: harness_training_epoch(images, labels, 32)) if loop == "mnistbench" else \
        (lambda: notebook_training_epoch(mnist_raw, 32))
    loss = timed(benchmark, torch.device("cpu"), fn, flops=float("nan"), rounds=5, warmup=1, items=10_000,
                 kernel="write-up CNN epoch", impl=loop, reference="notebook")
    assert 0.05 < loss < 1.0  # one epoch from scratch: well below ln(10) = 2.3, not yet converged
    shutil.rmtree(mnist_raw / "MNIST" / "processed", ignore_errors=True)
