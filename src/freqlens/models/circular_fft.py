"""Circular cross-correlation as one batched per-frequency matrix product, for training (conv_bottleneck §1.2,
§1.5; the fused route of :class:`~freqlens.models.circular_cnn.CircularCNN`).

Activations are kept **spatial-major**, ``(H, W, N, C)``, so that ``rfft2`` over the two leading dimensions
gives the **frequency-major** layout ``(H·(W//2+1), N, C)`` that a batched matrix product wants, with no
permutes between layers. On the rfft half-plane a layer is

``ŷ(ω) = x̂(ω) T(ω)ᵀ``,  ``T(ω) = conj(Ŵ(ω)) ∈ ℂ^{c_out×c_in}``  (PyTorch's cross-correlation, C5a with p = 0),

followed by ``irfft2`` and, for stride ``s``, keeping every ``s``-th pixel (``S_s``, C5b). The backward pass is
written out (not traced through the FFTs): with ``ĝ`` the spectrum of the zero-inserted output gradient,

``∂L/∂x = irfft2(ĝ(ω) T(ω)^*)``  (the adjoint operator has multiplier ``T^H``), and
``∂L/∂W_oi(q) = irfft2(Σ_n conj(ĝ_no(ω)) x̂_ni(ω))(q)``  (cross-correlation of the input with the gradient).

Each step therefore costs three complex products per layer of the size of the forward one (the arithmetic
floor of a full-size circular layer) and four activation FFTs; the weight is transformed once forward and
its gradient once backward.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["circular_correlation_hwnc"]


def _realified_multiplier(weight: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``T(ω)ᵀ = conj(Ŵ(ω))ᵀ`` on the rfft half-plane as the real ``(2 c_in, 2 c_out)`` matrix that acts on
    interleaved ``(re, im)`` channel pairs (``view_as_real`` layout): ``(F, 2 c_in, 2 c_out)``.

    With ``m = p + i q`` an entry of ``Tᵀ``, ``(a + i b) m = (a p − b q) + i (a q + b p)``, so the 2×2 block of
    input channel ``i`` and output channel ``o`` is ``[[p, q], [−q, p]]`` (rows: a, b; columns: re, im)."""
    cout, cin = weight.shape[0], weight.shape[1]
    spectrum = torch.fft.rfft2(weight, s=grid)  # (c_out, c_in, H, W//2+1); zero-pads small kernels
    mult = spectrum.permute(2, 3, 1, 0).reshape(-1, cin, cout).conj()  # (F, c_in, c_out)
    p, q = mult.real, mult.imag
    block = torch.stack((torch.stack((p, q), dim=-1), torch.stack((-q, p), dim=-1)), dim=2)  # (F, ci, 2, co, 2)
    return block.reshape(-1, 2 * cin, 2 * cout)


def _as_real_rows(spectrum: torch.Tensor, rows: int, channels: int) -> torch.Tensor:
    """Plumbing: a complex ``(..., channels)`` spectrum as real ``(F, rows, 2 channels)`` (a view)."""
    return torch.view_as_real(spectrum).reshape(-1, rows, 2 * channels)


