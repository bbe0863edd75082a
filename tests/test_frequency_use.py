"""Which frequencies a model uses: Fourier heat maps, input-frequency sensitivity, first-layer energy profiles.

Exactness checks in float64 against independent routes: a dense DFT matrix for the linear model, a model with an
ideal low-pass filter, a one-basis-image-per-pass loop, explicit numpy patches, planted profiles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure
from torch import nn

from freqlens.analysis.first_layer_energy import (
    FirstLayerEnergyProfile,
    first_layer_energy_profile,
    fit_energy_profile,
    linear_energy_prediction,
)
from freqlens.analysis.frequency_use import (
    FourierHeatmap,
    FrequencySensitivity,
    fourier_basis,
    fourier_heatmap,
    input_frequency_sensitivity,
    shifted_frequencies,
)
from freqlens.analysis.statistics import NO_VERDICT
from freqlens.experiments import all_experiments, get_experiment
from freqlens.experiments.runner import run_experiment
from freqlens.fourier import dft_matrix, signed_frequencies
from freqlens.hooks import evaluation_mode
from freqlens.io import read_npz

N = 8  # image side of the small exactness problems
PASS_RADIUS = 2


def _pass_band(n: int, radius: int) -> np.ndarray:
    """Unshifted boolean mask ``|k| <= r and |l| <= r`` (signed frequencies, symmetric under ω -> -ω)."""
    f = np.abs(signed_frequencies(n))
    # the Nyquist bin n/2 is its own conjugate, so the band stays symmetric for any radius
    return (f[:, None] <= radius) & (f[None, :] <= radius)


class LowPassClassifier(nn.Module):
    """An ideal low-pass filter (FFT, float64) followed by a small non-linear classifier."""

    def __init__(self, channels: int = 3, n: int = N, classes: int = 4) -> None:
        super().__init__()
        self.register_buffer("mask", torch.from_numpy(_pass_band(n, PASS_RADIUS)).to(torch.float64))
        self.classifier = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * n * n, classes)
        ).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = torch.fft.ifft2(torch.fft.fft2(x) * self.mask).real
        return self.classifier(low)


def _labelled(n_images: int = 24, channels: int = 3, n: int = N, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n_images, channels, n, n, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n_images,), generator=g)
    return x, y


def _outside(n: int) -> np.ndarray:
    return ~np.fft.fftshift(_pass_band(n, PASS_RADIUS))


# ------------------------------------------------------------------------------------------ basis
@given(st.integers(0, 7), st.integers(0, 5))
def test_fourier_basis_is_unit_norm_with_support_at_plus_minus_omega(k: int, l: int) -> None:
    u = fourier_basis((8, 6), np.array([[k, l]])).numpy()[0]
    assert np.linalg.norm(u) == pytest.approx(1.0, abs=1e-14)
    spec = np.abs(np.fft.fft2(u))
    support = np.zeros((8, 6), dtype=bool)
    support[k, l] = support[(-k) % 8, (-l) % 6] = True
    assert spec[~support].max() < 1e-12
    assert spec[support].min() > 0.5


# ------------------------------------------------------------------------------------------ heat maps
def _loop_heatmap(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, metric: str) -> np.ndarray:
    """The straightforward route: every frequency of the grid, one basis image per forward pass, with the signs
    the documented generator gives (all images in one batch)."""
    n, c, h, w = x.shape
    conj = np.array([((-(m // w)) % h) * w + (-(m % w)) % w for m in range(h * w)])
    reps = [m for m in range(h * w) if m <= conj[m]]
    gen = torch.Generator().manual_seed(0)
    signs = 2 * torch.randint(0, 2, (len(reps), n, c), generator=gen) - 1
    out = np.zeros(h * w)
    with torch.no_grad():
        for m in range(h * w):
            r = reps.index(min(m, conj[m]))
            basis = fourier_basis((h, w), np.array([[m // w, m % w]]))[0]
            logits = model(x + eps * signs[r, :, :, None, None].double() * basis)
            if metric == "error":
                out[m] = float((logits.argmax(1) != y).double().mean())
            else:
                out[m] = float(nn.functional.cross_entropy(logits, y))
    return np.fft.fftshift(out.reshape(h, w))


@pytest.mark.parametrize("metric", ["error", "loss"])
def test_heatmap_equals_one_basis_image_per_pass(metric: str) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * N * N, 4)).double()
    x, y = _labelled()
    got = fourier_heatmap(model, (x, y), eps=2.0, metric=metric, batch_size=64, images_per_pass=100, progress=False)
    ref = _loop_heatmap(model, x, y, 2.0, metric)
    np.testing.assert_allclose(got.values, ref, rtol=0, atol=1e-12)
    assert got.values.shape == (N, N)
    assert np.ptp(got.values) > 0  # the map is not flat


def test_heatmap_does_not_depend_on_images_per_pass_and_is_deterministic() -> None:
    model = LowPassClassifier()
    x, y = _labelled()
    a = fourier_heatmap(model, (x, y), eps=3.0, metric="loss", batch_size=10, images_per_pass=7, progress=False)
    b = fourier_heatmap(model, (x, y), eps=3.0, metric="loss", batch_size=10, images_per_pass=1000, progress=False)
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-13)
    c = fourier_heatmap(model, (x, y), eps=3.0, metric="loss", batch_size=10, images_per_pass=7, progress=False)
    np.testing.assert_array_equal(a.values, c.values)
    assert a.baseline == c.baseline


def test_heatmap_layout_does_not_change_the_map() -> None:
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 16, 4)
    ).double()
    x, y = _labelled()
    a = fourier_heatmap(model, (x, y), eps=3.0, metric="loss", batch_size=10, progress=False)
    b = fourier_heatmap(model, (x, y), eps=3.0, metric="loss", batch_size=10, channels_last=False, progress=False)
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-12)
    assert a.baseline == pytest.approx(b.baseline, abs=1e-12)


@pytest.mark.parametrize("signs", ["independent", "shared"])
def test_low_pass_model_has_zero_heatmap_effect_outside_the_band(signs: str) -> None:
    model = LowPassClassifier()
    x, y = _labelled()
    out = _outside(N)
    loss = fourier_heatmap(model, (x, y), eps=4.0, metric="loss", signs=signs, progress=False)
    assert np.abs(loss.effect[out]).max() <= 1e-12
    assert np.abs(loss.effect[~out]).min() > 1e-6  # every in-band perturbation changes the loss
    err = fourier_heatmap(model, (x, y), eps=4.0, metric="error", signs=signs, progress=False)
    assert np.abs(err.effect[out]).max() <= 1e-12
    assert np.abs(err.effect[~out]).max() > 0


def test_heatmap_is_symmetric_under_negation() -> None:
    x, y = _labelled(n=7)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 49, 4)).double()
    hm = fourier_heatmap(model, (x, y), eps=5.0, metric="loss", progress=False)
    v = np.fft.ifftshift(hm.values)
    neg = v[(-np.arange(7)) % 7][:, (-np.arange(7)) % 7]
    np.testing.assert_array_equal(v, neg)
    assert list(hm.row_frequencies) == [-3, -2, -1, 0, 1, 2, 3]


# ------------------------------------------------------------------------------------------ sensitivity
def test_linear_model_sensitivity_equals_the_analytic_w_hat_route() -> None:
    torch.manual_seed(2)
    c, n = 3, 6
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * n * n, 1)).double()
    x, _ = _labelled(n_images=17, channels=c, n=n)
    targets = torch.randn(17, dtype=torch.float64)

    def mse(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * (out.squeeze(-1) - t).pow(2).sum()

    got = input_frequency_sensitivity(model, (x, targets), mse, batch_size=5, progress=False)
    # analytic: ∇_x L_n = r_n w with r_n = w·x_n + b - t_n, so S_c = mean|r_n| |Q w_c| (dense DFT matrix Q)
    lin = model[1]
    w = lin.weight.detach().numpy().reshape(c, n * n)
    r = x.numpy().reshape(17, -1) @ w.reshape(-1) + float(lin.bias.detach()) - targets.numpy()
    q = dft_matrix(n)
    expected = np.abs(r).mean() * np.abs(w @ q.T).reshape(c, n, n)
    np.testing.assert_allclose(got.sensitivity, np.fft.fftshift(expected, axes=(-2, -1)), rtol=0, atol=1e-10)
    power = (np.abs(x.numpy().reshape(17, c, n * n) @ q.T) ** 2).mean(axis=0).reshape(c, n, n)
    np.testing.assert_allclose(got.power, np.fft.fftshift(power, axes=(-2, -1)), rtol=1e-12, atol=1e-12)


def test_low_pass_model_has_zero_sensitivity_outside_the_band() -> None:
    model = LowPassClassifier()
    x, y = _labelled()
    s = input_frequency_sensitivity(model, (x, y), batch_size=7, progress=False)
    out = _outside(N)
    assert s.sensitivity.shape == (3, N, N)
    assert s.sensitivity[:, out].max() <= 1e-12
    assert s.sensitivity[:, ~out].min() > 1e-8


def test_sensitivity_matches_a_per_sample_autograd_loop() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * N * N, 4)).double()
    x, y = _labelled(n_images=9)
    got = input_frequency_sensitivity(model, (x, y), batch_size=4, progress=False)
    acc = np.zeros((3, N, N))
    for i in range(9):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xi), y[i : i + 1]), xi)
        acc += np.abs(np.fft.fft2(g[0].numpy(), norm="ortho"))
    np.testing.assert_allclose(got.sensitivity, np.fft.fftshift(acc / 9, axes=(-2, -1)), rtol=0, atol=1e-12)


class BatchMeanCoupled(nn.Module):
    """Logits that depend on the other samples of the batch (a batch mean): the summed-loss route is wrong here."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * N * N, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(x)
        return out + 0.5 * out.mean(dim=0, keepdim=True)


