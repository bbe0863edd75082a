"""Seeds x settings of one experiment, each cell an ordinary run directory, on a launcher of the user's choice.

``out/`` holds ``cells/<cell>/`` (the run directory of one cell: ``config.json``, ``data.npz``,
``summary.json``, figures, exactly as ``freqlens reproduce``), ``sweep.json`` (the manifest: grid, seeds and
every cell with its values, fingerprint, status and error), ``sweep.csv`` (+ ``sweep.parquet`` with pyarrow;
the tidy table of :mod:`.table`) and ``sweep_<key>.png/pdf`` (:mod:`.plot`).

Resumable and idempotent: a cell whose run directory holds a finished run with the planned fingerprint
(:func:`freqlens.experiments.runner.finished_fingerprint`) is never run again; an interrupted cell resumes from
its finished stages; a failed cell is recorded with its error and the others go on. The manifest is rewritten
atomically after every finished cell, so a killed sweep leaves it consistent.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..experiments.cells import available_cores, check_workers
from ..experiments.runner import check_seed, finished_fingerprint, plan_run, run_experiment
from ..io import RunDirectory, read_json, to_jsonable, write_json
from .launchers import LAUNCHERS, launch_local, launch_ray, launch_slurm, require
from .plot import plot_sweep
from .table import NOT_HEADLINES, cell_value, flatten_numbers, table_arrays, to_dataframe, write_table

__all__ = ["CellSpec", "parse_grid_values", "parse_seeds", "read_manifest", "run_cell", "sweep"]

MANIFEST = "sweep.json"
TABLE = "sweep"


@dataclass(frozen=True)
class CellSpec:
    """What a worker needs to run one cell (picklable; plumbing)."""

    experiment: str
    cell_id: str
    values: dict[str, Any]
    seed: int
    scale: str
    device: str
    data_dir: str | None
    overrides: dict[str, Any]
    run_path: str
    threads: int
    fingerprint: str = ""


def run_cell(spec: CellSpec) -> str:
    """Run one cell into its run directory; return the fingerprint it published (plumbing)."""
    path = run_experiment(
        spec.experiment,
        scale=spec.scale,
        seed=spec.seed,
        device=spec.device,
        data_dir=spec.data_dir,
        overrides=spec.overrides,
        show_progress=False,
        run_path=spec.run_path,
        threads=spec.threads,
    )
    published = finished_fingerprint(path)
    if published != spec.fingerprint:
        raise RuntimeError(f"cell {spec.cell_id} published fingerprint {published}, planned {spec.fingerprint}")
    return published


# ------------------------------------------------------------------------------------------ arguments
def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets/parentheses/quotes: ``"(1,2),(3,4)"`` -> ``["(1,2)", "(3,4)"]``."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_grid_values(text: str) -> tuple[str, list[Any]]:
    """``"KEY=V1,V2,..."`` -> ``(KEY, [V1, V2, ...])``; each value a Python literal if it parses, else a string
    (plumbing)."""
    import ast

    if "=" not in text:
        raise ValueError(f"--grid expects KEY=V1,V2,..., got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    values: list[Any] = []
    for part in _split_top_level(raw):
        if not part:
            raise ValueError(f"--grid {key}: empty value in {raw!r}")
        try:
            values.append(ast.literal_eval(part))
        except (ValueError, SyntaxError):
            values.append({"true": True, "false": False, "none": None}.get(part.lower(), part))
    return key, values


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` (inclusive range), ``"0,3,7"``, ``"5"`` (the one seed 5), or a mix (``"0-2,10"``) (plumbing)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"--seeds: range {part!r} ends before it starts")
            seeds += range(lo, hi + 1)
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise ValueError(f"--seeds expects ranges and integers like 0-9 or 0,3,7, got {text!r}")
    return seeds


def _check_grid(grid: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """The grid as ``{key: [values]}``, each list non-empty without repeats (plumbing)."""
    if grid is None:
        return {}
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a mapping of config keys to lists of values, got {type(grid).__name__}")
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise TypeError(f"grid[{key!r}] must be a list of values, got {values!r}")
        values = list(values)
        if not values:
            raise ValueError(f"grid[{key!r}] is empty; give at least one value")
        if len({json.dumps(to_jsonable(v), sort_keys=True) for v in values}) != len(values):
            raise ValueError(f"grid[{key!r}] repeats a value: {values!r}")
        out[str(key)] = values
    return out


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    """The seeds as a non-empty list of distinct valid seeds (plumbing)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        raise TypeError(f"seeds must be an iterable of integers such as range({seeds}), got the integer {seeds}")
    out = [check_seed(s) for s in seeds]
    if not out:
        raise ValueError("seeds is empty; give at least one seed")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds repeats a seed: {out}")
    return out


