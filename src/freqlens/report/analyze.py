"""``analyze(model, data)``: one report of any CNN's frequencies (issue 13, item 1).

Stages (each with a progress bar): find every conv (module hooks + a torch function mode, so functional
``F.conv*`` calls are rows too), per-layer weight spectra with the operator each row describes and the true
operator norm where the per-frequency values are not exact, activation spectra streamed over the data,
energy by radial frequency and ``p_low`` per layer, CBN rank across depth (weights and activations) and, where
the model upsamples, the decoder report. All measurement calls go through :mod:`freqlens.report.measure`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import check_choice, check_model_usable, check_positive_int, describe
from .._version import __version__
from ..hooks import LayerForwardError, restore_modes
from . import measure
from .core import Report
from .data import BatchStream
from .uses import check_uses_input, measure_uses, split_pair, uses_argument

__all__ = ["analyze"]


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"input_shape must be a tuple of ints such as (3, 32, 32), got {input_shape!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, L), (C, H, W) or (C, D, H, W) with positive sizes, got {shape}")
    return shape


def analyze(
    model: nn.Module,
    data: Any = None,
    input_shape: Sequence[int] | None = None,
    *,
    layers: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    max_images: int | None = 512,
    strict: bool = False,
    progress: bool = True,
    exact_norms: bool = True,
    weight_threshold: float = 0.5,
    energy_eps: float = 0.01,
    low_fraction: float = 1 / 8,
    labels: Any = None,
    uses: bool | str | Sequence[str] = False,
    uses_max_images: int | None = 128,
    heatmap_eps: float = 4.0,
    heatmap_metric: str = "error",
    seed: int = 0,
) -> Report:
    """Analyse the conv layers of ``model`` (plumbing over conv_bottleneck §1.3, §5a, §5b and
    decoder_spectra §2, §4 items 1, 7, 11; see :mod:`freqlens.report.measure` for the exact operators).

    Args:
        model: any ``nn.Module``; left exactly as found (weights, buffers, every training flag).
        data: images as a tensor/array ``(N, C, ...)``, a ``Dataset``, a ``DataLoader`` or batches; ``None``
            measures weights only (then ``input_shape`` is required).
        input_shape: ``(C, H, W)`` (or ``(C, L)`` / ``(C, D, H, W)``) without the batch axis; default: the data's.
        layers: module names to keep (default: every conv found); unknown names raise ``ValueError``.
        device: where to measure (default: the model's); another device measures a copy of the model.
        batch_size, max_images: data streaming (at most ``max_images`` images; ``None`` for all).
        strict: raise the first per-layer error instead of marking the row ``skipped: <reason>``.
        exact_norms: compute the true operator norm of every layer whose per-frequency values are not exact.
        weight_threshold, energy_eps: CBN criteria (``s > τ`` for weights, ``1 − ε`` energy for activations).
        low_fraction: ``Ω_low`` fraction for ``p_low``.
        labels: class indices ``(N,)`` of ``data`` when it is a tensor (``data=(x, y)`` works too); needed by
            the heat map and the sensitivity of the "uses" section.
        uses: opt in to the "uses" section (issue 16; :mod:`freqlens.report.uses`): ``True`` for the Fourier
            heat map, the input-frequency sensitivity with the data power spectrum and the first-layer energy
            profile, or a list of names from ``freqlens.report.uses.USES``. Needs data (and labels where said).
        uses_max_images: images streamed for the "uses" analyses (the heat map costs one forward pass per
            image and frequency pair); ``None`` for ``max_images``.
        heatmap_eps, heatmap_metric, seed: the heat map's perturbation norm, ``"error"`` or ``"loss"``, and
            the seed of its random signs.
    """
    check_model_usable("model", model)
    check_positive_int("batch_size", batch_size)
    if max_images is not None:
        check_positive_int("max_images", max_images)
    if data is None and input_shape is None:
        raise ValueError("give data (images to measure) or input_shape (e.g. (3, 32, 32)) to analyze; got neither")
    if layers is not None and (isinstance(layers, str) or not all(isinstance(n, str) for n in layers)):
        raise TypeError(f"layers must be a list of module names, got {layers!r}")
    shape = _check_input_shape(input_shape) if input_shape is not None else None
    which = uses_argument(uses)
    if labels is not None and not which:
        raise ValueError("labels= is only used by the 'uses' section; pass uses=True as well (or drop labels)")
    data, labels = split_pair(data, labels)  # data=(x, y): the images are measured, y serves "uses" only
    uses_data = check_uses_input(which, data, labels)
    if uses_max_images is not None:
        check_positive_int("uses_max_images", uses_max_images)
    if "fourier_heatmap" in which:
        check_choice("heatmap_metric", heatmap_metric, ("error", "loss"))
        if isinstance(heatmap_eps, bool) or not isinstance(heatmap_eps, int | float) or not heatmap_eps > 0:
            raise ValueError(f"heatmap_eps must be a number > 0 (the perturbation's L2 norm), got {heatmap_eps!r}")
    t_start = time.perf_counter()
    notes: list[str] = []
    model_device, model_dtype = _model_device_dtype(model)
    try:
        work_device = torch.device(device) if device is not None else model_device
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or a torch.device, got {device!r}") from None
    if work_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device is {device!r} but torch.cuda.is_available() is False")
    work = model
    if work_device != model_device or model_dtype in (torch.float16, torch.bfloat16):
        # measure a copy: .to() would move or cast the user's own model in place
        work = copy.deepcopy(model).to(work_device)
        if model_dtype in (torch.float16, torch.bfloat16):
            work = work.float()
            notes.append(f"model parameters are {model_dtype}: measured a float32 copy")
        if work_device != model_device:
            notes.append(f"model lives on {model_device}: measured a copy on {work_device}")
    _, work_dtype = _model_device_dtype(work)

    stream: BatchStream | None = None
    if data is not None:
        stream = BatchStream(
            data, batch_size=batch_size, max_images=max_images, device=work_device, dtype=work_dtype, progress=progress
        )
        data_shape = tuple(int(s) for s in stream.example.shape[1:])
        if shape is not None and shape != data_shape:
            raise ValueError(f"input_shape {shape} does not match the data's sample shape {data_shape}")
        shape = data_shape
        example = stream.example
    else:
        assert shape is not None
        example = torch.zeros((1, *shape), dtype=work_dtype, device=work_device)

    timings: dict[str, float] = {}
    with restore_modes(model):
        t0 = time.perf_counter()
        try:
            found = measure.discover_convs(work, example)
        except Exception as exc:
            raise LayerForwardError(
                f"model's forward pass failed on an input of shape {tuple(example.shape)} "
                f"({describe(example)}): {exc}"
            ) from exc
        calls = found.convs
        if layers is not None:
            known = list(dict.fromkeys(c.owner for c in calls))
            unknown = [n for n in layers if n not in known and n not in {c.name for c in calls}]
            if unknown:
                raise ValueError(f"layers {unknown} are not conv layers of the model; convs found: {known[:30]}")
            calls = [c for c in calls if c.owner in layers or c.name in layers]
        timings["discover_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        measured = measure.measure_weights(
            calls, exact_norms=exact_norms, strict=strict, kept_threshold=weight_threshold, progress=progress
        )
        timings["weights_s"] = time.perf_counter() - t0

        rows = [m.row for m in measured]
        arrays: dict[str, np.ndarray] = {}
        for i, m in enumerate(measured):
            if m.singular_values is not None:
                arrays[f"w{i}_sv"] = m.singular_values
            if m.dense_singular_values is not None:
                arrays[f"w{i}_true_sv"] = m.dense_singular_values
        for row in rows:
            row.update(act_status=None, act_grid=None, act_images=None, act_kept=None, p_low=None,
                       parseval_rel_error=None)  # fmt: skip

        # activations: modules with a weight rule (hooks); one entry per module, so a module called at several
        # sizes is measured only at its first size
        t0 = time.perf_counter()
        act_index: dict[str, int] = {}
        for i, call in enumerate(calls):
            if call.hookable and call.owner not in act_index:
                act_index[call.owner] = i
            elif stream is None:
                rows[i]["act_status"] = "skipped: no data given"
            elif call.hookable:
                rows[i]["act_status"] = "skipped: repeated call of the module"
            else:
                why = "functional call (not hookable)" if call.functional else f"{call.op} (no 2-D spectrum)"
                rows[i]["act_status"] = f"skipped: {why}"
        images = 0
        if stream is None:
            for i in act_index.values():
                rows[i]["act_status"] = "skipped: no data given"
        elif act_index:
            fields, act_arrays, error = measure.activation_rows(
                work,
                stream.stage("activation spectra"),
                list(act_index),
                batch_size=batch_size,
                low_fraction=low_fraction,
                eps=energy_eps,
                strict=strict,
            )
            for name, i in act_index.items():
                if name in fields:
                    rows[i].update(fields[name], act_status="measured")
                    images = max(images, int(fields[name]["act_images"]))
                    for key, value in act_arrays[name].items():
                        arrays[f"a{i}_{key.removeprefix('act_')}"] = value
                else:
                    rows[i]["act_status"] = f"skipped: {error}"
        timings["activations_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        weight_sv = [arrays[f"w{i}_sv"] for i in range(len(rows)) if f"w{i}_sv" in arrays]
        act_sv = [arrays[f"a{i}_sv"] for i in range(len(rows)) if f"a{i}_sv" in arrays]
        cbn = measure.cbn_ranks(weight_sv, act_sv, threshold=weight_threshold, eps=energy_eps, strict=strict)
        bounds = sum(1 for r in rows if r["status"] == "upper bound")
        if bounds and "skipped" not in cbn.get("weights", {}):
            cbn["weights"]["note"] = (
                f"{bounds} layer(s) enter with circulant-embedding values (upper bounds on the true operator's)"
            )
        decoder = None
        if found.upsamples:
            if stream is None:
                decoder = {"skipped": "no data given"}
            elif len(shape) != 3:  # decoder_report walks (B, C, H, W) decoders (decoder_spectra §2, 2-D maps)
                decoder = {"skipped": f"the decoder report measures (C, H, W) inputs; this model's are {tuple(shape)}"}
            else:
                decoder, dec_arrays = measure.decoder_summary(
                    work, stream.stage("decoder report"), batch_size=batch_size, strict=strict
                )
                arrays.update(dec_arrays)
        timings["cbn_decoder_s"] = time.perf_counter() - t0

        uses_summary: dict[str, Any] | None = None
        if which:
            t0 = time.perf_counter()
            uses_summary, uses_arrays = measure_uses(
                work,
                uses_data,
                which,
                batch_size=batch_size,
                max_images=uses_max_images if uses_max_images is not None else max_images,
                eps=heatmap_eps,
                metric=heatmap_metric,
                seed=seed,
                strict=strict,
                progress=progress,
            )
            arrays.update(uses_arrays)
            timings["uses_s"] = time.perf_counter() - t0
    if stream is not None:
        notes += stream.notes
    if not calls:
        notes.append("no convolution was called in the forward pass")
    timings["total_s"] = time.perf_counter() - t_start
    meta = {
        "model": type(model).__name__,
        "input_shape": list(shape),
        "images": images,
        "device": str(work_device),
        "dtype": str(work_dtype),
        "freqlens": __version__,
        "torch": torch.__version__,
        "upsamples": found.upsamples,
        "settings": {
            "batch_size": batch_size,
            "max_images": max_images,
            "weight_threshold": weight_threshold,
            "energy_eps": energy_eps,
            "low_fraction": low_fraction,
            "exact_norms": exact_norms,
            "dense_max_inputs": measure.DENSE_MAX_INPUTS,
            "dense_max_entries": measure.DENSE_MAX_ENTRIES,
            "uses": list(which),
            "uses_max_images": uses_max_images,
        },
        "frequency_convention": "signed integer labels (k, l) in (-n/2, n/2], FFT order (freqlens.fourier)",
        "notes": notes,
        "timings": timings,
    }
    return Report(meta=meta, rows=rows, arrays=arrays, cbn=cbn, decoder=decoder, uses=uses_summary)
