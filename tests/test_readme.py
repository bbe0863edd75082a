"""The README's promises: its Python quick-start runs, and its two commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_first_lines_are_the_two_commands() -> None:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block is not None and README.index("```bash") < 40
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text().splitlines()[-1]


def test_quick_start_runs() -> None:
    section = README[README.index("## Quick start") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    exec(compile(code.group(1), "README quick start", "exec"), {})


def test_every_registered_experiment_is_listed() -> None:
    from freqlens.experiments.registry import all_experiments

    missing = [e.name for e in all_experiments() if f"`{e.name}`" not in README]
    assert not missing, f"README figure table lacks {missing}"
