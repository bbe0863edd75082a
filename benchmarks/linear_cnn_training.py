"""Benchmark: the CIFAR-4 protocol of the linear-CNN paper with the fast trainer (issues 3, 17).

Protocol: CIFAR-10 classes 0-3, 20000 train / 4000 test images 3x32x32, training mean subtracted, p = 4,
10 independent trials, single-sample SGD (shuffled epochs), A(t) and the train and test losses on the
full sets every 500 updates (plus |k̂_m(t)| and the balance ratios), float32.

What is timed, all in one process, interleaved so that a change of load hits every route alike: each of
``--repeats`` rounds runs every route once in each of its kept thread settings: (a) the fast trainer for
``--segment`` updates with records every 500 (training + recording; settings "1", "1+2" = steps on 1 thread
and the stacked record products on 2, "2": the record products overlapped with training in the trainer's
worker thread (``overlap_records=True``, opt-in; "1" and "1+2" overlap too); "1 in line": the products
completed in the training thread), (b) the same updates
through the trainer's stepping kernels alone (stepping only; "1", "2") and (c) the straightforward PyTorch
route, ``F.pad(..., mode="circular")`` with n-1 wrapped rows/columns + ``nn.Conv2d(3, 1, 32)`` +
``nn.Linear``, autograd, ``torch.optim.SGD``, one sample per step, for ``--naive-updates`` updates ("1", "2").
Every route is quoted as the median over the rounds at its best setting (a short untimed probe first warms up
each route and drops a setting more than twice as slow as its best); wall time is what the ratio uses, process
CPU time is printed beside it (less sensitive to other jobs on a shared machine). The load average is printed
before, after every round and after.

Two arithmetic floors of one trial-update (1 thread), both excluding Python, dispatch and the gathering
of samples: (1) the six step kernels: their real flops (counted below) over the best rate each torch
kernel reaches here (per-trial shapes, the protocol's trial count and 8x it); (2) a fused kernel at
this machine's peaks: max(flops / the best single-thread float32 GEMM rate, bytes / the best copy
bandwidth over a buffer of the trials' working-set size), with the bytes of the two passes a fused
step needs (read K̄, x, W for h and e; read them again and write K̄, W for the updates).

Records: the flops of the loss quadratic forms (``tr(B Σ_φφ Bᵀ)``, the blocked Cholesky product of
``freqlens.training.linear_problem``) per record and their time per row for one record's 40 rows and
for the trainer's stack of 320 rows.

``--quick``: 5000 train images (all 4000 test images: both sets keep the protocol's moment route),
2500-update segments, 30 straightforward updates.
``--full``: also the whole protocol once (10 x 100000 updates, 201 records; goal <= 60 s wall).
The naive network's updates are replayed by the fast trainer (one trial, same samples) to check that
both compute the same network.

Run: python benchmarks/linear_cnn_training.py [--quick | --full] [--float64] [--repeats 5] [--segment 5000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _common import cpu_and_wall, load_line, max_rss_mib, require_data
from freqlens.datasets import load_cifar10
from freqlens.training.linear_init import CNNParameters, random_cnn_init
from freqlens.training.linear_problem import LinearProblem
from freqlens.training.linear_trainer import (
    _CNN_CHUNK,
    _RECORD_BATCH_ROWS,
    _CNNState,
    _CNNStepper,
    _SampleStream,
    train_linear_cnn,
)

LR = 5.625e-5  # the pinson-fig5 CIFAR-4 CNN learning rate
SIGMA = 1e-4
RECORD_EVERY = 500


class NaiveLinearCNN(nn.Module):
    """The straightforward implementation: end-wrap circular padding + Conv2d(3 -> 1, 32x32) + Linear."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 32, bias=False, dtype=dtype)
        self.fc = nn.Linear(32 * 32, 4, bias=False, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(F.pad(x, (0, 31, 0, 31), mode="circular")).flatten(1))


def naive_run(xs: torch.Tensor, ys: torch.Tensor, init: CNNParameters) -> NaiveLinearCNN:
    """``len(xs)`` single-sample autograd + SGD steps of trial 0's network."""
    model = NaiveLinearCNN(xs.dtype)
    with torch.no_grad():
        model.conv.weight.copy_(init.kernel[0].unsqueeze(0).to(xs.dtype))
        model.fc.weight.copy_(init.weight[0].to(xs.dtype))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for i in range(xs.shape[0]):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(xs[i : i + 1]), ys[i : i + 1]).backward()
        opt.step()
    return model


