"""Which input frequencies a trained model *uses* (issue 16): Fourier heat maps (Yin et al. 2019) and
input-frequency sensitivity (Godfrey et al. 2023). First-layer energy profiles (Chowers & Weiss 2023) are in
:mod:`freqlens.analysis.first_layer_energy`.

Frequency layout of every map here: **fftshift layout**. Row ``a`` of an ``(H, W)`` map is the signed row
frequency ``k = fftshift(signed_frequencies(H))[a]`` and column ``b`` the signed column frequency
``l = fftshift(signed_frequencies(W))[b]`` (``freqlens.fourier.signed_frequencies``: labels in ``(-n/2, n/2]``,
the first index multiplies the row index). So DC sits at ``(H//2, W//2)``; for an even side the first row
(column) is the Nyquist frequency, labelled ``+n/2`` as everywhere in freqlens (it is the same frequency as
``-n/2``). The result objects carry the labels as ``row_frequencies`` / ``col_frequencies``.

Result objects share one interface: a short ``repr``, ``table()`` (a dict of equal-length 1-D arrays, one row
per map entry), ``to_pandas()`` (when pandas is installed), ``plot()`` (a matplotlib ``Figure``) and
``save(path)`` / ``Class.load(path)``: a folder with ``arrays.npz`` (every number, exact) and ``meta.json``
(kind and labels only); nothing is pickled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from .._validation import (
    check_choice,
    check_finite,
    check_model_usable,
    check_ndim,
    check_positive_int,
    check_real_floating,
    describe,
)
from ..fourier import conjugate_index, signed_frequencies
from ..hooks import evaluation_mode
from ..io import read_json, read_npz, write_json, write_npz

__all__ = [
    "FourierHeatmap",
    "FrequencySensitivity",
    "SavedResult",
    "fourier_basis",
    "fourier_heatmap",
    "input_frequency_sensitivity",
    "labelled_batches",
    "shifted_frequencies",
]

HeatmapMetric = Literal["error", "loss"]
SignMode = Literal["independent", "shared"]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
R = TypeVar("R", bound="SavedResult")


# --------------------------------------------------------------------------------------------
# Result plumbing shared by the three analyses
# --------------------------------------------------------------------------------------------
def shifted_frequencies(n: int) -> np.ndarray:
    """Signed frequency labels of an fftshift-ed axis of length ``n``: ``fftshift(signed_frequencies(n))``."""
    return np.fft.fftshift(signed_frequencies(n))


class SavedResult:
    """Save/load/table plumbing for the frequency-use results (plumbing).

    Subclasses define ``KIND``, ``_arrays()`` (every number), ``_meta()`` (JSON-able labels), ``_rebuild`` and
    ``table()``. ``save(path)`` writes the folder ``path`` with ``arrays.npz`` and ``meta.json``.
    """

    KIND: ClassVar[str] = ""
    FORMAT: ClassVar[int] = 1

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _meta(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _rebuild(cls: type[R], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> R:
        raise NotImplementedError

    def table(self) -> dict[str, np.ndarray]:
        """One row per entry, as named columns (plumbing; each subclass says what its rows are)."""
        raise NotImplementedError

    def to_record(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)``: the JSON-able labels (with ``kind`` and ``format``) and every number. The one
        serialisation route: :meth:`save` writes it, a ``Report`` stores it, :meth:`from_record` reads it."""
        return {"kind": self.KIND, "format": self.FORMAT, **self._meta()}, self._arrays()

    @classmethod
    def from_record(cls: type[R], meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> R:
        """The result rebuilt from :meth:`to_record`'s ``(meta, arrays)``; refuses another kind or format."""
        if not isinstance(meta, Mapping) or meta.get("kind") != cls.KIND or meta.get("format") != cls.FORMAT:
            got = (meta.get("kind"), meta.get("format")) if isinstance(meta, Mapping) else type(meta).__name__
            raise ValueError(f"meta must describe a {cls.KIND!r} result of format {cls.FORMAT}, got {got!r}")
        return cls._rebuild(arrays, meta)

    def save(self, path: str | Path) -> Path:
        """Write ``path/arrays.npz`` and ``path/meta.json`` atomically; returns the folder."""
        folder = Path(path).expanduser()
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"path must be a folder (it will hold arrays.npz and meta.json), got the file {folder}")
        meta, arrays = self.to_record()
        write_npz(folder / "arrays.npz", arrays)
        write_json(folder / "meta.json", meta)
        return folder

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a folder written by :meth:`save` (numpy ``allow_pickle=False``)."""
        folder = Path(path).expanduser()
        if not (folder / "meta.json").is_file() or not (folder / "arrays.npz").is_file():
            raise FileNotFoundError(f"path must be a folder written by {cls.__name__}.save, got {folder}")
        meta = read_json(folder / "meta.json")
        if not isinstance(meta, dict) or meta.get("kind") != cls.KIND:
            got = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{folder} holds a {got!r} result, expected {cls.KIND!r}")
        return cls.from_record(meta, read_npz(folder / "arrays.npz"))

    def to_pandas(self) -> Any:
        """``table()`` as a ``pandas.DataFrame`` (pandas is optional)."""
        try:
            import pandas as pd  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise ImportError("to_pandas needs pandas: pip install pandas (table() gives the same columns)") from exc
        return pd.DataFrame(self.table())


def _grid_table(values: np.ndarray, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per entry of ``(..., H, W)`` maps in fftshift layout: leading index, ``k``, ``l``, then columns."""
    *lead, h, w = values.shape
    grids = np.meshgrid(*[np.arange(n) for n in lead], shifted_frequencies(h), shifted_frequencies(w), indexing="ij")
    out: dict[str, np.ndarray] = {}
    if lead:
        out["channel"] = grids[0].reshape(-1).astype(np.int64)
    out["k"] = grids[-2].reshape(-1).astype(np.int64)
    out["l"] = grids[-1].reshape(-1).astype(np.int64)
    for name, col in columns.items():
        out[name] = np.asarray(col).reshape(-1)
    return out


