"""Per-frequency spectra of activations over a dataset, streamed (conv_bottleneck §5b, C8).

For a layer with activations ``α (N, c, H, W)`` and unnormalised spectra ``α̂(ω) ∈ C^{N×c}``, the singular
values ``ς_{ω,j}`` of ``α̂(ω)`` are the square roots of the eigenvalues of the ``c×c`` Gram matrix
``G(ω) = Σ_n conj(α̂_n(ω)) α̂_n(ω)ᵀ``. ``G`` is accumulated batch by batch (forward hooks), all frequencies at once
(:class:`_GramAccumulator`), on the activations' device, so memory is ``O(|P| c²)`` per layer,
independent of ``N``. Real activations give ``G(-ω) = conj(G(ω))``: only the ``rfft2`` half-plane is
accumulated and one frequency per conjugate pair is decomposed. Not centred: the mean is the
``ω = 0`` content (§5b.2). Parseval (C8): ``Σ_{ω,j} ς² = |P| ‖α‖_F²``, checked against the energy
accumulated in pixel space.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from .._validation import check_finite, check_model_usable, check_positive_int, check_real_floating, describe
from ..fourier import conjugate_index, half_plane_representatives, self_conjugate_mask, signed_frequencies
from ..hooks import capture_layers, evaluation_mode, select_layers, trace_layers
from ._blas import add_column_grams, lapack_threads, map_in_threads, rank_k_is_direct

__all__ = ["ActivationSpectra", "LayerActivationSpectrum", "activation_spectra", "energy_count"]

Capture = Literal["output", "input"]

_TILE = 256  # rows per tile of the transposing copy (_frequency_major)
_MIN_PIECES = 8  # frequency slices per layer and batch at least (the transposed slice stays small)
_EIG_CHUNK_BYTES = 64 * 2**20  # Gram rows gathered per eigensolver call (bounds the extra copy in finish)


@dataclass(frozen=True)
class LayerActivationSpectrum:
    """Streaming per-frequency spectrum of one layer's activations (spec §5b).

    ``singular_values (H, W, c)`` descending: the singular values of the ``N×c`` matrices ``α̂(ω)``.
    ``energy`` = ``‖α‖_F²`` accumulated in pixel space (float64); ``parseval_rel_error`` =
    ``|Σς² − |P|‖α‖²| / (|P|‖α‖²)`` (C8).
    """

    name: str
    capture: str
    grid: tuple[int, int]
    channels: int
    num_samples: int
    singular_values: np.ndarray
    energy: float
    parseval_rel_error: float

    @property
    def frequencies(self) -> np.ndarray:
        """Signed frequencies ``(H, W, 2)`` of the grid, freqlens.fourier's convention (decoder_spectra §2)."""
        kh = signed_frequencies(self.grid[0])
        kw = signed_frequencies(self.grid[1])
        return np.stack(np.meshgrid(kh, kw, indexing="ij"), axis=-1)

    @property
    def self_conjugate(self) -> np.ndarray:
        """Mask ``(H, W)`` of the self-conjugate frequencies ``ω = -ω mod n`` (conv_bottleneck §2, C8)."""
        return self_conjugate_mask(self.grid)

    def energy_fractions(self) -> np.ndarray:
        """``ς²/Σς²`` per (ω, j): ``(H, W, c)``."""
        e = self.singular_values**2
        total = float(e.sum())
        return e / total if total > 0 else np.zeros_like(e)

    def count_at_energy(self, eps: float) -> int:
        """Number of largest (ω, j) needed to reach a ``1 − eps`` energy fraction (§5b.4)."""
        return energy_count(self.singular_values, eps)

    def count_above(self, relative_threshold: float) -> int:
        """Number of (ω, j) with ``ς > relative_threshold · max ς``."""
        top = float(self.singular_values.max()) if self.singular_values.size else 0.0
        return int((self.singular_values > relative_threshold * top).sum()) if top > 0 else 0


