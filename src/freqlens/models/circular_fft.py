"""Circular cross-correlation as batched per-frequency matrix products, for training (conv_bottleneck §1.2,
§1.5; the fused route of :class:`~freqlens.models.circular_cnn.CircularCNN`).

Activations are kept **spatial-major**, ``(H, W, N, C)``. The 2-D real DFT on the rfft half-plane
(``V = W//2 + 1`` columns) is applied as two small real matrix products (along ``W``, then along ``H`` on
stacked real/imaginary parts), which leaves the spectrum **frequency-major** with separate real and
imaginary planes, ``(2, H·V, N, C)``: exactly the operands of a batched matrix product, with no permutes
and no complex arithmetic. On the half-plane a layer is

``ŷ(ω) = x̂(ω) M(ω)``,  ``M(ω) = T(ω)ᵀ = conj(Ŵ(ω))ᵀ ∈ ℂ^{c_in×c_out}``  (PyTorch's cross-correlation, C5a, p = 0),

four real products per frequency. The inverse DFT is evaluated only at the kept pixels ``s p`` of a stride-``s``
layer (``S_s``, C5b), and the backward pass is written out: with ``ĝ`` the spectrum of the zero-inserted output
gradient (the adjoint of ``S_s``),

``∂L/∂x = irfft2(ĝ(ω) M(ω)^H)``  (the adjoint operator has multiplier ``T^H``), and
``∂L/∂W_oi(q) = irfft2(Σ_n conj(ĝ_no(ω)) x̂_ni(ω))(q)``  (correlation of the input with the gradient).

So a step costs three products per layer of the forward one's size (the arithmetic floor of a full-size
circular layer) plus four activation transforms; the weight is transformed once forward and its gradient
once backward. Any real dtype works (float32 for training, float64 for analysis and the tests).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["circular_correlation_hwnc", "half_plane_dft"]


@dataclass(frozen=True)
class _GridDFT:
    """Plumbing: the real DFT matrices of one ``(H, W)`` grid and stride (see :func:`half_plane_dft`)."""

    forward_w: torch.Tensor  # (2V, W): rows (part, v), x ↦ [Re; Im] of the DFT along W
    forward_h: torch.Tensor  # (2H, 2H): rows (part, u), columns (h, part)
    inverse_h: torch.Tensor  # (2H, 2H): rows (h, part), columns (part, u), 1/H included
    inverse_w: torch.Tensor  # (W, 2V): c2r along W, 1/W and the Hermitian weights included
    strided_forward_w: torch.Tensor  # forward_w at the kept columns (spectrum of a zero-inserted map)
    strided_forward_h: torch.Tensor  # forward_h at the kept rows
    strided_inverse_h: torch.Tensor  # inverse_h evaluated at the kept rows only
    strided_inverse_w: torch.Tensor  # inverse_w evaluated at the kept columns only


@functools.lru_cache(maxsize=64)
def half_plane_dft(h: int, w: int, stride: tuple[int, int], dtype: torch.dtype, device: torch.device) -> _GridDFT:
    """The 2-D DFT ``x̂(u, v) = Σ_{p} x(p) e^{-2πi(u p_0/H + v p_1/W)}`` on the half-plane ``v ≤ W//2`` and its
    real inverse (``numpy.fft.rfft2`` / ``irfft2`` conventions), as real matrices built in float64.

    Row ``h`` of an ``(H, W, M)`` map goes to ``[Re; Im]`` along ``W`` by ``forward_w``; stacking the two parts
    under each ``h`` gives ``(2H, V·M)``, which ``forward_h`` maps to ``(2, H·V, M)`` (real and imaginary
    planes, frequency ``(u, v)`` at row ``u V + v``). The inverse runs the same way back; the c2r step uses
    ``x(c) = (1/W) Σ_v α_v (Re ẑ(v) cos − Im ẑ(v) sin)(2π v c/W)`` with ``α_v = 1`` at ``v = 0`` and ``v = W/2``,
    else 2. Plumbing for :func:`circular_correlation_hwnc` (spec §1.2 Fourier form)."""
    v_count = w // 2 + 1
    f64 = torch.float64
    cols = torch.arange(w, dtype=f64)
    freqs_w = torch.arange(v_count, dtype=f64)
    angle_w = 2 * math.pi * freqs_w[:, None] * cols[None, :] / w  # (V, W)
    forward_w = torch.cat((torch.cos(angle_w), -torch.sin(angle_w)), dim=0)
    weights = torch.full((v_count,), 2.0, dtype=f64)
    weights[0] = 1.0
    if w % 2 == 0:
        weights[-1] = 1.0
    inverse_w = torch.cat((torch.cos(angle_w).T * weights, -torch.sin(angle_w).T * weights), dim=1) / w
    rows = torch.arange(h, dtype=f64)
    angle_h = 2 * math.pi * rows[:, None] * rows[None, :] / h  # symmetric in (u, h)
    cos_h, sin_h = torch.cos(angle_h), torch.sin(angle_h)
    # forward along H: Re ŷ(u) = Σ_h Re z cos + Im z sin, Im ŷ(u) = Σ_h Im z cos − Re z sin
    forward_h = torch.stack(
        (torch.stack((cos_h, sin_h), dim=-1), torch.stack((-sin_h, cos_h), dim=-1)), dim=0
    ).reshape(2 * h, 2 * h)
    # inverse along H: Re z(h) = (1/H) Σ_u Re ŷ cos − Im ŷ sin, Im z(h) = (1/H) Σ_u Im ŷ cos + Re ŷ sin
    by_part = torch.stack((torch.stack((cos_h, -sin_h)), torch.stack((sin_h, cos_h))))  # [part, part', h, u]
    inverse_h = by_part.permute(2, 0, 1, 3).reshape(2 * h, 2 * h) / h
    kept_rows = torch.arange(0, h, stride[0])
    kept_cols = torch.arange(0, w, stride[1])
    kept_h_parts = (2 * kept_rows[:, None] + torch.arange(2)[None, :]).reshape(-1)  # rows/columns (h, part)

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype).contiguous()

    return _GridDFT(
        forward_w=cast(forward_w),
        forward_h=cast(forward_h),
        inverse_h=cast(inverse_h),
        inverse_w=cast(inverse_w),
        strided_forward_w=cast(forward_w[:, kept_cols]),
        strided_forward_h=cast(forward_h[:, kept_h_parts]),
        strided_inverse_h=cast(inverse_h[kept_h_parts]),
        strided_inverse_w=cast(inverse_w[kept_cols]),
    )


def _forward_dft(x: torch.Tensor, along_w: torch.Tensor, along_h: torch.Tensor) -> torch.Tensor:
    """Plumbing: ``(H_in, W_in, M)`` real map → ``(2, H·V, M)`` half-plane spectrum (real, imaginary planes)."""
    z = torch.matmul(along_w, x)  # (H_in, 2V, M): rows (h, part, v)
    v_count = along_w.shape[0] // 2
    y = along_h @ z.reshape(-1, v_count * x.shape[-1])  # (2H, V·M): rows (part, u)
    return y.reshape(2, -1, x.shape[-1])


def _inverse_dft(y: torch.Tensor, along_h: torch.Tensor, along_w: torch.Tensor, h: int) -> torch.Tensor:
    """Plumbing: ``(2, H·V, M)`` half-plane spectrum → ``(H_out, W_out, M)`` real map at the rows/columns of the
    matrices."""
    m = y.shape[-1]
    v_count = along_w.shape[1] // 2
    z = along_h @ y.reshape(2 * h, v_count * m)  # (2 H_out, V·M): rows (h, part)
    return torch.matmul(along_w, z.reshape(-1, 2 * v_count, m))  # (H_out, W_out, M)


def _product(re: torch.Tensor, im: torch.Tensor, m_re: torch.Tensor, m_im: torch.Tensor) -> torch.Tensor:
    """Plumbing: ``(re + i im)(m_re + i m_im)`` per frequency, stacked ``(2, F, rows, cols)``. Written into the
    two planes of one buffer (no copy), except under a ``torch.func`` transform (``vmap`` has no batching rule
    for ``out=``), where the planes are stacked."""
    if torch._C._functorch.is_functorch_wrapped_tensor(re) or torch._C._functorch.is_functorch_wrapped_tensor(m_re):
        real = torch.baddbmm(torch.bmm(re, m_re), im, m_im, alpha=-1.0)
        return torch.stack((real, torch.baddbmm(torch.bmm(re, m_im), im, m_re)))
    out = re.new_empty((2, re.shape[0], re.shape[1], m_re.shape[2]))
    torch.bmm(re, m_re, out=out[0])
    out[0].baddbmm_(im, m_im, alpha=-1.0)
    torch.bmm(re, m_im, out=out[1])
    out[1].baddbmm_(im, m_re)
    return out


class _CircularCorrelation(torch.autograd.Function):
    """Plumbing: the autograd node of :func:`circular_correlation_hwnc` (formulas in the module docstring).

    Written in the ``setup_context`` form so that ``torch.func`` transforms (``jacrev``, ``vmap``: the C9 check,
    per-sample gradients) work through it. The spectra the backward needs (``x̂``, ``M``) are returned as extra,
    non-differentiable outputs and saved from there, so the backward transforms nothing twice."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w, n, cin = x.shape
        cout, _, kh, kw = weight.shape
        dft = half_plane_dft(h, w, stride, x.dtype, x.device)
        # M(ω) = conj(Ŵ(ω))ᵀ: transform W laid out (H, W, c_in, c_out), zero-padded to the grid
        kernel = weight.permute(2, 3, 1, 0)
        if (kh, kw) != (h, w):
            kernel = torch.nn.functional.pad(kernel, (0, 0, 0, 0, 0, w - kw, 0, h - kh))
        w_hat = _forward_dft(kernel.reshape(h, w, cin * cout), dft.forward_w, dft.forward_h)
        m_re = w_hat[0].reshape(-1, cin, cout)
        m_im = -w_hat[1].reshape(-1, cin, cout)
        x_hat = _forward_dft(x.reshape(h, w, n * cin), dft.forward_w, dft.forward_h).reshape(2, -1, n, cin)
        y_hat = _product(x_hat[0], x_hat[1], m_re, m_im)
        y = _inverse_dft(y_hat.reshape(2, -1, n * cout), dft.strided_inverse_h, dft.strided_inverse_w, h)
        return y.reshape(h // stride[0], w // stride[1], n, cout), x_hat, m_re, m_im

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, weight, stride = inputs
        _, x_hat, m_re, m_im = output
        ctx.mark_non_differentiable(x_hat, m_re, m_im)
        ctx.save_for_backward(x_hat, m_re, m_im)
        h, w, n, cin = x.shape
        cout, _, kh, kw = weight.shape
        ctx.geometry = (h, w, n, cin, cout, kh, kw, stride)

    @staticmethod
    def backward(
        ctx: Any, grad_y: torch.Tensor, *_unused: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x_hat, m_re, m_im = ctx.saved_tensors
        h, w, n, cin, cout, kh, kw, stride = ctx.geometry
        dft = half_plane_dft(h, w, stride, grad_y.dtype, grad_y.device)
        # spectrum of the zero-inserted gradient (adjoint of S_s): the DFT restricted to the kept pixels
        g = grad_y.contiguous().reshape(h // stride[0], w // stride[1], n * cout)
        g_hat = _forward_dft(g, dft.strided_forward_w, dft.strided_forward_h).reshape(2, -1, n, cout)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # ĝ M^H with M^H = M_reᵀ − i M_imᵀ
            gx_hat = _product(g_hat[0], g_hat[1], m_re.transpose(1, 2), -m_im.transpose(1, 2))
            grad_x = _inverse_dft(gx_hat.reshape(2, -1, n * cin), dft.inverse_h, dft.inverse_w, h)
            grad_x = grad_x.reshape(h, w, n, cin)
        if ctx.needs_input_grad[1]:
            # Σ_n conj(ĝ) x̂ = (g_reᵀ x_re + g_imᵀ x_im) + i (g_reᵀ x_im − g_imᵀ x_re), per frequency
            g_re_t, g_im_t = g_hat[0].transpose(1, 2), g_hat[1].transpose(1, 2)
            gw_hat = _product(g_re_t, -g_im_t, x_hat[0], x_hat[1])  # (g_re − i g_im)ᵀ (x_re + i x_im)
            gw = _inverse_dft(gw_hat.reshape(2, -1, cout * cin), dft.inverse_h, dft.inverse_w, h)
            grad_w = gw.reshape(h, w, cout, cin).permute(2, 3, 0, 1)[:, :, :kh, :kw].contiguous()
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
    if len(stride) != 2 or h % stride[0] or w % stride[1]:
        raise ValueError(f"circular_correlation_hwnc: stride {stride} does not divide the grid {h}x{w}")
    if x.dtype != weight.dtype or not x.dtype.is_floating_point:
        raise ValueError(
            f"circular_correlation_hwnc: x and weight must share a real dtype, got {x.dtype} and {weight.dtype}"
        )
    out: torch.Tensor = _CircularCorrelation.apply(x.contiguous(), weight, (int(stride[0]), int(stride[1])))[0]
    return out
