"""Statistics of random decoder layers: Dirichlet kernels, SOM of transfer matrices, zero-padding leak,
upsampling repetition positions, and Monte Carlo estimators of each (``spec/decoder_spectra.md`` §3, §5.8-5.10).

Everything here is float64 NumPy (no torch). Frequencies are unshifted integer indices ``u ∈ [0, M)``.

* ``R_uv = Σ_{t,s<K} e^{2πi(ut/M + vs/N)}`` (the 2-D Dirichlet kernel, App. A.4 Eq. 27): the conjugated DFT
  of the all-ones ``K×K`` kernel; ``|R_00| = K²`` is its maximum (check A12).
* For i.i.d. weights ``N(μ, σ²)``: ``T_uv ~ CN(μR_uv, K²σ², σ²R_{2u,2v})`` (Eq. 27) and, single channel,
  ``SOM(T^{(L:1)}) = Π_l (|μ_l R_uv|² + K²σ_l²)`` (Thm 4.2). With ``μ = 0`` it is flat in ``[u, v]``.
* Zero padding ``M×N → M'×N'`` of i.i.d. ``N(a, σ²)`` pixels adds ``a²τ_uv²`` to the SOM off DC (Thm 4.3).
* Zero insertion ``M_0 → r M_0`` copies the DC bin to ``[s M_0, t N_0]`` (Thm 4.4).
* ``χ`` of Cor. 3.4 is ``R/(MN)`` evaluated at the frequency difference (§2.5); the Eq. 17 mixing weights
  of a valid convolution are given in the corrected form (§2.3, §7.4).

Monte Carlo estimators return the estimate **and its standard error** so tests can use tolerances derived
from the sampling error (checks A13-A14). Samples are drawn in chunks from seeds taken from the caller's
``numpy.random.Generator`` (deterministic for a fixed seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..fourier import dirichlet_kernel, low_frequency_mask

__all__ = [
    "MonteCarloEstimate",
    "chi_weights",
    "dc_replica_positions",
    "dirichlet_R",
    "dirichlet_sum",
    "log_som_per_layer",
    "log_som_slope",
    "monte_carlo_padding_som_gain",
    "monte_carlo_som_single_channel",
    "monte_carlo_transfer_moments",
    "multichannel_transfer_mean",
    "power_share_low",
    "som_multichannel_eq32",
    "som_single_channel",
    "transfer_moments",
    "valid_conv_mixing_weights",
    "zero_padding_som_gain",
    "zero_padding_tau",
]


def _grid(grid: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(grid, int | np.integer):
        m = n = int(grid)
    else:
        m, n = int(grid[0]), int(grid[1])
    if m < 1 or n < 1:
        raise ValueError(f"grid must be positive, got {grid!r}")
    return m, n


def _check_kernel(kernel_size: int, grid: tuple[int, int]) -> int:
    k = int(kernel_size)
    if k < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if k > min(grid):
        raise ValueError(f"kernel_size {k} is larger than the grid {grid}")
    return k


# ------------------------------------------------------------------------------- Dirichlet kernels
def dirichlet_sum(freqs: np.ndarray | int, length: int, period: int) -> np.ndarray:
    """``Σ_{t=0}^{length-1} e^{2πi f t / period}`` for integer ``f`` (Lemma A.1), complex128: the decoder
    paper's plus-sign sum, i.e. ``conj`` of :func:`freqlens.fourier.dirichlet_kernel` (the one home of the
    closed form, its ``0/0`` limit at ``f ≡ 0 (mod P)`` and the exact phase reduction; §3 caveat on Lemma A.1).
    """
    return np.conj(dirichlet_kernel(freqs, length, period))


def dirichlet_R(kernel_size: int, grid: int | Sequence[int]) -> np.ndarray:
    """``R_uv = Σ_{t,s<K} e^{i(ut/M + vs/N)2π}`` on the unshifted ``M×N`` grid (Eq. 27), complex128 ``(M, N)``.

    Check A12: ``|R_uv| ≤ K²`` with equality at DC; ``|R_{M/2,N/2}| = 1`` for odd ``K``, 0 for even ``K``.
    """
    m, n = _grid(grid)
    k = _check_kernel(kernel_size, (m, n))
    return np.outer(dirichlet_sum(np.arange(m), k, m), dirichlet_sum(np.arange(n), k, n))


def chi_weights(kernel_size: int, grid: int | Sequence[int]) -> np.ndarray:
    """``χ`` of Cor. 3.4 (§2.5) as a function of the frequency difference ``(Δu, Δv) = (u−u', v−v')``:
    ``χ[Δu, Δv] = (1/MN) Σ_{t,s<K} e^{2πi(Δu t/M + Δv s/N)} = R_{Δu,Δv}/(MN)``, complex128 ``(M, N)``
    indexed modulo the grid. The weight update of ``T`` at ``[u, v]`` is
    ``ΔT_uv = −η Σ_{u',v'} χ[u−u', v−v'] p̂_{u'v'} conj(g_{u'v'})``."""
    m, n = _grid(grid)
    return dirichlet_R(kernel_size, (m, n)) / (m * n)


def valid_conv_mixing_weights(input_size: int | Sequence[int], kernel_size: int, printed: bool = False) -> np.ndarray:
    """Eq. 17 mixing weights of a valid (unpadded, stride-1) convolution (§2.3), complex128 ``(M', N', M, N)``:

        ``h^{(u'v')} = δ_{u'v'} M'N' b + Σ_{u,v} α_{u'v'uv} T^{(uv)} g^{(uv)}``, ``M' = M−K+1``,
        ``α = (1/MN) · sin(M'λπ) sin(N'γπ) / (sin λπ sin γπ) · e^{i((M'−1)λ + (N'−1)γ)π}``,

    ``λ = u/M − u'/M'``, ``γ = v/N − v'/N'`` (``T`` on the **input** grid, paper convention without phase).
    ``printed=True`` returns the form printed in the paper, with ``sin((M−K)λπ)`` in the numerator: it is
    off by one (§7.4) and exists only so tests can show that it fails. Memory ``O(M'N'MN)``: small grids.
    """
    m, n = _grid(input_size)
    k = _check_kernel(kernel_size, (m, n))
    mp, np_ = m - k + 1, n - k + 1

    def axis(size: int, out: int) -> np.ndarray:
        lam = np.arange(size)[None, :] / size - np.arange(out)[:, None] / out  # (out, size), |λ| < 1
        num_len = (size - k) if printed else out
        den = np.sin(lam * np.pi)
        safe = np.where(np.abs(den) < 1e-15, 1.0, den)
        ratio = np.where(np.abs(den) < 1e-15, float(num_len), np.sin(num_len * lam * np.pi) / safe)
        return ratio * np.exp(1j * (out - 1) * lam * np.pi)

    a = axis(m, mp)
    b = axis(n, np_)
    return a[:, None, :, None] * b[None, :, None, :] / (m * n)


# ------------------------------------------------------------------------------- SOM theory
def transfer_moments(
    mu: float, sigma: float, kernel_size: int, grid: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moments of one entry ``T_uv`` for i.i.d. ``N(μ, σ²)`` weights (App. A.4, Eq. 27).

    Returns ``(mean = μR_uv, variance = K²σ² (flat), pseudo_variance = σ²R_{2u,2v})``, each ``(M, N)``.
    """
    m, n = _grid(grid)
    k = _check_kernel(kernel_size, (m, n))
    r = dirichlet_R(k, (m, n))
    r2 = np.outer(dirichlet_sum(2 * np.arange(m), k, m), dirichlet_sum(2 * np.arange(n), k, n))
    return mu * r, np.full((m, n), k * k * sigma**2), sigma**2 * r2


