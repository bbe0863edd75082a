"""The layer-rule registry: verified exactness for subclasses, user-registered layers, reliability of the walkers.

Every exactness claim is checked in float64 against a dense autograd Jacobian of the module's real forward.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from freqlens.analysis.decoder_report import decoder_report
from freqlens.fourier import conv2d_transfer_matrices
from freqlens.hooks import LayerForwardError
from freqlens.spectral import (
    TransferRule,
    activation_spectra,
    layer_verdict,
    propagate,
    register_rule,
    rule_for,
    unregister_rule,
    weight_spectra,
)
from freqlens.spectral.rules import Conv2dRule, verify_forward

F64 = torch.float64
REPO = Path(__file__).resolve().parents[1]


def jacobian_singular_values(module: nn.Module, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Descending singular values of the dense Jacobian of ``module.forward`` at 0 (float64, eval mode)."""
    was = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        x = torch.zeros(1, *input_shape, dtype=F64)
        jac = torch.autograd.functional.jacobian(lambda t: module(t), x)
    finally:
        for m, mode in was:
            m.training = mode
    out_dim = int(np.prod(jac.shape[: jac.ndim - 4]))
    mat = jac.reshape(out_dim, -1).detach().numpy()
    return np.linalg.svd(mat, compute_uv=False)


def union_sv(values: np.ndarray, count: int) -> np.ndarray:
    return np.sort(values.reshape(-1))[::-1][:count]


# ------------------------------------------------------------------------ timm-style subclasses
def _pad_same(x: torch.Tensor, k: int, s: int, d: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding as timm computes it: the extra pixel goes right / bottom."""
    ih, iw = x.shape[-2:]
    pad_h = max((math.ceil(ih / s) - 1) * s + (k - 1) * d + 1 - ih, 0)
    pad_w = max((math.ceil(iw / s) - 1) * s + (k - 1) * d + 1 - iw, 0)
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


class Conv2dSame(nn.Conv2d):
    """timm-style ``Conv2dSame``: ``padding=0`` as an attribute, asymmetric zero padding inside ``forward``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(cin, cout, k, stride=stride, padding=0, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel_size[0], self.stride[0], self.dilation[0])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class StdConv2d(nn.Conv2d):
    """timm-style weight-standardised conv: the weight used in ``forward`` is not ``self.weight``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        w = (w - mean) / torch.sqrt(var + 1e-6)
        return self._conv_forward(x, w, self.bias)


class TracingConv2d(nn.Conv2d):
    """Overrides ``forward`` without changing it (e.g. for logging): verifiable, hence exact."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


def _assert_exact_or_skipped(
    model: nn.Module, name: str, shape: tuple[int, int, int], layer_shape: tuple[int, int, int] | None = None
) -> str:
    """``weight_spectra`` of ``model`` on ``shape``: layer ``name`` (input ``layer_shape``) is either skipped
    with a reason (returned) or exact and equal to its dense Jacobian's singular values (returns "exact")."""
    ws = weight_spectra(model, shape)
    skipped = dict(ws.skipped)
    module = dict(model.named_modules())[name]
    if name in skipped:
        assert name not in ws.names
        return skipped[name]
    layer = ws[name]
    assert layer.exact, "the only other honest outcome is an exact, Jacobian-equal spectrum"
    assert layer.operator.endswith(": exact")
    dense = jacobian_singular_values(module, layer_shape or shape)
    np.testing.assert_allclose(union_sv(layer.singular_values, dense.size), dense, rtol=1e-10, atol=1e-12)
    return "exact"


@pytest.mark.parametrize("dilation", [1, 2])
def test_conv2d_same_is_a_marked_gap_never_a_wrong_exact_number(dilation: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Conv2dSame(2, 3, 3, stride=2, dilation=dilation)).double()
    outcome = _assert_exact_or_skipped(model, "0", (2, 8, 8))
    assert outcome != "exact" and "Conv2dSame overrides forward" in outcome
    x = torch.randn(2, 2, 8, 8, dtype=F64)
    step = propagate(model, x).steps[0]
    assert not step.rule.predicts and step.predicted is None
    layer = decoder_report(model, x).layers[0]
    assert layer.gap is not None and "Conv2dSame" in layer.gap and layer.predicted_mean_magnitude is None


def test_weight_standardising_conv_is_a_marked_gap() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(StdConv2d(2, 3, 3, padding=1, padding_mode="circular")).double()
    outcome = _assert_exact_or_skipped(model, "0", (2, 8, 8))
    assert outcome != "exact" and "relative difference" in outcome
    assert not propagate(model, torch.randn(1, 2, 8, 8, dtype=F64)).steps[0].rule.predicts


def test_verified_subclasses_are_exact_and_equal_the_dense_jacobian() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        TracingConv2d(2, 3, 3, padding=1, padding_mode="circular", stride=2),
        spectral_norm(nn.Conv2d(3, 2, 3, padding=1, padding_mode="circular")),
    ).double()
    assert _assert_exact_or_skipped(model, "0", (2, 8, 8)) == "exact"
    assert _assert_exact_or_skipped(model, "1", (2, 8, 8), (3, 4, 4)) == "exact"
    x = torch.randn(2, 2, 8, 8, dtype=F64)
    result = propagate(model.eval(), x)
    assert result.fully_exact and result.steps[-1].relative_error() < 1e-10


