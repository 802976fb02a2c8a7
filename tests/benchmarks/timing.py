"""Timing helpers shared by the benchmarks."""

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(benchmark, device, fn, flops: float, rounds: int = 20, **info):
    """Benchmark fn() (synchronised on CUDA, warmed up first); record FLOPs and GFLOP/s; return fn's result."""

    def run():
        out = fn()
        sync(device)
        return out

    for _ in range(3):  # warm-up: allocator, kernels chosen, caches
        run()
    result = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update({"flops": flops, "gflops_per_s": flops / median / 1e9, "device": device.type,
                                 "threads": torch.get_num_threads(), **info})
    return result

