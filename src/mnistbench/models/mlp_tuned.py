"""A wider MLP trained the modern way: BatchNorm after each hidden Linear, then ReLU and dropout."""

from pydantic import Field, PositiveInt
from torch import nn

from mnistbench.models import register
from mnistbench.schema import ModelSection


class MlpTunedParams(ModelSection):
    hidden: list[PositiveInt] = Field(min_length=1)
    dropout: float = Field(ge=0.0, lt=1.0)


def build_mlp_tuned(hidden: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for h in hidden:
        # No bias: BatchNorm's shift does its job.
        layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


register("mlp_tuned", MlpTunedParams, lambda p: build_mlp_tuned(p.hidden, p.dropout))
