"""Where the cells of a sweep run: a local process pool (default), Ray, or SLURM through submitit.

freqlens schedules nothing itself: each launcher hands every cell to an existing engine and reports the cells
as they finish. A launcher yields ``(index, error)`` per cell, ``error`` being ``None`` or one line
``"Type: message"``; on Ctrl-C it cancels what has not finished and re-raises.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from ..experiments.cells import THREAD_ENV, check_workers, process_pool

__all__ = ["LAUNCHERS", "error_line", "launch_local", "launch_ray", "launch_slurm", "require"]

LAUNCHERS = ("local", "ray", "slurm")
_EXTRA = {"ray": ("ray", "ray"), "submitit": ("slurm", "submitit")}

CellFn = Callable[[Any], Any]
Outcomes = Generator[tuple[int, str | None], None, None]


def require(module: str) -> Any:
    """Import an optional engine, or a one-line error naming the extra that installs it (plumbing)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra, package = _EXTRA[module]
        raise ImportError(
            f"launcher {extra!r} needs the {package} package, which is not installed: pip install 'freqlens[{extra}]'"
        ) from None


def error_line(exc: BaseException) -> str:
    """``"Type: first line of the message"`` (the last line for engines that wrap a remote traceback) (plumbing)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    # Ray and submitit put the worker's traceback in the message; its last line is the original error.
    text = lines[-1] if len(lines) > 1 and ("Traceback" in str(exc) or "Error" in lines[-1]) else lines[0]
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text


def launch_local(fn: CellFn, specs: Sequence[Any], workers: int, threads: int) -> Outcomes:
    """Every cell on a :func:`freqlens.experiments.cells.process_pool` of ``workers`` processes (plumbing)."""
    workers = min(check_workers(workers), max(1, len(specs)))
    with process_pool(workers, threads, preload=(fn.__module__,)) as pool:
        futures: dict[Future[Any], int] = {pool.submit(fn, spec): i for i, spec in enumerate(specs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                exc = future.exception()
                yield futures[future], None if exc is None else error_line(exc)


def launch_ray(fn: CellFn, specs: Sequence[Any], threads: int, address: str | None, workers: int | None) -> Outcomes:
    """Every cell as a Ray task of ``threads`` CPUs: on the cluster at ``address``, else on a local Ray instance
    started here (with ``workers`` CPUs) and shut down at the end (plumbing)."""
    ray = require("ray")
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False}
        options["runtime_env"] = {"env_vars": {k: str(threads) for k in THREAD_ENV}}
        if address is None and workers is not None:
            options["num_cpus"] = check_workers(workers) * threads
        ray.init(**options)
    try:
        remote = ray.remote(num_cpus=threads, max_retries=0)(fn)
        refs = {remote.remote(spec): i for i, spec in enumerate(specs)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        ray.get(ref)
                        yield refs[ref], None
                    except Exception as exc:
                        yield refs[ref], error_line(getattr(exc, "cause", None) or exc)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


def launch_slurm(
    fn: CellFn, specs: Sequence[Any], threads: int, folder: Path, parameters: Mapping[str, Any], executor: str
) -> Outcomes:
    """Every cell as a submitit job (one job array): on SLURM through ``submitit.AutoExecutor``, or with
    ``executor="local"`` as local subprocesses through ``submitit.LocalExecutor`` (used by the tests) (plumbing).

    ``parameters`` go to ``update_parameters`` (``slurm_partition``, ``timeout_min``, ``slurm_mem`` ...).
    """
    submitit = require("submitit")
    params = dict(parameters)
    if executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(**{k: v for k, v in params.items() if k == "timeout_min"})
    elif executor == "slurm":
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        params.setdefault("cpus_per_task", threads)
        params.setdefault("slurm_setup", [f"export {k}={threads}" for k in THREAD_ENV])
        ex.update_parameters(**params)
    else:
        raise ValueError(f"slurm executor must be 'slurm' or 'local', got {executor!r}")
    with ex.batch():
        jobs = [ex.submit(fn, spec) for spec in specs]
    index = {id(job): i for i, job in enumerate(jobs)}
    pending = list(jobs)
    try:
        while pending:
            still = []
            for job in pending:
                if not job.done():
                    still.append(job)
                    continue
                try:
                    job.result()
                    yield index[id(job)], None
                except Exception as exc:
                    yield index[id(job)], error_line(exc)
            pending = still
            if pending:
                time.sleep(0.5)
    except BaseException:
        for job in pending:
            job.cancel(check=False)
        raise
