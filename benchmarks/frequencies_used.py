"""Benchmark: the three "which frequencies does a model use" analyses against their straightforward routes.

On a small CIFAR-10-sized CNN (``experiments.uses_common.small_cifar_cnn``, width 16, float32, random init:
timing does not depend on training) and real CIFAR-10 test images, in one process, one thread:

* ``fourier_heatmap`` (conjugate symmetry + many basis images per forward pass) against one basis image per
  forward pass over every frequency of the 32×32 grid (the companion repositories' loop); same signs, so the
  two error maps agree up to float32 ties;
* ``input_frequency_sensitivity`` (``torch.func.vmap(grad)``) against one ``torch.autograd.grad`` per sample in
  a Python loop, then the same orthonormal FFT, and against the companion repository's route (one
  ``torch.autograd.functional.jacobian`` per sample with respect to the complex spectrum, through ``ifft2``);
* ``fit_energy_profile`` (closed-form NNLS on a zoomed τ grid) against a brute-force fit: 20 000 Adam steps on
  the log-parameters of the same relative least-squares objective, on a profile planted from the real CIFAR-10
  patch eigenvalues with 5 % multiplicative noise.

Each route and its reference are called alternately (``--repeats`` times each, default 3) so both see the
same machine load; prints the median of each, the ratio per route and ``os.getloadavg()`` before and after.
The heat map is also timed with ``channels_last=False`` (conjugate symmetry and batching alone), to show what
the memory layout adds. Run: python benchmarks/frequencies_used.py [--quick] [--repeats N]
(``--quick``: 8 heat-map images, 64 sensitivity images, 2 000 brute-force steps; a smoke test, not the table).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from _common import load_line, require_data
from freqlens.analysis.first_layer_energy import (
    first_layer_energy_profile,
    fit_energy_profile,
    linear_energy_prediction,
)
from freqlens.analysis.frequency_use import fourier_basis, fourier_heatmap, input_frequency_sensitivity
from freqlens.datasets import load_cifar10
from freqlens.experiments.uses_common import small_cifar_cnn

FULL = {"heatmap_images": 32, "sensitivity_images": 256, "fit_steps": 20_000}
QUICK = {"heatmap_images": 8, "sensitivity_images": 64, "fit_steps": 2_000}


def alternating(routes: Sequence[Callable[[], Any]], repeats: int) -> list[tuple[float, float, Any]]:
    """Median wall time and median process CPU time over ``repeats`` calls of each route, the routes called in
    turn (so all see the same machine load), and each route's last result."""
    wall: list[list[float]] = [[] for _ in routes]
    cpu: list[list[float]] = [[] for _ in routes]
    results: list[Any] = [None] * len(routes)
    for _ in range(repeats):
        for i, fn in enumerate(routes):
            w0, c0 = time.perf_counter(), time.process_time()
            results[i] = fn()
            wall[i].append(time.perf_counter() - w0)
            cpu[i].append(time.process_time() - c0)
    return [(statistics.median(w), statistics.median(c), r) for w, c, r in zip(wall, cpu, results, strict=True)]


