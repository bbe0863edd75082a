"""One generic PyTorch training loop for every non-linear model in freqlens.

Design points:

* Batches come from a deterministic ``batch_at(step)`` function (e.g. :class:`EpochSampler`), so a run
  resumed from a checkpoint sees exactly the batches it would have seen: same seed, same numbers.
* Coupled L2 (``loss + λ Σ‖θ‖²`` inside the objective, not AdamW-style decoupled decay): stationary
  points of this objective are what the bottleneck theory and its balancedness check assume
  (conv_bottleneck §4.0, C15).
* Divergence (non-finite loss, or loss above ``divergence_factor`` times the first one) raises
  :class:`TrainingDiverged` naming the learning rate; the history recorded so far is attached. Off the CPU
  the loss is read (and checked) only at record and checkpoint points, so a step never waits for the device.
* Optional checkpoint file: written atomically every ``checkpoint_every`` steps and at the end;
  ``train`` resumes from it when it exists. It holds only tensors and plain containers and is read with
  ``torch.load(weights_only=True)``: a shared run folder can never execute code. A checkpoint that cannot be
  read that way, or whose model/optimizer state does not fit, is refused with the reason (it is never
  silently trusted); a damaged (truncated) one is discarded and training restarts.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..hooks import evaluation_mode
from ..io import atomic_write_bytes

__all__ = [
    "EPOCH_SEED_MULTIPLIER",
    "CheckpointError",
    "EpochSampler",
    "TrainHistory",
    "TrainingDiverged",
    "cosine_lr",
    "flushed_denormals",
    "l2_penalty",
    "load_checkpoint",
    "sampler_epochs",
    "train",
]

#: Version of the checkpoint layout written by :func:`train`.
CHECKPOINT_FORMAT = 2

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Recorder = Callable[[int, nn.Module], Mapping[str, Any]]

#: :class:`EpochSampler` seeds the CPU generator of epoch ``e`` with ``seed * EPOCH_SEED_MULTIPLIER + e``.
EPOCH_SEED_MULTIPLIER = 1_000_003


def _flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero now (torch has no getter: a denormal times 2 reads 0)."""
    return float(torch.tensor([1e-39], dtype=torch.float32) * 2) == 0.0


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Treat denormal floats (|x| < 1.2e-38 in float32) as zero on the CPU inside the block, then restore the
    caller's setting (``torch.set_flush_denormal``).

    Why: under L2 a trained network's unused weights shrink into the denormal range, and x86 arithmetic on
    denormals is microcode-slow. Measured on a cbn-fig4 quick-width network at step 11 000 (41 341 of its 199 764
    weights denormal), one Adam step took 191 ms, 20 ms flushed. A value that small is a zero for every loss
    and spectrum freqlens computes. The flag is the calling thread's (MXCSR): intra-op worker threads keep theirs,
    so it is complete with one torch thread, as the ``cbn-*`` runs pin."""
    before = _flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def cosine_lr(start: float, end: float, steps: int) -> Callable[[int], float]:
    """The learning rate ``η(t) = end + (start − end)(1 + cos(π t / steps)) / 2`` of step ``t`` (cosine
    annealing from ``start`` at step 0 to ``end`` at step ``steps``; :func:`train`'s ``lr_at``).

    A pure function of the step, so a resumed run anneals exactly as an uninterrupted one (no scheduler state
    in the checkpoint)."""
    if not (start > 0 and math.isfinite(start)):
        raise ValueError(f"start must be a positive learning rate, got {start}")
    if not 0 <= end <= start:
        raise ValueError(f"end must be in [0, start={start}], got {end}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")

    def lr_at(step: int) -> float:
        """The annealed learning rate of ``step`` (plumbing)."""
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))

    return lr_at


def sampler_epochs(num_samples: int, batch_size: int | None, steps: int) -> int:
    """How many epochs steps ``0..steps-1`` of an :class:`EpochSampler` (``drop_last=True``) touch, hence how many
    generator seeds ``seed * EPOCH_SEED_MULTIPLIER + e`` it uses (plumbing)."""
    per_epoch = max(int(num_samples) // (int(num_samples) if batch_size is None else int(batch_size)), 1)
    return -(-max(int(steps), 0) // per_epoch)


class EpochSampler:
    """Deterministic mini-batches: epoch ``e`` uses the permutation drawn from ``seed`` and ``e``.

    ``sampler(step)`` returns batch ``step`` (0-based); ``batches_per_epoch`` counts full batches
    (the last partial batch is dropped unless ``drop_last=False``). ``batch_size=None`` is full batch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}")
        n = int(x.shape[0])
        if n == 0:
            raise ValueError("x must hold at least one sample")
        bs = n if batch_size is None else int(batch_size)
        if bs < 1 or bs > n:
            raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = bs
        self.seed = int(seed)
        self.shuffle = shuffle
        self.batches_per_epoch = n // bs if drop_last else math.ceil(n / bs)
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch or self._perm is None:
            n = self.x.shape[0]
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * EPOCH_SEED_MULTIPLIER + epoch)
                self._perm = torch.randperm(n, generator=g)
            else:
                self._perm = torch.arange(n)
            self._epoch = epoch
        return self._perm

    def __call__(self, step: int) -> Batch:
        epoch, k = divmod(int(step), self.batches_per_epoch)
        idx = self._permutation(epoch)[k * self.batch_size : (k + 1) * self.batch_size]
        idx = idx.to(self.x.device)
        return self.x[idx], self.y[idx]


