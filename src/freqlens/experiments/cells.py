"""An experiment's internal loop (over networks, depths, kernel sizes ...) as cells on a process pool.

Each cell is one resumable :meth:`RunContext.stage <freqlens.experiments.registry.RunContext.stage>`: a key and
a picklable payload, computed by a module-level function ``fn(ctx, payload) -> {name: array}``. With
``workers=1`` the cells run one after the other in this process (exactly the loop they replace); with more,
they run on a standard :class:`concurrent.futures.ProcessPoolExecutor` (``forkserver`` start method: each
worker is forked from a clean server process that has imported torch and freqlens but run nothing, so no
torch or OpenMP thread state is inherited). A cell must depend only on its payload and the
run's seed (its own generators, never the global torch RNG), so serial and pooled results are bit-identical.

The pool is the standard library's; freqlens adds no scheduling of its own. :func:`process_pool` is shared
with the local launcher of :mod:`freqlens.sweeps`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch

from .registry import RunContext

__all__ = ["available_cores", "check_workers", "map_stages", "process_pool"]

P = TypeVar("P")

#: Environment variables read by OpenMP / BLAS runtimes when torch is first imported in a worker.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count) (plumbing)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_workers(workers: Any, name: str = "workers") -> int:
    """A worker count is a positive integer (plumbing)."""
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or int(workers) < 1:
        raise ValueError(f"{name} must be a positive integer, got {workers!r}")
    return int(workers)


def _pin_worker(threads: int) -> None:
    """Pool initializer: pin torch's intra-op threads of this worker (plumbing)."""
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _thread_environment(threads: int) -> Iterator[None]:
    """Set the OpenMP/BLAS thread variables while workers are spawned (they read them before importing torch)."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: str(threads) for k in THREAD_ENV})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def process_pool(
    workers: int, threads: int, preload: Sequence[str] = ("freqlens.experiments.cells",)
) -> Iterator[ProcessPoolExecutor]:
    """A process pool of ``workers`` processes, each pinned to ``threads`` torch/OpenMP threads (plumbing).

    Workers start from a ``forkserver`` that has imported ``preload`` (torch and freqlens) once: a ``spawn``ed
    worker would import torch itself, which takes 10-40 s on a loaded machine. Where ``forkserver`` does not
    exist (Windows) the workers are ``spawn``ed.

    The thread variables are set for the pool's whole life because the executor spawns its workers at the first
    submit. On Ctrl-C (or any error in the body) pending work is cancelled and running workers are terminated:
    every file freqlens writes is renamed into place, so a killed worker leaves no half-written file.
    """
    workers = check_workers(workers)
    threads = check_workers(threads, "threads")
    with _thread_environment(threads):
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_pool_context(preload),
            initializer=_pin_worker,
            initargs=(threads,),
        )
        try:
            yield executor
        except BaseException:
            _terminate(executor)
            raise
        else:
            executor.shutdown(wait=True)


def _pool_context(preload: Sequence[str]) -> multiprocessing.context.BaseContext:
    """The ``forkserver`` context preloading ``preload`` (``spawn`` where there is none) (plumbing)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Takes effect when this process starts its fork server (the first pool); later pools share that server.
    context.set_forkserver_preload(list(preload))
    return context


def _terminate(executor: ProcessPoolExecutor) -> None:
    # The executor has no public way to stop busy workers (terminate_workers() arrives in Python 3.14): cancel
    # what has not started, then terminate the processes so that Ctrl-C does not wait for running cells.
    """Cancel pending work and terminate the running workers of ``executor`` (plumbing)."""
    processes = list(getattr(executor, "_processes", {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def _stage_in_worker(
    ctx: RunContext, key: str, fn: Callable[[RunContext, Any], Mapping[str, Any]], payload: Any
) -> dict[str, np.ndarray]:
    """Worker side of :func:`map_stages`: one cell as ``ctx.stage`` (plumbing)."""
    return ctx.stage(key, functools.partial(fn, ctx, payload))


def _check_cells(cells: Sequence[tuple[str, Any]], fn: Callable[..., Any], workers: int) -> None:
    """Refuse repeated stage keys, and closures where a pool must pickle ``fn`` (plumbing)."""
    twice = sorted(k for k, n in Counter(key for key, _ in cells).items() if n > 1)
    if twice:
        raise ValueError(f"cells must have distinct stage keys, got repeated keys {twice}")
    if workers > 1 and "<locals>" in getattr(fn, "__qualname__", "<locals>"):
        raise ValueError(
            f"fn must be a module-level function to run on a process pool, got {getattr(fn, '__qualname__', fn)!r}"
        )


def map_stages(
    ctx: RunContext,
    cells: Sequence[tuple[str, P]],
    fn: Callable[[RunContext, P], Mapping[str, Any]],
    workers: int = 1,
) -> list[dict[str, np.ndarray]]:
    """``[ctx.stage(key, lambda: fn(ctx, payload)) for key, payload in cells]``, on ``workers`` processes (plumbing).

    Results come back in the order of ``cells``. Finished stages of an earlier run with the same fingerprint are
    loaded, not recomputed. Each pooled worker runs with this process's current torch thread count (the run's
    pinned count), so that its numbers match the serial loop. If a cell fails, the cells already running finish
    (their stages are kept for the rerun), the others are cancelled, and the first failure in cell order is
    raised.
    """
    workers = check_workers(workers)
    cells = list(cells)
    _check_cells(cells, fn, workers)
    if workers == 1 or len(cells) <= 1:
        return [ctx.stage(key, functools.partial(fn, ctx, payload)) for key, payload in cells]
    results: list[dict[str, np.ndarray] | None] = [ctx.run_dir.load_stage(key, ctx.fingerprint) for key, _ in cells]
    todo = [i for i, res in enumerate(results) if res is None]
    if not todo:
        return [res for res in results if res is not None]
    # Progress bars of several workers would interleave on one terminal; the parent's log lines remain.
    worker_ctx = dataclasses.replace(ctx, show_progress=False)
    preload = ("freqlens.experiments.cells", getattr(fn, "__module__", "freqlens.experiments.cells"))
    with process_pool(min(workers, len(todo)), torch.get_num_threads(), preload) as pool:
        futures: dict[int, Future[dict[str, np.ndarray]]] = {
            i: pool.submit(_stage_in_worker, worker_ctx, cells[i][0], fn, cells[i][1]) for i in todo
        }
        first_error: BaseException | None = None
        for i in todo:
            if futures[i].cancelled():
                continue
            try:
                results[i] = futures[i].result()
            except Exception as exc:  # keep collecting: running cells still store their stages
                if first_error is None:
                    first_error = exc
                    for future in futures.values():
                        future.cancel()
        if first_error is not None:
            raise first_error
    return [res for res in results if res is not None]