def log_som_slope(mu: float, sigma: float, kernel_size: int, grid: int | Sequence[int]) -> np.ndarray:
    """Per-layer increment of ``log SOM`` in the single-channel linear stack (Thm 4.2; §5 item 10):
    ``log(|μR_uv|² + K²σ²)``, float64 ``(M, N)``. Negative where the factor is below 1 (A15)."""
    m, n = _grid(grid)
    k = _check_kernel(kernel_size, (m, n))
    return np.log(np.abs(mu * dirichlet_R(k, (m, n))) ** 2 + k * k * sigma**2)


def _per_layer(values: Sequence[float] | float, layers: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(values, dtype=np.float64), (layers,)).copy()
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {values!r}")
    return arr


def log_som_per_layer(
    mus: Sequence[float], sigmas: Sequence[float], kernel_size: int, grid: int | Sequence[int]
) -> np.ndarray:
    """``log SOM(T^{(l:1)})`` for ``l = 1..L`` (Thm 4.2, single channel): float64 ``(L, M, N)``.

    ``log SOM(T^{(L:1)}) = Σ_l log(|μ_l R_uv|² + K²σ_l²)``; ``mus``/``sigmas`` give one value per layer.
    """
    layers = len(mus)
    if layers < 1 or len(sigmas) != layers:
        raise ValueError(f"need one sigma per mu (>= 1 layer), got {len(mus)} and {len(sigmas)}")
    steps = np.stack([log_som_slope(float(mu), float(sg), kernel_size, grid) for mu, sg in zip(mus, sigmas)], axis=0)
    return np.cumsum(steps, axis=0)