def stepping_only(problem: LinearProblem, init: CNNParameters, updates: int) -> None:
    """The trainer's sample stream and step kernels for ``updates`` updates, no records (plumbing)."""
    state = _CNNState(problem, init)
    data = problem.cnn_data
    stepper = _CNNStepper(state, data, problem.targets, 2.0 * LR / problem.num_classes, _CNN_CHUNK)
    stream = _SampleStream(problem.num_samples, "epochs", seed=1, trials=state.trials)
    done = 0
    while done < updates:
        count = min(_CNN_CHUNK, updates - done)
        stepper.steps(stream.take(count))
        done += count


def step_kernel_flops(c: int, r: int, p: int) -> dict[str, int]:
    """Real flops per trial of the six step kernels (one hidden map; complex multiply = 6, add = 2)."""
    return {
        "h = sum_c Kbar_c * x_c (mul + sum)": 6 * c * r + 2 * (c - 1) * r,
        "e = y - h W^T (baddbmm)": 2 * p * 2 * r,
        "delta = e W (bmm)": 2 * p * 2 * r,
        "W += c e^T h (baddbmm_)": 2 * p * 2 * r,
        "Kbar += c delta * xbar (addcmul_)": 8 * c * r + 2 * r,
    }


def kernel_rates(problem: LinearProblem, trials: int, reps: int = 200) -> dict[str, float]:
    """Flop rate (flop/s) of each step kernel with ``trials`` trials, median of 5 timings of ``reps`` calls."""
    c = problem.image_shape[0]
    p, r = problem.num_classes, problem.basis.size
    cdt, rdt = problem.coeffs.dtype, problem.dtype
    g = torch.Generator().manual_seed(0)
    k_bar = torch.randn(trials, c, r, dtype=cdt, generator=g)
    x = torch.randn(trials, c, r, dtype=cdt, generator=g)
    prod, h = torch.empty_like(k_bar), torch.empty(trials, 1, r, dtype=cdt)
    h_real = torch.view_as_real(h).view(trials, 1, -1)
    wr = torch.randn(trials, p, 2 * r, dtype=rdt, generator=g)
    y, err = torch.randn(trials, 1, p, dtype=rdt, generator=g), torch.empty(trials, 1, p, dtype=rdt)
    delta_real = torch.empty(trials, 1, 2 * r, dtype=rdt)
    delta = torch.view_as_complex(delta_real.view(trials, 1, r, 2))

    def hidden() -> None:
        torch.mul(k_bar, x, out=prod)
        torch.sum(prod, dim=1, keepdim=True, out=h)

    calls: list[Callable[[], object]] = [
        hidden,
        lambda: torch.baddbmm(y, h_real, wr.transpose(1, 2), alpha=-1.0, out=err),
        lambda: torch.bmm(err, wr, out=delta_real),
        lambda: wr.baddbmm_(err.transpose(1, 2), h_real, alpha=1e-30),
        lambda: k_bar.addcmul_(delta, x, value=1e-30),
    ]
    rates = {}
    for (name, flops), call in zip(step_kernel_flops(c, r, p).items(), calls):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                call()
            times.append((time.perf_counter() - t0) / reps)
        rates[name] = flops * trials / statistics.median(times)
    return rates


def fused_step_bytes(c: int, r: int, p: int, itemsize: int) -> int:
    """Bytes one trial-update moves in a fused kernel: two passes over K̄ (C R complex), x (C R complex)
    and W (p 2R real), and one write of K̄ and W (plumbing for the floor, module doc)."""
    k_bytes, x_bytes, w_bytes = 2 * c * r * itemsize, 2 * c * r * itemsize, 2 * p * r * itemsize
    return 2 * (k_bytes + x_bytes + w_bytes) + k_bytes + w_bytes


