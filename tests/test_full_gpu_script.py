"""scripts/full_gpu.sh (issue 12 item 6): its plumbing on the CPU (concurrent runs, one timing row each, exit
status); the GPU run itself needs a CUDA machine and is not part of the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "full_gpu.sh"
TINY = ["--set adam_steps=3", "--set gd_steps=0", "--set record_every=1", "--set n_train=8", "--set width=2",
        "--set depths=2,3", "--set c9_inputs=1", "--set n=4", "--set batch_size=8"]  # fmt: skip


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_runs_every_experiment_concurrently_and_writes_one_timing_row_each(tmp_path: Path) -> None:
    freqlens = Path(sys.executable).with_name("freqlens")
    if not freqlens.is_file():
        pytest.skip(f"the freqlens console script is not installed beside {sys.executable}")
    env = {**os.environ, "FULL_GPU_DEVICE": "cpu", "FULL_GPU_SCALE": "quick", "FREQLENS": str(freqlens),
           "FULL_GPU_EXPERIMENTS": "cbn-depth cbn-nonexistent", "FULL_GPU_ARGS": " ".join(TINY),
           "PATH": f"{freqlens.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr  # the unknown experiment fails, and the script says so
    rows = [line.split("\t") for line in (tmp_path / "full_gpu_times.tsv").read_text().splitlines()]
    assert rows[0] == ["experiment", "wall_s", "exit"]
    assert [r[0] for r in rows[1:]] == ["cbn-depth", "cbn-nonexistent"]
    assert rows[1][2] == "0" and rows[2][2] != "0" and int(rows[1][1]) >= 0
    assert (tmp_path / "cbn-depth" / "summary.json").is_file()
