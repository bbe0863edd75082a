"""LinearCNN / LinearFCNN: conventions (spec §3.2, §3.5) and autograd = closed-form gradients (spec §4.1, §11.7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from freqlens import fourier as fr
from freqlens.models.linear import LinearCNN, LinearFCNN, mse_loss_per_class

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def _cnn(c: int, n: int, p: int, mode: str, seed: int) -> LinearCNN:
    g = torch.Generator().manual_seed(seed)
    m = LinearCNN((c, n, n), p, channel_mode=mode)  # type: ignore[arg-type]
    return m.set_parameters(
        torch.randn(c, n, n, generator=g, dtype=torch.float64),
        torch.randn(p, m.hidden_size, generator=g, dtype=torch.float64),
    )


@given(c=st.integers(1, 3), n=st.integers(2, 7), p=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_fft_route_equals_wrapped_conv2d_and_dense_circulants(c: int, n: int, p: int, seed: int) -> None:
    for mode in ("sum", "separate"):
        m = _cnn(c, n, p, mode, seed)
        x = torch.randn(5, c, n, n, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        h_fft = m.hidden(x, "fft")
        h_conv = m.hidden(x, "conv2d")  # the paper's end-wrap padding + valid Conv2D
        assert torch.allclose(h_fft, h_conv, atol=1e-12)
        # Dense doubly-block-circulant routes: correlation matrix of k, convolution matrix of k̃ (S.23-S.27).
        k_conv = m.convolution_kernel()
        for ch in range(c):
            corr = fr.circulant_matrix(m.kernel[ch].detach().numpy(), "corr")
            conv = fr.circulant_matrix(k_conv[ch].numpy(), "conv")
            assert np.allclose(corr, conv, atol=1e-14)
        dense = sum(
            fr.circulant_matrix(k_conv[ch].numpy(), "conv") @ x[:, ch].reshape(5, -1).numpy().T for ch in range(c)
        )
        if mode == "sum":
            assert np.allclose(h_fft.detach().reshape(5, -1).numpy().T, dense, atol=1e-11)
        assert torch.allclose(m(x), m.hidden(x).flatten(1) @ m.weight.T, atol=1e-12)
        # end-to-end matrix reproduces the forward pass
        assert torch.allclose(m(x), x.reshape(5, -1) @ m.end_to_end().T, atol=1e-11)


@given(n=st.integers(2, 7), p=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_autograd_gradients_equal_closed_forms(n: int, p: int, seed: int) -> None:
    """Spec §4.1 (S.34-S.44) with the Keras 1/p MSE (factor 2/p): pixel and Fourier forms, conv convention."""
    m = _cnn(1, n, p, "sum", seed)
    g = torch.Generator().manual_seed(seed + 7)
    x = torch.randn(1, 1, n, n, generator=g, dtype=torch.float64)
    y = torch.randn(1, p, generator=g, dtype=torch.float64)
    loss = mse_loss_per_class(m(x), y)
    loss.backward()
    assert m.weight.grad is not None and m.kernel.grad is not None
    xv = x.reshape(-1).numpy()
    w = m.weight.detach().numpy()
    k_conv = m.convolution_kernel()[0].numpy()
    circ_k = fr.circulant_matrix(k_conv, "conv")
    h = circ_k @ xv
    e = (y[0] - m(x)[0]).detach().numpy()
    scale = 2.0 / p
    # (10)/(S.42): dL/dW = -(y - ŷ) hᵀ (times 2/p)
    assert np.allclose(m.weight.grad.numpy(), -scale * np.outer(e, h), atol=1e-12)
    # (11)/(S.34-S.36): dL/dk̃ = -circ(x)ᵀ Wᵀ (y - ŷ) for the convolution-form kernel k̃
    circ_x = fr.circulant_matrix(x[0, 0].numpy(), "conv")
    grad_conv = -scale * circ_x.T @ w.T @ e
    # the model's kernel is k = P k̃ (index negation), so its gradient is P applied to grad_conv
    grad_corr = grad_conv.reshape(n, n)[(-np.arange(n)) % n][:, (-np.arange(n)) % n]
    assert np.allclose(m.kernel.grad[0].numpy(), grad_corr, atol=1e-12)
    # (S.37-S.41) Fourier form: Q dL/dk̃ = -n x̂* ⊙ (Q Wᵀ e)
    q = fr.dft_matrix(n)
    assert np.allclose(q @ grad_conv, -scale * n * np.conj(q @ xv) * (q @ (w.T @ e)), atol=1e-11)
    # and dL/dW in Fourier form (S.43-S.44): -(y - ŷ) xᵀ Q* diag(n k̂*) Q
    khat = q @ k_conv.reshape(-1)
    assert np.allclose(
        m.weight.grad.numpy(), (-scale * np.outer(e, xv) @ q.conj() @ np.diag(n * khat.conj()) @ q).real, atol=1e-11
    )


@given(d=st.integers(1, 12), hidden=st.integers(1, 6), p=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_fcnn_autograd_gradients(d: int, hidden: int, p: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    m = LinearFCNN(d, hidden, p).set_parameters(
        torch.randn(hidden, d, generator=g, dtype=torch.float64),
        torch.randn(p, hidden, generator=g, dtype=torch.float64),
    )
    x = torch.randn(1, d, generator=g, dtype=torch.float64)
    y = torch.randn(1, p, generator=g, dtype=torch.float64)
    mse_loss_per_class(m(x), y).backward()
    e = (y - m(x)).detach()[0].numpy()
    w1, w2 = m.w1.detach().numpy(), m.w2.detach().numpy()
    xv = x[0].numpy()
    assert m.w2.grad is not None and m.w1.grad is not None
    assert np.allclose(m.w2.grad.numpy(), -2.0 / p * np.outer(e, w1 @ xv), atol=1e-12)
    assert np.allclose(m.w1.grad.numpy(), -2.0 / p * np.outer(w2.T @ e, xv), atol=1e-12)
    assert torch.allclose(m(x), x @ m.end_to_end().T, atol=1e-12)


def test_convolution_kernel_is_index_negation() -> None:
    m = _cnn(2, 5, 3, "sum", 3)
    k = m.kernel.detach()
    kt = m.convolution_kernel()
    for i in range(5):
        for j in range(5):
            assert torch.equal(kt[:, i, j], k[:, (-i) % 5, (-j) % 5])
    # Q² k = k̃ (S.26): applying the 2-D DFT twice negates the indices (unitary DFT)
    twice = fr.unitary_fft2(fr.unitary_fft2(k.numpy()))
    assert np.allclose(twice, kt.numpy(), atol=1e-12)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="square"):
        LinearCNN((1, 4, 5), 2)
    with pytest.raises(ValueError, match="channel_mode"):
        LinearCNN((1, 4, 4), 2, channel_mode="mix")  # type: ignore[arg-type]
    m = LinearCNN((2, 4, 4), 2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2, 4, 4\)"):
        m(torch.zeros(3, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="kernel must have shape"):
        m.set_parameters(torch.zeros(1, 4, 4), torch.zeros(2, 16))
    f = LinearFCNN(8, 3, 2)
    with pytest.raises(ValueError, match=r"flatten to \(N, 8\)"):
        f(torch.zeros(2, 9, dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        mse_loss_per_class(torch.zeros(2, 3), torch.zeros(2, 2))
