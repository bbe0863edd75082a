"""Benchmark: ``activation_spectra`` against a plain forward pass of the same model over the same images (issue 14).

Goal: ``activation_spectra`` (every conv output, float64 Grams, all singular values at every frequency)
costs at most 3x a plain ``torch.no_grad`` forward pass over the same batches, in the same process, with
memory flat in the number of images.

* ResNet-18 (CIFAR stem, 32x32) on 2000 CIFAR-10 test images (real data via ``freqlens.datasets``).
* VGG-11 at 64x64 on CIFAR-10 test images upsampled bilinearly to 64x64.

Both routes see the identical list of batches; the two are timed interleaved, median of ``--repeats``.
Peak memory: a fresh child process per image count (its own ``VmHWM``; the images are streamed batch by
batch from a small ``.npy`` file, so only ``activation_spectra``'s own memory can change with the count).
Both counts are whole numbers of at least two batches (the peak is reached from the second batch on).
Threads are pinned (``torch.set_num_threads``, 1 by default); the load average is printed before and after.

Run: python benchmarks/activation_spectra.py [--quick] [--threads T] [--repeats R] [--batch-size B]
     [--resnet-images N] [--vgg-images N] [--device cpu|cuda]
``--quick`` (narrow models, few images) stays under a minute on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _common import load_line, require_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models_zoo import ResNet18, seeded, vgg11

MODELS: dict[str, tuple[Callable[[float], nn.Module], int]] = {
    # label -> (factory(width), image side)
    "ResNet-18 (CIFAR, 32x32)": (lambda width: seeded(ResNet18, stem="cifar", width=width), 32),
    "VGG-11 (64x64)": (lambda width: seeded(vgg11, width=width), 64),
}
KEYS = {"resnet18": "ResNet-18 (CIFAR, 32x32)", "vgg11": "VGG-11 (64x64)"}


def _own_peak_rss_mib() -> float:
    """``VmHWM`` of this process's own address space. Not ``ru_maxrss``: Linux carries that over ``execve``
    from the parent, so a spawned child would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cifar_test(count: int) -> torch.Tensor:
    """The first ``count`` CIFAR-10 test images, float32 in [0, 1] (skips the benchmark if the data is absent)."""
    from freqlens.datasets import load_cifar10

    root = require_data("cifar10")
    x, _ = load_cifar10(root / "cifar10", "test")
    if count > x.shape[0]:
        raise SystemExit(f"--resnet-images/--vgg-images: at most {x.shape[0]} CIFAR-10 test images, got {count}")
    return x[:count].contiguous()


def _batches(source: torch.Tensor, count: int, side: int, batch_size: int, device: str) -> Iterator[torch.Tensor]:
    """The first ``count`` images of ``source`` in batches, resized to ``side`` (bilinear) when needed."""
    for start in range(0, count, batch_size):
        x = source[start : min(start + batch_size, count)].to(device)
        if x.shape[-1] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        yield x.contiguous()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_model(label: str, width: float, source: torch.Tensor, images: int, args: argparse.Namespace) -> None:
    from freqlens.spectral.activations import activation_spectra

    factory, side = MODELS[label]
    model = factory(width).to(args.device)
    batches = list(_batches(source, images, side, args.batch_size, args.device))

    def forward() -> None:
        with torch.no_grad():
            for x in batches:
                model(x)
        _sync(args.device)

    def spectra() -> Any:
        out = activation_spectra(model, batches)
        _sync(args.device)
        return out

    with torch.no_grad():
        model(batches[0])  # warm-up (allocator, kernels)
    fwd, spc = [], []
    result = None
    for repeat in range(args.repeats):
        t0 = time.perf_counter()
        forward()
        fwd.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = spectra()
        spc.append(time.perf_counter() - t0)
        print(f"  [repeat {repeat + 1}: forward {fwd[-1]:.2f} s, activation_spectra {spc[-1]:.2f} s]", flush=True)
    assert result is not None
    f_med, s_med = statistics.median(fwd), statistics.median(spc)
    values = sum(lay.singular_values.size for lay in result.layers)
    parseval = max(lay.parseval_rel_error for lay in result.layers)
    print(
        f"{label}, width {width}: {images} images, batch {args.batch_size}, {len(result.layers)} conv outputs, "
        f"{values} singular values, torch threads {torch.get_num_threads()}, device {args.device}"
    )
    print(f"  forward pass        : median {f_med:.2f} s  (runs {[round(t, 2) for t in fwd]})")
    print(
        f"  activation_spectra  : median {s_med:.2f} s  (runs {[round(t, 2) for t in spc]}), "
        f"{images / s_med:.1f} images/s; max Parseval rel. error {parseval:.1e}"
    )
    print(f"  RATIO activation_spectra / forward: {s_med / f_med:.2f} x  (goal <= 3 x)")