def _cell_id(values: Mapping[str, Any], seed: int) -> str:
    """The folder name of a cell: ``key=value__...__seed=S`` with unsafe characters replaced (plumbing)."""
    parts = [f"{k}={json.dumps(to_jsonable(v), separators=(',', ':'))}" for k, v in values.items()]
    text = "__".join([*parts, f"seed={seed}"])
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")


# ------------------------------------------------------------------------------------------ the sweep
@dataclass
class _Cell:
    """A planned cell and its status in this call (plumbing)."""
    spec: CellSpec
    status: str = "pending"
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sweep(
    experiment: str,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: Iterable[int] = range(3),
    *,
    scale: str | None = None,
    quick: bool = False,
    out: str | Path = "sweeps",
    launcher: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    slurm: Mapping[str, Any] | None = None,
    slurm_executor: str = "slurm",
    device: str = "cpu",
    data_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    log: Any = None,
) -> Any:
    """Run ``experiment`` for every combination of the ``grid`` values and every seed; return the tidy table.

    Plumbing over :func:`freqlens.experiments.runner.run_experiment` (module docstring: the folder layout and
    the resume rules). ``launcher``: ``"local"`` (a process pool of ``workers`` processes, default: one per
    core, each pinned to ``threads`` = cores // workers torch threads), ``"ray"`` (``ray.init(address)``; no
    address starts a local instance) or ``"slurm"`` (submitit; ``slurm`` holds its ``update_parameters``, e.g.
    ``{"slurm_partition": "gpu", "timeout_min": 60}``; ``slurm_executor="local"`` runs the jobs as local
    subprocesses through ``submitit.LocalExecutor``). Every cell is planned (config, data, seed checked, its
    fingerprint computed) before anything runs.

    Returns a pandas DataFrame when pandas is installed, else a dict of numpy arrays: columns ``cell``,
    ``seed``, the swept keys, ``status`` and every numeric scalar of each finished cell's ``summary.json``.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {list(LAUNCHERS)}, got {launcher!r}")
    if launcher in ("ray", "slurm"):
        require("ray" if launcher == "ray" else "submitit")  # fail before planning when the engine is missing
    grid_values = _check_grid(grid)
    seed_list = _check_seeds(seeds)
    fixed = dict(overrides or {})
    clash = sorted(set(fixed) & set(grid_values))
    if clash:
        raise ValueError(f"keys {clash} are both swept (grid) and fixed (overrides); pick one")
    if workers is not None:
        workers = check_workers(workers)
    if launcher == "local":
        workers = workers or available_cores()
        threads = check_workers(threads, "threads") if threads is not None else max(1, available_cores() // workers)
    else:
        threads = check_workers(threads, "threads") if threads is not None else 1
    root = Path(out).expanduser()
    say = log if log is not None else (lambda message: None)

    cells: list[_Cell] = []
    for combo in itertools.product(*grid_values.values()) if grid_values else [()]:
        values = dict(zip(grid_values, combo))
        for seed in seed_list:
            plan = plan_run(
                experiment, scale=scale, quick=quick, seed=seed, device=device, data_dir=data_dir,
                overrides={**fixed, **values},
            )  # fmt: skip
            cell_id = _cell_id(values, seed)
            spec = CellSpec(
                experiment=experiment,
                cell_id=cell_id,
                values=values,
                seed=seed,
                scale=plan.scale,
                device=str(plan.device),
                data_dir=str(plan.data_dir) if plan.data_dir is not None else None,
                overrides={**fixed, **values},
                run_path=str(root / "cells" / cell_id),
                threads=threads,
                fingerprint=plan.fingerprint,
            )
            cells.append(_Cell(spec))
    ids = [c.spec.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise ValueError("two grid values give the same cell folder name; make the values distinct as text")
    for cell in cells:
        if finished_fingerprint(cell.spec.run_path) == cell.spec.fingerprint:
            cell.status = "cached"
    header = {
        "experiment": experiment,
        "scale": cells[0].spec.scale,
        "grid": grid_values,
        "seeds": seed_list,
        "overrides": fixed,
        "launcher": launcher,
        "workers": workers,
        "threads": threads,
    }
    todo = [c for c in cells if c.status != "cached"]
    say(f"[sweep] {experiment}: {len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run")
    _write_manifest(root, header, cells)
    specs = [c.spec for c in todo]
    outcomes: Generator[tuple[int, str | None], None, None]  # (index in todo, error line or None)
    if not specs:
        outcomes = iter_nothing()
    elif launcher == "local":
        outcomes = launch_local(run_cell, specs, workers or 1, threads)
    elif launcher == "ray":
        outcomes = launch_ray(run_cell, specs, threads, address, workers)
    else:
        outcomes = launch_slurm(run_cell, specs, threads, root / "submitit", slurm or {}, slurm_executor)
    try:
        for index, error in outcomes:
            cell = todo[index]
            cell.status, cell.error = ("failed", error) if error else ("finished", None)
            say(f"[{'fail' if error else 'done'}] {cell.spec.cell_id}" + (f": {error}" if error else ""))
            _write_manifest(root, header, cells)
    except BaseException:
        outcomes.close()  # stops the engine: cancels and terminates what still runs
        for cell in todo:
            if cell.status == "pending":
                cell.status = "interrupted"
        _write_manifest(root, header, cells)
        raise
    arrays = _collect_table(cells, list(grid_values))
    write_table(arrays, root / TABLE)
    metrics = [k for k in arrays if k not in ("cell", "seed", "status", *grid_values)]
    plot_sweep(arrays, list(grid_values), metrics, root, experiment)
    failed = [c for c in cells if c.status == "failed"]
    if failed:
        say(f"[sweep] {len(failed)} cell(s) failed; see {root / MANIFEST}")
    return to_dataframe(arrays)


def iter_nothing() -> Generator[tuple[int, str | None], None, None]:
    """The outcomes of launching no cell (plumbing)."""
    yield from ()


def _write_manifest(root: Path, header: Mapping[str, Any], cells: Sequence[_Cell]) -> None:
    """Rewrite ``sweep.json`` atomically with every cell's status (plumbing)."""
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    write_json(
        root / MANIFEST,
        {
            **header,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "counts": counts,
            "cells": [
                {
                    "id": c.spec.cell_id,
                    "values": c.spec.values,
                    "seed": c.spec.seed,
                    "path": str(Path(c.spec.run_path).relative_to(root)),
                    "fingerprint": c.spec.fingerprint,
                    "status": c.status,
                    "error": c.error,
                }
                for c in cells
            ],
        },
    )


def _collect_table(cells: Sequence[_Cell], keys: Sequence[str]) -> dict[str, Any]:
    """The table columns from the ``summary.json`` of every finished cell (plumbing)."""
    rows: list[dict[str, Any]] = []
    metrics: dict[str, None] = {}
    for c in cells:
        if c.status not in ("finished", "cached"):
            continue
        summary = RunDirectory(c.spec.run_path).read_summary()
        numbers = {k: v for k, v in flatten_numbers(summary).items() if k not in NOT_HEADLINES}
        metrics.update(dict.fromkeys(numbers))
        row = {"cell": c.spec.cell_id, "seed": c.spec.seed, **{k: cell_value(c.spec.values[k]) for k in keys}}
        rows.append({**row, "status": c.status, **numbers})
    return table_arrays(rows, ["cell", "seed", *keys, "status", *metrics])


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The ``sweep.json`` of a sweep folder (plumbing)."""
    return dict(read_json(Path(out) / MANIFEST))