def som_single_channel(
    mus: Sequence[float], sigmas: Sequence[float], kernel_size: int, grid: int | Sequence[int]
) -> np.ndarray:
    """``SOM(T^{(uv)(L:1)}) = Π_l (|μ_l R_uv|² + K²σ_l²)`` (Thm 4.2), float64 ``(M, N)``."""
    return np.exp(log_som_per_layer(mus, sigmas, kernel_size, grid)[-1])


def multichannel_transfer_mean(
    mus: Sequence[float], channels: Sequence[int], kernel_size: int, grid: int | Sequence[int]
) -> np.ndarray:
    """Every entry of ``E[T^{(uv)(L:1)}] = (1/C_L) (Π_l C_l μ_l R_uv) 1`` (Eq. 31, exact), complex ``(M, N)``.

    ``channels = (C_0, C_1, ..., C_L)``; layer ``l`` maps ``C_{l-1} → C_l``.
    """
    if len(channels) != len(mus) + 1:
        raise ValueError(f"channels must be (C_0, ..., C_L) with L = len(mus) = {len(mus)}, got {channels!r}")
    r = dirichlet_R(kernel_size, grid)
    out = np.ones_like(r)
    for l, mu in enumerate(mus):
        out = out * channels[l + 1] * mu * r
    return out / channels[-1]


def som_multichannel_eq32(
    mus: Sequence[float],
    sigmas: Sequence[float],
    channels: Sequence[int],
    kernel_size: int,
    grid: int | Sequence[int],
) -> np.ndarray:
    """Eq. 32 recursion for the SOM of one entry of ``T^{(uv)(l:1)}``, ``l = 1..L``: float64 ``(L, M, N)``.

        ``SOM_l = C_{l-1}(|μ_l R|² + K²σ_l²) SOM_{l-1} + C_{l-1}(C_{l-1}−1) |μ_l R|² |E T^{(l-1:1)}|²``,

    with ``SOM_1 = |μ_1 R|² + K²σ_1²``. **Approximate**: it assumes the entries of ``T^{(l-1:1)}`` are
    independent, which is false when they share lower layers (about 10% off; check A15 says not to assert
    it tightly). ``channels = (C_0, ..., C_L)``.
    """
    layers = len(mus)
    if len(sigmas) != layers or len(channels) != layers + 1 or layers < 1:
        raise ValueError(f"need len(sigmas) == len(mus) >= 1 and len(channels) == L+1, got {channels!r}")
    k = int(kernel_size)
    r2 = np.abs(dirichlet_R(k, grid)) ** 2
    som = mus[0] ** 2 * r2 + k * k * sigmas[0] ** 2
    out = [som]
    for l in range(1, layers):
        c = channels[l]
        mean_prev = np.abs(multichannel_transfer_mean(mus[:l], channels[: l + 1], k, grid)) ** 2
        som = c * (mus[l] ** 2 * r2 + k * k * sigmas[l] ** 2) * som + c * (c - 1) * mus[l] ** 2 * r2 * mean_prev
        out.append(som)
    return np.stack(out, axis=0)


def power_share_low(power: np.ndarray, fraction: float = 1 / 8, exclude_dc: bool = False) -> float:
    """``Σ_{Ω_low} P / Σ P`` for one unshifted power map ``(M, N)`` (``p_low`` of §4 item 7 for a predicted
    power spectrum, e.g. ``SOM(T^{(L:1)})`` times a white input)."""
    p = np.array(power, dtype=np.float64, copy=True)
    if p.ndim != 2:
        raise ValueError(f"power must be a 2-D map (M, N), got shape {p.shape}")
    if exclude_dc:
        p[0, 0] = 0.0
    total = float(p.sum())
    if not total > 0:
        raise ValueError("power must have a positive total")
    return float(p[low_frequency_mask(p.shape, fraction)].sum() / total)