def energy_count(singular_values: np.ndarray, eps: float) -> int:
    """Smallest ``r`` such that the ``r`` largest squared values hold at least ``1 − eps`` of the total."""
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    e = np.sort(np.asarray(singular_values, dtype=np.float64).reshape(-1) ** 2)[::-1]
    total = float(e.sum())
    if total <= 0:
        return 0
    cum = np.cumsum(e) / total
    return int(min(np.searchsorted(cum, 1.0 - eps - 1e-15) + 1, e.size))


@dataclass
class ActivationSpectra:
    """Activation spectra of several layers, in the order the layers were requested."""

    layers: list[LayerActivationSpectrum]

    def __getitem__(self, key: int | str) -> LayerActivationSpectrum:
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise KeyError(f"no layer {key!r}; layers are {[lay.name for lay in self.layers]}")
        return self.layers[key]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        """Layer names in capture order (plumbing)."""
        return [layer.name for layer in self.layers]


class _GramAccumulator:
    """Per-layer running Gram matrices ``G(ω) = α̂(ω)ᴴ α̂(ω)`` on the ``rfft2`` half-plane (plumbing).

    Two routes with the same result (to rounding), both batched over all ``F = H·(W//2+1)`` frequencies,
    no per-frequency arithmetic in Python:

    * ``"herk"`` (float64 on CPU, where the GIL-free CBLAS ``zherk`` of :mod:`freqlens.spectral._blas` is
      found): ``rfft2`` of ``(N, c, H, W)`` is ``(N·c, F)`` complex with the frequencies innermost; a tiled
      transposing copy of each slice of frequencies makes it ``(F', N, c)``, each frequency's ``α̂(ω)`` a
      contiguous ``N×c`` block, and one ``zherk`` per frequency adds its upper triangle (``2·N·c²`` real
      multiply-adds: half a complex GEMM). The slices are shared among
      :func:`~freqlens.spectral._blas.lapack_threads`'s workers; results are bitwise independent of the
      thread count.
    * ``"split"`` (float32, other devices): with ``α̂(ω) = X + iY``, ``G = (XᵀX + YᵀY) + i(K − Kᵀ)``,
      ``K = XᵀY``: two real batched matmuls per layer and batch (``3·N·c²``), on the activations' device.

    The whole half-plane is accumulated: its ``v = 0`` and ``v = W/2`` columns hold both members of
    ``H/2 - 1`` conjugate pairs, a ``≈ 2/W`` share of duplicate work, cheaper than gathering the exact
    representatives (a strided copy); :meth:`finish` keeps one frequency per pair. Storage: ``2·F·c²`` real
    numbers of ``dtype`` per layer on either route.
    """

    def __init__(self, dtype: torch.dtype, route: Literal["herk", "split"] | None = None) -> None:
        self.dtype = dtype
        self.route = route  # None: chosen per layer at its first batch
        self.gram_upper: dict[str, torch.Tensor] = {}  # herk route: Σ α̂ᴴα̂, upper triangle, (F, c, c) complex
        self.gram_real: dict[str, torch.Tensor] = {}  # split route: Σ XᵀX + YᵀY, (F, c, c)
        self.gram_cross: dict[str, torch.Tensor] = {}  # split route: K = Σ XᵀY, (F, c, c)
        self.channels: dict[str, int] = {}
        self.energy: dict[str, torch.Tensor] = {}
        self.grid: dict[str, tuple[int, int]] = {}
        self.samples: dict[str, int] = {}

    def _uses_herk(self, a: torch.Tensor) -> bool:
        if self.route is not None:
            return self.route == "herk"
        return a.device.type == "cpu" and a.dtype == torch.float64 and rank_k_is_direct()

    def add(self, name: str, act: torch.Tensor) -> None:
        if act.ndim not in (3, 4):
            raise ValueError(
                f"layer {name!r}: expected activations (N, C, H, W) or, of a 1-D layer, (N, C, L), "
                f"got shape {tuple(act.shape)}"
            )
        # a 1-D signal (N, C, L) is the 1xL grid (freqlens.fourier.spatial_grid): frequencies (0, k)
        a = (act.unsqueeze(-2) if act.ndim == 3 else act).detach().to(self.dtype).contiguous()
        n, c, h, w = a.shape
        half = h * (w // 2 + 1)
        first = name not in self.grid
        if not first and (self.grid[name] != (h, w) or self.channels[name] != c):
            raise ValueError(
                f"layer {name!r}: activation shape changed between batches: {(c, h, w)} vs "
                f"{(self.channels[name], *self.grid[name])}"
            )
        flat = a.view(-1)
        energy = torch.dot(flat, flat).to(torch.float64)  # a device tensor: no host synchronisation per batch
        if first:
            self.energy[name], self.grid[name], self.samples[name], self.channels[name] = energy, (h, w), 0, c
        else:
            self.energy[name] += energy
        self.samples[name] += n
        spec = torch.fft.rfft2(a)
        if (name in self.gram_upper) if not first else self._uses_herk(a):
            if first:
                self.gram_upper[name] = torch.zeros(half, c, c, dtype=torch.complex128)
            by_channel = spec.reshape(n * c, half).numpy()  # (N·c, F), frequencies innermost
            grams = self.gram_upper[name].numpy()

            def update(sl: slice) -> None:  # a slice of frequencies: α̂(ω) as contiguous N×c blocks, then zherk
                blocks = _frequency_major(by_channel[:, sl]).reshape(-1, n, c)
                add_column_grams(blocks, grams[sl])

            with lapack_threads(a.device) as workers:
                step = -(-half // max(_MIN_PIECES, 4 * workers))
                map_in_threads(workers, update, [slice(start, start + step) for start in range(0, half, step)])
            return
        parts = torch.view_as_real(spec).reshape(n * c, 2 * half).t().contiguous().view(half, 2, n, c)
        stacked = parts.view(half, 2 * n, c)  # [X; Y], X = Re α̂(ω), Y = Im α̂(ω): N×c each
        x, y = parts[:, 0], parts[:, 1]
        if first:  # the first products allocate the accumulators (no separate zero fill)
            self.gram_real[name] = torch.bmm(stacked.mT, stacked)
            self.gram_cross[name] = torch.bmm(x.mT, y)
            return
        self.gram_real[name].baddbmm_(stacked.mT, stacked)
        self.gram_cross[name].baddbmm_(x.mT, y)

    def _held(self, name: str) -> list[torch.Tensor]:
        return [d[name] for d in (self.gram_upper, self.gram_real, self.gram_cross) if name in d]

    def stored_bytes(self, name: str) -> int:
        """Bytes held for one layer's Grams (plumbing; independent of the number of images)."""
        return sum(t.numel() * t.element_size() for t in self._held(name))

    def device(self, name: str) -> torch.device:
        return self._held(name)[0].device

    def blocks(self, name: str, rows: torch.Tensor, real: bool) -> tuple[torch.Tensor, str]:
        """``(G(ω) of the half-plane rows, the triangle that holds it)``; ``real``: their real parts only."""
        if name in self.gram_upper:
            upper = self.gram_upper[name].index_select(0, rows)
            return (upper.real if real else upper), "U"
        gram_real = self.gram_real[name].index_select(0, rows)
        if real:
            return gram_real, "L"
        cross = self.gram_cross[name].index_select(0, rows)
        return torch.complex(gram_real, cross - cross.mT), "L"

    def gram(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        """The full Hermitian Gram matrices ``G(ω)`` of the half-plane ``rows`` (plumbing)."""
        block, triangle = self.blocks(name, rows, real=False)
        if triangle == "U":
            upper = block.triu()
            return upper + upper.triu(1).mH
        return block

    def finish(self, name: str, capture: str) -> LayerActivationSpectrum:
        h, w = self.grid[name]
        c = self.channels[name]
        idx_half, idx_full = half_plane_representatives((h, w))
        sv_half = _gram_singular_values(self, name, idx_half, self_conjugate_mask((h, w)).reshape(-1)[idx_full])
        for held in (self.gram_upper, self.gram_real, self.gram_cross):  # released as soon as its layer is done
            held.pop(name, None)
        full = np.empty((h * w, c))
        full[idx_full] = sv_half
        full[conjugate_index((h, w))[idx_full]] = sv_half
        total_sv = float((full**2).sum())
        energy = float(self.energy[name])
        expected = h * w * energy
        rel = abs(total_sv - expected) / expected if expected > 0 else 0.0
        return LayerActivationSpectrum(
            name=name,
            capture=capture,
            grid=(h, w),
            channels=c,
            num_samples=self.samples[name],
            singular_values=full.reshape(h, w, c),
            energy=energy,
            parseval_rel_error=rel,
        )


def _frequency_major(by_channel: np.ndarray) -> np.ndarray:
    """``(R, L)`` -> its transpose ``(L, R)``, C-contiguous, copied in tiles of ``_TILE`` rows (plumbing).

    Why tiles: each tile's ``L`` source rows stay in cache while they are scattered into ``L`` output rows;
    measured 3x faster than ``torch``'s or NumPy's whole-array transposing copy (21 vs 69 / 56 ms for the
    ``(16 000, 544)`` complex spectrum of a 64-channel 32x32 layer over 250 images).
    """
    rows, cols = by_channel.shape
    out = np.empty((cols, rows), dtype=by_channel.dtype)
    for start in range(0, rows, _TILE):
        out[:, start : start + _TILE] = by_channel[start : start + _TILE].T
    return out


def _gram_singular_values(acc: _GramAccumulator, name: str, rows: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``ς = sqrt(eig(G))`` descending of the Hermitian PSD Grams of half-plane ``rows`` (spec §5b):
    ``(len(rows), c)``.

    At self-conjugate frequencies (``real``) ``α̂(ω)`` is real (``Y`` is rounding only), so ``G`` is its
    real part ``XᵀX + YᵀY`` and goes to the real symmetric eigensolver, several times cheaper. Rows are
    gathered in chunks of about ``_EIG_CHUNK_BYTES``, so no second full copy of the Grams is made.
    """
    c = acc.channels[name]
    h, w = acc.grid[name]
    per_row = max(1, acc.stored_bytes(name) // (h * (w // 2 + 1)))  # bytes of one frequency's Gram
    out = np.empty((len(rows), c))
    chunk = max(1, _EIG_CHUNK_BYTES // per_row)
    device = acc.device(name)
    for sel in (np.flatnonzero(real), np.flatnonzero(~real)):
        for start in range(0, len(sel), chunk):
            part = sel[start : start + chunk]
            index = torch.from_numpy(rows[part]).to(device)
            block, triangle = acc.blocks(name, index, bool(real[part[0]]))
            evals = torch.linalg.eigvalsh(block, UPLO=triangle)
            out[part] = evals.clamp_min(0.0).flip(-1).sqrt().cpu().numpy()  # descending
    return out


def _batches(data: torch.Tensor | Iterable[object], batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        check_real_floating("data", data)
        check_finite("data", data)
        for start in range(0, data.shape[0], batch_size):
            yield data[start : start + batch_size]
        return
    for item in data:
        x = item[0] if isinstance(item, tuple | list) else item
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"data batches must be tensors or (x, y) tuples of tensors, got {type(x).__name__}")
        check_real_floating("data batch", x)
        check_finite("data batch", x)
        yield x


def activation_spectra(
    model: nn.Module,
    data: torch.Tensor | Iterable[object],
    layers: Sequence[str] | str | None = None,
    capture: Capture = "output",
    batch_size: int = 256,
    dtype: torch.dtype = torch.float64,
) -> ActivationSpectra:
    """Per-frequency singular values of the activations of ``layers`` over ``data`` (spec §5b, C8).

    Args:
        data: a tensor ``(N, C, H, W)`` (``(N, C, L)`` for a model of 1-D signals; split into ``batch_size``
            chunks) or an iterable of batches (tensors or ``(x, y)`` tuples, e.g. a ``DataLoader``).
        layers: qualified module names, one str being one name (default: every layer with a weight rule in
            the registry: ``nn.Conv2d``, ``nn.ConvTranspose2d``, ``nn.Conv1d`` and registered types). Unknown
            names raise ``ValueError``. Activations ``(N, C, L)`` of 1-D layers are spectra on the ``1×L``
            grid, frequencies ``(0, k)`` (:func:`freqlens.fourier.spatial_grid`).
        capture: ``"output"`` records each layer's output (pre-activations for conv layers: the
            recommended choice, §5b.6); ``"input"`` its input (post-activation of the previous layer).
        dtype: precision of the FFT and of the Gram accumulation (float64 by default: the results match a
            per-image, per-frequency float64 route to rounding; float32 to about 1e-6 relative).

    Cost per batch of ``B`` images and layer: one ``rfft2``, one transposing copy and the Gram update of every
    half-plane frequency at once: float64 on CPU one ``zherk`` per frequency (``2·B·c²`` real multiply-adds,
    shared among ``torch.get_num_threads()`` worker threads); float32 or other devices two real batched
    matmuls (``G = (XᵀX + YᵀY) + i(XᵀY − YᵀX)`` for ``α̂(ω) = X + iY``, ``3·B·c²``). No per-frequency
    arithmetic in Python. At the end one Hermitian eigensolve per conjugate pair (real symmetric at
    self-conjugate frequencies), in chunks.

    Memory bound (independent of the number of images ``N``): per layer two real ``(F, c, c)`` accumulators,
    ``F = H·(⌊W/2⌋+1)``, i.e. ``2·F·c²`` numbers of ``dtype`` (float64: ``≈ 8·H·W·c²`` bytes); plus, while
    a batch passes, about three copies of the current layer's ``B×c×H×W`` activations in ``dtype`` (the
    converted activations, their half-plane spectrum and its transpose) and at the end a gather of at most
    ``_EIG_CHUNK_BYTES`` (64 MiB) per eigensolver call. The model runs in eval mode under ``torch.no_grad``
    and is left as found (every sub-module's training flag restored). A failing forward pass raises
    :class:`freqlens.hooks.LayerForwardError` naming the layer.
    """
    from .rules import registered_rules
    from .weights import layer_names_argument

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if capture not in ("output", "input"):
        raise ValueError(f"capture must be 'output' or 'input', got {capture!r}")
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(dtype, torch.dtype) or dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if isinstance(data, np.ndarray) or not (isinstance(data, torch.Tensor) or hasattr(data, "__iter__")):
        raise TypeError(f"data must be a torch.Tensor (N, C, H, W) or an iterable of batches, got {describe(data)}")
    check_model_usable("model", model)
    names = layer_names_argument(layers)
    if names is None:
        weight_types = tuple(t for t, r in registered_rules().items() if r.has_weights)
        chosen = select_layers(model, types=weight_types)
        if not chosen:
            raise ValueError(f"model {type(model).__name__} has no conv layer; pass layers=[...] explicitly")
    else:
        chosen = select_layers(model, names=names)
    acc = _GramAccumulator(dtype)

    def record(name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        tensor = output if capture == "output" else inputs[0]
        acc.add(name, tensor)

    seen = 0
    with evaluation_mode(model), capture_layers(chosen, record):
        for x in _batches(data, batch_size):
            trace_layers(model, x)  # a failure names the layer
            seen += int(x.shape[0])
    if seen == 0:
        raise ValueError("data holds no samples")
    missing = [name for name, _ in chosen if name not in acc.grid]
    if missing:
        raise ValueError(
            f"layers {missing} were not called in the forward pass (or gave no (N, C, H, W) / (N, C, L) activations)"
        )
    return ActivationSpectra([acc.finish(name, capture) for name, _ in chosen])
