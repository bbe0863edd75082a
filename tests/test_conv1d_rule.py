"""nn.Conv1d in the layer-rule registry (issue 10 item 1 / issue 13): exact by delegation to the Conv2d rule on
the 1xL grid. Every claim is checked in float64 against an independent route: the dense autograd Jacobian of
the module's own forward, NumPy FFTs of the activations, the measured output spectrum.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from freqlens.fourier import spatial_grid
from freqlens.report import analyze
from freqlens.spectral import activation_spectra, layer_verdict, propagate, rule_for, weight_spectra
from freqlens.spectral.rules import Conv1dRule, verify_forward

F64 = torch.float64


def jacobian(module: nn.Module, input_shape: tuple[int, int]) -> np.ndarray:
    """The dense operator of the module's linear part: autograd Jacobian of ``module.forward`` at 0 (float64)."""
    x = torch.zeros(1, *input_shape, dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda t: module(t), x)
    return jac.reshape(-1, math.prod(input_shape)).detach().numpy()


def svd(mat: np.ndarray) -> np.ndarray:
    return np.linalg.svd(mat, compute_uv=False)


def union(values: np.ndarray, count: int) -> np.ndarray:
    return np.sort(values.reshape(-1))[::-1][:count]


def circular_conv1d(cin: int, cout: int, k: int, stride: int, dilation: int, groups: int, bias: bool) -> nn.Conv1d:
    k_eff = dilation * (k - 1) + 1
    return nn.Conv1d(
        cin, cout, k, stride=stride, padding=k_eff // 2, dilation=dilation, groups=groups, bias=bias,
        padding_mode="circular",
    ).double()  # fmt: skip


