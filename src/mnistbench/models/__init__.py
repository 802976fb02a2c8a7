"""The model zoo: a registry of models by name, filled by the modules of this folder.

Adding a model is one module here that defines its typed params (a `ModelSection`), its builder and
a `register(name, Params, build)` call, plus its section `models.<name>` in params.yaml. The schema, the
pipeline, the report and the tests find it through `REGISTRY`; nothing else names it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from torch import nn

from mnistbench.errors import ParamsError
from mnistbench.schema import ModelSection

@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: type[ModelSection]  # validates models.<name> of params.yaml
    build: Callable[[ModelSection], nn.Module]  # a fresh model, its weights drawn from torch's global RNG


REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, params: type[ModelSection], build: Callable[[ModelSection], nn.Module]) -> None:
    if name in REGISTRY:
        raise ValueError(f"model name {name!r} registered twice")
    REGISTRY[name] = ModelSpec(name, params, build)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(name: str, params) -> nn.Module:
    """Build the model `name` from its section of `params` (config.Params); check its budget if it has one."""
    section = params.model_section(name)
    model = REGISTRY[name].build(section)
    n = count_parameters(model)
    if section.max_params is not None and n > section.max_params:
        raise ParamsError(f"models.{name}.max_params: the model has {n:,} parameters, over the budget of "
                          f"{section.max_params:,}")
    return model


# Every module of this folder registers its models when imported.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
