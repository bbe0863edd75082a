"""A labelled image dataset prepared once for the fast linear-network trainers.

:class:`LinearProblem` holds the training set's SVD structure (spec ``linear_cnn_dynamics.md`` §2),
the Fourier coefficients ``c(x) = √ω ⊙ (Q x)_R`` of every training image and their real view
``φ(x)`` (:mod:`.linear_spectral`) and, for the training set and an optional test set, the second moments that
make the losses and the effective singular values closed forms of the end-to-end map ``B``
(``ŷ = B φ(x)``):

* ``loss = (E‖y‖² − 2 tr(B Σ_φy) + tr(B Σ_φφ Bᵀ)) / p`` (Keras MSE with the ``1/p`` factor, spec §4.1);
* ``A = Uᵀ Σ_ŷx V = Uᵀ B (Σ_φφ V_φ)`` with ``V_φ = φ(v_α)`` (spec Eq. 5; ``φ`` is an isometry).

When a set has no more samples than dimensions the predictions are formed directly instead (cheaper,
and exact for one-image-per-class datasets). All moments are float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_finite, check_integer_labels, check_positive_int, check_real_floating, describe
from ..structure import DatasetStructure
from .linear_spectral import RealFourierBasis

__all__ = ["LinearProblem", "SetMoments"]

_CHUNK = 4096
_GRAM_BLOCKS = 4


def _as_images(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor of shape (N, C, n, n), got {describe(x)}")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name} must have shape (N, C, n, n) with square images, got {describe(x)}")
    check_real_floating(name, x)
    return x


@dataclass(frozen=True, eq=False)
class SetMoments:
    """Closed-form evaluation of loss and ``A`` on one sample set (train or test), float64.

    Either ``sigma_phi_phi (D', D')`` (moment route; stored in the data's precision) or ``phi (N, D')`` +
    ``targets (N, p)`` (direct route, float64) is set. ``sigma_y_phi (p, D')``, ``sigma_phi_v (D', p)`` and
    ``y_sq = E‖y‖²`` always are.
    """

    num_samples: int
    y_sq: float
    sigma_y_phi: torch.Tensor
    sigma_phi_v: torch.Tensor
    sigma_phi_phi: torch.Tensor | None
    phi: torch.Tensor | None
    targets: torch.Tensor | None

    @classmethod
    def compute(
        cls, phi: torch.Tensor, targets: torch.Tensor, v_phi: torch.Tensor, direct: bool | None = None
    ) -> SetMoments:
        """``phi (N, D')`` any float dtype, ``targets (N, p)``, ``v_phi (D', p)`` float64."""
        n_samples, dim = phi.shape
        if direct is None:
            direct = n_samples <= dim
        dev = phi.device
        work = phi.dtype  # products run in the data's precision; chunk sums accumulate in float64
        y_w = targets.to(work)
        v_w = v_phi.to(work)
        s_yphi = torch.zeros(targets.shape[1], dim, dtype=torch.float64, device=dev)
        s_phiv = torch.zeros(dim, v_phi.shape[1], dtype=torch.float64, device=dev)
        s_pp = None if direct else torch.zeros(dim, dim, dtype=torch.float64, device=dev)
        # Σ_φφ is symmetric: only the blocks on and above the diagonal are computed (≈2/3 of the work).
        edges = np.linspace(0, dim, _GRAM_BLOCKS + 1).astype(int)
        for start in range(0, n_samples, _CHUNK):
            block = phi[start : start + _CHUNK]
            s_yphi += (y_w[start : start + _CHUNK].T @ block).to(torch.float64)
            s_phiv += (block.T @ (block @ v_w)).to(torch.float64)
            if s_pp is not None:
                for i in range(_GRAM_BLOCKS):
                    a, b = edges[i], edges[i + 1]
                    s_pp[a:b, a:] += (block[:, a:b].T @ block[:, a:]).to(torch.float64)
        s_yphi /= n_samples
        s_phiv /= n_samples
        if s_pp is not None:
            upper = torch.triu(torch.ones(dim, dim, dtype=torch.bool, device=dev))
            for i in range(_GRAM_BLOCKS):  # blocks below the diagonal were never written
                a, b = edges[i], edges[i + 1]
                upper[a:b, a:] = True
            s_pp = torch.where(upper, s_pp, s_pp.T)
            s_pp = (s_pp / n_samples).to(work)
        y64 = targets.to(torch.float64)
        return cls(
            num_samples=int(n_samples),
            y_sq=float((y64 * y64).sum() / n_samples),
            sigma_y_phi=s_yphi,
            sigma_phi_v=s_phiv,
            sigma_phi_phi=s_pp,
            phi=phi.to(torch.float64) if direct else None,
            targets=y64 if direct else None,
        )

    def evaluate(self, end_to_end: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss ``(T,)`` and ``A (T, p, p)`` of the maps ``end_to_end (T, p, D')``, ``U (p, p)`` (float64 out).

        The ``O(p D'²)`` quadratic form of the moment route runs in the precision of ``sigma_phi_phi``
        (float32 for float32 problems: relative error ~1e-6 of the loss).
        """
        b = end_to_end.to(torch.float64)
        p = b.shape[1]
        if self.phi is not None and self.targets is not None:
            y_hat = torch.matmul(self.phi, b.transpose(1, 2))  # (T, N, p)
            loss = (self.targets - y_hat).pow(2).sum(dim=(1, 2)) / (self.num_samples * p)
        else:
            assert self.sigma_phi_phi is not None
            bq = b.to(self.sigma_phi_phi.dtype)
            quad = (torch.matmul(bq, self.sigma_phi_phi) * bq).sum(dim=(1, 2)).to(torch.float64)
            cross = (b * self.sigma_y_phi).sum(dim=(1, 2))
            loss = (self.y_sq - 2.0 * cross + quad) / p
        a = U.T @ torch.matmul(b, self.sigma_phi_v)
        return loss, a


