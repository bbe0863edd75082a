"""Fourier core: spec linear_cnn_dynamics §11 items 1-6 (+ conv-layer multiplier, resampling rules)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from freqlens import fourier as fr

SIZES = [2, 3, 4, 5, 6, 7, 8]


def _mbar_formula(m: np.ndarray, n: int) -> np.ndarray:
    # spec §11 item 3, written independently of freqlens.fourier
    return ((-(m // n)) % n) * n + (-(m % n)) % n


def _direct_circular_conv(k: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(K ⊛ X)_ij = Σ_ab K_ab X_{(i-a),(j-b)} by explicit loops (independent route)."""
    h, w = x.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            for a in range(h):
                for b in range(w):
                    out[i, j] += k[a, b] * x[(i - a) % h, (j - b) % w]
    return out


def _blockwise_dbc(k: np.ndarray) -> np.ndarray:
    """Doubly block circulant built block by block as in S.17: block (I, J) = circ(k_{(I-J) mod n})."""
    n = k.shape[0]
    blocks = [[fr.circulant_1d(k[(i - j) % n], "conv") for j in range(n)] for i in range(n)]
    return np.block(blocks)


@pytest.mark.parametrize("n", SIZES)
def test_q_unitary_symmetric_and_powers(n: int) -> None:  # item 1 and Q^2 = P, Q^4 = I
    q = fr.dft_matrix(n)
    eye = np.eye(n * n)
    assert np.allclose(q @ q.conj().T, eye, atol=1e-12)
    assert np.allclose(q, q.T, atol=1e-14)
    q2 = q @ q
    perm = np.zeros((n * n, n * n))
    perm[np.arange(n * n), _mbar_formula(np.arange(n * n), n)] = 1
    assert np.allclose(q2, perm, atol=1e-12)
    assert np.allclose(q2 @ q2, eye, atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
def test_q_matches_fft2_and_FXF(n: int, rng: np.random.Generator) -> None:  # item 2
    q = fr.dft_matrix(n)
    f = fr.dft_matrix_1d(n)
    x = rng.standard_normal((n, n))
    qx = q @ x.reshape(-1)
    assert np.allclose(qx, np.fft.fft2(x).reshape(-1) / n, atol=1e-12)
    assert np.allclose(qx, (f @ x @ f).reshape(-1), atol=1e-12)


@pytest.mark.parametrize("n", [3, 4, 7])
def test_vec2d_dft_batched_multichannel_numpy_and_torch(n: int, rng: np.random.Generator) -> None:
    q = fr.dft_matrix(n)
    x = rng.standard_normal((5, 3, n, n))
    expected = np.einsum("mk,bck->bcm", q, x.reshape(5, 3, n * n))
    assert np.allclose(fr.vec2d_dft(x), expected, atol=1e-12)
    xt = torch.from_numpy(x)
    got = fr.vec2d_dft(xt)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.complex128
    assert np.allclose(got.numpy(), expected, atol=1e-12)
    back = fr.vec2d_idft(got, (n, n))
    assert torch.allclose(back.real, xt, atol=1e-12) and float(back.imag.abs().max()) < 1e-12


@pytest.mark.parametrize("n", SIZES)
def test_conjugate_index_and_real_spectrum(n: int, rng: np.random.Generator) -> None:  # item 3
    mbar = fr.conjugate_index(n)
    assert np.array_equal(mbar, _mbar_formula(np.arange(n * n), n))
    assert np.array_equal(mbar[mbar], np.arange(n * n))  # involution
    xh = fr.vec2d_dft(rng.standard_normal((2, n, n)))
    assert np.allclose(xh[:, mbar], xh.conj(), atol=1e-12)


@pytest.mark.parametrize("n", SIZES)
def test_self_conjugate_set(n: int, rng: np.random.Generator) -> None:
    idx = fr.self_conjugate_indices(n)
    assert np.array_equal(idx, np.flatnonzero(fr.conjugate_index(n) == np.arange(n * n)))
    pairs = {tuple(p) for p in fr.frequency_pairs(n)[idx]}
    expected = {(0, 0)} if n % 2 else {(0, 0), (n // 2, 0), (0, n // 2), (n // 2, n // 2)}
    assert pairs == expected
    xh = fr.vec2d_dft(rng.standard_normal((n, n)))
    assert np.abs(xh[idx].imag).max() < 1e-12  # real on self-conjugate frequencies


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_dbc_conv_blockwise_direct_and_eigendecomposition(n: int, rng: np.random.Generator) -> None:  # items 4-5
    k = rng.standard_normal((n, n))
    x = rng.standard_normal((n, n))
    c = fr.circulant_matrix(k, "conv")
    assert np.allclose(c, _blockwise_dbc(k), atol=0)
    assert np.allclose(c @ x.reshape(-1), _direct_circular_conv(k, x).reshape(-1), atol=1e-12)
    assert np.allclose(c @ x.reshape(-1), fr.circular_conv2d(k, x, "conv").reshape(-1), atol=1e-12)
    # circ(k) x = circ(x) k (S.19)
    assert np.allclose(c @ x.reshape(-1), fr.circulant_matrix(x, "conv") @ k.reshape(-1), atol=1e-12)
    q = fr.dft_matrix(n)
    kh = q @ k.reshape(-1)
    assert np.allclose(c, q.conj() @ np.diag(n * kh) @ q, atol=1e-12)
    assert np.allclose(c @ q.conj(), q.conj() * (n * kh)[None, :], atol=1e-12)
    lam, vecs = fr.circulant_eigendecomposition(k, "conv")
    assert np.allclose(lam, np.fft.fft2(k).reshape(-1), atol=1e-12)
    assert np.allclose(vecs, q.conj(), atol=1e-14)
    assert np.allclose(np.sort(np.linalg.svd(c, compute_uv=False)), np.sort(n * np.abs(kh)), atol=1e-10)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_dbc_corr_transpose_conjugate_and_keras_wrap(n: int, rng: np.random.Generator) -> None:  # item 6
    k = rng.standard_normal((n, n))
    x = rng.standard_normal((n, n))
    q = fr.dft_matrix(n)
    kh = q @ k.reshape(-1)
    corr = fr.circulant_matrix(k, "corr")
    assert np.allclose(corr, fr.circulant_matrix(k, "conv").T, atol=0)
    assert np.allclose(corr, q.conj() @ np.diag(n * kh.conj()) @ q, atol=1e-12)
    assert np.allclose(corr, q @ np.diag(n * kh) @ q.conj(), atol=1e-12)
    assert np.allclose(fr.circulant_eigenvalues(k, "corr"), np.fft.fft2(k).reshape(-1).conj(), atol=1e-12)
    # valid correlation of the end-wrap-padded image (the paper's Keras implementation, §3.5)
    xt = torch.from_numpy(x)[None, None]
    padded = F.pad(xt, (0, n - 1, 0, n - 1), mode="circular")
    keras = F.conv2d(padded, torch.from_numpy(k)[None, None]).reshape(-1).numpy()
    assert np.allclose(corr @ x.reshape(-1), keras, atol=1e-12)
    # Q Q k is the index-negated kernel (S.26)
    negated = k[(-np.arange(n)) % n][:, (-np.arange(n)) % n]
    assert np.allclose(q @ q @ k.reshape(-1), negated.reshape(-1), atol=1e-12)
    assert np.allclose(fr.circulant_matrix(negated, "conv"), corr, atol=0)


@given(
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    cin=st.integers(1, 3),
    cout=st.integers(1, 3),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    pad=st.integers(0, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_conv2d_transfer_matrices_match_torch_circular_conv(
    h: int, w: int, cin: int, cout: int, kh: int, kw: int, pad: int, seed: int
) -> None:
    kh, kw = min(kh, h), min(kw, w)
    pad = min(pad, h, w)  # torch circular padding needs pad <= size
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(cout, cin, kh, kw, generator=g, dtype=torch.float64)
    x = torch.randn(2, cin, h, w, generator=g, dtype=torch.float64)
    # y(m) = Σ_t W(t) x(m + t - p): gather the circularly shifted rows/columns explicitly
    rows = (torch.arange(h + kh - 1) - pad) % h
    cols = (torch.arange(w + kw - 1) - pad) % w
    xfull = x[..., rows, :][..., cols]
    if pad <= min(h, w) and 2 * pad == kh - 1 == kw - 1:
        # the same-size case is exactly nn.Conv2d(padding=p, padding_mode="circular")
        ref = torch.nn.functional.conv2d(F.pad(x, (pad,) * 4, mode="circular"), weight)
        assert torch.allclose(ref, F.conv2d(xfull, weight), atol=1e-12)
    y = F.conv2d(xfull, weight)[..., :h, :w]
    t = fr.conv2d_transfer_matrices(weight, (h, w), padding=pad)
    assert t.shape == (h, w, cout, cin)
    pred = torch.einsum("uvdc,bcuv->bduv", t, torch.fft.fft2(x))
    scale = float(torch.fft.fft2(y).abs().max()) + 1e-300
    assert float((torch.fft.fft2(y) - pred).abs().max()) / scale < 1e-12


def test_transfer_matrices_numpy_input_and_dense_operator(rng: np.random.Generator) -> None:
    h, w, cin, cout, k = 5, 4, 2, 3, 3
    weight = rng.standard_normal((cout, cin, k, k))
    t = fr.conv2d_transfer_matrices(weight, (h, w))
    assert isinstance(t, np.ndarray) and t.dtype == np.complex128
    # dense operator of the one-sided end-wrap correlation, column by column
    dense = np.zeros((cout * h * w, cin * h * w))
    for col in range(cin * h * w):
        e = np.zeros(cin * h * w)
        e[col] = 1
        xe = torch.from_numpy(e.reshape(1, cin, h, w))
        ye = F.conv2d(F.pad(xe, (0, k - 1, 0, k - 1), mode="circular"), torch.from_numpy(weight))
        dense[:, col] = ye.reshape(-1).numpy()
    sv_dense = np.sort(np.linalg.svd(dense, compute_uv=False))
    sv_freq = np.sort(np.linalg.svd(t, compute_uv=False).reshape(-1))
    assert np.allclose(sv_dense, sv_freq, atol=1e-10)


def test_transfer_matrix_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="larger than the grid"):
        fr.conv2d_transfer_matrices(np.zeros((1, 1, 5, 5)), (4, 4))
    with pytest.raises(ValueError, match="weight must have shape"):
        fr.conv2d_transfer_matrices(np.zeros((3, 3)), (4, 4))
    with pytest.raises(ValueError, match="must be real"):
        fr.conv2d_transfer_matrices(np.zeros((1, 1, 3, 3), dtype=complex), (4, 4))


@pytest.mark.parametrize(("h", "w", "s"), [(8, 8, 2), (6, 9, 3), (12, 8, (3, 2))])
def test_downsample_spectrum_aliasing_fold(h: int, w: int, s, rng: np.random.Generator) -> None:  # C14
    z = rng.standard_normal((2, 3, h, w))
    sh, sw = (s, s) if isinstance(s, int) else s
    got = fr.downsample_spectrum(np.fft.fft2(z), s)
    assert np.allclose(got, np.fft.fft2(z[..., ::sh, ::sw]), atol=1e-12)
    got_t = fr.downsample_spectrum(torch.fft.fft2(torch.from_numpy(z)), s)
    assert np.allclose(got_t.numpy(), got, atol=1e-12)
    with pytest.raises(ValueError, match="must divide"):
        fr.downsample_spectrum(np.fft.fft2(z), 5)


@pytest.mark.parametrize(("h0", "w0", "r"), [(4, 4, 2), (3, 5, 2), (4, 3, 3)])
def test_upsampling_spectra(h0: int, w0: int, r: int, rng: np.random.Generator) -> None:
    z = rng.standard_normal((2, h0, w0))
    up = np.zeros((2, r * h0, r * w0))
    up[:, ::r, ::r] = z
    g = np.fft.fft2(z)
    assert np.allclose(fr.zero_insertion_spectrum(g, r), np.fft.fft2(up), atol=1e-12)
    near = F.interpolate(torch.from_numpy(z)[None], scale_factor=r, mode="nearest")[0].numpy()
    hn = fr.nearest_upsample_spectrum(g, r)
    assert np.allclose(hn, np.fft.fft2(near), atol=1e-11)
    # DC replicas of nearest upsampling vanish exactly
    for a in range(r):
        for b in range(r):
            if a or b:
                assert abs(hn[0, a * h0, b * w0]) < 1e-10 * abs(g[0, 0, 0]) + 1e-12


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_signed_frequencies(n: int) -> None:
    f = fr.signed_frequencies(n)
    ref = np.round(np.fft.fftfreq(n) * n).astype(int)
    if n % 2 == 0:
        ref[n // 2] = n // 2  # Nyquist labelled positive, (-n/2, n/2]
    assert np.array_equal(f, ref)


@given(n=st.integers(2, 12), k=st.integers(-30, 30), l=st.integers(-30, 30))
def test_vec_index_and_pairs_roundtrip(n: int, k: int, l: int) -> None:
    m = int(fr.vec_index(k, l, n))
    assert tuple(fr.frequency_pairs(n)[m]) == (k % n, l % n)
    assert int(fr.conjugate_index(n)[m]) == int(fr.vec_index(-k, -l, n))


def test_bad_inputs_named() -> None:
    with pytest.raises(ValueError, match="op must be one of"):
        fr.circulant_matrix(np.zeros((3, 3)), "convolve")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kernel must have shape"):
        fr.circulant_matrix(np.zeros(3))
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        fr.dft_matrix(0)
    with pytest.raises(TypeError, match="x must be a numpy array or a torch tensor"):
        fr.unitary_fft2([[1.0, 2.0]])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- one home per convention
@given(h=st.integers(1, 9), w=st.integers(1, 9))
def test_conjugate_representatives_and_half_plane_hold_one_member_per_pair(h: int, w: int) -> None:
    conj = fr.conjugate_index((h, w))
    reps = fr.conjugate_representatives((h, w))
    # every frequency is a representative or the partner of exactly one
    covered = np.concatenate([reps, conj[reps][conj[reps] != reps]])
    assert np.array_equal(np.sort(covered), np.arange(h * w))
    half, full = fr.half_plane_representatives((h, w))
    wr = w // 2 + 1
    u, v = np.divmod(half, wr)
    assert np.array_equal(full, u * w + v) and np.all(v < wr)
    covered = np.concatenate([full, conj[full][conj[full] != full]])
    assert np.array_equal(np.sort(covered), np.arange(h * w))
    sc = {int(m) for m in np.flatnonzero(conj == np.arange(h * w))}
    assert sc == set(fr.self_conjugate_indices((h, w)).tolist())
    for m in range(h * w):
        k, l = divmod(m, w)
        assert fr.is_self_conjugate((k, l), (h, w)) == (m in sc)


@given(length=st.integers(1, 9), period=st.integers(1, 40), shift=st.integers(-500, 500))
def test_dirichlet_kernel_closed_form_equals_the_direct_minus_sign_sum(length: int, period: int, shift: int) -> None:
    f = np.arange(period) + shift * period  # large frequencies: the phase reduction must hold
    direct = np.exp(-2j * np.pi * np.outer(np.arange(period), np.arange(length)) / period).sum(axis=1)
    np.testing.assert_allclose(fr.dirichlet_kernel(f, length, period), direct, atol=1e-12 * length)


@given(h=st.integers(1, 8), w=st.integers(1, 8), sh=st.integers(-9, 9), sw=st.integers(-9, 9), seed=st.integers(0, 99))
def test_phase_ramp_is_the_spectrum_of_a_circular_shift(h: int, w: int, sh: int, sw: int, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(h, w))
    shifted = np.roll(x, (sh, sw), axis=(0, 1))  # x[i - s]
    np.testing.assert_allclose(np.fft.fft2(shifted), fr.phase_ramp((h, w), (sh, sw)) * np.fft.fft2(x), atol=1e-11)
    np.testing.assert_allclose(fr.phase_ramp((h, w), (sh, sw), sign=+1), np.conj(fr.phase_ramp((h, w), (sh, sw))))


@given(
    m=st.integers(1, 6), n=st.integers(1, 6), batch=st.integers(1, 3), complex_=st.booleans(), seed=st.integers(0, 99)
)
def test_svd_phase_fix_keeps_the_factorisation_and_fixes_the_phase(
    m: int, n: int, batch: int, complex_: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(batch, m, n)) + (1j * rng.normal(size=(batch, m, n)) if complex_ else 0)
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    uf, vf = fr.svd_phase_fix(u, np.conj(np.swapaxes(vh, -1, -2)))
    np.testing.assert_allclose((uf * s[..., None, :]) @ np.conj(np.swapaxes(vf, -1, -2)), a, atol=1e-12)
    for b in range(batch):
        for col in range(s.size // batch):
            i = int(np.argmax(np.abs(uf[b, :, col]) >= np.abs(uf[b, :, col]).max() - 1e-9))
            assert abs(uf[b, i, col].imag) < 1e-12 and uf[b, i, col].real > 0
    again = fr.svd_phase_fix(uf, vf)  # idempotent
    np.testing.assert_allclose(again[0], uf, atol=1e-14)


def test_as_pair_reads_sizes_strictly() -> None:
    assert fr.as_pair("stride", 2) == (2, 2)
    assert fr.as_pair("stride", (np.int64(1), 3)) == (1, 3)
    for bad, kind in (
        (2.5, TypeError),
        ((3, 16.5), TypeError),
        (True, TypeError),
        ("22", TypeError),
        ((1, 2, 3), ValueError),
    ):
        with pytest.raises(kind, match="stride must be an int or a pair of ints"):
            fr.as_pair("stride", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride must be >= 1"):
        fr.as_pair("stride", (1, 0), minimum=1)
