"""The write-up's MLP (Problem II (b)), layer for layer.

The write-up has two ReLUs in a row after the second Linear; ReLU is idempotent, so the
doubled one changes nothing, and it is kept so the module list matches the write-up.
"""

from pydantic import PositiveInt
from torch import nn

from mnistbench.models import register
from mnistbench.schema import ModelSection


class MlpParams(ModelSection):
    hidden: PositiveInt


def build_mlp(hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.ReLU(),  # sic: doubled in the write-up
        nn.Linear(hidden, 10),
    )


register("mlp", MlpParams, lambda p: build_mlp(p.hidden))
