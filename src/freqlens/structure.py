"""Statistical structure of a labelled image dataset (spec ``linear_cnn_dynamics.md`` §2, §8.1).

``DatasetStructure.from_data(x, labels)`` computes the input-output correlation
``Σ_yx = <y xᵀ>`` for one-hot labels, its SVD ``Σ_yx = U S Vᵀ`` (Eq. 2), the vec-2D spectra of the
right singular vectors ``v̂_α = Q v_α`` (per channel), the dominant frequencies of each mode and a
class-coherence measure. Everything is float64 NumPy; the data are streamed in chunks so the
``(N, D)`` design matrix is never converted to float64 as a whole, and ``Σ_xx (D, D)`` is only built
when asked for (it is never needed for the SVD).

SVD sign convention: each pair ``(u_α, v_α)`` is flipped jointly so that the entry of ``u_α`` with
the largest magnitude is positive (ties within 1e-9 go to the lowest class index).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ._validation import (
    ArrayLike,
    check_finite,
    check_integer_labels,
    check_ndim,
    check_positive_int,
    check_real_floating,
    describe,
)
from .fourier import frequency_pairs, svd_phase_fix, vec2d_dft

__all__ = ["DatasetStructure", "DominantFrequencies"]

_CHUNK = 4096  # samples per float64 chunk: bounds the extra memory to chunk * D * 8 bytes.
_AUTO_SIGMA_XX_BYTES = 64 * 2**20  # build Σ_xx automatically only below 64 MiB ...
_AUTO_SIGMA_XX_FLOPS = 5e9  # ... and when N D² stays small.


def _as_samples(name: str, x: ArrayLike) -> tuple[ArrayLike, tuple[int, int, int]]:
    """Validate ``x (N, H, W)`` or ``(N, C, H, W)``; return a flat ``(N, D)`` view and ``(C, H, W)``."""
    check_ndim(name, x, (3, 4), "(N, H, W) or (N, C, H, W)")
    check_real_floating(name, x)
    check_finite(name, x)
    shape = (1, *tuple(x.shape[1:])) if x.ndim == 3 else tuple(x.shape[1:])
    c, h, w = (int(s) for s in shape)
    n = int(x.shape[0])
    flat = x.reshape(n, c * h * w)
    return flat, (c, h, w)


def _chunks(flat: ArrayLike, chunk: int = _CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, float64 numpy chunk)`` of the rows of ``flat``."""
    n = flat.shape[0]
    for start in range(0, n, chunk):
        block = flat[start : start + chunk]
        if isinstance(block, torch.Tensor):
            block = block.detach().cpu().numpy()
        yield start, np.asarray(block, dtype=np.float64)


@dataclass(frozen=True)
class DominantFrequencies:
    """Top-k frequencies of each mode by ``|v̂|`` (root-sum-square over channels).

    ``index (p, k)`` vec-2D indices ``m``; ``kl (p, k, 2)`` their ``(k, l)`` pairs;
    ``magnitude (p, k)`` the values ``sqrt(Σ_c |v̂_{c,m,α}|²)``, descending per mode.
    """

    index: np.ndarray
    kl: np.ndarray
    magnitude: np.ndarray


