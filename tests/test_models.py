import math

import pytest
import torch
import yaml
import torch.nn.functional as F

from conftest import ROOT
from mnistbench.config import load_params
from mnistbench.errors import ParamsError
from mnistbench.models import REGISTRY, build_model, count_parameters
from mnistbench.models.vit import MultiHeadSelfAttention, ViT


def linear(n_in, n_out):
    return n_in * n_out + n_out


def conv(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def vit_parameters(patch, dim, depth, heads, mlp_dim):
    tokens = (28 // patch) ** 2 + 1
    layer = 2 * 2 * dim + 3 * dim * dim + linear(dim, dim) + linear(dim, mlp_dim) + linear(mlp_dim, dim)
    return linear(patch * patch, dim) + dim + tokens * dim + depth * layer + 2 * dim + linear(dim, 10)


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def test_parameter_counts(params):
    # The MLP of the write-up: 784 -> 100 -> 100 -> 10.
    assert count_parameters(build_model("mlp", params)) == linear(784, 100) + linear(100, 100) + linear(100, 10) == 89_610
    # The CNN: the write-up prints "total params: 40730"; under the 50,000 budget.
    cnn = count_parameters(build_model("cnn", params))
    assert cnn == conv(1, 12, 3) + conv(12, 24, 3) + linear(24 * 7 * 7, 32) + linear(32, 10) == 40_730
    assert cnn <= params.models.cnn.max_params == 50_000
    v = params.models.vit
    assert count_parameters(build_model("vit", params)) == vit_parameters(v.patch_size, v.dim, v.depth, v.heads, v.mlp_dim)


def batchnorm(c):
    return 2 * c  # weight and bias; the running statistics are buffers, not parameters


def test_tuned_parameter_counts(params):
    hidden = params.models.mlp_tuned.hidden
    widths = [784, *hidden]
    mlp = sum(n_in * n_out + batchnorm(n_out) for n_in, n_out in zip(widths, widths[1:])) + linear(widths[-1], 10)
    assert count_parameters(build_model("mlp_tuned", params)) == mlp
    stages = params.models.cnn_tuned.stages
    convs = [c for stage in stages for c in stage]
    size = 28 // 2 ** len(stages)
    cnn = sum(c_in * c_out * 9 + batchnorm(c_out) for c_in, c_out in zip([1, *convs], convs)) + linear(convs[-1] * size * size, 10)
    assert count_parameters(build_model("cnn_tuned", params)) == cnn <= params.models.cnn_tuned.max_params == 50_000
    v = params.models.vit_tuned
    assert count_parameters(build_model("vit_tuned", params)) == vit_parameters(v.patch_size, v.dim, v.depth, v.heads, v.mlp_dim)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_model_builds_within_its_budget_and_classifies(params, name):
    """Every model in the registry, a new one included: its params section validates, it builds
    deterministically (within its budget, or build_model refuses it: tested below), and maps images to 10
    logits."""
    torch.manual_seed(0)
    model = build_model(name, params).eval()
    torch.manual_seed(0)
    again = build_model(name, params).eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    if name != "vit_writeup":  # the write-up's ViT re-draws its attention weights in every forward pass
        assert torch.equal(model(x), model(x))


def test_a_model_over_its_budget_is_refused_naming_the_key(params):
    over = params.model_copy(update={"models": params.models.model_copy(update={
        "cnn": params.models.cnn.model_copy(update={"max_params": 40_000})})})
    with pytest.raises(ParamsError, match=r"models\.cnn\.max_params: the model has 40,730 parameters, over the "
                                          r"budget of 40,000"):
        build_model("cnn", over)


def test_every_registered_model_has_a_params_section_and_nothing_else_does():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]
    assert set(committed) == set(REGISTRY)


def test_vit_patches_are_row_major_7x7_tiles():
    model = ViT(patch_size=7, dim=64, depth=1, heads=4, mlp_dim=128, dropout=0.0)
    images = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 1, 28, 28)
    patches = model.patches(images)
    assert patches.shape == (1, 16, 49)
    assert torch.equal(patches[0, 1], images[0, 0, 0:7, 7:14].reshape(-1))  # second patch: top row, next tile
    assert torch.equal(patches[0, 4], images[0, 0, 7:14, 0:7].reshape(-1))