def _alone_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Each sample's gradient with the sample evaluated alone (batch of one), then |orthonormal fft2|."""
    acc = np.zeros(x.shape[1:])
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xi), y[i : i + 1]), xi)
        acc += np.abs(np.fft.fft2(g[0].numpy(), norm="ortho"))
    return np.fft.fftshift(acc / x.shape[0], axes=(-2, -1))


def test_batch_coupling_probe_and_fallback_to_samples_alone() -> None:
    from freqlens.analysis.frequency_use import _batch_coupled, _gradient_route

    torch.manual_seed(6)
    x, y = _labelled(n_images=7)
    coupled = BatchMeanCoupled().double()
    forward, losses, _, _ = _gradient_route(coupled, None)
    assert _batch_coupled(forward, losses, x, y)
    independent = Mixed().double()  # BatchNorm: coupled in train mode, independent in eval mode
    forward, losses, _, _ = _gradient_route(independent, None)
    with evaluation_mode(independent):
        assert not _batch_coupled(forward, losses, x, y)
    got = input_frequency_sensitivity(coupled, (x, y), batch_size=4, progress=False)
    np.testing.assert_allclose(got.sensitivity, _alone_loop(coupled, x, y), rtol=0, atol=1e-12)


@given(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7))
def test_half_plane_maps_fill_the_full_grid_by_conjugate_symmetry(c: int, h: int, w: int) -> None:
    from freqlens.analysis.frequency_use import _full_from_half_plane, _half_plane_power

    x = torch.randn(c, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(h * 8 + w))
    full = _full_from_half_plane(_half_plane_power(x).numpy(), w)
    np.testing.assert_allclose(full, np.abs(np.fft.fft2(x.numpy(), norm="ortho")) ** 2, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------ energy profile
@given(
    st.floats(1e-3, 1.0),
    st.floats(1e-3, 1.0),
    st.floats(-1.0, 1.0),
)
def test_fit_recovers_a_planted_profile(alpha: float, beta: float, log10_time: float) -> None:
    lam = np.geomspace(10.0, 1e-3, 27)
    time = 10.0**log10_time
    energy = linear_energy_prediction(lam, alpha, beta, time)
    fit = fit_energy_profile(lam, energy)
    assert fit.init_energy == pytest.approx(alpha, rel=1e-6)
    assert fit.target_energy == pytest.approx(beta, rel=1e-6)
    assert fit.time == pytest.approx(time, rel=1e-6)
    assert fit.relative_rms < 1e-7


def _numpy_patches(x: np.ndarray, k: int) -> np.ndarray:
    n, _, h, w = x.shape
    rows = [
        x[b, :, i : i + k, j : j + k].reshape(-1) for b in range(n) for i in range(h - k + 1) for j in range(w - k + 1)
    ]
    return np.array(rows)


class Prep(nn.Module):
    """Scaling before the conv: the profile must use what the conv sees, not the raw input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x + 1.0


def test_energy_profile_against_explicit_patches() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(Prep(), nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 36, 2)).double()
    x, _ = _labelled(n_images=6)
    prof = first_layer_energy_profile(model, x, batch_size=4, progress=False)
    p = _numpy_patches(2.0 * x.numpy() + 1.0, 3)
    cov = np.cov(p, rowvar=False)
    evals = np.sort(np.linalg.eigvalsh(cov))[::-1]
    np.testing.assert_allclose(prof.eigenvalues, evals, rtol=1e-10, atol=1e-12)
    w = model[1].weight.detach().numpy().reshape(5, -1)
    # components diagonalise the covariance, energies sum to the mean squared filter norm
    v = prof.components
    np.testing.assert_allclose(v.T @ cov @ v, np.diag(evals), atol=1e-10)
    np.testing.assert_allclose(prof.energy.sum(), (w**2).sum(axis=1).mean(), rtol=1e-12)
    np.testing.assert_allclose(prof.energy, ((w @ v) ** 2).mean(axis=0), rtol=1e-12)
    assert prof.num_patches == p.shape[0] and prof.layer == "1" and prof.fit is not None


# ------------------------------------------------------------------------------------------ plumbing
class Mixed(nn.Module):
    """BatchNorm in train mode inside an eval-mode parent: flags must come back per sub-module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * N * N, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))))