# ------------------------------------------------------------------------------- zero padding
def zero_padding_tau(size: int | Sequence[int], padded_size: int | Sequence[int]) -> np.ndarray:
    """``τ_uv = sin(Muπ/M') sin(Nvπ/N') / (sin(uπ/M') sin(vπ/N'))`` for ``0 ≤ u < M``, ``0 ≤ v < N``
    (Thm 4.3), with limits ``M`` at ``u = 0`` and ``N`` at ``v = 0``: float64 ``(M, N)``."""
    m, n = _grid(size)
    mp, np_ = _grid(padded_size)
    if mp < m or np_ < n:
        raise ValueError(f"padded_size {(mp, np_)} must be at least size {(m, n)}")

    def axis(length: int, period: int) -> np.ndarray:
        u = np.arange(length)
        den = np.sin(np.pi * u / period)
        safe = np.where(u == 0, 1.0, den)
        return np.where(u == 0, float(length), np.sin(np.pi * length * u / period) / safe)

    return np.outer(axis(m, mp), axis(n, np_))


def zero_padding_som_gain(a: float, size: int | Sequence[int], padded_size: int | Sequence[int]) -> np.ndarray:
    """``SOM(H_uv) − SOM(G_uv) = a²τ_uv²`` off DC and 0 at DC (Thm 4.3), float64 ``(M, N)``."""
    gain = float(a) ** 2 * zero_padding_tau(size, padded_size) ** 2
    gain[0, 0] = 0.0
    return gain


