"""The two-layer linear networks of the linear-CNN paper (spec ``linear_cnn_dynamics.md`` §3.4-§3.5, §5, §9).

``LinearCNN``: one full-size ``n×n`` circular kernel per input channel, no bias, then a dense layer
``W (p, hidden)`` without bias: ``ŷ = W h``. The kernel acts as a **cross-correlation**, as PyTorch's
``conv2d`` and Keras' ``Conv2D`` do on an end-wrap-padded image (spec §3.5):
``h = Σ_c K_c ⋆ X_c`` with ``(K ⋆ X)_ij = Σ_ab K_ab X_{(i+a) mod n, (j+b) mod n}``, i.e.
``h = dbc_⋆(k) x = circ(k̃) x`` with ``k̃`` the index-negated kernel (spec S.23-S.27). The paper's
theory is written for the convolution form; :meth:`LinearCNN.convolution_kernel` returns ``k̃`` so
that ``h = circulant_matrix(k̃, "conv") @ x``. The switch only conjugates ``k̂`` (``|k̂_m|``, ``A`` and
losses are unchanged; spec §3.2).

Colour images (spec ambiguity 5): the paper's "3 such kernels" is implemented by default as
``channel_mode="sum"``: one ``n×n`` kernel per colour channel and the three correlations **summed**
into a single ``n×n`` hidden map (a ``Conv2d(3 -> 1, n×n)``; hidden width ``n²``, like the grayscale
network). ``channel_mode="separate"`` keeps the three maps apart (hidden width ``3n²``, a depthwise
``Conv2d(3 -> 3, groups=3)``). For one channel both are identical.

``LinearFCNN``: ``ŷ = W2 W1 x`` with ``W1 (hidden, D)`` and ``W2 (p, hidden)``, no biases (spec Eq. 17).

Both modules work in any floating dtype; the tests run them in float64 against the closed-form
gradients of spec §4.1.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice, check_positive_int, describe
from ..fourier import circular_conv2d

__all__ = ["ChannelMode", "LinearCNN", "LinearFCNN", "mse_loss_per_class"]

ChannelMode = Literal["sum", "separate"]


def mse_loss_per_class(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The paper's loss (spec §4.1, App. I): Keras ``mse`` ``(1/p)‖y - ŷ‖²``, averaged over the batch."""
    if y_hat.shape != y.shape:
        raise ValueError(f"y_hat and y must have the same shape, got {tuple(y_hat.shape)} and {tuple(y.shape)}")
    return (y - y_hat).pow(2).mean()


def _check_images(name: str, x: torch.Tensor, shape: tuple[int, int, int]) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor of shape (N, C, H, W), got {describe(x)}")
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name} must have shape (N, {shape[0]}, {shape[1]}, {shape[2]}), got {describe(x)}")


