"""LeNet-5 (LeCun et al., 1998) for 28x28 digits: two 5x5 convolutions with average pooling, then three
fully connected layers, tanh throughout; the first convolution pads by 2 so the 28x28 input plays the
original 32x32's part. 61,706 parameters."""

from torch import nn

from mnistbench.models import register
from mnistbench.schema import ModelSection


def build_lenet5() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Tanh(), nn.AvgPool2d(2),  # 28 -> 14
        nn.Conv2d(6, 16, kernel_size=5), nn.Tanh(), nn.AvgPool2d(2),  # 14 -> 10 -> 5
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Tanh(),
        nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, 10),
    )


register("lenet5", ModelSection, lambda p: build_lenet5())
