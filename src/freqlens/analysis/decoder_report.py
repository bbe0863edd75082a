"""``decoder_report(model, data)``: layer-by-layer spectra of any decoder, next to the exact one-layer rules
(``spec/decoder_spectra.md`` §2, §4 items 1, 7, 11).

For every conv, transposed conv and upsampling layer, and every user layer registered with
:func:`freqlens.spectral.register_rule` (hooked with :mod:`freqlens.hooks`, so any ``nn.Module`` works, not
only ``nn.Sequential``; rules and gaps come from the registry of :mod:`freqlens.spectral.rules`) the report
records:

* the measured spectrum map of the layer output: ``E_{b,c}|H|`` and ``E_{b,c}|H|²`` (unshifted, ``(H, W)``);
* the **one-layer prediction** from the layer's measured input (the previous layer's measured spectrum after
  whatever nonlinearity sits between them), by the exact rule of :mod:`freqlens.spectral.propagation`, and
  its agreement with the measurement: ``sim = E_c cos(vec|H*|, vec|H|)`` per image (§4 item 1; mean and
  std over images) and the max relative error;
* energy by radial frequency and ``p_low`` (with and without the DC bin; §4 item 7);
* for layers that upsample by an integer factor: the positions where Thm 4.4 puts the DC replicas
  (multiples of the input size), the measured magnitude there relative to DC, and whether each is a local
  peak of the measured map (3×3 neighbourhood, circular). Zero insertion and transposed convs **repeat** the
  DC bin; nearest upsampling **cancels** the replicas exactly (§2.6); bilinear is measured only.

Layers without an exact rule (reflect/replicate padding, bilinear upsampling, transposed convs with
``K − 2P ≠ s``, non-integer upsampling, subclasses whose ``forward`` does not reproduce their rule on a
float64 probe) get a **gap**: the measured spectrum is reported, the prediction
fields are ``None``/``nan`` and ``gap`` says why. Nonlinear layers (ReLU, batch norm) are not hooked: the
next hooked layer's prediction starts from its measured input, so they never break the one-layer check.

Bad input fails early with a clear message: a model without hookable layers, a named layer of another type,
complex/integer/non-finite data, a layer that does not receive or return a real ``(B, C, H, W)`` tensor,
and non-finite activations (named by layer).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import (
    check_finite,
    check_model_usable,
    check_ndim,
    check_positive_int,
    check_real_floating,
    describe,
)
from ..hooks import LayerForwardError, capture_layers, preserve_state, select_layers, trace_layers
from ..spectral.maps import magnitude_cosine_similarity, p_low, radial_profile
from ..spectral.propagation import LayerRule, NoExactRuleError
from ..spectral.rules import layer_verdict, registered_rules, rule_for
from ..spectral.weights import layer_names_argument
from ..theory.decoder_som import dc_replica_positions

__all__ = ["DecoderLayerRecord", "DecoderReport", "decoder_report", "reported_types"]


def reported_types() -> tuple[type[nn.Module], ...]:
    """Layer types the report hooks by default: those whose registered rule is ``reported`` (convs,
    transposed convs, upsampling layers and registered user layers; plumbing)."""
    return tuple(t for t, rule in registered_rules().items() if rule.reported)


@dataclass
class DecoderLayerRecord:
    """Everything the report measured for one call of one layer (maps are unshifted ``(H, W)`` float64)."""

    name: str
    module_type: str
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    rule: LayerRule
    gap: str | None
    num_images: int
    mean_magnitude: np.ndarray
    mean_power: np.ndarray
    predicted_mean_magnitude: np.ndarray | None
    similarity_mean: float
    similarity_std: float
    max_relative_error: float
    p_low: float
    p_low_no_dc: float
    radial_centres: np.ndarray
    radial_energy: np.ndarray
    upsampling_factor: tuple[int, int] | None = None
    replica_rule: str | None = None
    replica_positions: np.ndarray | None = None
    replica_magnitude_ratio: np.ndarray | None = None
    replica_is_peak: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready headline numbers of this layer."""
        out: dict[str, Any] = {
            "layer": self.name,
            "type": self.module_type,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "rule": self.rule.statement,
            "exact_rule": self.rule.exact,
            "gap": self.gap,
            "images": self.num_images,
            "similarity_mean": _finite_or_none(self.similarity_mean),
            "similarity_std": _finite_or_none(self.similarity_std),
            "max_relative_error": _finite_or_none(self.max_relative_error),
            "p_low": _finite_or_none(self.p_low),
            "p_low_no_dc": _finite_or_none(self.p_low_no_dc),
        }
        if self.upsampling_factor is not None and self.replica_positions is not None:
            assert self.replica_magnitude_ratio is not None and self.replica_is_peak is not None
            off_dc = np.any(self.replica_positions != 0, axis=1)
            out["upsampling"] = {
                "factor": list(self.upsampling_factor),
                "replica_rule": self.replica_rule,
                "predicted_dc_replica_positions": self.replica_positions[off_dc].tolist(),
                "measured_magnitude_over_dc": self.replica_magnitude_ratio[off_dc].round(6).tolist(),
                "is_local_peak": self.replica_is_peak[off_dc].tolist(),
                "fraction_local_peaks": float(self.replica_is_peak[off_dc].mean()) if off_dc.any() else None,
            }
        return out