def test_every_analysis_leaves_the_model_exactly_as_found() -> None:
    model = Mixed().double()
    model.eval()
    model.bn.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    x, y = _labelled()
    fourier_heatmap(model, (x, y), progress=False)
    input_frequency_sensitivity(model, (x, y), progress=False)
    first_layer_energy_profile(model, x, progress=False)
    assert {n: m.training for n, m in model.named_modules()} == flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_dataset_and_dataloader_inputs_match_tensor_pairs() -> None:
    model = LowPassClassifier()
    x, y = _labelled()
    ds = torch.utils.data.TensorDataset(x, y)
    dl = torch.utils.data.DataLoader(ds, batch_size=8)
    ref = input_frequency_sensitivity(model, (x, y), batch_size=8, progress=False)
    for data in (ds, dl):
        s = input_frequency_sensitivity(model, data, batch_size=8, progress=False)
        np.testing.assert_allclose(s.sensitivity, ref.sensitivity, rtol=0, atol=1e-14)
    h1 = fourier_heatmap(model, (x, y), batch_size=8, metric="loss", progress=False)
    h2 = fourier_heatmap(model, dl, batch_size=8, metric="loss", progress=False)
    np.testing.assert_allclose(h1.values, h2.values, rtol=0, atol=1e-14)
    assert h2.num_images == 24