def _memory_job(
    label: str, width: float, source_path: str, images: int, batch_size: int, device: str
) -> dict[str, float]:
    """One ``activation_spectra`` call in a fresh process; the images come from a small ``.npy`` file so that
    loading CIFAR-10 (hundreds of MiB of transient memory) does not set the process's peak."""
    from freqlens.spectral.activations import activation_spectra

    torch.set_num_threads(1)
    factory, side = MODELS[label]
    model = factory(width).to(device)
    source = torch.from_numpy(np.load(source_path))
    with torch.no_grad():
        model(next(_batches(source, batch_size, side, batch_size, device)))  # warm-up forward at full batch
    before = _own_peak_rss_mib()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = activation_spectra(model, _batches(source, images, side, batch_size, device), batch_size=batch_size)
    gram_mib = sum(lay.grid[0] * (lay.grid[1] // 2 + 1) * lay.channels**2 * 16 for lay in result.layers) / 2**20
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return {"before": before, "after": _own_peak_rss_mib(), "gram_mib": gram_mib, "cuda_peak_mib": cuda_peak}


def _memory_model(
    label: str, width: float, source: torch.Tensor, counts: tuple[int, int], args: argparse.Namespace
) -> None:
    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "images.npy")
        np.save(path, source[: max(counts)].numpy())
        for count in counts:
            with ctx.Pool(1) as pool:
                rows.append(pool.apply(_memory_job, (label, width, path, count, args.batch_size, args.device)))
    for count, row in zip(counts, rows):
        cuda = f", CUDA peak allocated {row['cuda_peak_mib']:.0f} MiB" if args.device.startswith("cuda") else ""
        print(
            f"  memory, {count} images: peak RSS {row['after']:.0f} MiB (before the call {row['before']:.0f} MiB, "
            f"increase {row['after'] - row['before']:.0f} MiB; float64 Gram storage {row['gram_mib']:.0f} MiB){cuda}"
        )
    grow = rows[1]["after"] - rows[0]["after"]
    print(f"  MEMORY {counts[1]} vs {counts[0]} images: peak RSS differs by {grow:+.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="narrow models (width 1/4), few images: < 1 min")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats, median reported (>= 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 250 (quick: 50)")
    parser.add_argument("--resnet-images", type=int, default=None, help="default 2000 (quick: 200)")
    parser.add_argument("--vgg-images", type=int, default=None, help="default 1000 (quick: 100)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--skip-timing", action="store_true", help="only the peak-memory children")
    parser.add_argument("--skip-memory", action="store_true", help="only the timings")
    parser.add_argument("--models", default="resnet18,vgg11", help="comma-separated subset of resnet18,vgg11")
    parser.add_argument(
        "--memory-images", default=None, help="two image counts A,B for peak memory (default: about N/4 and N)"
    )
    args = parser.parse_args()
    if args.batch_size is None:
        args.batch_size = 50 if args.quick else 250
    for name in ("threads", "repeats", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    torch.set_num_threads(args.threads)
    width = 0.25 if args.quick else 1.0
    chosen = args.models.split(",")
    unknown = [m for m in chosen if m not in KEYS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected a subset of {sorted(KEYS)}")
    memory_counts = None
    if args.memory_images is not None:
        try:
            low, high = (int(v) for v in args.memory_images.split(","))
        except ValueError:
            parser.error(f"--memory-images: expected two integers 'A,B', got {args.memory_images!r}")
        if not 0 < low < high:
            parser.error(f"--memory-images: expected 0 < A < B, got {args.memory_images!r}")
        memory_counts = (low, high)
    images = {
        "resnet18": args.resnet_images or (200 if args.quick else 2000),
        "vgg11": args.vgg_images or (100 if args.quick else 1000),
    }
    plan = {KEYS[m]: images[m] for m in chosen}
    source = _cifar_test(max([*plan.values(), *(memory_counts or ())]))
    print(load_line("before"), flush=True)
    for label, count in plan.items():
        if not args.skip_timing:
            _time_model(label, width, source, count, args)
        if not args.skip_memory:
            # whole batches, at least two: the first batch allocates the Grams layer by layer, so the steady
            # peak (all Grams plus one batch in flight) is only reached from the second batch on
            low = max(2 * args.batch_size, count // 4 // args.batch_size * args.batch_size)
            _memory_model(label, width, source, memory_counts or (min(low, count), count), args)
        print(load_line(f"after {label}"), flush=True)


if __name__ == "__main__":
    main()