# ------------------------------------------------------------------------ per-frequency values vs dense SVD
@pytest.mark.parametrize(
    ("length", "k", "stride", "dilation", "groups", "bias"),
    [
        (16, 3, 1, 1, 1, True),
        (12, 5, 2, 1, 1, False),
        (18, 3, 3, 2, 1, True),
        (16, 3, 2, 1, 2, True),
        (10, 1, 1, 1, 1, False),
    ],
)
def test_circular_conv1d_spectrum_equals_dense_jacobian_svd(length, k, stride, dilation, groups, bias):
    torch.manual_seed(length + k)
    conv = circular_conv1d(4, 6, k, stride, dilation, groups, bias)
    spec = weight_spectra(nn.Sequential(conv), (4, length))[0]
    dense = svd(jacobian(conv, (4, length)))
    assert spec.exact and spec.operator == "circular: exact" and spec.kind == "conv1d"
    assert spec.grid == (1, length // stride) and spec.stride == (1, stride) and spec.input_size == (1, length)
    assert spec.singular_values.size == dense.size  # Σ_ω' min(c_out, s c_in) = min(rows, cols)
    np.testing.assert_allclose(union(spec.singular_values, dense.size), dense, rtol=0, atol=1e-10 * dense[0])
    # the labels: (0, k) on the 1xL grid, k signed in (-L/2, L/2]
    freqs = spec.frequencies
    n = length // stride
    assert np.all(freqs[..., 0] == 0) and sorted(freqs[0, :, 1]) == list(range(-((n - 1) // 2), n // 2 + 1))


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(4, 14),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    cout_per_group=st.integers(1, 3),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_circular_conv1d_equals_dense(length, k, stride, dilation, groups, cout_per_group, bias, seed):
    length = stride * max(1, length // stride)  # a stride that divides the grid
    k_eff = dilation * (k - 1) + 1
    if k_eff > length:
        return
    torch.manual_seed(seed)
    conv = circular_conv1d(2 * groups, cout_per_group * groups, k, stride, dilation, groups, bias)
    out_len = conv(torch.zeros(1, 2 * groups, length, dtype=F64)).shape[-1]
    spec = Conv1dRule().layer_spectrum(conv, length, "c", out_len, F64)  # int lengths are accepted
    dense = svd(jacobian(conv, (2 * groups, length)))
    if out_len != length // stride:
        assert not spec.exact  # even effective kernels: a crop of the circular operator
        return
    assert spec.exact and spec.singular_values.size == dense.size
    top = max(float(dense[0]), 1e-300)
    np.testing.assert_allclose(union(spec.singular_values, dense.size), dense, rtol=0, atol=1e-10 * top)


def _circular_on_padded_grid(conv: nn.Conv1d, z: torch.Tensor) -> torch.Tensor:
    """Independent route of the padded-grid rule: end-wrap circular correlation on the padded grid, stride."""
    k_eff = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
    wrapped = F.pad(z, (0, k_eff - 1), mode="circular")
    return F.conv1d(wrapped, conv.weight, None, conv.stride, 0, conv.dilation, conv.groups)


@pytest.mark.parametrize(
    ("length", "k", "pad", "stride", "groups"), [(10, 3, 1, 1, 1), (12, 5, 2, 2, 1), (9, 3, 3, 3, 2)]
)
def test_zero_padded_conv1d_is_the_padded_grid_operator_and_bounds_the_true_one(length, k, pad, stride, groups):
    torch.manual_seed(k + pad)
    conv = nn.Conv1d(2 * groups, 3 * groups, k, stride=stride, padding=pad, groups=groups).double()
    cin, grid = 2 * groups, length + 2 * pad
    out_len = conv(torch.zeros(1, cin, length, dtype=F64)).shape[-1]
    spec = weight_spectra(nn.Sequential(conv), (cin, length))[0]
    assert not spec.exact and spec.operator == "zero padding: circulant embedding, upper bound"
    assert spec.grid == (1, grid // stride)
    padded = jacobian(lambda z: _circular_on_padded_grid(conv, z), (cin, grid))
    np.testing.assert_allclose(union(spec.singular_values, padded.shape[1]), svd(padded)[: padded.shape[1]],
                               rtol=0, atol=1e-10 * svd(padded)[0])  # fmt: skip
    # the module's own operator is crop ∘ (padded-grid operator) ∘ zero-embedding: a submatrix
    true = jacobian(conv, (cin, length))
    rows = (np.arange(3 * groups)[:, None] * (grid // stride) + np.arange(out_len)[None, :]).reshape(-1)
    cols = (np.arange(cin)[:, None] * grid + pad + np.arange(length)[None, :]).reshape(-1)
    np.testing.assert_allclose(padded[np.ix_(rows, cols)], true, rtol=0, atol=1e-14)
    s_true = svd(true)
    assert np.all(s_true <= union(spec.singular_values, s_true.size) + 1e-12)  # interlacing: an upper bound


def test_operator_blocks_and_propagation_rule_follow_the_twin():
    torch.manual_seed(1)
    conv = circular_conv1d(3, 4, 3, 2, 1, 1, True)
    rule = rule_for(conv)[1]
    blocks = rule.operator_blocks(conv, (1, 12), "c", F64)
    assert tuple(blocks.shape) == (1, 6, 4, 2 * 3)
    dense = svd(jacobian(conv, (3, 12)))
    np.testing.assert_allclose(union(torch.linalg.svdvals(blocks).numpy(), dense.size), dense, atol=1e-10 * dense[0])
    x = torch.randn(5, 3, 12, dtype=F64)
    with torch.no_grad():
        y = conv(x)
    line = (torch.fft.fft(x), torch.fft.fft(y))  # (B, C, L) spectra
    grid = (torch.fft.fft2(x[:, :, None]), torch.fft.fft2(y[:, :, None]))  # (B, C, 1, L) spectra
    for spectrum, want in (line, grid):
        out = rule.propagate(conv, spectrum, "c")
        assert out.shape == want.shape
        assert float((out - want).abs().max()) <= 1e-10 * float(want.abs().max())


def test_sizes_are_a_length_or_1xL_and_errors_say_so():
    conv = nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular").double()
    rule = rule_for(conv)[1]
    a = rule.layer_spectrum(conv, 8, "c", None, F64)
    b = rule.layer_spectrum(conv, (1, 8), "c", None, F64)
    c = rule.layer_spectrum(conv, (8,), "c", None, F64)
    assert a.grid == b.grid == c.grid == (1, 8)
    np.testing.assert_array_equal(a.singular_values, b.singular_values)
    with pytest.raises(ValueError, match=r"layer 'c' is 1-D \(Conv1d\): input_size must be a length L \(int\)"):
        rule.layer_spectrum(conv, (4, 8), "c", None, F64)
    with pytest.raises(ValueError, match="layer 'c'.*kernel 1x3 is larger than the grid 1x2"):
        rule.check_spectrum_geometry(conv, "c", 2)
    with pytest.raises(ValueError, match="is a 1-D conv: spectrum must be \\(B, C, L\\) or \\(B, C, 1, L\\)"):
        rule.propagate(conv, torch.zeros(1, 1, 2, 8, dtype=torch.complex128), "c")
    with pytest.raises(ValueError, match="stride .* does not divide the grid 1x9"):
        weight_spectra(nn.Sequential(nn.Conv1d(1, 1, 3, stride=2, padding=1, padding_mode="circular")), (1, 9))
    with pytest.raises(ValueError, match=r"\(C, L\)"):
        weight_spectra(nn.Sequential(conv), (1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"read as \(C, L\) of a model of 1-D signals .* needs \(C, H, W\)"):
        weight_spectra(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(4, 2)), (8, 8))
    assert spatial_grid("n", 5) == (1, 5) and spatial_grid("n", (3, 4)) == (3, 4)
    with pytest.raises(ValueError, match="n must be a length L"):
        spatial_grid("n", (1, 2, 3))


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_reflect_replicate_conv1d_stay_gaps_with_the_conv2d_reason(mode):
    conv = nn.Conv1d(1, 1, 3, padding=1, padding_mode=mode)
    verdict = layer_verdict(conv, "c")
    assert not verdict.predicts and f"padding_mode={mode!r} has no exact per-frequency rule" in verdict.statement
    with pytest.raises(ValueError, match=f"padding_mode={mode!r}"):
        weight_spectra(nn.Sequential(conv), (1, 8))
    assert layer_verdict(nn.Conv1d(1, 1, 3), "c").kind == "conv1d-circular"  # no padding: circular


# ------------------------------------------------------------------------ subclasses are verified
class PrePaddedConv1d(nn.Conv1d):
    """Pads circularly itself, then convolves without padding: the same operator as the stock forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding[0]
        return F.conv1d(F.pad(x, (p, p), mode="circular"), self.weight, self.bias, self.stride, 0, self.dilation)


class Conv1dSame(nn.Conv1d):
    """Asymmetric padding inside forward (one zero on the left, as 'SAME' pads some layers); the attributes
    say padding 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(F.pad(x, (1, 0)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def test_conv1d_subclass_that_computes_its_rule_is_exact_and_a_wrong_one_is_a_marked_gap():
    torch.manual_seed(2)
    good = PrePaddedConv1d(2, 3, 3, padding=1, padding_mode="circular").double()
    ws = weight_spectra(nn.Sequential(good), (2, 10))
    assert not ws.skipped and ws[0].exact
    dense = svd(jacobian(good, (2, 10)))
    np.testing.assert_allclose(union(ws[0].singular_values, dense.size), dense, atol=1e-10 * dense[0])
    assert verify_forward(good, (2, 10), linear_only=True)[0] == "stock"

    bad = Conv1dSame(2, 3, 4, stride=2).double()
    assert verify_forward(bad, (2, 10), linear_only=True)[0] is None
    ws = weight_spectra(nn.Sequential(bad), (2, 10))
    assert ws.names == [] and "Conv1dSame overrides forward" in dict(ws.skipped)["0"]
    verdict = layer_verdict(bad, "b", (2, 10))
    assert not verdict.predicts and "Conv1dSame overrides forward" in verdict.statement
    steps = propagate(nn.Sequential(bad), torch.randn(2, 2, 10, dtype=F64)).steps
    assert steps[0].predicted is None and not steps[0].rule.exact


class EndWrapConv1d(nn.Conv1d):
    """Wraps ``p`` before and ``k - 1 - p`` after (an even kernel): the circular operator on the input grid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, k = self.padding[0], self.kernel_size[0]
        return F.conv1d(F.pad(x, (p, k - 1 - p), mode="circular"), self.weight, self.bias, self.stride, 0)


def test_conv1d_subclass_computing_the_circular_end_wrap_operator_is_exact():
    torch.manual_seed(3)
    conv = EndWrapConv1d(2, 3, 4, padding=1, padding_mode="circular").double()  # stock: 11 outputs, this: 12
    assert verify_forward(conv, (2, 12), linear_only=True)[0] == "circular"
    ws = weight_spectra(nn.Sequential(conv), (2, 12))
    assert not ws.skipped and ws[0].exact and ws[0].grid == (1, 12)
    dense = svd(jacobian(conv, (2, 12)))
    np.testing.assert_allclose(union(ws[0].singular_values, dense.size), dense, atol=1e-10 * dense[0])
    # it has no propagation rule (the stock forward would crop): a marked gap there
    assert not layer_verdict(conv, "c", (2, 12)).predicts


def test_parametrized_conv1d_is_verified_and_exact():
    torch.manual_seed(5)
    conv = torch.nn.utils.parametrizations.weight_norm(nn.Conv1d(3, 4, 3, padding=1, padding_mode="circular")).double()
    ws = weight_spectra(nn.Sequential(conv), (3, 10))
    assert not ws.skipped and ws[0].exact
    dense = svd(jacobian(conv, (3, 10)))
    np.testing.assert_allclose(union(ws[0].singular_values, dense.size), dense, atol=1e-10 * dense[0])


# ------------------------------------------------------------------------ activations: Parseval, per-frequency
def _conv1d_net() -> nn.Sequential:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv1d(2, 5, 5, padding=2), nn.ReLU(), nn.Conv1d(5, 4, 3, stride=2, padding=1, padding_mode="circular")
    ).double()


def test_activation_spectra_of_a_conv1d_net_obey_parseval_and_match_numpy_ffts():
    net = _conv1d_net()
    x = torch.randn(23, 2, 16, dtype=F64)
    spectra = activation_spectra(net, x, batch_size=7)
    assert spectra.names == ["0", "2"]
    with torch.no_grad():
        acts = {"0": net[0](x), "2": net(x)}
    for layer in spectra.layers:
        act = acts[layer.name].numpy()
        length = act.shape[-1]
        assert layer.grid == (1, length) and layer.channels == act.shape[1] and layer.num_samples == 23
        # Parseval (C8) against the pixel-space energy computed here
        np.testing.assert_allclose((layer.singular_values**2).sum(), length * (act**2).sum(), rtol=1e-12)
        assert layer.parseval_rel_error < 1e-12
        # per frequency: singular values of the N x c matrix of 1-D DFT coefficients
        spec = np.fft.fft(act, axis=-1)
        for k in range(length):
            np.testing.assert_allclose(layer.singular_values[0, k], svd(spec[:, :, k]), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------ propagation through a 1-D chain
def test_propagate_a_conv1d_chain_matches_the_measured_spectra_and_gaps_other_layers():
    net = nn.Sequential(*_conv1d_net(), nn.Upsample(scale_factor=2), nn.Conv1d(4, 2, 1).double())
    x = torch.randn(3, 2, 16, dtype=F64)
    result = propagate(net, x)
    assert result.input_spectrum.shape == (3, 2, 1, 16)
    by_name = {s.name: s for s in result.steps}
    for name in ("0", "2", "4"):
        step = by_name[name]
        assert step.rule.exact and step.predicted is not None and step.relative_error() < 1e-10
    assert by_name["1"].predicted is None  # ReLU
    up = by_name["3"]  # nn.Upsample has no 1-D rule: a gap, the next chain starts from the measurement
    assert up.predicted is None and "no rule for inputs with 1 spatial axes" in up.rule.statement
    assert by_name["4"].chain_start == "3"
    with torch.no_grad():
        np.testing.assert_allclose(by_name["4"].measured.numpy()[:, :, 0], torch.fft.fft(net(x)).numpy(), atol=1e-12)


# ------------------------------------------------------------------------ the analyze report
def test_report_rows_of_conv1d_layers_are_exact_or_bounded_with_the_true_norm():
    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Conv1d(4, 3, 5, padding=2)
    ).double()
    report = analyze(net, torch.randn(6, 2, 16, dtype=F64), progress=False)
    first, second = report.rows
    assert first["status"] == "exact" and first["operator"] == "circular: exact" and first["grid"] == [1, 16]
    dense = svd(jacobian(net[0], (2, 16)))
    np.testing.assert_allclose(union(report.arrays["w0_sv"], dense.size), dense, atol=1e-10 * dense[0])
    assert first["operator_norm"] == pytest.approx(dense[0], rel=1e-12)
    assert first["act_status"] == "measured" and first["act_grid"] == [1, 16]
    assert second["status"] == "upper bound" and second["grid"] == [1, 20]
    true = svd(jacobian(net[2], (4, 16)))
    assert second["operator_norm"] == pytest.approx(true[0], rel=1e-8)
    assert second["bound_norm"] >= true[0] - 1e-9
    # energy by radial frequency on the 1xL grid: one bin per |k|, summing to the total power
    energy = report.arrays["a0_radial_energy"]
    assert energy.shape == (9,)
    np.testing.assert_allclose(energy.sum(), (report.arrays["a0_sv"] ** 2).sum(), rtol=1e-12)


# ------------------------------------------------------------------------ nn.ConvTranspose1d, by the same delegation
def circular_transposed_1d(x: np.ndarray, w: np.ndarray, r: int, p: int) -> np.ndarray:
    """Loop reference of the circular model: y(o) = Σ_i Σ_t x(i) W(t) [o ≡ r i + t − p (mod r n)];
    ``x (cin, n)``, ``w (cin, cout, k)``."""
    cin, n = x.shape
    y = np.zeros((w.shape[1], r * n))
    for c in range(cin):
        for i in range(n):
            for t in range(w.shape[2]):
                y[:, (r * i + t - p) % (r * n)] += x[c, i] * w[c, :, t]
    return y


@pytest.mark.parametrize(
    ("n", "k", "r", "p", "cin", "cout"), [(5, 4, 2, 1, 2, 3), (6, 2, 2, 0, 3, 1), (4, 3, 3, 0, 2, 2)]
)
def test_conv_transpose1d_spectrum_is_the_circular_model_and_propagation_is_exact(n, k, r, p, cin, cout):
    torch.manual_seed(n + k)
    up = nn.ConvTranspose1d(cin, cout, k, stride=r, padding=p).double()
    w = up.weight.detach().numpy()
    ws = weight_spectra(nn.Sequential(up), (cin, n))
    spec = ws[0]
    assert spec.kind == "conv_transpose1d" and spec.grid == (1, n) and not spec.exact
    assert spec.operator == "transposed conv: circular model, PyTorch's edges differ"
    basis = np.eye(cin * n).reshape(-1, cin, n)  # the loop reference applied to every unit input
    dense = svd(np.stack([circular_transposed_1d(e, w, r, p).reshape(-1) for e in basis], axis=1))
    assert spec.singular_values.size == dense.size
    np.testing.assert_allclose(union(spec.singular_values, dense.size), dense, rtol=0, atol=1e-10 * dense[0])
    # propagation is the exact cropped rule: it reproduces PyTorch's own (non-circular) output
    x = torch.randn(3, cin, n, dtype=F64)
    step = propagate(nn.Sequential(up), x).steps[0]
    assert step.rule.kind == "conv-transpose1d" and step.rule.exact and step.relative_error() < 1e-10


def test_conv_transpose1d_without_k_minus_2p_equal_s_is_a_gap_and_report_rows_carry_the_true_norm():
    assert not layer_verdict(nn.ConvTranspose1d(1, 1, 3, stride=2), "u").predicts
    with pytest.raises(ValueError, match="kernel - 2\\*padding == stride"):
        weight_spectra(nn.Sequential(nn.ConvTranspose1d(1, 1, 3, stride=2)), (1, 4))
    torch.manual_seed(9)
    net = nn.Sequential(nn.ConvTranspose1d(2, 3, 4, stride=2, padding=1)).double()
    report = analyze(net, torch.randn(4, 2, 8, dtype=F64), progress=False)
    (row,) = report.rows
    assert row["status"] == "approximate" and row["grid"] == [1, 8]
    assert report.decoder is not None and "measures (C, H, W) inputs" in report.decoder["skipped"]
    assert row["operator_norm"] == pytest.approx(svd(jacobian(net[0], (2, 8)))[0], rel=1e-8)


# ------------------------------------------------------------------------ the tracker on a 1-D model
def test_tracker_records_conv1d_layers_and_dc_values_match_the_kernel_sum(tmp_path):
    from freqlens.report import FrequencyTracker
    from freqlens.report.tracker import load_run

    torch.manual_seed(8)
    net = nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Conv1d(3, 2, 3, padding=1)
    )
    probe = torch.rand(5, 2, 16)
    tracker = FrequencyTracker(net, probe=probe, every=1, out=tmp_path / "r", frequencies=[(0, 0), (0, 3)])
    tracker.close()
    doc, arrays = load_run(tmp_path / "r")
    assert doc["operators"] == ["circular: exact", "zero padding: circulant embedding, upper bound"]
    # independent route: at ω = 0 a circular conv multiplies by Σ_t W[:, :, t]
    expected = svd(net[0].weight.detach().double().sum(dim=2).numpy())
    np.testing.assert_allclose(arrays["track_w0_at"][0, 0], expected, rtol=1e-10)
    with pytest.raises(ValueError, match=r"probe must be .*\(N, C, L\) for a model of 1-D signals"):
        planar = nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2))
        FrequencyTracker(planar, probe=probe[:, :, :8], out=tmp_path / "x")
