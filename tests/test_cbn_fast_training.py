"""models.circular_fft and CircularCNN's fused route: equal to the layerwise route (today's forward) and to
PyTorch's circular-padded conv in float64 (forward and gradients, odd/even grids, strides 1 and 2, several
channels); the spectra the analysis reads are those of the fused operator; same seed, same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import freqlens.models.circular_cnn as cc
from freqlens.models.circular_cnn import CircularCNN
from freqlens.models.circular_fft import circular_correlation_hwcn
from freqlens.spectral.weights import weight_spectra

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


@pytest.fixture
def fused_everywhere(monkeypatch):
    """Small test networks would otherwise take the dense route, where the fused route stands aside."""
    monkeypatch.setattr(cc, "_DENSE_MAX_ENTRIES", 0)
    monkeypatch.setattr(cc, "_FFT_MIN_TAPS", 1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-300))


def _reference_correlation(x_nchw: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """End-wrap circular cross-correlation through PyTorch's own conv (shares no code with the fused route)."""
    kh, kw = weight.shape[-2:]
    return F.conv2d(F.pad(x_nchw, (0, kw - 1, 0, kh - 1), mode="circular"), weight, None, stride)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    k_frac=st.sampled_from([1.0, 0.5]),
    stride=st.sampled_from([1, 2]),
    cin=st.integers(1, 3),
    cout=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_correlation_forward_and_gradients_match_pytorch_circular_conv(h, w, k_frac, stride, cin, cout, seed):
    if h % stride or w % stride:
        return
    gen = torch.Generator().manual_seed(seed)
    kh, kw = max(1, int(h * k_frac)), max(1, int(w * k_frac))
    x = torch.randn(3, cin, h, w, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(cout, cin, kh, kw, dtype=torch.float64, generator=gen, requires_grad=True)
    ref = _reference_correlation(x, weight, stride)
    out = circular_correlation_hwcn(x.permute(2, 3, 1, 0), weight, (stride, stride)).permute(3, 2, 0, 1)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-10
    probe = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
    g_ref = torch.autograd.grad(ref, (x, weight), probe)
    g_out = torch.autograd.grad(out, (x, weight), probe)
    for a, b in zip(g_out, g_ref, strict=True):
        assert _rel(a, b) < 1e-10


CONFIGS = [
    # (in, width, out, depth, grid, downsample_at, head)
    (1, 4, 3, 4, 8, (2,), "gap_fc"),
    (2, 3, 2, 4, 9, (), "none"),
    (3, 5, 2, 5, (12, 8), (1, 3), "none"),
    (1, 3, 4, 5, 7, (), "gap_fc"),
    (2, 4, 2, 3, 6, (2,), "none"),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_fused_model_equals_layerwise_forward_and_gradients_float64(config, fused_everywhere):
    cin, width, cout, depth, grid, down, head = config
    net = CircularCNN(
        cin, width, cout, depth, grid, downsample_at=down, head=head, bias_multiplier=0.7,
        generator=torch.Generator().manual_seed(3),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 1:
                p.normal_()
    assert net.uses_fused()
    size = net.input_grid
    x = torch.randn(5, cin, *size, dtype=torch.float64)
    y_fused = net(x)
    y_layer = net.forward_layerwise(x)
    assert y_fused.shape == y_layer.shape
    assert _rel(y_fused, y_layer) < 1e-10
    params = list(net.parameters())
    probe = torch.randn(y_layer.shape, dtype=torch.float64)
    g_fused = torch.autograd.grad((y_fused * probe).sum(), params)
    g_layer = torch.autograd.grad((y_layer * probe).sum(), params)
    for a, b in zip(g_fused, g_layer, strict=True):
        assert _rel(a, b) < 1e-10


def test_fused_float32_gradients_within_1e5_of_the_float64_reference(fused_everywhere):
    net = CircularCNN(2, 8, 2, 5, 16, downsample_at=(2,), head="none", generator=torch.Generator().manual_seed(0))
    x = torch.randn(6, 2, 16, 16)
    probe = torch.randn(6, 2, 8, 8)
    g32 = torch.autograd.grad((net(x) * probe).sum(), list(net.parameters()))
    ref = net.double()
    g64 = torch.autograd.grad((ref.forward_layerwise(x.double()) * probe.double()).sum(), list(ref.parameters()))
    for a, b in zip(g32, g64, strict=True):
        assert a.dtype == torch.float32
        assert _rel(a.double(), b) < 1e-5


def _dense_operator(conv: cc.CircularConv2d, grid: tuple[int, int]) -> np.ndarray:
    """The layer's matrix, built by pushing unit vectors through the fused correlation (no bias)."""
    cin = conv.in_channels
    size = cin * grid[0] * grid[1]
    basis = torch.eye(size, dtype=torch.float64).reshape(size, cin, *grid)
    with torch.no_grad():
        cols = circular_correlation_hwcn(basis.permute(2, 3, 1, 0), conv.weight, conv.stride)
    return cols.permute(3, 2, 0, 1).reshape(size, -1).T.numpy()


def test_weight_spectra_are_the_singular_values_of_the_fused_operator(fused_everywhere):
    net = CircularCNN(2, 3, 2, 4, 8, downsample_at=(2,), generator=torch.Generator().manual_seed(5)).double()
    assert net.uses_fused()
    spectra = weight_spectra(net, (2, 8, 8), layers=net.conv_names)
    assert net.uses_fused()  # the analysis hooks are gone again
    for conv, grid, layer in zip(net.conv_layers, net.grids, spectra.layers, strict=True):
        dense_sv = np.sort(np.linalg.svd(_dense_operator(conv, grid), compute_uv=False))
        ours = np.sort(layer.singular_values.reshape(-1))
        assert ours.size == dense_sv.size
        np.testing.assert_allclose(ours, dense_sv, rtol=0, atol=1e-10 * dense_sv.max())


def test_hooks_force_the_layerwise_route_and_fire(fused_everywhere):
    net = CircularCNN(1, 3, 1, 3, 6, generator=torch.Generator().manual_seed(0)).double()
    seen: list[tuple[int, ...]] = []
    handle = net.convs[1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        assert not net.uses_fused()
        net(torch.zeros(2, 1, 6, 6, dtype=torch.float64))
    finally:
        handle.remove()
    assert seen == [(2, 3, 6, 6)]
    assert net.uses_fused()
    assert not CircularCNN(1, 3, 1, 3, 6, fused=False).uses_fused()


def test_same_seed_same_numbers_after_training_steps(fused_everywhere):
    def run() -> list[torch.Tensor]:
        net = CircularCNN(1, 6, 1, 4, 10, downsample_at=(2,), generator=torch.Generator().manual_seed(11))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(12)
        for _ in range(3):
            x = torch.randn(8, 1, 10, 10, generator=gen)
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()]

    first, second = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_parametrisation_semantics_kept(fused_everywhere):
    net = CircularCNN(1, 3, 1, 3, 8, downsample_at=(2,), generator=torch.Generator().manual_seed(0)).double()
    conv = net.conv_layers[1]
    stored = conv.parametrizations.weight.original
    assert torch.allclose(conv.weight, stored / np.sqrt(16))  # W = V / sqrt(|P_out|), |P_out| = 4x4
    net(torch.randn(2, 1, 8, 8, dtype=torch.float64)).sum().backward()
    assert stored.grad is not None and stored.grad.abs().sum() > 0


def test_bad_inputs_are_named():
    net = CircularCNN(2, 3, 1, 3, 8)
    with pytest.raises(ValueError, match=r"x must be \(N, 2, 8, 8\), got \(2, 1, 8, 8\)"):
        net.forward_fused(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="stride"):
        circular_correlation_hwcn(torch.zeros(5, 5, 1, 1), torch.zeros(1, 1, 5, 5), (2, 2))
    with pytest.raises(ValueError, match="input channels"):
        circular_correlation_hwcn(torch.zeros(4, 4, 2, 1), torch.zeros(1, 1, 4, 4), (1, 1))
    with pytest.raises(ValueError, match="larger than the grid"):
        circular_correlation_hwcn(torch.zeros(4, 4, 1, 1), torch.zeros(1, 1, 5, 5), (1, 1))


def test_dense_sized_layers_do_not_make_the_network_layerwise():
    # the cbn-fig3 shape: one channel in and out (those layers fit one dense matrix), wide FFT layers between
    mixed = CircularCNN(1, 10, 1, 4, 16, generator=torch.Generator().manual_seed(0))
    assert mixed.uses_fused()
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mixed = mixed.double()
    assert _rel(mixed(x), mixed.forward_layerwise(x)) < 1e-12  # the same function
    tiny = CircularCNN(1, 3, 1, 3, 6, generator=torch.Generator().manual_seed(2)).double()
    assert tiny.uses_fused()  # every layer dense-sized: fused too (not slower there, 3x faster on cbn-fig1 quick)
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert _rel(tiny(x), tiny.forward_layerwise(x)) < 1e-12


def test_fused_route_works_under_torch_func_transforms():
    # the C9 check takes jacrev of the network; per-sample tools vmap it: the fused node must support both
    net = CircularCNN(2, 3, 2, 3, 12, downsample_at=(2,), generator=torch.Generator().manual_seed(4)).double()
    assert net.uses_fused()
    x = torch.randn(4, 2, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    fused = torch.func.jacrev(lambda z: net(z[None]).reshape(-1))(x[0])
    layerwise = torch.func.jacrev(lambda z: net.forward_layerwise(z[None]).reshape(-1))(x[0])
    assert _rel(fused, layerwise) < 1e-12
    per_sample = torch.func.vmap(lambda z: net(z[None])[0])(x)
    assert _rel(per_sample, net.forward_layerwise(x)) < 1e-12
