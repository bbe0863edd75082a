"""Architecture guard: data flows one way, and theory stays importable without torch.

A *unit* is a top-level module or subpackage of ``freqlens`` (``fourier``, ``spectral``, ...) plus
``__init__`` (the package itself) and ``__main__``. Each unit may import itself and exactly the units that
``ALLOWED`` lists for it; ``ALLOWED`` must equal the table in the README's "Layout" section, which this file
parses, so neither can drift from the other.

What counts as an import of unit U, for the layering rule:
* ``import freqlens.U...``, ``from freqlens.U... import x`` and the relative forms (``from ..U import x``);
* ``from freqlens import U`` / ``from .. import U`` when U is a unit; ``from freqlens import NAME`` for any
  other NAME (a re-export such as ``weight_spectra``, or ``__version__``) is an import of ``__init__``;
* wherever the statement sits: module level, inside a function, inside ``if TYPE_CHECKING:``. A
  type-only import is still a dependency of the source, so it obeys the layer order.

The no-torch-in-theory rule asks what *executes*: an import inside a function or under ``if TYPE_CHECKING:``
does not run when a module is imported, so it does not count when following which modules get loaded (but a
theory module may not import torch even inside a function: theory never touches torch). Importing
``freqlens.a.b`` runs ``freqlens/__init__.py`` and ``freqlens/a/__init__.py`` first; the check follows that.

Dynamic imports (``importlib.import_module``) are not seen by the AST walk; the package's lazy re-export
table is checked separately (``test_lazy_reexports_come_from_units_init_may_import``).

The checker is a set of functions over a source root and a README text, so ``test_checker_*`` below can
point it at a throwaway package and show that each kind of violation is caught.
"""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "freqlens"
README = REPO / "README.md"

# (layer, unit, units it may import besides itself), bottom first: the README's "Layout" table.
ALLOWED: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (0, "_validation", ()),
    (0, "_version", ()),
    (1, "fourier", ("_validation",)),
    (1, "io", ("_validation",)),
    (1, "hooks", ("_validation",)),
    (2, "structure", ("_validation", "fourier")),
    (2, "datasets", ("_validation", "fourier")),
    (2, "plots", ("_validation", "io")),
    (3, "spectral", ("_validation", "fourier", "hooks")),
    (4, "models", ("_validation", "fourier", "spectral")),
    (5, "training", ("_validation", "fourier", "io", "hooks", "structure", "spectral", "models")),
    (6, "theory", ("_validation", "fourier")),
    (7, "analysis", ("_validation", "fourier", "io", "hooks", "structure", "datasets", "spectral", "models",
                     "training", "theory")),
    (8, "experiments", ("_validation", "_version", "fourier", "io", "hooks", "structure", "datasets", "plots",
                        "spectral", "models", "training", "theory", "analysis")),
    (9, "sweeps", ("_validation", "io", "experiments")),
    (9, "report", ("_validation", "_version", "fourier", "io", "hooks", "datasets", "spectral", "analysis")),
    (10, "cli", ("_validation", "_version", "io", "datasets", "analysis", "experiments", "sweeps", "report")),
    (11, "__main__", ("cli",)),
    (11, "__init__", ("_version", "fourier", "datasets", "structure", "spectral", "analysis", "sweeps", "report")),
)  # fmt: skip

# Imports that break the table today, each with who fixes it. test_known_violations_are_still_real fails
# once one is fixed, so this list can only shrink.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}

THEORY_TORCH_REASON = (
    "theory imports freqlens.fourier, which imports torch (and freqlens._validation, which imports torch) when "
    "imported; fourier is being made importable without torch on another branch"
)


# ---------------------------------------------------------------------------------------------- the checker


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the package, with where it sits."""

    file: str  # path relative to the package root, e.g. "spectral/weights.py"
    line: int
    module: str  # absolute module the statement loads, e.g. "freqlens.spectral.weights"
    unit: str  # the unit that counts as imported ("__init__" for a re-exported name)
    where: str  # "module" (runs on import), "function" (runs when called) or "type_checking" (never runs)


def parse_readme_table(text: str) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """The (layer, unit, allowed imports) rows of the table in the README's "Layout" section."""
    section = text[text.index("## Layout") :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else len(section)]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    table = next((b for b in blocks if b.startswith("layer")), None)
    assert table is not None, "README Layout section has no table starting with 'layer  unit  may import'"
    layers: list[int] = []
    units: list[str] = []
    deps: list[list[str]] = []
    for line in table.splitlines()[1:]:
        if not line.strip():
            continue
        if line[0].isspace():  # continuation of the previous row's list
            assert deps, f"README table starts with a continuation line: {line!r}"
            deps[-1] += line.split()
            continue
        layer, unit, *listed = line.split()
        layers.append(int(layer))
        units.append(unit)
        deps.append([d for d in listed if d != "-"])
    return tuple((layer, unit, tuple(d)) for layer, unit, d in zip(layers, units, deps))


