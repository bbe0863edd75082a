"""``freqlens`` command line: ``list``, ``reproduce``, ``replot``, ``rerun``.

Thin over :mod:`freqlens.experiments`; every error is printed as one line naming what was wrong.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = {"true": True, "false": False, "none": None}.get(raw.lower(), raw)
    return key.strip(), value


def _select(names: Sequence[str]) -> list[str]:
    from .experiments.registry import all_experiments

    known = [e.name for e in all_experiments()]
    chosen: list[str] = []
    for pattern in names:
        if pattern == "all":
            matched = known
        elif any(ch in pattern for ch in "*?["):
            matched = fnmatch.filter(known, pattern)
        elif pattern in known:
            matched = [pattern]
        else:
            close = [k for k in known if pattern.split("-")[0] in k]
            hint = f"; did you mean one of {close}?" if close else ""
            raise ValueError(f"unknown experiment {pattern!r}{hint} (`freqlens list` shows all)")
        if not matched:
            raise ValueError(f"pattern {pattern!r} matches no experiment")
        chosen += [m for m in matched if m not in chosen]
    return chosen


def _cmd_list(args: argparse.Namespace) -> int:
    from .experiments.registry import all_experiments

    exps = all_experiments()
    width = max((len(e.name) for e in exps), default=10)
    for e in exps:
        needs = f"  [needs --data: {', '.join(e.needs)}]" if e.needs else ""
        print(f"{e.name:<{width}}  {e.description}{needs}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments.registry import get_experiment
    from .experiments.runner import check_requirements, resolve_data_dir, run_experiment

    overrides = dict(_parse_override(s) for s in args.set or [])
    names = _select(args.names)
    if overrides and len(names) > 1:
        raise ValueError("--set applies to one experiment at a time; name a single experiment")
    data_dir = resolve_data_dir(args.data)
    skipped: list[tuple[str, str]] = []
    failures = 0
    for name in names:
        exp = get_experiment(name)
        if len(names) > 1:
            try:
                check_requirements(exp, data_dir)
            except (ValueError, FileNotFoundError) as exc:
                skipped.append((name, str(exc)))
                print(f"[skip] {name}: {exc}", file=sys.stderr)
                continue
        t0 = time.perf_counter()
        print(f"[run ] {name}{' (quick)' if args.quick else ''} ...", flush=True)
        try:
            path = run_experiment(
                name,
                out=args.out,
                quick=args.quick,
                seed=args.seed,
                device=args.device,
                data_dir=data_dir,
                overrides=overrides,
                show_progress=not args.no_progress,
            )
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            if len(names) == 1:
                raise
            failures += 1
            print(f"[fail] {name}: {exc}", file=sys.stderr)
            continue
        print(f"[done] {name} in {time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    if skipped:
        print(
            f"{len(skipped)} experiment(s) skipped for missing data: {', '.join(n for n, _ in skipped)}",
            file=sys.stderr,
        )
    return 1 if failures else 0


def _cmd_replot(args: argparse.Namespace) -> int:
    from .experiments.runner import replot

    for path in args.run_dirs:
        files = replot(path)
        print(f"[plot] {path}: {len(files)} file(s) written")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .experiments.runner import rerun

    path = rerun(args.run_dir, out=args.out, device=args.device, data_dir=args.data, show_progress=not args.no_progress)
    print(f"[done] -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freqlens",
        description="Which frequencies does a CNN learn, keep and use? Reproduce the figures of three papers.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list the registered experiments")
    p_list.set_defaults(func=_cmd_list)

    p_rep = sub.add_parser("reproduce", help="run experiments into run directories")
    p_rep.add_argument("names", nargs="+", help="experiment names, glob patterns (e.g. 'pinson-*') or 'all'")
    p_rep.add_argument("--quick", action="store_true", help="small CI-sized settings (minutes on a CPU)")
    p_rep.add_argument("--out", default="runs", help="output root; each run goes to OUT/NAME (default: runs)")
    p_rep.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p_rep.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p_rep.add_argument("--data", default=None, help="folder with MNIST IDX / CIFAR-10 files (or $FREQLENS_DATA)")
    p_rep.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config value (repeatable)")
    p_rep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p_rep.set_defaults(func=_cmd_reproduce)

    p_plot = sub.add_parser("replot", help="redraw figures of finished runs from their data.npz")
    p_plot.add_argument("run_dirs", nargs="+", help="run directories (OUT/NAME)")
    p_plot.set_defaults(func=_cmd_replot)

    p_rerun = sub.add_parser("rerun", help="run again what a run directory's config.json describes")
    p_rerun.add_argument("run_dir", help="run directory (OUT/NAME) or its config.json")
    p_rerun.add_argument("--out", default=None, help="output root (default: the run's own)")
    p_rerun.add_argument("--device", default=None)
    p_rerun.add_argument("--data", default=None)
    p_rerun.add_argument("--no-progress", action="store_true")
    p_rerun.set_defaults(func=_cmd_rerun)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"freqlens: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("freqlens: interrupted; finished stages are kept and reused by the next identical run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
