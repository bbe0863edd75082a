"""scripts/sweep_table.py: a sweep folder rendered into a doc's marked block, unfinished cells shown as such."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sweep_table.py"


def _sweep(root: Path) -> Path:
    cells = []
    for i, (lr, status) in enumerate([(0.1, "finished"), (0.2, "pending")]):
        path = f"cells/lr={lr}__seed=0"
        (root / path).mkdir(parents=True)
        if status == "finished":
            summary = {"measured": {"loss": {"min": 0.123456789, "at": 2000.0}}, "claims": [{"verdict": "holds"}]}
            (root / path / "summary.json").write_text(json.dumps(summary))
        cells.append({"id": str(i), "values": {"lr": lr}, "seed": 0, "path": path, "status": status})
    manifest = {"experiment": "x", "scale": "full", "grid": {"lr": [0.1, 0.2]}, "seeds": [0],
                "counts": {"finished": 1, "pending": 1}, "cells": cells}  # fmt: skip
    (root / "sweep.json").write_text(json.dumps(manifest))
    return root


def _call(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_block_is_rewritten_from_the_cells_and_check_detects_staleness(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep")
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- sweep-table:t -->\nold\n<!-- /sweep-table:t -->\nend\n")
    cols = ["--column", "lr (a = b)=values.lr", "--column", "min=measured.loss.min"]
    cols += ["--column", "verdict=claims.0.verdict", "--column", "at=measured.loss.at"]
    args = [str(sweep), "--doc", str(doc), "--marker", "t", *cols]
    assert _call(*args, "--check").returncode == 1  # stale before
    assert _call(*args).returncode == 0
    text = doc.read_text()
    assert "| 0.1 | 0.1235 | holds | 2000 |" in text and "| 0.2 | (pending) | (pending) | (pending) |" in text
    assert "| lr (a = b) | min |" in text
    assert "cells 1 finished, 1 pending" in text and text.startswith("intro\n") and text.endswith("end\n")
    assert _call(*args, "--check").returncode == 0  # fresh after


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("no block\n")
    res = _call(str(tmp_path), "--doc", str(doc), "--marker", "t", "--column", "a=b")
    assert res.returncode == 2 and "sweep.json" in res.stderr
    sweep = _sweep(tmp_path / "sweep")
    res = _call(str(sweep), "--doc", str(doc), "--marker", "t", "--column", "a=b")
    assert res.returncode == 2 and "has no block" in res.stderr
    res = _call(str(sweep), "--doc", str(doc), "--marker", "t", "--column", "nolabel")
    assert res.returncode == 2 and "LABEL=PATH" in res.stderr


def test_several_sweeps_make_one_table(tmp_path: Path) -> None:
    first, second = _sweep(tmp_path / "a"), _sweep(tmp_path / "b")
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- sweep-table:t -->\n<!-- /sweep-table:t -->\n")
    args = [str(first), str(second), "--doc", str(doc), "--marker", "t", "--column", "lr=values.lr"]
    assert _call(*args).returncode == 0
    text = doc.read_text()
    assert text.count("| 0.1 |") == 2 and text.count("| 0.2 |") == 2 and text.count("cells 1 finished") == 2
