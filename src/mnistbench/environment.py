"""Seeds, deterministic mode, threads, device and precision; and a description of the machine for every result.

Defaults are chosen by what the hardware reports, never by the machine they were written on:
`device: auto` takes CUDA when torch sees it, `precision: auto` takes bf16 only where the device
runs it natively (a CPU with AVX512-BF16 or AMX, a GPU with bf16 units); elsewhere bf16 autocast
is emulated and slower than fp32 (measured per CPU class: docs/hardware.md).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import random
import subprocess
import sys
import time

import numpy as np
import torch

from mnistbench.settings import LOCK_FILE


def make_deterministic(seed: int, threads: int | None) -> None:
    """Seed every RNG and turn on deterministic algorithms, before any CUDA work starts."""
    # cuBLAS reads this when it initialises; setting it later has no effect.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    deterministic_algorithms()
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(threads or os.cpu_count() or 1)


def deterministic_algorithms() -> None:
    """torch.use_deterministic_algorithms(True), without importing torch's compiler when nothing has: the public
    call also sets torch._inductor's own flag, and importing torch._inductor for it cost every process that
    trains, evaluates or replays a canary more than a second of CPU (docs/testing.md). Nothing in this project
    compiles; the switch the eager kernels read is the one set here, and a process that has loaded the compiler
    gets the public call, both flags."""
    if "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=False)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from mnistbench.config import ParamsError

        raise ParamsError("train.device: 'cuda' was asked for, but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(name)




def cpu_flags() -> set[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively (not emulated through float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    # torch's own CPU feature probe (private in torch 2.14); /proc/cpuinfo where it is missing.
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None)
    if all(probe):
        return bool(probe[0]() or probe[1]())
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


_warned: set[str] = set()


def resolve_precision(requested: str, device: torch.device, native: bool | None = None) -> str:
    """'fp32' or 'bf16' for train.precision `requested` ('auto', 'fp32' or 'bf16') on `device`.

    `native` overrides what the hardware reports (tests fake it both ways)."""
    native = native_bf16(device) if native is None else native
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native and device.type not in _warned:
        _warned.add(device.type)
        print(f"warning: train.precision bf16 on a {device.type} without native bf16 ({capability(device)}): "
              f"autocast is emulated and many times slower than fp32 (docs/hardware.md); use auto or fp32", file=sys.stderr)
    return requested


def capability(device: torch.device) -> str:
    """What the kernels can use: torch's CPU capability (AVX2, AVX512, ...), or the GPU's compute capability."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"sm_{major}{minor}"
    return torch.backends.cpu.get_cpu_capability()


def sgemm_gflops(device: torch.device, n: int = 1024, reps: int = 10) -> float:
    """A float32 n^3 matmul's speed on `device`, with the current threads, measured now: the yardstick that
    tells whether two timings from two machines are the same code. Touches no random number generator."""
    a = torch.full((n, n), 0.5, device=device)
    times = []
    for i in range(reps + 3):
        start = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / sorted(times)[len(times) // 2] / 1e9


@functools.cache
def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lock_digest() -> str:
    """The SHA-256 of requirements.lock, the exact packages `make setup` installs ('none' without one)."""
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest() if LOCK_FILE.is_file() else "none"


def describe(device: torch.device) -> dict:
    """What a reader needs to trust a number: versions, hardware and its speed now, threads, determinism."""
    info = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": native_bf16(torch.device("cpu")),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "device_native_bf16": native_bf16(device),
        "sgemm_gflops": round(sgemm_gflops(device), 1),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "git_commit": git_commit(),
        "lock_sha256": lock_digest(),
    }
    return info
