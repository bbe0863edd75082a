"""Decoder spectra: exact propagation rules against PyTorch layers and autograd (spec decoder_spectra §2, §5, §6).

Every assertion compares two independent routes: PyTorch's own layer (or autograd) against the spectral rule
of ``freqlens.spectral.propagation``, in float64. Check numbers (A1-A11) refer to spec §6.
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

from freqlens.fourier import conv2d_transfer_matrices
from freqlens.spectral.conv import module_transfer_matrices
from freqlens.spectral.propagation import (
    NoExactRuleError,
    ZeroInsertionUpsample,
    apply_transfer,
    batchnorm_spectrum,
    cascade_dc_offset,
    cascade_transfer_matrices,
    conv2d_backward_spectrum,
    conv2d_spectrum,
    conv2d_weight_update_transfer_change,
    conv_transpose2d_spectrum,
    flatten_sequential,
    layer_rule,
    propagate,
    propagate_layer,
    upsample_spectrum,
    weight_update_transfer_change,
)
from freqlens.theory.decoder_som import chi_weights, valid_conv_mixing_weights

F64 = torch.float64


def rel_err(pred: torch.Tensor, ref: torch.Tensor) -> float:
    """max |pred - ref| / max |ref| (the relative error used throughout)."""
    return float((pred - ref).abs().max() / ref.abs().max())


def fft2(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fft2(x.detach().to(F64))


# ----------------------------------------------------------------------------------- A1, A2
def test_A1_fft_convention_unnormalised_unshifted() -> None:
    x = torch.randn(2, 3, 6, 5, dtype=F64)
    g = fft2(x)
    assert torch.allclose(torch.fft.ifft2(g).real, x, atol=1e-14)
    # unnormalised: the DC bin is the plain sum of the pixels; low frequencies sit at the corners
    assert torch.allclose(g[..., 0, 0].real, x.sum(dim=(-2, -1)), atol=1e-12)
    m = torch.arange(6, dtype=F64)[:, None]
    cosine = torch.cos(2 * math.pi * 1 * m / 6).expand(6, 5)
    mag = fft2(cosine[None, None]).abs()[0, 0]
    nonzero = {tuple(i) for i in torch.nonzero(mag > 1e-9).tolist()}
    assert nonzero == {(1, 0), (5, 0)}  # u = ±1 at the top and bottom edges, not near the centre


def test_A2_transfer_matrix_is_conjugated_kernel_dft() -> None:
    m, n, k = 7, 6, 3
    w = torch.randn(4, 2, k, k, dtype=F64)
    t = conv2d_transfer_matrices(w, (m, n))
    # Eq. 3 literally: T_dc(u,v) = Σ_ts W_dcts e^{+i(ut/M + vs/N)2π}
    u = np.arange(m)[:, None, None, None]
    v = np.arange(n)[None, :, None, None]
    ts = np.arange(k)
    lit = np.zeros((m, n, 4, 2), dtype=np.complex128)
    wn = w.numpy()
    for a in ts:
        for b in ts:
            lit += wn[None, None, :, :, a, b] * np.exp(2j * np.pi * (u * a / m + v * b / n))
    assert np.allclose(t.numpy(), lit, atol=1e-12)
    assert torch.allclose(t[0, 0].real, w.sum(dim=(-2, -1)), atol=1e-13)  # DC gain = Σ weights
    neg = t[(-torch.arange(m)) % m][:, (-torch.arange(n)) % n]
    assert torch.allclose(neg, t.conj(), atol=1e-13)  # T(-u,-v) = conj T(u,v)


# ----------------------------------------------------------------------------------- A3-A6
@pytest.mark.parametrize(("m", "n", "k"), [(8, 8, 3), (9, 6, 5), (5, 7, 1)])
def test_A3_one_sided_circular_conv_theorem_3_2(m: int, n: int, k: int) -> None:
    w = torch.randn(4, 3, k, k, dtype=F64)
    b = torch.randn(4, dtype=F64)
    x = torch.randn(2, 3, m, n, dtype=F64)
    y = F.conv2d(F.pad(x, (0, k - 1, 0, k - 1), mode="circular"), w, b)  # paper: wrap appended at the end
    pred = apply_transfer(conv2d_transfer_matrices(w, (m, n)), fft2(x))
    pred[:, :, 0, 0] += m * n * b
    assert torch.allclose(pred, fft2(y), rtol=1e-10, atol=1e-10 * float(pred.abs().max()))
    # float32: about 1e-5 relative to max|H|
    y32 = F.conv2d(F.pad(x.float(), (0, k - 1, 0, k - 1), mode="circular"), w.float(), b.float())
    assert rel_err(torch.fft.fft2(y32).to(torch.complex128), pred) < 1e-5


def test_A4_symmetric_circular_padding_phase() -> None:
    conv = nn.Conv2d(3, 4, 5, padding=2, padding_mode="circular").double()
    x = torch.randn(2, 3, 10, 8, dtype=F64)
    h = fft2(conv(x))
    assert rel_err(conv2d_spectrum(conv, fft2(x)), h) < 1e-13
    # without the phase the rule is O(1) wrong, but the magnitudes are the same
    t_plain = conv2d_transfer_matrices(conv.weight.detach(), (10, 8))
    no_phase = apply_transfer(t_plain, fft2(x))
    no_phase[:, :, 0, 0] += 80 * conv.bias.detach()
    assert rel_err(no_phase, h) > 0.1
    assert torch.allclose(module_transfer_matrices(conv, (10, 8)).abs(), t_plain.abs(), atol=1e-12)


def test_A5_bias_moves_only_the_dc_bin() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular").double()
    x = torch.randn(2, 3, 6, 7, dtype=F64)
    h0 = fft2(conv(x))
    db = torch.randn(4, dtype=F64)
    with torch.no_grad():
        conv.bias += db
    diff = fft2(conv(x)) - h0
    expected = torch.zeros_like(diff)
    expected[:, :, 0, 0] = 42 * db
    assert torch.allclose(diff, expected, atol=1e-11)


def test_A6_frequency_independence_circular_only() -> None:
    m, n, u0, v0 = 12, 10, 3, 2
    grid = torch.arange(m, dtype=F64)[:, None] * u0 / m + torch.arange(n, dtype=F64)[None, :] * v0 / n
    bump = torch.cos(2 * math.pi * grid)[None, None].expand(2, 3, m, n)
    x = torch.randn(2, 3, m, n, dtype=F64)
    allowed = torch.zeros(m, n, dtype=torch.bool)
    allowed[u0, v0] = allowed[-u0 % m, -v0 % n] = True
    circ = nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular").double()
    change = (fft2(circ(x + bump)) - fft2(circ(x))).abs().amax(dim=(0, 1))
    assert float(change[~allowed].max()) < 1e-10 * float(change.max())
    zero = nn.Conv2d(3, 5, 3, padding=1).double()
    change_z = (fft2(zero(x + bump)) - fft2(zero(x))).abs().amax(dim=(0, 1))
    assert float(change_z[~allowed].max()) > 1e-3 * float(change_z.max())  # zero padding mixes frequencies


# ----------------------------------------------------------------------------------- A7 cascade
def test_A7_cascade_corollary_3_3() -> None:
    m, n = 9, 8
    chans = [3, 5, 2, 4]
    convs = [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, padding_mode="circular").double() for i in range(3)]
    x = torch.randn(2, 3, m, n, dtype=F64)
    y = x
    for c in convs:
        y = c(y)
    ts = [module_transfer_matrices(c, (m, n)) for c in convs]
    biases = [c.bias for c in convs]
    beta = cascade_dc_offset(ts, biases)
    pred = apply_transfer(cascade_transfer_matrices(ts), fft2(x))
    pred[:, :, 0, 0] += beta
    assert rel_err(pred, fft2(y)) < 1e-12
    # β explicitly: MN (b3 + T3(00) b2 + T3(00) T2(00) b1): MN multiplies the whole bracket
    b1, b2, b3 = (b.detach().to(torch.complex128) for b in biases)
    t00 = [t[0, 0] for t in ts]
    explicit = m * n * (b3 + t00[2] @ b2 + t00[2] @ t00[1] @ b1)
    assert torch.allclose(beta, explicit, atol=1e-10)
    wrong = pred.clone()
    wrong[:, :, 0, 0] += -beta + m * n * b3 + t00[2] @ b2 + t00[2] @ t00[1] @ b1  # MN on b_L only
    assert rel_err(wrong, fft2(y)) > 1e-3


# ----------------------------------------------------------------------------------- A8 zero padding
@pytest.mark.parametrize(("m", "n", "k", "p"), [(16, 12, 3, 1), (9, 11, 5, 2)])
def test_A8_zero_padding_padded_grid_rule_exact_circular_rule_not(m: int, n: int, k: int, p: int) -> None:
    conv = nn.Conv2d(2, 3, k, padding=p).double()
    x = torch.randn(2, 2, m, n, dtype=F64)
    h = fft2(conv(x))
    assert rel_err(conv2d_spectrum(conv, fft2(x)), h) <= 1e-12
    naive = conv2d_spectrum(conv, fft2(x), assume_circular=True)
    assert rel_err(naive, h) > 0.05  # spec §2.3: about 0.25 at M=16, K=3


def test_A8_eq17_mixing_corrected_form_exact_printed_form_wrong() -> None:
    m, n, k = 9, 7, 3
    w = torch.randn(1, 1, k, k, dtype=F64)
    x = torch.randn(1, 1, m, n, dtype=F64)
    h = fft2(F.conv2d(x, w))[0, 0].numpy()
    tg = (conv2d_transfer_matrices(w, (m, n))[..., 0, 0] * fft2(x)[0, 0]).numpy()
    corrected = np.einsum("abuv,uv->ab", valid_conv_mixing_weights((m, n), k), tg)
    printed = np.einsum("abuv,uv->ab", valid_conv_mixing_weights((m, n), k, printed=True), tg)
    assert np.abs(corrected - h).max() <= 1e-12 * np.abs(h).max()
    assert np.abs(printed - h).max() > 1e-2 * np.abs(h).max()


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.Conv2d(3, 4, 4, stride=2, padding=1, padding_mode="circular"),
        nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular"),
        nn.Conv2d(3, 4, 3),
        nn.Conv2d(3, 4, 5, padding=3, padding_mode="circular"),
        nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2, stride=3),
    ],
    ids=["zero-stride2", "circ-K4-stride2", "circ-stride2-divides", "valid", "circ-wide-pad", "dil-groups-stride3"],
)
def test_strided_valid_dilated_grouped_convs_exact(conv: nn.Conv2d) -> None:
    conv = conv.double()
    x = torch.randn(2, conv.in_channels, 12, 10, dtype=F64)
    assert rel_err(conv2d_spectrum(conv, fft2(x)), fft2(conv(x))) < 1e-12


# ----------------------------------------------------------------------------------- A9 backward, χ
@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular"),
        nn.Conv2d(3, 4, 5, padding=3, padding_mode="circular"),
    ],
    ids=["circular", "zeros", "zeros-stride2", "circular-stride2", "circular-wide"],
)
def test_A9_backward_rule_matches_autograd(conv: nn.Conv2d) -> None:
    conv = conv.double()
    x = torch.randn(2, 3, 12, 10, dtype=F64, requires_grad=True)
    y = conv(x)
    grad_out = torch.randn_like(y)
    (y * grad_out).sum().backward()
    assert x.grad is not None
    pred = conv2d_backward_spectrum(conv, fft2(grad_out), (12, 10))
    assert rel_err(pred, fft2(x.grad)) <= 1e-12
    if conv.padding_mode == "circular" and conv.stride == (1, 1) and conv.padding == (1, 1):
        # p̂^{(l-1)} = conj(T)ᵀ p̂^{(l)} per frequency, literally
        t = module_transfer_matrices(conv, (12, 10))
        literal = torch.einsum("uvdc,bduv->bcuv", t.conj(), fft2(grad_out))
        assert rel_err(literal, fft2(x.grad)) <= 1e-12


def _two_layer_sgd_step(padding_mode: str) -> tuple[list[nn.Conv2d], list[torch.Tensor], list[torch.Tensor], float]:
    """One SGD step of a two-layer net with MSE; returns layers, their inputs, output grads and lr."""
    torch.manual_seed(3)
    c1 = nn.Conv2d(2, 3, 3, padding=1, padding_mode=padding_mode).double()
    c2 = nn.Conv2d(3, 2, 3, padding=1, padding_mode=padding_mode).double()
    x = torch.randn(4, 2, 10, 8, dtype=F64)
    target = torch.randn(4, 2, 10, 8, dtype=F64)
    h1 = c1(x)
    h1.retain_grad()
    a1 = torch.relu(h1)
    out = c2(a1)
    out.retain_grad()
    F.mse_loss(out, target).backward()
    assert h1.grad is not None and out.grad is not None
    return [c1, c2], [x, a1.detach()], [h1.grad, out.grad], 0.05


@pytest.mark.parametrize("padding_mode", ["circular", "zeros"])
def test_A9_weight_update_rule_corollary_3_4(padding_mode: str) -> None:
    layers, inputs, grads, lr = _two_layer_sgd_step(padding_mode)
    for conv, x, gout in zip(layers, inputs, grads):
        assert conv.weight.grad is not None
        step = -lr * conv.weight.grad.detach()
        pred = conv2d_weight_update_transfer_change(conv, gout, x, lr)
        grid = pred.shape[:2]
        real = conv2d_transfer_matrices(step, grid, conv.padding if padding_mode == "circular" else 0)
        assert rel_err(pred, real) <= 1e-12
        if padding_mode == "zeros":  # the paper's Assumption 3.1 reading is only approximate here
            approx = conv2d_weight_update_transfer_change(conv, gout, x, lr, assume_circular=True)
            real_grid = conv2d_transfer_matrices(step, x.shape[-2:], conv.padding)
            assert rel_err(approx, real_grid) > 1e-3


def test_A9_chi_literal_sum_equals_rule() -> None:
    """ΔT_uv = −η Σ_{u'v'} χ_{u'v'uv} p̂_{u'v'} conj(g_{u'v'}), with χ summed literally (spec §2.5)."""
    layers, inputs, grads, lr = _two_layer_sgd_step("circular")
    conv, x, gout = layers[1], inputs[1], grads[1]
    m, n = x.shape[-2:]
    p, pad = 1, (1, 1)
    phase = np.exp(-2j * np.pi * (np.arange(m)[:, None] * p / m + np.arange(n)[None, :] * p / n))
    ph = fft2(gout).numpy()
    g = fft2(x).numpy() * phase
    chi = chi_weights(3, (m, n))
    cross = np.einsum("bduv,bcuv->dcuv", ph, g.conj())
    lit = np.zeros((m, n, cross.shape[0], cross.shape[1]), dtype=np.complex128)
    for u in range(m):
        for v in range(n):
            w = chi[(u - np.arange(m)[:, None]) % m, (v - np.arange(n)[None, :]) % n]
            lit[u, v] = -lr * np.einsum("uv,dcuv->dc", w, cross) * phase[u, v]
    rule = weight_update_transfer_change(fft2(gout), fft2(x), 3, lr, pad).numpy()
    assert np.abs(rule - lit).max() <= 1e-12 * np.abs(lit).max()
    real = conv2d_transfer_matrices(-lr * conv.weight.grad.detach(), (m, n), pad).numpy()
    assert np.abs(lit - real).max() <= 1e-12 * np.abs(real).max()


# ----------------------------------------------------------------------------------- A10, A11 upsampling
def test_A10_zero_insertion_tiles_the_spectrum() -> None:
    x = torch.rand(2, 3, 5, 4, dtype=F64)
    up = ZeroInsertionUpsample(3)
    g = fft2(x)
    h = fft2(up(x))
    assert torch.allclose(h, g.repeat(1, 1, 3, 3), atol=1e-12)
    assert torch.allclose(upsample_spectrum(up, g), h, atol=1e-12)
    for s in range(3):
        for t in range(3):
            assert torch.allclose(h[..., 5 * s, 4 * t].abs(), g[..., 0, 0].abs(), atol=1e-12)


def test_A11_nearest_upsampling_cancels_dc_replicas() -> None:
    x = torch.rand(2, 3, 6, 5, dtype=F64)
    up = nn.Upsample(scale_factor=2, mode="nearest")
    g = fft2(x)
    h = fft2(up(x))
    assert rel_err(upsample_spectrum(up, g), h) < 1e-12
    g00 = g[..., 0, 0].abs()
    for u, v in [(6, 0), (0, 5), (6, 5)]:
        assert bool((h[..., u, v].abs() <= 1e-10 * g00).all())


@pytest.mark.parametrize(
    ("k", "r", "p"),
    [(4, 2, 1), (2, 2, 0), (6, 2, 2), (5, 3, 1), (3, 3, 0)],
    ids=["K4s2P1", "K2s2", "K6s2P2", "K5s3P1", "K3s3"],
)
def test_transposed_conv_exact_cropped_rule(k: int, r: int, p: int) -> None:
    up = nn.ConvTranspose2d(3, 4, k, stride=r, padding=p).double()
    x = torch.randn(2, 3, 5, 6, dtype=F64)
    assert rel_err(conv_transpose2d_spectrum(up, fft2(x)), fft2(up(x))) < 1e-12


def test_batchnorm_eval_is_exact_affine_training_has_no_rule() -> None:
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn(torch.randn(8, 3, 6, 6, dtype=F64) * 2 + 1)  # set running statistics
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    with pytest.raises(NoExactRuleError, match="training mode"):
        batchnorm_spectrum(bn, fft2(x))
    bn.eval()
    assert rel_err(batchnorm_spectrum(bn, fft2(x)), fft2(bn(x))) < 1e-12


# ----------------------------------------------------------------------------------- whole model
_EXACT_BLOCKS = ("conv_circ", "conv_zero", "conv_stride2", "zero_insert", "nearest", "transpose", "bn_eval", "identity")


def _exact_block(kind: str, c_in: int, c_out: int) -> tuple[nn.Module, int, int]:
    """(layer, output channels, spatial factor numerator/denominator as +1 up, -1 down, 0 same)."""
    if kind == "conv_circ":
        return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="circular"), c_out, 0
    if kind == "conv_zero":
        return nn.Conv2d(c_in, c_out, 5, padding=2), c_out, 0
    if kind == "conv_stride2":
        return nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), c_out, -1
    if kind == "zero_insert":
        return ZeroInsertionUpsample(2), c_in, 1
    if kind == "nearest":
        return nn.Upsample(scale_factor=2, mode="nearest"), c_in, 1
    if kind == "transpose":
        return nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), c_out, 1
    if kind == "bn_eval":
        bn = nn.BatchNorm2d(c_in)
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
        return bn.eval(), c_in, 0
    return nn.Identity(), c_in, 0


@settings(max_examples=20, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(_EXACT_BLOCKS), min_size=2, max_size=6),
    widths=st.lists(st.integers(1, 4), min_size=6, max_size=6),
    seed=st.integers(0, 10_000),
)
def test_whole_model_propagation_equals_measured_for_exact_layers(
    kinds: list[str], widths: list[int], seed: int
) -> None:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    c, size = 2, 8
    for kind, w in zip(kinds, widths):
        if kind == "conv_stride2" and size < 8:  # keep grids >= 4 (kernels larger than the grid are refused)
            kind = "conv_circ"
        if kind in ("zero_insert", "nearest", "transpose") and size > 32:
            kind = "conv_zero"
        layer, c_next, scale = _exact_block(kind, c, w)
        layers.append(layer)
        c = c_next
        size = size * 2 if scale > 0 else (size // 2 if scale < 0 else size)
    model = nn.Sequential(*layers).double()
    x = torch.randn(2, 2, 8, 8, dtype=F64)
    result = propagate(model, x)
    assert result.fully_exact and not result.gaps()
    for step in result.steps:
        assert step.chain_start == "input"
        assert step.relative_error() <= 1e-10, (step.name, step.rule.statement)
    assert rel_err(result.steps[-1].predicted, fft2(model(x))) <= 1e-10


def test_propagation_stops_at_layers_without_exact_rule() -> None:
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1).double(),
        nn.ReLU(),
        nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect").double(),
        nn.Upsample(scale_factor=2, mode="bilinear"),
        nn.BatchNorm2d(3).double(),  # training mode
        nn.Conv2d(3, 1, 3, padding=1, padding_mode="circular").double(),
    )
    x = torch.randn(2, 2, 8, 8, dtype=F64)
    result = propagate(model, x)
    names = [s.name for s in result.steps]
    no_rule = [s.name for s in result.steps if s.predicted is None]
    assert no_rule == ["1", "2", "3", "4"]
    for s in result.steps:
        if s.predicted is None:
            assert "prediction stops" in s.rule.statement
    assert [s.chain_start for s in result.steps] == ["input", "input", "1", "2", "3", "4"]
    # where a rule exists, the chain restarted from the measured spectrum is exact again
    assert result.steps[0].relative_error() < 1e-12 and result.steps[-1].relative_error() < 1e-12
    assert dict(result.gaps()).keys() == set(names[1:5])
    # the paper's approximation is available for reflect padding, and is only approximate
    approx = propagate(model, x, assume_circular=True)
    assert approx.steps[2].predicted is not None and not approx.steps[2].rule.exact


def test_rule_statements_for_layers_without_rules() -> None:
    for module in (nn.ReLU(), nn.GELU(), nn.MaxPool2d(2), nn.Upsample(scale_factor=2, mode="bilinear")):
        rule = layer_rule(module)
        assert not rule.predicts and not rule.exact and "prediction stops" in rule.statement
        with pytest.raises(NoExactRuleError, match="prediction stops"):
            propagate_layer(module, torch.zeros(1, 1, 4, 4, dtype=torch.complex128))
    assert not layer_rule(nn.ConvTranspose2d(1, 1, 3, stride=2)).predicts
    assert layer_rule(nn.Dropout().eval()).exact


# ----------------------------------------------------------------------------------- bad input
class _Residual(nn.Module):
    """A non-sequential block: its call order is only known inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def test_bad_inputs_give_clear_errors() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    real = torch.randn(1, 2, 6, 6, dtype=F64)
    with pytest.raises(ValueError, match="must be a complex spectrum map"):
        conv2d_spectrum(conv, real)
    bad = fft2(real)
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        conv2d_spectrum(conv, bad)
    with pytest.raises(ValueError, match="has 2 channels but the layer expects 3"):
        conv2d_spectrum(nn.Conv2d(3, 1, 3), fft2(real))
    with pytest.raises(ValueError, match="cannot be tiled"):
        upsample_spectrum(nn.Upsample(scale_factor=1.5), fft2(real))
    with pytest.raises(ValueError, match="not an integer multiple"):
        upsample_spectrum(nn.Upsample(size=(9, 9)), fft2(real))
    with pytest.raises(ValueError, match="must be real"):
        propagate(nn.Sequential(conv), real.to(torch.complex128))
    with pytest.raises(ValueError, match="NaN or infinite"):
        propagate(nn.Sequential(conv), real * float("inf"))
    with pytest.raises(TypeError, match="nn.Sequential"):
        flatten_sequential(_Residual())
    with pytest.raises(ValueError, match="too small"):
        conv2d_spectrum(nn.Conv2d(2, 1, 5), torch.zeros(1, 2, 3, 3, dtype=torch.complex128))