def _finite_or_none(value: float) -> float | None:
    """``value`` as a float, ``None`` when NaN or infinite (JSON has no NaN) (plumbing)."""
    return float(value) if np.isfinite(value) else None


@dataclass
class DecoderReport:
    """Per-layer spectra of a model (``layers`` in call order; see :func:`decoder_report`)."""

    layers: list[DecoderLayerRecord] = field(default_factory=list)
    num_images: int = 0

    def summary(self) -> list[dict[str, Any]]:
        """One summary record per reported layer, in call order (plumbing)."""
        return [layer.summary() for layer in self.layers]

    def gaps(self) -> list[tuple[str, str]]:
        """``(layer name, reason)`` for every layer without an exact rule (plumbing)."""
        return [(layer.name, layer.gap) for layer in self.layers if layer.gap is not None]

    def to_tree(self) -> dict[str, Any]:
        """Nested record for ``data.npz`` (plumbing): ``{"layer_names": (L,), "L<i>": {"magnitude", "power",
        "radial_energy", "similarity" (mean, std), ["predicted_magnitude"], ["replica_positions"]}}``."""
        tree: dict[str, Any] = {"layer_names": np.array([layer.name for layer in self.layers])}
        for i, layer in enumerate(self.layers):
            record = {
                "magnitude": layer.mean_magnitude,
                "power": layer.mean_power,
                "radial_energy": layer.radial_energy,
                "similarity": np.array([layer.similarity_mean, layer.similarity_std]),
            }
            if layer.predicted_mean_magnitude is not None:
                record["predicted_magnitude"] = layer.predicted_mean_magnitude
            if layer.replica_positions is not None:
                record["replica_positions"] = layer.replica_positions
            tree[f"L{i}"] = record
        return tree

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat ``{key: array}`` of :meth:`to_tree` (layer ``i`` under ``{prefix}L{i}_...``) plus the names
        (plumbing)."""
        out: dict[str, np.ndarray] = {}
        for name, value in self.to_tree().items():
            if isinstance(value, dict):
                out.update({f"{prefix}{name}_{key}": arr for key, arr in value.items()})
            else:
                out[f"{prefix}{name}"] = value
        return out


# ------------------------------------------------------------------------------------ accumulation
@dataclass
class _Accumulator:
    """Running sums of one layer call across batches (plumbing)."""

    name: str
    module: nn.Module
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    rule: LayerRule
    gap: str | None
    upsampling_factor: tuple[int, int] | None
    replica_rule: str | None
    mag_sum: np.ndarray
    pow_sum: np.ndarray
    pred_sum: np.ndarray | None
    sims: list[np.ndarray] = field(default_factory=list)
    plows: list[np.ndarray] = field(default_factory=list)
    plows_no_dc: list[np.ndarray] = field(default_factory=list)
    max_rel_err: float = 0.0
    count: int = 0


def _iterate_batches(data: Any, batch_size: int, max_images: int | None) -> Iterator[torch.Tensor]:
    """The checked ``(B, C, H, W)`` batches of ``data`` (a tensor or an iterable of batches or ``(x, y)``
    pairs), stopping after ``max_images`` (plumbing)."""
    seen = 0
    source: Iterable[Any]
    if isinstance(data, torch.Tensor):
        source = (data[i : i + batch_size] for i in range(0, data.shape[0], batch_size))
    elif isinstance(data, np.ndarray):
        raise TypeError("data must be a torch.Tensor (N, C, H, W) or an iterable of such batches, got a numpy array")
    else:
        try:
            source = iter(data)
        except TypeError:
            raise TypeError(f"data must be a torch.Tensor or an iterable of batches, got {describe(data)}") from None
    for item in source:
        batch = item[0] if isinstance(item, tuple | list) else item
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"each batch must be a torch.Tensor (B, C, H, W), got {describe(batch)}")
        check_ndim("data batch", batch, (4,), "(B, C, H, W)")
        check_real_floating("data batch", batch)
        check_finite("data batch", batch)
        if max_images is not None:
            batch = batch[: max(0, max_images - seen)]
        if batch.shape[0] == 0:
            break
        seen += batch.shape[0]
        yield batch
        if max_images is not None and seen >= max_images:
            break


def _local_peaks(mag: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Is each position a strict maximum of its circular 3×3 neighbourhood in ``mag``?"""
    h, w = mag.shape
    out = np.zeros(len(positions), dtype=bool)
    for i, (u, v) in enumerate(positions):
        centre = mag[u, v]
        neigh = [mag[(u + a) % h, (v + b) % w] for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]
        out[i] = bool(centre > max(neigh))
    return out


