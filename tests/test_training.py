import hashlib
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from mnistbench import environment, evaluation, training
from mnistbench.config import load_params
from mnistbench.errors import MnistbenchError
from mnistbench.models import build_model


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def fake_set(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)


def weights_hash(model):
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", ["mlp", "cnn", "vit"])
def test_training_steps_lower_the_loss(params, name):
    environment.make_deterministic(0, 2)
    model = build_model(name, params)
    images, labels = fake_set(32, seed=1)
    x = images.unsqueeze(1).float() / 255
    optimizer = training.make_optimizer(model, params.train_for(name))
    model.eval()  # no dropout: compare like with like
    before = F.cross_entropy(model(x), labels).item()
    model.train()
    for _ in range(5):
        optimizer.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()
    model.eval()
    assert F.cross_entropy(model(x), labels).item() < before


def test_writeup_loss_is_sum_of_batch_means_over_count():
    losses = torch.tensor([1.0, 3.0, 2.0, 2.0, 5.0])  # batches of 2: means 2, 2, 5
    assert evaluation.writeup_loss(losses, batch_size=2) == pytest.approx((2 + 2 + 5) / 5)
    even = torch.rand(64)
    assert evaluation.writeup_loss(even, batch_size=32) == pytest.approx(float(even.mean()) / 32)


class Interrupted(Exception):
    pass


def run_tiny(params, name, checkpoint=None, epochs=2, kill_in_epoch=None):
    """Train on 256 random images; `kill_in_epoch` = k interrupts the run in epoch k, before its checkpoint."""
    tp = params.train_for(name).model_copy(update={"epochs": epochs, "limit_train_images": 256, "warmup_epochs": 1})
    environment.make_deterministic(0, tp.threads)
    model = build_model(name, params)

    def on_epoch(record):
        if record["epoch"] == kill_in_epoch:
            raise Interrupted

    try:
        result = training.train(model, tp, fake_set(256, 2), fake_set(64, 3), torch.device("cpu"), 0, checkpoint,
                                name=name, on_epoch=on_epoch)
    except Interrupted:
        result = None
    return model, result


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn", "cnn_tuned"])  # cnn_tuned: augmentation, label smoothing, OneCycle
def test_same_seed_same_weights_and_metrics(params, name):
    model_a, result_a = run_tiny(params, name)
    model_b, result_b = run_tiny(params, name)
    assert weights_hash(model_a) == weights_hash(model_b)
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in h]  # noqa: E731
    assert strip(result_a.history) == strip(result_b.history)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn", "cnn_tuned"])
def test_resume_from_checkpoint_equals_uninterrupted_run(params, tmp_path, name):
    straight, _ = run_tiny(params, name, epochs=3)
    ckpt = training.Checkpoint(tmp_path / "cnn.ckpt", fingerprint="same")
    run_tiny(params, name, ckpt, epochs=3, kill_in_epoch=3)
    assert torch.load(ckpt.path, weights_only=True)["epoch"] == 2
    ckpt3 = training.Checkpoint(ckpt.path, fingerprint="same")
    resumed, result = run_tiny(params, name, ckpt3, epochs=3)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert weights_hash(resumed) == weights_hash(straight)


@pytest.mark.slow
def test_stops_at_the_first_epoch_that_reaches_the_valid_accuracy(params):
    tp = params.train_for("mlp").model_copy(update={"epochs": 5, "limit_train_images": 256})
    model = build_model("mlp", params)
    result = training.train(model, tp, fake_set(256, 2), fake_set(64, 3), torch.device("cpu"), 0,
                            until_valid_accuracy=0.0)
    assert [r["epoch"] for r in result.history] == [1]


@pytest.mark.slow
def test_checkpoint_of_other_settings_is_not_resumed(params, tmp_path):
    run_tiny(params, "mlp", training.Checkpoint(tmp_path / "m.ckpt", "settings-a"), epochs=1)
    _, result = run_tiny(params, "mlp", training.Checkpoint(tmp_path / "m.ckpt", "settings-b"), epochs=2)
    assert [r["epoch"] for r in result.history] == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_sets_the_dtype_of_training_forwards_but_not_of_evaluation(params, precision, dtype):
    tp = params.train_for("cnn_tuned").model_copy(update={"epochs": 1, "warmup_epochs": 0.5, "limit_train_images": 64,
                                                          "precision": precision})
    environment.make_deterministic(0, tp.threads)
    model = build_model("cnn_tuned", params)
    seen = []  # (training?, dtype of the logits) for every forward
    model.register_forward_hook(lambda module, args, out: seen.append((module.training, out.dtype)))
    training.train(model, tp, fake_set(64, 2), fake_set(32, 3), torch.device("cpu"), 0)
    assert {d for is_training, d in seen if is_training} == {dtype}
    assert {d for is_training, d in seen if not is_training} == {torch.float32}


