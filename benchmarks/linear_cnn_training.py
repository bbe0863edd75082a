"""Benchmark: the CIFAR-4 protocol of the linear-CNN paper with the fast trainer (issues 3, 17).

Protocol: CIFAR-10 classes 0-3, 20000 train / 4000 test images 3x32x32, training mean subtracted, p = 4,
10 independent trials, single-sample SGD (shuffled epochs), A(t) and the train and test losses on the
full sets every 500 updates (plus |k̂_m(t)| and the balance ratios), float32.

What is timed, all in one process, interleaved so that a change of load hits every route alike:
each of ``--repeats`` rounds runs, for 1 and for 2 torch threads, (a) the fast trainer for
``--segment`` updates with records every 500 (training + recording), (b) the same updates through the
trainer's stepping kernels alone (stepping only) and (c) the straightforward PyTorch route,
``F.pad(..., mode="circular")`` with n-1 wrapped rows/columns + ``nn.Conv2d(3, 1, 32)`` + ``nn.Linear``,
autograd, ``torch.optim.SGD``, one sample per step, for ``--naive-updates`` updates. Every route is
quoted as the median over the rounds at its best thread count (a short untimed probe first warms up
each route and drops a thread count more than twice as slow as the other);
wall time is what the ratio uses, process CPU time is printed beside it (less sensitive to other jobs
on a shared machine).

Arithmetic floor of one trial-update: the real flops of the six step kernels (counted below) divided
by the best rate each kernel reaches on this machine (the same torch kernels and per-trial shapes,
timed back to back with the protocol's trial count and with 8x the trials, so that the per-call cost
is amortized), summed over the kernels. It excludes Python, dispatch and the
sample gathering.

``--full`` also runs the whole protocol once (10 x 100000 updates, 201 records; goal <= 60 s wall).
The naive network's updates are replayed by the fast trainer (one trial, same samples) to check that
both compute the same network.

Run: python benchmarks/linear_cnn_training.py [--full] [--float64] [--repeats 5] [--segment 5000]
"""

from __future__ import annotations

