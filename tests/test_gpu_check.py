"""`make gpu-check`'s steps, run on CPU with the tiny profile: what can be checked without a GPU."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_module
from mnistbench import benchreport, gpu_check




@pytest.mark.slow
def test_gpu_check_steps_on_cpu(tmp_path, mnist_dir):
    out = tmp_path / "reports"
    env = {**os.environ, "MNIST_DIR": str(mnist_dir)}
    done = subprocess.run([sys.executable, "-m", "mnistbench.gpu_check", "--device", "cpu", "--tiny", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    slug = gpu_check.device_slug("cpu")
    bench = json.loads((out / "benchmarks" / f"{slug}.json").read_text())
    assert [b["group"] for b in bench["benchmarks"]] == ["sgemm"]
    assert bench["machine_info"]["mnistbench"]["cpu_capability"]
    result = json.loads((out / "benchmarks" / f"{slug}-pipeline.json").read_text())
    assert result["pipeline"]["status"] == "passed" and list(result["pipeline"]["runs"]) == ["mlp-0"]
    run = result["pipeline"]["runs"]["mlp-0"]
    assert run["precision"] == "fp32" and 0.1 < run["test_accuracy"] <= 1 and run["environment"]["device"] == "cpu"
    report = (out / "benchmarks.md").read_text()
    assert "the default pipeline" in report and "| mlp-0 | fp32 |" in report and "## cpu: " in report
    assert not (ROOT / "reports" / "benchmarks" / f"{slug}-pipeline.json").exists()  # the project's own stay as they are


def test_gpu_check_refuses_a_machine_without_cuda(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    done = run_module("mnistbench.gpu_check", "--out", tmp_path, cwd=ROOT)
    assert done.returncode == 1 and "torch sees no CUDA device" in done.stderr and not list(tmp_path.iterdir())


def test_benchmark_report_reads_machine_and_pipeline_files(tmp_path):
    bench = {"machine_info": {"cpu": {"brand_raw": "AMD EPYC", "count": 2},
                              "mnistbench": {"cpu_capability": "AVX2", "cpu_native_bf16": False, "threads": 2,
                                             "gpu": "none"}},
             "benchmarks": [{"name": "test_sgemm[cpu]", "group": "sgemm", "stats": {"median": 0.025},
                             "extra_info": {"impl": "torch.matmul", "device": "cpu", "gflops_per_s": 85.9}}]}
    (tmp_path / "cpu.json").write_text(json.dumps(bench))
    (tmp_path / "cpu-pipeline.json").write_text(json.dumps({"device": "cpu", "benchmarks": {"status": "passed"},
                                                            "pipeline": {"status": "timed out after 360 s"}}))
    benchreport.write([tmp_path / "cpu.json", tmp_path / "cpu-pipeline.json"], tmp_path / "out.md")
    text = (tmp_path / "out.md").read_text()
    assert "torch CPU capability AVX2, native bf16 no" in text and "| sgemm | torch.matmul | 25.000 | 85.90 |" in text
    assert "Status: timed out after 360 s" in text
