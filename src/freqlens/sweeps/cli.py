"""The ``freqlens sweep`` subcommand (plumbing over :func:`freqlens.sweeps.sweep`)."""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any


def positive_int(text: str) -> int:
    """argparse type: a positive integer (plumbing; shared with the top-level command line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def key_value(text: str, flag: str = "--set") -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE a Python literal if it parses, else the text (plumbing; ``reproduce --set`` and
    ``sweep --set`` share it, so both read values the same way)."""
    if "=" not in text:
        raise ValueError(f"{flag} expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = {"true": True, "false": False, "none": None}.get(raw.lower(), raw)
    return key.strip(), value

__all__ = ["add_sweep_parser"]


def _cmd_sweep(args: argparse.Namespace) -> int:
    """``freqlens sweep``: run the sweep, print the counts; exit 1 if a cell failed (plumbing)."""
    from .engine import parse_grid_values, parse_seeds, read_manifest, sweep

    grid: dict[str, list[Any]] = {}
    for text in args.grid or []:
        key, values = parse_grid_values(text)
        if key in grid:
            raise ValueError(f"--grid {key} is given twice; list all its values in one --grid")
        grid[key] = values
    slurm: dict[str, Any] = dict(key_value(s, "--slurm-param") for s in args.slurm_param or [])
    if args.slurm_partition:
        slurm["slurm_partition"] = args.slurm_partition
    if args.slurm_time:
        slurm["timeout_min"] = args.slurm_time
    sweep(
        args.experiment,
        grid=grid,
        seeds=parse_seeds(args.seeds),
        scale=args.scale,
        quick=args.quick and args.scale is None,
        out=args.out,
        launcher=args.launcher,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        slurm=slurm,
        slurm_executor=args.slurm_executor,
        device=args.device,
        data_dir=args.data,
        overrides=dict(key_value(s, "--set") for s in args.set or []),
        log=lambda message: print(message, flush=True),
    )
    manifest = read_manifest(args.out)
    counts = manifest.get("counts", {})
    print(f"[sweep] {counts}; table: {args.out}/sweep.csv, manifest: {args.out}/sweep.json", flush=True)
    if counts.get("failed"):
        print(f"freqlens: error: {counts['failed']} sweep cell(s) failed (errors in sweep.json)", file=sys.stderr)
        return 1
    return 0


def add_sweep_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``sweep`` to the ``freqlens`` subcommands (``sub`` from ``add_subparsers``) (plumbing)."""
    p = sub.add_parser("sweep", help="run one experiment over seeds x settings (local pool, Ray or SLURM)")
    p.add_argument("experiment", help="experiment name (see `freqlens list`)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...", help="swept config key and its values")
    p.add_argument("--seeds", default="0", help="seeds: 0-9, 0,3,7 or a mix (default: 0)")
    p.add_argument("--scale", default=None, help="quick, medium (where offered) or full (default)")
    p.add_argument("--quick", action="store_true", help="alias of --scale quick")
    p.add_argument("--out", required=True, help="sweep folder: cells/, sweep.json, sweep.csv, plots")
    p.add_argument("--launcher", choices=("local", "ray", "slurm"), default="local")
    p.add_argument("--workers", type=positive_int, default=None, help="local: processes (default: one per core)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads per cell (local: cores/workers)")
    p.add_argument("--address", default=None, help="ray: cluster address (default: start a local instance)")
    p.add_argument("--slurm-partition", default=None, help="slurm: partition")
    p.add_argument("--slurm-time", type=positive_int, default=None, help="slurm: time limit per cell in minutes")
    p.add_argument("--slurm-param", action="append", metavar="KEY=VALUE", help="slurm: any submitit parameter")
    p.add_argument(
        "--slurm-executor", choices=("slurm", "local"), default="slurm", help="local: submitit's local executor"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default=None, help="folder with MNIST IDX / CIFAR-10 files (or $FREQLENS_DATA)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="fixed config value for every cell")
    p.set_defaults(func=_cmd_sweep)
    return p