def test_results_round_trip_exactly_and_have_short_repr(tmp_path: Path) -> None:
    model = Mixed().double()
    x, y = _labelled()
    results = [
        fourier_heatmap(model, (x, y), metric="loss", max_images=10, progress=False),
        input_frequency_sensitivity(model, (x, y), progress=False),
        first_layer_energy_profile(model, x, progress=False),
    ]
    for i, res in enumerate(results):
        folder = res.save(tmp_path / f"r{i}")
        back = type(res).load(folder)
        a, b = res._arrays(), back._arrays()
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        assert res._meta() == back._meta()
        meta, arrays = res.to_record()  # the route save and the report share
        again = type(res).from_record(meta, arrays)
        assert again.to_record()[0] == meta and all(np.array_equal(arrays[k], again._arrays()[k]) for k in arrays)
        other = results[(i + 1) % len(results)]
        with pytest.raises(ValueError, match="meta must describe a"):
            type(other).from_record(meta, arrays)
        assert len(repr(res)) < 200 and "\n" not in repr(res)
        table = res.table()
        assert len({len(v) for v in table.values()}) == 1
        assert isinstance(res.plot(), Figure)
    assert results[0].num_images == 10
    t = results[1].table()
    assert set(t) == {"channel", "k", "l", "sensitivity", "power"} and len(t["k"]) == 3 * N * N
    with pytest.raises(ValueError, match="expected 'fourier_heatmap'"):
        FourierHeatmap.load(tmp_path / "r1")
    with pytest.raises(FileNotFoundError, match="folder written by"):
        FrequencySensitivity.load(tmp_path / "missing")
    assert isinstance(FirstLayerEnergyProfile.load(tmp_path / "r2"), FirstLayerEnergyProfile)


def test_to_pandas_or_clear_import_error() -> None:
    x, y = _labelled()
    res = input_frequency_sensitivity(LowPassClassifier(), (x, y), progress=False)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            res.to_pandas()
    else:
        assert len(res.to_pandas()) == 3 * N * N


def test_shifted_frequencies_follow_the_fourier_convention() -> None:
    assert list(shifted_frequencies(4)) == [2, -1, 0, 1]  # Nyquist first, labelled +n/2 as in freqlens.fourier
    assert list(shifted_frequencies(5)) == [-2, -1, 0, 1, 2]


