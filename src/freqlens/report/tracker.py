"""``FrequencyTracker``: record a model's frequencies during any training loop (issue 13, item 4).

Every ``every`` steps (and once at construction, step 0) it records, through :mod:`freqlens.report.measure`:

* per conv layer with a weight rule (2-D, and 1-D on the ``1×L`` grid), the weight singular values at the
  chosen signed frequencies ``(k, l)``, the largest singular value at every frequency and its maximum per
  radial-frequency bin (conv_bottleneck §1.3, §5a);
* on the fixed ``probe`` batch, activation energy by radial frequency, ``p_low`` and the per-layer count of
  ``(ω, j)`` holding ``1 − ε`` of the energy (§5b.4), and the CBN rank across depth (weights and activations);
* the user's loss.

The run directory ``out`` holds ``tracker.json`` (config and one summary per record) and ``tracker.npz`` (the
arrays, stacked over records), rewritten atomically after every record (:mod:`freqlens.io`); the npz is
written first, so a crash never leaves the json pointing at missing records. A tracker created on an
existing run with the same config resumes it (steps continue after the last record). Optional TensorBoard
scalars (``tensorboard=True``, needs the ``tensorboard`` package) and W&B scalars (``wandb=True`` or a run
object, needs ``wandb``; the same scalars under ``freqlens/``, against their own x axis ``freqlens/step``).
A Lightning callback driving it lives in :mod:`freqlens.report.lightning`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import check_model_usable, check_positive_int
from ..io import read_npz, write_json, write_npz
from . import measure
from .core import read_format_json
from .data import BatchStream

__all__ = ["TRACKER_FORMAT", "FrequencyTracker", "load_run", "record_scalars"]

TRACKER_FORMAT = "freqlens-tracker/1"


def record_scalars(record: dict[str, Any], layers: Sequence[str], p_low: Sequence[float]) -> dict[str, float]:
    """The scalars of one record sent to TensorBoard and W&B (their tags): ``loss`` (when known),
    ``freqlens/weight_cbn_rank``, ``freqlens/activation_cbn_rank`` (when defined), ``freqlens/p_low/<layer>``
    (plumbing)."""
    out: dict[str, float] = {}
    if record["loss"] is not None:
        out["loss"] = float(record["loss"])
    for key in ("weight_cbn_rank", "activation_cbn_rank"):
        if record[key] is not None:
            out[f"freqlens/{key}"] = float(record[key])
    for name, p in zip(layers, p_low):
        out[f"freqlens/p_low/{name}"] = float(p)
    return out


def _wandb_run(wandb: Any, out: Path) -> tuple[Any, bool]:
    """``(run, owned)`` for the ``wandb`` argument: a run object as given, ``True`` -> the active ``wandb.run``
    or a new ``wandb.init`` under ``out/wandb`` (owned: finished by :meth:`FrequencyTracker.close`) (plumbing)."""
    if wandb is None or wandb is False:
        return None, False
    if wandb is not True:
        if not callable(getattr(wandb, "log", None)):
            raise TypeError(f"wandb must be True, False or a W&B run (with .log), got {type(wandb).__name__}")
        return wandb, False
    try:
        import wandb as wandb_lib
    except ImportError as exc:
        raise ImportError("wandb=True needs the wandb package: pip install 'freqlens[tracking]'") from exc
    if wandb_lib.run is not None:
        return wandb_lib.run, False
    (out / "wandb").mkdir(parents=True, exist_ok=True)
    return wandb_lib.init(dir=str(out / "wandb"), job_type="freqlens-track"), True


def load_run(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(tracker.json contents, arrays)`` of a tracker run directory, arrays cut to the records the json
    lists (plumbing)."""
    folder = Path(path)
    doc = read_format_json(folder, "tracker.json", TRACKER_FORMAT, "FrequencyTracker")
    arrays = read_npz(folder / "tracker.npz")
    n = len(doc["records"])
    return doc, {k: v[:n] for k, v in arrays.items()}


