"""First-layer energy profiles in the PCA basis of image patches (Chowers & Weiss 2023, "What do CNNs learn in
the first layer and why? A linear systems perspective"), with the closed-form linear prediction and a
vectorised fit.

Reconstruction (no spec section exists; ``docs/frequencies_used.md``): write a first-layer filter ``w`` in the
eigenbasis ``C = V Λ Vᵀ`` of the (centred) covariance of the patches the layer sees, ``w_i = v_iᵀ w``. Gradient
descent on a linear least-squares objective moves ``w_i`` as ``w_i(τ) = w*_i + (w_i(0) - w*_i) e^{-λ_i τ}``
(``τ`` = learning rate × steps), so with a random initialisation of energy ``α`` per component and an isotropic
learned target of energy ``β`` per component the expected energy is

    ``E_i(τ) = α e^{-2 λ_i τ} + β (1 - e^{-λ_i τ})²``  (the closed-form linear prediction).

Directions of low patch variance (high spatial frequency for natural images) keep their initial energy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from .._validation import check_positive_int
from ..hooks import capture_layers, evaluation_mode, select_layers
from .frequency_use import SavedResult, _check_common, _count, labelled_batches

__all__ = [
    "EnergyProfileFit",
    "FirstLayerEnergyProfile",
    "filter_energy_profile",
    "first_layer_energy_profile",
    "fit_energy_profile",
    "linear_energy_prediction",
]


def linear_energy_prediction(
    eigenvalues: np.ndarray, init_energy: float, target_energy: float, time: float
) -> np.ndarray:
    """``E_i(τ) = α e^{-2 λ_i τ} + β (1 - e^{-λ_i τ})²`` (module docstring), float64 like ``eigenvalues``."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    decay = np.exp(-lam * float(time))
    return float(init_energy) * decay**2 + float(target_energy) * (1.0 - decay) ** 2


@dataclass(frozen=True)
class EnergyProfileFit:
    """Fitted ``α`` (initial energy), ``β`` (learned energy), ``τ`` (training time) and the relative RMS
    residual ``sqrt(mean((E_pred/E - 1)²))``."""

    init_energy: float
    target_energy: float
    time: float
    relative_rms: float


