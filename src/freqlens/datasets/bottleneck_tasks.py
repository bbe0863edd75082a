"""Tasks of the bottleneck paper's experiments (conv_bottleneck §4.2-4.4). Every lost detail is an
argument with a documented default ([A] choices of the spec; see ``docs/conv_bottleneck.md``).

* :func:`mnist_digit_downscaled` — MNIST images of one digit, resized to ``13×13`` (Fig. 2).
* :func:`lowfreq_shapes_times_pattern` — random low-frequency shapes (``‖ν‖₁ ≤ 2``) times a ``(5, 5)``
  carrier (Fig. 3): the images only have signal around ``±(5, 5)``.
* :func:`ball_under_gravity` — a blob on the torus under constant gravity: 4 frames in, the next 4 out
  (Fig. 4). Blobs are rendered in Fourier space, so sub-pixel shifts are exact and the map is exactly
  shift-equivariant on the torus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_positive_int
from ..fourier import signed_frequencies
from .readers import load_mnist

__all__ = [
    "BallTrajectories",
    "ball_under_gravity",
    "low_frequency_shapes",
    "lowfreq_shapes_times_pattern",
    "mnist_digit_downscaled",
    "render_blobs",
]


def mnist_digit_downscaled(
    root: str | Path,
    digit: int = 0,
    size: int = 13,
    split: str = "train",
    method: Literal["area", "bilinear"] = "area",
    limit: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """MNIST images of ``digit`` resized from 28×28 to ``size×size``: ``(N, 1, size, size)`` in ``[0, 1]``.

    ``method="area"`` averages over each output pixel's (overlapping) window (``adaptive_avg_pool2d``, the
    default [A]); ``"bilinear"`` uses anti-aliased bilinear resizing. ``limit`` keeps the first ``limit``.
    """
    if not isinstance(digit, int) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an integer in 0..9, got {digit!r}")
    size = check_positive_int("size", size)
    if size > 28:
        raise ValueError(f"size must be at most 28 (downscaling only), got {size}")
    if method not in ("area", "bilinear"):
        raise ValueError(f"method must be 'area' or 'bilinear', got {method!r}")
    x, labels = load_mnist(root, split, dtype=torch.float32)
    x = x[labels == digit]
    if limit is not None:
        x = x[: check_positive_int("limit", limit)]
    if method == "area":
        small = F.adaptive_avg_pool2d(x, size)
    else:
        small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return small.clamp(0.0, 1.0).to(dtype)


def _low_frequency_representatives(max_l1: int) -> list[tuple[int, int]]:
    """One member of each ``±ν`` pair with ``‖ν‖₁ ≤ max_l1`` (first non-zero coordinate positive), plus 0."""
    out = []
    for k in range(-max_l1, max_l1 + 1):
        for l in range(-max_l1, max_l1 + 1):
            if abs(k) + abs(l) <= max_l1 and (k > 0 or (k == 0 and l >= 0)):
                out.append((k, l))
    return out


def low_frequency_shapes(
    count: int, n: int = 16, max_l1: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Random real images ``s(p) = Σ_{‖ν‖₁≤max_l1} a_ν cos(2π⟨ν,p⟩/n) + b_ν sin(2π⟨ν,p⟩/n)`` (one ``ν`` per ± pair,
    Gaussian coefficients of variance ``1/#terms`` so ``s`` has unit variance per pixel): ``(count, 1, n, n)``.

    The spectrum is supported on ``{‖ν‖₁ ≤ max_l1}``: ``1 + 2·#pairs`` real dimensions (5 for ``max_l1 = 1``,
    13 for ``max_l1 = 2``). Used for the shapes of Fig. 3 and as the ``cbn-depth`` task.
    """
    count = check_positive_int("count", count)
    n = check_positive_int("n", n)
    if 2 * max_l1 >= n:
        raise ValueError(f"max_l1={max_l1} must stay below the Nyquist frequency of n={n}")
    rng = np.random.default_rng([seed, 3])
    reps = _low_frequency_representatives(max_l1)
    p = np.arange(n)
    terms = 2 * len(reps) - 1
    a = rng.standard_normal((count, len(reps))) / np.sqrt(terms)
    b = rng.standard_normal((count, len(reps))) / np.sqrt(terms)
    shape = np.zeros((count, n, n))
    for j, (k, l) in enumerate(reps):
        arg = 2 * np.pi * (k * p[:, None] + l * p[None, :]) / n
        shape += a[:, j, None, None] * np.cos(arg)
        if (k, l) != (0, 0):
            shape += b[:, j, None, None] * np.sin(arg)
    return torch.from_numpy(shape[:, None]).to(dtype)


