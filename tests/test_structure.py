"""DatasetStructure: spec linear_cnn_dynamics §2, §8.1 and §11 items 9, 11, 12."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import freqlens.structure as structure_mod
from freqlens import DatasetStructure
from freqlens import fourier as fr
from freqlens.datasets import geometric_shapes, pure_cosines, sums_of_cosines


def _random_one_per_class(p: int, c: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p, c, n, n, generator=g, dtype=torch.float64), torch.arange(p)


def _check_one_image_per_class(x: torch.Tensor, labels: torch.Tensor) -> DatasetStructure:
    st_ = DatasetStructure.from_data(x, labels)
    p = st_.num_classes
    # Σ_yx = U S Vᵀ, rows = class images / p (balanced, one image per class)
    assert np.allclose(st_.U @ np.diag(st_.S) @ st_.V.T, st_.sigma_yx, atol=1e-12)
    assert np.allclose(st_.sigma_yx, x.reshape(p, -1).numpy() / p, atol=1e-14)
    assert np.allclose(st_.U.T @ st_.U, np.eye(p), atol=1e-12)
    assert np.allclose(st_.V.T @ st_.V, np.eye(p), atol=1e-12)
    # item 11: Vᵀ Σ_xx V diagonal with diag = p s² (streamed route and dense route)
    m = st_.v_proj_sigma_xx
    assert np.abs(m - np.diag(np.diag(m))).max() < 1e-12
    assert np.allclose(np.diag(m), p * st_.S**2, rtol=1e-12, atol=1e-14)
    dense = st_.V.T @ st_.sigma_xx @ st_.V
    assert np.allclose(dense, m, atol=1e-12)
    assert st_.class_coherence == pytest.approx(1.0, abs=1e-12)
    assert st_.off_diagonal_fraction < 1e-12
    return st_


@given(p=st.integers(2, 6), c=st.integers(1, 3), n=st.integers(3, 8), seed=st.integers(0, 10_000))
def test_one_image_per_class_random(p: int, c: int, n: int, seed: int) -> None:
    _check_one_image_per_class(*_random_one_per_class(p, c, n, seed))


def test_one_image_per_class_synthetic_datasets() -> None:
    for x, y in (
        pure_cosines(),
        sums_of_cosines(),
        geometric_shapes(),
        geometric_shapes(n=13, shapes=("ring", "cross", "diamond")),
    ):
        _check_one_image_per_class(x, y)


@pytest.mark.parametrize("n", [10, 16, 17])
def test_pure_cosines_vhat_magnitudes_and_singular_values(n: int) -> None:  # item 12 (first half)
    freqs = [(0, 0), (5, 2), (1, 7), (0, 4)] if n != 10 else [(0, 0), (5, 0), (1, 3), (0, 4)]
    amps = [1.5, 1.0, 0.5, 0.2]
    x, y = pure_cosines(n, freqs, amps)
    st_ = DatasetStructure.from_data(x, y)
    vh = st_.v_hat[:, 0]  # (p, n²)
    for a, (k, l) in enumerate(freqs):
        m, mbar = int(fr.vec_index(k, l, n)), int(fr.vec_index(-k, -l, n))
        self_conj = m == mbar
        expected = 1.0 if self_conj else 1 / np.sqrt(2)
        assert abs(vh[a, m]) == pytest.approx(expected, abs=1e-12)
        assert abs(vh[a, mbar]) == pytest.approx(expected, abs=1e-12)
        others = np.delete(np.abs(vh[a]), [m, mbar])
        assert others.max() < 1e-12
        # s_α = ‖x_α‖ / p with ‖x_α‖² = c² n² (self-conjugate) or c² n²/2
        norm2 = amps[a] ** 2 * n * n * (1.0 if self_conj else 0.5)
        assert st_.S[a] == pytest.approx(np.sqrt(norm2) / 4, rel=1e-12)
        assert np.allclose(np.abs(st_.U[:, a]), np.eye(4)[a], atol=1e-12)


def test_aligned_balanced_init_gives_diagonal_A() -> None:  # item 12 (second half)
    n, p = 16, 4
    x, y = pure_cosines(n)
    st_ = DatasetStructure.from_data(x, y)
    q = fr.dft_matrix(n)
    rng = np.random.default_rng(0)
    k = 0.02 * rng.standard_normal(n * n)
    kh = q @ k
    vh = st_.v_hat[:, 0].T  # (n², p)
    wbar = np.zeros((p, n * n), dtype=complex)
    for a in range(p):
        support = np.flatnonzero(np.abs(vh[:, a]) > 1e-9)
        phase_v = np.angle(vh[support, a])
        wbar[a, support] = kh[support].conj() * np.exp(-1j * phase_v)
    w = (st_.U @ wbar @ q).real  # W = U W̄ Q is real
    assert np.abs((st_.U @ wbar @ q).imag).max() < 1e-12
    # network outputs ŷ = W circ(k) x (true convolution, spec Eq. 8)
    circ = fr.circulant_matrix(k.reshape(n, n), "conv")
    xs = x.reshape(p, -1).numpy()
    y_hat = xs @ circ.T @ w.T
    a_mat = st_.effective_singular_values(x, torch.from_numpy(y_hat))
    assert np.abs(a_mat - np.diag(np.diag(a_mat))).max() < 1e-12 * np.abs(a_mat).max()
    d = p * st_.S**2
    for a in range(p):
        m = int(np.argmax(np.abs(vh[:, a])))
        nu = np.abs(vh[m, a])
        assert a_mat[a, a] == pytest.approx(n * d[a] * np.abs(kh[m]) ** 2 / nu, rel=1e-10)
    # item 9: W real implies W̄[:, m̄] = conj(W̄), and W̄ is recovered as Uᵀ W Q*
    wbar_back = st_.U.T @ w @ q.conj()
    assert np.allclose(wbar_back, wbar, atol=1e-12)
    mbar = fr.conjugate_index(n)
    random_w = rng.standard_normal((p, n * n))
    wb = st_.U.T @ random_w @ q.conj()
    assert np.allclose(wb[:, mbar], wb.conj(), atol=1e-12)


def test_effective_singular_values_perfect_fit_and_random() -> None:
    x, y = geometric_shapes()
    st_ = DatasetStructure.from_data(x, y)
    onehot = torch.nn.functional.one_hot(y, 6).double()
    assert np.allclose(st_.effective_singular_values(x, onehot), np.diag(st_.S), atol=1e-13)
    y_hat = torch.randn(6, 6, dtype=torch.float64)
    direct = st_.U.T @ (y_hat.numpy().T @ x.reshape(6, -1).numpy() / 6) @ st_.V
    assert np.allclose(st_.effective_singular_values(x, y_hat), direct, atol=1e-13)


def test_multichannel_many_samples_chunked_equals_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(structure_mod, "_CHUNK", 7)  # force several chunks
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 2, 5, 5, generator=g).double() + torch.arange(50).double().view(50, 1, 1, 1) % 3
    labels = torch.arange(50) % 3
    st_ = DatasetStructure.from_data(x, labels)
    xs = x.reshape(50, -1).numpy()
    yo = np.eye(3)[labels.numpy()]
    sigma_yx = yo.T @ xs / 50
    assert np.allclose(st_.sigma_yx, sigma_yx, atol=1e-13)
    assert np.allclose(st_.sigma_xx, xs.T @ xs / 50, atol=1e-12)
    assert np.allclose(st_.v_proj_sigma_xx, st_.V.T @ (xs.T @ xs / 50) @ st_.V, atol=1e-12)
    assert st_.second_moment == pytest.approx(float((xs**2).sum(1).mean()), rel=1e-12)
    within = sum(((xs[labels.numpy() == c] - st_.class_means[c]) ** 2).sum() for c in range(3)) / 50
    assert st_.class_coherence == pytest.approx(1 - within / st_.second_moment, rel=1e-10)
    assert st_.v_hat.shape == (3, 2, 25)
    assert st_.modes.shape == (3, 3, 2, 5, 5)
    assert np.allclose(st_.modes.sum(axis=0).reshape(3, -1), st_.sigma_yx, atol=1e-13)


def test_three_dim_input_and_float32() -> None:
    x, y = geometric_shapes()
    a = DatasetStructure.from_data(x[:, 0], y)
    b = DatasetStructure.from_data(x.float(), y)
    assert a.image_shape == (1, 16, 16)
    assert np.allclose(a.S, b.S, rtol=1e-6)


def test_sign_convention_largest_u_entry_positive() -> None:
    x, y = geometric_shapes()
    st_ = DatasetStructure.from_data(x, y)
    for a in range(st_.num_classes):
        i = int(np.argmax(np.abs(st_.U[:, a])))
        assert st_.U[i, a] > 0
    flipped = DatasetStructure.from_data(-x, y)  # Σ_yx → −Σ_yx: v flips, u keeps its convention
    assert np.allclose(flipped.U, st_.U, atol=1e-12) and np.allclose(flipped.V, -st_.V, atol=1e-12)


def test_dominant_frequencies() -> None:
    x, y = pure_cosines()
    dom = DatasetStructure.from_data(x, y).dominant_frequencies(2)
    assert dom.kl[1].tolist() in ([[5, 2], [11, 14]], [[11, 14], [5, 2]])
    assert dom.kl[0, 0].tolist() == [0, 0]
    assert np.allclose(dom.magnitude[1:], 1 / np.sqrt(2), atol=1e-12)
    with pytest.raises(ValueError, match="k must be <= H\\*W"):
        DatasetStructure.from_data(x, y).dominant_frequencies(1000)


def test_rank_for_mean_subtracted_balanced_data() -> None:
    x, y = geometric_shapes()
    xc = x - x.mean(0)
    st_ = DatasetStructure.from_data(xc, y)
    assert st_.rank() == 5 and st_.S[-1] < 1e-12 * st_.S[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": torch.zeros(4, 2, 3, 3, 3)}, "x must have shape \\(N, H, W\\) or \\(N, C, H, W\\)"),
        ({"x": torch.zeros(4, 1, 3, 3, dtype=torch.int64)}, "x must be a floating-point tensor"),
        ({"x": torch.zeros(4, 1, 3, 3, dtype=torch.complex128)}, "x must be real"),
        ({"x": torch.full((4, 1, 3, 3), float("nan"))}, "x contains NaN"),
        ({"labels": torch.tensor([0, 1, 2, 7])}, "labels must lie in \\[0, 3\\]"),
        ({"labels": torch.tensor([0.0, 1.0, 2.0, 3.0])}, "labels must have an integer dtype"),
        ({"labels": torch.tensor([0, 1, 2])}, "one entry per image"),
        ({"labels": torch.tensor([0, 1, 1, 3])}, "no samples for classes \\[2\\]"),
        ({"labels": torch.tensor([0, -1, 2, 3])}, "labels must be >= 0"),
    ],
)
def test_from_data_bad_input(kwargs: dict, match: str) -> None:
    args = {"x": torch.ones(4, 1, 3, 3, dtype=torch.float64), "labels": torch.arange(4), "num_classes": 4}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DatasetStructure.from_data(**args)


def test_effective_singular_values_bad_input_and_missing_sigma_xx() -> None:
    x, y = geometric_shapes()
    st_ = DatasetStructure.from_data(x, y, compute_sigma_xx=False)
    with pytest.raises(ValueError, match="sigma_xx was not computed"):
        _ = st_.sigma_xx
    with pytest.raises(ValueError, match="y_hat must have shape \\(N, p\\) = \\(6, 6\\)"):
        st_.effective_singular_values(x, torch.zeros(6, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="x must have images of shape"):
        st_.effective_singular_values(x[..., :8], torch.zeros(6, 6, dtype=torch.float64))
