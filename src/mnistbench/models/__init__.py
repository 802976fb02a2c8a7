"""The model zoo: a registry of models by name, filled by the modules of this folder.

Adding a model is one module here that defines its typed params (a `ModelSection`), its builder and
a `register(name, Params, build)` call, plus its section `models.<name>` in params.yaml. The schema, the
pipeline, the report and the tests find it through `REGISTRY`; nothing else names it.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from mnistbench.errors import MnistbenchError, ParamsError
from mnistbench.schema import ModelSection

@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: type[ModelSection]  # validates models.<name> of params.yaml
    build: Callable[[ModelSection], nn.Module]  # a fresh model, its weights drawn from torch's global RNG


REGISTRY: dict[str, ModelSpec] = {}


def _file_of(module: str) -> str:
    return getattr(sys.modules.get(module), "__file__", None) or module


def register(name: str, params: type[ModelSection], build: Callable[[ModelSection], nn.Module]) -> None:
    if name in REGISTRY:
        first, second = REGISTRY[name].build.__module__, build.__module__
        raise MnistbenchError(f"{_file_of(second)} registers the model name {name!r}, which {_file_of(first)} "
                              f"registered already; expected each name once: rename one of them")
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


def import_model_modules(folder: str | Path, package: str) -> None:
    """Import every module of `folder` (the package `package`), so that each registers its models. A module
    that fails to import is named with the line that failed, not shown as a traceback through this loop."""
    for info in pkgutil.iter_modules([str(folder)]):
        path = Path(folder) / f"{info.name}.py"
        try:
            importlib.import_module(f"{package}.{info.name}")
        except SyntaxError as err:
            raise MnistbenchError(f"{err.filename}, line {err.lineno}: model module not valid Python "
                                  f"({err.msg}); fix it, or move it out of {folder}") from None
        except MnistbenchError:
            raise
        except Exception as err:
            lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path]
            where = f"{path}, line {lines[-1]}" if lines else str(path)
            raise MnistbenchError(f"{where}: importing this model module failed: {type(err).__name__}: {err}; "
                                  f"fix it, or move it out of {folder}") from None


import_model_modules(__path__[0], __name__)