class FrequencyTracker:
    """Track per-layer frequencies of ``model`` during training (see the module docstring) (plumbing over
    conv_bottleneck §1.3, §5a, §5b).

    Args:
        model: the model being trained; measured in eval mode without gradients and left as found.
        probe: a fixed batch ``(N, C, H, W)`` (tensor) for the activation measurements; ``(N, C, L)`` for a
            model of 1-D signals (its layers' frequencies are ``(0, l)`` on the ``1×L`` grid, so ``k`` of
            ``frequencies`` is taken modulo 1).
        every: record every ``every`` calls of :meth:`step`.
        out: run directory (created; resumed when it holds a run with the same config).
        frequencies: signed ``(k, l)`` at which to keep all singular values (default: DC, the first
            harmonics and the Nyquist corner); taken modulo each layer's grid.
        layers: module names (default: every layer with a weight rule called: ``nn.Conv2d``,
            ``nn.ConvTranspose2d``, ``nn.Conv1d``, ``nn.ConvTranspose1d`` and registered types).
        tensorboard: also write TensorBoard scalars into ``out/tensorboard``.
        wandb: also log the scalars to W&B: ``True`` (the active run, else a new one under ``out/wandb``) or a
            run object (anything with ``.log(dict)``, e.g. ``WandbLogger.experiment``). Keys are
            :func:`record_scalars`' with ``loss`` as ``freqlens/loss``, plus ``freqlens/step``.
    """

    def __init__(
        self,
        model: nn.Module,
        probe: torch.Tensor,
        every: int = 100,
        out: str | Path = "runs/track",
        frequencies: Sequence[tuple[int, int]] | None = None,
        layers: Sequence[str] | None = None,
        *,
        tensorboard: bool = False,
        wandb: Any = False,
        batch_size: int = 256,
        weight_threshold: float = 0.5,
        energy_eps: float = 0.01,
        low_fraction: float = 1 / 8,
    ) -> None:
        check_model_usable("model", model)
        self.every = check_positive_int("every", every)
        if not isinstance(probe, torch.Tensor) or probe.ndim not in (3, 4):
            raise ValueError(f"probe must be a tensor batch (N, C, H, W) or (N, C, L), got {probe!r:.60}")
        self.model = model
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        self.probe = BatchStream(
            probe, batch_size=batch_size, max_images=None, device=device, dtype=dtype, progress=False
        )
        self.batch_size = batch_size
        self.weight_threshold = weight_threshold
        self.energy_eps = energy_eps
        self.low_fraction = low_fraction
        try:
            found = measure.discover_convs(model, self.probe.example)
        except Exception as exc:
            if probe.ndim != 3:
                raise
            raise ValueError(
                f"probe must be a tensor batch (N, C, H, W), or (N, C, L) for a model of 1-D signals; the forward "
                f"pass on {tuple(probe.shape)} failed ({measure._one_line(exc)})"
            ) from exc
        calls = [c for c in found.convs if c.hookable]
        calls = list({c.owner: c for c in reversed(calls)}.values())[::-1]  # first call of each module
        if layers is not None:
            unknown = [n for n in layers if n not in {c.owner for c in calls}]
            if unknown:
                raise ValueError(
                    f"layers {unknown} are not conv modules with a weight rule called by the model; "
                    f"found {calls!r:.200}"
                )
            calls = [c for c in calls if c.owner in layers]
        if not calls:
            raise ValueError(
                "model has no conv layer with a weight rule (nn.Conv2d, nn.ConvTranspose2d, nn.Conv1d, "
                "nn.ConvTranspose1d or registered) called on the probe"
            )
        self.calls = calls
        self.frequencies = [tuple(int(v) for v in f) for f in (frequencies or [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2)])]
        self.out = Path(out)
        self.config = {
            "layers": [c.owner for c in calls],
            "frequencies": [list(f) for f in self.frequencies],
            "every": self.every,
            "probe_shape": list(probe.shape),
            "weight_threshold": weight_threshold,
            "energy_eps": energy_eps,
            "low_fraction": low_fraction,
        }
        self.records: list[dict[str, Any]] = []
        self.operators: list[str] = []  # which operator each layer's recorded values describe
        self.arrays: dict[str, list[np.ndarray]] = {}
        self.global_step = 0
        self._last_loss: float | None = None
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    "tensorboard=True needs the tensorboard package: pip install 'freqlens[tensorboard]'"
                ) from exc
            self._writer = SummaryWriter(str(self.out / "tensorboard"))
        self._wandb, self._wandb_owned = _wandb_run(wandb, self.out)
        if self._wandb is not None and callable(getattr(self._wandb, "define_metric", None)):
            # freqlens' own x axis, so the user's step counter and ours never collide
            self._wandb.define_metric("freqlens/step")
            self._wandb.define_metric("freqlens/*", step_metric="freqlens/step")
        if (self.out / "tracker.json").is_file():
            self._resume()
        else:
            self.record()

    # ------------------------------------------------------------------ persistence
    def _resume(self) -> None:
        doc, arrays = load_run(self.out)
        if doc["config"] != self.config:
            raise ValueError(
                f"out {str(self.out)!r} holds a tracker run with another config ({doc['config']}); "
                "use a new out folder or the same model/probe/every/frequencies/layers"
            )
        self.records = list(doc["records"])
        self.operators = list(doc.get("operators", []))
        self.arrays = {k: list(v) for k, v in arrays.items()}
        self.global_step = int(self.records[-1]["step"]) if self.records else 0

    def rewind(self, step: int) -> None:
        """Drop the records after ``step`` and continue counting from it: for a training resumed from a checkpoint
        taken at ``step`` while the run went further (the Lightning callback calls it) (plumbing)."""
        step = int(step)
        if step < 0 or step > self.global_step:
            raise ValueError(f"step must be in [0, {self.global_step}] (the steps this run counted), got {step}")
        keep = sum(1 for r in self.records if r["step"] <= step)
        if keep < len(self.records):
            self.records = self.records[:keep]
            self.arrays = {k: v[:keep] for k, v in self.arrays.items()}
            self._write()
        self.global_step = step

    def _write(self) -> None:
        stacked = {k: np.stack(v) for k, v in self.arrays.items()}
        write_npz(self.out / "tracker.npz", stacked)
        doc = {"format": TRACKER_FORMAT, "config": self.config, "operators": self.operators, "records": self.records}
        write_json(self.out / "tracker.json", doc)

    # ------------------------------------------------------------------ measurement
    def _append(self, key: str, value: np.ndarray) -> None:
        self.arrays.setdefault(key, []).append(np.asarray(value, dtype=np.float64))

    def record(self, loss: Any = None) -> dict[str, Any]:
        """Measure now and append one record (plumbing)."""
        if loss is not None:
            self._last_loss = float(loss.detach().item() if isinstance(loss, torch.Tensor) else loss)
        measured = measure.measure_weights(
            self.calls, exact_norms=False, progress=False, kept_threshold=self.weight_threshold
        )
        fields, act_arrays, error = measure.activation_rows(
            self.model,
            self.probe,
            [c.owner for c in self.calls],
            batch_size=self.batch_size,
            low_fraction=self.low_fraction,
            eps=self.energy_eps,
        )
        if error is not None:
            raise RuntimeError(f"FrequencyTracker: activation measurement failed: {error}")
        self.operators = [str(m.row["operator"]) for m in measured]
        weight_sv, act_sv, kept_w, kept_a, plow = [], [], [], [], []
        for j, (call, m) in enumerate(zip(self.calls, measured)):
            sv = m.singular_values
            if sv is None:
                raise RuntimeError(f"FrequencyTracker: layer {call.owner!r} cannot be measured: {m.row['reason']}")
            weight_sv.append(sv)
            gh, gw = sv.shape[:2]
            self._append(f"track_w{j}_top", sv[..., 0])
            self._append(f"track_w{j}_at", np.stack([sv[k % gh, l % gw] for k, l in self.frequencies]))
            self._append(f"track_w{j}_radial_top", measure.radial_maximum(sv[..., 0]))
            a = act_arrays[call.owner]
            act_sv.append(a["act_sv"])
            self._append(f"track_a{j}_radial_energy", a["radial_energy"])
            kept_w.append(m.row["weight_kept"])
            kept_a.append(fields[call.owner]["act_kept"])
            p = fields[call.owner]["p_low"]
            plow.append(np.nan if p is None else p)
        cbn = measure.cbn_ranks(weight_sv, act_sv, threshold=self.weight_threshold, eps=self.energy_eps)
        loss_value = self._last_loss
        self._append("track_steps", np.array(self.global_step))
        self._append("track_loss", np.array(np.nan if loss_value is None else loss_value))
        self._append("track_weight_kept", np.array(kept_w))
        self._append("track_act_kept", np.array(kept_a))
        self._append("track_p_low", np.array(plow))
        rec = {
            "step": self.global_step,
            "loss": loss_value,
            "weight_cbn_rank": cbn["weights"].get("rank"),
            "activation_cbn_rank": cbn["activations"].get("rank"),
        }
        self.records.append(rec)
        self._write()
        scalars = record_scalars(rec, [c.owner for c in self.calls], plow)
        if self._writer is not None:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, value, self.global_step)
        if self._wandb is not None:
            logged = {("freqlens/loss" if k == "loss" else k): v for k, v in scalars.items()}
            self._wandb.log({"freqlens/step": self.global_step, **logged})
        return rec

    def step(self, loss: Any = None) -> bool:
        """Count one training step (pass the loss); record when the count is a multiple of ``every``.
        Returns whether a record was made (plumbing)."""
        self.global_step += 1
        if loss is not None:
            self._last_loss = float(loss.detach().item() if isinstance(loss, torch.Tensor) else loss)
        if self.global_step % self.every == 0:
            self.record()
            return True
        return False

    def close(self) -> None:
        """Flush TensorBoard and finish a W&B run this tracker started (the run directory is always up to date)
        (plumbing)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None and self._wandb_owned:
            self._wandb.finish()
        self._wandb = None

    def __enter__(self) -> FrequencyTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
