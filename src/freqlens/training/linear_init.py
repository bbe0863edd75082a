"""Initial conditions for many independent trials of the linear CNN / FCNN (spec §6.2-§6.3, §9).

All parameters are returned in the models' own layout (:mod:`freqlens.models.linear`), float64, with a
leading trial axis ``T``: ``CNNParameters(kernel (T, C, n, n), weight (T, p, hidden))`` and
``FCNNParameters(w1 (T, hidden, D), w2 (T, p, hidden))``. Randomness comes only from
:func:`trial_generator`, so trial ``i`` of seed ``s`` is the same whatever the number of trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_positive_int, describe
from ..fourier import vec2d_dft
from ..structure import DatasetStructure

__all__ = [
    "CNNParameters",
    "FCNNParameters",
    "aligned_balanced_cnn_init",
    "matched_fcnn_init",
    "mode_supports",
    "random_cnn_init",
    "random_fcnn_init",
    "trial_generator",
]


def trial_generator(seed: int, trial: int, stream: int = 0) -> torch.Generator:
    """CPU generator for ``(seed, trial, stream)``; streams separate e.g. initialisation from sampling."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    state = np.random.SeedSequence([int(seed), int(trial), int(stream)]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


@dataclass
class CNNParameters:
    """Linear-CNN parameters of ``T`` trials: ``kernel (T, C, n, n)`` (correlation), ``weight (T, p, hidden)``."""

    kernel: torch.Tensor
    weight: torch.Tensor

    def __post_init__(self) -> None:
        if self.kernel.ndim != 4 or self.kernel.shape[-1] != self.kernel.shape[-2]:
            raise ValueError(f"kernel must have shape (T, C, n, n), got {describe(self.kernel)}")
        if self.weight.ndim != 3 or self.weight.shape[0] != self.kernel.shape[0]:
            raise ValueError(
                f"weight must have shape (T, p, hidden) with T={self.kernel.shape[0]}, got {describe(self.weight)}"
            )
        c, n = int(self.kernel.shape[1]), int(self.kernel.shape[-1])
        if self.weight.shape[2] not in (n * n, c * n * n):
            raise ValueError(
                f"weight must have hidden size n²={n * n} (channel_mode='sum') or C n²={c * n * n} "
                f"(channel_mode='separate'), got {describe(self.weight)}"
            )

    @property
    def num_trials(self) -> int:
        """The number of trials ``T`` (plumbing)."""
        return int(self.kernel.shape[0])

    @property
    def channel_mode(self) -> str:
        """``'sum'`` when the dense layer reads ``n²`` hidden units, else ``'separate'`` (plumbing)."""
        n = int(self.kernel.shape[-1])
        return "sum" if self.weight.shape[2] == n * n else "separate"


@dataclass
class FCNNParameters:
    """Linear-FCNN parameters of ``T`` trials: ``w1 (T, hidden, D)``, ``w2 (T, p, hidden)``."""

    w1: torch.Tensor
    w2: torch.Tensor

    def __post_init__(self) -> None:
        if self.w1.ndim != 3 or self.w2.ndim != 3 or self.w1.shape[0] != self.w2.shape[0]:
            raise ValueError(
                f"w1 (T, hidden, D) and w2 (T, p, hidden) expected, got {describe(self.w1)}, {describe(self.w2)}"
            )
        if self.w1.shape[1] != self.w2.shape[2]:
            raise ValueError(f"hidden sizes differ: w1 has {self.w1.shape[1]} rows, w2 has {self.w2.shape[2]} columns")

    @property
    def num_trials(self) -> int:
        """The number of trials ``T`` (plumbing)."""
        return int(self.w1.shape[0])


