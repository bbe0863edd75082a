"""models.circular_cnn: the three forward routes agree with PyTorch's circular-padded conv; structure and norms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import freqlens.models.circular_cnn as cc
from freqlens.models.circular_cnn import CircularCNN, CircularConv2d

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


@given(
    n=st.integers(2, 12),
    k=st.integers(1, 12),
    stride=st.sampled_from([1, 2, 3]),
    cin=st.integers(1, 3),
    cout=st.integers(1, 3),
    route=st.sampled_from(["dense", "fft", "direct"]),
    seed=st.integers(0, 2**16),
)
def test_forward_routes_match_end_wrap_circular_correlation(n, k, stride, cin, cout, route, seed):
    if k > n or n % stride:
        return
    torch.manual_seed(seed)
    conv = CircularConv2d(cin, cout, k, stride=stride, bias_multiplier=0.7).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(3, cin, n, n, dtype=torch.float64)
    ref = F.conv2d(F.pad(x, (0, k - 1, 0, k - 1), mode="circular"), conv.weight, 0.7 * conv.bias, stride)
    saved = cc._DENSE_MAX_ENTRIES, cc._FFT_MIN_TAPS
    try:
        cc._DENSE_MAX_ENTRIES = 10**9 if route == "dense" else 0
        cc._FFT_MIN_TAPS = 1 if route != "direct" else 10**9
        out = conv(x)
    finally:
        cc._DENSE_MAX_ENTRIES, cc._FFT_MIN_TAPS = saved
    assert torch.allclose(out, ref, atol=1e-12)


def test_model_structure_norms_and_errors():
    net = CircularCNN(1, 4, 10, 5, 8, downsample_at=(2,), head="gap_fc", bias_multiplier=0.5).double()
    assert net.num_conv == 4 and net.grids == [(8, 8), (8, 8), (4, 4), (4, 4)] and net.output_grid == (4, 4)
    assert [c.kernel_size for c in net.conv_layers] == [(8, 8), (8, 8), (4, 4), (4, 4)]
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    assert net(x).shape == (2, 10)
    assert torch.allclose(net.forward_from(net.hidden(x, 3), 3), net(x))
    op = float(net.operator_norm_sq().detach())
    manual = sum(
        net.output_pixels(i + 1) * float(c.weight.detach().pow(2).sum()) for i, c in enumerate(net.conv_layers)
    )
    manual += float(net.fc.weight.detach().pow(2).sum())
    assert op == pytest.approx(manual)
    trained = sum(float(p.detach().pow(2).sum()) for name, p in net.named_parameters() if "original" in name)
    assert trained + float(net.fc.weight.detach().pow(2).sum()) == pytest.approx(op)
    plain = CircularCNN(1, 4, 1, 3, 6, operator_normalised=False)
    assert not any("original" in name for name, _ in plain.named_parameters())
    with pytest.raises(ValueError, match="downsample_at"):
        CircularCNN(1, 4, 1, 3, 8, downsample_at=(4,))
    with pytest.raises(ValueError, match="stride 2 does not divide"):
        CircularCNN(1, 4, 1, 3, 7, downsample_at=(1,))
    with pytest.raises(ValueError, match="kernel_size"):
        CircularCNN(1, 4, 1, 3, 6, kernel_size=7)
    with pytest.raises(ValueError, match="larger than the input grid"):
        CircularConv2d(1, 1, 5)(torch.zeros(1, 1, 4, 4))
