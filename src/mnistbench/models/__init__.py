"""The model zoo: one builder per name in params.yaml's `models` section."""

from torch import nn

from mnistbench.config import ParamsError, Params
from mnistbench.models.cnn import build_cnn
from mnistbench.models.cnn_tuned import build_cnn_tuned
from mnistbench.models.mlp import build_mlp
from mnistbench.models.mlp_tuned import build_mlp_tuned
from mnistbench.models.vit import ViT
from mnistbench.models.vit_seed import WriteupViT


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(name: str, params: Params) -> nn.Module:
    """Build the model `name` from its params section; raise ParamsError for an unknown name or budget."""
    section = params.model_section(name)
    if name == "mlp":
        return build_mlp(section.hidden)
    if name == "mlp_tuned":
        return build_mlp_tuned(section.hidden, section.dropout)
    if name == "cnn":
        return within_budget(name, build_cnn(), section.max_params)
    if name == "cnn_tuned":
        return within_budget(name, build_cnn_tuned(section.stages, section.dropout), section.max_params)
    if name in ("vit", "vit_tuned"):
        return ViT(**section.model_dump(exclude={"train"}))
    if name == "vit_seed":
        return WriteupViT(**section.model_dump(exclude={"train"}))
    raise ParamsError(f"models.{name}: no builder for this model")


def within_budget(name: str, model: nn.Module, max_params: int) -> nn.Module:
    n = count_parameters(model)
    if n > max_params:
        raise ParamsError(f"models.{name}.max_params: the model has {n:,} parameters, over the budget of {max_params:,}")
    return model