def test_freqlens_circular_conv_verifies_as_the_circular_operator() -> None:
    from freqlens.models.circular_cnn import CircularConv2d

    torch.manual_seed(3)
    conv = CircularConv2d(2, 3, 3, stride=2, bias_multiplier=0.5).double()
    assert verify_forward(conv, (2, 8, 8), linear_only=True)[0] == "circular"
    # the bias multiplier makes the full forward differ from the stock rule: no propagation claim
    assert verify_forward(conv, (2, 8, 8))[0] is None
    assert not layer_verdict(conv, "c", (2, 8, 8)).predicts
    assert "overrides forward" in layer_verdict(conv).statement  # no input shape: never exact


def test_verification_is_cached_per_weight_version() -> None:
    conv = StdConv2d(1, 1, 3, padding=1).double()
    from freqlens.spectral import rules

    verify_forward(conv, (1, 6, 6))
    assert len(rules._VERIFIED[conv]) == 1
    verify_forward(conv, (1, 6, 6))
    assert len(rules._VERIFIED[conv]) == 1
    with torch.no_grad():
        conv.weight.add_(1.0)
    verify_forward(conv, (1, 6, 6))
    assert len(rules._VERIFIED[conv]) == 2


# ------------------------------------------------------------------------ a user's own layer type
class CircularWrapper(nn.Module):
    """A user's circular conv: ``F.conv2d`` on a circularly padded input (not an ``nn.Conv2d``)."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) / k)
        self.bias = nn.Parameter(torch.randn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.weight.shape[-1] // 2
        return F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), self.weight, self.bias)


class ShiftedWrapper(CircularWrapper):
    """A subclass whose forward is not what the registered rule describes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(super().forward(x), 1, dims=-1)


