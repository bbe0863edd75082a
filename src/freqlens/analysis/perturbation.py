"""Interpreting latent frequencies (conv_bottleneck §4.2 panel b, §4.4 panel b).

* :func:`kept_directions` — left singular vectors of a layer's **true** multiplier block at ``ω`` (C5a: the
  conjugation of PyTorch's correlation matters for the ``±i`` factors), real at self-conjugate ``ω``.
* :func:`perturb_along` — multiply the component of a hidden representation along ``u`` at ``ω`` by ``γ``
  and its conjugate partner at ``−ω`` by ``γ̄``, so the representation stays real (C13).
* :func:`frequency_coefficients` / :func:`phase_fit` — phase read-outs ``z = uᴴ α̂(ω)`` and a circular-linear
  fit of ``arg z`` against a position or velocity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..fourier import as_pair, is_self_conjugate, svd_phase_fix
from ..spectral.rules import rule_for

__all__ = [
    "PhaseFit",
    "frequency_coefficients",
    "is_self_conjugate",
    "kept_directions",
    "perturb_along",
    "phase_fit",
]


def kept_directions(
    module: nn.Module, input_size: Sequence[int], omega: Sequence[int], name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors ``U (c_out, r)`` and values ``s (r,)`` of the layer's block at output frequency
    ``ω`` (unitary bases; aliasing block for strided layers). At a self-conjugate ``ω`` the block is real and
    a real SVD is used, so every ``u`` is real (then :func:`perturb_along` keeps the representation real).
    Phases follow :func:`freqlens.fourier.svd_phase_fix` (largest entry of each ``u`` real and positive)."""
    size = as_pair("input_size", input_size, minimum=1)
    rule = rule_for(module)[1]  # the registry's blocks: convs, transposed convs and registered layers
    blocks = rule.operator_blocks(module, size, name or type(module).__name__, torch.float64).detach().cpu().numpy()
    gh, gw = blocks.shape[:2]
    k, l = int(omega[0]) % gh, int(omega[1]) % gw
    block = blocks[k, l]
    if is_self_conjugate((k, l), (gh, gw)):
        imag = float(np.abs(block.imag).max()) if block.size else 0.0
        scale = float(np.abs(block).max()) or 1.0
        if imag > 1e-9 * scale:
            raise ValueError(f"block at self-conjugate frequency {tuple(omega)} is not real (max |imag| {imag:.2e})")
        u, s = np.linalg.svd(block.real, compute_uv=True)[:2]
        return _phase_fixed(u).astype(np.complex128), s
    u, s = np.linalg.svd(block)[:2]
    return _phase_fixed(u), s


def _phase_fixed(u: np.ndarray) -> np.ndarray:
    # Only U is returned, so the partner vectors are not needed (a placeholder keeps the shapes).
    return svd_phase_fix(u, np.zeros((1, u.shape[1]), dtype=u.dtype))[0]


def _unit_direction(direction: np.ndarray | torch.Tensor, channels: int) -> torch.Tensor:
    u = torch.as_tensor(np.asarray(direction), dtype=torch.complex128).reshape(-1)
    if u.numel() != channels:
        raise ValueError(f"direction must have {channels} entries (the channels), got {u.numel()}")
    norm = float(u.abs().pow(2).sum().sqrt())
    if norm == 0 or not np.isfinite(norm):
        raise ValueError("direction must be a finite non-zero vector")
    return u / norm


def frequency_coefficients(
    alpha: torch.Tensor, direction: np.ndarray | torch.Tensor, omega: Sequence[int]
) -> torch.Tensor:
    """``z_n = uᴴ α̂_n(ω)`` (unnormalised DFT) for ``alpha (N, c, H, W)``: complex128 ``(N,)`` (§4.4 b)."""
    if alpha.ndim != 4:
        raise ValueError(f"alpha must have shape (N, c, H, W), got {tuple(alpha.shape)}")
    u = _unit_direction(direction, alpha.shape[1])
    h, w = alpha.shape[-2:]
    spec = torch.fft.fft2(alpha.detach().to(torch.float64).cpu())[:, :, int(omega[0]) % h, int(omega[1]) % w]
    return spec @ u.conj()


