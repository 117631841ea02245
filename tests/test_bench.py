"""The GPU benchmark script must not rot: its CPU dry run works and it refuses to run without a GPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch


def test_gpu_script_dry_run_on_cpu(tmp_path, repo_root):
    out = tmp_path / "dry.json"
    proc = subprocess.run(
        [sys.executable, str(repo_root / "bench" / "gpu_vit_b.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result["summary"]) == {"lora", "lora+ckpt", "decoder"}
    for case in result["cases"]:
        assert case["results"], case["case"]
        for measurement in case["results"]:
            assert measurement["status"] == "ok", (case["case"], measurement)
            assert measurement["images_per_s"] > 0 and math.isfinite(measurement["final_loss"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the no-GPU refusal; a GPU is present")
def test_gpu_script_refuses_to_run_without_a_gpu(tmp_path, repo_root):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "bench" / "gpu_vit_b.py"), "--out", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "GPU" in (proc.stdout + proc.stderr)
