"""The write-up's ViT (Problem III) AS WRITTEN, bugs included. Not a working ViT: see `vit` for that.

Reproduced from the write-up, line for line (`SingleHeadAttention.forward_as_written`; `forward` computes
the same bits without building modules per call):
- `SingleHeadAttention` creates its query/key/value projections on every call, so they
  are freshly random each time, never registered as parameters and never trained;
- the values are projected with the key projection (`v = w_k(x)`), and `w_v` is unused;
- `ViTLayer` puts a LayerNorm at the end of each residual branch (post-branch norm) and uses ReLU.

Not in the write-up, so chosen here and listed as assumptions in reports/claims.md:
- `Attention` runs `heads` SingleHeadAttention heads and concatenates them (heads * dim_head);
- patches of 7x7 pixels, a linear patch embedding, a class token, learned position embeddings,
  `depth` ViTLayers, and a LayerNorm + Linear head on the class token (the shape of the
  homework's usual ViT scaffold, as in lucidrains/vit-pytorch).
The one deviation: the fresh projections are created on the input's device, so that the model
also runs on a GPU (the write-up's code would fail there with a device mismatch).
"""

import math

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import nn

from mnistbench.models import register
from mnistbench.models.vit import ViT, VitParams


# One line per difference from our `vit`, for the report.
DIFFERENCES_FROM_VIT = [
    "attention projections: vit_writeup draws new random Q/K/V weights on every forward pass and never trains them; vit learns one fused QKV projection",
    "values: vit_writeup projects values with the key matrix (v = w_k(x)); vit has its own value projection",
    "attention kernel: vit_writeup computes softmax(QK^T/sqrt(d))V by hand per head; vit calls F.scaled_dot_product_attention for all heads at once",
    "normalisation: vit_writeup puts LayerNorm at the end of each residual branch (post-branch); vit normalises the input of each branch (pre-norm)",
    "MLP activation: vit_writeup uses ReLU (as written); vit uses GELU",
    "training recipe: vit_writeup uses the write-up's protocol (Adam, constant LR); vit uses AdamW, weight decay 0.05, 1 warm-up epoch and cosine decay",
]


class WriteupVitParams(VitParams):
    """Our ViT's sizes, plus the width of each head (the write-up's SingleHeadAttention has its own)."""

    dim_head: PositiveInt


def fresh_projection(in_dim: int, out_dim: int, device: torch.device) -> torch.Tensor:
    """The weight of a new `nn.Linear(in_dim, out_dim, bias=False)`: the same draws from torch's global RNG,
    by the same initialiser, without building a module (which costs more than the attention it feeds)."""
    weight = torch.empty(out_dim, in_dim, device=device)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # what nn.Linear.reset_parameters does
    return weight


class SingleHeadAttention(nn.Module):
    """The write-up's head. Its forward computes, bit for bit, what the write-up's code does (kept as
    `forward_as_written`; tests/test_models.py trains both and compares every weight)."""

    def __init__(self, input_dim, inner_dim, dropout=0.0):
        super().__init__()
        self.T = input_dim
        self.d_k = inner_dim
        self.dropout = dropout

    def forward(self, x):
        w_q = fresh_projection(self.T, self.d_k, x.device)
        w_k = fresh_projection(self.T, self.d_k, x.device)
        fresh_projection(self.T, self.d_k, x.device)  # w_v: drawn (it moves the RNG), never used
        q = F.linear(x, w_q)
        k = F.linear(x, w_k)
        v = F.linear(x, w_k)  # sic: the key projection; computed apart from k, as written, so gradients add alike
        attn = torch.matmul(q, k.transpose(1, 2)) / (self.d_k**0.5)
        # A fresh nn.Dropout is in training mode, so as written dropout applies in evaluation too.
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.dropout, training=True)
        return torch.matmul(attn, v)

    def forward_as_written(self, x):
        # As written: new, untrained projections on every call.
        w_q = nn.Linear(self.T, self.d_k, bias=False, device=x.device)
        w_k = nn.Linear(self.T, self.d_k, bias=False, device=x.device)
        w_v = nn.Linear(self.T, self.d_k, bias=False, device=x.device)  # noqa: F841 (sic: never used)
        q = w_q(x)
        k = w_k(x)
        v = w_k(x)  # sic: the key projection, not w_v
        attn = torch.matmul(q, k.transpose(1, 2)) / (self.d_k**0.5)
        dropout = nn.Dropout(p=self.dropout)
        soft = nn.Softmax(dim=-1)
        attn = dropout(soft(attn))
        return torch.matmul(attn, v)


class Attention(nn.Module):
    """Not in the write-up: `heads` single heads side by side, concatenated."""

    def __init__(self, dim, heads, dim_head, dropout=0.0):
        super().__init__()
        self.heads = nn.ModuleList([SingleHeadAttention(dim, dim_head, dropout) for _ in range(heads)])

    def forward(self, x):
        return torch.cat([head(x) for head in self.heads], dim=-1)


class ViTLayer(nn.Module):
    """As written in the write-up."""

    def __init__(self, dim, heads, dim_head, mlp_dim, dropout=0.0):
        super().__init__()
        self.attn = nn.Sequential(
            Attention(dim, heads, dim_head, dropout),
            nn.Linear(dim_head * heads, dim),
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
        )
        self.feedforward = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
        )

    def forward(self, x):
        x = self.attn(x) + x
        x = self.feedforward(x) + x
        return x


class WriteupViT(ViT):
    """Our ViT's patching, embeddings and head around the write-up's layers."""

    def __init__(self, patch_size: int, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float):
        super().__init__(patch_size=patch_size, dim=dim, depth=0, heads=heads, mlp_dim=mlp_dim, dropout=dropout)
        self.layers = nn.Sequential(*[ViTLayer(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth)])


register("vit_writeup", WriteupVitParams, lambda p: WriteupViT(**p.architecture()))
