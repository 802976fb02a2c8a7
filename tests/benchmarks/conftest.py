"""Benchmarks: run with `make bench` (pytest-benchmark). The plain `make test` leaves this folder out.

Every benchmark checks its result against a reference in the same test, records FLOPs and
GFLOP/s in extra_info, and runs on cpu and, where torch sees one, cuda (else it is skipped
with the reason shown in the summary).
"""

import pytest
import torch

from mnistbench import environment

DEVICES = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    torch.manual_seed(0)
    if request.param == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 only where a benchmark names it
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(request.param)




def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what the numbers depend on beside pytest-benchmark's own machine info."""
    cpu = torch.device("cpu")
    machine_info["mnistbench"] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "threads": torch.get_num_threads(),
        "cpu_capability": environment.capability(cpu),
        "cpu_native_bf16": environment.native_bf16(cpu),
        "gpu_native_bf16": torch.cuda.is_available() and environment.native_bf16(torch.device("cuda")),
    }