def readme_tree_units(text: str) -> list[str]:
    """Units in the order the README's Layout tree lists them (``  io.py, hooks.py`` gives io, hooks)."""
    section = text[text.index("## Layout") :]
    tree = re.search(r"```\n(src/\w+/.*?)```", section, re.S)
    assert tree is not None, "README Layout section has no tree starting with src/<package>/"
    units: list[str] = []
    for line in tree.group(1).splitlines()[1:]:
        head = re.match(r"  (\S.*?)(?:\s{2,}|$)", line)
        if head:
            units += [re.sub(r"(\.py|/)$", "", part.strip()) for part in head.group(1).split(",")]
    return units


def table_differences(expected: Iterable[tuple[int, str, tuple[str, ...]]], readme_rows: Iterable[tuple]) -> list[str]:
    """Where the README's table differs from ``expected``: unit order first, then each row."""
    expected, readme_rows = list(expected), list(readme_rows)
    problems = []
    if [r[1] for r in expected] != [r[1] for r in readme_rows]:
        problems.append(f"unit order: tests say {[r[1] for r in expected]}, README says {[r[1] for r in readme_rows]}")
    for mine, theirs in zip(expected, readme_rows):
        if mine[1] == theirs[1] and (mine[0], set(mine[2])) != (theirs[0], set(theirs[2])):
            problems.append(
                f"{mine[1]}: tests say layer {mine[0]} {sorted(mine[2])}, README {theirs[0]} {sorted(theirs[2])}"
            )
    return problems


def table_inconsistencies(rows: Iterable[tuple[int, str, tuple[str, ...]]]) -> list[str]:
    """Rows out of layer order, unknown units, or allowed imports that are not strictly lower."""
    rows = list(rows)
    layer = {unit: lay for lay, unit, _ in rows}
    problems = [f"layers not ascending at {b[1]}" for a, b in itertools.pairwise(rows) if b[0] < a[0]]
    for lay, unit, deps in rows:
        problems += [f"{unit} may import unknown unit {d}" for d in deps if d not in layer]
        problems += [f"{unit} (layer {lay}) may import {d} (layer {layer[d]})" for d in deps if layer.get(d, -1) >= lay]
    return problems


def _module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def unit_of(root: Path, module: str) -> str:
    """The unit a module of the package belongs to: its first component below the package."""
    parts = module.split(".")
    assert parts[0] == root.name, module
    return "__init__" if len(parts) == 1 else parts[1]


@cache
def _parse(text: str) -> ast.Module:
    return ast.parse(text)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with where it sits: "module" (runs on import), "function" or "type_checking"."""

    def visit(node: ast.AST, where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, where
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, "type_checking")
            for child in node.orelse:
                yield from visit(child, where)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and where == "module":
            where = "function"
        for child in ast.iter_child_nodes(node):
            yield from visit(child, where)

    yield from visit(tree, "module")


def _targets(node: ast.Import | ast.ImportFrom, here: str, is_package: bool, modules: Mapping[str, Path]):
    """(absolute module loaded, name imported from it or None) for each alias of one statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    if node.level:
        package = here.split(".") if is_package else here.split(".")[:-1]
        assert node.level - 1 < len(package), f"relative import beyond the package in {here}"
        base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [(f"{base}.{a.name}", None) if f"{base}.{a.name}" in modules else (base, a.name) for a in node.names]


def package_imports(root: Path) -> list[Import]:
    """Every import, inside ``root``'s package, of a module of that package."""
    modules = _modules(root)
    found = []
    for name, path in modules.items():
        tree = _parse(path.read_text())
        for node, where in _statements(tree):
            for module, _attribute in _targets(node, name, path.name == "__init__.py", modules):
                if module.split(".")[0] == root.name:
                    rel = path.relative_to(root).as_posix()
                    found.append(Import(rel, node.lineno, module, unit_of(root, module), where))
    return found


