"""Wall time of cbn-depth and decoder-kernel (quick) with their internal cells serial vs on a 2-worker pool.

Each timing runs the experiment into a fresh folder (no stage is reused), with torch pinned to 1 thread in the
parent and in every worker; the pooled run's data.npz is checked bit-identical to the serial one. Prints the
median over ``--repeats``, the ratio serial / pool and ``os.getloadavg()`` before and after (the machine is
shared: quote the load with the numbers). ``--tiny`` shrinks the configs (smoke test of the script).

    python benchmarks/sweep_parallel.py [--repeats 1] [--workers 2] [--tiny] [--only cbn-depth]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_root
from freqlens.experiments.runner import run_experiment
from freqlens.io import read_npz

TINY = {
    "cbn-depth": {"adam_steps": 300, "depths": (4, 5, 6)},
    "decoder-kernel": {"num_images": 8, "networks": 2},
}


def _time_run(name: str, overrides: dict, data: Path | None, repeats: int) -> tuple[float, list[float], Path]:
    times = []
    path = Path()
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        t0 = time.perf_counter()
        path = run_experiment(name, folder, quick=True, data_dir=data, overrides=overrides, show_progress=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="smaller configs than quick (script smoke test)")
    parser.add_argument("--only", default=None, help="cbn-depth or decoder-kernel")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [n for n in ("cbn-depth", "decoder-kernel") if args.only in (None, n)]
    print(f"cores available: {len(os.sched_getaffinity(0))}, torch threads per process: 1, workers: {args.workers}")
    for name in names:
        data = data_root() if name == "decoder-kernel" else None
        if name == "decoder-kernel" and data is None:
            print(f"SKIP {name}: CIFAR-10/MNIST not found (set FREQLENS_DATA)")
            continue
        extra = TINY[name] if args.tiny else {}
        load0 = os.getloadavg()
        serial, t_serial, p_serial = _time_run(name, {**extra, "workers": 1}, data, args.repeats)
        pool, t_pool, p_pool = _time_run(name, {**extra, "workers": args.workers}, data, args.repeats)
        load1 = os.getloadavg()
        a, b = read_npz(p_serial / "data.npz"), read_npz(p_pool / "data.npz")
        same = list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)
        print(
            f"{name}{' (tiny)' if args.tiny else ' (quick)'}: serial median {serial:.1f} s {t_serial}, "
            f"pool({args.workers}) median {pool:.1f} s {t_pool}, serial/pool = {serial / pool:.2f}; "
            f"data.npz bit-identical: {same}; loadavg before {load0}, after {load1}"
        )
        print(f"  serial run: {p_serial}, pool run: {p_pool}")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
