"""The "uses" section of a report (issue 16, item 4): which input frequencies a model *uses*.

Three analyses, computed by their owners and only stored here (plumbing):

* the Fourier heat map (Yin et al. 2019; :func:`freqlens.analysis.frequency_use.fourier_heatmap`): mean error
  or loss under ``x + eps r U_{k,l}`` at every frequency, with the unperturbed baseline;
* the input-frequency sensitivity (Godfrey et al. 2023;
  :func:`freqlens.analysis.frequency_use.input_frequency_sensitivity`): ``E_n |∂L/∂x̂_n(ω)|`` per channel,
  with the data power ``E_n |x̂_n(ω)|²`` beside it;
* the first-layer energy profile (Chowers & Weiss 2023;
  :func:`freqlens.analysis.first_layer_energy.first_layer_energy_profile`) in the patch-PCA basis, with the
  fitted closed-form linear prediction.

Maps are in the owners' fftshift layout (signed labels ``fftshift(signed_frequencies(n))``, DC at the centre).
Arrays go into ``Report.arrays`` under ``uses_*`` names and the scalar settings into ``Report.uses`` (JSON), so
``Report.save`` / ``Report.load`` round-trip them exactly and :func:`uses_results` rebuilds the owners' result
objects (for their ``table()`` and ``plot()``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import describe
from ..analysis.first_layer_energy import EnergyProfileFit, FirstLayerEnergyProfile, first_layer_energy_profile
from ..analysis.frequency_use import (
    FourierHeatmap,
    FrequencySensitivity,
    fourier_heatmap,
    input_frequency_sensitivity,
    shifted_frequencies,
)
from .measure import _one_line

__all__ = [
    "NEEDS_LABELS",
    "USES",
    "check_uses_input",
    "measure_uses",
    "split_pair",
    "top_frequencies",
    "uses_argument",
    "uses_results",
]

#: The analyses of the "uses" section, in display order.
USES = ("fourier_heatmap", "frequency_sensitivity", "first_layer_energy")
#: Those that need class labels (their metric or loss compares outputs with labels).
NEEDS_LABELS = frozenset({"fourier_heatmap", "frequency_sensitivity"})


def uses_argument(uses: Any) -> tuple[str, ...]:
    """``uses=`` as the analyses to run: ``False``/``None`` none, ``True`` or ``"all"`` all of :data:`USES`,
    or names (one str or a sequence) from :data:`USES` (plumbing)."""
    if uses is None or uses is False:
        return ()
    if uses is True or uses == "all":
        return USES
    names = [uses] if isinstance(uses, str) else list(uses) if isinstance(uses, Sequence) else None
    if names is None or not names or any(n not in USES for n in names):
        raise ValueError(f"uses must be True, False, 'all' or names from {list(USES)}, got {uses!r}")
    return tuple(n for n in USES if n in names)


def split_pair(data: Any, labels: Any) -> tuple[Any, Any]:
    """``data=(x, y)`` (two tensors, ``y`` one label per image) becomes ``(x, y)``; otherwise unchanged (plumbing)."""
    if (
        labels is None
        and isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(d, torch.Tensor | np.ndarray) for d in data)
        and np.ndim(data[1]) == 1
        and np.ndim(data[0]) >= 3
    ):
        return data[0], data[1]
    return data, labels


def _first_item(data: Any) -> Any:
    if isinstance(data, torch.utils.data.DataLoader):
        return next(iter(data), None)
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        return data[0] if len(data) else None
    return None


def check_uses_input(which: tuple[str, ...], data: Any, labels: Any) -> Any:
    """Refuse, before any long work, a "uses" request without the input it needs; returns the labelled data
    the analyses stream: ``(x, y)`` tensors, ``x`` alone (first-layer profile only), a Dataset or a DataLoader
    (plumbing)."""
    if not which:
        return None
    need = sorted(NEEDS_LABELS.intersection(which))
    if data is None:
        raise ValueError(f"uses={list(which)} needs data (images the model is run on); got data=None")
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, torch.Tensor):
        if labels is None:
            if need:
                raise ValueError(
                    f"uses={need} needs labels: pass labels=(N,) class indices, data=(x, y), or a Dataset / "
                    "DataLoader of (x, y); got images without labels"
                )
            return data
        if isinstance(labels, np.ndarray):
            labels = torch.from_numpy(labels)
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != data.shape[0]:
            raise ValueError(
                f"labels must be a 1-D tensor with one class index per image ({data.shape[0]}), got {describe(labels)}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integer class indices, got {describe(labels)}")
        return (data, labels)
    if labels is not None:
        raise ValueError(f"labels= goes with data as a tensor; data is {describe(data)} (give (x, y) items instead)")
    if isinstance(data, Iterator) or not isinstance(data, torch.utils.data.Dataset | torch.utils.data.DataLoader):
        raise ValueError(
            f"uses={list(which)} needs re-iterable data (a tensor, Dataset or DataLoader), got {describe(data)}"
        )
    item = _first_item(data)
    has_label = isinstance(item, tuple | list) and len(item) >= 2
    if need and not has_label:
        raise ValueError(f"uses={need} needs labels: the data's items must be (x, y); got {describe(item)}")
    return data


def top_frequencies(values: np.ndarray, count: int = 5) -> list[list[int]]:
    """Signed ``(k, l)`` of the ``count`` largest entries of an ``(H, W)`` fftshift-layout map, one frequency per
    conjugate pair ``±ω`` (the maps of real images and models are symmetric under ``ω -> -ω``) (plumbing)."""
    h, w = values.shape
    order = np.argsort(-values.reshape(-1), kind="stable")
    rows, cols = shifted_frequencies(h), shifted_frequencies(w)
    out: list[list[int]] = []
    seen: set[tuple[int, int]] = set()
    for i in order:
        k, l = int(rows[i // w]), int(cols[i % w])
        if (k % h, l % w) in seen:
            continue
        seen.update({(k % h, l % w), (-k % h, -l % w)})
        out.append([k, l])
        if len(out) == count:
            break
    return out


def measure_uses(
    model: nn.Module,
    data: Any,
    which: tuple[str, ...],
    *,
    batch_size: int,
    max_images: int | None,
    eps: float,
    metric: str,
    seed: int,
    strict: bool,
    progress: bool,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the chosen analyses through their owners' public functions (plumbing; equations in the module
    docstring): ``(summary by analysis, uses_* arrays)``. An analysis that fails on this model becomes
    ``{"skipped": reason}`` (``strict=True`` raises instead)."""
    summary: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name in which:
        try:
            if name == "fourier_heatmap":
                hm = fourier_heatmap(
                    model, data, eps, metric,  # type: ignore[arg-type]
                    batch_size=batch_size, max_images=max_images, seed=seed, progress=progress,
                )  # fmt: skip
                arrays["uses_heatmap_values"] = hm.values
                summary[name] = {
                    "baseline": hm.baseline,
                    "eps": hm.eps,
                    "metric": hm.metric,
                    "signs": hm.signs,
                    "num_images": hm.num_images,
                    "seed": hm.seed,
                    "max_effect": float(hm.effect.max()),
                    "top_frequencies": top_frequencies(hm.effect),
                }
            elif name == "frequency_sensitivity":
                fs = input_frequency_sensitivity(
                    model, data, batch_size=batch_size, max_images=max_images, progress=progress
                )
                arrays["uses_sensitivity"] = fs.sensitivity
                arrays["uses_power"] = fs.power
                summary[name] = {
                    "num_images": fs.num_images,
                    "top_frequencies": top_frequencies(fs.sensitivity.mean(axis=0)),
                }
            else:
                fl = first_layer_energy_profile(
                    model, data, batch_size=batch_size, max_images=max_images, progress=progress
                )
                arrays["uses_fl_eigenvalues"] = fl.eigenvalues
                arrays["uses_fl_components"] = fl.components
                arrays["uses_fl_energy"] = fl.energy
                fit = None
                if fl.fit is not None:
                    f = fl.fit
                    arrays["uses_fl_fit"] = np.array([f.init_energy, f.target_energy, f.time, f.relative_rms])
                    fit = {"init_energy": f.init_energy, "target_energy": f.target_energy, "time": f.time,
                           "relative_rms": f.relative_rms}  # fmt: skip
                summary[name] = {"layer": fl.layer, "num_patches": fl.num_patches, "fit": fit}
        except Exception as exc:
            if strict:
                raise
            summary[name] = {"skipped": _one_line(exc)}
    return summary, arrays


