"""spectral.weights: per-frequency layer spectra against dense operators built independently (float64).

Dense operators are built by pushing unit vectors through the PyTorch layer (or an explicit loop), so they
share no code with the FFT route. Checks C1, C2, C3, C4, C5a, C5b, C14 of conv_bottleneck §8.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from dense_references import circular_transposed_reference
from freqlens.analysis.cbn import kept_by_threshold
from freqlens.fourier import conjugate_index, dft_matrix_1d, downsample_spectrum, self_conjugate_mask
from freqlens.hooks import LayerForwardError
from freqlens.models.circular_cnn import CircularCNN, CircularConv2d
from freqlens.spectral import _blas as blas_module
from freqlens.spectral import weights as weights_module
from freqlens.spectral.conv import module_transfer_matrices
from freqlens.spectral.weights import (
    layer_operator_blocks,
    layer_spectrum,
    singular_values_by_frequency,
    stride_blocks,
    transposed_blocks,
    upsampling_gains,
    weight_spectra,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def dense_operator(fn, cin: int, h: int, w: int) -> np.ndarray:
    """Matrix of the linear map ``fn`` (bias removed) from R^{cin·h·w}: columns are images of unit vectors."""
    eye = torch.eye(cin * h * w, dtype=torch.float64).reshape(-1, cin, h, w)
    out = fn(eye) - fn(torch.zeros(1, cin, h, w, dtype=torch.float64))
    return out.reshape(cin * h * w, -1).T.numpy()


def unitary_dft(h: int, w: int, channels: int) -> np.ndarray:
    """``I_c ⊗ (F_h ⊗ F_w)``: the unitary DFT on channel-major vectorised images."""
    return np.kron(np.eye(channels), np.kron(dft_matrix_1d(h), dft_matrix_1d(w)))


def fourier_operator(mat: np.ndarray, cin: int, hin: int, win: int, cout: int, hout: int, wout: int) -> np.ndarray:
    """``Q_out M Q_inᴴ`` reshaped to ``(cout, hout, wout, cin, hin, win)``."""
    q_in = unitary_dft(hin, win, cin)
    q_out = unitary_dft(hout, wout, cout)
    return (q_out @ mat @ q_in.conj().T).reshape(cout, hout, wout, cin, hin, win)


def sorted_sv(mat: np.ndarray) -> np.ndarray:
    return np.sort(np.linalg.svd(mat, compute_uv=False))[::-1]


def union_sv(sv: np.ndarray, count: int) -> np.ndarray:
    return np.sort(sv.reshape(-1))[::-1][:count]


# --------------------------------------------------------------------------- C1, C5a: stride-1 circular
@pytest.mark.parametrize("n", [6, 7])
@pytest.mark.parametrize(("k", "p"), [(1, 0), (3, 1), (3, 0), (5, 2), (4, 1)])
@pytest.mark.parametrize(("cin", "cout"), [(1, 2), (3, 2)])
def test_circular_multiplier_is_the_fourier_block_of_the_dense_operator(n, k, p, cin, cout):
    conv = nn.Conv2d(cin, cout, k, padding=p, padding_mode="circular").double()
    if 2 * p != k - 1:  # PyTorch only keeps the size for symmetric 'same' padding
        return
    mat = dense_operator(conv, cin, n, n)
    four = fourier_operator(mat, cin, n, n, cout, n, n)
    # C5a, written out independently in numpy: conj(fft2(K_pad)) e^{-2πi<ω,(p,p)>/n}
    kernel = conv.weight.numpy()
    u = np.arange(n)
    phase = np.exp(-2j * np.pi * (u[:, None] * p + u[None, :] * p) / n)
    expected = np.conj(np.fft.fft2(kernel, s=(n, n))) * phase  # (cout, cin, n, n)
    diag = four[:, u[:, None], u[None, :], :, u[:, None], u[None, :]]  # (n, n, cout, cin)
    assert np.allclose(diag, expected.transpose(2, 3, 0, 1), atol=1e-12)
    off = four.copy()
    off[:, u[:, None], u[None, :], :, u[:, None], u[None, :]] = 0
    assert np.abs(off).max() < 1e-12  # block-diagonal: frequencies decouple
    # C1: FFT2(W ⋆ z)(ω) = T(ω) ẑ(ω), with T from the library
    t = module_transfer_matrices(conv, (n, n)).numpy()
    z = np.random.default_rng(0).standard_normal((cin, n, n))
    lhs = np.fft.fft2((mat @ z.reshape(-1)).reshape(cout, n, n))
    rhs = np.einsum("uvoi,iuv->ouv", t, np.fft.fft2(z))
    assert np.allclose(lhs, rhs, atol=1e-9 * max(1.0, float(np.abs(rhs).max())))


# --------------------------------------------------------------------------- C2, C3, C5b vs the dense operator
@given(
    n=st.integers(4, 9),
    k=st.sampled_from([1, 2, 3, 5]),
    cin=st.integers(1, 3),
    cout=st.integers(1, 4),
    stride=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**16),
)
def test_circular_layer_spectrum_equals_dense_svd(n, k, cin, cout, stride, seed):
    if k > n or n % stride:
        return
    torch.manual_seed(seed)
    conv = CircularConv2d(cin, cout, k, stride=stride).double()
    mat = dense_operator(conv, cin, n, n)
    spec = layer_spectrum(conv, (n, n))
    assert spec.exact and spec.grid == (n // stride, n // stride)
    dense = sorted_sv(mat)
    ours = union_sv(spec.singular_values, dense.size)
    assert spec.singular_values.size == dense.size  # same multiset size: Σ_ω' min(c_out, s² c_in)
    assert np.allclose(ours, dense, atol=1e-10 * max(1.0, dense[0]))  # C2 / C5b
    # C3: ‖MW‖_F² = Σ s² = |P_out| ‖W‖²
    norm = float((mat**2).sum())
    assert np.isclose(spec.operator_norm_sq, norm, rtol=1e-10)
    assert np.isclose(norm, (n // stride) ** 2 * float(conv.weight.pow(2).sum()), rtol=1e-10)
    # frequency by frequency (conjugate half, real self-conjugate blocks, Gram route and its guard): the SVD
    # of every block, with its phases, from the stride-1 multiplier of the FFT route
    every = np.linalg.svd(layer_operator_blocks(conv, (n, n)).numpy(), compute_uv=False)
    assert np.abs(spec.singular_values - every).max() <= 1e-12 * max(1.0, every.max())


@pytest.mark.parametrize(("n", "stride"), [(8, 2), (6, 2), (9, 3), (6, 3)])
def test_aliasing_blocks_are_the_fourier_blocks_of_the_strided_operator(n, stride):
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=1, padding_mode="circular").double()
    mat = dense_operator(conv, 2, n, n)
    m = n // stride
    four = fourier_operator(mat, 2, n, n, 3, m, m)  # (cout, m, m, cin, n, n)
    blocks = layer_operator_blocks(conv, (n, n)).numpy()  # (m, m, cout, s² cin)
    expected = np.zeros_like(four)
    for u in range(m):
        for v in range(m):
            for ah in range(stride):
                for aw in range(stride):
                    col = (ah * stride + aw) * 2
                    expected[:, u, v, :, u + ah * m, v + aw * m] = blocks[u, v, :, col : col + 2]
    assert np.allclose(four, expected, atol=1e-12)  # C5b in 2-D


def test_stride_blocks_formula_and_errors():
    t = torch.randn(6, 4, 2, 3, dtype=torch.complex128)
    b = stride_blocks(t, (2, 1))
    assert b.shape == (3, 4, 2, 6)
    assert torch.allclose(b[1, 2, :, 3:], t[4, 2] / np.sqrt(2))
    assert stride_blocks(t, 1) is t
    with pytest.raises(ValueError, match="stride \\(4, 1\\) does not divide the grid \\(6, 4\\)"):
        stride_blocks(t, (4, 1))


# --------------------------------------------------------------------------- zero padding
def _circular_on_padded_grid(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """End-wrap circular correlation of the zero-padded input on the padded grid, then the stride."""
    p = conv.padding[0]
    k = conv.kernel_size[0]
    xp = F.pad(x, (p, p, p, p))
    return F.conv2d(F.pad(xp, (0, k - 1, 0, k - 1), mode="circular"), conv.weight, None, conv.stride)


@pytest.mark.parametrize(
    ("n", "k", "p", "stride"), [(6, 3, 1, 1), (7, 3, 1, 1), (6, 3, 1, 2), (5, 5, 2, 1), (7, 3, 0, 1)]
)
def test_zero_padding_padded_grid_rule_is_exact_before_the_crop(n, k, p, stride):
    conv = nn.Conv2d(2, 3, k, stride=stride, padding=p, bias=False).double()
    g = n + 2 * p
    if g % stride:
        return
    spec = layer_spectrum(conv, (n, n), output_size=conv(torch.zeros(1, 2, n, n, dtype=torch.float64)).shape[-2:])
    assert not spec.exact and ("zero padding" in spec.note or "crop" in spec.note)
    uncropped = dense_operator(lambda x: _circular_on_padded_grid(conv, x), 2, n, n)
    # the padded-grid operator restricted to the embedded input: columns of the zero-padded positions
    full = dense_operator(
        lambda x: F.conv2d(F.pad(x, (0, k - 1, 0, k - 1), mode="circular"), conv.weight, None, stride), 2, g, g
    )
    dense_full = sorted_sv(full)
    assert np.allclose(union_sv(spec.singular_values, dense_full.size), dense_full, atol=1e-10 * dense_full[0])
    # PyTorch's layer = crop ∘ (padded-grid circular operator) ∘ zero-pad
    torch_mat = dense_operator(conv, 2, n, n)
    out = conv(torch.zeros(1, 2, n, n, dtype=torch.float64)).shape[-1]
    crop = uncropped.reshape(3, g // stride, g // stride, -1)[:, :out, :out].reshape(3 * out * out, -1)
    assert np.allclose(crop, torch_mat, atol=1e-13)
    # C1 on the padded grid (stride 1): FFT2 of the uncropped output = T(ω) · FFT2(zero-padded input)
    if stride == 1:
        z = torch.randn(2, n, n, dtype=torch.float64)
        zp = F.pad(z, (p, p, p, p))
        lhs = np.fft.fft2((uncropped @ z.reshape(-1).numpy()).reshape(3, g, g))
        rhs = np.einsum("uvoi,iuv->ouv", module_transfer_matrices(conv, (n, n)).numpy(), np.fft.fft2(zp.numpy()))
        assert np.allclose(lhs, rhs, atol=1e-9 * max(1.0, float(np.abs(rhs).max())))
    # interlacing: the cropped operator's singular values are bounded by the padded-grid ones
    s_torch = sorted_sv(torch_mat)
    assert np.all(s_torch <= dense_full[: s_torch.size] + 1e-12)


# --------------------------------------------------------------------------- C4
@given(n=st.integers(3, 9), seed=st.integers(0, 2**16), tau=st.floats(0.0, 3.0))
def test_conjugate_symmetry_and_even_paired_counts(n, seed, tau):
    torch.manual_seed(seed)
    conv = CircularConv2d(3, 4, min(3, n)).double()
    t = module_transfer_matrices(conv, (n, n)).reshape(n * n, 4, 3)
    conj = torch.from_numpy(conjugate_index(n))
    assert torch.allclose(t[conj], t.conj(), atol=1e-13)
    sv = layer_spectrum(conv, (n, n)).singular_values
    assert np.allclose(sv.reshape(n * n, -1)[conj.numpy()], sv.reshape(n * n, -1), atol=1e-13)
    kept = kept_by_threshold(sv, tau)
    assert kept.paired % 2 == 0
    assert kept.self_conjugate == int((sv[self_conjugate_mask(n)] > tau).sum())


def test_half_spectrum_svd_matches_full_svd():
    blocks = torch.fft.fft2(torch.randn(3, 2, 6, 5, dtype=torch.float64)).conj().permute(2, 3, 0, 1)
    half = singular_values_by_frequency(blocks, conjugate_symmetric=True)
    full = singular_values_by_frequency(blocks, conjugate_symmetric=False)
    assert torch.allclose(half, full, atol=1e-13)


# --------------------------------------------------------------------------- C14
@pytest.mark.parametrize(("n", "s"), [(8, 2), (6, 2), (9, 3), (12, 3)])
def test_aliasing_fold_against_dense_subsampling(n, s):
    z = torch.randn(2, n, n, dtype=torch.float64)
    sub = dense_operator(lambda x: x[..., ::s, ::s], 1, n, n)  # (m², n²) selection matrix
    direct = torch.fft.fft2(torch.from_numpy((sub @ z.reshape(2, -1).numpy().T).T.reshape(2, n // s, n // s)))
    folded = downsample_spectrum(torch.fft.fft2(z), s)
    assert torch.allclose(folded, direct, atol=1e-12)


# --------------------------------------------------------------------------- transposed conv, upsampling
@pytest.mark.parametrize(
    ("n", "k", "r", "p", "cin", "cout"), [(3, 4, 2, 1, 2, 1), (4, 2, 2, 0, 1, 3), (3, 3, 3, 0, 2, 2)]
)
def test_transposed_conv_spectrum_against_dense_loop(n, k, r, p, cin, cout):
    up = nn.ConvTranspose2d(cin, cout, k, stride=r, padding=p, bias=False).double()
    w = up.weight.numpy()
    mat = dense_operator(
        lambda x: torch.from_numpy(np.stack([circular_transposed_reference(xi, w, r, p) for xi in x.numpy()])),
        cin,
        n,
        n,
    )
    spec = layer_spectrum(up, (n, n))
    dense = sorted_sv(mat)
    assert spec.singular_values.size == dense.size
    assert np.allclose(union_sv(spec.singular_values, dense.size), dense, atol=1e-10 * dense[0])
    blocks = transposed_blocks(module_transfer_matrices(up, (n, n)), r)
    assert blocks.shape == (n, n, r * r * cout, cin)


@pytest.mark.parametrize(("mode", "n", "r"), [("zeros", 3, 2), ("nearest", 3, 2), ("nearest", 4, 3), ("nearest", 5, 2)])
def test_upsampling_gains_against_dense(mode, n, r):
    if mode == "nearest":
        op = lambda x: F.interpolate(x, scale_factor=r, mode="nearest")  # noqa: E731
    else:

        def op(x):
            out = torch.zeros(*x.shape[:-2], r * n, r * n, dtype=x.dtype)
            out[..., ::r, ::r] = x
            return out

    mat = dense_operator(op, 1, n, n)
    gains = upsampling_gains((n, n), r, mode)
    assert np.allclose(np.sort(gains.reshape(-1))[::-1], sorted_sv(mat), atol=1e-12)


# --------------------------------------------------------------------------- the model walker
def _small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 2, 1),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),
    ).double()


def test_weight_spectra_walks_the_model_and_builds_a_tidy_table():
    net = _small_net()
    spectra = weight_spectra(net, (1, 8, 8))
    assert spectra.names == ["0", "2", "4"]
    first, second, third = spectra.layers
    assert first.exact and first.grid == (8, 8) and first.singular_values.shape == (8, 8, 1)
    assert not second.exact and second.grid == (5, 5) and second.output_size == (4, 4)
    assert third.exact and third.grid == (4, 4)
    table = spectra.table()
    assert len(table["singular_value"]) == sum(lay.singular_values.size for lay in spectra.layers)
    assert set(table) == {"layer", "layer_index", "k", "l", "index", "singular_value", "self_conjugate"}
    rows = (table["layer"] == "0") & (table["k"] == -3) & (table["l"] == 1)
    assert np.isclose(table["singular_value"][rows][0], first.singular_values[5, 1, 0])
    assert spectra["4"] is third
    # a 1x1 conv has the same spectrum everywhere, equal to its matrix's singular values
    s = np.linalg.svd(net[4].weight.detach()[:, :, 0, 0].numpy(), compute_uv=False)
    assert np.allclose(third.singular_values, s[None, None, :], atol=1e-13)


def test_pointwise_strided_shortcut_matches_dense():
    conv = nn.Conv2d(3, 5, 1, stride=2, bias=False).double()
    spec = layer_spectrum(conv, (6, 6))
    dense = sorted_sv(dense_operator(conv, 3, 6, 6))
    assert np.allclose(union_sv(spec.singular_values, dense.size), dense, atol=1e-12)


def test_circular_cnn_spectra_are_exact_for_full_size_and_strided_layers():
    net = CircularCNN(2, 3, 2, 3, 6, downsample_at=(2,), generator=torch.Generator().manual_seed(1)).double()
    spectra = weight_spectra(net, (2, 6, 6))
    assert [lay.grid for lay in spectra.layers] == [(6, 6), (3, 3), (3, 3)]
    assert all(lay.exact for lay in spectra.layers)
    conv = net.convs[1]
    dense = sorted_sv(dense_operator(conv, 3, 6, 6))
    assert np.allclose(union_sv(spectra.layers[1].singular_values, dense.size), dense, atol=1e-10 * dense[0])
    # the operator-normalised parameters: ‖V‖² = ‖MW‖²
    v = dict(net.named_parameters())["convs.1.parametrizations.weight.original"]
    assert np.isclose(float(v.pow(2).sum()), spectra.layers[1].operator_norm_sq, rtol=1e-12)


def test_bad_inputs_name_the_layer():
    net = _small_net()
    with pytest.raises(TypeError, match="layer '6' is Linear"):
        weight_spectra(net, (1, 8, 8), layers=["0", "6"])
    with pytest.raises(ValueError, match="not found"):
        weight_spectra(net, (1, 8, 8), layers=["nope"])
    big = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), nn.Conv2d(2, 2, 5, padding=2, padding_mode="circular")
    )
    with pytest.raises(ValueError, match="layer '1': kernel 5x5 is larger than the grid 4x4"):
        layer_spectrum(big[1], (4, 4), name="1")
    strided = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1, padding_mode="circular")).double()
    with pytest.raises(ValueError, match="layer '0': stride \\(2, 2\\) does not divide the grid 7x7"):
        weight_spectra(strided, (1, 7, 7))
    broken = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(5, 2))
    with pytest.raises(LayerForwardError, match="layer '2'"):
        weight_spectra(broken, (1, 6, 6))
    with pytest.raises(ValueError, match="reflect"):
        weight_spectra(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")), (1, 6, 6))
    with pytest.raises(ValueError, match="input_shape"):
        weight_spectra(net, (8, 8))
    with pytest.raises(TypeError, match="not nn.Conv2d"):
        layer_spectrum(nn.Linear(2, 2), (4, 4), name="fc")


# --------------------------------------------------------------------------- fast routes (issue 14) vs dense / SVD


def _ill_conditioned_blocks(count: int, rows: int, cols: int, smallest: float, seed: int) -> torch.Tensor:
    """Complex blocks ``U diag(σ) Vᴴ`` with σ spread log-uniformly from 1 down to ``smallest``."""
    rng = np.random.default_rng(seed)
    r = min(rows, cols)
    out = []
    for _ in range(count):
        u, _ = np.linalg.qr(rng.standard_normal((rows, r)) + 1j * rng.standard_normal((rows, r)))
        v, _ = np.linalg.qr(rng.standard_normal((cols, r)) + 1j * rng.standard_normal((cols, r)))
        out.append((u * np.logspace(0, np.log10(smallest), r)) @ v.conj().T)
    return torch.from_numpy(np.stack(out))


def _route_values(blocks: torch.Tensor) -> torch.Tensor:
    """The engine on a (1, count) grid without conjugate pairing: every block through its route and guard."""
    count, rows, cols = blocks.shape
    return weights_module._svdvals_at_representatives(
        (1, count), (rows, cols), torch.float64, blocks.device, lambda idx: blocks[idx], conjugate_symmetric=False
    )[0]


@pytest.mark.parametrize(("k", "tap", "stride"), [(1, (0, 0), 1), (1, (0, 0), 2), (3, (0, 2), 1), (3, (2, 1), 2)])
def test_single_tap_shortcut_is_one_svd_and_matches_dense(monkeypatch, k, tap, stride):
    conv = nn.Conv2d(3, 4, k, stride=stride, padding=k // 2, padding_mode="circular", bias=False).double()
    with torch.no_grad():
        mask = torch.zeros_like(conv.weight)
        mask[:, :, tap[0], tap[1]] = 1
        conv.weight.mul_(mask)
    seen = []
    real = weights_module._lapack_svdvals
    monkeypatch.setattr(weights_module, "_lapack_svdvals", lambda b: seen.append(b.shape[0]) or real(b))
    monkeypatch.setattr(weights_module, "_gram_eigenvalues", lambda b: pytest.fail("no Gram for one tap"))
    spec = layer_spectrum(conv, (6, 6))
    assert seen == [1]  # one SVD for all 36 / 9 frequencies
    dense = sorted_sv(dense_operator(conv, 3, 6, 6))
    assert np.allclose(union_sv(spec.singular_values, dense.size), dense, atol=1e-12 * dense[0])


def test_frequency_independent_blocks_cost_one_decomposition(monkeypatch):
    w = torch.randn(5, 3, dtype=torch.float64)
    blocks = w.expand(4, 6, 5, 3)
    seen = []
    real = weights_module._gram_eigenvalues
    monkeypatch.setattr(weights_module, "_gram_eigenvalues", lambda b: seen.append(b.shape[0]) or real(b))
    sv = singular_values_by_frequency(blocks)
    assert seen == [1]
    expected = np.linalg.svd(w.numpy(), compute_uv=False)
    assert np.allclose(sv.numpy(), expected[None, None], atol=1e-13 * expected[0])


@given(
    rows=st.integers(1, 24),
    cols=st.integers(1, 24),
    count=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_gram_route_agrees_with_svd_to_1e10_in_float64(rows, cols, count, seed):
    gen = torch.Generator().manual_seed(seed)
    blocks = torch.randn(count, rows, cols, dtype=torch.complex128, generator=gen)
    fast = _route_values(blocks).numpy()
    ref = np.linalg.svd(blocks.numpy(), compute_uv=False)
    assert weights_module._uses_gram(rows, cols, torch.float64) == (min(rows, cols) > 1)
    assert np.abs(fast - ref).max() <= 1e-10 * ref.max()


def test_gram_guard_falls_back_to_svd_on_an_ill_conditioned_block(monkeypatch):
    blocks = torch.cat([_ill_conditioned_blocks(1, 48, 64, 1e-9, 0), _ill_conditioned_blocks(2, 48, 64, 0.1, 1)])
    ref = np.linalg.svd(blocks.numpy(), compute_uv=False)
    fallbacks = []
    real = weights_module._lapack_svdvals
    monkeypatch.setattr(weights_module, "_lapack_svdvals", lambda b: fallbacks.append(b.shape[0]) or real(b))
    guarded = _route_values(blocks).numpy()
    assert fallbacks == [1]  # only the ill-conditioned block is decomposed again
    assert np.abs(guarded - ref).max() <= 1e-10 * ref.max()
    # without the guard the Gram values of that block miss the 1e-10 target: the guard is what keeps it
    monkeypatch.setitem(weights_module._GUARD_TOL, torch.float64, float("inf"))
    unguarded = _route_values(blocks).numpy()
    assert np.abs(unguarded[0] - ref[0]).max() > 1e-10 * ref.max()
    assert np.abs(unguarded[1:] - ref[1:]).max() <= 1e-10 * ref.max()


@pytest.mark.parametrize("stride", [1, 2])
def test_float32_spectra_against_dense_float64(stride):
    torch.manual_seed(3)
    conv = CircularConv2d(6, 8, 3, stride=stride).double()
    dense = sorted_sv(dense_operator(conv, 6, 8, 8))
    spec32 = layer_spectrum(conv, (8, 8), dtype=torch.float32)
    # documented accuracy of dtype=torch.float32: within 1e-5 of the layer's largest singular value
    assert np.abs(union_sv(spec32.singular_values, dense.size) - dense).max() <= 1e-5 * dense[0]


def test_weight_spectra_splits_blocks_across_the_callers_threads_with_bitwise_equal_results(monkeypatch):
    net = CircularCNN(3, 6, 3, 3, 12, downsample_at=(2,), generator=torch.Generator().manual_seed(2)).double()
    controls = blas_module.openblas_thread_controls()
    assert controls, "NumPy's OpenBLAS was not found: the thread hold would be a no-op"
    blas_before = [get() for get, _ in controls]
    one_thread = weight_spectra(net, (3, 12, 12))  # the autouse fixture set torch to 1 thread
    seen: list[tuple[str, int, list[int]]] = []
    real = weights_module._gram_eigenvalues

    def spy(b):
        seen.append((threading.current_thread().name, torch.get_num_threads(), [get() for get, _ in controls]))
        return real(b)

    monkeypatch.setattr(weights_module, "_gram_eigenvalues", spy)
    monkeypatch.setattr(blas_module, "_usable_cpus", lambda: 2)  # two workers even on a one-CPU runner
    for _, set_threads in controls:
        set_threads(2)
    torch.set_num_threads(2)
    try:
        two_threads = weight_spectra(net, (3, 12, 12))
        after = ([get() for get, _ in controls], torch.get_num_threads())
    finally:
        torch.set_num_threads(1)
        for (_, set_threads), n in zip(controls, blas_before):
            set_threads(n)
    # every block decomposed by the same single-threaded calls: the split does not change one bit
    assert all(
        np.array_equal(a.singular_values, b.singular_values) for a, b in zip(one_thread.layers, two_threads.layers)
    )
    assert seen and all(torch_n == 1 and all(n == 1 for n in blas) for _, torch_n, blas in seen)
    workers = {name for name, _, _ in seen}
    assert all(name.startswith("freqlens-lapack") for name in workers) and 1 <= len(workers) <= 2  # the pool's
    assert after == ([2] * len(controls), 2)  # the caller's settings given back


def test_weight_spectra_never_uses_more_workers_than_the_callers_threads(monkeypatch):
    net = CircularCNN(3, 4, 2, 3, 8, generator=torch.Generator().manual_seed(1)).double()
    names: set[str] = set()
    real = weights_module._gram_eigenvalues

    def spy(b):
        names.add(threading.current_thread().name)
        return real(b)

    monkeypatch.setattr(weights_module, "_gram_eigenvalues", spy)
    monkeypatch.setattr(blas_module, "_usable_cpus", lambda: 8)
    weight_spectra(net, (3, 8, 8))  # torch at 1 thread (fixture): everything on the calling thread
    assert names == {threading.current_thread().name}


def test_geometry_errors_come_before_any_lapack_call(monkeypatch):
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), nn.Conv2d(2, 2, 7, padding=3, padding_mode="circular")
    ).double()
    for name in ("_lapack_svdvals", "_gram_eigenvalues"):
        monkeypatch.setattr(weights_module, name, lambda b: pytest.fail("LAPACK before validation"))
    with pytest.raises((ValueError, LayerForwardError), match="'1'"):
        weight_spectra(net, (1, 4, 4))