class TrainingDiverged(RuntimeError):
    """Raised when the loss becomes non-finite or explodes; ``history`` holds what was recorded."""

    def __init__(self, message: str, history: TrainHistory) -> None:
        super().__init__(message)
        self.history = history


@dataclass
class TrainHistory:
    """Recorded values: ``step`` (updates done when recorded) and one list per recorded key."""

    step: list[int] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)

    def append(self, step: int, record: Mapping[str, Any]) -> None:
        """Record ``record``'s values (as arrays) at update ``step`` (plumbing)."""
        self.step.append(int(step))
        for k, v in record.items():
            self.values.setdefault(k, []).append(np.asarray(v))

    def as_arrays(self) -> dict[str, np.ndarray]:
        """``{"step": (R,), key: (R, ...)}``, stacked over records."""
        out: dict[str, np.ndarray] = {"step": np.asarray(self.step, dtype=np.int64)}
        for k, v in self.values.items():
            out[k] = np.stack(v) if v else np.zeros(0)
        return out


def l2_penalty(params: Iterable[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """``Σ_θ ‖θ‖²`` over the given parameters, or ``Σ_θ w_θ ‖θ‖²`` with one weight per parameter."""
    params = list(params)
    if not params:
        raise ValueError("l2_penalty needs at least one parameter")
    if weights is None:
        return torch.stack([p.pow(2).sum() for p in params]).sum()
    if len(weights) != len(params):
        raise ValueError(f"l2_penalty: weights has {len(weights)} entries for {len(params)} parameters")
    return torch.stack([w * p.pow(2).sum() for w, p in zip(weights, params, strict=True)]).sum()


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    history: TrainHistory,
    running: list[float],
) -> None:
    buf = io.BytesIO()
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "running": list(running),
        "history_step": history.step,
        # tensors, not numpy arrays: the weights_only unpickler accepts tensors and plain containers only
        "history_values": {k: [torch.from_numpy(np.array(v)) for v in vs] for k, vs in history.values.items()},
    }
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