@pytest.mark.slow
@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_what_the_hardware_reports(params, monkeypatch, native):
    """`auto` is bf16 exactly where the device runs it natively; the choice is what trains and what is recorded."""
    monkeypatch.setattr(environment, "native_bf16", lambda device: native)
    assert environment.resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert environment.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    tp = params.train_for("cnn_tuned").model_copy(update={"epochs": 1, "warmup_epochs": 0.5, "limit_train_images": 64})
    assert tp.precision == "auto"  # the committed recipe leaves the choice to the hardware
    environment.make_deterministic(0, tp.threads)
    model = build_model("cnn_tuned", params)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(out.dtype) if module.training else None)
    result = training.train(model, tp, fake_set(64, 2), fake_set(32, 3), torch.device("cpu"), 0)
    assert result.precision == ("bf16" if native else "fp32")
    assert set(seen) == {torch.bfloat16 if native else torch.float32}


def test_explicit_bf16_without_native_support_runs_and_warns_once(monkeypatch, capsys):
    monkeypatch.setattr(environment, "_warned", set())
    for _ in range(3):
        assert environment.resolve_precision("bf16", torch.device("cpu"), native=False) == "bf16"
    err = capsys.readouterr().err
    assert err.count("warning: train.precision bf16") == 1 and "many times slower than fp32 (docs/hardware.md)" in err
    assert environment.resolve_precision("bf16", torch.device("cpu"), native=True) == "bf16"
    assert capsys.readouterr().err == ""


def test_native_bf16_reads_the_cpu_flags_when_torch_cannot_say(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", None, raising=False)
    monkeypatch.setattr(environment, "cpu_flags", lambda: {"avx2", "fma"})  # the AVX2-only AMD EPYC's kind
    assert environment.native_bf16(torch.device("cpu")) is False
    monkeypatch.setattr(environment, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert environment.native_bf16(torch.device("cpu")) is True


def test_machine_description_has_what_a_timing_needs():
    info = environment.describe(torch.device("cpu"))
    assert info["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256", "NEON")
    assert isinstance(info["cpu_native_bf16"], bool) and info["sgemm_gflops"] > 0
    assert info["threads"] == torch.get_num_threads()
    assert info["gpu"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
    assert info["lock_sha256"] == hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()


def test_deterministic_mode_is_set_without_importing_torchs_compiler(monkeypatch):
    public = []  # calls of the public switch, which imports torch._inductor to set the compiler's flag as well
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, **kw: public.append(mode))
    monkeypatch.delitem(sys.modules, "torch._inductor", raising=False)  # a process that never compiled
    before = torch.are_deterministic_algorithms_enabled()
    torch._C._set_deterministic_algorithms(False)
    try:
        environment.deterministic_algorithms()
        assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
        assert public == [] and "torch._inductor" not in sys.modules
        monkeypatch.setitem(sys.modules, "torch._inductor", types.ModuleType("torch._inductor"))  # one that did
        environment.deterministic_algorithms()
        assert public == [True]  # both flags, by the public call
    finally:
        torch._C._set_deterministic_algorithms(before)


@pytest.mark.slow
@pytest.mark.parametrize("per_step_check", [True, False], ids=["cpu: every step", "gpu-style: once per epoch"])
@pytest.mark.parametrize("lr", [1e10, float("inf")])
def test_a_diverging_run_stops_with_the_epoch_step_and_a_hint(params, lr, per_step_check, monkeypatch):
    # A GPU checks the losses once per epoch (no sync per step); the message names the same first bad step.
    monkeypatch.setattr(training, "reading_back_syncs", lambda device: not per_step_check)
    tp = params.train_for("mlp").model_copy(update={"epochs": 2, "optimizer": "sgd", "lr": lr})
    environment.make_deterministic(0, tp.threads)
    with pytest.raises(MnistbenchError, match=r"mlp-0: the training loss is not finite \((nan|inf)\) at epoch 1, "
                                              r"step \d+; the run diverged: lower the learning rate"):
        training.train(build_model("mlp", params), tp, fake_set(256, 2), fake_set(64, 3), torch.device("cpu"), 0,
                       name="mlp-0")


@pytest.mark.slow
@pytest.mark.parametrize("per_step_check", [True, False], ids=["cpu: every step", "gpu-style: once per epoch"])
def test_a_model_whose_first_output_is_not_finite_is_blamed_not_the_learning_rate(params, per_step_check,
                                                                                   monkeypatch):
    """No optimizer step has run at epoch 1, step 1: the learning rate cannot be the cause."""
    monkeypatch.setattr(training, "reading_back_syncs", lambda device: not per_step_check)

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(784, 10)

        def forward(self, x):
            return self.linear(x.flatten(1)) * float("nan")

    tp = params.train_for("mlp").model_copy(update={"epochs": 1})
    with pytest.raises(MnistbenchError) as raised:
        training.train(Broken(), tp, fake_set(64, 2), fake_set(32, 3), torch.device("cpu"), 0, name="broken-0")
    assert str(raised.value) == ("broken-0: the training loss is not finite (nan) at epoch 1, step 1, before any "
                                 "optimizer step: the model's output from its initial weights is not finite; check "
                                 "the model's forward pass (models/), not the learning rate")
