"""Benchmark: the CIFAR-4 protocol of the linear-CNN paper with the fast trainer (issue 3).

Protocol: CIFAR-10 classes 0-3, 20000 train / 4000 test images 3x32x32, training mean subtracted, p = 4,
10 independent trials x 100000 single-sample SGD updates (shuffled epochs), A(t) and the train and test
losses on the full sets every 500 updates (201 records), plus |k̂_m(t)| and the balance ratios.
Goals: at most 60 s wall on a 2-core CPU and at least 500x faster per trial-update (one single-sample
step of one network) than the straightforward PyTorch route, which is timed in the same process:
``F.pad(..., mode="circular")`` with n-1 wrapped rows/columns + ``nn.Conv2d(3, 1, 32)`` + ``nn.Linear``,
autograd, ``torch.optim.SGD``, one sample per step. The first naive steps are also replayed by the
fast trainer (one trial, same samples) to check that both compute the same network.

Run: python benchmarks/linear_cnn_training.py [--float64] [--device cuda] [--updates N] [--trials T]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _common import max_rss_mib, require_data
from freqlens.datasets import load_cifar10
from freqlens.training.linear_init import CNNParameters, random_cnn_init
from freqlens.training.linear_problem import LinearProblem
from freqlens.training.linear_trainer import _SampleStream, train_linear_cnn

LR = 5.625e-5  # the pinson-fig5 CIFAR-4 CNN learning rate
SIGMA = 1e-4


class NaiveLinearCNN(nn.Module):
    """The straightforward implementation: end-wrap circular padding + Conv2d(3 -> 1, 32x32) + Linear."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 32, bias=False, dtype=dtype)
        self.fc = nn.Linear(32 * 32, 4, bias=False, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(F.pad(x, (0, 31, 0, 31), mode="circular")).flatten(1))


def naive_seconds_per_update(
    x: torch.Tensor, labels: torch.Tensor, init: CNNParameters, order: torch.Tensor, device: str, repeats: int
) -> tuple[float, NaiveLinearCNN]:
    """Median over ``repeats`` of (time for ``len(order)`` single-sample SGD steps) / steps."""
    y = torch.eye(4, dtype=x.dtype)[labels]
    times = []
    model = NaiveLinearCNN(x.dtype).to(device)
    for _ in range(repeats):
        model = NaiveLinearCNN(x.dtype).to(device)
        with torch.no_grad():
            model.conv.weight.copy_(init.kernel[0].unsqueeze(0).to(device, x.dtype))
            model.fc.weight.copy_(init.weight[0].to(device, x.dtype))
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        xs, ys = x[order].to(device), y[order].to(device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(len(order)):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(model(xs[i : i + 1]), ys[i : i + 1]).backward()
            opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / len(order))
    return statistics.median(times), model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float64", action="store_true", help="train in float64 (default float32)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--updates", type=int, default=100_000)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--naive-updates", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1, help="protocol repetitions (median reported)")
    args = ap.parse_args()
    dtype = torch.float64 if args.float64 else torch.float32
    root = require_data("cifar10")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, dtype {dtype}")

    t0 = time.perf_counter()
    x, labels = load_cifar10(root, "train", classes=(0, 1, 2, 3), subtract_mean=True)
    xt, lt = load_cifar10(root, "test", classes=(0, 1, 2, 3), subtract_mean=True)
    load_s = time.perf_counter() - t0
    print(f"CIFAR-4 read: train {tuple(x.shape)}, test {tuple(xt.shape)} in {load_s:.1f} s (tar.gz + unpickle)")

    init = random_cnn_init(args.trials, (3, 32, 32), 4, SIGMA, SIGMA, seed=0)
    walls, prep, train = [], [], []
    run = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        problem = LinearProblem.from_data(x, labels, xt, lt, dtype=dtype, device=args.device)
        t1 = time.perf_counter()
        run = train_linear_cnn(problem, init, LR, args.updates, sampling="epochs", record_every=500, seed=1)
        t2 = time.perf_counter()
        walls.append(t2 - t0)
        prep.append(t1 - t0)
        train.append(t2 - t1)
    assert run is not None
    wall, prep_s, train_s = statistics.median(walls), statistics.median(prep), statistics.median(train)
    trial_updates = args.trials * args.updates
    ours = train_s / trial_updates
    print(
        f"fast trainer, full protocol ({args.trials} trials x {args.updates} updates, {len(run.t)} records of "
        f"A(t) + train/test loss): {wall:.1f} s wall (median of {args.repeats}; goal <= 60 s)"
    )
    print(f"  of which: problem preparation (spectra, moments) {prep_s:.1f} s, training + recording {train_s:.1f} s")
    print(f"  per trial-update (training + recording): {ours * 1e6:.2f} us")
    # Stepping alone (records only at both ends), same process, for the pure per-step cost.
    steps_only = min(args.updates, 20_000)
    t0 = time.perf_counter()
    train_linear_cnn(problem, init, LR, steps_only, sampling="epochs", record_every=steps_only, seed=1)
    step_s = (time.perf_counter() - t0) / (args.trials * steps_only)
    print(f"  per trial-update, stepping only ({steps_only} updates): {step_s * 1e6:.2f} us")

    order = _SampleStream(x.shape[0], "epochs", seed=1, trials=1).take(args.naive_updates)[0]
    # The naive route gets its best thread count (on a busy 2-core machine OpenMP spinning can make the
    # 2-thread convolution 20x slower than 1 thread).
    threads = torch.get_num_threads()
    timings = {}
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        timings[n_threads], model = naive_seconds_per_update(x.to(dtype), labels, init, order, args.device, repeats=3)
    torch.set_num_threads(threads)
    best = min(timings, key=timings.__getitem__)
    naive = timings[best]
    shown = ", ".join(f"{k} thread(s) {v * 1e3:.2f} ms" for k, v in timings.items())
    print(f"straightforward PyTorch (pad + Conv2d 32x32 + Linear, autograd, SGD), per update: {shown}; best {best}")
    print(
        f"RATIO per trial-update: {naive / ours:.0f}x (training + recording), "
        f"{naive / step_s:.0f}x (stepping only); goal >= 500x"
    )
    # Same network, same samples: the fast trainer reproduces the naive route.
    one = CNNParameters(init.kernel[:1].clone(), init.weight[:1].clone())
    check = train_linear_cnn(problem, one, LR, args.naive_updates, sampling="epochs", record_every=10**9, seed=1)
    k_err = np.abs(check.final["kernel"][0] - model.conv.weight.detach().cpu().double().numpy()[0]).max()
    w_err = np.abs(check.final["weight"][0] - model.fc.weight.detach().cpu().double().numpy()).max()
    scale = float(np.abs(check.final["kernel"][0]).max())
    print(f"agreement with the straightforward route after {args.naive_updates} updates: "
          f"max|Δkernel| = {k_err:.2e} (kernel max {scale:.2e}), max|Δweight| = {w_err:.2e}")  # fmt: skip
    print(
        f"final train loss (mean of trials) {run.loss_train[:, -1].mean():.4f}, test {run.loss_test[:, -1].mean():.4f}"
    )
    print(f"process peak RSS: {max_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
