"""benchmarks/cbn_training.py's gradient check: kink-matched errors small, ReLU crossings counted, torch.relu
restored; one line per config on a small batch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import freqlens.models.circular_cnn as cc
from freqlens.models.circular_cnn import CircularCNN

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cbn_training.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("cbn_training_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_gradient_errors_are_kink_matched_and_restore_relu(monkeypatch) -> None:
    monkeypatch.setattr(cc, "_DENSE_MAX_ENTRIES", 0)
    monkeypatch.setattr(cc, "_FFT_MIN_TAPS", 1)
    bench = _benchmark()
    relu = torch.relu
    net = CircularCNN(2, 6, 2, 5, 8, downsample_at=(2,), generator=torch.Generator().manual_seed(0))
    assert net.uses_fused()
    errors = bench.gradient_errors(net, torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(1)))
    assert torch.relu is relu
    assert set(errors) == {"new", "today"}
    for matched, plain, crossed in errors.values():
        assert matched < 1e-5 and crossed >= 0
        assert crossed > 0 or matched == pytest.approx(plain, rel=1e-6)  # no crossing: the same reference


def test_one_line_per_config_with_the_speed_up(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--configs", "depth", "--batch", "4", "--repeats", "1", "--conv2d-batch", "2"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert "sgemm" in lines[0] and "copy" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("depth: batch 4") and lines[1].rstrip().endswith("x")
    assert "speed-up" in lines[1] and "kink-matched" in lines[1] and "activation traffic" in lines[1]
