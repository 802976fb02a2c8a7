"""Convolution and attention kernels at the shapes of the harness's CNN and ViT, and sgemm."""

import math

import pytest
import torch
import torch.nn.functional as F

from timing import timed

# (name, in channels, out channels, image side) of the write-up CNN's two convolutions (3x3, padding 1)
CONVS = [("conv1", 1, 12, 28), ("conv2", 12, 24, 14)]
# The ViT's attention: 16 patches + class token, 4 heads of 16, width 64
TOKENS, HEADS, HEAD_DIM = 17, 4, 16
DIM = HEADS * HEAD_DIM


def sgemm_flops(n):
    return 2 * n**3


@pytest.mark.benchmark(group="sgemm")
def test_sgemm(benchmark, device):
    """The machine's float32 matrix-multiply rate: the yardstick for every other kernel."""
    n = 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    # Many rounds after a long warm-up: this is the yardstick the speed gate divides by.
    out = timed(benchmark, device, lambda: a @ b, sgemm_flops(n), rounds=200, warmup=50, kernel="sgemm",
                impl="torch.matmul", shape=f"{n}^3")
    ref = (a.double() @ b.double()).float()
    assert torch.allclose(out, ref, rtol=1e-3, atol=1e-2)


def im2col_conv(x, weight, bias):
    """Convolution as unfold + matmul: the explicit reference."""
    b, _, h, w = x.shape
    cols = F.unfold(x, kernel_size=3, padding=1)  # (b, c*9, h*w)
    out = weight.flatten(1) @ cols + bias[:, None]
    return out.view(b, -1, h, w)


@pytest.mark.parametrize("impl", ["im2col", "conv2d", "conv2d_channels_last"])
@pytest.mark.parametrize("batch", [32, 256])
@pytest.mark.parametrize("layer", CONVS, ids=[c[0] for c in CONVS])
def test_conv(benchmark, device, layer, batch, impl):
    name, c_in, c_out, side = layer
    benchmark.group = f"conv {name} batch {batch}"
    x = torch.rand(batch, c_in, side, side, device=device)
    weight = torch.randn(c_out, c_in, 3, 3, device=device) * 0.1
    bias = torch.randn(c_out, device=device)
    flops = 2 * batch * c_out * side * side * c_in * 9
    if impl == "im2col":
        fn = lambda: im2col_conv(x, weight, bias)  # noqa: E731
    elif impl == "conv2d":
        fn = lambda: F.conv2d(x, weight, bias, padding=1)  # noqa: E731
    else:
        x_cl, w_cl = x.contiguous(memory_format=torch.channels_last), weight.contiguous(memory_format=torch.channels_last)
        fn = lambda: F.conv2d(x_cl, w_cl, bias, padding=1)  # noqa: E731
    out = timed(benchmark, device, fn, flops, kernel=f"conv {name}", impl=impl, batch=batch, reference="im2col")
    assert torch.allclose(out, im2col_conv(x, weight, bias), rtol=1e-4, atol=1e-4)


class AttentionWeights:
    def __init__(self, device):
        self.qkv = torch.randn(3 * DIM, DIM, device=device) / math.sqrt(DIM)

    def heads(self, x):
        b, t, _ = x.shape
        return self.qkv_proj(x).view(b, t, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)

    def qkv_proj(self, x):
        return x @ self.qkv.T


def naive_attention(w, x):
    q, k, v = w.heads(x)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(x.shape)


def sdpa_attention(w, x):
    q, k, v = w.heads(x)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)


def writeup_attention(w, x):
    """The write-up's SingleHeadAttention math, head by head, its weights held as parameters
    (the real projections, not re-drawn; values through their own projection)."""
    wq, wk, wv = w.qkv.view(3, HEADS, HEAD_DIM, DIM).unbind(0)
    outs = []
    for h in range(HEADS):
        q, k, v = x @ wq[h].T, x @ wk[h].T, x @ wv[h].T
        attn = torch.matmul(q, k.transpose(1, 2)) / (HEAD_DIM**0.5)
        outs.append(torch.matmul(torch.softmax(attn, dim=-1), v))
    return torch.cat(outs, dim=-1)


def module_attention(device, w):
    mha = torch.nn.MultiheadAttention(DIM, HEADS, bias=False, batch_first=True, device=device).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(w.qkv)
        mha.out_proj.weight.copy_(torch.eye(DIM))  # identity: compare the attention itself
    return lambda x: mha(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("impl", ["naive", "writeup_single_head", "sdpa", "nn.MultiheadAttention"])
@pytest.mark.parametrize("batch", [32, 256])
def test_attention(benchmark, device, batch, impl):
    benchmark.group = f"attention batch {batch}"
    w = AttentionWeights(device)
    x = torch.randn(batch, TOKENS, DIM, device=device)
    fns = {"naive": lambda: naive_attention(w, x), "writeup_single_head": lambda: writeup_attention(w, x),
           "sdpa": lambda: sdpa_attention(w, x)}
    if impl == "nn.MultiheadAttention":
        module = module_attention(device, w)
        fns[impl] = lambda: module(x)
    projection = 2 * batch * TOKENS * DIM * 3 * DIM
    scores_and_mix = 2 * 2 * batch * HEADS * TOKENS * TOKENS * HEAD_DIM
    with torch.no_grad():
        out = timed(benchmark, device, fns[impl], projection + scores_and_mix, rounds=300, kernel="attention", impl=impl,
                    batch=batch, reference="naive", shape=f"{batch}x{TOKENS}x{HEADS}x{HEAD_DIM}")
        assert torch.allclose(out, naive_attention(w, x), rtol=1e-4, atol=1e-5)


def naive_core(q, k, v):
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM), dim=-1) @ v


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
@pytest.mark.parametrize("batch", [32, 256])
def test_attention_core(benchmark, device, batch, impl):
    """The attention core alone, Q, K and V given: what a fused kernel can speed up."""
    benchmark.group = f"attention core batch {batch}"
    q, k, v = (torch.randn(batch, HEADS, TOKENS, HEAD_DIM, device=device) for _ in range(3))
    fn = (lambda: naive_core(q, k, v)) if impl == "naive" else (lambda: F.scaled_dot_product_attention(q, k, v))
    out = timed(benchmark, device, fn, 2 * 2 * batch * HEADS * TOKENS * TOKENS * HEAD_DIM, rounds=300,
                kernel="attention core", impl=impl, batch=batch, reference="naive")
    assert torch.allclose(out, naive_core(q, k, v), rtol=1e-4, atol=1e-5)