class CircularWrapperRule(TransferRule):
    kind = "user-circular-conv"

    def transfer_matrices(self, module: nn.Module, input_size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        weight = module.weight.detach().to(dtype)
        return conv2d_transfer_matrices(weight, input_size, padding=weight.shape[-1] // 2)

    def bias(self, module: nn.Module) -> torch.Tensor | None:
        return module.bias.detach()


@pytest.fixture
def user_rule():
    register_rule(CircularWrapper, CircularWrapperRule())
    yield
    unregister_rule(CircularWrapper)


def test_registered_user_layer_is_exact_through_all_four_walkers(user_rule) -> None:
    torch.manual_seed(4)
    model = nn.Sequential(CircularWrapper(2, 3, 3), CircularWrapper(3, 2, 5)).double()
    assert isinstance(rule_for(model[0])[1], CircularWrapperRule)
    # weight_spectra: exact and equal to the dense Jacobian
    ws = weight_spectra(model, (2, 8, 8))
    assert ws.names == ["0", "1"] and not ws.skipped
    for name, shape in (("0", (2, 8, 8)), ("1", (3, 8, 8))):
        dense = jacobian_singular_values(dict(model.named_modules())[name], shape)
        assert ws[name].exact
        np.testing.assert_allclose(union_sv(ws[name].singular_values, dense.size), dense, rtol=1e-10, atol=1e-12)
    # activation_spectra: the registered layers are found by default; singular values of α̂(ω) per frequency
    x = torch.randn(7, 2, 8, 8, dtype=F64)
    acts = activation_spectra(model, x, batch_size=3)
    assert acts.names == ["0", "1"]
    with torch.no_grad():
        out0 = torch.fft.fft2(model[0](x)).permute(2, 3, 0, 1)  # (H, W, N, c)
    direct = torch.linalg.svdvals(out0).numpy()
    # the Gram route is accurate in ς² (to ε ς_max²), so compare squares
    scale = float(direct.max()) ** 2
    np.testing.assert_allclose(acts["0"].singular_values ** 2, direct**2, rtol=1e-10, atol=1e-12 * scale)
    # propagate: the chained prediction equals the measured output spectrum
    result = propagate(model, x)
    assert result.fully_exact and all(s.rule.kind == "user-circular-conv" for s in result.steps)
    assert result.steps[-1].relative_error() < 1e-12
    # decoder_report: hooked by default, exact one-layer predictions
    report = decoder_report(model, x)
    assert [layer.name for layer in report.layers] == ["0", "1"]
    assert all(layer.gap is None and layer.max_relative_error < 1e-12 for layer in report.layers)


def test_subclass_of_registered_user_layer_is_verified(user_rule) -> None:
    model = nn.Sequential(ShiftedWrapper(2, 2, 3)).double()
    ws = weight_spectra(model, (2, 6, 6))
    assert ws.names == [] and "ShiftedWrapper overrides forward" in dict(ws.skipped)["0"]
    assert not propagate(model, torch.randn(1, 2, 6, 6, dtype=F64)).steps[0].rule.predicts


def test_register_rule_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="module_type must be a subclass of torch.nn.Module"):
        register_rule(int, Conv2dRule())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rule must be a freqlens.spectral.SpectralRule"):
        register_rule(CircularWrapper, object())  # type: ignore[arg-type]


def test_declared_gaps_are_marked() -> None:
    for module, words in (
        (nn.ReLU(), "pointwise nonlinearity"),
        (nn.BatchNorm2d(2).train(), "training mode"),
        (nn.Upsample(scale_factor=2, mode="bilinear"), "bilinear"),
        (nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), "reflect"),
        (nn.Conv2d(1, 1, 3, padding=1, padding_mode="replicate"), "replicate"),
        (nn.ConvTranspose2d(1, 1, 4, stride=1), "kernel - 2*padding == stride"),
        (nn.Conv1d(1, 1, 3, padding=1, padding_mode="reflect"), "reflect"),
        (nn.Conv3d(1, 1, 3), "3-D frequency grids"),
        (nn.ConvTranspose1d(1, 1, 3), "kernel - 2*padding == stride"),
        (nn.ConvTranspose3d(1, 1, 3), "3-D frequency grids"),
        (nn.MaxPool2d(2), "no spectral rule for MaxPool2d"),
    ):
        verdict = layer_verdict(module)
        assert not verdict.exact and not verdict.predicts and words in verdict.statement
    assert layer_verdict(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")).operator == "circular: exact"
    ws = weight_spectra(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ConvTranspose2d(2, 1, 4, 2, 1)), (1, 6, 6))
    assert [layer.operator for layer in ws.layers] == [
        "zero padding: circulant embedding, upper bound",
        "transposed conv: circular model, PyTorch's edges differ",
    ]
    assert not any(layer.exact for layer in ws.layers)