def decoder_report(
    model: nn.Module,
    data: torch.Tensor | Iterable[Any],
    layers: Sequence[str] | None = None,
    batch_size: int = 64,
    max_images: int | None = None,
    low_fraction: float = 1 / 8,
) -> DecoderReport:
    """Measure the spectrum maps of every conv, transposed conv and upsampling layer of ``model`` on
    ``data`` and compare each with the exact one-layer prediction from the layer's measured input.

    Args:
        model: any ``nn.Module``, run in its own modes (call ``model.eval()`` first for inference statistics);
            buffers (BatchNorm running statistics) and training flags are restored afterwards. NaN/Inf or
            meta-device weights are refused first; a failing forward raises
            :class:`freqlens.hooks.LayerForwardError` naming the layer.
        data: images ``(N, C, H, W)`` (real, finite) or an iterable of batches (tensors or ``(x, y)`` pairs).
        layers: qualified names to hook, one str being one name (default: every layer of
            :func:`reported_types`); a named layer of another type raises ``TypeError``.
        batch_size: batch size when ``data`` is a tensor. ``max_images``: stop after this many images.
        low_fraction: ``Ω_low`` fraction for ``p_low`` (1/8 in the paper).
    Returns:
        a :class:`DecoderReport` (one entry per layer call, in call order).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batch_size = check_positive_int("batch_size", batch_size)
    if max_images is not None:
        max_images = check_positive_int("max_images", max_images)
    check_model_usable("model", model)
    chosen = select_layers(model, names=layer_names_argument(layers), types=reported_types())
    if not chosen:
        raise ValueError(
            "model has no layer decoder_report can hook (nn.Conv2d, nn.ConvTranspose2d, nn.Upsample, "
            "ZeroInsertionUpsample); functional calls such as F.interpolate inside forward cannot be hooked"
        )
    measurer = _LayerMeasurer(low_fraction)
    total = 0
    with torch.no_grad(), preserve_state(model), capture_layers(chosen, measurer.callback):
        for batch in _iterate_batches(data, batch_size, max_images):
            measurer.calls.clear()
            try:
                trace_layers(model, batch)  # a failing layer is named
            except LayerForwardError:
                if measurer.failures:
                    raise measurer.failures[0] from None
                raise
            total += batch.shape[0]
    if total == 0:
        raise ValueError("data holds no images")
    report = DecoderReport(num_images=total)
    for key in measurer.order:
        report.layers.append(_finish(measurer.accs[key], low_fraction))
    return report


@dataclass
class _LayerMeasurer:
    """The hook state of one :func:`decoder_report` run: an accumulator per (layer, call number), in call order
    (plumbing)."""

    low_fraction: float
    accs: dict[tuple[str, int], _Accumulator] = field(default_factory=dict)
    order: list[tuple[str, int]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    failures: list[Exception] = field(default_factory=list)

    def callback(self, name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """The layer hook: measure one call; a failure is kept to be reported as itself, not as a failing forward
        (plumbing)."""
        try:
            self.measure(name, module, inputs, output)
        except Exception as exc:
            self.failures.append(exc)
            raise

    def accumulator(self, name: str, module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> _Accumulator:
        """The accumulator of this call of layer ``name`` (the k-th call in a batch is its own entry) (plumbing)."""
        k = self.calls.get(name, 0)
        self.calls[name] = k + 1
        key = (name, k)
        if key not in self.accs:
            label = name if k == 0 else f"{name} (call {k + 1})"
            self.accs[key] = _new_accumulator(label, module, tuple(x.shape[1:]), tuple(output.shape[1:]))
            self.order.append(key)
        return self.accs[key]

    def measure(self, name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Add one layer call: mean ``|H|`` and ``|H|²`` over images and channels, ``p_low`` (§4 item 7) and, where
        an exact rule exists, the one-layer prediction from the measured input, its cosine similarity and its
        largest relative error. Sums are moved to the CPU before they become numpy arrays."""
        x = inputs[0] if inputs else None
        for what, t in (("input", x), ("output", output)):
            if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.is_complex() or not t.is_floating_point():
                raise TypeError(f"layer {name!r}: {what} is {describe(t)}, not a real (B, C, H, W) tensor")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"layer {name!r}: non-finite values in its {what}")
        assert x is not None
        acc = self.accumulator(name, module, x, output)
        g = torch.fft.fft2(x.detach().to(torch.float64))
        h = torch.fft.fft2(output.detach().to(torch.float64))
        mag = h.abs()
        acc.mag_sum += mag.mean(dim=1).sum(dim=0).cpu().numpy()
        acc.pow_sum += (mag**2).mean(dim=1).sum(dim=0).cpu().numpy()
        acc.plows.append(p_low(h, self.low_fraction))
        acc.plows_no_dc.append(p_low(h, self.low_fraction, exclude_dc=True))
        acc.count += h.shape[0]
        if acc.gap is None:
            pred = rule_for(module)[1].propagate(module, g, acc.name)
            assert acc.pred_sum is not None
            acc.pred_sum += pred.abs().mean(dim=1).sum(dim=0).cpu().numpy()
            acc.sims.append(magnitude_cosine_similarity(h, pred))
            scale = float(h.abs().max())
            err = float((pred - h).abs().max())
            acc.max_rel_err = max(acc.max_rel_err, err / scale if scale > 0 else err)


