"""Instruction counts of the kernels and of one training step of every registered model, under callgrind.

    python -m mnistbench.instructions count --out counts.json        # a few minutes: processes under valgrind
    python -m mnistbench.instructions gate --counts counts.json      # each count against gates.yaml's baseline

Wall time on a shared 2-core machine moves by tens of percent with the neighbours; the number of instructions
a computation executes does not, so a 5% slowdown of a training step is visible in a count. `count` runs
itself under `valgrind --tool=callgrind --collect-atstart=no`, in SHARDS processes side by side, each with
every SHARDS-th benchmark of one fixed order (importing torch alone costs about ten billion instructions, so
a process counts all of its benchmarks); each builds its inputs first, and for each benchmark runs it WARMUP
times uncounted (first calls' work), then REPEATS times with collection on (torch's valgrind toggles), and
dumps: one dump per benchmark, divided by REPEATS. One thread, fixed inputs, fp32. What counts cannot see
(threads, memory layout, bf16 on hardware that has it) stays with the wall-clock ratios of the speed gate
(docs/gates.md).

MNISTBENCH_SLOWER_STEP=1 (a test switch) adds an elementwise pass to every training step, sized to about 5% of
a small model's step: the gate must catch it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WARMUP = 3
REPEATS = 3
BATCH = 32
# Processes counting side by side, each single-threaded with a share of the benchmarks (every SHARDS-th): each
# pays the import of torch under valgrind (about a minute) and holds about 2 GB, so two, where there are two cores.
SHARDS = min(2, os.cpu_count() or 1)
SLOWER_STEP = "MNISTBENCH_SLOWER_STEP"  # the test switch


def _benchmarks() -> list[tuple[str, object]]:
    """(name, a callable) for each counted computation, inputs built now, before any counting."""
    import torch
    import torch.nn.functional as F

    from mnistbench.config import load_params
    from mnistbench.data import to_float
    from mnistbench.evaluation import place
    from mnistbench.models import REGISTRY, build_model
    from mnistbench.settings import ROOT
    from mnistbench.training import make_optimizer

    torch.manual_seed(0)
    found = []
    for name, c_in, c_out, side in (("conv1", 1, 12, 28), ("conv2", 12, 24, 14)):  # the write-up CNN's convolutions
        x = torch.rand(BATCH, c_in, side, side).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(c_out, c_in, 3, 3) * 0.1).contiguous(memory_format=torch.channels_last)
        b = torch.randn(c_out)
        found.append((f"kernel {name} forward, batch {BATCH}", lambda x=x, w=w, b=b: F.conv2d(x, w, b, padding=1)))
    q, k, v = (torch.randn(BATCH, 4, 17, 16) for _ in range(3))  # the ViT's attention: 4 heads, 17 tokens
    found.append((f"kernel attention forward, batch {BATCH}", lambda: F.scaled_dot_product_attention(q, k, v)))

    params = load_params(ROOT / "params.yaml")
    images = to_float(torch.randint(0, 256, (BATCH, 28, 28), dtype=torch.uint8))
    labels = torch.randint(0, 10, (BATCH,))
    slower = os.environ.get(SLOWER_STEP) == "1"
    # Every registered model, whatever pipeline.models a run has set, in name order: a count depends a little on
    # what ran before it in the process (docs/gates.md), so the order is fixed.
    for model_name in sorted(REGISTRY):
        torch.manual_seed(0)
        model = place(build_model(model_name, params), torch.device("cpu"))
        tp = params.train_for(model_name).model_copy(update={"precision": "fp32"})
        optimizer = make_optimizer(model, tp)

        def step(model=model, optimizer=optimizer):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if slower:  # the test switch: an extra elementwise pass over every parameter, a few times
                with torch.no_grad():
                    for _ in range(3):
                        for p in model.parameters():
                            p.mul_(1.0)
        found.append((f"training step {model_name}, batch {BATCH}", step))
    return found


def _run_counted(dump_dir: Path, shard: int, shards: int) -> None:
    """Inside valgrind: this shard's benchmarks (every shards-th, from the shard-th), one dump each, in order;
    their names to names.json."""
    import torch

    torch.set_num_threads(1)
    benchmarks = _benchmarks()[shard::shards]
    for name, fn in benchmarks:
        for _ in range(WARMUP):  # first calls' work (allocations, kernel selection, optimizer state) is not the steady state
            fn()
        torch._C._valgrind_toggle()
        for _ in range(REPEATS):
            fn()
        torch._C._valgrind_toggle_and_dump_stats()
    (dump_dir / "names.json").write_text(json.dumps([name for name, _ in benchmarks]))


def in_fixed_order(per_shard: list[list[tuple[str, int]]]) -> dict[str, int]:
    """The shards' (name, count) lists merged back into the one fixed order: shard i of N counted benchmarks
    i, i + N, i + 2N, ... of it."""
    shards = len(per_shard)
    return dict(per_shard[j % shards][j // shards] for j in range(sum(map(len, per_shard))))


def count(shards: int = SHARDS) -> dict:
    """Run the benchmarks under callgrind, in `shards` processes side by side (each single-threaded, so as many
    as there are cores); {benchmark: instructions per call} and the machine."""
    from mnistbench import environment
    from mnistbench.errors import MnistbenchError

    valgrind = shutil.which("valgrind")
    if not valgrind:
        raise MnistbenchError("valgrind: not found; expected Debian's package (apt-get install valgrind; "
                              ".ci/run installs it), which counts instructions")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mnistbench-callgrind-") as scratch:
        dump_dirs = [Path(scratch) / f"shard-{i}" for i in range(shards)]
        running = []
        try:
            for i, dump_dir in enumerate(dump_dirs):
                dump_dir.mkdir()
                with open(dump_dir / "stderr.txt", "w") as stderr:  # a file: a full pipe would stall a shard
                    running.append(subprocess.Popen(
                        [valgrind, "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={dump_dir}/cg.out",
                         sys.executable, "-m", "mnistbench.instructions", "_inside", str(dump_dir),
                         "--shard", f"{i}/{shards}"],
                        stdout=subprocess.DEVNULL, stderr=stderr, env=os.environ | {"OMP_NUM_THREADS": "1"}))
            for process, dump_dir in zip(running, dump_dirs):
                if process.wait() != 0:
                    last = ((dump_dir / "stderr.txt").read_text().strip().splitlines() or ["no message"])[-1]
                    raise MnistbenchError(f"counting under valgrind failed (exit {process.returncode}): {last}")
        finally:  # a failed shard or Ctrl-C: the others are not left counting
            for process in running:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        per_shard = []  # [(name, instructions per call)] of each shard, in its order
        for dump_dir in dump_dirs:
            names = json.loads((dump_dir / "names.json").read_text())
            parts = sorted(dump_dir.glob("cg.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
            totals = [int(re.search(r"^summary: (\d+)", p.read_text(), re.M)[1]) for p in parts]
            if len(totals) != len(names):
                raise MnistbenchError(f"callgrind wrote {len(totals)} dumps for {len(names)} benchmarks; expected one each")
            per_shard.append([(name, total // REPEATS) for name, total in zip(names, totals)])
    return {"machine": {"cpu": environment.cpu_name(), "cpu_flags_avx512": "avx512f" in environment.cpu_flags(),
                        "platform": platform.platform(), "valgrind": subprocess.run([valgrind, "--version"],
                        capture_output=True, text=True).stdout.strip(), "git_commit": environment.git_commit(),
                        "slower_step_switch": os.environ.get(SLOWER_STEP) == "1"},
            "repeats": REPEATS, "shards": shards, "seconds": round(time.perf_counter() - started, 1),
            "instructions": in_fixed_order(per_shard)}


def gate(counts: dict, gates: dict) -> tuple[list[str], list[str]]:
    """(passes, failures): each count against its baseline, at the tolerance gates.yaml sets."""
    section = gates["instructions"]
    tolerance, baseline = section["tolerance"], section["baseline"]
    passes, failures = [], []
    for name in baseline.keys() - counts["instructions"].keys():  # a benchmark that went missing is no pass
        failures.append(f"{name}: not counted (baseline {baseline[name]:,}); expected every benchmark of the baseline")
    for name, value in counts["instructions"].items():
        if name not in baseline:
            failures.append(f"{name}: {value:,} instructions, no baseline in gates.yaml (instructions.baseline)")
            continue
        change = value / baseline[name] - 1
        line = (f"{name}: {value:,} instructions (baseline {baseline[name]:,}, {100 * change:+.2f}%, "
                f"tolerance {100 * tolerance:.0f}%) [instruction count]")
        (passes if abs(change) <= tolerance else failures).append(
            line if abs(change) <= tolerance else f"{line}: {'SLOWER' if change > 0 else 'FASTER'} beyond tolerance")
    return passes, failures


def main() -> None:
    from mnistbench.errors import exit_on_error

    @exit_on_error
    def run() -> None:
        import yaml

        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("command", choices=["count", "gate", "_inside"])
        parser.add_argument("dump_dir", nargs="?", type=Path, help=argparse.SUPPRESS)
        parser.add_argument("--shard", default="0/1", help=argparse.SUPPRESS)  # _inside: i/N, which benchmarks
        parser.add_argument("--shards", type=int, default=SHARDS, help=f"count: processes side by side (default {SHARDS})")
        parser.add_argument("--out", type=Path, help="count: where the JSON goes")
        parser.add_argument("--counts", type=Path, help="gate: a JSON written by count")
        parser.add_argument("--gates", type=Path, default=Path("gates.yaml"))
        args = parser.parse_args()
        if args.command == "_inside":
            shard, shards = map(int, args.shard.split("/"))
            _run_counted(args.dump_dir, shard, shards)
        elif args.command == "count":
            counts = count(args.shards)
            text = json.dumps(counts, indent=2) + "\n"
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(text)
            print(text, end="")
        else:
            from mnistbench.files import read_json
            from mnistbench.gates import verdict

            verdict("instructions", *gate(read_json(args.counts), yaml.safe_load(args.gates.read_text())))

    run()


if __name__ == "__main__":
    main()
