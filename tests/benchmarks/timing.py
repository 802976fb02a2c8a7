"""Timing helpers shared by the benchmarks."""

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(benchmark, device, fn, flops: float, rounds: int = 100, warmup: int = 10, items: int | None = None, **info):
    """Benchmark fn() (synchronised on CUDA, warmed up first); record FLOPs, GFLOP/s and, given the
    number of items (images) one call processes, items per second; return fn's result."""

    def run():
        out = fn()
        sync(device)
        return out

    for _ in range(warmup):  # warm-up: allocator, kernels chosen, caches, thread pool, clocks
        run()
    result = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({"flops": flops, "device": device.type, "threads": torch.get_num_threads(), **info})
    if benchmark.stats:  # None under --benchmark-disable, where the test only checks results
        median = benchmark.stats.stats.median
        benchmark.extra_info["gflops_per_s"] = flops / median / 1e9
        if items:
            benchmark.extra_info["images_per_s"] = items / median
    return result



def sgemm_seconds(device, n: int = 1024, reps: int = 60) -> float:
    """Median time of an n^3 float32 matmul, measured right now: a calibration taken beside a benchmark,
    so that a ratio to it cancels how fast the machine happens to be at this moment."""
    import time

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for i in range(reps + 10):
        start = time.perf_counter()
        a @ b
        sync(device)
        if i >= 10:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