def test_bad_inputs_raise_clear_errors() -> None:
    model = LowPassClassifier()
    x, y = _labelled()
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        fourier_heatmap(model, (x, y), eps=-1.0)
    with pytest.raises(ValueError, match="metric must be one of"):
        fourier_heatmap(model, (x, y), metric="accuracy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="signs must be one of"):
        fourier_heatmap(model, (x, y), signs="random")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be a pair"):
        fourier_heatmap(model, x.numpy())
    with pytest.raises(TypeError, match="with labels"):
        input_frequency_sensitivity(model, x)
    with pytest.raises(ValueError, match="data batch x must have shape"):
        fourier_heatmap(model, (x[:, 0], y))
    with pytest.raises(ValueError, match="same number of samples"):
        input_frequency_sensitivity(model, (x, y[:3]))
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        input_frequency_sensitivity(model, (x, y), batch_size=0.5)  # type: ignore[arg-type]
    bad = Mixed().double()
    with torch.no_grad():
        bad.conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite values in 'conv.weight'"):
        fourier_heatmap(bad, (x, y))
    with pytest.raises(ValueError, match="not found in the model"):
        first_layer_energy_profile(Mixed().double(), x, layer="nope")
    grouped = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3)).double()
    with pytest.raises(ValueError, match="groups=3"):
        first_layer_energy_profile(grouped, x)
    with pytest.raises(ValueError, match="energy must be > 0"):
        fit_energy_profile(np.array([3.0, 2.0, 1.0]), np.array([1.0, 0.0, 1.0]))


# ------------------------------------------------------------------------------------------ experiments
USES = ["uses-first-layer", "uses-heatmap", "uses-sensitivity"]
TINY_CNN: dict[str, Any] = {"train_images": 64, "test_images": 16, "width": 4, "epochs": 1, "batch_size": 32}
TINY_USES: dict[str, dict[str, Any]] = {
    "uses-first-layer": dict(TINY_CNN),
    "uses-sensitivity": dict(TINY_CNN),
    "uses-heatmap": {**TINY_CNN, "heatmap_images": 2},
}


def test_uses_experiments_registered_with_quick_and_full_configs() -> None:
    names = sorted(e.name for e in all_experiments() if e.paper == "uses")
    assert names == USES
    for name in USES:
        exp = get_experiment(name)
        assert exp.needs == ("cifar10",)
        assert exp.make_config() != exp.make_config(quick=True)
    with pytest.raises(ValueError, match="heatmap_images"):
        get_experiment("uses-heatmap").make_config(quick=True, overrides={"heatmap_images": 10**6})
    with pytest.raises(ValueError, match="first_kernel"):
        get_experiment("uses-first-layer").make_config(quick=True, overrides={"first_kernel": 4})


@pytest.mark.slow
@pytest.mark.parametrize("name", USES)
def test_uses_tiny_end_to_end(name: str, tmp_path: Path, data_root: Path) -> None:
    kwargs: dict[str, Any] = {
        "quick": True,
        "data_dir": data_root,
        "overrides": TINY_USES[name],
        "show_progress": False,
    }
    out = run_experiment(name, out=tmp_path, **kwargs)
    summary = json.loads((out / "summary.json").read_text())
    assert "paper_claim" in summary and summary["claims"]  # one trained network per scheme: no verdict
    assert all(c["verdict"] == NO_VERDICT and c["n"] == 1 and c["measured"] is not None for c in summary["claims"])
    assert sorted(p.name for p in out.glob("*.png"))
    data = read_npz(out / "data.npz")
    assert all(np.isfinite(v).all() for v in data.values() if v.dtype.kind == "f")
    assert sorted(out.rglob("cnn_*.npz"))  # trained weights stored as a stage (any stage layout)


@pytest.mark.slow
def test_uses_same_seed_same_numbers_and_resume(tmp_path: Path, data_root: Path) -> None:
    name = "uses-first-layer"
    kwargs: dict[str, Any] = {
        "quick": True,
        "data_dir": data_root,
        "overrides": TINY_USES[name],
        "show_progress": False,
    }
    first = read_npz(run_experiment(name, out=tmp_path / "a", **kwargs) / "data.npz")
    other = read_npz(run_experiment(name, out=tmp_path / "b", **kwargs) / "data.npz")
    assert first.keys() == other.keys() and all(np.array_equal(first[k], other[k]) for k in first)
    again = read_npz(run_experiment(name, out=tmp_path / "a", **kwargs) / "data.npz")  # resumes from the stages
    assert all(np.array_equal(first[k], again[k]) for k in first)
