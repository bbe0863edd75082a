"""Sweeps: seeds x settings of one experiment on a local process pool, Ray or SLURM (submitit).

``freqlens sweep EXPERIMENT --grid KEY=V1,V2 --seeds 0-9 --out DIR`` on the command line, :func:`sweep` in
Python. See ``docs/sweeps.md``.
"""

from .engine import CellSpec, parse_grid_values, parse_seeds, read_manifest, run_cell, sweep
from .table import flatten_numbers, mean_ci95

__all__ = [
    "CellSpec",
    "flatten_numbers",
    "mean_ci95",
    "parse_grid_values",
    "parse_seeds",
    "read_manifest",
    "run_cell",
    "sweep",
]