def _as_complex(real_rows: torch.Tensor, h: int, w: int, rows: int, channels: int) -> torch.Tensor:
    """Plumbing: inverse of :func:`_as_real_rows`, shaped ``(H, W//2+1, rows, channels)``."""
    return torch.view_as_complex(real_rows.reshape(h, w // 2 + 1, rows, channels, 2))


class _CircularCorrelation(torch.autograd.Function):
    """Plumbing: the autograd node of :func:`circular_correlation_hwnc` (formulas in the module docstring).

    The complex products run as real matrix products on interleaved ``(re, im)`` pairs (no copies of the
    activations; the realification of ``A^H`` is the transpose of that of ``A``)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int]
    ) -> torch.Tensor:
        h, w, n, cin = x.shape
        cout = weight.shape[0]
        grid = (h, w)
        x_hat = _as_real_rows(torch.fft.rfft2(x, dim=(0, 1)), n, cin)  # (F, N, 2 c_in)
        mult = _realified_multiplier(weight, grid)
        y_hat = _as_complex(torch.bmm(x_hat, mult), h, w, n, cout)
        y = torch.fft.irfft2(y_hat, s=grid, dim=(0, 1))
        if stride != (1, 1):
            y = y[:: stride[0], :: stride[1]].contiguous()
        ctx.save_for_backward(x_hat, mult)
        ctx.geometry = (h, w, n, cin, cout, weight.shape[2], weight.shape[3], stride)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:  # type: ignore[override]
        x_hat, mult = ctx.saved_tensors
        h, w, n, cin, cout, kh, kw, stride = ctx.geometry
        grid = (h, w)
        if stride != (1, 1):  # adjoint of S_s: zero insertion
            full = grad_y.new_zeros((h, w, n, cout))
            full[:: stride[0], :: stride[1]] = grad_y
            grad_y = full
        g_hat = _as_real_rows(torch.fft.rfft2(grad_y.contiguous(), dim=(0, 1)), n, cout)  # (F, N, 2 c_out)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            gx_hat = _as_complex(torch.bmm(g_hat, mult.transpose(1, 2)), h, w, n, cin)
            grad_x = torch.fft.irfft2(gx_hat, s=grid, dim=(0, 1))
        if ctx.needs_input_grad[1]:
            # P[(o, r), (i, t)] = Σ_n g_{n,o,r} x_{n,i,t}; Σ_n conj(g) x = (P_rr + P_ii) + i (P_ri − P_ir)
            prod = torch.bmm(g_hat.transpose(1, 2), x_hat).reshape(-1, cout, 2, cin, 2)
            real = prod[:, :, 0, :, 0] + prod[:, :, 1, :, 1]
            imag = prod[:, :, 0, :, 1] - prod[:, :, 1, :, 0]
            gw_hat = torch.complex(real, imag).reshape(h, w // 2 + 1, cout, cin)
            gw = torch.fft.irfft2(gw_hat, s=grid, dim=(0, 1)).permute(2, 3, 0, 1)
            grad_w = gw[:, :, :kh, :kw].contiguous()
        return grad_x, grad_w, None


def circular_correlation_hwnc(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """``y_o(p) = Σ_i Σ_q W_oi(q) x_i((s p + q) mod n)`` (conv_bottleneck §1.2 in PyTorch's layout, stride C5b)
    on spatial-major activations.

    Args:
        x: ``(H, W, N, c_in)``, real.
        weight: ``(c_out, c_in, k_h, k_w)`` with ``k ≤`` the grid (zero-padded to it: the same correlation).
        stride: ``(s_h, s_w)``, dividing ``(H, W)``.
    Returns:
        ``(H/s_h, W/s_w, N, c_out)``; differentiable in ``x`` and ``weight`` (explicit adjoints, see module).
    """
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"circular_correlation_hwnc: x must be (H, W, N, c_in) and weight (c_out, c_in, kh, kw), "
            f"got x {tuple(x.shape)} and weight {tuple(weight.shape)}"
        )
    h, w, _, cin = x.shape
    if weight.shape[1] != cin:
        raise ValueError(f"circular_correlation_hwnc: weight has {weight.shape[1]} input channels, x has {cin}")
    if weight.shape[2] > h or weight.shape[3] > w:
        raise ValueError(
            f"circular_correlation_hwnc: kernel {weight.shape[2]}x{weight.shape[3]} is larger than the grid {h}x{w}"
        )
    if h % stride[0] or w % stride[1]:
        raise ValueError(f"circular_correlation_hwnc: stride {stride} does not divide the grid {h}x{w}")
    out: torch.Tensor = _CircularCorrelation.apply(x.contiguous(), weight, tuple(stride))
    return out
