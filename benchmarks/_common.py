"""Helpers shared by the benchmark scripts: timing medians, peak memory, the data folder."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """``$FREQLENS_DATA`` or ``../shared/data`` beside the checkout, if present."""
    env = os.environ.get("FREQLENS_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


def require_data(sub: str) -> Path:
    root = data_root()
    if root is None or not (root / sub).exists():
        print(f"SKIP: {sub} not found (set FREQLENS_DATA or place ../shared/data beside the checkout)")
        sys.exit(0)
    return root


def timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Median wall time over ``repeats`` calls and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def traced_peak_mib(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Peak Python/NumPy heap allocated while ``fn`` runs (tracemalloc; torch's allocator is not seen)."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, result


def max_rss_mib() -> float:
    """Peak resident set size of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_line(when: str) -> str:
    """``os.getloadavg()`` as one printable line (the machine is shared: every timing quotes it)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def cpu_and_wall(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, process CPU seconds, result) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - w0, time.process_time() - c0, result