def _new_accumulator(
    label: str, module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> _Accumulator:
    """A fresh accumulator for layer ``label``: its rule verdict, gap, upsampling factor and replica rule; the
    rule is probed once on a zero batch (on the layer's device) so geometry errors become a marked gap (plumbing)."""
    spectral_rule = rule_for(module)[1]
    rule = layer_verdict(module, label, tuple(in_shape))
    gap = None if rule.predicts else rule.statement
    in_hw = (int(in_shape[1]), int(in_shape[2]))
    out_hw = (int(out_shape[1]), int(out_shape[2]))
    factor: tuple[int, int] | None = None
    replica = None
    try:  # the rule's tiling factor, or the measured ratio for a layer that grows its input
        factor = spectral_rule.upsampling(module, label, in_hw)
        if factor is None and (out_hw[0] > in_hw[0] or out_hw[1] > in_hw[1]):
            if out_hw[0] % in_hw[0] or out_hw[1] % in_hw[1]:
                raise ValueError(f"layer {label!r}: output {out_hw} is not an integer multiple of the input {in_hw}")
            factor = (out_hw[0] // in_hw[0], out_hw[1] // in_hw[1])
        replica = spectral_rule.replica_rule(module) if factor is not None else None
    except ValueError as exc:  # e.g. a non-integer scale factor: no tiling, no prediction
        gap = str(exc)
    if gap is None:
        try:  # probe the rule once on a tiny batch so geometry errors become a marked gap up front
            device = next(iter(module.parameters()), torch.empty(0)).device
            probe = torch.zeros(1, *in_shape, dtype=torch.complex128, device=device)
            spectral_rule.propagate(module, probe, label)
        except (NoExactRuleError, ValueError) as exc:
            gap = str(exc)
    return _Accumulator(
        name=label,
        module=module,
        input_shape=(int(in_shape[0]), in_hw[0], in_hw[1]),
        output_shape=(int(out_shape[0]), out_hw[0], out_hw[1]),
        rule=rule,
        gap=gap,
        upsampling_factor=factor,
        replica_rule=replica,
        mag_sum=np.zeros(out_hw),
        pow_sum=np.zeros(out_hw),
        pred_sum=None if gap is not None else np.zeros(out_hw),
    )


def _mean_of_defined(parts: list[np.ndarray]) -> float:
    """Mean over images where the value is defined (``p_low`` is ``nan`` for an all-zero map)."""
    values = np.concatenate(parts) if parts else np.array([])
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _finish(acc: _Accumulator, low_fraction: float) -> DecoderLayerRecord:
    """The layer record of a full accumulator: means over images, radial energy profile of the mean power and,
    for an upsampling layer, the magnitude over DC at Thm 4.4's DC replicas and whether each is a local peak."""
    n = acc.count
    mag = acc.mag_sum / n
    power = acc.pow_sum / n
    sims = np.concatenate(acc.sims) if acc.sims else np.array([])
    centres, energy = radial_profile(power)
    positions = ratio = peaks = None
    if acc.upsampling_factor is not None:
        in_hw = acc.input_shape[1:]
        positions = dc_replica_positions(in_hw, acc.output_shape[1:])
        dc = mag[0, 0]
        ratio = mag[positions[:, 0], positions[:, 1]] / dc if dc > 0 else np.full(len(positions), np.nan)
        peaks = _local_peaks(mag, positions)
    return DecoderLayerRecord(
        name=acc.name,
        module_type=type(acc.module).__name__,
        input_shape=acc.input_shape,
        output_shape=acc.output_shape,
        rule=acc.rule,
        gap=acc.gap,
        num_images=n,
        mean_magnitude=mag,
        mean_power=power,
        predicted_mean_magnitude=None if acc.pred_sum is None else acc.pred_sum / n,
        similarity_mean=float(sims.mean()) if sims.size else float("nan"),
        similarity_std=float(sims.std()) if sims.size else float("nan"),
        max_relative_error=acc.max_rel_err if acc.gap is None else float("nan"),
        p_low=_mean_of_defined(acc.plows),
        p_low_no_dc=_mean_of_defined(acc.plows_no_dc),
        radial_centres=centres,
        radial_energy=energy,
        upsampling_factor=acc.upsampling_factor,
        replica_rule=acc.replica_rule,
        replica_positions=positions,
        replica_magnitude_ratio=ratio,
        replica_is_peak=peaks,
    )
