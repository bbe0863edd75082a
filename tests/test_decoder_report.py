"""Spectrum maps, decoder models and ``decoder_report`` (spec decoder_spectra §2.1, §4 items 1, 7, 11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from freqlens.analysis.decoder_report import decoder_report
from freqlens.models.decoders import (
    conv_autoencoder,
    conv_stack,
    deep_network,
    fit_network,
    five_layer_network,
    init_normal_,
    upsampling_chain,
)
from freqlens.spectral.maps import (
    clip_dc_for_display,
    low_frequency_mask,
    magnitude_cosine_similarity,
    mean_magnitude_map,
    mean_power_map,
    p_low,
    radial_frequency,
    radial_profile,
    shift_for_display,
    spectrum_map,
)
from freqlens.spectral.propagation import ZeroInsertionUpsample

F64 = torch.float64


# ----------------------------------------------------------------------------------- maps
def test_spectrum_map_convention_and_validation() -> None:
    x = torch.randn(2, 3, 6, 5, dtype=F64)
    g = spectrum_map(x)
    assert g.dtype == torch.complex128 and torch.allclose(g, torch.fft.fft2(x))
    with pytest.raises(ValueError, match="must be real"):
        spectrum_map(x.to(torch.complex128))
    with pytest.raises(ValueError, match="NaN or infinite"):
        spectrum_map(x / 0.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        spectrum_map(x[0])
    with pytest.raises(ValueError, match="floating-point"):
        spectrum_map(torch.ones(1, 1, 4, 4, dtype=torch.int64))


def test_mean_maps_shift_and_dc_clip() -> None:
    g = torch.fft.fft2(torch.rand(3, 2, 8, 8, dtype=F64))
    mag = mean_magnitude_map(g)
    assert np.allclose(mag, g.abs().mean(dim=(0, 1)).numpy())
    assert np.allclose(mean_power_map(g), (g.abs() ** 2).mean(dim=(0, 1)).numpy())
    shifted = shift_for_display(mag)
    assert shifted[4, 4] == mag[0, 0]  # DC moves to the centre
    clipped = clip_dc_for_display(mag)
    assert clipped[0, 0] == pytest.approx(np.sort(mag.reshape(-1))[-2])
    assert np.array_equal(clipped.reshape(-1)[1:], mag.reshape(-1)[1:])


def test_low_frequency_mask_omega_low() -> None:
    mask = low_frequency_mask((32, 28))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    assert rows.tolist() == [0, 1, 2, 3, 28, 29, 30, 31]  # u ∈ [0, 4) ∪ [28, 32)
    assert cols.tolist() == [0, 1, 2, 3, 25, 26, 27]  # v ∈ [0, 3.5) ∪ [24.5, 28)


def test_p_low_values() -> None:
    const = torch.ones(2, 3, 16, 16, dtype=F64)
    assert np.allclose(p_low(spectrum_map(const)), 1.0)
    assert np.isnan(p_low(spectrum_map(const), exclude_dc=True)).all()  # nothing left: undefined, not 0
    torch.manual_seed(0)
    noise = torch.randn(200, 4, 16, 16, dtype=F64)
    frac = low_frequency_mask((16, 16)).mean()
    assert float(np.mean(p_low(spectrum_map(noise)))) == pytest.approx(frac, rel=0.05)  # white: |Ω_low|/MN


def test_radial_profile_conserves_energy() -> None:
    power = mean_power_map(torch.fft.fft2(torch.randn(4, 2, 12, 12, dtype=F64)))
    centres, energy = radial_profile(power)
    assert energy.sum() == pytest.approx(power.sum())
    assert centres[0] == 0 and energy[0] == pytest.approx(power[0, 0])
    assert radial_frequency((8, 8))[4, 4] == pytest.approx(np.sqrt(0.5))


def test_magnitude_cosine_similarity() -> None:
    h = torch.fft.fft2(torch.randn(3, 2, 6, 6, dtype=F64))
    assert np.allclose(magnitude_cosine_similarity(h, h * 1j * 3.0), 1.0)  # phase and scale free
    zero = torch.zeros_like(h)
    assert np.allclose(magnitude_cosine_similarity(zero, zero), 1.0)
    assert np.allclose(magnitude_cosine_similarity(h, zero), 0.0)


# ----------------------------------------------------------------------------------- models
def test_models_shapes_and_names() -> None:
    x = torch.randn(2, 3, 16, 16)
    for kind in ("zero_relu", "zero_linear", "circular_linear"):
        net = fit_network(kind)
        assert sum(isinstance(m, nn.Conv2d) for m in net) == 10
        assert any(isinstance(m, nn.ReLU) for m in net) == (kind == "zero_relu")
        assert net(x).shape == (2, 3, 16, 16)
    assert five_layer_network(7, "reflect")(x).shape == (2, 3, 16, 16)
    assert sum(isinstance(m, nn.Conv2d) for m in deep_network(50)) == 50
    assert upsampling_chain(3, "zero_insertion")(x).shape == (2, 3, 128, 128)
    ae = conv_autoencoder(3, (8, 16, 32))
    assert ae(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    assert ae.encoder(torch.randn(2, 3, 32, 32)).shape == (2, 32, 4, 4)
    with pytest.raises(ValueError, match="odd"):
        conv_stack(2, kernel_size=4)


def test_init_normal_statistics() -> None:
    net = init_normal_(conv_stack(3, width=32, kernel_size=5), 0.01, 0.02, generator=torch.Generator().manual_seed(0))
    w = torch.cat([m.weight.detach().reshape(-1) for m in net if isinstance(m, nn.Conv2d)])
    se_mean = 0.02 / w.numel() ** 0.5
    assert abs(float(w.mean()) - 0.01) < 5 * se_mean
    assert float(w.std()) == pytest.approx(0.02, rel=0.03)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in net if isinstance(m, nn.Conv2d))


# ----------------------------------------------------------------------------------- report
def test_report_on_autoencoder_is_exact_layer_by_layer() -> None:
    torch.manual_seed(1)
    ae = conv_autoencoder(3, (4, 8, 8)).double().eval()
    with torch.no_grad():  # non-trivial running statistics
        for m in ae.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(6, 3, 32, 32, dtype=F64)
    report = decoder_report(ae, x, batch_size=4)
    assert report.num_images == 6
    kinds = [layer.module_type for layer in report.layers]
    assert kinds == ["Conv2d"] * 4 + ["ConvTranspose2d"] * 3 + ["Conv2d"]
    for layer in report.layers:
        assert layer.gap is None and layer.num_images == 6
        assert layer.max_relative_error < 1e-10
        assert layer.similarity_mean == pytest.approx(1.0, abs=1e-12)
        assert 0 < layer.p_low <= 1
        assert layer.radial_energy.sum() == pytest.approx(layer.mean_power.sum())
    up = report.layers[4]
    assert up.upsampling_factor == (2, 2) and up.replica_rule == "repeated"
    assert {tuple(p) for p in up.replica_positions.tolist()} == {(0, 0), (0, 4), (4, 0), (4, 4)}
    summary = report.summary()
    assert summary[4]["upsampling"]["predicted_dc_replica_positions"] == [[0, 4], [4, 0], [4, 4]]
    arrays = report.to_arrays("ae_")
    assert arrays["ae_layer_names"].shape == (8,) and arrays["ae_L4_magnitude"].shape == (8, 8)


def test_report_dc_replicas_zero_insertion_vs_nearest() -> None:
    x = torch.rand(5, 3, 8, 8, dtype=F64) + 0.5  # strong DC
    zi = decoder_report(upsampling_chain(2, "zero_insertion"), x)
    for layer in zi.layers:
        assert layer.replica_rule == "repeated"
        assert np.allclose(layer.replica_magnitude_ratio, 1.0, atol=1e-12)  # |H| at replicas = |G_00|
        assert layer.replica_is_peak.all()
    # cascades compose: after 8 -> 16 -> 32 the replicas of the last layer sit at multiples of 16, and
    # those of the original grid (multiples of 8) are there too
    mag = zi.layers[1].mean_magnitude
    assert np.allclose(mag[::8, ::8], mag[0, 0], atol=1e-9)
    nn_report = decoder_report(upsampling_chain(2, "nearest"), x)
    for layer in nn_report.layers:
        assert layer.replica_rule == "cancelled"
        off = np.any(layer.replica_positions != 0, axis=1)
        assert np.all(layer.replica_magnitude_ratio[off] <= 1e-10)
        assert layer.similarity_mean == pytest.approx(1.0, abs=1e-12)
    bil = decoder_report(upsampling_chain(1, "bilinear"), x)
    layer = bil.layers[0]
    assert layer.gap is not None and "bilinear" in layer.gap
    assert layer.predicted_mean_magnitude is None and np.isnan(layer.similarity_mean)
    assert layer.summary()["similarity_mean"] is None  # a marked gap, not a number
    assert layer.replica_rule == "unknown" and layer.replica_positions is not None


def test_report_marks_gaps_and_rejects_bad_input() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"),
        nn.Upsample(scale_factor=1.5),
        nn.Conv2d(2, 2, 3, padding=1),
        nn.Flatten(),
        nn.Linear(2 * 12 * 12, 3),
    ).double()
    x = torch.randn(3, 1, 8, 8, dtype=F64)
    report = decoder_report(model, x)
    gaps = dict(report.gaps())
    assert set(gaps) == {"0", "1"}
    assert "reflect" in gaps["0"] and "cannot be tiled" in gaps["1"]
    assert report.layers[2].gap is None and report.layers[2].max_relative_error < 1e-10
    with pytest.raises(TypeError, match="layer '4' is Linear"):
        decoder_report(model, x, layers=["4"])
    with pytest.raises(ValueError, match="no layer decoder_report can hook"):
        decoder_report(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), x)
    with pytest.raises(ValueError, match="must be real"):
        decoder_report(model, x.to(torch.complex128))
    with pytest.raises(ValueError, match="NaN or infinite"):
        decoder_report(model, x * float("nan"))
    with pytest.raises(TypeError, match="numpy array"):
        decoder_report(model, x.numpy())
    blown = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), ZeroInsertionUpsample(2)).double()
    with torch.no_grad():
        blown[0].weight.fill_(float("inf"))
    with pytest.raises(ValueError, match="model has NaN or infinite values in '0.weight'"):
        decoder_report(blown, x)  # refused before any forward pass
    with torch.no_grad():
        blown[0].weight.fill_(1e308)  # finite weights, overflowing output
    with pytest.raises(ValueError, match="layer '0': non-finite values in its output"):
        decoder_report(blown, x)


def test_report_accepts_batches_and_max_images() -> None:
    net = conv_stack(2, in_channels=1, width=2).double()
    x = torch.randn(10, 1, 8, 8, dtype=F64)
    batches = [(x[i : i + 3], None) for i in range(0, 10, 3)]
    report = decoder_report(net, batches, max_images=7)
    assert report.num_images == 7 and report.layers[0].num_images == 7


class _SharedUp(nn.Module):
    """The same upsampling + conv applied twice (a layer called more than once per forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = ZeroInsertionUpsample(2)
        self.conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(self.conv(self.up(x))))


def test_report_records_each_call_of_a_shared_layer() -> None:
    report = decoder_report(_SharedUp().double(), torch.randn(3, 2, 4, 4, dtype=F64))
    names = [layer.name for layer in report.layers]
    assert names == ["up", "conv", "up (call 2)", "conv (call 2)"]
    assert [layer.output_shape[1:] for layer in report.layers] == [(8, 8), (8, 8), (16, 16), (16, 16)]
    assert all(layer.max_relative_error < 1e-10 for layer in report.layers)
