"""Architecture guard: data flows one way. A unit may import only units of a lower (or its own) layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "freqlens"

# Lower number = lower layer (see README "Layout" and DESIGN.md).
LAYER = {
    "_validation": 0,
    "fourier": 1,
    "io": 1,
    "hooks": 1,
    "structure": 2,
    "datasets": 2,
    "plots": 2,
    "spectral": 3,
    "models": 4,
    "training": 5,
    "theory": 6,
    "analysis": 7,
    "experiments": 8,
    "report": 8,
    "cli": 9,
    "__init__": 9,
}


def _unit(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path: Path) -> set[str]:
    pkg = list(path.relative_to(SRC).parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                target = [p for p in [*base, *(node.module or "").split(".")] if p]
                found.update([target[0]] if target else [a.name for a in node.names])
            elif node.module and node.module.startswith("freqlens."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("freqlens."))
    return found


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_respect_layers(path: Path) -> None:
    unit = _unit(path)
    assert unit in LAYER, f"{unit} has no layer: add it to LAYER in tests/test_layering.py"
    for other in _imported_units(path) - {unit, "__version__"}:
        assert other in LAYER, f"{path.name} imports unknown unit {other}"
        assert LAYER[other] <= LAYER[unit], f"{path.relative_to(SRC)} ({unit}) imports higher layer {other}"


def test_theory_is_numpy_only() -> None:
    for path in (SRC / "theory").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{path.name} imports torch"