def heatmap_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> np.ndarray:
    """One basis image per forward pass, every frequency of the grid, signs as documented by fourier_heatmap."""
    n, c, h, w = x.shape
    conj = [((-(m // w)) % h) * w + (-(m % w)) % w for m in range(h * w)]
    reps = [m for m in range(h * w) if m <= conj[m]]
    row = {m: i for i, m in enumerate(reps)}
    signs = (2 * torch.randint(0, 2, (len(reps), n, c), generator=torch.Generator().manual_seed(0)) - 1).float()
    out = np.zeros(h * w)
    with torch.no_grad():
        for m in range(h * w):
            basis = fourier_basis((h, w), np.array([[m // w, m % w]]), dtype=torch.float32)[0]
            pred = model(x + eps * signs[row[min(m, conj[m])], :, :, None, None] * basis).argmax(1)
            out[m] = float((pred != y).float().mean())
    return np.fft.fftshift(out.reshape(h, w))


def sensitivity_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    acc = torch.zeros(x.shape[1:], dtype=torch.float64)
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xi), y[i : i + 1]), xi)
        acc += torch.fft.fft2(g[0].double(), norm="ortho").abs()
    return np.fft.fftshift((acc / x.shape[0]).numpy(), axes=(-2, -1))


def sensitivity_companion_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The companion repository's route (Godfrey et al., ``pnnl/frequency_sensitivity``), rewritten: per sample, the
    Jacobian (``torch.autograd.functional.jacobian``) of the loss with respect to the complex orthonormal spectrum
    ``x̂``, evaluated through ``Re ifft2(x̂)``. For a unitary ``F`` that gradient is ``F ∇_x L``, so its modulus is
    the same map as :func:`sensitivity_loop`'s."""
    acc = torch.zeros(x.shape[1:], dtype=torch.float64)
    spectra = torch.fft.fft2(x, norm="ortho")
    for i in range(x.shape[0]):

        def loss(v: torch.Tensor, i: int = i) -> torch.Tensor:
            return F.cross_entropy(model(torch.fft.ifft2(v.unsqueeze(0), norm="ortho").real), y[i : i + 1])

        jac = torch.autograd.functional.jacobian(loss, spectra[i])
        acc += jac.abs().double()
    return np.fft.fftshift((acc / x.shape[0]).numpy(), axes=(-2, -1))


def brute_force_fit(lam: np.ndarray, energy: np.ndarray, steps: int) -> tuple[float, float, float, float]:
    """``steps`` (20 000) Adam steps on (log α, log β, log τ) of Σ (E_pred/E - 1)²; returns α, β, τ, relative RMS."""
    lam_t = torch.from_numpy(lam)
    e_t = torch.from_numpy(energy)
    theta = torch.tensor([np.log(energy.mean()), np.log(energy.mean()), np.log(1.0 / lam.mean())], requires_grad=True)
    opt = torch.optim.Adam([theta], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        a, b, t = theta.exp()
        decay = torch.exp(-lam_t * t)
        loss = ((a * decay**2 + b * (1 - decay) ** 2) / e_t - 1).pow(2).sum()
        loss.backward()
        opt.step()
    a, b, t = (float(v) for v in theta.detach().exp())
    pred = linear_energy_prediction(lam, a, b, t)
    return a, b, t, float(np.sqrt(np.mean((pred / energy - 1) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=3, help="calls of each route (median reported; >= 3)")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error(f"--repeats must be >= 3 (medians of at least 3 calls), got {args.repeats}")
    size = QUICK if args.quick else FULL
    root = require_data("cifar10")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {'quick' if args.quick else 'full'} mode")
    print(load_line("before"))
    x_all, y_all = load_cifar10(root / "cifar10", "test")
    n_h, n_s = size["heatmap_images"], size["sensitivity_images"]
    x, y = x_all[:n_s], y_all[:n_s]
    model = small_cifar_cnn(16, 5, 10, seed=0, mean=x.mean(dim=(0, 2, 3)), std=x.std(dim=(0, 2, 3))).eval()
    rows = []

    xh, yh = x[:n_h], y[:n_h]
    cl, plain, (slow_s, slow_c, ref) = alternating(
        [
            lambda: fourier_heatmap(model, (xh, yh), eps=4.0, batch_size=n_h, progress=False),
            lambda: fourier_heatmap(model, (xh, yh), eps=4.0, batch_size=n_h, channels_last=False, progress=False),
            lambda: heatmap_loop(model, xh, yh, 4.0),
        ],
        args.repeats,
    )
    problem = f"{n_h} images x 1024 freq"
    for label, (fast_s, fast_c, res) in (("fourier_heatmap", cl), ("  same, channels_last=False", plain)):
        diff = f"max |diff| {float(np.abs(res.values - ref).max()):.3g}"
        rows.append((label, problem, fast_s, slow_s, fast_c, slow_c, diff))

    (fast_s, fast_c, sens), (slow_s, slow_c, ref_s), (comp_s, comp_c, ref_j) = alternating(
        [
            lambda: input_frequency_sensitivity(model, (x, y), batch_size=128, progress=False),
            lambda: sensitivity_loop(model, x, y),
            lambda: sensitivity_companion_loop(model, x, y),
        ],
        args.repeats,
    )
    for label, s_s, s_c, ref_map in (
        ("input_frequency_sensitivity", slow_s, slow_c, ref_s),
        ("  vs the companion's jacobian", comp_s, comp_c, ref_j),
    ):
        rel = float(np.abs(sens.sensitivity - ref_map).max() / np.abs(ref_map).max())
        rows.append((label, f"{n_s} images", fast_s, s_s, fast_c, s_c, f"max rel diff {rel:.2g}"))

    prof = first_layer_energy_profile(model, x[:64], fit=False, progress=False)
    lam = prof.eigenvalues
    planted = linear_energy_prediction(lam, 1e-2, 3e-3, 0.5 / float(np.median(lam)))
    noisy = planted * np.exp(0.05 * np.random.default_rng(0).standard_normal(lam.size))
    steps = size["fit_steps"]
    (fast_s, fast_c, fit), (slow_s, slow_c, brute) = alternating(
        [lambda: fit_energy_profile(lam, noisy), lambda: brute_force_fit(lam, noisy, steps)], args.repeats
    )
    note = f"rel RMS {fit.relative_rms:.4f} vs brute force ({steps} steps) {brute[3]:.4f}"
    rows.append(("fit_energy_profile", f"{lam.size} PCA components", fast_s, slow_s, fast_c, slow_c, note))

    print(f"medians of {args.repeats} alternating calls each (wall seconds; process CPU seconds beside them)")
    head = f"{'route':30s} {'problem':24s} {'freqlens s':>10s} {'reference s':>11s} {'ratio':>7s}"
    print(f"{head} {'cpu ratio':>9s}  check")
    for name, problem, f_s, s_s, f_c, s_c, check in rows:
        line = f"{name:30s} {problem:24s} {f_s:10.4f} {s_s:11.4f} {s_s / f_s:6.1f}x"
        print(f"{line} {s_c / max(f_c, 1e-9):8.1f}x  {check}")
    print(load_line("after"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
