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

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import describe
from ..analysis.first_layer_energy import FirstLayerEnergyProfile, first_layer_energy_profile
from ..analysis.frequency_use import (
    FourierHeatmap,
    FrequencySensitivity,
    SavedResult,
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


#: Each analysis's owner and the prefix of its arrays in ``Report.arrays`` (``uses_heatmap_values``, ...).
_OWNERS: dict[str, tuple[type[SavedResult], str]] = {
    "fourier_heatmap": (FourierHeatmap, "uses_heatmap_"),
    "frequency_sensitivity": (FrequencySensitivity, "uses_sensitivity_"),
    "first_layer_energy": (FirstLayerEnergyProfile, "uses_fl_"),
}


def _display(name: str, result: Any) -> dict[str, Any]:
    """The numbers the report's table shows for one analysis (derived; the result itself is its record)."""
    if name == "fourier_heatmap":
        return {
            "baseline": result.baseline,
            "eps": result.eps,
            "metric": result.metric,
            "num_images": result.num_images,
            "max_effect": float(result.effect.max()),
            "top_frequencies": top_frequencies(result.effect),
        }
    if name == "frequency_sensitivity":
        return {"num_images": result.num_images, "top_frequencies": top_frequencies(result.sensitivity.mean(axis=0))}
    fit = None if result.fit is None else dataclasses.asdict(result.fit)
    return {"layer": result.layer, "num_patches": result.num_patches, "fit": fit}


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
    docstring): ``(summary by analysis, uses_* arrays)``. Each result is stored by its owner's own record
    (``SavedResult.to_record``: labels under ``"record"``, arrays under the analysis's prefix) beside the numbers
    the table shows. An analysis that fails on this model becomes ``{"skipped": reason}`` (``strict=True``
    raises instead)."""
    summary: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name in which:
        try:
            result: SavedResult
            if name == "fourier_heatmap":
                result = fourier_heatmap(
                    model, data, eps, metric,  # type: ignore[arg-type]
                    batch_size=batch_size, max_images=max_images, seed=seed, progress=progress,
                )  # fmt: skip
            elif name == "frequency_sensitivity":
                result = input_frequency_sensitivity(
                    model, data, batch_size=batch_size, max_images=max_images, progress=progress
                )
            else:
                result = first_layer_energy_profile(
                    model, data, batch_size=batch_size, max_images=max_images, progress=progress
                )
        except Exception as exc:
            if strict:
                raise
            summary[name] = {"skipped": _one_line(exc)}
            continue
        meta, own = result.to_record()
        prefix = _OWNERS[name][1]
        arrays.update({prefix + key: value for key, value in own.items()})
        summary[name] = {**_display(name, result), "record": meta}
    return summary, arrays


def uses_results(uses: dict[str, Any] | None, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The owners' result objects (``FourierHeatmap``, ``FrequencySensitivity``, ``FirstLayerEnergyProfile``)
    rebuilt by their own ``from_record`` from a report's ``uses`` summary and ``uses_*`` arrays, for those that
    were measured (plumbing)."""
    out: dict[str, Any] = {}
    for name, entry in (uses or {}).items():
        if "skipped" in entry:
            continue
        if "record" not in entry:
            raise ValueError(f"the report's {name!r} entry has no record (written by an older freqlens): rerun analyze")
        owner, prefix = _OWNERS[name]
        own = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
        out[name] = owner.from_record(entry["record"], own)
    return out