def layering_violations(root: Path, rows: Iterable[tuple[int, str, tuple[str, ...]]]) -> list[tuple[str, str, str]]:
    """(file, imported unit, message) for each import the table does not allow, and each unit without a row."""
    allowed = {unit: set(deps) for _, unit, deps in rows}
    problems = []
    for path in sorted(root.rglob("*.py")):
        unit = unit_of(root, _module_name(root, path))
        if unit not in allowed:
            problems.append((path.relative_to(root).as_posix(), unit, f"unit {unit} has no row in the README table"))
    for imp in package_imports(root):
        unit = unit_of(root, _module_name(root, root / imp.file))
        if imp.unit != unit and imp.unit not in allowed.get(unit, set()):
            problems.append((imp.file, imp.unit, f"{imp.file}:{imp.line} ({unit}) imports {imp.module} ({imp.unit})"))
    return problems


def torch_imports(root: Path, modules: Iterable[str]) -> list[str]:
    """``file:line`` of each ``import torch...`` in the given modules that can run: at import or in a function."""
    paths = _modules(root)
    hits = []
    for name in modules:
        for node, where in _statements(_parse(paths[name].read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = [] if node.level else [node.module or ""]
            if where != "type_checking" and any(n == "torch" or n.startswith("torch.") for n in names):
                hits.append(f"{paths[name].relative_to(root).as_posix()}:{node.lineno}")
    return hits


def import_time_chains(root: Path, start: Iterable[str], stop_at: Iterable[str] = ()) -> list[list[str]]:
    """Chains of modules, from a ``start`` module, along imports that run at import time, ending at torch.

    Loading ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``, so every parent package is followed too; modules in
    ``stop_at`` are not followed, their own imports included (to ask whether anything *else* reaches torch).
    """
    modules = _modules(root)
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {name.rsplit(".", 1)[0]} if "." in name else set()
        for node, where in _statements(_parse(path.read_text())):
            if where != "module":
                continue
            for module, _ in _targets(node, name, path.name == "__init__.py", modules):
                parts = module.split(".")
                targets |= {".".join(parts[: i + 1]) for i in range(len(parts))}
        edges[name] = targets
    chains, parent, queue = [], {s: "" for s in start}, list(start)
    while queue:
        current = queue.pop(0)
        if current in stop_at:
            continue
        for nxt in sorted(edges.get(current, set())):
            if nxt == "torch" or nxt.startswith("torch."):
                chain, node = ["torch"], current
                while node:
                    chain.insert(0, node)
                    node = parent[node]
                chains.append(chain)
            elif nxt in modules and nxt not in parent:
                parent[nxt] = current
                queue.append(nxt)
    return chains


def theory_modules(root: Path) -> list[str]:
    """The modules of unit ``theory`` of the package at ``root``."""
    return [m for m in _modules(root) if unit_of(root, m) == "theory"]


# ---------------------------------------------------------------------------------------------- freqlens


def test_readme_table_is_the_tests_table() -> None:
    text = README.read_text()
    assert table_differences(ALLOWED, parse_readme_table(text)) == []
    assert readme_tree_units(text) == [r[1] for r in ALLOWED], "README Layout tree lists the units in another order"


def test_table_is_a_layered_order() -> None:
    assert table_inconsistencies(ALLOWED) == []


def test_imports_respect_the_table() -> None:
    found = layering_violations(SRC, ALLOWED)
    unexpected = [msg for file, unit, msg in found if (file, unit) not in KNOWN_VIOLATIONS]
    assert not unexpected, "imports the README Layout table does not allow:\n" + "\n".join(unexpected)


def test_known_violations_are_still_real() -> None:
    found = {(file, unit) for file, unit, _ in layering_violations(SRC, ALLOWED)}
    assert set(KNOWN_VIOLATIONS) <= found, f"fixed, remove from KNOWN_VIOLATIONS: {set(KNOWN_VIOLATIONS) - found}"


def test_theory_modules_never_import_torch() -> None:
    assert torch_imports(SRC, theory_modules(SRC)) == []


def test_theory_reaches_torch_only_through_fourier() -> None:
    assert import_time_chains(SRC, theory_modules(SRC), stop_at=["freqlens.fourier"]) == []


@cache
def _only_fourier_pulls_torch() -> bool:
    chains = import_time_chains(SRC, theory_modules(SRC))
    return bool(chains) and all("freqlens.fourier" in chain for chain in chains)


@pytest.mark.xfail(condition=_only_fourier_pulls_torch(), reason=THEORY_TORCH_REASON, strict=True)
def test_theory_loads_no_torch_at_import_by_source() -> None:
    chains = import_time_chains(SRC, theory_modules(SRC))
    assert not chains, "importing theory loads torch: " + "; ".join(" -> ".join(c) for c in chains)


@pytest.mark.xfail(condition=_only_fourier_pulls_torch(), reason=THEORY_TORCH_REASON, strict=True)
def test_theory_loads_no_torch_at_import_in_a_fresh_interpreter() -> None:
    code = "import freqlens.theory, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_import_freqlens_loads_no_torch_and_keeps_its_names() -> None:
    code = textwrap.dedent(
        """
        import sys, freqlens
        assert 'torch' not in sys.modules, 'import freqlens imported torch'
        assert set(freqlens.__all__) <= set(dir(freqlens)), 'dir() lacks public names'
        assert {'spectral', 'theory', 'analysis', 'structure', 'hooks'} <= set(dir(freqlens))
        print(freqlens.__version__)
        assert callable(freqlens.weight_spectra) and 'torch' in sys.modules
        assert freqlens.spectral.weights.weight_spectra is freqlens.weight_spectra
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    from importlib.metadata import version

    assert result.stdout.strip() == version("freqlens")


def test_lazy_reexports_come_from_units_init_may_import() -> None:
    # importlib.import_module calls are invisible to the AST walk: the lazy table is checked here instead.
    import freqlens

    lazy_units = {submodule.split(".")[0] for submodule, _ in freqlens._LAZY.values()}  # the unit of a submodule
    allowed_for_init = next(deps for _, unit, deps in ALLOWED if unit == "__init__")
    assert lazy_units <= set(allowed_for_init), sorted(lazy_units - set(allowed_for_init))


def test_all_names_resolve_to_the_same_objects_as_the_submodules() -> None:
    import freqlens
    from freqlens import analysis, report, spectral, structure, sweeps
    from freqlens.analysis import first_layer_energy, frequency_use

    owners = (analysis, first_layer_energy, frequency_use, spectral, structure, report, sweeps)
    expected = {"__version__", "datasets", "fourier"}
    expected |= {n for m in owners for n in m.__all__ if n in freqlens.__all__}
    assert set(freqlens.__all__) == expected
    for name in freqlens.__all__:
        value = getattr(freqlens, name)
        owner = next((m for m in owners if name in m.__all__), None)
        assert owner is None or getattr(owner, name) is value, name
    with pytest.raises(AttributeError, match="no attribute 'weight_spectrum'"):
        _ = freqlens.weight_spectrum  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- the checker itself

# One module per unit of ALLOWED, each importing what its row allows: a package the checker must pass.
CLEAN_PACKAGE = {
    "_validation.py": "",
    "_version.py": "__version__ = '0'\n",
    "fourier.py": "import torch\nfrom ._validation import *\n",
    "io.py": "from . import _validation\n",
    "hooks.py": "",
    "structure.py": "from .fourier import *\n",
    "datasets/__init__.py": "from .synthetic import *\n",
    "datasets/synthetic.py": "from .._validation import *\n",
    "plots.py": "from freqlens.io import *\n",
    "spectral/__init__.py": "from . import weights\n",
    "spectral/weights.py": "from ..hooks import *\n",
    "models.py": "from .spectral.weights import *\n",
    "training.py": "import freqlens.models\n",
    "theory/__init__.py": "from . import bottleneck\n",
    "theory/bottleneck.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
    "analysis.py": "from .theory import bottleneck\n",
    "experiments/__init__.py": "from .. import experiments\nfrom .._version import __version__\n",
    "sweeps.py": "from freqlens import experiments\n",
    "cli.py": "def main():\n    from .sweeps import x\n",
    "__main__.py": "from .cli import main\n",
    "__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .spectral import weights\n",
}


def _readme(rows: Iterable[tuple[int, str, tuple[str, ...]]]) -> str:
    lines = [f"{layer:<6} {unit:<13} {' '.join(deps) or '-'}" for layer, unit, deps in rows]
    tree = "\n".join(f"  {unit}.py    text" for _, unit, _ in rows)
    return f"# pkg\n\n## Layout\n\n```\nsrc/freqlens/\n{tree}\n```\n\n```\nlayer  unit  may import\n" + (
        "\n".join(lines) + "\n```\n\n## Next\n"
    )


def _package(tmp_path: Path, **changes: str) -> Path:
    root = tmp_path / "src" / "freqlens"
    for rel, text in {**CLEAN_PACKAGE, **changes}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _messages(root: Path) -> list[str]:
    return [msg for _, _, msg in layering_violations(root, ALLOWED)]


def test_checker_passes_a_clean_package(tmp_path: Path) -> None:
    root = _package(tmp_path)
    assert _messages(root) == []
    assert table_differences(ALLOWED, parse_readme_table(_readme(ALLOWED))) == []
    assert readme_tree_units(_readme(ALLOWED)) == [r[1] for r in ALLOWED]
    assert torch_imports(root, theory_modules(root)) == []
    assert import_time_chains(root, theory_modules(root)) == []


def test_checker_catches_theory_importing_models(tmp_path: Path) -> None:
    root = _package(tmp_path, **{"theory/bottleneck.py": "import numpy\nfrom ..models import *\n"})
    assert _messages(root) == ["theory/bottleneck.py:2 (theory) imports freqlens.models (models)"]
    # models -> spectral -> hooks is torch-free here, so only the layering rule fires; with torch behind it:
    root = _package(
        tmp_path / "b", **{"theory/bottleneck.py": "from ..models import *\n", "hooks.py": "import torch\n"}
    )
    assert import_time_chains(root, theory_modules(root))[0][-2:] == ["freqlens.hooks", "torch"]


@pytest.mark.parametrize(
    "statement",
    [
        "from freqlens import experiments\n",
        "from .. import experiments\n",
        "import freqlens.experiments\n",
        "def f():\n    from freqlens.experiments import run\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..experiments import Experiment\n",
    ],
    ids=["absolute-from-package", "relative-from-package", "import", "inside-function", "type-checking"],
)
def test_checker_catches_a_lower_unit_importing_experiments(tmp_path: Path, statement: str) -> None:
    root = _package(tmp_path, **{"spectral/weights.py": statement})
    found = layering_violations(root, ALLOWED)
    assert [(file, unit) for file, unit, _ in found] == [("spectral/weights.py", "experiments")]


def test_checker_counts_a_reexported_name_as_init(tmp_path: Path) -> None:
    root = _package(tmp_path, **{"models.py": "from freqlens import weight_spectra\n"})
    assert _messages(root) == ["models.py:1 (models) imports freqlens (__init__)"]


def test_checker_catches_datasets_importing_plots(tmp_path: Path) -> None:
    root = _package(tmp_path, **{"datasets/synthetic.py": "from ..plots import show_image\n"})
    assert _messages(root) == ["datasets/synthetic.py:1 (datasets) imports freqlens.plots (plots)"]


def test_checker_catches_a_unit_without_a_row(tmp_path: Path) -> None:
    root = _package(tmp_path, **{"rules.py": ""})
    assert _messages(root) == ["unit rules has no row in the README table"]


def test_checker_catches_a_readme_order_different_from_the_tests(tmp_path: Path) -> None:
    swapped = list(ALLOWED)
    swapped[5], swapped[6] = swapped[6], swapped[5]  # datasets before structure
    readme = _readme(swapped)
    problems = table_differences(ALLOWED, parse_readme_table(readme))
    assert len(problems) == 1 and problems[0].startswith("unit order:")
    assert readme_tree_units(readme) != [r[1] for r in ALLOWED]
    widened = [(lay, unit, (*deps, "plots") if unit == "datasets" else deps) for lay, unit, deps in ALLOWED]
    assert table_differences(ALLOWED, parse_readme_table(_readme(widened))) == [
        "datasets: tests say layer 2 ['_validation', 'fourier'], README 2 ['_validation', 'fourier', 'plots']"
    ]
    assert table_inconsistencies(widened) == ["datasets (layer 2) may import plots (layer 2)"]


def test_checker_follows_torch_through_parent_packages(tmp_path: Path) -> None:
    root = _package(tmp_path, **{"__init__.py": "from .spectral import weights\n", "hooks.py": "import torch\n"})
    chains = import_time_chains(root, theory_modules(root))
    assert chains and chains[0][:2] == ["freqlens.theory", "freqlens"] and chains[0][-2:] == ["freqlens.hooks", "torch"]


def test_checker_catches_torch_in_a_theory_function(tmp_path: Path) -> None:
    root = _package(tmp_path, **{"theory/bottleneck.py": "def f():\n    import torch.linalg\n"})
    assert torch_imports(root, theory_modules(root)) == ["theory/bottleneck.py:2"]
    assert import_time_chains(root, theory_modules(root)) == []  # it would only load torch when f runs