# ------------------------------------------------------------------------------- upsampling
def dc_replica_positions(input_size: int | Sequence[int], output_size: int | Sequence[int]) -> np.ndarray:
    """Where zero-insertion upsampling ``M_0×N_0 → M×N`` copies the DC bin (Thm 4.4, Eq. 11): every
    ``[s M_0, t N_0]``, ``s < M/M_0``, ``t < N/N_0``, DC included. int64 ``(S·T, 2)``, unshifted indices.

    Cascaded zero insertions compose into one (``r_1 r_2``), so for a chain pass the first input size and
    the last output size. A non-integer ratio raises ``ValueError`` (such an upsampling cannot tile).
    """
    m0, n0 = _grid(input_size)
    m, n = _grid(output_size)
    if m % m0 or n % n0:
        raise ValueError(f"output size {(m, n)} is not an integer multiple of the input size {(m0, n0)}")
    s, t = np.meshgrid(np.arange(m // m0) * m0, np.arange(n // n0) * n0, indexing="ij")
    return np.stack([s.reshape(-1), t.reshape(-1)], axis=1).astype(np.int64)


# ------------------------------------------------------------------------------- Monte Carlo
@dataclass(frozen=True)
class MonteCarloEstimate:
    """A Monte Carlo mean over ``n`` i.i.d. samples and its standard error (same shape)."""

    value: np.ndarray
    standard_error: np.ndarray
    n: int


def _chunk_seeds(rng: np.random.Generator, n: int, chunk: int) -> list[tuple[int, int]]:
    if n < 2:
        raise ValueError(f"n must be >= 2 samples, got {n}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    sizes = [min(chunk, n - i) for i in range(0, n, chunk)]
    seeds = rng.integers(0, 2**63 - 1, size=len(sizes))
    return [(int(s), size) for s, size in zip(seeds, sizes)]


def _transfer_samples(
    mu: float, sigma: float, k: int, grid: tuple[int, int], size: int, seed: int, layers: int = 1
) -> np.ndarray:
    """``T = conj(fft2(W, s=grid))`` for ``W ~ N(μ, σ²)`` i.i.d.: complex ``(size, layers, M, N)``."""
    w = mu + sigma * np.random.default_rng(seed).standard_normal((size, layers, k, k))
    return np.conj(np.fft.fft2(w, s=grid))


class _Moments:
    """Streaming sums of a per-sample statistic ``q`` and ``|q|²`` (for mean and standard error)."""

    def __init__(self) -> None:
        self.s1: np.ndarray | None = None
        self.s2: np.ndarray | None = None
        self.n = 0

    def add(self, q: np.ndarray) -> None:
        s1 = q.sum(axis=0)
        s2 = (np.abs(q) ** 2).sum(axis=0)
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += q.shape[0]

    def estimate(self, scale: float = 1.0) -> MonteCarloEstimate:
        assert self.s1 is not None and self.s2 is not None
        mean = self.s1 / self.n
        var = np.maximum(self.s2 / self.n - np.abs(mean) ** 2, 0.0) * self.n / (self.n - 1)
        return MonteCarloEstimate(mean * scale, np.sqrt(var / self.n) * abs(scale), self.n)


def monte_carlo_transfer_moments(
    mu: float,
    sigma: float,
    kernel_size: int,
    grid: int | Sequence[int],
    n: int,
    rng: np.random.Generator,
    chunk: int = 10_000,
) -> dict[str, MonteCarloEstimate]:
    """Monte Carlo of Eq. 27 (§5 item 8; check A13): sample ``W ~ N(μ, σ²)`` (``K×K``), form ``T_uv``.

    Returns ``{"mean": E T, "variance": E|T − ET|², "pseudo_variance": E(T − ET)²}``, each ``(M, N)`` with its
    standard error (the mean's error is ``sqrt(E|T−ET|²/n)`` per bin, for the complex value). Two passes over
    the same chunk seeds: the second centres on the first pass's mean.
    """
    m, n_ = _grid(grid)
    k = _check_kernel(kernel_size, (m, n_))
    plan = _chunk_seeds(rng, n, chunk)
    first = _Moments()
    for seed, size in plan:
        first.add(_transfer_samples(mu, sigma, k, (m, n_), size, seed)[:, 0])
    mean = first.estimate()
    centre = mean.value
    var_m, pvar_m = _Moments(), _Moments()
    for seed, size in plan:
        d = _transfer_samples(mu, sigma, k, (m, n_), size, seed)[:, 0] - centre
        var_m.add(np.abs(d) ** 2)
        pvar_m.add(d * d)
    correction = n / (n - 1)
    return {"mean": mean, "variance": var_m.estimate(correction), "pseudo_variance": pvar_m.estimate(correction)}


def monte_carlo_som_single_channel(
    mus: Sequence[float],
    sigmas: Sequence[float],
    kernel_size: int,
    grid: int | Sequence[int],
    n: int,
    rng: np.random.Generator,
    chunk: int = 5_000,
) -> MonteCarloEstimate:
    """Monte Carlo of ``SOM(T^{(l:1)}) = E|T^{(L)} ⋯ T^{(1)}|²`` for ``l = 1..L``, independent single-channel
    layers with ``N(μ_l, σ_l²)`` weights (Thm 4.2; §5 items 8 and 10; check A13): ``(L, M, N)`` with errors."""
    layers = len(mus)
    if layers < 1 or len(sigmas) != layers:
        raise ValueError(f"need one sigma per mu (>= 1 layer), got {len(mus)} and {len(sigmas)}")
    m, n_ = _grid(grid)
    k = _check_kernel(kernel_size, (m, n_))
    moments = _Moments()
    for seed, size in _chunk_seeds(rng, n, chunk):
        sub = np.random.default_rng(seed)
        prods = np.ones((size, m, n_), dtype=np.complex128)
        per_layer = np.empty((size, layers, m, n_))
        for l in range(layers):
            t = _transfer_samples(float(mus[l]), float(sigmas[l]), k, (m, n_), size, int(sub.integers(2**62)))
            prods = prods * t[:, 0]
            per_layer[:, l] = np.abs(prods) ** 2
        moments.add(per_layer)
    return moments.estimate()


def monte_carlo_padding_som_gain(
    a: float,
    sigma: float,
    size: int | Sequence[int],
    padded_size: int | Sequence[int],
    n: int,
    rng: np.random.Generator,
    symmetric: bool = False,
    chunk: int = 10_000,
) -> MonteCarloEstimate:
    """Monte Carlo of Thm 4.3 (§5 item 9; check A14): pixels ``N(a, σ²)`` i.i.d. on ``M×N``, zero-padded to
    ``M'×N'``; the per-sample statistic ``|H_uv|² − |G_uv|²`` (``0 ≤ u < M``, ``0 ≤ v < N``), paired on the
    same samples. ``symmetric=True`` splits the padding between both sides (PyTorch style); the SOM is the
    same because only the phase changes. Returns ``(M, N)`` with standard errors."""
    m, n_ = _grid(size)
    mp, np_ = _grid(padded_size)
    if mp < m or np_ < n_:
        raise ValueError(f"padded_size {(mp, np_)} must be at least size {(m, n_)}")
    top, left = ((mp - m) // 2, (np_ - n_) // 2) if symmetric else (0, 0)
    moments = _Moments()
    for seed, count in _chunk_seeds(rng, n, chunk):
        f = a + sigma * np.random.default_rng(seed).standard_normal((count, m, n_))
        padded = np.zeros((count, mp, np_))
        padded[:, top : top + m, left : left + n_] = f
        h = np.fft.fft2(padded)[:, :m, :n_]
        g = np.fft.fft2(f)
        moments.add(np.abs(h) ** 2 - np.abs(g) ** 2)
    return moments.estimate()
