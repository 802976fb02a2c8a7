"""reports/benchmarks.md from pytest-benchmark JSON files (one per device or machine), and the instruction
counts' history (one JSON per commit, `python -m mnistbench.instructions count`).

    python -m mnistbench.benchreport reports/benchmarks/*.json --out reports/benchmarks.md

Per device: median time, GFLOP/s, the speed-up against the reference implementation of the
same group, and each kernel's GFLOP/s as a fraction of the sgemm GFLOP/s measured in the same run.
Per counted benchmark: its instruction count at each commit of the history (in git's order), beside the
median time of the same computation where a timing file has it, a chart, and every commit where a count
rose by more than the instruction gate's tolerance over the commit before (asv's step detection, on counts).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mnistbench.files import write_text
from mnistbench.tables import sprint_result

REFERENCE_IMPL = {"conv": "im2col", "attention": "naive", "data": "notebook", "write-up CNN": "notebook"}  # by group prefix


def load(path: Path) -> tuple[dict, list[dict]]:
    blob = json.loads(path.read_text())
    rows = []
    for bench in blob["benchmarks"]:
        info = bench.get("extra_info", {})
        rows.append({
            "group": bench.get("group") or bench["name"],
            "impl": info.get("impl", bench["name"]),
            "device": info.get("device", "cpu"),
            "median_s": bench["stats"]["median"],
            "gflops": info.get("gflops_per_s"),
            "images_per_s": info.get("images_per_s"),
        })
    return blob, rows


def machine_lines(blob: dict, path: Path) -> list[str]:
    m = blob.get("machine_info", {})
    cpu = m.get("cpu", {})
    extra = m.get("mnistbench", {})
    return [
        f"- Source: `{path.name}`, {blob.get('datetime', '?')}, commit {blob.get('commit_info', {}).get('id', '?')}",
        f"- CPU: {cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} logical cores, torch CPU capability "
        f"{extra.get('cpu_capability', '?')}, native bf16 {_yes(extra.get('cpu_native_bf16'))}; torch threads "
        f"{extra.get('threads', '?')}",
        f"- GPU: {extra.get('gpu', 'none')}" + (f", native bf16 {_yes(extra.get('gpu_native_bf16'))}"
                                                  if extra.get("gpu", "none") != "none" else "")
        + f"; torch {extra.get('torch', '?')}, CUDA {extra.get('cuda', 'none')}, Python {m.get('python_version', '?')}",
    ]


def _yes(flag) -> str:
    return "?" if flag is None else "yes" if flag else "no"


def _fmt(x, digits=2):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def device_table(rows: list[dict]) -> list[str]:
    sgemm = next((r["gflops"] for r in rows if r["group"] == "sgemm"), None)
    by_group: dict[str, list[dict]] = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(r)
    lines = ["| group | implementation | median (ms) | GFLOP/s | speed-up vs reference | fraction of sgemm |",
             "|---|---|---|---|---|---|"]
    for group, members in by_group.items():
        ref_impl = next((v for k, v in REFERENCE_IMPL.items() if group.startswith(k)), None)
        ref = next((m for m in members if m["impl"] == ref_impl), None)
        for r in sorted(members, key=lambda m: m["median_s"]):
            speedup = ref["median_s"] / r["median_s"] if ref else None
            frac = r["gflops"] / sgemm if sgemm and r["gflops"] and not math.isnan(r["gflops"]) else None
            extra = f" ({_fmt(r['images_per_s'], 0)} images/s)" if r.get("images_per_s") else ""
            lines.append(f"| {group} | {r['impl']}{' (reference)' if r is ref else ''}{extra} | "
                         f"{_fmt(1e3 * r['median_s'], 3)} | {_fmt(r['gflops'])} | {_fmt(speedup)} | "
                         f"{'-' if frac is None else f'{100 * frac:.1f}%'} |")
    return lines


def pipeline_section(blob: dict, path: Path) -> list[str]:
    """The default pipeline as `make gpu-check` ran it on one device."""
    p = blob["pipeline"]
    lines = [f"## {blob['device']}: the default pipeline (`{path.name}`, `make gpu-check`)", "",
             f"- Status: {p['status']}; `dvc repro` wall time {p.get('seconds', float('nan')):.1f} s"
             f" ({p.get('profile', '?')} profile); benchmarks: {blob['benchmarks']['status']}"]
    runs = p.get("runs", {})
    if runs:
        env = next(iter(runs.values()))["environment"]
        lines += [f"- Machine: {env.get('device_name', '?')}, sgemm {env.get('sgemm_gflops', float('nan')):,.0f} GFLOP/s,"
                  f" torch {env.get('torch', '?')}", "",
                  "| run | precision | test accuracy (%) | training (s) | training + validation (s) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {name} | {r['precision']} | {100 * r['test_accuracy']:.2f} | {r['train_seconds']:.1f} | "
                  f"{r['wall_seconds']:.1f} |" for name, r in runs.items()]
    for name, r in p.get("time_to_accuracy", {}).items():
        lines.append(f"- Time to accuracy, {name} ({r['precision']}) to {r['threshold']:.2%} valid: "
                     f"{sprint_result(r, digits=2)}; {r['reached_on_valid']} reached, "
                     f"{r['confirmed_on_test']} confirmed on test")
    return lines + [""]


COUNTS = Path("reports/benchmarks/counts")  # one JSON per commit (and machine), written by .ci/run


def commit_order() -> dict[str, int]:
    """Each commit of HEAD's history (full and 12-digit ids) -> its position, oldest first."""
    import subprocess

    listed = subprocess.run(["git", "rev-list", "--reverse", "HEAD"], capture_output=True, text=True).stdout.split()
    return {key: i for i, c in enumerate(listed) for key in (c, c[:12])}


