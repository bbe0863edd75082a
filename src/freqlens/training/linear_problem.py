"""A labelled image dataset prepared once for the fast linear-network trainers.

:class:`LinearProblem` holds the training set's SVD structure (spec ``linear_cnn_dynamics.md`` §2),
the packed real Fourier coordinates ``φ(x) = P(Q x)`` of every training image
(:mod:`.linear_spectral`) and, for the training set and an optional test set, the second moments that
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

_CHUNK = 2048


def _as_images(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor of shape (N, C, n, n), got {describe(x)}")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name} must have shape (N, C, n, n) with square images, got {describe(x)}")
    check_real_floating(name, x)
    check_finite(name, x)
    return x


@dataclass(frozen=True, eq=False)
class SetMoments:
    """Closed-form evaluation of loss and ``A`` on one sample set (train or test), float64.

    Either ``sigma_phi_phi (D', D')`` (moment route) or ``phi (N, D')`` + ``targets (N, p)`` (direct
    route) is set. ``sigma_y_phi (p, D')``, ``sigma_phi_v (D', p)`` and ``y_sq = E‖y‖²`` always are.
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
        y64 = targets.to(torch.float64)
        s_yphi = torch.zeros(targets.shape[1], dim, dtype=torch.float64, device=dev)
        s_phiv = torch.zeros(dim, v_phi.shape[1], dtype=torch.float64, device=dev)
        s_pp = None if direct else torch.zeros(dim, dim, dtype=torch.float64, device=dev)
        for start in range(0, n_samples, _CHUNK):
            block = phi[start : start + _CHUNK].to(torch.float64)
            yb = y64[start : start + _CHUNK]
            s_yphi += yb.T @ block
            s_phiv += block.T @ (block @ v_phi)
            if s_pp is not None:
                s_pp += block.T @ block
        s_yphi /= n_samples
        s_phiv /= n_samples
        if s_pp is not None:
            s_pp /= n_samples
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
        """Loss ``(T,)`` and ``A (T, p, p)`` of the maps ``end_to_end (T, p, D')`` (float64), ``U (p, p)``."""
        b = end_to_end.to(torch.float64)
        p = b.shape[1]
        if self.phi is not None and self.targets is not None:
            y_hat = torch.matmul(self.phi, b.transpose(1, 2))  # (T, N, p)
            loss = (self.targets - y_hat).pow(2).sum(dim=(1, 2)) / (self.num_samples * p)
        else:
            assert self.sigma_phi_phi is not None
            bs = torch.matmul(b, self.sigma_phi_phi)  # (T, p, D')
            quad = (bs * b).sum(dim=(1, 2))
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
        phi: ``(N, C, 2, R)`` packed coordinates ``φ(x)`` of the training images (``dtype``, ``device``).
        targets: ``(N, p)`` one-hot training labels (``dtype``).
        train / test: :class:`SetMoments` (``test`` is ``None`` without a test set).
        v_phi: ``(D', p)`` float64, ``φ(v_α)``.
    """

    structure: DatasetStructure
    basis: RealFourierBasis
    phi: torch.Tensor
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
        p = structure.num_classes
        dev = torch.device(device)
        basis = RealFourierBasis.for_size(n)
        phi = _packed(basis, x, dtype, dev)
        targets = _one_hot(y, p, dtype, dev)
        v_phi = basis.to_packed(torch.from_numpy(structure.v_images).to(dev)).reshape(p, -1).T.contiguous()
        train = SetMoments.compute(phi.reshape(phi.shape[0], -1), targets, v_phi)
        test = None
        if x_test is not None and labels_test is not None:
            xt = _as_images("x_test", x_test)
            if tuple(xt.shape[1:]) != (c, n, n):
                raise ValueError(f"x_test must hold images of shape {(c, n, n)}, got {describe(x_test)}")
            yt = check_integer_labels("labels_test", labels_test, p)
            if yt.shape[0] != xt.shape[0]:
                raise ValueError(f"labels_test must have one entry per test image, got {yt.shape[0]} for {xt.shape[0]}")
            phi_t = _packed(basis, xt, dtype, dev)
            test = SetMoments.compute(phi_t.reshape(phi_t.shape[0], -1), _one_hot(yt, p, dtype, dev), v_phi)
        u = torch.from_numpy(structure.U).to(dev)
        return cls(structure=structure, basis=basis, phi=phi, targets=targets, train=train, test=test, v_phi=v_phi, U=u)

    # ---------------------------------------------------------------- conveniences
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.structure.image_shape

    @property
    def num_classes(self) -> int:
        return self.structure.num_classes

    @property
    def num_samples(self) -> int:
        return int(self.phi.shape[0])

    @property
    def n(self) -> int:
        return self.basis.n

    @property
    def dtype(self) -> torch.dtype:
        return self.phi.dtype

    @property
    def device(self) -> torch.device:
        return self.phi.device

    @property
    def packed_dim(self) -> int:
        """``D' = 2 C |R|`` (``C n²`` plus the identically-zero imaginary parts of self-conjugate entries)."""
        return int(self.phi[0].numel())

    def evaluate(self, end_to_end: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss_train``, ``a_train`` (and ``loss_test``, ``a_test``) of packed maps ``(T, p, D')``."""
        loss, a = self.train.evaluate(end_to_end, self.U)
        out = {"loss_train": loss, "a_train": a}
        if self.test is not None:
            lt, at = self.test.evaluate(end_to_end, self.U)
            out.update(loss_test=lt, a_test=at)
        return out


def _packed(basis: RealFourierBasis, x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``φ(x)`` for every image, computed in float64 chunks and stored as ``dtype`` on ``device``."""
    n_samples, c = int(x.shape[0]), int(x.shape[1])
    out = torch.empty(n_samples, c, 2, basis.size, dtype=dtype, device=device)
    for start in range(0, n_samples, _CHUNK):
        block = x[start : start + _CHUNK].to(device=device, dtype=torch.float64)
        out[start : start + block.shape[0]] = basis.to_packed(block).to(dtype)
    return out


def _one_hot(labels: np.ndarray, p: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    eye = torch.eye(p, dtype=dtype, device=device)
    return eye[torch.from_numpy(labels).to(device)]