def uses_results(uses: dict[str, Any] | None, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The owners' result objects (``FourierHeatmap``, ``FrequencySensitivity``, ``FirstLayerEnergyProfile``)
    rebuilt from a report's ``uses`` summary and ``uses_*`` arrays, for those that were measured (plumbing)."""
    out: dict[str, Any] = {}
    if not uses:
        return out
    hm = uses.get("fourier_heatmap", {})
    if "uses_heatmap_values" in arrays and "skipped" not in hm:
        out["fourier_heatmap"] = FourierHeatmap(
            values=arrays["uses_heatmap_values"],
            baseline=float(hm["baseline"]),
            eps=float(hm["eps"]),
            metric=str(hm["metric"]),
            signs=str(hm["signs"]),
            num_images=int(hm["num_images"]),
            seed=int(hm["seed"]),
        )
    fs = uses.get("frequency_sensitivity", {})
    if "uses_sensitivity" in arrays and "skipped" not in fs:
        out["frequency_sensitivity"] = FrequencySensitivity(
            sensitivity=arrays["uses_sensitivity"], power=arrays["uses_power"], num_images=int(fs["num_images"])
        )
    fl = uses.get("first_layer_energy", {})
    if "uses_fl_energy" in arrays and "skipped" not in fl:
        fit = arrays.get("uses_fl_fit")
        out["first_layer_energy"] = FirstLayerEnergyProfile(
            layer=str(fl["layer"]),
            eigenvalues=arrays["uses_fl_eigenvalues"],
            components=arrays["uses_fl_components"],
            energy=arrays["uses_fl_energy"],
            fit=None if fit is None else EnergyProfileFit(*(float(v) for v in fit)),
            num_patches=int(fl["num_patches"]),
        )
    return out