def test_attention_matches_the_textbook_formula():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(dim=16, heads=4, dropout=0.0)
    x = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    heads = lambda t: t.view(2, 5, 4, 4).transpose(1, 2)  # noqa: E731
    weights = F.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(4), dim=-1)
    expected = attn.out((weights @ heads(v)).transpose(1, 2).reshape(2, 5, 16))
    assert torch.allclose(attn(x), expected, atol=1e-6)


SMALL_WRITEUP_VIT = {"patch_size": 7, "dim": 64, "depth": 2, "heads": 4, "dim_head": 16, "mlp_dim": 128}


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_writeup_vit_computes_exactly_what_its_code_as_written_computes(dropout):
    """`vit_writeup`'s attention skips building three nn.Linear per head and call; trained side by side with the
    write-up's own lines (`forward_as_written`), every weight after some Adam steps and the evaluation outputs
    (where the write-up's fresh nn.Dropout still drops) agree to the bit."""
    from mnistbench.models.vit_writeup import SingleHeadAttention, WriteupViT

    def trained(forward):
        original = SingleHeadAttention.forward
        SingleHeadAttention.forward = forward
        try:
            torch.manual_seed(0)
            model = WriteupViT(**SMALL_WRITEUP_VIT, dropout=dropout)
            optimizer = torch.optim.Adam(model.parameters(), 1e-3)
            data = torch.Generator().manual_seed(1)
            for _ in range(4):
                x, y = torch.rand(8, 1, 28, 28, generator=data), torch.randint(0, 10, (8,), generator=data)
                optimizer.zero_grad()
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
            with torch.no_grad():
                out = model.eval()(torch.rand(8, 1, 28, 28, generator=data))
            return model.state_dict(), out
        finally:
            SingleHeadAttention.forward = original

    fast, fast_out = trained(SingleHeadAttention.forward)
    written, written_out = trained(SingleHeadAttention.forward_as_written)
    assert fast.keys() == written.keys()
    assert all(torch.equal(fast[k], written[k]) for k in fast)
    assert torch.equal(fast_out, written_out)
    torch.manual_seed(0)
    assert not torch.equal(fast["head.weight"], WriteupViT(**SMALL_WRITEUP_VIT, dropout=dropout).state_dict()["head.weight"])  # it trained


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A fresh model folder, importable as its own package, with the registry emptied for the test."""
    import mnistbench.models as models

    package = f"zoo_{abs(hash(str(tmp_path)))}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(models, "REGISTRY", {})

    def load(**modules: str):
        for name, code in modules.items():
            (tmp_path / package / f"{name}.py").write_text(code)
        models.import_model_modules(tmp_path / package, package)
        return tmp_path / package
    return load


REGISTERS = "from mnistbench.models import register\nfrom mnistbench.schema import ModelSection\n" \
            "register('twin', ModelSection, lambda p: None)\n"


def test_two_model_modules_registering_one_name_are_both_named(zoo):
    from mnistbench.errors import MnistbenchError
    with pytest.raises(MnistbenchError, match=r"a_first\.py registers|b_second\.py registers") as err:
        zoo(a_first=REGISTERS, b_second=REGISTERS)
    assert "a_first.py" in str(err.value) and "b_second.py" in str(err.value) and "'twin'" in str(err.value)


@pytest.mark.parametrize("code, line, what", [
    ("x = 1\n\ndef broken(:\n    pass\n", 3, "not valid Python"),
    ("import torch\n\nREGISTRY_SIZE = 1 / 0\n", 3, "ZeroDivisionError"),
])
def test_a_model_module_that_fails_to_import_is_named_with_its_line(zoo, code, line, what):
    from mnistbench.errors import MnistbenchError
    with pytest.raises(MnistbenchError, match=rf"broken_model\.py, line {line}: .*{what}"):
        zoo(broken_model=code)