class CheckpointError(ValueError):
    """A checkpoint file that freqlens refuses to use; the message says why."""


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """Read a training checkpoint safely (``weights_only=True``): tensors and plain containers only.

    Returns ``None`` for a damaged (truncated, empty) file, which the caller recomputes; raises
    :class:`CheckpointError` for a readable file that needs more than weights (pickled code, foreign objects).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refusing to load this checkpoint: it needs more than tensors and plain containers "
            f"(torch.load with weights_only=True said: {str(exc).splitlines()[0]}); delete it to retrain"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile):
        return None  # damaged (e.g. truncated by kill -9 before the atomic rename existed): recompute
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a freqlens training checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def train(
    model: nn.Module,
    loss_fn: LossFn,
    batch_at: Callable[[int], Batch],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    l2: float = 0.0,
    l2_params: Iterable[torch.Tensor] | None = None,
    l2_weights: Sequence[float] | None = None,
    record_every: int = 0,
    recorder: Recorder | None = None,
    divergence_factor: float = 1e6,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
    lr_at: Callable[[int], float] | None = None,
    read_loss_every_step: bool | None = None,
) -> TrainHistory:
    """Run ``steps`` optimisation steps of ``loss_fn(model, xb, yb) + l2 * Σ‖θ‖²``.

    Args:
        batch_at: ``step -> (xb, yb)``, deterministic (see :class:`EpochSampler`).
        l2: coupled L2 coefficient λ; ``l2_params`` defaults to all trainable parameters; ``l2_weights`` (one
            non-negative number per ``l2_params`` entry) makes the penalty ``λ Σ w_θ ‖θ‖²``.
        record_every: every this many steps (and at step 0 and the end), record ``train_loss`` (mean
            data loss since the previous record), ``objective`` and whatever ``recorder(step, model)``
            returns (called in eval mode under ``torch.no_grad``).
        checkpoint: file to resume from / save to (atomic), every ``checkpoint_every`` steps.
        progress: wraps the step iterator (e.g. ``ctx.progress``).
        lr_at: ``step -> learning rate`` set on every parameter group before that step (e.g. :func:`cosine_lr`);
            ``None`` leaves the optimizer's learning rate as it is.
        read_loss_every_step: read the loss to the host (and check it for divergence) every step; ``False``
            keeps the losses on the device and reads them at the record and checkpoint points and at the end (no
            host sync in the step); ``None``: every step on the CPU, deferred when the model is elsewhere. The
            same numbers either way; a divergence is reported at its own step, later.
    Returns:
        the :class:`TrainHistory` (also after resuming: it includes the earlier records).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    if record_every < 0:
        raise ValueError(f"record_every must be >= 0, got {record_every}")
    reg_params = list(l2_params) if l2_params is not None else [p for p in model.parameters() if p.requires_grad]
    reg_weights = None if l2_weights is None else [float(w) for w in l2_weights]
    if reg_weights is not None and (len(reg_weights) != len(reg_params) or min(reg_weights, default=0.0) < 0):
        raise ValueError(f"l2_weights must hold {len(reg_params)} non-negative numbers (one per l2 parameter)")
    history = TrainHistory()
    start = 0
    running: list[float] = []
    ckpt = Path(checkpoint) if checkpoint is not None else None
    state = load_checkpoint(ckpt) if ckpt is not None and ckpt.is_file() else None
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{ckpt}: does not fit this model or optimizer ({str(exc).splitlines()[0]})") from exc
        start = int(state["step"])
        history.step = [int(s) for s in state["history_step"]]
        history.values = {k: [v.numpy() for v in vs] for k, vs in state["history_values"].items()}
        running = [float(v) for v in state.get("running", [])]

    def record(step: int, running: list[float]) -> None:
        entry: dict[str, Any] = {}
        if running:
            entry["train_loss"] = float(np.mean(running))
        if recorder is not None:
            with evaluation_mode(model), torch.no_grad():
                entry.update(recorder(step, model))
        history.append(step, entry)

    first_loss: float | None = None
    # On an accelerator, reading the loss every step (float()) would wait for the device each step: there the
    # losses stay on the device and are read, and checked for divergence, at the record and checkpoint points.
    deferred = (
        any(p.device.type != "cpu" for p in model.parameters())
        if read_loss_every_step is None
        else not read_loss_every_step
    )
    pending: list[torch.Tensor] = []

    def check(step: int, value: float) -> None:
        nonlocal first_loss
        if first_loss is None:
            first_loss = max(value, 1e-30)
        if not math.isfinite(value) or value > divergence_factor * first_loss:
            raise TrainingDiverged(
                f"training diverged at step {step} (loss {value:.3g}) with learning rate {_lr(optimizer):g}; "
                "lower the learning rate",
                history,
            )

    def settle(done: int) -> None:  # read the deferred losses of the steps before ``done`` (one device sync)
        if pending:
            values = torch.stack(pending).to(torch.float64).cpu().tolist()
            for offset, value in enumerate(values):
                check(done - len(values) + offset, value)
            running.extend(values)
            pending.clear()

    if start == 0 and record_every and recorder is not None:
        record(0, [])
    model.train()
    iterator: Iterable[int] = range(start, steps)
    if progress is not None:
        iterator = progress(iterator)
    for step in iterator:
        xb, yb = batch_at(step)
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        data_loss = loss_fn(model, xb, yb)
        objective = data_loss + l2 * l2_penalty(reg_params, reg_weights) if l2 > 0 else data_loss
        if deferred:
            pending.append(data_loss.detach())
        else:
            value = float(data_loss.detach())
            check(step, value)
            running.append(value)
        objective.backward()
        optimizer.step()
        done = step + 1
        to_record = bool(record_every) and (done % record_every == 0 or done == steps)
        to_save = ckpt is not None and (done % checkpoint_every == 0 or done == steps)
        if to_record or to_save:
            settle(done)
        if to_record:
            record(done, running)
            running = []
        if ckpt is not None and to_save:
            _save_checkpoint(ckpt, model, optimizer, done, history, running)
    settle(steps)
    return history
