"""spectral.conv: module-level multipliers against PyTorch's own layers and explicit loops (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from dense_references import circular_transposed_reference
from freqlens.fourier import downsample_spectrum, zero_insertion_spectrum
from freqlens.spectral.conv import (
    conv_geometry,
    conv_output_size,
    conv_transpose_transfer_matrices,
    dense_kernel,
    module_transfer_matrices,
)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def _apply(t: torch.Tensor, xh: torch.Tensor) -> torch.Tensor:
    return torch.einsum("uvdc,bcuv->bduv", t, xh)


@given(
    n=st.integers(5, 10),
    m=st.integers(5, 10),
    k=st.sampled_from([1, 3, 5]),
    dil=st.sampled_from([1, 2]),
    groups=st.sampled_from([1, 2]),
    seed=st.integers(0, 10_000),
)
def test_circular_conv_same_size_dilation_groups(n: int, m: int, k: int, dil: int, groups: int, seed: int) -> None:
    torch.manual_seed(seed)
    keff = dil * (k - 1) + 1
    if keff > min(n, m):
        return
    pad = (keff - 1) // 2
    conv = nn.Conv2d(4, 6, k, padding=pad, dilation=dil, groups=groups, padding_mode="circular").double()
    x = torch.randn(2, 4, n, m, dtype=torch.float64)
    y = conv(x)
    t = module_transfer_matrices(conv, (n, m))
    pred = _apply(t, torch.fft.fft2(x))
    pred[:, :, 0, 0] += n * m * conv.bias.detach()
    assert torch.allclose(torch.fft.fft2(y), pred, atol=1e-10 * float(pred.abs().max()))


@pytest.mark.parametrize(("n", "stride", "k"), [(8, 2, 3), (12, 3, 3), (8, 2, 1), (9, 3, 5)])
def test_strided_circular_conv_is_aliased_stride1_rule(n: int, stride: int, k: int) -> None:
    conv = nn.Conv2d(3, 5, k, stride=stride, padding=(k - 1) // 2, padding_mode="circular").double()
    x = torch.randn(2, 3, n, n, dtype=torch.float64)
    y = conv(x)
    assert y.shape[-2:] == conv_output_size(conv_geometry(conv), (n, n)) == (n // stride, n // stride)
    full = _apply(module_transfer_matrices(conv, (n, n)), torch.fft.fft2(x))
    pred = downsample_spectrum(full, stride)
    pred[:, :, 0, 0] += y.shape[-1] * y.shape[-2] * conv.bias.detach()
    assert torch.allclose(torch.fft.fft2(y), pred, atol=1e-10 * float(pred.abs().max()))


@pytest.mark.parametrize(("n", "m", "k", "p"), [(16, 12, 3, 1), (7, 9, 5, 2), (6, 6, 3, 0), (8, 8, 1, 1)])
def test_zero_padding_exact_padded_grid_rule(n: int, m: int, k: int, p: int) -> None:
    conv = nn.Conv2d(2, 3, k, padding=p).double()
    x = torch.randn(2, 2, n, m, dtype=torch.float64)
    y = conv(x)
    t = module_transfer_matrices(conv, (n, m))
    assert t.shape[:2] == (n + 2 * p, m + 2 * p)
    hp = _apply(t, torch.fft.fft2(F.pad(x, (p, p, p, p))))
    out = torch.fft.ifft2(hp).real[..., : y.shape[-2], : y.shape[-1]] + conv.bias.detach()[None, :, None, None]
    assert torch.allclose(out, y, atol=1e-12)
    if p:  # the naive circular rule is NOT exact for zero padding
        circ = nn.Conv2d(2, 3, k, padding=p, padding_mode="circular").double()
        circ.load_state_dict(conv.state_dict())
        assert float((circ(x) - y).abs().max()) > 1e-3


@pytest.mark.parametrize(
    ("n", "m", "k", "r", "p", "groups"), [(4, 5, 4, 2, 1, 1), (3, 3, 3, 3, 0, 1), (4, 4, 4, 2, 1, 2)]
)
def test_conv_transpose_circular_rule(n: int, m: int, k: int, r: int, p: int, groups: int) -> None:
    up = nn.ConvTranspose2d(2, 4, k, stride=r, padding=p, groups=groups).double()
    x = torch.randn(2, n, m, dtype=torch.float64)
    t = conv_transpose_transfer_matrices(up, (n, m))
    pred = _apply(t, zero_insertion_spectrum(torch.fft.fft2(x), r)[None])[0]
    w_full = dense_kernel(up).transpose(0, 1).numpy()  # (c_in, c_out, k, k) with groups folded
    ref = circular_transposed_reference(x.numpy(), w_full, r, p)
    assert np.allclose(torch.fft.ifft2(pred).real.numpy(), ref, atol=1e-12)
    # interior agrees with PyTorch's (non-circular) op
    y = (up(x[None]) - up.bias.detach()[None, :, None, None])[0].detach().numpy()
    assert y.shape == ref.shape
    inner = slice(k, -k)
    assert np.allclose(y[:, inner, inner], ref[:, inner, inner], atol=1e-12)


def test_dense_kernel_reproduces_module_with_groups_and_dilation() -> None:
    conv = nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2, bias=False).double()
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    assert torch.allclose(F.conv2d(x, dense_kernel(conv), padding=2), conv(x), atol=1e-13)


def test_geometry_and_errors() -> None:
    g = conv_geometry(nn.Conv2d(3, 8, 5, padding="same", padding_mode="circular"), "enc.0")
    assert g.padding == (2, 2) and g.kernel_size == (5, 5) and g.circular and g.name == "enc.0"
    with pytest.raises(TypeError, match="layer 'head' is Linear, not nn.Conv2d"):
        conv_geometry(nn.Linear(3, 3), "head")
    with pytest.raises(ValueError, match="layer 'c' : kernel 5x5 is larger than the grid 4x4".replace(" :", ":")):
        module_transfer_matrices(nn.Conv2d(1, 1, 5), (4, 4), name="c")
    with pytest.raises(ValueError, match="padding_mode='reflect' has no exact per-frequency rule"):
        module_transfer_matrices(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), (8, 8))
    with pytest.raises(ValueError, match="kernel - 2\\*padding == stride"):
        conv_transpose_transfer_matrices(nn.ConvTranspose2d(1, 1, 3, stride=2), (4, 4))
