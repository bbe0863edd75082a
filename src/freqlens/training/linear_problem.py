"""A labelled image dataset prepared once for the fast linear-network trainers.

:class:`LinearProblem` holds the training set's SVD structure (spec ``linear_cnn_dynamics.md`` §2),
the Fourier coefficients ``c(x) = √ω ⊙ (Q x)_R`` of every training image and their real view
``φ(x)`` (:mod:`.linear_spectral`) and, for the training set and an optional test set, the second moments that
make the losses and the effective singular values closed forms of the end-to-end map ``B``
(``ŷ = B φ(x)``):

* ``loss = (E‖y‖² − 2 tr(B Σ_φy) + tr(B Σ_φφ Bᵀ)) / p`` (Keras MSE with the ``1/p`` factor, spec §4.1);
* ``A = Uᵀ Σ_ŷx V = Uᵀ B (Σ_φφ V_φ)`` with ``V_φ = φ(v_α)`` (spec Eq. 5; ``φ`` is an isometry).

The quadratic term is evaluated as ``tr(B Σ_φφ Bᵀ) = ‖B L‖²_F`` with the Cholesky factor ``Σ_φφ = L Lᵀ``
(computed once, float64, over the coordinates that are not identically zero): ``B L`` with ``L`` lower
triangular needs only the blocks on and below the diagonal, about half the work of ``(B Σ_φφ) · B``.
Rank-deficient moments (no Cholesky factor) keep the dense product. When a set has no more samples
than dimensions the predictions are formed directly instead (cheaper, and exact for
one-image-per-class datasets). All moments are float64.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from .._validation import check_finite, check_integer_labels, check_positive_int, check_real_floating, describe
from ..structure import DatasetStructure
from .linear_spectral import RealFourierBasis

__all__ = ["LinearProblem", "SetMoments"]

_CHUNK = 4096
_GRAM_BLOCKS = 4
_FACTOR_BLOCKS = 8  # column blocks of L: (8 + 1) / 16 = 56% of a dense product's work


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
    ``y_sq = E‖y‖²`` always are. On the moment route ``factor`` holds the column blocks ``L[j0:, j0:j1]``
    of the Cholesky factor of ``Σ_φφ`` restricted to the coordinates ``live`` (those with a non-zero
    second moment), in the data's precision; ``None`` if ``Σ_φφ`` is not positive definite there.
    """

    num_samples: int
    y_sq: float
    sigma_y_phi: torch.Tensor
    sigma_phi_v: torch.Tensor
    sigma_phi_phi: torch.Tensor | None
    phi: torch.Tensor | None
    targets: torch.Tensor | None
    live: torch.Tensor | None = None
    factor: tuple[torch.Tensor, ...] | None = None

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
        live, factor = None, None
        if s_pp is not None:
            upper = torch.triu(torch.ones(dim, dim, dtype=torch.bool, device=dev))
            for i in range(_GRAM_BLOCKS):  # blocks below the diagonal were never written
                a, b = edges[i], edges[i + 1]
                upper[a:b, a:] = True
            s_pp = torch.where(upper, s_pp, s_pp.T) / n_samples
            live, factor = _cholesky_blocks(s_pp, work)
            s_pp = s_pp.to(work)
        y64 = targets.to(torch.float64)
        return cls(
            num_samples=int(n_samples),
            y_sq=float((y64 * y64).sum() / n_samples),
            sigma_y_phi=s_yphi,
            sigma_phi_v=s_phiv,
            sigma_phi_phi=s_pp,
            phi=phi.to(torch.float64) if direct else None,
            targets=y64 if direct else None,
            live=live,
            factor=factor,
        )

    @property
    def needs_quadratic(self) -> bool:
        """Whether the loss of :meth:`evaluate_linear` still lacks the quadratic term (moment route; plumbing)."""
        return self.phi is None

    def evaluate_linear(self, end_to_end: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss without its quadratic term and ``A`` of the maps ``end_to_end (T, p, D')`` (float64 out).

        Moment route: ``(E‖y‖² − 2 tr(B Σ_φy)) / p`` (module doc); :meth:`quadratic` ``/ p`` completes it.
        Direct route (:attr:`needs_quadratic` false): the whole loss ``E‖y − B φ‖² / p`` (spec §4.1).
        ``A = Uᵀ B Σ_φv`` (spec Eq. 5) in both.
        """
        b = end_to_end.to(torch.float64)
        p = b.shape[1]
        if self.phi is not None and self.targets is not None:
            y_hat = torch.matmul(self.phi, b.transpose(1, 2))  # (T, N, p)
            loss = (self.targets - y_hat).pow(2).sum(dim=(1, 2)) / (self.num_samples * p)
        else:
            cross = (b * self.sigma_y_phi).sum(dim=(1, 2))
            loss = (self.y_sq - 2.0 * cross) / p
        a = U.T @ torch.matmul(b, self.sigma_phi_v)
        return loss, a

    def quadratic(self, end_to_end: torch.Tensor) -> torch.Tensor:
        """``tr(B_t Σ_φφ B_tᵀ) (T,)`` float64 for ``end_to_end (T, p, D')`` (moment route, module doc).

        The ``O(T p D'²)`` product runs in the precision of ``sigma_phi_phi`` (float32 for float32 problems:
        relative error ~1e-6). Its cost per row falls as ``T`` grows (larger matrix products), so the trainers
        stack the maps of several records into one call.
        """
        if self.sigma_phi_phi is None:
            raise ValueError("quadratic needs the moment route (sigma_phi_phi); this set uses the direct route")
        b = end_to_end.to(torch.float64)
        if self.factor is not None and self.live is not None:
            return _lower_product_sq_norm(b.index_select(2, self.live), self.factor)
        bq = b.to(self.sigma_phi_phi.dtype)
        return (torch.matmul(bq, self.sigma_phi_phi) * bq).sum(dim=(1, 2)).to(torch.float64)

    def evaluate(self, end_to_end: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss ``(T,)`` and ``A (T, p, p)`` of the maps ``end_to_end (T, p, D')``, ``U (p, p)`` (float64 out).

        ``loss = (E‖y‖² − 2 tr(B Σ_φy) + tr(B Σ_φφ Bᵀ)) / p`` (module doc, spec §4.1), ``A`` as in
        :meth:`evaluate_linear`.
        """
        loss, a = self.evaluate_linear(end_to_end, U)
        if self.needs_quadratic:
            loss = loss + self.quadratic(end_to_end) / end_to_end.shape[1]
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

    @cached_property
    def cnn_data(self) -> torch.Tensor:
        """The CNN trainer's data ``X = n x̂_R = n c(x) / √ω`` ``(N, C, R)`` (trainer module doc), made once per problem.

        Cached because it costs a pass over all coefficients (0.35 s for CIFAR-4 on the loaded 2-core machine,
        as much as ~1000 updates of 10 trials); it holds as much memory as :attr:`coeffs`.
        """
        scale = self.basis.scale(torch.float64, self.device)
        return (self.coeffs * (self.n / scale).to(self.dtype)).contiguous()

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


def _cholesky_blocks(
    sigma: torch.Tensor, work: torch.dtype
) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...] | None]:
    """``Σ = L Lᵀ`` on the coordinates with a non-zero diagonal: ``(live, column blocks L[j0:, j0:j1])``.

    Plumbing for ``tr(B Σ Bᵀ) = ‖B L‖²_F`` (module doc); ``(None, None)`` when ``Σ`` is not positive definite
    there (e.g. repeated images), so the dense product is used instead.
    """
    live = torch.nonzero(torch.diagonal(sigma) > 0).flatten()
    if live.numel() == 0:
        return None, None
    chol, info = torch.linalg.cholesky_ex(sigma.index_select(0, live).index_select(1, live))
    if int(info) != 0:
        return None, None
    edges = np.linspace(0, live.numel(), min(_FACTOR_BLOCKS, live.numel()) + 1).astype(int)
    blocks = tuple(chol[a:, a:b].to(work).contiguous() for a, b in itertools.pairwise(edges))
    return live, blocks


def _lower_product_sq_norm(b: torch.Tensor, blocks: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``‖b_t L‖²_F (T,)`` for ``b (T, p, d)`` float64 and the column blocks of lower-triangular ``L``.

    Column block ``[j0, j1)`` of ``b L`` is ``b[:, j0:] L[j0:, j0:j1]`` (``L`` is zero above the diagonal);
    the products run in the blocks' precision and the squares are summed in float64.
    """
    t, p, d = b.shape
    rows = b.reshape(t * p, d).to(blocks[0].dtype)
    total = torch.zeros(t, dtype=torch.float64, device=b.device)
    for block in blocks:
        start = d - block.shape[0]
        part = (rows[:, start:] @ block).to(torch.float64)
        total += part.pow(2).reshape(t, -1).sum(dim=1)
    return total


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
