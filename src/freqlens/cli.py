"""``freqlens`` command line: ``list``, ``reproduce``, ``replot``, ``rerun`` (also ``python -m freqlens``).

Thin over :mod:`freqlens.experiments`. Every user error is one line on stderr, never a traceback (unless
``--debug``): exit code 2 for bad usage or input, 1 for a run that failed, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from .sweeps.cli import key_value, positive_int

__all__ = ["main"]



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

    overrides = dict(key_value(s) for s in args.set or [])
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
        scale = args.scale or ("quick" if args.quick else None)
        print(f"[run ] {name}{f' ({scale})' if scale else ''} ...", flush=True)
        try:
            path = run_experiment(
                name,
                out=args.out,
                quick=args.quick and args.scale is None,
                scale=args.scale,
                seed=args.seed,
                device=args.device,
                data_dir=data_dir,
                overrides=overrides,
                show_progress=not args.no_progress,
                threads=args.threads,
            )
        except (ValueError, FileNotFoundError, TypeError, RuntimeError) as exc:
            if len(names) == 1 or args.debug:
                raise
            failures += 1
            print(f"[fail] {name}: {_one_line(exc)}", file=sys.stderr)
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

    path = rerun(
        args.run_dir,
        out=args.out,
        device=args.device,
        data_dir=args.data,
        show_progress=not args.no_progress,
        threads=args.threads,
    )
    print(f"[done] -> {path}")
    return 0


def _seed(text: str) -> int:
    from .experiments.runner import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {MAX_SEED}], got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {MAX_SEED}], got {text}")
    return value


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``freqlens`` command (plumbing)."""
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="freqlens",
        description="Which frequencies does a CNN learn, keep and use? Reproduce the figures of three papers.",
    )
    parser.add_argument("--version", action="version", version=f"freqlens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)  # --debug also after the subcommand
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p_list = sub.add_parser("list", parents=[common], help="list the registered experiments")
    p_list.set_defaults(func=_cmd_list)

    p_rep = sub.add_parser("reproduce", parents=[common], help="run experiments into run directories")
    p_rep.add_argument("names", nargs="+", help="experiment names, glob patterns (e.g. 'pinson-*') or 'all'")
    p_rep.add_argument("--quick", action="store_true", help="small CI-sized settings (alias of --scale quick)")
    p_rep.add_argument("--scale", default=None, help="quick, medium (where offered) or full (the paper's; default)")
    p_rep.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default 1)")
    p_rep.add_argument("--out", default="runs", help="output root; each run goes to OUT/NAME (default: runs)")
    p_rep.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    p_rep.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p_rep.add_argument("--data", default=None, help="folder with MNIST IDX / CIFAR-10 files (or $FREQLENS_DATA)")
    p_rep.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config value (repeatable)")
    p_rep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p_rep.set_defaults(func=_cmd_reproduce)

    p_plot = sub.add_parser("replot", parents=[common], help="redraw figures of finished runs from their data.npz")
    p_plot.add_argument("run_dirs", nargs="+", help="run directories (OUT/NAME)")
    p_plot.set_defaults(func=_cmd_replot)

    p_rerun = sub.add_parser("rerun", parents=[common], help="run again what a run directory's config.json describes")
    p_rerun.add_argument("run_dir", help="run directory (OUT/NAME) or its config.json")
    p_rerun.add_argument("--out", default=None, help="output root: rerun into OUT/NAME (default: into RUN_DIR)")
    p_rerun.add_argument("--device", default=None, help="override the saved device")
    p_rerun.add_argument("--data", default=None, help="override the saved data folder")
    p_rerun.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default 1)")
    p_rerun.add_argument("--no-progress", action="store_true")
    p_rerun.set_defaults(func=_cmd_rerun)
    from .sweeps.cli import add_sweep_parser

    add_sweep_parser(sub)

    from .report.cli import add_analyze_parser

    add_analyze_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a cluster scheduler's time limit or pre-emption), raised in the main thread so that it
    unwinds like Ctrl-C: worker processes are terminated and run locks released (plumbing)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` instead of killing the process outright (which
    left a pool's workers training on, orphaned); the previous handler is restored after (plumbing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``freqlens`` command; returns the exit code (plumbing)."""
    from .experiments.runner import RunFailed
    from .io import RunLocked

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _sigterm_as_interrupt():
            return int(args.func(args))
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"freqlens: {what}; finished stages are kept and reused by the next identical run", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, RunFailed | RunLocked):
            print(f"freqlens: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        if isinstance(exc, ValueError | TypeError | LookupError | OSError):
            print(f"freqlens: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        print(
            f"freqlens: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
