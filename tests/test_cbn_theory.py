"""theory.bottleneck: L1 (deep linear CNN cost), C9 (Jacobian lower bound), C11 (identity costs), depth fit.

Dense operators are built from PyTorch layers by pushing unit vectors; costs are checked in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize

from freqlens.analysis.cbn import check_lower_bound, jacobian_singular_values
from freqlens.fourier import conjugate_index
from freqlens.models.circular_cnn import CircularCNN, CircularConv2d
from freqlens.theory.bottleneck import (
    balanced_linear_factorisation,
    cbn_cost,
    channel_passing_kernel,
    fit_depth_slope,
    identity_cost,
    jacobian_lower_bound,
    linear_cost_expansion,
    linear_min_cost,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def _dense(fn, cin, h, w):
    eye = torch.eye(cin * h * w, dtype=torch.float64).reshape(-1, cin, h, w)
    with torch.no_grad():
        out = fn(eye) - fn(torch.zeros(1, cin, h, w, dtype=torch.float64))
    return out.reshape(cin * h * w, -1).T.numpy()


def _unitary_blocks_of(convs, n):
    """Per-frequency blocks of a composition of full-size CircularConv2d layers (stride 1): product of T's."""
    from freqlens.spectral.conv import module_transfer_matrices

    total = None
    for conv in convs:
        t = module_transfer_matrices(conv, (n, n)).numpy()
        total = t if total is None else t @ total
    return total


def _kernels_from_blocks(blocks: np.ndarray, n: int) -> np.ndarray:
    """Real correlation kernel (c_out, c_in, n, n) with multiplier ``blocks (n, n, c_out, c_in)``."""
    spec = np.conj(blocks).transpose(2, 3, 0, 1)  # T = conj(fft2(W))  =>  fft2(W) = conj(T)
    kernel = np.fft.ifft2(spec)
    assert np.abs(kernel.imag).max() < 1e-10
    return kernel.real


def _hermitian_blocks(rng: np.random.Generator, n: int, m: int, k: int) -> np.ndarray:
    """Random blocks with B(−ω) = conj(B(ω)) (those of a real layer)."""
    b = rng.standard_normal((n * n, m, k)) + 1j * rng.standard_normal((n * n, m, k))
    conj = conjugate_index(n)
    b = 0.5 * (b + b[conj].conj())
    return b.reshape(n, n, m, k)