import argparse
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
from freqlens.training.linear_trainer import _CNN_CHUNK, _CNNState, _CNNStepper, _SampleStream, train_linear_cnn

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
    data = (problem.coeffs * (problem.n / state.scale).to(problem.dtype)).contiguous()
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float64", action="store_true", help="train in float64 (default float32)")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--segment", type=int, default=5000, help="updates per timed fast run (records every 500)")
    ap.add_argument("--naive-updates", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians reported)")
    ap.add_argument("--full", action="store_true", help="also run the whole protocol (10 x 100000) once")
    ap.add_argument("--updates", type=int, default=100_000, help="updates of the --full protocol run")
    args = ap.parse_args()
    dtype = torch.float64 if args.float64 else torch.float32
    root = require_data("cifar10")
    print(f"torch {torch.__version__}, dtype {dtype}, CPU")
    print(load_line("before"))

    x, labels = load_cifar10(root, "train", classes=(0, 1, 2, 3), subtract_mean=True)
    xt, lt = load_cifar10(root, "test", classes=(0, 1, 2, 3), subtract_mean=True)
    torch.set_num_threads(1)
    prep_wall, prep_cpu, problem = cpu_and_wall(
        lambda: LinearProblem.from_data(x, labels, xt, lt, dtype=dtype, device="cpu")
    )
    print(f"CIFAR-4 train {tuple(x.shape)}, test {tuple(xt.shape)}; problem preparation (1 thread): "
          f"{prep_wall:.1f} s wall, {prep_cpu:.1f} s CPU")  # fmt: skip
    init = random_cnn_init(args.trials, (3, 32, 32), 4, SIGMA, SIGMA, seed=0)
    order = _SampleStream(x.shape[0], "epochs", seed=1, trials=1).take(args.naive_updates)[0]
    xs, ys = x[order].to(dtype), torch.eye(4, dtype=dtype)[labels][order]
    trial_updates = args.trials * args.segment

    routes: dict[str, Callable[[], object]] = {
        "training + recording": lambda: train_linear_cnn(
            problem, init, LR, args.segment, sampling="epochs", record_every=RECORD_EVERY, seed=1, threads=None
        ),
        "stepping only": lambda: stepping_only(problem, init, args.segment),
        "straightforward": lambda: naive_run(xs, ys, init),
    }
    per_update = {"training + recording": trial_updates, "stepping only": trial_updates}
    # Warm-up and thread probe (short runs, untimed in the medians): a thread count more than twice as
    # slow as the other in the probe is not repeated (on a busy machine a 2-thread round can take minutes).
    probes: dict[str, Callable[[], object]] = {
        "training + recording": lambda: train_linear_cnn(
            problem, init, LR, RECORD_EVERY, sampling="epochs", record_every=RECORD_EVERY, seed=1, threads=None
        ),
        "stepping only": lambda: stepping_only(problem, init, RECORD_EVERY),
        "straightforward": lambda: naive_run(xs[:5], ys[:5], init),
    }
    probe_s: dict[tuple[str, int], float] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, fn in probes.items():
            fn()
            probe_s[(name, threads)] = cpu_and_wall(fn)[0]
    kept = {
        name: [t for t in (1, 2) if probe_s[(name, t)] <= 2 * min(probe_s[(name, 1)], probe_s[(name, 2)])]
        for name in routes
    }
    for name in routes:
        print(f"thread probe, {name}: 1 thread {probe_s[(name, 1)]:.3f} s, 2 threads {probe_s[(name, 2)]:.3f} s; "
              f"timed with {kept[name]}")  # fmt: skip
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, fn in routes.items():
                if threads not in kept[name]:
                    continue
                wall, cpu, _ = cpu_and_wall(fn)
                div = per_update.get(name, args.naive_updates)
                samples.setdefault((name, threads), []).append((wall / div, cpu / div))
    torch.set_num_threads(1)

    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}
    best = {}
    for name in routes:
        th = min(kept[name], key=lambda t, name=name: med[(name, t)][0])
        best[name] = (th, *med[(name, th)])
        shown = ", ".join(
            f"{t} thread(s) {med[(name, t)][0] * 1e6:.2f} us wall / {med[(name, t)][1] * 1e6:.2f} us CPU"
            for t in kept[name]
        )
        print(f"{name}, per trial-update (median of {args.repeats}): {shown}; best {th}")
    train_s, step_s, naive_s = (best[k][1] for k in routes)
    flops = step_kernel_flops(problem.image_shape[0], problem.basis.size, problem.num_classes)
    # the best of the protocol's trial count (operands in L2) and 8x it (per-call cost amortized)
    rates_small, rates_big = kernel_rates(problem, args.trials), kernel_rates(problem, 8 * args.trials)
    rates = {k: max(rates_small[k], rates_big[k]) for k in rates_small}
    floor_s = sum(f / rates[k] for k, f in flops.items())
    print(
        f"arithmetic floor of one trial-update: {sum(flops.values())} flops over the six step kernels at their "
        f"best rates = {floor_s * 1e6:.2f} us (1 thread); stepping only / floor = {step_s / floor_s:.2f}"
    )
    for k, f in flops.items():
        print(f"  {k}: {f} flops, {rates[k] / 1e9:.1f} GFLOP/s")
    records = len(range(0, args.segment, RECORD_EVERY)) + 1
    print(
        f"recording every {RECORD_EVERY} updates adds {100 * (train_s / step_s - 1):.0f}% to the stepping time "
        f"({records} records per {args.segment}-update segment; the full protocol has 201 per 100000)"
    )
    ratio_train, ratio_step = naive_s / train_s, naive_s / step_s
    print(f"RATIO per trial-update: {ratio_train:.0f} x (training + recording), {ratio_step:.0f} x (stepping only)")
    print(f"  (goal >= 500 x; by CPU time: {best['straightforward'][2] / best['training + recording'][2]:.0f} x "
          f"and {best['straightforward'][2] / best['stepping only'][2]:.0f} x)")  # fmt: skip

    # Same network, same samples: the fast trainer reproduces the naive route.
    model = naive_run(xs, ys, init)
    one = CNNParameters(init.kernel[:1].clone(), init.weight[:1].clone())
    check = train_linear_cnn(problem, one, LR, args.naive_updates, sampling="epochs", record_every=10**9, seed=1)
    k_err = np.abs(check.final["kernel"][0] - model.conv.weight.detach().double().numpy()[0]).max()
    w_err = np.abs(check.final["weight"][0] - model.fc.weight.detach().double().numpy()).max()
    scale = float(np.abs(check.final["kernel"][0]).max())
    print(f"agreement with the straightforward route after {args.naive_updates} updates: "
          f"max|Δkernel| = {k_err:.2e} (kernel max {scale:.2e}), max|Δweight| = {w_err:.2e}")  # fmt: skip

    if args.full:
        th = best["training + recording"][0]
        torch.set_num_threads(th)
        wall, cpu, run = cpu_and_wall(
            lambda: train_linear_cnn(
                problem, init, LR, args.updates, sampling="epochs", record_every=RECORD_EVERY, seed=1, threads=None
            )
        )
        torch.set_num_threads(1)
        per = wall / (args.trials * args.updates)
        print(f"full protocol ({args.trials} trials x {args.updates} updates, {len(run.t)} records, {th} thread(s)): "
              f"preparation {prep_wall:.1f} s + training {wall:.1f} s = {prep_wall + wall:.1f} s wall (goal <= 60 s), "
              f"{(prep_cpu + cpu):.1f} s CPU; {per * 1e6:.2f} us per trial-update")  # fmt: skip
        print(f"final train loss (mean of trials) {run.loss_train[:, -1].mean():.4f}, "
              f"test {run.loss_test[:, -1].mean():.4f}")  # fmt: skip
    print(f"process peak RSS: {max_rss_mib():.0f} MiB")
    print(load_line("after"))


if __name__ == "__main__":
    main()
