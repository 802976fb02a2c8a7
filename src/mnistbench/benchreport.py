"""reports/benchmarks.md from pytest-benchmark JSON files (one per device or machine).

    python -m mnistbench.benchreport reports/benchmarks/*.json --out reports/benchmarks.md

Per device: median time, GFLOP/s, the speed-up against the reference implementation of the
same group, and each kernel's GFLOP/s as a fraction of the sgemm GFLOP/s measured in the same run.
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


def write(paths: list[Path], out: Path) -> None:
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
    write_text(out, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks.md"))
    args = parser.parse_args()
    write(args.json, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