def _nonnegative_pair(a1: np.ndarray, a2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised 2-parameter NNLS of ``1 ≈ α a1 + β a2`` (rows already divided by the energy) for a batch of
    design columns ``a1, a2 (T, d)``: returns ``α, β, residual sum of squares`` each ``(T,)``."""
    g11 = (a1 * a1).sum(axis=1)
    g22 = (a2 * a2).sum(axis=1)
    g12 = (a1 * a2).sum(axis=1)
    h1 = a1.sum(axis=1)
    h2 = a2.sum(axis=1)
    det = g11 * g22 - g12**2
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(det > 0, (g22 * h1 - g12 * h2) / det, -1.0)
        beta = np.where(det > 0, (g11 * h2 - g12 * h1) / det, -1.0)
        only_a = np.where(g11 > 0, h1 / g11, 0.0)
        only_b = np.where(g22 > 0, h2 / g22, 0.0)

    def rss(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # from the residuals themselves: the expanded Gram form cancels to ~1e-15 d and blurs the τ minimum
        resid = 1.0 - a[..., None] * a1 - b[..., None] * a2
        return (resid**2).sum(axis=-1)

    cand_a = np.stack([alpha, only_a, np.zeros_like(only_b)])
    cand_b = np.stack([beta, np.zeros_like(only_a), only_b])
    with np.errstate(over="ignore", invalid="ignore"):  # near-singular grid points are discarded below
        cost = rss(cand_a, cand_b)
    cost = np.where((cand_a >= 0) & (cand_b >= 0) & np.isfinite(cost), cost, np.inf)
    best = np.argmin(cost, axis=0)
    pick = np.arange(cost.shape[1])
    return cand_a[best, pick], cand_b[best, pick], cost[best, pick]


def fit_energy_profile(
    eigenvalues: np.ndarray, energy: np.ndarray, grid_points: int = 257, rounds: int = 5
) -> EnergyProfileFit:
    """Fit :func:`linear_energy_prediction` to a measured profile by relative least squares,
    ``min Σ_i (E_pred,i / E_i - 1)²`` over ``α, β >= 0`` and ``τ > 0``.

    For fixed ``τ`` the problem is a 2-parameter non-negative linear least squares, solved in closed form for
    every ``τ`` of a log-spaced grid at once (``grid_points`` values of ``τ λ_max`` from ``1e-3`` to
    ``1e3 λ_max/λ_min``); the grid is then zoomed around the best ``τ`` ``rounds`` times (vectorised; no
    iterative optimiser). Energies ``<= 0`` are rejected (the relative residual needs ``E_i > 0``).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    e = np.asarray(energy, dtype=np.float64).reshape(-1)
    if lam.shape != e.shape or lam.size < 3:
        raise ValueError(
            f"eigenvalues and energy must be 1-D of equal length >= 3, got {lam.size} and {e.size} entries"
        )
    if not np.all(np.isfinite(lam)) or not np.all(np.isfinite(e)):
        raise ValueError("eigenvalues and energy must be finite")
    if lam.max() <= 0 or (lam < 0).any():
        raise ValueError(f"eigenvalues must be >= 0 with a positive maximum, got range [{lam.min()}, {lam.max()}]")
    if (e <= 0).any():
        raise ValueError(f"energy must be > 0 everywhere for a relative fit, got minimum {e.min()}")
    check_positive_int("grid_points", grid_points, minimum=5)
    check_positive_int("rounds", rounds)
    lam_max = float(lam.max())
    lam_min = float(lam[lam > 0].min())
    lo, hi = np.log(1e-3 / lam_max), np.log(1e3 / lam_min)
    best_t = float(np.exp(0.5 * (lo + hi)))
    for _ in range(rounds):
        log_t = np.linspace(lo, hi, grid_points)
        decay = np.exp(-np.exp(log_t)[:, None] * lam[None, :])  # (T, d)
        alpha, beta, cost = _nonnegative_pair(decay**2 / e, (1.0 - decay) ** 2 / e)
        k = int(np.argmin(cost))
        best_t = float(np.exp(log_t[k]))
        step = log_t[1] - log_t[0]
        lo, hi = log_t[k] - step, log_t[k] + step
    decay = np.exp(-best_t * lam)[None, :]
    alpha, beta, cost = _nonnegative_pair(decay**2 / e, (1.0 - decay) ** 2 / e)
    return EnergyProfileFit(
        init_energy=float(alpha[0]),
        target_energy=float(beta[0]),
        time=best_t,
        relative_rms=float(np.sqrt(max(float(cost[0]), 0.0) / lam.size)),
    )


def filter_energy_profile(weight: np.ndarray | torch.Tensor, components: np.ndarray) -> np.ndarray:
    """``E_i = (1/c_out) Σ_o (v_iᵀ w_o)²`` for filters ``weight (c_out, c_in, kh, kw)`` (flattened in PyTorch's
    ``unfold`` order) and PCA components ``components (d, d)`` (column ``i`` = ``v_i``); float64 ``(d,)``.
    ``Σ_i E_i`` is the mean squared filter norm."""
    w = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    if flat.shape[1] != components.shape[0]:
        raise ValueError(f"weight has {flat.shape[1]} entries per filter but components are {components.shape}")
    return ((flat @ components) ** 2).mean(axis=0)


@dataclass(frozen=True, repr=False)
class FirstLayerEnergyProfile(SavedResult):
    """Energy of a first-layer's filters along the patch-PCA components (descending variance) and the fitted
    closed-form linear prediction (module docstring)."""

    layer: str
    eigenvalues: np.ndarray
    components: np.ndarray
    energy: np.ndarray
    fit: EnergyProfileFit | None
    num_patches: int

    KIND: ClassVar[str] = "first_layer_energy_profile"

    @property
    def predicted(self) -> np.ndarray | None:
        """``linear_energy_prediction`` at the fitted ``(α, β, τ)``, or ``None`` without a fit."""
        if self.fit is None:
            return None
        return linear_energy_prediction(self.eigenvalues, self.fit.init_energy, self.fit.target_energy, self.fit.time)

    def __repr__(self) -> str:
        fit = (
            ""
            if self.fit is None
            else f", fit: alpha={self.fit.init_energy:.3g} beta={self.fit.target_energy:.3g} "
            f"tau={self.fit.time:.3g} rel_rms={self.fit.relative_rms:.3g}"
        )
        return f"FirstLayerEnergyProfile(layer={self.layer!r}, {self.energy.size} components{fit})"

    def table(self) -> dict[str, np.ndarray]:
        """One row per PCA component: ``component``, ``eigenvalue``, ``energy``, ``predicted`` (plumbing)."""
        out = {
            "component": np.arange(self.energy.size, dtype=np.int64),
            "eigenvalue": self.eigenvalues,
            "energy": self.energy,
        }
        pred = self.predicted
        if pred is not None:
            out["predicted"] = pred
        return out

    def plot(self) -> Figure:
        """Energy against component index (log scale) with the fitted prediction (plumbing)."""
        fig = Figure(figsize=(4.5, 3.3), constrained_layout=True)
        ax = fig.subplots()
        idx = np.arange(1, self.energy.size + 1)
        ax.semilogy(idx, self.energy, "o", ms=3, label="filters")
        pred = self.predicted
        if pred is not None:
            ax.semilogy(idx, pred, "-", lw=1.0, label="linear prediction (fit)")
        ax.set_xlabel("patch PCA component (descending variance)")
        ax.set_ylabel("mean filter energy")
        ax.set_title(f"first-layer energy profile ({self.layer})", fontsize=8)
        ax.legend(fontsize=7)
        return fig

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"eigenvalues": self.eigenvalues, "components": self.components, "energy": self.energy}
        if self.fit is not None:
            f = self.fit
            arrays["fit"] = np.array([f.init_energy, f.target_energy, f.time, f.relative_rms], dtype=np.float64)
        return arrays

    def _meta(self) -> dict[str, Any]:
        return {"layer": self.layer, "num_patches": self.num_patches}

    @classmethod
    def _rebuild(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> FirstLayerEnergyProfile:
        fit = None
        if "fit" in arrays:
            a, b, t, r = (float(v) for v in arrays["fit"])
            fit = EnergyProfileFit(a, b, t, r)
        return cls(
            layer=str(meta["layer"]),
            eigenvalues=arrays["eigenvalues"],
            components=arrays["components"],
            energy=arrays["energy"],
            fit=fit,
            num_patches=int(meta["num_patches"]),
        )


def first_layer_energy_profile(
    model: nn.Module,
    data: Any,
    layer: str | None = None,
    *,
    fit: bool = True,
    batch_size: int = 256,
    max_images: int | None = None,
    progress: bool = True,
) -> FirstLayerEnergyProfile:
    """Energy profile of the first conv layer's filters in the PCA basis of the patches it sees
    (Chowers & Weiss 2023; module docstring for the linear prediction).

    ``layer``: a qualified ``nn.Conv2d`` name (default: the first ``nn.Conv2d`` in definition order). Patches are
    the layer's actual inputs (captured by a forward hook, so preprocessing inside the model counts), all valid
    ``kh×kw`` windows (stride 1, the layer's dilation, no padding), flattened in ``unfold`` order like the
    weights. The covariance ``C = E[(p - p̄)(p - p̄)ᵀ]`` is accumulated in float64 while streaming ``data`` (a
    tensor, ``(x, y)``, a Dataset or a DataLoader); components are its eigenvectors by descending eigenvalue
    (each sign fixed so its largest entry is positive). ``fit=True`` adds :func:`fit_energy_profile`. Grouped
    convs are rejected. The model is left exactly as found.
    """
    _check_common(model, batch_size, max_images)
    chosen = select_layers(model, [layer] if layer is not None else None, types=(nn.Conv2d,))
    if not chosen:
        raise ValueError("model has no nn.Conv2d layer; pass a model whose first layer is a convolution")
    name, conv = chosen[0]
    assert isinstance(conv, nn.Conv2d)
    if conv.groups != 1:
        raise ValueError(f"layer {name!r} has groups={conv.groups}; the patch-PCA profile needs groups=1")
    kh, kw = conv.kernel_size
    d = conv.in_channels * kh * kw
    gram = torch.zeros(d, d, dtype=torch.float64)
    psum = torch.zeros(d, dtype=torch.float64)
    count = 0

    def record(_: str, __: nn.Module, inputs: tuple[torch.Tensor, ...], ___: torch.Tensor) -> None:
        nonlocal gram, psum, count
        x = inputs[0].detach().to(torch.float64)
        patches = F.unfold(x, (kh, kw), dilation=conv.dilation).transpose(1, 2).reshape(-1, d).cpu()
        gram += patches.T @ patches
        psum += patches.sum(dim=0)
        count += patches.shape[0]

    dev = next(iter(model.parameters())).device
    dtype = next(iter(model.parameters())).dtype
    with evaluation_mode(model), torch.no_grad(), capture_layers([(name, conv)], record):
        bar = tqdm(total=_count(data, max_images), desc="patch PCA", unit="img", disable=not progress, leave=False)
        for xb, _ in labelled_batches(data, batch_size, max_images, need_labels=False):
            model(xb.to(device=dev, dtype=dtype))
            bar.update(xb.shape[0])
        bar.close()
    if count < 2:
        raise ValueError(f"need at least 2 patches for a covariance, got {count}")
    mean = psum / count
    cov = (gram - count * torch.outer(mean, mean)) / (count - 1)
    evals, evecs = np.linalg.eigh(cov.numpy())
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    flip = np.sign(evecs[np.argmax(np.abs(evecs), axis=0), np.arange(d)])
    evecs = evecs * np.where(flip == 0, 1.0, flip)[None, :]
    energy = filter_energy_profile(conv.weight, evecs)
    fitted = fit_energy_profile(evals, energy) if fit else None
    return FirstLayerEnergyProfile(
        layer=name, eigenvalues=evals, components=evecs, energy=energy, fit=fitted, num_patches=count
    )
