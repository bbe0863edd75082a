"""spectral.activations: streaming activation spectra against a brute-force SVD of the stacked spectra (C8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from freqlens.fourier import conjugate_index
from freqlens.hooks import LayerForwardError
from freqlens.models.circular_cnn import CircularCNN
from freqlens.spectral.activations import activation_spectra, energy_count


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread avoids OpenMP spin-waiting on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _brute_force(acts: torch.Tensor) -> np.ndarray:
    """Singular values of every N×c matrix α̂(ω) (full grid, no symmetry used): (H, W, c)."""
    spec = torch.fft.fft2(acts.to(torch.float64)).permute(2, 3, 0, 1)
    return torch.linalg.svdvals(spec).numpy()


@given(n=st.integers(3, 8), m=st.integers(3, 8), batch=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_streaming_gram_matches_brute_force_and_parseval(n, m, batch, seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Conv2d(3, 4, 1)).double()
    x = torch.randn(13, 2, n, m, dtype=torch.float64)
    spectra = activation_spectra(net, x, batch_size=batch)
    assert spectra.names == ["0", "2"]
    with torch.no_grad():
        acts = [net[0](x), net[2](torch.relu(net[0](x)))]
    for layer, a in zip(spectra.layers, acts):
        assert layer.num_samples == 13 and layer.grid == (n, m)
        ref = _brute_force(a)
        top = float(ref.max())
        # squared singular values (Gram eigenvalues) agree to rounding relative to the largest one
        assert np.allclose(layer.singular_values**2, ref**2, atol=1e-11 * top**2)
        # C8: Σ ς² = |P| ‖α‖_F²
        assert layer.parseval_rel_error < 1e-12
        assert np.isclose((layer.singular_values**2).sum(), n * m * float(a.pow(2).sum()), rtol=1e-12)
        # conjugate symmetry of the result
        flat = layer.singular_values.reshape(n * m, -1)
        assert np.array_equal(flat[conjugate_index((n, m))], flat)


def test_capture_input_gives_post_activation_and_iterable_batches():
    net = CircularCNN(1, 3, 1, 3, 6, generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(10, 1, 6, 6, dtype=torch.float64)
    batches = [(x[:4], None), (x[4:], None)]
    spectra = activation_spectra(net, batches, layers=["convs.1"], capture="input")
    with torch.no_grad():
        post = torch.relu(net.hidden(x, 1))
    assert np.allclose(
        spectra[0].singular_values ** 2, _brute_force(post) ** 2, atol=1e-11 * float(_brute_force(post).max()) ** 2
    )
    assert spectra["convs.1"].capture == "input"


def test_memory_does_not_depend_on_the_number_of_samples():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")).double()
    seen = []

    def stream():
        for i in range(50):
            seen.append(i)
            yield torch.randn(4, 1, 5, 5, dtype=torch.float64)

    spectra = activation_spectra(net, stream())
    assert len(seen) == 50 and spectra[0].num_samples == 200


def test_energy_counts():
    sv = np.zeros((2, 2, 2))
    sv[0, 0] = [3.0, 1.0]
    sv[1, 1] = [0.1, 0.0]
    assert energy_count(sv, 0.2) == 1  # 9 / 10.01 ≥ 0.8
    assert energy_count(sv, 1e-3) == 2
    assert energy_count(sv, 0.0) == 3
    with pytest.raises(ValueError, match="eps"):
        energy_count(sv, 1.0)


def test_bad_inputs():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(3, 2))
    with pytest.raises(LayerForwardError, match="layer '2'"):
        activation_spectra(net, torch.randn(4, 1, 6, 6))
    with pytest.raises(ValueError, match="not found"):
        activation_spectra(net, torch.randn(4, 1, 6, 6), layers=["7"])
    with pytest.raises(ValueError, match="capture"):
        activation_spectra(net, torch.randn(4, 1, 6, 6), capture="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no samples"):
        activation_spectra(nn.Sequential(nn.Conv2d(1, 1, 1)), [])