def _check_sigma(name: str, sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def _gaussian(shape: tuple[int, ...], sigma: float, seed: int, trials: int, stream: int) -> torch.Tensor:
    out = torch.empty(trials, *shape, dtype=torch.float64)
    for t in range(trials):
        out[t] = sigma * torch.randn(*shape, generator=trial_generator(seed, t, stream), dtype=torch.float64)
    return out


def random_cnn_init(
    num_trials: int,
    image_shape: tuple[int, int, int],
    num_classes: int,
    sigma_kernel: float,
    sigma_weight: float,
    seed: int,
    channel_mode: str = "sum",
) -> CNNParameters:
    """i.i.d. ``N(0, σ²)`` kernel and dense weights for each trial (spec §9 I.2-I.4)."""
    t = check_positive_int("num_trials", num_trials)
    c, n, _ = image_shape
    p = check_positive_int("num_classes", num_classes)
    if channel_mode not in ("sum", "separate"):
        raise ValueError(f"channel_mode must be 'sum' or 'separate', got {channel_mode!r}")
    hidden = n * n if channel_mode == "sum" else c * n * n
    kernel = _gaussian((c, n, n), _check_sigma("sigma_kernel", sigma_kernel), seed, t, stream=1)
    weight = _gaussian((p, hidden), _check_sigma("sigma_weight", sigma_weight), seed, t, stream=2)
    return CNNParameters(kernel, weight)


def random_fcnn_init(
    num_trials: int, input_dim: int, hidden: int, num_classes: int, sigma: float, seed: int
) -> FCNNParameters:
    """i.i.d. ``N(0, σ²)`` weights in both layers for each trial (spec §9 I.2-I.4)."""
    t = check_positive_int("num_trials", num_trials)
    d = check_positive_int("input_dim", input_dim)
    h = check_positive_int("hidden", hidden)
    p = check_positive_int("num_classes", num_classes)
    sigma = _check_sigma("sigma", sigma)
    return FCNNParameters(_gaussian((h, d), sigma, seed, t, stream=3), _gaussian((p, h), sigma, seed, t, stream=4))


def mode_supports(structure: DatasetStructure, rtol: float = 1e-8) -> np.ndarray:
    """Boolean ``(p, n²)``: ``M̄_α = {m : |v̂_mα| > rtol · max_m |v̂_mα|}`` (single-channel datasets)."""
    if structure.image_shape[0] != 1:
        raise ValueError(f"mode supports need single-channel images, got image_shape={structure.image_shape}")
    mag = np.abs(structure.v_hat[:, 0, :])
    return mag > rtol * mag.max(axis=1, keepdims=True)


def _conv_khat(kernel_corr: torch.Tensor) -> np.ndarray:
    """``k̂ = Q k̃`` of the convolution-form kernel ``k̃_ij = k_{-i,-j}``; equals ``conj(Q k)`` (spec S.26)."""
    return np.conj(vec2d_dft(kernel_corr.detach().cpu().numpy().astype(np.float64)))


def aligned_balanced_cnn_init(
    structure: DatasetStructure,
    num_trials: int,
    sigma: float,
    seed: int,
    kernel: torch.Tensor | None = None,
    support_rtol: float = 1e-8,
) -> CNNParameters:
    """Aligned and balanced initial conditions (spec §6.2, S.138-S.141, S.159-S.160).

    The kernel is ``N(0, σ²)`` (or the given ``kernel (T, 1, n, n)``); the dense weights are set so that
    ``W̄ = Uᵀ W Q*`` has ``W̄_αm = k̂_m* e^{-iφ^v_mα}`` on ``m ∈ M̄_α`` and 0 elsewhere, with ``k̂ = Q k̃``
    (convolution form) and ``v̂_mα = |v̂_mα| e^{iφ^v_mα}``. Then ``A(0)`` is diagonal with
    ``a_α(0) = n d_α Σ_{m∈M̄_α} ν_mα |k̂_m|²``. Needs one channel and disjoint supports ``M̄_α``
    (pure cosines, sums of cosines; spec §7.1).
    """
    supports = mode_supports(structure, support_rtol)
    if (supports.sum(axis=0) > 1).any():
        raise ValueError(
            "aligned-balanced initialisation needs modes with disjoint frequency supports (spec §7.1); "
            "this dataset's right singular vectors share frequencies"
        )
    _, n, _ = structure.image_shape
    if kernel is None:
        kernel = _gaussian(
            (1, n, n), _check_sigma("sigma", sigma), seed, check_positive_int("num_trials", num_trials), 1
        )
    elif kernel.ndim != 4 or tuple(kernel.shape[1:]) != (1, n, n):
        raise ValueError(f"kernel must have shape (T, 1, {n}, {n}), got {describe(kernel)}")
    khat = _conv_khat(kernel[:, 0])  # (T, n²)
    vhat = structure.v_hat[:, 0, :]  # (p, n²)
    phase = np.exp(-1j * np.angle(vhat)) * supports  # (p, n²)
    wbar = np.conj(khat)[:, None, :] * phase[None]  # (T, p, n²)
    # W = U W̄ Q: row i of W̄ Q is (Q w̄_i)ᵀ because Q is symmetric.
    wq = vec2d_dft(wbar.reshape(*wbar.shape[:2], n, n))
    weight = np.einsum("ia,tam->tim", structure.U, wq)
    if np.abs(weight.imag).max() > 1e-9 * max(1.0, np.abs(weight.real).max()):
        raise RuntimeError("aligned-balanced weights are not real: conjugate symmetry of v̂ or k̂ is broken")
    return CNNParameters(kernel.to(torch.float64).clone(), torch.from_numpy(np.ascontiguousarray(weight.real)))


def matched_fcnn_init(structure: DatasetStructure, cnn: CNNParameters, hidden: int | None = None) -> FCNNParameters:
    """FCNN matched to an aligned-balanced CNN (spec §6.3, App. I.1).

    ``W̄_1 = W̄_2 = diag(w_α)`` on the first ``p`` diagonal entries with ``w_α = (a_α^CNN(0)/d_α)^{1/2}
    = (n Σ_{m∈M̄_α} ν_mα |k̂_m|²)^{1/2}``; ``W1 = W̄_1 Vᵀ``, ``W2 = U W̄_2`` (``R = I``), so both networks
    start from the same diagonal ``A(0)``. ``hidden`` defaults to ``n²`` (spec Eq. 17).
    """
    c, n, _ = structure.image_shape
    p = structure.num_classes
    hidden = n * n * c if hidden is None else check_positive_int("hidden", hidden)
    if hidden < p:
        raise ValueError(f"hidden must be >= p = {p} to hold the matched initialisation, got {hidden}")
    supports = mode_supports(structure)
    khat = _conv_khat(cnn.kernel[:, 0])  # (T, n²)
    nu = np.abs(structure.v_hat[:, 0, :]) * supports  # (p, n²)
    w = np.sqrt(n * np.einsum("am,tm->ta", nu, np.abs(khat) ** 2))  # (T, p)
    t = cnn.num_trials
    w1 = np.zeros((t, hidden, c * n * n))
    w2 = np.zeros((t, p, hidden))
    w1[:, :p, :] = w[:, :, None] * structure.V.T[None]
    w2[:, :, :p] = structure.U[None] * w[:, None, :]
    return FCNNParameters(torch.from_numpy(w1), torch.from_numpy(w2))