# ------------------------------------------------------------------------ no torch below theory
def test_fourier_and_theory_import_without_torch() -> None:
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('freqlens'); pkg.__path__ = [{str(REPO / 'src' / 'freqlens')!r}]\n"
        "sys.modules['freqlens'] = pkg\n"
        "import freqlens.fourier, freqlens.theory.bottleneck, freqlens.theory.decoder_som\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import numpy as np\n"
        "assert freqlens.fourier.dirichlet_kernel(np.arange(4), 2, 4).shape == (4,)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


# ------------------------------------------------------------------------ reliability of the walkers
def _small_model() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1),
    ).double()


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool]]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()]


def _assert_unchanged(model: nn.Module, before: tuple[dict[str, torch.Tensor], list[bool]]) -> None:
    state, modes = before
    now = model.state_dict()
    assert state.keys() == now.keys()
    for key, value in state.items():
        assert torch.equal(value, now[key]), key
    assert modes == [m.training for m in model.modules()]


@pytest.mark.parametrize("train", [True, False])
def test_every_walker_leaves_the_model_exactly_as_found(train: bool) -> None:
    model = _small_model()
    model.train(train)
    model[1].eval()  # a frozen BN inside a training model must stay frozen
    x = torch.randn(4, 2, 8, 8, dtype=F64)
    before = _snapshot(model)
    weight_spectra(model, (2, 8, 8))
    _assert_unchanged(model, before)
    activation_spectra(model, x)
    _assert_unchanged(model, before)
    propagate(model, x)
    _assert_unchanged(model, before)
    model[1].train(train)
    before = _snapshot(model)
    decoder_report(model, x)  # train-mode BN: running statistics must not move
    _assert_unchanged(model, before)


def test_spectral_norm_in_train_mode_is_read_without_advancing() -> None:
    torch.manual_seed(6)
    model = nn.Sequential(spectral_norm(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"))).double().train()
    before = _snapshot(model)
    first = weight_spectra(model, (2, 6, 6))
    second = weight_spectra(model, (2, 6, 6))
    _assert_unchanged(model, before)
    assert np.array_equal(first[0].singular_values, second[0].singular_values) and first[0].exact


def test_bad_arguments_are_refused_with_one_line_errors() -> None:
    model = _small_model().eval()
    x = torch.randn(3, 2, 8, 8, dtype=F64)
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        weight_spectra(model, (2, 8, 8), dtype=torch.int64)
    with pytest.raises(TypeError, match="input_shape must hold ints"):
        weight_spectra(model, (2, 16.5, 16))  # type: ignore[arg-type]
    assert weight_spectra(model, (2, 8, 8), layers="0").names == ["0"]  # one name, not '0' per character
    with pytest.raises(ValueError, match=r"layers \['01'\] not found"):
        weight_spectra(model, (2, 8, 8), layers="01")
    assert len(activation_spectra(model, x, layers="0", batch_size=np.int64(2))) == 1
    assert decoder_report(model, x, batch_size=np.int64(2)).num_images == 3
    with pytest.raises(ValueError, match="NaN or infinite"):
        activation_spectra(model, x * float("nan"))
    broken = _small_model()
    with torch.no_grad():
        broken[0].weight[0, 0, 0, 0] = float("nan")
    for call in (
        lambda: weight_spectra(broken, (2, 8, 8)),
        lambda: activation_spectra(broken, x),
        lambda: propagate(broken, x),
        lambda: decoder_report(broken, x),
    ):
        with pytest.raises(ValueError, match=r"NaN or infinite values in '(0\.)?weight'"):
            call()


def test_meta_models_and_failing_layers_are_named() -> None:
    with torch.device("meta"):
        meta = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Upsample(scale_factor=2))
    x = torch.randn(2, 2, 8, 8)
    for call in (lambda: weight_spectra(meta, (2, 8, 8)), lambda: decoder_report(meta, x)):
        with pytest.raises(ValueError, match="meta device") as info:
            call()
        assert "non-finite" not in str(info.value)
    wrong = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)).double()
    with pytest.raises(LayerForwardError, match="layer '1'"):
        decoder_report(wrong, x.double())