def machine_peaks(dtype: torch.dtype, working_set_bytes: int, reps: int = 5) -> tuple[float, float]:
    """(best flop/s of a 1024^3 GEMM, best copy bytes/s over a ``working_set_bytes`` buffer), 1 thread."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1024, 1024, dtype=dtype, generator=g), torch.randn(1024, 1024, dtype=dtype, generator=g)
    out = torch.empty(1024, 1024, dtype=dtype)
    src = torch.randn(max(working_set_bytes // 2 // a.element_size(), 1), dtype=dtype, generator=g)
    dst = torch.empty_like(src)
    gemm, copy = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        gemm.append(2 * 1024**3 / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(50):
            dst.copy_(src)
        copy.append(50 * 2 * src.numel() * src.element_size() / (time.perf_counter() - t0))
    return max(gemm), max(copy)


def record_product_rates(problem: LinearProblem, trials: int, reps: int = 9) -> dict[int, float]:
    """Seconds per end-to-end row of the loss quadratic forms (train + test) for one record's ``T p`` rows
    and for the trainer's stack of ``_RECORD_BATCH_ROWS`` rows; best of ``reps``, the two interleaved."""
    p, d = problem.num_classes, problem.packed_dim
    g = torch.Generator().manual_seed(2)
    sets = [m for m in (problem.train, problem.test) if m is not None and m.needs_quadratic]
    maps = {
        rows: torch.randn(max(rows // p, 1), p, d, dtype=torch.float64, generator=g)
        for rows in (trials * p, _RECORD_BATCH_ROWS)
    }
    best = dict.fromkeys(maps, math.inf)
    for _ in range(reps):
        for rows, b in maps.items():
            t0 = time.perf_counter()
            for m in sets:
                m.quadratic(b)
            best[rows] = min(best[rows], (time.perf_counter() - t0) / (b.shape[0] * p))
    return best


def with_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with ``threads`` torch threads (plumbing)."""

    def run() -> object:
        torch.set_num_threads(threads)
        return fn()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float64", action="store_true", help="train in float64 (default float32)")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--segment", type=int, default=None, help="updates per timed fast run (default 5000, quick 2500)")
    ap.add_argument("--naive-updates", type=int, default=None, help="straightforward updates (default 100, quick 30)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians reported)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="5000 train images, short segments")
    mode.add_argument("--full", action="store_true", help="also run the whole protocol (10 x 100000) once")
    ap.add_argument("--updates", type=int, default=100_000, help="updates of the --full protocol run")
    args = ap.parse_args()
    segment = args.segment or (2500 if args.quick else 5000)
    naive_updates = args.naive_updates or (30 if args.quick else 100)
    dtype = torch.float64 if args.float64 else torch.float32
    root = require_data("cifar10")
    run_mode = "quick" if args.quick else "full" if args.full else "default"
    print(f"torch {torch.__version__}, dtype {dtype}, CPU, {run_mode} mode")
    print(load_line("before"))

    x, labels = load_cifar10(root, "train", classes=(0, 1, 2, 3), subtract_mean=True)
    xt, lt = load_cifar10(root, "test", classes=(0, 1, 2, 3), subtract_mean=True)
    if args.quick:  # the first 1250 training images of each class; both sets still on the moment route (N > D')
        keep = torch.cat([torch.nonzero(labels == k).flatten()[:1250] for k in range(4)])
        x, labels = x[keep], labels[keep]
    torch.set_num_threads(1)
    prep_wall, prep_cpu, problem = cpu_and_wall(
        lambda: LinearProblem.from_data(x, labels, xt, lt, dtype=dtype, device="cpu")
    )
    print(f"CIFAR-4 train {tuple(x.shape)}, test {tuple(xt.shape)}; problem preparation (1 thread): "
          f"{prep_wall:.1f} s wall, {prep_cpu:.1f} s CPU")  # fmt: skip
    init = random_cnn_init(args.trials, (3, 32, 32), 4, SIGMA, SIGMA, seed=0)
    order = _SampleStream(x.shape[0], "epochs", seed=1, trials=1).take(naive_updates)[0]
    xs, ys = x[order].to(dtype), torch.eye(4, dtype=dtype)[labels][order]
    trial_updates = args.trials * segment

    def fast(updates: int, record_threads: int | None, overlap: bool = True) -> Callable[[], object]:
        return lambda: train_linear_cnn(
            problem, init, LR, updates, sampling="epochs", record_every=RECORD_EVERY, seed=1,
            threads=None, record_threads=record_threads, overlap_records=overlap,
        )  # fmt: skip

    def settings(updates: int, naive: int) -> dict[str, dict[str, Callable[[], object]]]:
        return {
            "training + recording": {
                "1": with_threads(1, fast(updates, None)),
                "1+2": with_threads(1, fast(updates, 2)),
                "2": with_threads(2, fast(updates, None)),
                "1 in line": with_threads(1, fast(updates, None, overlap=False)),
            },
            "stepping only": {t: with_threads(int(t), lambda: stepping_only(problem, init, updates)) for t in "12"},
            "straightforward": {t: with_threads(int(t), lambda: naive_run(xs[:naive], ys[:naive], init)) for t in "12"},
        }

    routes = settings(segment, naive_updates)
    per_update = {
        "training + recording": trial_updates,
        "stepping only": trial_updates,
        "straightforward": naive_updates,
    }
    # Warm-up and probe (short runs, untimed in the medians): a setting more than twice as slow as the
    # route's best in the probe is not repeated (on a busy machine a 2-thread round can take minutes).
    probe_s: dict[tuple[str, str], float] = {}
    for name, configs in settings(RECORD_EVERY, 5).items():
        for label, fn in configs.items():
            fn()
            probe_s[(name, label)] = cpu_and_wall(fn)[0]
    kept = {
        name: [c for c in configs if probe_s[(name, c)] <= 2 * min(probe_s[(name, o)] for o in configs)]
        for name, configs in routes.items()
    }
    for name, configs in routes.items():
        shown = ", ".join(f"{c}: {probe_s[(name, c)]:.3f} s" for c in configs)
        print(f"probe, {name}: {shown}; timed with {kept[name]}")
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_ in range(args.repeats):
        for name, configs in routes.items():
            for label in kept[name]:
                wall, cpu, _ = cpu_and_wall(configs[label])
                samples.setdefault((name, label), []).append((wall / per_update[name], cpu / per_update[name]))
        print(f"  round {round_ + 1}/{args.repeats} done; {load_line('now')}")
    torch.set_num_threads(1)

    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}
    best = {}
    for name in routes:
        label = min(kept[name], key=lambda c, name=name: med[(name, c)][0])
        best[name] = (label, *med[(name, label)])
        shown = ", ".join(
            f"{c}: {med[(name, c)][0] * 1e6:.2f} us wall / {med[(name, c)][1] * 1e6:.2f} us CPU" for c in kept[name]
        )
        print(f"{name}, per trial-update (median of {args.repeats}; settings = threads): {shown}; best {label}")
    train_s, step_s, naive_s = (best[k][1] for k in routes)

    c, r, p = problem.image_shape[0], problem.basis.size, problem.num_classes
    flops = step_kernel_flops(c, r, p)
    # the best of the protocol's trial count (operands in L2) and 8x it (per-call cost amortized)
    rates_small, rates_big = kernel_rates(problem, args.trials), kernel_rates(problem, 8 * args.trials)
    rates = {k: max(rates_small[k], rates_big[k]) for k in rates_small}
    floor_kernels = sum(f / rates[k] for k, f in flops.items())
    itemsize = torch.finfo(dtype).bits // 8
    step_bytes = fused_step_bytes(c, r, p, itemsize)
    peak_flops, peak_bw = machine_peaks(dtype, args.trials * step_bytes // 2)
    floor_fused = max(sum(flops.values()) / peak_flops, step_bytes / peak_bw)
    print(f"arithmetic floor of one trial-update: {sum(flops.values())} flops, {step_bytes} bytes (fused, two passes)")
    print(f"  (1) six step kernels at their best rates: {floor_kernels * 1e6:.2f} us; stepping only / floor = "
          f"{step_s / floor_kernels:.2f}")  # fmt: skip
    for k, f in flops.items():
        print(f"      {k}: {f} flops, {rates[k] / 1e9:.1f} GFLOP/s")
    print(f"  (2) fused kernel at the peaks ({peak_flops / 1e9:.1f} GFLOP/s GEMM, {peak_bw / 1e9:.1f} GB/s copy): "
          f"{floor_fused * 1e6:.2f} us; stepping only / floor = {step_s / floor_fused:.2f}")  # fmt: skip
    records = len(range(0, segment, RECORD_EVERY)) + 1
    sets = sum(1 for m in (problem.train, problem.test) if m is not None and m.needs_quadratic)
    quad_flops = sets * args.trials * p * problem.packed_dim**2 * 9 // 8  # 8 column blocks: (8 + 1) / 16 of 2 p D'^2
    per_row = record_product_rates(problem, args.trials)
    shown = ", ".join(f"{rows} rows {s * 1e6:.1f} us/row" for rows, s in per_row.items())
    print(f"records: loss quadratic forms {quad_flops / 1e6:.0f} Mflop per record ({sets} set(s), "
          f"{args.trials} trials); product time (1 thread) {shown}")  # fmt: skip
    print(
        f"recording every {RECORD_EVERY} updates adds {100 * (train_s / step_s - 1):.0f}% to the stepping time "
        f"({records} records per {segment}-update segment; the full protocol has 201 per 100000; "
        f"training + recording best setting {best['training + recording'][0]})"
    )
    cpu_share = 100 * (best["training + recording"][2] / best["stepping only"][2] - 1)
    in_line = med.get(("training + recording", "1 in line"))
    shown = f"{100 * (in_line[0] / step_s - 1):.0f}%" if in_line is not None else "not timed (probe too slow)"
    print(f"  by process CPU time it adds {cpu_share:.0f}% (the overlapped products still run, on the other core); "
          f"with the products in line (setting '1 in line') it adds {shown} by wall time")  # fmt: skip
    ratio_train, ratio_step = naive_s / train_s, naive_s / step_s
    print(f"RATIO per trial-update: {ratio_train:.0f} x (training + recording), {ratio_step:.0f} x (stepping only)")
    print(f"  (goal >= 500 x; by CPU time: {best['straightforward'][2] / best['training + recording'][2]:.0f} x "
          f"and {best['straightforward'][2] / best['stepping only'][2]:.0f} x)")  # fmt: skip

    # Same network, same samples: the fast trainer reproduces the naive route.
    model = naive_run(xs, ys, init)
    one = CNNParameters(init.kernel[:1].clone(), init.weight[:1].clone())
    check = train_linear_cnn(problem, one, LR, naive_updates, sampling="epochs", record_every=10**9, seed=1)
    k_err = np.abs(check.final["kernel"][0] - model.conv.weight.detach().double().numpy()[0]).max()
    w_err = np.abs(check.final["weight"][0] - model.fc.weight.detach().double().numpy()).max()
    scale = float(np.abs(check.final["kernel"][0]).max())
    print(f"agreement with the straightforward route after {naive_updates} updates: "
          f"max|Δkernel| = {k_err:.2e} (kernel max {scale:.2e}), max|Δweight| = {w_err:.2e}")  # fmt: skip

    if args.full:
        label = best["training + recording"][0]
        steps_threads, rec_threads = (int(v) for v in (label.split("+") * 2)[:2])
        torch.set_num_threads(steps_threads)
        wall, cpu, run = cpu_and_wall(
            lambda: train_linear_cnn(
                problem, init, LR, args.updates, sampling="epochs", record_every=RECORD_EVERY, seed=1,
                threads=None, record_threads=rec_threads,
            )
        )  # fmt: skip
        torch.set_num_threads(1)
        per = wall / (args.trials * args.updates)
        print(f"full protocol ({args.trials} trials x {args.updates} updates, {len(run.t)} records, setting {label}): "
              f"preparation {prep_wall:.1f} s + training {wall:.1f} s = {prep_wall + wall:.1f} s wall (goal <= 60 s), "
              f"{(prep_cpu + cpu):.1f} s CPU; {per * 1e6:.2f} us per trial-update")  # fmt: skip
        assert run.loss_test is not None
        print(f"final train loss (mean of trials) {run.loss_train[:, -1].mean():.4f}, "
              f"test {run.loss_test[:, -1].mean():.4f}")  # fmt: skip
    print(f"process peak RSS: {max_rss_mib():.0f} MiB")
    print(load_line("after"))


if __name__ == "__main__":
    main()