# The timed computation that a counted one is, by the count's name: (pytest-benchmark group, implementation).
def timed_as(counted: str) -> tuple[str, str] | None:
    if counted.startswith("training step "):
        return "training step, batch 32", counted.removeprefix("training step ").split(",")[0]
    if counted.startswith("kernel conv"):
        return f"conv {counted.split()[1]} batch 32", "conv2d_channels_last"
    return None


def count_history(folder: Path, tolerance: float, times: dict[tuple[str, str], tuple[float, str]] | None = None
                  ) -> tuple[list[str], list[tuple[str, list[tuple[str, int]]]]]:
    """(markdown lines, [(benchmark, [(commit, count), ...])]) over the count files in `folder`; beside each
    count, the median time of the same computation where `times` ({(group, impl): (seconds, file)}) has it."""
    times = times or {}
    files = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    if not files:
        return [], []
    order = commit_order()
    files.sort(key=lambda f: order.get(f["machine"]["git_commit"][:12], len(order)))
    series: list[tuple[str, list[tuple[str, int]]]] = []
    lines = ["## Instruction counts per commit (`python -m mnistbench.instructions count`)", "",
             f"Each under valgrind's callgrind, one thread, fp32, per call (mean of {files[0]['repeats']}); "
             f"the CI gate allows ±{100 * tolerance:.0f}% (gates.yaml `instructions`). Machine: "
             f"{files[-1]['machine']['cpu']}, {files[-1]['machine']['valgrind']}.", ""]
    commits = [f["machine"]["git_commit"][:12] for f in files]
    lines += ["| benchmark | " + " | ".join(commits) + " | median time (ms), 2 threads |",
              "|---|" + "---|" * len(commits) + "---|"]
    steps = []
    for name in files[-1]["instructions"]:
        points = [(f["machine"]["git_commit"][:12], f["instructions"][name]) for f in files if name in f["instructions"]]
        series.append((name, points))
        timed = times.get(timed_as(name))
        lines.append(f"| {name} | " + " | ".join(f"{f['instructions'][name]:,}" if name in f["instructions"] else "-"
                                                  for f in files)
                     + f" | {f'{1e3 * timed[0]:.3f} (`{timed[1]}`)' if timed else '-'} |")
        for (before, a), (after, b) in zip(points, points[1:]):
            if b > a * (1 + tolerance):
                steps.append(f"- {name}: +{100 * (b / a - 1):.1f}% at {after} ({a:,} -> {b:,}, after {before})")
    lines += ["", *(steps or [f"No count rose by more than {100 * tolerance:.0f}% from one commit to the next "
                              f"({len(files)} commit(s) counted)."]), ""]
    return lines, series


def plot_history(series: list[tuple[str, list[tuple[str, int]]]], tolerance: float, out: Path) -> None:
    """Each benchmark's count across commits, in percent of its first, against the gate's band: a step shows as
    a line leaving the band; run-to-run noise stays a flat line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    band = 100 * tolerance
    ax.axhspan(-band, band, color="0.92", label=f"the gate's tolerance (±{band:.0f}%)")
    worst = band
    for name, points in series:
        change = [100 * (c / points[0][1] - 1) for _, c in points]
        worst = max(worst, *map(abs, change))
        ax.plot(range(len(points)), change, marker="o", label=name)
    commits = [c for c, _ in max((p for _, p in series), key=len)]
    ax.set_xticks(range(len(commits)), commits, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(-2 * worst, 2 * worst)
    ax.set_ylabel("instructions, % change from the first commit")
    ax.set_title("Instruction count per commit (callgrind, one thread)")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write(paths: list[Path], out: Path, counts: Path = COUNTS, tolerance: float = 0.03) -> None:
    lines = ["# Kernel and training-speed benchmarks", "",
             "Generated by `python -m mnistbench.benchreport` from pytest-benchmark JSON (`make bench`);",
             "do not edit by hand. Median of the rounds; GFLOP/s from the FLOPs each benchmark records.", ""]
    for path in paths:
        if "pipeline" in json.loads(path.read_text()):
            continue
        blob, rows = load(path)
        for device in sorted({r["device"] for r in rows}):
            lines += [f"## {device}: {path.stem}", "", *machine_lines(blob, path), "",
                      *device_table([r for r in rows if r["device"] == device]), ""]
    for path in paths:
        blob = json.loads(path.read_text())
        if "pipeline" in blob:
            lines += pipeline_section(blob, path)
    times = {}
    for path in paths:
        if "pipeline" not in json.loads(path.read_text()):
            for r in load(path)[1]:
                times.setdefault((r["group"], r["impl"]), (r["median_s"], path.name))
    history, series = count_history(counts, tolerance, times)
    if series:
        chart = out.parent / "benchmarks" / "instruction_counts.png"
        plot_history(series, tolerance, chart)
        lines += [*history, f"![instruction counts per commit]({chart.relative_to(out.parent).as_posix()})", ""]
    write_text(out, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks.md"))
    parser.add_argument("--counts", type=Path, default=COUNTS, help="the instruction counts' history folder")
    parser.add_argument("--gates", type=Path, default=Path("gates.yaml"))
    args = parser.parse_args()
    import yaml

    tolerance = yaml.safe_load(args.gates.read_text())["instructions"]["tolerance"]
    write(args.json, args.out, args.counts, tolerance)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
