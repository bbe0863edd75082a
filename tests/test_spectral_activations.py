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
from freqlens.spectral.activations import _GramAccumulator, activation_spectra, energy_count

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


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


# --------------------------------------------------------------------------------- batched Gram accumulation
def _per_image_per_frequency_grams(acts: torch.Tensor) -> np.ndarray:
    """Independent route: NumPy ``fft2`` of every image separately, then ``G(ω) = Σ_n conj(α̂_n(ω)) α̂_n(ω)ᵀ``
    summed with explicit loops over images and frequencies: ``(H, W, c, c)`` complex."""
    a = acts.detach().numpy().astype(np.float64)
    n, c, h, w = a.shape
    grams = np.zeros((h, w, c, c), dtype=np.complex128)
    for i in range(n):
        spec = np.fft.fft2(a[i])  # (c, H, W)
        for u in range(h):
            for v in range(w):
                z = spec[:, u, v]
                grams[u, v] += np.outer(z.conj(), z)
    return grams


@given(
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    c=st.integers(1, 5),
    n=st.integers(1, 6),
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    route=st.sampled_from(["herk", "split"]),
)
def test_batched_gram_equals_per_image_per_frequency_route(h, w, c, n, batch, seed, route):
    gen = torch.Generator().manual_seed(seed)
    acts = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen) + 0.5  # a non-zero mean: ω = 0 content
    acc = _GramAccumulator(torch.float64, route=route)
    for start in range(0, n, batch):
        acc.add("layer", acts[start : start + batch])
    ref = _per_image_per_frequency_grams(acts)
    half = h * (w // 2 + 1)
    assert acc.stored_bytes("layer") == 2 * half * c * c * 8  # the accumulator does not depend on n
    assert ("layer" in acc.gram_upper) == (route == "herk")
    rows = torch.arange(half)
    ours = acc.gram("layer", rows).numpy().reshape(h, w // 2 + 1, c, c)
    scale = float(np.abs(ref).max())
    assert np.abs(ours - ref[:, : w // 2 + 1]).max() <= 1e-12 * scale
    # and the spectra: eigenvalues of every G(ω) on the full grid, conjugate partners filled in
    layer = acc.finish("layer", "output")
    ref_sv2 = np.linalg.eigvalsh(ref)[..., ::-1].clip(min=0.0)
    assert np.abs(layer.singular_values**2 - ref_sv2).max() <= 1e-12 * float(ref_sv2.max())
    assert layer.num_samples == n and layer.parseval_rel_error < 1e-12


def test_streaming_batch_size_does_not_change_the_spectra():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(5, 4, 1)
    ).double()
    x = torch.randn(23, 3, 10, 9, dtype=torch.float64)
    reference = activation_spectra(net, x, batch_size=23)
    for batch in (1, 4, 7, 100):
        for data in (x, [x[i : i + batch] for i in range(0, 23, batch)]):
            other = activation_spectra(net, data, batch_size=batch)
            for a, b in zip(reference.layers, other.layers):
                assert a.num_samples == b.num_samples == 23
                assert np.abs(a.singular_values - b.singular_values).max() <= 1e-12 * float(a.singular_values.max())
                assert abs(a.energy - b.energy) <= 1e-12 * a.energy


def test_same_input_gives_identical_numbers():
    net = CircularCNN(2, 4, 2, 3, 8, generator=torch.Generator().manual_seed(3)).double()
    x = torch.randn(9, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a, b = activation_spectra(net, x, batch_size=4), activation_spectra(net, x, batch_size=4)
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la.singular_values, lb.singular_values) and la.energy == lb.energy


def test_float32_accumulation_is_close_to_float64():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    x = torch.randn(20, 2, 12, 12)
    s64 = activation_spectra(net, x, batch_size=8)
    s32 = activation_spectra(net, x, batch_size=8, dtype=torch.float32)
    for a, b in zip(s64.layers, s32.layers):
        top = float(a.singular_values.max())
        assert np.abs(a.singular_values - b.singular_values).max() <= 1e-5 * top
        assert b.parseval_rel_error < 1e-5


def test_layer_with_few_channels_at_the_self_conjugate_frequencies():
    # even sides: four self-conjugate frequencies (real Grams, real eigensolver); a single channel
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")).double()
    x = torch.randn(5, 1, 6, 4, dtype=torch.float64)
    layer = activation_spectra(net, x, batch_size=2)[0]
    with torch.no_grad():
        ref = _brute_force(net(x))
    assert np.abs(layer.singular_values - ref).max() <= 1e-12 * float(ref.max())


def test_unusable_models_are_refused_before_any_batch_is_read():
    consumed = []

    def stream():
        consumed.append(1)
        yield torch.randn(2, 1, 5, 5)

    on_meta = nn.Sequential(nn.Conv2d(1, 2, 3)).to("meta")
    with pytest.raises(ValueError, match="meta"):
        activation_spectra(on_meta, stream())
    with_nan = nn.Sequential(nn.Conv2d(1, 2, 3))
    with torch.no_grad():
        with_nan[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        activation_spectra(with_nan, stream())
    assert consumed == []
    with pytest.raises(ValueError, match="dtype"):
        activation_spectra(nn.Sequential(nn.Conv2d(1, 1, 1)), torch.randn(2, 1, 3, 3), dtype=torch.float16)


def test_model_is_left_as_found():
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1))
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a model in train mode
    state = {k: v.clone() for k, v in net.state_dict().items()}
    activation_spectra(net, torch.randn(6, 1, 5, 5), batch_size=4)
    assert net.training and not net[1].training and net[3].training
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_accumulation_matches_cpu():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1)).double()
    x = torch.randn(17, 3, 12, 12, dtype=torch.float64)
    cpu = activation_spectra(net, x, batch_size=5)
    gpu = activation_spectra(net.cuda(), x.cuda(), batch_size=5)
    for a, b in zip(cpu.layers, gpu.layers):
        assert np.abs(a.singular_values - b.singular_values).max() <= 1e-12 * float(a.singular_values.max())


def test_herk_route_is_bitwise_independent_of_the_thread_count(monkeypatch):
    from freqlens.spectral import _blas

    monkeypatch.setattr(_blas, "_usable_cpus", lambda: 2)  # two workers even on a one-CPU runner
    acts = torch.randn(7, 6, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    grams = []
    before = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            acc = _GramAccumulator(torch.float64, route="herk")
            acc.add("layer", acts[:4])
            acc.add("layer", acts[4:])
            grams.append(acc.gram("layer", torch.arange(9 * 5)))
        finally:
            torch.set_num_threads(before)
    assert torch.equal(grams[0], grams[1])


def test_frequency_major_is_the_transpose_across_tiles():
    from freqlens.spectral.activations import _TILE, _frequency_major

    rng = np.random.default_rng(7)
    spec = rng.standard_normal((2 * _TILE + 37, 11)) + 1j * rng.standard_normal((2 * _TILE + 37, 11))
    for part in (spec, spec[:, 3:8]):  # a whole array and a strided slice of frequencies
        out = _frequency_major(part)
        assert out.flags.c_contiguous and np.array_equal(out, part.T)