@dataclass(frozen=True, eq=False)
class LinearProblem:
    """Training (and optional test) data in the form the fast linear trainers use.

    Build with :meth:`from_data`. Attributes:
        structure: :class:`~freqlens.structure.DatasetStructure` of the training set (``U``, ``S``, ``V``).
        basis: the :class:`~.linear_spectral.RealFourierBasis` of the image side ``n``.
        coeffs: ``(N, C, R)`` complex Fourier coefficients ``c(x)`` of the training images (complex64 for
            ``dtype=float32``, complex128 for float64; on ``device``); ``φ(x)`` is their real view.
        targets: ``(N, p)`` one-hot training labels (``dtype``).
        train / test: :class:`SetMoments` (``test`` is ``None`` without a test set).
        v_phi: ``(D', p)`` float64, ``φ(v_α)``.
    """

    structure: DatasetStructure
    basis: RealFourierBasis
    coeffs: torch.Tensor
    targets: torch.Tensor
    train: SetMoments
    test: SetMoments | None
    v_phi: torch.Tensor
    U: torch.Tensor

    @classmethod
    def from_data(
        cls,
        x: torch.Tensor,
        labels: torch.Tensor,
        x_test: torch.Tensor | None = None,
        labels_test: torch.Tensor | None = None,
        num_classes: int | None = None,
        structure: DatasetStructure | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> LinearProblem:
        """Prepare ``(x (N, C, n, n), labels (N,))`` and optionally a test set.

        Args:
            structure: reuse a :class:`DatasetStructure` of ``(x, labels)`` (computed if ``None``).
            dtype: float32 or float64, the dtype the trainers run in (moments are always float64).
            device: where the trainers run (``"cpu"`` or a CUDA device).
        """
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        x = _as_images("x", x)
        c, n, _ = (int(s) for s in x.shape[1:])
        if num_classes is not None:
            num_classes = check_positive_int("num_classes", num_classes)
        y = check_integer_labels("labels", labels, num_classes)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"labels must have one entry per image: x has N={x.shape[0]}, labels has {y.shape[0]}")
        if (x_test is None) != (labels_test is None):
            raise ValueError("x_test and labels_test must be given together")
        if structure is None:
            structure = DatasetStructure.from_data(x, labels, num_classes=num_classes, compute_sigma_xx=False)
        elif structure.image_shape != (c, n, n) or structure.num_samples != x.shape[0]:
            raise ValueError(
                f"structure describes {structure.num_samples} images of shape {structure.image_shape}, "
                f"but x has {x.shape[0]} images of shape {(c, n, n)}"
            )
        else:
            check_finite("x", x)
        p = structure.num_classes
        dev = torch.device(device)
        basis = RealFourierBasis.for_size(n)
        coeffs = _coefficients(basis, x, dtype, dev)
        targets = _one_hot(y, p, dtype, dev)
        v_coeffs = basis.coefficients(torch.from_numpy(structure.v_images).to(dev))
        v_phi = torch.view_as_real(v_coeffs).reshape(p, -1).T.contiguous()
        train = SetMoments.compute(_real_view(coeffs), targets, v_phi)
        test = None
        if x_test is not None and labels_test is not None:
            xt = _as_images("x_test", x_test)
            check_finite("x_test", xt)
            if tuple(xt.shape[1:]) != (c, n, n):
                raise ValueError(f"x_test must hold images of shape {(c, n, n)}, got {describe(x_test)}")
            yt = check_integer_labels("labels_test", labels_test, p)
            if yt.shape[0] != xt.shape[0]:
                raise ValueError(f"labels_test must have one entry per test image, got {yt.shape[0]} for {xt.shape[0]}")
            coeffs_t = _coefficients(basis, xt, dtype, dev)
            test = SetMoments.compute(_real_view(coeffs_t), _one_hot(yt, p, dtype, dev), v_phi)
        u = torch.from_numpy(structure.U).to(dev)
        return cls(
            structure=structure, basis=basis, coeffs=coeffs, targets=targets, train=train, test=test, v_phi=v_phi, U=u
        )

    # ---------------------------------------------------------------- conveniences
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, n, n)`` of the training images (plumbing)."""
        return self.structure.image_shape

    @property
    def num_classes(self) -> int:
        """The number of classes ``p`` (plumbing)."""
        return self.structure.num_classes

    @property
    def num_samples(self) -> int:
        """The number of training images ``N`` (plumbing)."""
        return int(self.coeffs.shape[0])

    @property
    def phi(self) -> torch.Tensor:
        """Real view ``φ(x) (N, D')`` of the coefficients (no copy)."""
        return _real_view(self.coeffs)

    @property
    def n(self) -> int:
        """The image side ``n`` (plumbing)."""
        return self.basis.n

    @property
    def dtype(self) -> torch.dtype:
        """The real dtype the trainers run in (float32 or float64)."""
        return self.coeffs.real.dtype

    @property
    def device(self) -> torch.device:
        """The device the coefficients, and so the trainers, live on (plumbing)."""
        return self.coeffs.device

    @property
    def packed_dim(self) -> int:
        """``D' = 2 C |R|`` (``C n²`` plus the identically-zero imaginary parts of self-conjugate entries)."""
        return 2 * int(self.coeffs[0].numel())

    def evaluate(self, end_to_end: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss_train``, ``a_train`` (and ``loss_test``, ``a_test``) of maps ``(T, p, D')`` acting on ``φ(x)``."""
        loss, a = self.train.evaluate(end_to_end, self.U)
        out = {"loss_train": loss, "a_train": a}
        if self.test is not None:
            lt, at = self.test.evaluate(end_to_end, self.U)
            out.update(loss_test=lt, a_test=at)
        return out


def _coefficients(basis: RealFourierBasis, x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``c(x)`` for every image, computed in float64 chunks, stored complex64/complex128 on ``device``."""
    n_samples, c = int(x.shape[0]), int(x.shape[1])
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    out = torch.empty(n_samples, c, basis.size, dtype=cdtype, device=device)
    for start in range(0, n_samples, _CHUNK):
        # float32 problems transform in float32 (the trainer runs in float32 anyway).
        block = x[start : start + _CHUNK].to(device=device, dtype=dtype)
        out[start : start + block.shape[0]] = basis.coefficients(block).to(cdtype)
    return out


def _real_view(coeffs: torch.Tensor) -> torch.Tensor:
    """``(N, C, R)`` complex -> ``(N, 2 C R)`` real, interleaved ``[Re, Im]`` (a view)."""
    return torch.view_as_real(coeffs).reshape(coeffs.shape[0], -1)


def _one_hot(labels: np.ndarray, p: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    eye = torch.eye(p, dtype=dtype, device=device)
    return eye[torch.from_numpy(labels).to(device)]