def perturb_along(
    alpha: torch.Tensor, direction: np.ndarray | torch.Tensor, omega: Sequence[int], factor: complex
) -> torch.Tensor:
    """Multiply the component of ``α`` along ``u`` at ``ω`` by ``γ`` (and at ``−ω`` by ``γ̄``), spec §4.2 b:

    ``α̂(ω) += (γ−1)(uᴴα̂(ω)) u`` and ``α̂(−ω) += (γ̄−1)(ūᴴα̂(−ω)) ū``, then the inverse FFT. The result is real
    (C13; checked to 1e-8 of the input scale) and ``γ = 1`` returns ``α``. At a self-conjugate ``ω`` ``γ``
    must be real and ``u`` real up to a global phase. Returns ``alpha``'s dtype and device.
    """
    if alpha.ndim != 4:
        raise ValueError(f"alpha must have shape (N, c, H, W), got {tuple(alpha.shape)}")
    gamma = complex(factor)
    h, w = alpha.shape[-2:]
    k, l = int(omega[0]) % h, int(omega[1]) % w
    u = _unit_direction(direction, alpha.shape[1])
    self_conj = is_self_conjugate((k, l), (h, w))
    if self_conj:
        if gamma.imag != 0:
            raise ValueError(
                f"a complex factor {factor} at the self-conjugate frequency {tuple(omega)} breaks realness"
            )
        j = int(torch.argmax(u.abs()))
        u = u * (u[j].abs() / u[j])  # remove the global phase
        if float(u.imag.abs().max()) > 1e-9:
            raise ValueError(f"direction at the self-conjugate frequency {tuple(omega)} must be real up to a phase")
        u = u.real.to(torch.complex128)
    a64 = alpha.detach().to(torch.float64).cpu()
    spec = torch.fft.fft2(a64)
    coef = spec[:, :, k, l] @ u.conj()  # (N,)
    spec[:, :, k, l] += (gamma - 1) * coef[:, None] * u[None, :]
    if not self_conj:
        kk, ll = (-k) % h, (-l) % w
        spec[:, :, kk, ll] += (gamma.conjugate() - 1) * coef.conj()[:, None] * u.conj()[None, :]
    out = torch.fft.ifft2(spec)
    scale = float(a64.abs().max()) or 1.0
    imag = float(out.imag.abs().max())
    if imag > 1e-8 * scale * max(1.0, abs(gamma)):
        raise AssertionError(f"perturbed representation is not real (max |imag| {imag:.2e}); C13 violated")
    return out.real.to(dtype=alpha.dtype, device=alpha.device)


@dataclass(frozen=True)
class PhaseFit:
    """``arg z ≈ 2π m x / n + c (mod 2π)``: ``slope_cycles = m`` (turns per ``n`` units of ``x``),
    ``offset = c``, ``resultant`` = ``|mean e^{i(arg z − 2π m x/n)}|`` ∈ [0, 1] (1 = exactly linear)."""

    slope_cycles: float
    offset: float
    resultant: float


def phase_fit(
    phases: np.ndarray, values: np.ndarray, period: float, slopes: Sequence[float] | np.ndarray | None = None
) -> PhaseFit:
    """Circular-linear fit of ``phases`` against ``values`` (spec §4.4 b: expect ``|m| = 1`` for position
    at ``|ω| = 1``). ``slopes``: candidate ``m`` values (default −3 … 3 in steps of 1/8)."""
    p = np.asarray(phases, dtype=np.float64).reshape(-1)
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if p.shape != x.shape or p.size == 0:
        raise ValueError(f"phases and values must be non-empty and of equal length, got {p.size} and {x.size}")
    cands = np.asarray(slopes if slopes is not None else np.arange(-24, 25) / 8.0, dtype=np.float64)
    resid = np.exp(1j * (p[None, :] - 2 * np.pi * cands[:, None] * x[None, :] / period))
    means = resid.mean(axis=1)
    best = int(np.argmax(np.abs(means)))
    return PhaseFit(
        slope_cycles=float(cands[best]), offset=float(np.angle(means[best])), resultant=float(np.abs(means[best]))
    )
