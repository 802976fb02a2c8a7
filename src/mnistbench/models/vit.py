"""A small, correct Vision Transformer for 28x28x1 images.

Patches -> linear embedding -> [class token; patches] + learned positions -> `depth` pre-norm
encoder layers (multi-head self-attention, then an MLP, each in a residual branch) ->
LayerNorm -> linear head on the class token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from mnistbench.models import register
from mnistbench.schema import ModelSection


class VitParams(ModelSection):
    patch_size: PositiveInt
    dim: PositiveInt
    depth: PositiveInt
    heads: PositiveInt
    mlp_dim: PositiveInt
    dropout: float = Field(ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _shapes_fit(self) -> VitParams:
        if 28 % self.patch_size:
            raise ValueError(f"patch_size must divide 28, found {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim must be a multiple of heads, found dim={self.dim}, heads={self.heads}")
        return self

    def architecture(self) -> dict:
        return self.model_dump(exclude={"train", "max_params"})


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        # (b, t, 3d) -> three tensors of (b, heads, t, d / heads)
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    # Its sizes come from params.yaml (models.vit, models.vit_tuned), their one home; the image's from MNIST.
    def __init__(self, patch_size: int, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float,
                 image_size: int = 28, channels: int = 1):
        super().__init__()
        self.patch_size = patch_size
        num_patches = (image_size // patch_size) ** 2
        self.embed = nn.Linear(channels * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, num_patches + 1, dim) * 0.02)
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads, mlp_dim, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(b, c, h, w) -> (b, num_patches, c * p * p), patches in row-major order."""
        p = self.patch_size
        return F.unfold(images, kernel_size=p, stride=p).transpose(1, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.patches(images))
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos
        x = self.norm(self.layers(x))
        return self.head(x[:, 0])


# The same architecture twice: `vit` with its own recipe, `vit_tuned` with the tuned one (params.yaml).
register("vit", VitParams, lambda p: ViT(**p.architecture()))
register("vit_tuned", VitParams, lambda p: ViT(**p.architecture()))
