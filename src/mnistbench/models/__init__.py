"""The model zoo: one builder per name in params.yaml's `models` section."""

from torch import nn

from mnistbench.config import ParamsError, Params
from mnistbench.models.cnn import build_cnn
from mnistbench.models.mlp import build_mlp
from mnistbench.models.vit import ViT
from mnistbench.models.vit_seed import WriteupViT


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(name: str, params: Params) -> nn.Module:
    """Build the model `name` from its params section; raise ParamsError for an unknown name or budget."""
    section = params.model_section(name)
    if name == "mlp":
        return build_mlp(section.hidden)
    if name == "cnn":
        model = build_cnn()
        n = count_parameters(model)
        if n > section.max_params:
            raise ParamsError(f"models.cnn.max_params: the CNN has {n} parameters, over the budget of {section.max_params}")
        return model
    if name == "vit":
        return ViT(**section.model_dump(exclude={"train"}))
    if name == "vit_seed":
        return WriteupViT(**section.model_dump(exclude={"train"}))
    raise ParamsError(f"models.{name}: no builder for this model")
