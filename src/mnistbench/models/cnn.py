"""The write-up's CNN (Problem II (c)), layer for layer: 40,730 parameters, under a 50,000 budget."""

from torch import nn

from mnistbench.models import register
from mnistbench.schema import ModelSection


def build_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 12, kernel_size=3, padding=1, stride=1),  # 28x28 -> 28x28
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2),  # -> 14x14
        nn.Conv2d(12, 24, kernel_size=3, padding=1, stride=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2),  # -> 7x7
        nn.Flatten(),
        nn.Linear(24 * 7 * 7, 32),
        nn.ReLU(),
        nn.Dropout(p=0.2),
        nn.Linear(32, 10),
    )


register("cnn", ModelSection, lambda p: build_cnn())
