"""scripts/claims_table.py: a run's claim records rendered into a doc's marked block, exactly as the run stored them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from freqlens.analysis.statistics import directional_claim
from freqlens.io import to_jsonable

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "claims_table.py"


def _run(root: Path) -> Path:
    tested = directional_claim("a | b grows", "greater", [1.0, 1.2, 0.9, 1.1], "greater")
    few = directional_claim("c shrinks", "less", [1.0, 2.0], "less")
    root.mkdir(parents=True)
    summary = {"experiment": "x", "scale": "medium", "seed": 0, "runtime_s": 12.5, "claims": [tested, few]}
    summary = to_jsonable(summary)
    (root / "summary.json").write_text(json.dumps(summary))
    return root


def _call(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_block_holds_each_claim_as_stored_and_check_detects_staleness(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- claims-table:t -->\nold\n<!-- /claims-table:t -->\nend\n")
    args = [str(run), "--doc", str(doc), "--marker", "t"]
    assert _call(*args, "--check").returncode == 1
    assert _call(*args).returncode == 0
    text = doc.read_text()
    summary = json.loads((run / "summary.json").read_text())
    tested, few = summary["claims"]
    assert "`x`, scale `medium`, seed 0, 12.5 s" in text
    assert "| a \\| b grows | greater |" in text and f"df = {int(tested['df'])}" in text and "**holds**" in text
    assert tested["verdict"] == "holds" and few["verdict"].startswith("no verdict")
    assert f"**{few['verdict']}**" in text
    assert text.startswith("intro\n") and text.endswith("end\n") and "\nold\n" not in text
    assert _call(*args, "--check").returncode == 0


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("no block\n")
    res = _call(str(tmp_path), "--doc", str(doc), "--marker", "t")
    assert res.returncode == 2 and "summary.json" in res.stderr
    res = _call(str(_run(tmp_path / "run")), "--doc", str(doc), "--marker", "t")
    assert res.returncode == 2 and "has no block" in res.stderr