class LinearCNN(nn.Module):
    """Two-layer linear CNN with one full-size circular kernel per channel (spec Eq. 8, App. I).

    Args:
        image_shape: ``(C, n, n)``.
        num_outputs: ``p``.
        channel_mode: ``"sum"`` (hidden ``n²``, default) or ``"separate"`` (hidden ``C n²``); see module doc.
        dtype: parameter dtype (float64 by default: the theory checks hold to machine precision).

    Parameters: ``kernel (C, n, n)`` (correlation convention) and ``weight (p, hidden)``; the hidden
    map is flattened row-major, ``(G, n, n) -> G n²`` with ``G = 1`` (sum) or ``C`` (separate).
    Both are initialised to zero: use :mod:`freqlens.training.linear_init` or :meth:`set_parameters`.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_outputs: int,
        channel_mode: ChannelMode = "sum",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, n, n), got {image_shape!r}")
        c, h, w = (check_positive_int(f"image_shape[{i}]", int(v)) for i, v in enumerate(image_shape))
        if h != w:
            raise ValueError(f"image_shape must hold square images (n, n), got H={h}, W={w}")
        check_choice("channel_mode", channel_mode, ("sum", "separate"))
        self.image_shape = (c, h, w)
        self.num_outputs = check_positive_int("num_outputs", num_outputs)
        self.channel_mode: ChannelMode = channel_mode
        groups = 1 if channel_mode == "sum" else c
        self.hidden_shape = (groups, h, w)
        self.kernel = nn.Parameter(torch.zeros(c, h, w, dtype=dtype))
        self.weight = nn.Parameter(torch.zeros(self.num_outputs, groups * h * w, dtype=dtype))

    @property
    def n(self) -> int:
        """The image side ``n`` (images are ``n×n``) (plumbing)."""
        return self.image_shape[1]

    @property
    def hidden_size(self) -> int:
        """The hidden width: ``n²`` (``channel_mode='sum'``) or ``C n²`` (``'separate'``) (plumbing)."""
        g, h, w = self.hidden_shape
        return g * h * w

    def set_parameters(self, kernel: torch.Tensor, weight: torch.Tensor) -> LinearCNN:
        """Copy ``kernel (C, n, n)`` and ``weight (p, hidden)`` into the module (shapes checked)."""
        if tuple(kernel.shape) != tuple(self.kernel.shape):
            raise ValueError(f"kernel must have shape {tuple(self.kernel.shape)}, got {describe(kernel)}")
        if tuple(weight.shape) != tuple(self.weight.shape):
            raise ValueError(f"weight must have shape {tuple(self.weight.shape)}, got {describe(weight)}")
        with torch.no_grad():
            self.kernel.copy_(kernel)
            self.weight.copy_(weight)
        return self

    def hidden(self, x: torch.Tensor, method: Literal["fft", "conv2d"] = "fft") -> torch.Tensor:
        """Hidden maps ``h (N, G, n, n)``: ``Σ_c K_c ⋆ X_c`` (sum) or ``K_c ⋆ X_c`` per channel (separate).

        ``method="fft"`` multiplies spectra (``conj(fft2 K) fft2 X``); ``method="conv2d"`` is the paper's
        implementation: wrap ``n-1`` rows/columns from the opposite side at the end, then a ``valid``
        ``conv2d`` with the ``n×n`` kernel (spec §3.5).
        """
        _check_images("x", x, self.image_shape)
        check_choice("method", method, ("fft", "conv2d"))
        c, n, _ = self.image_shape
        if method == "fft":
            maps = circular_conv2d(self.kernel.unsqueeze(0), x, op="corr")  # (N, C, n, n)
            return maps.sum(dim=1, keepdim=True) if self.channel_mode == "sum" else maps
        padded = F.pad(x, (0, n - 1, 0, n - 1), mode="circular")
        if self.channel_mode == "sum":
            return F.conv2d(padded, self.kernel.unsqueeze(0))
        return F.conv2d(padded, self.kernel.unsqueeze(1), groups=c)

    def forward(self, x: torch.Tensor, method: Literal["fft", "conv2d"] = "fft") -> torch.Tensor:
        """``ŷ (N, p) = W vec(h)`` (spec Eq. 8)."""
        return self.hidden(x, method).flatten(1) @ self.weight.T

    def convolution_kernel(self) -> torch.Tensor:
        """The kernel in the paper's **convolution** convention, ``k̃_ij = k_{(-i) mod n, (-j) mod n}``
        (spec S.23-S.26): ``K_c ⋆ X = K̃_c ⊛ X``, so ``h = circ(k̃) x`` as in the theory. ``(C, n, n)``."""
        return torch.roll(torch.flip(self.kernel.detach(), dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))

    def end_to_end(self) -> torch.Tensor:
        """The product ``W circ_⋆(k)`` as a ``(p, C n²)`` matrix (``ŷ = M vec(x)``), built via the FFT."""
        c, n, _ = self.image_shape
        eye = torch.eye(n * n, dtype=self.kernel.dtype, device=self.kernel.device).reshape(n * n, 1, n, n)
        cols = []
        for ch in range(c):
            basis = torch.zeros(n * n, c, n, n, dtype=self.kernel.dtype, device=self.kernel.device)
            basis[:, ch : ch + 1] = eye
            cols.append(self.forward(basis).T)  # (p, n²): images of the unit vectors of channel ch
        return torch.cat(cols, dim=1).detach()


class LinearFCNN(nn.Module):
    """Two-layer linear fully connected network ``ŷ = W2 W1 vec(x)`` (spec Eq. 17, App. I).

    Args:
        input_dim: ``D = C n²``; inputs may be ``(N, D)`` or images ``(N, C, n, n)`` (flattened row-major).
        hidden: hidden width (``n²`` in the paper; the CIFAR-4 value was lost, see docs).
        num_outputs: ``p``.
    Parameters ``w1 (hidden, D)`` and ``w2 (p, hidden)``, initialised to zero.
    """

    def __init__(self, input_dim: int, hidden: int, num_outputs: int, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.hidden_size = check_positive_int("hidden", hidden)
        self.num_outputs = check_positive_int("num_outputs", num_outputs)
        self.w1 = nn.Parameter(torch.zeros(self.hidden_size, self.input_dim, dtype=dtype))
        self.w2 = nn.Parameter(torch.zeros(self.num_outputs, self.hidden_size, dtype=dtype))

    def set_parameters(self, w1: torch.Tensor, w2: torch.Tensor) -> LinearFCNN:
        """Copy ``w1 (hidden, D)`` and ``w2 (p, hidden)`` into the module (shapes checked)."""
        if tuple(w1.shape) != tuple(self.w1.shape):
            raise ValueError(f"w1 must have shape {tuple(self.w1.shape)}, got {describe(w1)}")
        if tuple(w2.shape) != tuple(self.w2.shape):
            raise ValueError(f"w2 must have shape {tuple(self.w2.shape)}, got {describe(w2)}")
        with torch.no_grad():
            self.w1.copy_(w1)
            self.w2.copy_(w2)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``ŷ (N, p) = W2 W1 x`` (spec Eq. 17)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch tensor, got {describe(x)}")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.input_dim:
            raise ValueError(f"x must flatten to (N, {self.input_dim}), got {describe(x)}")
        return flat @ self.w1.T @ self.w2.T

    def end_to_end(self) -> torch.Tensor:
        """``W2 W1 (p, D)``."""
        return (self.w2 @ self.w1).detach()
