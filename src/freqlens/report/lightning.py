"""Lightning callback driving :class:`~freqlens.report.tracker.FrequencyTracker` (issue 13, item 4) (plumbing).

``FrequencyTrackerCallback`` subclasses ``lightning.pytorch.Callback`` (``pytorch_lightning.Callback`` when only
that package is installed); ``PLFrequencyTrackerCallback`` is the same callback on ``pytorch_lightning`` for
Trainers from that package (``None`` when it is absent). This module imports Lightning; nothing else in
freqlens imports this module, so ``import freqlens`` never loads Lightning.

On fit start (global rank 0 only) it creates the tracker on the module being fitted, which records step 0 or
resumes the run in ``out``; after every training batch it calls ``tracker.step(loss)`` with the loss the
``training_step`` returned (a tensor or ``{"loss": ...}``), so one tracker step is one training batch, as in a
hand loop. Its Lightning state (saved in checkpoints) is that batch count: a fit resumed from a checkpoint
rewinds the run to it (:meth:`FrequencyTracker.rewind`), dropping records made after the checkpoint.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .tracker import FrequencyTracker

__all__ = ["FrequencyTrackerCallback", "PLFrequencyTrackerCallback"]

_MISSING = "FrequencyTrackerCallback needs Lightning: pip install 'freqlens[tracking]' (or pytorch_lightning)"


def _base(module: str) -> type | None:
    try:
        base: type = importlib.import_module(module).Callback
    except ImportError:
        return None
    return base


_LIGHTNING = _base("lightning.pytorch")
_PL = _base("pytorch_lightning")
if _LIGHTNING is None and _PL is None:
    raise ImportError(_MISSING)


def _loss_of(outputs: Any) -> Any:
    """The loss in a ``training_step`` output: the tensor itself or ``outputs["loss"]`` (else ``None``)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        return outputs.get("loss")
    return None


class _TrackerCallback:
    """The callback's body, shared by both Lightning packages (see the module docstring).

    Args:
        probe, every, out, frequencies, layers, tensorboard, wandb, **tracker_kwargs: passed to
            :class:`FrequencyTracker` (``wandb`` may be ``WandbLogger.experiment``).
    """

    def __init__(
        self,
        probe: torch.Tensor,
        every: int = 100,
        out: str | Path = "runs/track",
        frequencies: Sequence[tuple[int, int]] | None = None,
        layers: Sequence[str] | None = None,
        *,
        tensorboard: bool = False,
        wandb: Any = False,
        **tracker_kwargs: Any,
    ) -> None:
        super().__init__()
        self.kwargs: dict[str, Any] = dict(
            probe=probe, every=every, out=out, frequencies=frequencies, layers=layers,
            tensorboard=tensorboard, wandb=wandb, **tracker_kwargs,
        )  # fmt: skip
        self.tracker: FrequencyTracker | None = None
        self._restored_step: int | None = None

    def on_fit_start(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        if not trainer.is_global_zero:
            return
        self.tracker = FrequencyTracker(pl_module, **self.kwargs)
        if self._restored_step is not None:
            self.tracker.rewind(self._restored_step)
            self._restored_step = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.tracker is not None:
            self.tracker.step(loss=_loss_of(outputs))

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.tracker is not None:
            self.tracker.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.on_fit_end(trainer, pl_module)  # the run directory is complete; flush TensorBoard, finish W&B

    def state_dict(self) -> dict[str, Any]:
        return {} if self.tracker is None else {"tracker_step": self.tracker.global_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "tracker_step" in state_dict:
            self._restored_step = int(state_dict["tracker_step"])


def _make(base: type, name: str) -> type:
    return type(name, (_TrackerCallback, base), {"__doc__": _TrackerCallback.__doc__, "__module__": __name__})


FrequencyTrackerCallback: type = _make(_LIGHTNING or _PL, "FrequencyTrackerCallback")  # type: ignore[arg-type]
PLFrequencyTrackerCallback: type | None = None
if _PL is not None:  # the same class when pytorch_lightning is the only package
    PLFrequencyTrackerCallback = (
        FrequencyTrackerCallback if _LIGHTNING is None else _make(_PL, "PLFrequencyTrackerCallback")
    )