def lowfreq_shapes_times_pattern(
    count: int,
    n: int = 16,
    carrier: tuple[int, int] = (5, 5),
    max_l1: int = 2,
    random_phase: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Images ``x = s · cos(2π⟨carrier, p⟩/n + φ)`` with a random low-frequency shape ``s``
    (:func:`low_frequency_shapes`), spec §4.3. Spectrum support: ``±carrier + {‖ν‖₁ ≤ max_l1}``. ``φ`` is
    uniform in ``[0, 2π)`` per image when ``random_phase`` (else 0). Returns ``(count, 1, n, n)``.
    """
    count = check_positive_int("count", count)
    n = check_positive_int("n", n)
    kc, lc = int(carrier[0]), int(carrier[1])
    if 2 * (max(abs(kc), abs(lc)) + max_l1) >= n:
        raise ValueError(f"carrier {carrier} ± ‖ν‖₁ ≤ {max_l1} must stay below the Nyquist frequency of n={n}")
    shape = low_frequency_shapes(count, n, max_l1, seed, torch.float64)[:, 0].numpy()
    rng = np.random.default_rng([seed, 5])
    p = np.arange(n)
    phase = rng.uniform(0.0, 2 * np.pi, count) if random_phase else np.zeros(count)
    carrier_arg = 2 * np.pi * (kc * p[:, None] + lc * p[None, :]) / n
    pattern = np.cos(carrier_arg[None] + phase[:, None, None])
    return torch.from_numpy((shape * pattern)[:, None]).to(dtype)


def render_blobs(positions: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """Periodic Gaussian blobs at real ``positions (..., 2)`` (row, col) on the ``n×n`` torus: ``(..., n, n)``.

    Rendered as ``Re ifft2(G(ω) e^{-2πi⟨ω, p⟩/n})`` with ``G(ω) = exp(−2π²σ²‖ω‖²/n²)`` (Nyquist terms
    dropped so sub-pixel shifts stay exact), scaled so a blob at an integer position has peak 1.
    """
    f = signed_frequencies(n).astype(np.float64)
    gauss = np.exp(-2 * np.pi**2 * sigma**2 * (f[:, None] ** 2 + f[None, :] ** 2) / n**2)
    if n % 2 == 0:
        gauss[n // 2, :] = 0.0
        gauss[:, n // 2] = 0.0
    pos = np.asarray(positions, dtype=np.float64)
    phase = np.exp(-2j * np.pi * (f[:, None] * pos[..., 0, None, None] + f[None, :] * pos[..., 1, None, None]) / n)
    img = np.fft.ifft2(gauss * phase).real
    return img * (n * n / gauss.sum())


@dataclass(frozen=True)
class BallTrajectories:
    """``inputs (N, 4, n, n)`` (frames 0-3), ``targets (N, 4, n, n)`` (frames 4-7), and the true
    ``positions (N, 8, 2)`` and ``velocities (N, 8, 2)`` in (row, col) pixels (rows point down)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    positions: np.ndarray
    velocities: np.ndarray


def ball_under_gravity(
    count: int,
    n: int = 16,
    frames_in: int = 4,
    frames_out: int = 4,
    gravity: float = 0.25,
    max_speed: float = 1.0,
    sigma: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> BallTrajectories:
    """A ball under gravity on the ``n×n`` torus (spec §4.4, [A] choices documented in the docs).

    ``p_t = p_0 + v_0 t + ½ g t² e_row`` and ``v_t = v_0 + g t e_row`` for ``t = 0 … frames_in+frames_out−1``,
    with ``p_0`` uniform on the torus and ``v_0`` uniform in ``[−max_speed, max_speed]²``; each frame is a
    periodic Gaussian blob of width ``sigma`` (:func:`render_blobs`).
    """
    count = check_positive_int("count", count)
    n = check_positive_int("n", n)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    rng = np.random.default_rng([seed, 4])
    total = frames_in + frames_out
    t = np.arange(total, dtype=np.float64)
    p0 = rng.uniform(0.0, n, (count, 2))
    v0 = rng.uniform(-max_speed, max_speed, (count, 2))
    accel = np.array([gravity, 0.0])
    pos = p0[:, None, :] + v0[:, None, :] * t[None, :, None] + 0.5 * accel * t[None, :, None] ** 2
    vel = v0[:, None, :] + accel * t[None, :, None]
    frames = render_blobs(np.mod(pos, n), n, sigma)
    x = torch.from_numpy(frames[:, :frames_in]).to(dtype)
    y = torch.from_numpy(frames[:, frames_in:]).to(dtype)
    return BallTrajectories(inputs=x, targets=y, positions=np.mod(pos, n), velocities=vel)