# ------------------------------------------------------------------------------------------------ L1
@pytest.mark.parametrize(("n", "depth", "c"), [(4, 3, 2), (5, 2, 3), (3, 4, 2)])
def test_balanced_factorisation_realises_the_map_at_the_closed_form_cost(n, depth, c):
    rng = np.random.default_rng(n * 10 + depth)
    a_blocks = _hermitian_blocks(rng, n, c, c)
    # layer factors at one representative per pair, conjugated onto the partner (keeps kernels real)
    flat = a_blocks.reshape(n * n, c, c)
    conj = conjugate_index(n)
    layers = [np.zeros((n * n, c, c), dtype=complex) for _ in range(depth)]
    for m in range(n * n):
        if m <= conj[m]:
            block = flat[m].real if m == conj[m] else flat[m]
            for ell, f in enumerate(balanced_linear_factorisation(block, depth)):
                layers[ell][m] = f
                layers[ell][conj[m]] = np.conj(f)
    convs = []
    for f in layers:
        conv = CircularConv2d(c, c, n, bias=False).double()
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(_kernels_from_blocks(f.reshape(n, n, c, c), n)))
        convs.append(conv)
    net = torch.nn.Sequential(*convs)
    dense = _dense(net, c, n, n)
    # the composition is the linear map with blocks Â (C1 across layers): check against the dense operator
    expected = _unitary_blocks_of(convs, n)
    assert np.allclose(expected, a_blocks, atol=1e-10)
    assert np.allclose(
        np.sort(np.linalg.svd(dense, compute_uv=False)),
        np.sort(np.linalg.svd(a_blocks, compute_uv=False).reshape(-1)),
        atol=1e-10,
    )
    cost = sum(n * n * float(conv.weight.detach().pow(2).sum()) for conv in convs)  # ‖θ‖²_op (C3)
    assert np.isclose(cost, linear_min_cost(a_blocks, depth), rtol=1e-10)
    # at the balanced optimum every layer has per-frequency singular values s^{1/L}
    s = np.linalg.svd(a_blocks, compute_uv=False)
    for f in layers:
        assert np.allclose(np.linalg.svd(f.reshape(n, n, c, c), compute_uv=False), s ** (1 / depth), atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numerical_minimum_over_factorisations_reaches_the_closed_form_from_above(seed):
    """L1: minimise Σ‖W_ℓ‖² over W_3 W_2 W_1 = A (W_3 eliminated), from random starts."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((3, 3))
    depth = 3
    bound = linear_min_cost(a, depth)

    def cost(theta: np.ndarray) -> float:
        w1, w2 = theta[:9].reshape(3, 3), theta[9:].reshape(3, 3)
        w3 = a @ np.linalg.inv(w2 @ w1)
        return float((w1**2).sum() + (w2**2).sum() + (w3**2).sum())

    best = np.inf
    for _ in range(4):
        start = np.concatenate([np.eye(3).reshape(-1), np.eye(3).reshape(-1)]) + 0.3 * rng.standard_normal(18)
        res = minimize(cost, start, method="BFGS", options={"gtol": 1e-10, "maxiter": 5000})
        best = min(best, float(res.fun))
        assert res.fun >= bound * (1 - 1e-9)  # never below the closed form
    assert best == pytest.approx(bound, rel=1e-5)


@given(seed=st.integers(0, 2**16), depth=st.integers(1, 6))
def test_random_factorisations_never_beat_the_closed_form(seed, depth):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((2, 2)) + 1j * rng.standard_normal((2, 2))
    factors = [rng.standard_normal((2, 2)) + 1j * rng.standard_normal((2, 2)) for _ in range(depth - 1)]
    prod = np.eye(2)
    for f in factors:
        prod = f @ prod
    last = a @ np.linalg.inv(prod)
    cost = sum(float(np.abs(f) ** 2 @ np.ones(2) @ np.ones(2)) for f in [*factors, last])
    assert cost >= linear_min_cost(a, depth) * (1 - 1e-9)


def test_large_depth_expansion():
    rng = np.random.default_rng(3)
    blocks = rng.standard_normal((5, 3, 3))
    blocks[0, :, 2] = 0  # a rank-deficient frequency: R0 counts ranks
    exp = linear_cost_expansion(blocks)
    assert exp.r0 == 14
    s = np.linalg.svd(blocks, compute_uv=False)
    assert np.isclose(exp.r1, 2 * np.log(s[s > 1e-9]).sum())
    for depth in (50, 100, 200):
        err = abs(linear_min_cost(blocks, depth) - exp.cost(depth))
        assert err < 20.0 / depth**2 * max(1.0, abs(exp.r2))  # O(L^-2)


# ------------------------------------------------------------------------------------------------ C9
@pytest.mark.parametrize(("head", "down", "kernel"), [("none", (), None), ("gap_fc", (2,), None), ("none", (2,), 3)])
def test_jacobian_lower_bound_holds_on_random_relu_cnns(head, down, kernel):
    gen = torch.Generator().manual_seed(7)
    net = CircularCNN(2, 4, 3, 4, 6, kernel_size=kernel, downsample_at=down, head=head, generator=gen).double()
    with torch.no_grad():
        for conv in net.convs:
            conv.bias.normal_(0, 0.3, generator=gen)
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64, generator=gen)
    check = check_lower_bound(net, x, net.depth, float(net.operator_norm_sq().detach()))
    assert check.holds and check.max_ratio <= 1.0
    assert check.bounds.shape == (5,) and (check.bounds > 0).all()


def test_lower_bound_is_tight_for_a_balanced_linear_network():
    n, c, depth = 4, 2, 3
    a_blocks = _hermitian_blocks(np.random.default_rng(5), n, c, c)
    dense_a = None
    convs = []
    flat = a_blocks.reshape(n * n, c, c)
    conj = conjugate_index(n)
    layers = [np.zeros((n * n, c, c), dtype=complex) for _ in range(depth)]
    for m in range(n * n):
        if m <= conj[m]:
            block = flat[m].real if m == conj[m] else flat[m]
            for ell, f in enumerate(balanced_linear_factorisation(block, depth)):
                layers[ell][m] = f
                layers[ell][conj[m]] = np.conj(f)
    for f in layers:
        conv = CircularConv2d(c, c, n, bias=False).double()
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(_kernels_from_blocks(f.reshape(n, n, c, c), n)))
        convs.append(conv)
    net = torch.nn.Sequential(*convs)
    dense_a = _dense(net, c, n, n)
    sv = jacobian_singular_values(net, torch.randn(c, n, n, dtype=torch.float64))
    assert np.allclose(np.sort(sv), np.sort(np.linalg.svd(dense_a, compute_uv=False)), atol=1e-10)
    norm = sum(n * n * float(conv.weight.detach().pow(2).sum()) for conv in convs)
    assert np.isclose(jacobian_lower_bound(sv, depth), norm, rtol=1e-9)


def test_lower_bound_input_checks():
    with pytest.raises(ValueError, match="depth"):
        jacobian_lower_bound(np.ones(3), 0)
    with pytest.raises(ValueError, match="finite"):
        jacobian_lower_bound(np.array([1.0, np.nan]), 2)


# ------------------------------------------------------------------------------------------------ C11
@pytest.mark.parametrize("n", [5, 6, 7, 8])
def test_identity_costs_and_the_minimal_channel_passing_kernel(n):
    rng = np.random.default_rng(n)
    for omega in [(0, 0), (0, 1), (1, 2), (n // 2, 0), (n // 2, n // 2)]:
        cost = identity_cost(omega, (n, n))
        expected = 1 if all((2 * o) % n == 0 for o in omega) else 2
        assert cost == expected
        kernel = channel_passing_kernel(omega, (n, n))
        conv = CircularConv2d(1, 1, n, bias=False).double()
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(kernel)[None, None])
        mat = _dense(conv, 1, n, n)
        # passes the real plane wave at ±ω, kills every other frequency
        p = np.arange(n)
        wave = np.cos(2 * np.pi * (omega[0] * p[:, None] + omega[1] * p[None, :]) / n + 0.3)
        assert np.allclose(mat @ wave.reshape(-1), wave.reshape(-1), atol=1e-12)
        # ... and kills every other frequency: the operator is the orthogonal projector onto the ±ω waves
        assert np.allclose(mat @ mat, mat, atol=1e-12) and np.allclose(mat, mat.T, atol=1e-12)
        assert np.linalg.matrix_rank(mat, tol=1e-9) == cost
        assert np.isclose((mat**2).sum(), cost)  # ‖MW‖_F² = 1 or 2
        assert np.isclose(n * n * (kernel**2).sum(), cost)  # = |P| ‖W‖²
        # minimality: any kernel with the same multiplier at ±ω costs at least as much
        for _ in range(5):
            extra = rng.standard_normal((n, n))
            spec = np.fft.fft2(extra)
            spec[omega[0] % n, omega[1] % n] = 0
            spec[(-omega[0]) % n, (-omega[1]) % n] = 0
            other_kernel = kernel + np.fft.ifft2(spec).real
            t = np.conj(np.fft.fft2(other_kernel))
            assert np.isclose(t[omega[0] % n, omega[1] % n], 1.0)
            assert n * n * (other_kernel**2).sum() >= cost - 1e-12
    assert cbn_cost([(0, 0), (0, 0), (0, 1), (5, 5)], (16, 16)) == 6


# ------------------------------------------------------------------------------------------------ depth fit
def test_fit_depth_slope_recovers_a_line_and_checks_inputs():
    depths = np.arange(6, 15)
    fit = fit_depth_slope(depths, 6.0 * depths + 11.0)
    assert fit.a == pytest.approx(6.0) and fit.b == pytest.approx(11.0) and fit.a_stderr < 1e-9
    noisy = fit_depth_slope(depths, 6.0 * depths + 11.0 + np.random.default_rng(0).normal(0, 0.1, depths.size))
    assert abs(noisy.a - 6.0) < 5 * noisy.a_stderr + 1e-3
    with pytest.raises(ValueError, match="two distinct depths"):
        fit_depth_slope([3, 3], [1.0, 2.0])