@dataclass(frozen=True, eq=False)
class DatasetStructure:
    """SVD structure of ``Σ_yx`` for a labelled image dataset (spec §2, Eqs. 1-5).

    Attributes (float64 NumPy):
        num_classes: ``p``.
        image_shape: ``(C, H, W)``; ``D = C*H*W`` with row-major (channel, row, column) order.
        num_samples: ``N``.
        class_counts: ``(p,)`` samples per class.
        class_means: ``(p, D)`` mean image of each class ``<x>_α``.
        sigma_yx: ``(p, D)`` ``Σ_yx = (1/N) Σ_i y_i x_iᵀ`` (Eq. 1); row α is ``(N_α/N) <x>_α``.
        U: ``(p, p)`` left singular vectors (columns); ``S``: ``(p,)`` descending singular values;
        V: ``(D, p)`` the ``p`` right singular vectors that carry the dataset's structure.
        v_proj_sigma_xx: ``(p, p)`` ``Vᵀ Σ_xx V`` (streamed; diagonal ``= p s²`` for one image per class).
        second_moment: ``E‖x‖²``.
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    num_samples: int
    class_counts: np.ndarray
    class_means: np.ndarray
    sigma_yx: np.ndarray
    U: np.ndarray
    S: np.ndarray
    V: np.ndarray
    v_proj_sigma_xx: np.ndarray
    second_moment: float
    input_eps: float = float(np.finfo(np.float64).eps)
    _sigma_xx: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_data(
        cls,
        x: ArrayLike,
        labels: ArrayLike,
        num_classes: int | None = None,
        compute_sigma_xx: bool | None = None,
    ) -> DatasetStructure:
        """Build the structure of ``(x, labels)``.

        Args:
            x: images ``(N, H, W)`` or ``(N, C, H, W)``, real floating point, finite.
            labels: integer class labels ``(N,)`` in ``[0, num_classes)``.
            num_classes: ``p``; defaults to ``max(labels) + 1``. Every class must have samples.
            compute_sigma_xx: build the dense ``Σ_xx (D, D)``. ``None`` (default) builds it only when it
                is small (≤ 64 MiB and ``N D²`` ≤ 5e9); ``False`` never; ``True`` always.
        """
        flat, shape = _as_samples("x", x)
        n_samples = int(flat.shape[0])
        if num_classes is not None:
            num_classes = check_positive_int("num_classes", num_classes)
        y = check_integer_labels("labels", labels, num_classes)
        if y.shape[0] != n_samples:
            raise ValueError(f"labels must have one entry per image: x has N={n_samples}, labels has {y.shape[0]}")
        if n_samples == 0:
            raise ValueError("x must hold at least one image, got N=0")
        p = int(num_classes if num_classes is not None else y.max() + 1)
        counts = np.bincount(y, minlength=p).astype(np.float64)
        if (counts == 0).any():
            missing = np.flatnonzero(counts == 0).tolist()
            raise ValueError(f"labels has no samples for classes {missing} (num_classes={p})")
        d = int(np.prod(shape))
        if compute_sigma_xx is None:
            compute_sigma_xx = d * d * 8 <= _AUTO_SIGMA_XX_BYTES and n_samples * d * d <= _AUTO_SIGMA_XX_FLOPS

        class_sums = np.zeros((p, d))
        second = 0.0
        sigma_xx = np.zeros((d, d)) if compute_sigma_xx else None
        for start, block in _chunks(flat):
            _index_add(class_sums, y[start : start + block.shape[0]], block)
            second += float(np.einsum("ij,ij->", block, block))
            if sigma_xx is not None:
                sigma_xx += block.T @ block
        if sigma_xx is not None:
            sigma_xx /= n_samples
        class_means = class_sums / counts[:, None]
        sigma_yx = class_sums / n_samples

        u, s, vt = np.linalg.svd(sigma_yx, full_matrices=False)
        u, v = svd_phase_fix(u, vt.T)

        # Vᵀ Σ_xx V = (1/N) (X V)ᵀ (X V): a second streamed pass, p columns only.
        proj = np.zeros((p, p))
        for _, block in _chunks(flat):
            xv = block @ v
            proj += xv.T @ xv
        proj /= n_samples

        return cls(
            num_classes=p,
            image_shape=shape,
            num_samples=n_samples,
            class_counts=counts,
            class_means=class_means,
            sigma_yx=sigma_yx,
            U=u,
            S=s,
            V=v,
            v_proj_sigma_xx=proj,
            second_moment=second / n_samples,
            input_eps=_input_eps(x),
            _sigma_xx=sigma_xx,
        )

    # ------------------------------------------------------------------ derived quantities
    @property
    def dim(self) -> int:
        """``D = C*H*W``."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def sigma_xx(self) -> np.ndarray:
        """Dense ``Σ_xx = <x xᵀ>`` ``(D, D)`` (Eq. 3); only available if built by :meth:`from_data`."""
        if self._sigma_xx is None:
            gib = self.dim**2 * 8 / 2**30
            raise ValueError(
                f"sigma_xx was not computed for D={self.dim} ({gib:.2f} GiB); "
                "pass compute_sigma_xx=True to DatasetStructure.from_data to build it"
            )
        return self._sigma_xx

    def rank(self, rtol: float | None = None) -> int:
        """Number of singular values above ``rtol * s_0`` (e.g. 3 for mean-subtracted CIFAR-4).

        The default tolerance, ``max(1e-10, 1000 eps)`` of the input dtype, ignores rounding noise of
        float32 data."""
        if rtol is None:
            rtol = max(1e-10, 1000 * self.input_eps)
        return int(np.sum(rtol * self.S[0] < self.S)) if self.S[0] > 0 else 0

    @property
    def v_images(self) -> np.ndarray:
        """Right singular vectors as images ``(p, C, H, W)``."""
        return self.V.T.reshape(self.num_classes, *self.image_shape)

    @property
    def v_hat(self) -> np.ndarray:
        """Vec-2D spectra of the right singular vectors, per channel: complex ``(p, C, H*W)``, ``v̂ = Q v``."""
        return vec2d_dft(self.v_images)

    @property
    def modes(self) -> np.ndarray:
        """The modes ``u_α s_α v_αᵀ`` as images: ``(p_modes, p_classes, C, H, W)``; ``sum`` over modes is ``Σ_yx``."""
        m = self.U.T[:, :, None] * self.S[:, None, None] * self.V.T[:, None, :]
        return m.reshape(self.num_classes, self.num_classes, *self.image_shape)

    def dominant_frequencies(self, k: int = 4) -> DominantFrequencies:
        """The ``k`` frequencies with the largest ``|v̂_{m,α}|`` for each mode α (channels combined)."""
        k = check_positive_int("k", k)
        _, h, w = self.image_shape
        if k > h * w:
            raise ValueError(f"k must be <= H*W = {h * w}, got {k}")
        mag = np.sqrt((np.abs(self.v_hat) ** 2).sum(axis=1))  # (p, H*W)
        order = np.argsort(-mag, axis=1, kind="stable")[:, :k]
        pairs = frequency_pairs((h, w))
        return DominantFrequencies(index=order, kl=pairs[order], magnitude=np.take_along_axis(mag, order, axis=1))

    @property
    def off_diagonal_fraction(self) -> float:
        """How far ``Vᵀ Σ_xx V`` is from diagonal: ``‖offdiag‖_F / ‖·‖_F`` (0 for coherent classes; spec §8.1)."""
        m = self.v_proj_sigma_xx
        total = float(np.linalg.norm(m))
        if total == 0.0:
            return 0.0
        return float(np.linalg.norm(m - np.diag(np.diag(m))) / total)

    @property
    def class_coherence(self) -> float:
        """Fraction of the second moment explained by the class means (spec §8.1, S.7-S.9):
        ``Σ_α π_α ‖<x>_α‖² / E‖x‖²``; 1 when every image equals its class mean (``C_α = 0``)."""
        pi = self.class_counts / self.num_samples
        between = float(np.sum(pi * np.einsum("ad,ad->a", self.class_means, self.class_means)))
        return between / self.second_moment if self.second_moment > 0 else 1.0

    def effective_singular_values(self, x: ArrayLike, y_hat: ArrayLike) -> np.ndarray:
        """``A = Uᵀ Σ_ŷx V`` with ``Σ_ŷx = (1/N) Σ_i ŷ_i x_iᵀ`` (spec §2, Eqs. 4-5): ``(p, p)`` float64.

        ``x`` has the dataset's image shape ``(N, C, H, W)`` (or ``(N, H, W)`` for C=1) and ``y_hat (N, p)``
        holds the network's outputs on those images. At a perfect fit ``A = diag(S)``.
        """
        flat, shape = _as_samples("x", x)
        if shape != self.image_shape:
            raise ValueError(f"x must have images of shape {self.image_shape}, got {describe(x)}")
        check_ndim("y_hat", y_hat, (2,), "(N, p)")
        check_real_floating("y_hat", y_hat)
        if y_hat.shape[0] != flat.shape[0] or y_hat.shape[1] != self.num_classes:
            raise ValueError(
                f"y_hat must have shape (N, p) = ({flat.shape[0]}, {self.num_classes}), got {describe(y_hat)}"
            )
        yh = y_hat.detach().cpu().numpy() if isinstance(y_hat, torch.Tensor) else np.asarray(y_hat)
        yh = yh.astype(np.float64, copy=False)
        acc = np.zeros((self.num_classes, self.num_classes))
        for start, block in _chunks(flat):
            acc += yh[start : start + block.shape[0]].T @ (block @ self.V)
        return self.U.T @ (acc / flat.shape[0])


def _input_eps(x: ArrayLike) -> float:
    if isinstance(x, torch.Tensor):
        return float(torch.finfo(x.dtype).eps)
    return float(np.finfo(x.dtype).eps)


def _index_add(target: np.ndarray, rows: np.ndarray, block: np.ndarray) -> None:
    """``target[rows[i]] += block[i]`` via a one-hot matmul (BLAS; much faster than ``np.add.at``)."""
    onehot = np.zeros((target.shape[0], rows.shape[0]))
    onehot[rows, np.arange(rows.shape[0])] = 1.0
    target += onehot @ block