def _draw_shifted(fig: Figure, ax: Any, shifted: np.ndarray, title: str, log: bool = False) -> None:
    """Draw a map already in the fftshift layout, signed-frequency axes, with a colour bar (plumbing)."""
    h, w = shifted.shape
    shown = np.log10(shifted + 1e-12 * max(float(shifted.max()), 1e-300)) if log else shifted
    # extent in signed frequencies; the Nyquist row/column (labelled +n/2) is drawn at -n/2, the same frequency
    extent = (-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5)
    image = ax.imshow(shown, cmap="magma", extent=extent, interpolation="nearest")
    ax.set_xlabel("l")
    ax.set_ylabel("k")
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)


# --------------------------------------------------------------------------------------------
# Data, model and device plumbing
# --------------------------------------------------------------------------------------------
def _model_device_dtype(model: nn.Module, device: str | torch.device | None) -> tuple[torch.device, torch.dtype]:
    first = next(iter(model.parameters()), None)
    if device is not None:
        dev = torch.device(device)
        if first is not None and first.device != dev:
            raise ValueError(f"device is {dev} but the model's parameters are on {first.device}; move the model first")
    else:
        dev = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    return dev, dtype


def labelled_batches(
    data: Any, batch_size: int, max_images: int | None = None, need_labels: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Stream ``(x (B, C, H, W), y (B,) or None)`` from ``data`` (plumbing).

    ``data``: a pair ``(x, y)`` of tensors, an ``x`` tensor alone (only with ``need_labels=False``), a
    ``torch.utils.data.Dataset`` of ``(x, y)`` items, or an iterable of ``(x, y)`` batches (a DataLoader).
    Each batch is checked (4-D, real floating, finite) as it arrives.
    """
    source: Iterable[Any]
    if isinstance(data, torch.Tensor):
        if need_labels:
            raise TypeError(f"data must be a pair (x, y) with labels, got only {describe(data)}")
        source = ((data[i : i + batch_size], None) for i in range(0, data.shape[0], batch_size))
    elif isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"data x and y must hold the same number of samples, got {x.shape[0]} and {y.shape[0]}")
        source = ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size))
    elif isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
        source = iter(loader)
    elif isinstance(data, np.ndarray) or not hasattr(data, "__iter__"):
        raise TypeError(
            "data must be a pair (x, y) of tensors, a Dataset of (x, y) or a DataLoader of (x, y) batches, "
            f"got {describe(data)}"
        )
    else:
        source = iter(data)
    seen = 0
    for item in source:
        if isinstance(item, torch.Tensor):
            xb, yb = item, None
        elif isinstance(item, tuple | list) and len(item) >= 1:
            xb, yb = item[0], (item[1] if len(item) > 1 else None)
        else:
            raise TypeError(f"each batch must be (x, y) tensors, got {describe(item)}")
        check_ndim("data batch x", xb, (4,), "(B, C, H, W)")
        check_real_floating("data batch x", xb)
        check_finite("data batch x", xb)
        if need_labels and not isinstance(yb, torch.Tensor):
            raise TypeError(f"each batch must carry labels y as a tensor, got {describe(yb)}")
        if max_images is not None:
            keep = max(0, max_images - seen)
            xb = xb[:keep]
            yb = yb[:keep] if yb is not None else None
        if xb.shape[0] == 0:
            break
        seen += xb.shape[0]
        yield xb, yb
        if max_images is not None and seen >= max_images:
            break


def _count(data: Any, max_images: int | None) -> int | None:
    """Number of images ``data`` will yield, when knowable without iterating (for the progress bar)."""
    n: int | None = None
    if isinstance(data, torch.Tensor):
        n = int(data.shape[0])
    elif isinstance(data, tuple | list) and data and isinstance(data[0], torch.Tensor):
        n = int(data[0].shape[0])
    elif isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        n = len(data)
    elif isinstance(data, torch.utils.data.DataLoader) and hasattr(data.dataset, "__len__"):
        n = len(data.dataset)
    if n is not None and max_images is not None:
        n = min(n, max_images)
    return n


def _check_common(model: nn.Module, batch_size: int, max_images: int | None) -> None:
    check_model_usable("model", model)
    check_positive_int("batch_size", batch_size)
    if max_images is not None:
        check_positive_int("max_images", max_images)


# --------------------------------------------------------------------------------------------
# Fourier heat maps (Yin et al. 2019)
# --------------------------------------------------------------------------------------------
def fourier_basis(
    shape: tuple[int, int], frequencies: np.ndarray, dtype: torch.dtype = torch.float64, device: Any = "cpu"
) -> torch.Tensor:
    """Real Fourier basis images ``U_{k,l}`` of unit L2 norm (Yin et al. 2019, §3): ``(F, H, W)``.

    ``U_{k,l}(i, j) ∝ cos(2π (k i / H + l j / W))``: its DFT is non-zero only at ``(k, l)`` and ``(-k, -l)``
    (one bin at a self-conjugate frequency). ``frequencies (F, 2)`` are integer ``(k, l)``, taken modulo the
    grid. The phase is reduced modulo the grid in integers, then evaluated in float64.
    """
    h, w = int(shape[0]), int(shape[1])
    f = np.asarray(frequencies, dtype=np.int64).reshape(-1, 2)
    i = np.arange(h)
    j = np.arange(w)
    rows = (f[:, 0, None] * i[None, :]) % h  # (F, H)
    cols = (f[:, 1, None] * j[None, :]) % w  # (F, W)
    phase = 2.0 * np.pi * (rows[:, :, None] / h + cols[:, None, :] / w)
    basis = np.cos(phase)
    basis /= np.linalg.norm(basis.reshape(len(f), -1), axis=1)[:, None, None]
    return torch.from_numpy(basis).to(dtype=dtype, device=device)


def _heatmap_representatives(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Vec-2D indices ``m`` with ``m <= m̄`` (one per pair ``{ω, -ω}``: ``U_ω = U_{-ω}``) and the conjugates."""
    conj = conjugate_index((h, w))
    m = np.arange(h * w)
    reps = m[m <= conj]
    return reps, conj[reps]


@dataclass(frozen=True, repr=False)
class FourierHeatmap(SavedResult):
    """Mean error or loss under Fourier-basis perturbations ``x + eps r U_{k,l}`` (Yin et al. 2019).

    ``values (H, W)`` in the fftshift layout (module docstring); ``baseline`` is the unperturbed value on the
    same images; ``effect = values - baseline``.
    """

    values: np.ndarray
    baseline: float
    eps: float
    metric: str
    signs: str
    num_images: int
    seed: int

    KIND: ClassVar[str] = "fourier_heatmap"

    @property
    def effect(self) -> np.ndarray:
        """``values - baseline``: the change of the metric caused by the perturbation at each frequency."""
        return self.values - self.baseline

    @property
    def row_frequencies(self) -> np.ndarray:
        """Signed row frequency ``k`` of each map row (fftshift layout, module docstring)."""
        return shifted_frequencies(self.values.shape[0])

    @property
    def col_frequencies(self) -> np.ndarray:
        """Signed column frequency ``l`` of each map column (fftshift layout)."""
        return shifted_frequencies(self.values.shape[1])

    def __repr__(self) -> str:
        h, w = self.values.shape
        return (
            f"FourierHeatmap({h}x{w}, metric={self.metric!r}, eps={self.eps:g}, images={self.num_images}, "
            f"baseline={self.baseline:.4g}, max={float(self.values.max()):.4g})"
        )

    def table(self) -> dict[str, np.ndarray]:
        """One row per frequency: ``k``, ``l``, the metric and its ``effect`` (plumbing)."""
        return _grid_table(self.values, {self.metric: self.values, "effect": self.effect})

    def plot(self) -> Figure:
        """The map with DC at the centre and a colour bar (plumbing)."""
        fig = Figure(figsize=(4.2, 3.5), constrained_layout=True)
        ax = fig.subplots()
        _draw_shifted(
            fig,
            ax,
            self.values,
            f"{self.metric} under Fourier perturbation, eps={self.eps:g}\n(baseline {self.baseline:.3g})",
        )
        return fig

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"values": self.values, "baseline": np.float64(self.baseline), "eps": np.float64(self.eps)}

    def _meta(self) -> dict[str, Any]:
        return {"metric": self.metric, "signs": self.signs, "num_images": self.num_images, "seed": self.seed}

    @classmethod
    def _rebuild(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> FourierHeatmap:
        return cls(
            values=arrays["values"],
            baseline=float(arrays["baseline"]),
            eps=float(arrays["eps"]),
            metric=str(meta["metric"]),
            signs=str(meta["signs"]),
            num_images=int(meta["num_images"]),
            seed=int(meta["seed"]),
        )


def _per_sample_metric(out: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    if out.ndim != 2:
        raise ValueError(f"the model must return class scores (B, classes), got shape {tuple(out.shape)}")
    if metric == "error":
        return (out.argmax(dim=1) != y).to(torch.float64)
    return F.cross_entropy(out, y, reduction="none").to(torch.float64)


def _heatmap_setup(
    shape: tuple[int, int], dtype: torch.dtype, device: torch.device
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Representatives ``m <= m̄`` (vec-2D order), their conjugates and the real basis images ``(R, H, W)``."""
    h, w = shape
    reps, conj = _heatmap_representatives(h, w)
    basis = fourier_basis((h, w), np.stack(np.divmod(reps, w), axis=1), dtype=dtype, device=device)
    return reps, conj, basis


def _perturbed_batch(
    xb: torch.Tensor, basis: torch.Tensor, scaled_sign: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """``x_n + (eps r_{f,n,c}) U_f`` for ``f`` basis images at once, written by one ``addcmul`` into the first
    ``f B`` rows of the reused buffer ``out (≥ f B, C, H, W)`` (its memory layout is kept; no intermediate
    ``(f, B, C, H, W)`` copies, no fresh allocation per pass); returns those rows."""
    rows = out[: basis.shape[0] * xb.shape[0]]
    target = rows.unflatten(0, (basis.shape[0], xb.shape[0]))
    torch.addcmul(xb[None], scaled_sign[:, :, :, None, None], basis[:, None, None], out=target)
    return rows


def _heatmap_batch_sums(
    model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    basis: torch.Tensor,
    sign_draw: torch.Tensor,
    options: tuple[float, str, int, torch.memory_format],
    bar: Any,
) -> tuple[float, torch.Tensor]:
    """One data batch: the unperturbed ``Σ_n metric(f(x_n), y_n)`` and, for every basis image ``f``,
    ``Σ_n metric(f(x_n + eps r U_f), y_n)`` as ``(R,)`` float64, ``images_per_pass // B`` basis images per
    forward pass; ``sign_draw`` holds 0/1 draws ``(R, B, C or 1)``, ``options`` is ``(eps, metric,
    images_per_pass, memory_format)`` (plumbing)."""
    eps, metric, images_per_pass, memory_format = options
    scaled_sign = (eps * (2 * sign_draw - 1)).to(device=xb.device, dtype=xb.dtype)
    b = xb.shape[0]
    per_pass = max(1, images_per_pass // b)
    baseline = float(_per_sample_metric(model(xb.contiguous(memory_format=memory_format)), yb, metric).sum())
    sums = torch.zeros(basis.shape[0], dtype=torch.float64, device=xb.device)
    labels = yb.repeat(per_pass)
    buffer = torch.empty((per_pass * b, *xb.shape[1:]), dtype=xb.dtype, device=xb.device, memory_format=memory_format)
    for start in range(0, basis.shape[0], per_pass):
        stop = min(start + per_pass, basis.shape[0])
        xp = _perturbed_batch(xb, basis[start:stop], scaled_sign[start:stop], buffer)
        vals = _per_sample_metric(model(xp), labels[: (stop - start) * b], metric)
        sums[start:stop] = vals.reshape(stop - start, b).sum(dim=1)
        bar.update(1)
    return baseline, sums


def _heatmap_passes(representatives: int, images_per_pass: int, batch_size: int, total: int | None) -> int | None:
    """Forward passes the progress bar will count (``None`` when the number of images is unknown)."""
    if total is None:
        return None
    return math.ceil(representatives / max(1, images_per_pass // batch_size)) * math.ceil(total / batch_size)


def _check_heatmap_args(eps: float, metric: str, signs: str, images_per_pass: int | None) -> None:
    if images_per_pass is not None:
        check_positive_int("images_per_pass", images_per_pass)
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0 (the L2 norm of the perturbation), got {eps!r}")
    check_choice("metric", metric, ("error", "loss"))
    check_choice("signs", signs, ("independent", "shared"))


def _mirrored_map(mean: np.ndarray, reps: np.ndarray, conj: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Spread the representatives' values onto both members of each pair ``{ω, -ω}``; fftshift layout."""
    flat = np.zeros(shape[0] * shape[1])
    flat[reps] = mean
    flat[conj] = mean
    return np.fft.fftshift(flat.reshape(shape))


def fourier_heatmap(
    model: nn.Module,
    data: Any,
    eps: float = 4.0,
    metric: HeatmapMetric = "error",
    *,
    signs: SignMode = "independent",
    batch_size: int = 128,
    max_images: int | None = None,
    images_per_pass: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    channels_last: bool = True,
) -> FourierHeatmap:
    """Fourier heat map of a classifier (Yin et al. 2019, "A Fourier perspective on model robustness", §3).

    For every frequency ``(k, l)``: ``values[k, l] = E_n metric(f(x_n + eps r_n U_{k,l}), y_n)`` with
    ``U_{k,l}`` the unit-norm real basis image of :func:`fourier_basis` and ``r_n`` a random sign per image:
    ``signs="independent"`` draws one sign per image **and channel** (Yin et al. perturb each colour channel
    independently), ``"shared"`` one sign per image for all channels. ``metric="error"`` is the top-1 error,
    ``"loss"`` the mean cross-entropy. Images are not clipped to a valid pixel range. Speed (all exact):
    ``U_ω = U_{-ω}``, so one frequency of each conjugate pair is evaluated and mirrored; many basis
    perturbations share one forward pass (up to ``images_per_pass`` images; default 256 on CPU, 8192 on other
    devices), written by one ``addcmul`` in channels-last layout (CPU max-pool and conv kernels are faster
    there; ``channels_last=False`` keeps the contiguous layout); the unperturbed logits are computed once per
    batch (``baseline``). Signs are drawn per data batch as ``(representatives, B, C or 1)`` from
    ``torch.Generator().manual_seed(seed)`` (representatives in vec-2D order ``m = k W + l``, ``m <= m̄``), so
    results do not depend on ``images_per_pass``. ``data``: ``(x, y)`` tensors, a Dataset or a DataLoader
    (:func:`labelled_batches`), streamed to the model's device. The model is left exactly as found.
    Returns a :class:`FourierHeatmap` in the fftshift layout.
    """
    _check_common(model, batch_size, max_images)
    _check_heatmap_args(eps, metric, signs, images_per_pass)
    dev, dtype = _model_device_dtype(model, device)
    per_pass_images = images_per_pass or (256 if dev.type == "cpu" else 8192)  # measured, see docstring
    layout = torch.channels_last if channels_last else torch.contiguous_format
    options, independent = (float(eps), metric, per_pass_images, layout), signs == "independent"
    gen = torch.Generator().manual_seed(int(seed))
    reps = conj = np.zeros(0, dtype=np.int64)
    basis: torch.Tensor | None = None
    base_sum, count, sums = 0.0, 0, torch.zeros(0, dtype=torch.float64)
    bar = tqdm(total=None, desc="fourier heat map", unit="pass", disable=not progress, leave=False)
    with bar, evaluation_mode(model), torch.no_grad():
        for xb, yb in labelled_batches(data, batch_size, max_images):
            assert yb is not None
            xb, yb = xb.to(device=dev, dtype=dtype), yb.to(device=dev, dtype=torch.int64)
            if basis is None:
                reps, conj, basis = _heatmap_setup((xb.shape[-2], xb.shape[-1]), dtype, dev)
                sums = torch.zeros(len(reps), dtype=torch.float64, device=dev)
                bar.total = _heatmap_passes(len(reps), per_pass_images, batch_size, _count(data, max_images))
            elif xb.shape[-2:] != basis.shape[-2:]:
                raise ValueError(f"all images must share one size; got {tuple(xb.shape[-2:])} after {basis.shape[-2:]}")
            draw = torch.randint(0, 2, (len(reps), *xb.shape[:1], xb.shape[1] if independent else 1), generator=gen)
            batch_base, batch_sums = _heatmap_batch_sums(model, xb, yb, basis, draw, options, bar)
            base_sum, sums, count = base_sum + batch_base, sums + batch_sums, count + xb.shape[0]
    if basis is None or count == 0:
        raise ValueError("data yielded no images")
    values = _mirrored_map(sums.cpu().numpy() / count, reps, conj, (basis.shape[-2], basis.shape[-1]))
    return FourierHeatmap(values, base_sum / count, float(eps), metric, signs, count, int(seed))


# --------------------------------------------------------------------------------------------
# Input-frequency sensitivity (Godfrey et al. 2023)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class FrequencySensitivity(SavedResult):
    """Per-channel ``E_n |∂L/∂x̂_n(ω)|`` and the data power ``E_n |x̂_n(ω)|²`` (orthonormal DFT).

    ``sensitivity`` and ``power`` are ``(C, H, W)`` in the fftshift layout (module docstring).
    """

    sensitivity: np.ndarray
    power: np.ndarray
    num_images: int

    KIND: ClassVar[str] = "frequency_sensitivity"

    @property
    def row_frequencies(self) -> np.ndarray:
        """Signed row frequency ``k`` of each map row (fftshift layout, module docstring)."""
        return shifted_frequencies(self.sensitivity.shape[-2])

    @property
    def col_frequencies(self) -> np.ndarray:
        """Signed column frequency ``l`` of each map column (fftshift layout)."""
        return shifted_frequencies(self.sensitivity.shape[-1])

    def __repr__(self) -> str:
        c, h, w = self.sensitivity.shape
        return (
            f"FrequencySensitivity({c} channels, {h}x{w}, images={self.num_images}, "
            f"max sensitivity={float(self.sensitivity.max()):.4g})"
        )

    def table(self) -> dict[str, np.ndarray]:
        """One row per channel and frequency: ``channel``, ``k``, ``l``, ``sensitivity``, ``power`` (plumbing)."""
        return _grid_table(self.sensitivity, {"sensitivity": self.sensitivity, "power": self.power})

    def plot(self) -> Figure:
        """Per channel: sensitivity (top) and data power (bottom), log10, DC at the centre (plumbing)."""
        c = self.sensitivity.shape[0]
        fig = Figure(figsize=(3.0 * c, 5.6), constrained_layout=True)
        axes = np.asarray(fig.subplots(2, c)).reshape(2, c)
        for ch in range(c):
            _draw_shifted(fig, axes[0, ch], self.sensitivity[ch], f"channel {ch}: E|dL/dx̂| (log10)", log=True)
            _draw_shifted(fig, axes[1, ch], self.power[ch], f"channel {ch}: E|x̂|² (log10)", log=True)
        return fig

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"sensitivity": self.sensitivity, "power": self.power}

    def _meta(self) -> dict[str, Any]:
        return {"num_images": self.num_images}

    @classmethod
    def _rebuild(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> FrequencySensitivity:
        return cls(sensitivity=arrays["sensitivity"], power=arrays["power"], num_images=int(meta["num_images"]))


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


BatchFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_sample_losses(loss: LossFn) -> BatchFn:
    """``(outputs (B, ...), targets (B, ...)) -> (B,)``: ``loss_fn`` on each ``(1, ...)`` pair, vmapped (plumbing)."""
    return torch.func.vmap(lambda out, t: loss(out.unsqueeze(0), t.unsqueeze(0)))


def _summed_loss_gradients(
    forward: Callable[[torch.Tensor], torch.Tensor], summed_loss: BatchFn, xb: torch.Tensor, yb: torch.Tensor
) -> torch.Tensor:
    """``∇_X Σ_n L_n(f(X)_n)``: row ``n`` is ``∇_{x_n} L_n`` exactly when no output depends on another sample
    (checked by :func:`_batch_coupled`); one forward and one backward pass for the whole batch."""
    x = xb.detach().clone(memory_format=torch.channels_last).requires_grad_(True)
    (grads,) = torch.autograd.grad(summed_loss(forward(x), yb), x)
    return grads


def _batch_coupled(
    forward: Callable[[torch.Tensor], torch.Tensor], losses: BatchFn, xb: torch.Tensor, yb: torch.Tensor
) -> bool:
    """Probe on the first two samples: does ``L_0`` depend on ``x_1``? (``∂L_0/∂x_1`` is exactly zero when the
    model has no path between samples, e.g. BatchNorm in eval mode; non-zero for batch statistics.)"""
    x = xb[:2].detach().clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(losses(forward(x), yb[:2])[0], x)
    return bool(grads[1].abs().max() > 0)


def _half_plane_power(x: torch.Tensor) -> torch.Tensor:
    """``|rfft2(x, norm="ortho")|²`` as float64 ``(..., H, W//2+1)``. The FFT runs in ``x``'s own precision
    (float32 gradients carry float32 rounding already; float64 stays float64); ``re² + im²`` by one ``addcmul``
    (torch's complex ``abs`` and a reduction over ``view_as_real`` were measured several times slower)."""
    spec = torch.fft.rfft2(x, norm="ortho")
    re, im = spec.real.to(torch.float64), spec.imag.to(torch.float64)
    return torch.addcmul(re * re, im, im)


def _full_from_half_plane(half: np.ndarray, w: int) -> np.ndarray:
    """Maps of ``|x̂|`` (or ``|x̂|²``) of real images from the rfft2 half-plane ``(..., H, W//2+1)`` onto the full
    grid ``(..., H, W)`` by conjugate symmetry ``|x̂(k, l)| = |x̂(-k, -l)|`` (plumbing)."""
    h, wr = half.shape[-2:]
    full = np.empty((*half.shape[:-1], w), dtype=half.dtype)
    full[..., :wr] = half
    rows = (-np.arange(h)) % h
    full[..., wr:] = half[..., rows[:, None], (w - np.arange(wr, w))[None, :]]
    return full


def _summed_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="sum")


def _gradient_route(
    model: nn.Module, loss_fn: LossFn | None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], BatchFn, BatchFn, BatchFn]:
    """The model as a function of its input with detached parameters (so no weight gradients are formed); the
    vmapped per-sample losses ``(B,)``; their sum (the default cross-entropy summed directly, no ``vmap``);
    and the per-sample-call route ``vmap(grad(L ∘ f(x[None])))`` (plumbing)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    loss = loss_fn if loss_fn is not None else _cross_entropy
    losses = _per_sample_losses(loss)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, (params, buffers), (x,))

    def sample_loss(x1: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        return loss(forward(x1.unsqueeze(0)), y1.unsqueeze(0))

    def summed(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return losses(out, y).sum()

    summed_loss = _summed_cross_entropy if loss_fn is None else summed
    return forward, losses, summed_loss, torch.func.vmap(torch.func.grad(sample_loss))


def input_frequency_sensitivity(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn | None = None,
    *,
    batch_size: int = 128,
    max_images: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> FrequencySensitivity:
    """Input-frequency sensitivity ``S_c(ω) = E_n |∂L_n/∂x̂_{n,c}(ω)|`` (Godfrey et al. 2023) and the data
    power spectrum ``P_c(ω) = E_n |x̂_{n,c}(ω)|²``.

    ``x̂ = F_H x F_W`` is the **orthonormal** (unitary) 2-D DFT of each channel (``norm="ortho"``,
    ``freqlens.fourier.unitary_fft2``). For a real loss ``L(x)`` with ``x = F^H x̂`` the gradient with respect to
    the complex coefficient is ``∂L/∂x̂ = F ∇_x L`` (unitarity), so ``S_c(ω) = E_n |unitary_fft2(∇_x L_n)_c(ω)|``.

    Per-sample gradients: in eval mode the samples of a batch are independent for ordinary models; then row
    ``n`` of ``∇_X Σ_n L_n`` is ``∇_{x_n} L_n`` exactly, so each batch takes one forward and one backward pass
    of the summed loss (channels-last input, parameters detached). This is checked on a probe
    (``∂L_0/∂x_1`` of the first batch must be exactly zero); a model that couples samples falls back to
    ``torch.func.vmap(torch.func.grad(...))`` with each sample evaluated alone. The FFT is one batched
    ``rfft2`` (real gradients: ``|ĝ(-ω)| = |ĝ(ω)|`` fills the other half). ``loss_fn(outputs (1, ...),
    targets (1, ...)) -> scalar`` (default: cross-entropy), applied per sample by ``vmap``. Labels may be any
    tensor ``loss_fn`` accepts. The model is left exactly as found. Returns maps ``(C, H, W)`` in the fftshift
    layout (float64 accumulation).
    """
    _check_common(model, batch_size, max_images)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (outputs, targets) -> scalar, got {describe(loss_fn)}")
    dev, dtype = _model_device_dtype(model, device)
    forward, losses, summed, per_sample_grad = _gradient_route(model, loss_fn)
    coupled: bool | None = None
    count, sens, power = 0, torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    bar = tqdm(
        total=_count(data, max_images), desc="frequency sensitivity", unit="img", disable=not progress, leave=False
    )
    shape: tuple[int, ...] = ()
    with bar, evaluation_mode(model):
        for xb, yb in labelled_batches(data, batch_size, max_images):
            assert yb is not None
            xb, yb = xb.to(device=dev, dtype=dtype), yb.to(device=dev)
            if coupled is None and xb.shape[0] >= 2:
                coupled = _batch_coupled(forward, losses, xb, yb)
            grads = per_sample_grad(xb, yb) if coupled else _summed_loss_gradients(forward, summed, xb, yb)
            g_abs, x_pow = _half_plane_power(grads).sqrt().sum(dim=0), _half_plane_power(xb).sum(dim=0)
            if count and tuple(xb.shape[1:]) != shape:
                raise ValueError(f"all images must share one shape; got {tuple(xb.shape[1:])} after {shape}")
            shape = tuple(xb.shape[1:])
            sens, power = (g_abs, x_pow) if not count else (sens + g_abs, power + x_pow)
            count += xb.shape[0]
            bar.update(xb.shape[0])
    if count == 0:
        raise ValueError("data yielded no images")
    w = shape[-1]
    return FrequencySensitivity(
        sensitivity=np.fft.fftshift(_full_from_half_plane((sens / count).cpu().numpy(), w), axes=(-2, -1)),
        power=np.fft.fftshift(_full_from_half_plane((power / count).cpu().numpy(), w), axes=(-2, -1)),
        num_images=count,
    )
