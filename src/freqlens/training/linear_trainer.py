"""Fast training of many independent linear CNNs / FCNNs with the paper's protocol (spec §4.1, §9).

Protocol: MSE with the ``1/p`` factor (Keras ``mse``), plain SGD with learning rate ``λ``, batch size 1
(``sampling="random"``: each update draws one training sample uniformly, i.e. "one image per class"
for one-image-per-class datasets; ``sampling="epochs"``: shuffled epochs) or the full-batch gradient
(``sampling="full_batch"``: GD on the dataset-averaged loss, i.e. the expected dynamics driven by the
second moments ``Σ_yx``, ``Σ_xx``; spec §4.2). All ``T`` trials advance together in one set of tensor
operations.

How the CNN step is fast (spec §3.3, §4.1): in the Fourier coefficients of
:mod:`.linear_spectral` the correlation with a full-size kernel is an elementwise complex product, so
with the complex coefficients (one per conjugate pair) ``K = √ω ⊙ k̂``, ``W_i = √ω ⊙ ŵ_i``
(``k̂ = Q k``, ``ŵ_i = Q w_i``) and the data ``X = n x̂``:

    ``h = Σ_c conj(K_c) ⊙ X_c``,  ``ŷ = Re Σ conj(W) h``,  ``e = y − ŷ``,  ``δ = Σ_i e_i W_i``,
    ``W += c e hᵀ``,  ``K_c += c conj(δ) ⊙ X_c``,  with ``c = 2λ/p``,

which is exactly one SGD step of :class:`freqlens.models.linear.LinearCNN` (the tests compare it with
autograd + ``torch.optim.SGD``), at ``O(T (C + p) n²)`` per step; the steps of a chunk run in one
TorchScript function (the same kernels without Python's per-kernel dispatch, :func:`_scripted_step_loop`).
The FCNN step keeps the first-layer update lazy within blocks of steps (``W1 = W1_0 + Σ_s a_s x_sᵀ``), so
its ``O(hidden · D)`` work per step runs as batched matrix products.

Recording, every ``record_every`` updates: ``A(t)`` (spec Eq. 5) and the loss on the training set and on the
test set if there is one, in closed form from the end-to-end map and the sets' second moments
(:mod:`.linear_problem`; the ``O(p D'²)`` quadratic terms of several records are completed in one stacked
product, with ``overlap_records=True`` on CPU in a worker thread while training goes on,
:class:`_Recorder`); for the CNN also
``|k̂_m(t)|`` for all frequencies and the balancedness ratio ``‖W̄_{:,m}‖ / ‖k̂_{:,m}‖`` (spec §4.4, §8.3),
optionally ``|W̄_αm|``; parameter snapshots at requested times. Divergence (non-finite parameters or an
exploding loss) raises :class:`LinearTrainingDiverged` naming the learning rate, with the partial
:class:`LinearRun` attached.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .._validation import check_choice, check_positive_int, describe
from .linear_init import CNNParameters, FCNNParameters, trial_generator
from .linear_problem import LinearProblem

__all__ = [
    "LinearRun",
    "LinearTrainingDiverged",
    "Sampling",
    "train_linear_cnn",
    "train_linear_fcnn",
]

Sampling = Literal["random", "epochs", "full_batch"]
Progress = Callable[[Iterable[int]], Iterable[int]]
_PendingRecord = tuple[int, dict[str, torch.Tensor], dict[str, np.ndarray], bool]  # step, values, extra, finite
_RecordInputs = Callable[[], tuple[torch.Tensor, dict[str, np.ndarray], bool]]  # () -> (maps, extra, finite)

_CNN_CHUNK = 16  # CNN updates whose samples are gathered (and conjugated) at once into buffers made once per call
_FCNN_CHUNK = 64  # FCNN updates per lazy block of W1 (large blocks make the block products efficient)
_INDEX_BLOCK = 4096  # sample indices are drawn in fixed blocks: the stream does not depend on chunking
_FULL_BATCH_CHUNK = 1024  # samples per slice of the full-batch gradient
_RECORD_BATCH_ROWS = 320  # end-to-end rows (T p per record) whose loss quadratic forms share one product
_RECORDS_IN_FLIGHT = 2  # stacked batches that may wait for the record worker (overlap) before training waits


class LinearTrainingDiverged(RuntimeError):
    """Training stopped because the parameters became non-finite or the loss exploded.

    ``run`` holds everything recorded up to the last finite record.
    """

    def __init__(self, message: str, run: LinearRun) -> None:
        super().__init__(message)
        self.run = run


@dataclass
class LinearRun:
    """What a training call records (numpy; ``T`` trials, ``R`` records, ``S`` snapshots).

    Attributes:
        network: ``"cnn"`` or ``"fcnn"``; learning_rate, sampling: as trained.
        t: ``(R,)`` updates done at each record (``0`` and ``num_updates`` included).
        a_train / a_test: ``(T, R, p, p)`` effective singular values ``A(t)``.
        loss_train / loss_test: ``(T, R)`` Keras-MSE loss on the full sets.
        khat_abs: CNN only, ``(T, R, C, n²)`` ``|k̂_m(t)|`` (``k̂ = Q k`` per channel; the same for the
            convolution-form kernel).
        balance: CNN only, ``(T, R, G, n²)`` ``‖ŵ_{:,g,m}‖ / ‖k̂_{:,m}‖`` (``G = 1``: the norm of ``k̂`` is over
            channels; ``G = C``: per channel). For one channel this is ``‖W̄_{:,m}‖ / |k̂_m|`` (spec §4.4).
        wbar_abs: CNN, ``G = 1``, if asked: ``(T, R, p, n²)`` ``|W̄_αm|`` with ``W̄ = Uᵀ W Q*`` (spec Eq. 12).
        snapshot_t: ``(S,)``; kernel_snapshots ``(T, S, C, n, n)`` and weight_snapshots ``(T, S, p, hidden)``
            (CNN) or w1_snapshots ``(T_s, S, rows, C, n, n)`` (rows of ``W1`` as images, the first
            ``snapshot_rows`` rows of the first ``snapshot_trials`` trials) and weight_snapshots (``W2``).
        final: the parameters at the end, in the models' layout.
        diverged, message: divergence flag and text; wall_time_s: time spent in the call.
    """

    network: str
    learning_rate: float
    sampling: str
    t: np.ndarray
    a_train: np.ndarray
    loss_train: np.ndarray
    a_test: np.ndarray | None = None
    loss_test: np.ndarray | None = None
    khat_abs: np.ndarray | None = None
    balance: np.ndarray | None = None
    wbar_abs: np.ndarray | None = None
    snapshot_t: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    kernel_snapshots: np.ndarray | None = None
    weight_snapshots: np.ndarray | None = None
    w1_snapshots: np.ndarray | None = None
    final: dict[str, np.ndarray] = field(default_factory=dict)
    diverged: bool = False
    message: str = ""
    wall_time_s: float = 0.0

    _ARRAYS = (
        "t",
        "a_train",
        "loss_train",
        "a_test",
        "loss_test",
        "khat_abs",
        "balance",
        "wbar_abs",
        "snapshot_t",
        "kernel_snapshots",
        "weight_snapshots",
        "w1_snapshots",
    )

    def arrays(self, prefix: str = "", include_final: bool = True) -> dict[str, np.ndarray]:
        """Every recorded array (``None`` ones left out) and, if ``include_final``, the final parameters
        (large for a wide FCNN: 10 CIFAR trials hold 250 MB of ``W1``), keys prefixed."""
        out = {f"{prefix}{k}": getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        if include_final:
            out.update({f"{prefix}final_{k}": v for k, v in self.final.items()})
        out[f"{prefix}learning_rate"] = np.asarray(self.learning_rate)
        out[f"{prefix}wall_time_s"] = np.asarray(self.wall_time_s)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], network: str, sampling: str, prefix: str = "") -> LinearRun:
        """Inverse of :meth:`arrays` (e.g. to reload a finished stage)."""
        kw: dict[str, Any] = {k: arrays[f"{prefix}{k}"] for k in cls._ARRAYS if f"{prefix}{k}" in arrays}
        final = {k[len(prefix) + 6 :]: v for k, v in arrays.items() if k.startswith(f"{prefix}final_")}
        return cls(
            network=network,
            learning_rate=float(arrays[f"{prefix}learning_rate"]),
            sampling=sampling,
            final=final,
            wall_time_s=float(arrays.get(f"{prefix}wall_time_s", np.asarray(0.0))),
            **kw,
        )


# ----------------------------------------------------------------------------------- helpers
class _SampleStream:
    """Per-trial sample indices: uniform draws or shuffled epochs, from fixed-size generator blocks.

    Every trial consumes the same number of indices and refills in blocks of the same size, so the
    trials' buffers are the rows of one ``(T, L)`` tensor and a draw is one slice (no per-trial work
    between refills); trial ``t``'s sequence is its generator's blocks in order, whatever the chunking.
    """

    def __init__(self, num_samples: int, sampling: str, seed: int, trials: int) -> None:
        self.num_samples = num_samples
        self.sampling = sampling
        self.gens = [trial_generator(seed, t, stream=10) for t in range(trials)]
        self.buffer = torch.zeros(trials, 0, dtype=torch.int64)
        self.pos = 0

    def _refill(self, t: int) -> torch.Tensor:
        if self.sampling == "random":
            return torch.randint(self.num_samples, (_INDEX_BLOCK,), generator=self.gens[t])
        return torch.randperm(self.num_samples, generator=self.gens[t])

    def take(self, count: int) -> torch.Tensor:
        """The next ``count`` indices of every trial, ``(T, count)`` (a view of the buffer)."""
        while self.buffer.shape[1] - self.pos < count:
            fresh = torch.stack([self._refill(t) for t in range(len(self.gens))])
            self.buffer = torch.cat([self.buffer[:, self.pos :], fresh], dim=1)
            self.pos = 0
        out = self.buffer[:, self.pos : self.pos + count]
        self.pos += count
        return out


def _event_times(num_updates: int, record_every: int, snapshot_times: Sequence[int]) -> tuple[list[int], set[int]]:
    records = [*range(0, num_updates, record_every), num_updates]
    snaps = {int(s) for s in snapshot_times}
    bad = sorted(s for s in snaps if s < 0 or s > num_updates)
    if bad:
        raise ValueError(f"snapshot_times must lie in [0, num_updates={num_updates}], got {bad}")
    return sorted(set(records) | snaps), set(records)


def _check_common(
    problem: LinearProblem, learning_rate: float, num_updates: int, sampling: str, record_every: int
) -> tuple[float, int, int]:
    if not isinstance(problem, LinearProblem):
        raise TypeError(f"problem must be a LinearProblem (see LinearProblem.from_data), got {type(problem).__name__}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")
    if not math.isfinite(float(learning_rate)):
        raise ValueError(f"learning_rate must be finite, got {learning_rate!r}")
    num_updates = check_positive_int("num_updates", num_updates, minimum=0)
    record_every = check_positive_int("record_every", record_every)
    check_choice("sampling", sampling, ("random", "epochs", "full_batch"))
    return float(learning_rate), num_updates, record_every


def _check_threads(threads: int | None, name: str = "threads") -> None:
    if threads is not None:
        check_positive_int(name, threads)


class _Recorder:
    """Accumulates records, completes their losses in stacked products and checks for divergence.

    A record's ``A`` and the linear part of its losses are formed at once; on the moment route
    (:meth:`SetMoments.quadratic`) the quadratic term ``tr(B Σ_φφ Bᵀ)`` of the losses waits until
    ``_RECORD_BATCH_ROWS`` rows of end-to-end maps (``T p`` per record) are pending, then one matrix product
    serves them all: the ``O(p D'²)`` work per row is the same, and a product with 320 rows usually runs
    faster per row than one with the protocol's 40 (measured on the loaded 2-core machine: 1.2-1.7x at
    load 7-13, none at load 15; benchmarks/linear_cnn_training.py prints both). On the CIFAR-4 protocol
    this cut the recording time by 16-18% (interleaved with the previous per-record products, load 13).

    The quadratic forms are exact and dense (``Σ_φφ`` of natural images is not diagonal in any fixed basis),
    so their ``O(p D'²)`` flops per row cost more than the ``O((C + p) n²)`` steps between two records; with
    ``overlap`` (CPU) a batch is handed to one worker thread and completed while training goes on (the
    product releases the GIL; at most ``_RECORDS_IN_FLIGHT`` batches wait, so a slow worker holds training
    back instead of piling up maps). The worker runs the same products on ``record_threads`` threads, so the
    records are bit for bit those of the synchronous route.
    Batches are completed and checked in order: divergence is found at the first record that shows it,
    exactly as with immediate records; the records and snapshots from that update on are dropped (training
    may have gone on meanwhile: its later records are discarded), and non-finite parameters flush at once.
    """

    def __init__(
        self,
        problem: LinearProblem,
        divergence_factor: float,
        learning_rate: float,
        network: str,
        record_threads: int | None = None,
        overlap: bool = False,
    ) -> None:
        self.problem = problem
        self.factor = divergence_factor
        self.lr = learning_rate
        self.network = network
        self.batch_rows = _RECORD_BATCH_ROWS
        self.record_threads = record_threads
        self.t: list[int] = []
        self.cols: dict[str, list[np.ndarray]] = {}
        self.snap_t: list[int] = []
        self.snaps: dict[str, list[np.ndarray]] = {}
        self.reference: float | None = None
        self.sets = {"train": problem.train} if problem.test is None else {"train": problem.train, "test": problem.test}
        self.quadratic = any(m.needs_quadratic for m in self.sets.values())
        self.pending: list[_PendingRecord] = []  # in line: evaluated records waiting for their products
        self.pending_maps: list[torch.Tensor] = []
        self.deferred: list[tuple[int, _RecordInputs]] = []  # overlap: records the worker will evaluate
        self.pending_rows = 0
        self.batches: deque[Future[list[_PendingRecord]]] = deque()
        self.overlap = overlap and self.quadratic and problem.device.type == "cpu"
        self.worker: ThreadPoolExecutor | None = None
        self.threads = (1, 1)  # (training, record products) threads of the worker, set at its start

    def record(self, step: int, inputs: _RecordInputs, trials: int) -> str:
        """Record ``inputs() = (maps (T, p, D'), extra arrays, finite)`` at ``step``; the divergence message or ''.

        ``inputs`` must not depend on later training (a copy of the parameters): with ``overlap`` the worker
        calls it while training goes on.
        """
        rows = trials * self.problem.num_classes
        if self.overlap:
            self.deferred.append((step, inputs))
            self.pending_rows += rows
            if self.pending_rows < self.batch_rows:
                return self._collect(wait=False)
            message = self._make_room()
            if message:
                return message
            self._submit()
            return self._collect(wait=False)
        end_to_end, extra, finite = inputs()
        self.pending.append((step, self._linear(end_to_end), extra, finite))
        if self.quadratic:
            self.pending_maps.append(end_to_end.to(torch.float64))
            self.pending_rows += rows
            if finite and self.pending_rows < self.batch_rows:
                return self._collect(wait=False)
        self._submit()
        return self._collect(wait=not finite)

    def flush(self) -> str:
        """Complete every pending record's losses, check and add them in order; stop the worker."""
        self._submit()
        return self._collect(wait=True)

    def close(self) -> None:
        """Stop the worker thread (after its current batch) and forget what is still in flight (plumbing)."""
        self.batches.clear()
        self.pending, self.pending_maps, self.deferred, self.pending_rows = [], [], [], 0
        if self.worker is not None:
            self.worker.shutdown(wait=True, cancel_futures=True)
            self.worker = None

    def _linear(self, end_to_end: torch.Tensor) -> dict[str, torch.Tensor]:
        """``A`` and the loss without its quadratic term, per set (:meth:`SetMoments.evaluate_linear`; plumbing)."""
        values: dict[str, torch.Tensor] = {}
        for name, moments in self.sets.items():
            values[f"loss_{name}"], values[f"a_{name}"] = moments.evaluate_linear(end_to_end, self.problem.U)
        return values

    def _complete(self, pending: list[_PendingRecord], maps: list[torch.Tensor]) -> list[_PendingRecord]:
        """Add the quadratic terms ``/ p`` of the stacked ``maps`` (one product per set) to the losses."""
        if maps:
            stacked = torch.cat(maps)  # (R T, p, D')
            records, p = len(maps), stacked.shape[1]
            for name, moments in self.sets.items():
                if moments.needs_quadratic:
                    quad = (moments.quadratic(stacked) / p).reshape(records, -1)
                    for (_, values, _, _), q in zip(pending, quad):
                        values[f"loss_{name}"] = values[f"loss_{name}"] + q
        return pending

    def _evaluate(self, deferred: list[tuple[int, _RecordInputs]]) -> list[_PendingRecord]:
        """The worker's batch: evaluate the records on the training thread count, then complete their losses on
        ``record_threads`` (as the in-line route does, so the same kernels see the same thread counts)."""
        device = self.problem.device
        pending, maps = [], []
        with _cpu_threads(device, self.threads[0]):
            for step, inputs in deferred:
                end_to_end, extra, finite = inputs()
                pending.append((step, self._linear(end_to_end), extra, finite))
                maps.append(end_to_end.to(torch.float64))
        with _cpu_threads(device, self.threads[1]):
            return self._complete(pending, maps)

    def _submit(self) -> None:
        """Move the pending records into a batch: evaluated by the worker with ``overlap``, else completed now."""
        self.pending_rows = 0
        future: Future[list[_PendingRecord]] = Future()
        if self.deferred:
            if self.worker is None:
                training = torch.get_num_threads()  # the call's setting (inside _cpu_threads of _run_loop)
                self.threads = (training, self.record_threads if self.record_threads is not None else training)
                self.worker = ThreadPoolExecutor(1, "freqlens-records")
            future = self.worker.submit(self._evaluate, self.deferred)
            self.deferred = []
        elif self.pending:
            pending, maps, self.pending, self.pending_maps = self.pending, self.pending_maps, [], []
            with _cpu_threads(self.problem.device, self.record_threads):
                future.set_result(self._complete(pending, maps))
        else:
            return
        self.batches.append(future)

    def _collect(self, wait: bool) -> str:
        """Check and add the finished batches in order (all of them if ``wait``); the divergence message or ''."""
        while self.batches:
            if not wait and not self.batches[0].done():
                return ""
            message = self._complete_oldest()
            if message:
                return message
        if wait:
            self.close()
        return ""

    def _make_room(self) -> str:
        """With ``overlap``, complete the oldest batches until fewer than ``_RECORDS_IN_FLIGHT`` wait (plumbing)."""
        while self.overlap and len(self.batches) >= _RECORDS_IN_FLIGHT:
            message = self._complete_oldest()
            if message:
                return message
        return ""

    def _complete_oldest(self) -> str:
        """Check and add the oldest batch's records in order (plumbing)."""
        for step, values, extra, finite in self.batches.popleft().result():
            arrays = {k: _np(v) for k, v in values.items()}
            message = self.check(step, arrays["loss_train"], finite)
            if message:
                self.drop_snapshots_from(step)
                self.close()
                return message
            self.add(step, {**arrays, **extra})
        return ""

    def add(self, step: int, values: dict[str, np.ndarray]) -> None:
        self.t.append(step)
        for k, v in values.items():
            self.cols.setdefault(k, []).append(v)

    def add_snapshot(self, step: int, values: dict[str, np.ndarray]) -> None:
        self.snap_t.append(step)
        for k, v in values.items():
            self.snaps.setdefault(k, []).append(v)

    def drop_snapshots_from(self, step: int) -> None:
        """Forget snapshots taken at or after ``step`` (the update whose record diverged; plumbing)."""
        keep = sum(1 for s in self.snap_t if s < step)
        self.snap_t = self.snap_t[:keep]
        self.snaps = {k: v[:keep] for k, v in self.snaps.items()}

    def check(self, step: int, loss: np.ndarray, finite: bool) -> str:
        """Empty string if fine, else the divergence message."""
        worst = float(np.max(loss)) if loss.size else 0.0
        if self.reference is None:
            self.reference = max(worst, self.problem.train.y_sq / self.problem.num_classes, 1e-12)
        if not finite or not math.isfinite(worst):
            cause = "parameters became NaN or infinite"
        elif worst > self.factor * self.reference:
            cause = f"training loss {worst:.3g} exceeds {self.factor:g} x its initial value {self.reference:.3g}"
        else:
            return ""
        return (
            f"linear {self.network.upper()} training diverged by update {step}: {cause} "
            f"with learning_rate={self.lr:g}; lower the learning rate"
        )

    def run(self, sampling: str, final: dict[str, np.ndarray], message: str, wall: float) -> LinearRun:
        stack = {k: np.stack(v, axis=1) for k, v in self.cols.items()}  # (T, R, ...)
        snaps = {k: np.stack(v, axis=1) for k, v in self.snaps.items()}
        return LinearRun(
            network=self.network,
            learning_rate=self.lr,
            sampling=sampling,
            t=np.asarray(self.t, dtype=np.int64),
            a_train=stack["a_train"],
            loss_train=stack["loss_train"],
            a_test=stack.get("a_test"),
            loss_test=stack.get("loss_test"),
            khat_abs=stack.get("khat_abs"),
            balance=stack.get("balance"),
            wbar_abs=stack.get("wbar_abs"),
            snapshot_t=np.asarray(self.snap_t, dtype=np.int64),
            kernel_snapshots=snaps.get("kernel"),
            weight_snapshots=snaps.get("weight"),
            w1_snapshots=snaps.get("w1"),
            final=final,
            diverged=bool(message),
            message=message,
            wall_time_s=wall,
        )


@contextmanager
def _cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run a training call with ``threads`` CPU threads (``None``: leave torch's setting), restoring it after.

    The per-step kernels are far too small to split (10⁴-10⁵ elements), and on a shared machine a second
    OpenMP thread that has to wait for a busy core can make even the large record products ten times
    slower (measured), so the trainers default to one thread.
    """
    if device.type != "cpu" or threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _np(x: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy: never a view of a live parameter (a float64 CPU ``.to`` would return ``x`` itself)."""
    return x.detach().to("cpu", torch.float64, copy=True).numpy()


# ----------------------------------------------------------------------------------- the CNN
class _CNNState:
    """CNN parameters of ``T`` trials as complex Fourier coefficients (module doc):
    ``K_bar (T, C, R) = conj(√ω ⊙ k̂_R)`` (kept conjugated so that the step needs no conjugation of
    ``K``) and ``W (T, p, G, R) = √ω ⊙ ŵ_R``; ``Wr`` is ``W``'s real view ``(T, p, G·2R)``."""

    def __init__(self, problem: LinearProblem, init: CNNParameters) -> None:
        c, n, _ = problem.image_shape
        p = problem.num_classes
        if tuple(init.kernel.shape[1:]) != (c, n, n):
            raise ValueError(f"init.kernel must have shape (T, {c}, {n}, {n}), got {describe(init.kernel)}")
        if init.weight.shape[1] != p:
            raise ValueError(f"init.weight must have p={p} rows, got {describe(init.weight)}")
        self.problem = problem
        self.groups = 1 if init.channel_mode == "sum" else c
        dev, cdt = problem.device, problem.coeffs.dtype
        basis = problem.basis
        self.basis = basis
        self.scale = basis.scale(torch.float64, dev)
        self.K_bar = basis.coefficients(init.kernel.to(dev, torch.float64)).to(cdt).conj().resolve_conj().contiguous()
        w_img = init.weight.to(dev, torch.float64).reshape(init.num_trials, p, self.groups, n, n)
        self.W = basis.coefficients(w_img).to(cdt).contiguous()
        self.Wr = torch.view_as_real(self.W).view(init.num_trials, p, -1)

    @property
    def trials(self) -> int:
        return int(self.K_bar.shape[0])

    @property
    def K(self) -> torch.Tensor:
        """``K = √ω ⊙ k̂_R`` (a conjugate view of ``K_bar``; conjugation is exact)."""
        return self.K_bar.conj()

    def finite(self) -> bool:
        return bool(torch.isfinite(self.Wr).all() and torch.isfinite(torch.view_as_real(self.K_bar)).all())

    def frozen(self) -> _CNNState:
        """A copy of this state with its own ``K_bar`` and ``W`` (for a record evaluated later; plumbing)."""
        out = copy.copy(self)
        out.K_bar, out.W = self.K_bar.clone(), self.W.clone()
        out.Wr = torch.view_as_real(out.W).view(self.Wr.shape)
        return out

    def end_to_end(self) -> torch.Tensor:
        """Real view of ``c(n ŵ_i ⊙ k̂_c) = n W_i ⊙ K_c / √ω``: ``(T, p, D')`` float64 acting on ``φ(x)``."""
        n = self.problem.n
        k = self.K.to(torch.complex128)  # (T, C, R)
        w = self.W.to(torch.complex128)  # (T, p, G, R); G = 1 broadcasts one hidden map over the C kernels
        prod = n * w * k[:, None] / self.scale
        return torch.view_as_real(prod).reshape(self.trials, self.problem.num_classes, -1)

    def spectra(self, with_wbar: bool) -> dict[str, np.ndarray]:
        basis = self.basis
        kabs = self.K_bar.abs().to(torch.float64)  # (T, C, R) = √ω |k̂|
        wnorm = torch.linalg.vector_norm(self.W.to(torch.complex128), dim=1)  # (T, G, R) (√ω cancels)
        knorm = torch.linalg.vector_norm(kabs, dim=1, keepdim=True) if self.groups == 1 else kabs
        out = {
            "khat_abs": _np(basis.full_magnitude(kabs / self.scale)),
            "balance": _np(basis.full_magnitude(wnorm / knorm)),
        }
        if with_wbar:
            u = self.problem.U.to(torch.complex128)
            wbar = torch.einsum("ia,tir->tar", u, self.W[:, :, 0].to(torch.complex128))  # |W̄_αm| = |Σ_i U_iα ŵ_im|
            out["wbar_abs"] = _np(basis.full_magnitude(wbar.abs() / self.scale))
        return out

    def parameters(self) -> dict[str, np.ndarray]:
        t, p = self.trials, self.problem.num_classes
        kernel = self.basis.images(self.K.to(torch.complex128))  # (T, C, n, n)
        weight = self.basis.images(self.W.to(torch.complex128))  # (T, p, G, n, n)
        return {"kernel": _np(kernel), "weight": _np(weight.reshape(t, p, -1))}


def _cnn_step_loop(
    k_bar: torch.Tensor,
    wr: torch.Tensor,
    xc: torch.Tensor,
    xc_bar: torch.Tensor,
    yc: torch.Tensor,
    prod: torch.Tensor,
    h: torch.Tensor,
    h_real: torch.Tensor,
    err: torch.Tensor,
    delta_real: torch.Tensor,
    delta: torch.Tensor,
    c: float,
    one_group: bool,
) -> None:
    """The ``B = xc.shape[1]`` steps of :class:`_CNNStepper` on its buffers (written so that TorchScript takes it)."""
    w_t = wr.transpose(1, 2)
    err_t = err.transpose(1, 2)
    for s in range(xc.shape[1]):
        x = xc.select(1, s)
        if one_group:
            torch.mul(k_bar, x, out=prod)
            torch.sum(prod, dim=[1], keepdim=True, out=h)
        else:
            torch.mul(k_bar, x, out=h)
        torch.baddbmm(yc.select(1, s), h_real, w_t, alpha=-1.0, out=err)
        torch.bmm(err, wr, out=delta_real)
        wr.baddbmm_(err_t, h_real, alpha=c)
        k_bar.addcmul_(delta, xc_bar.select(1, s), value=c)


_SCRIPTED_STEP_LOOP: list[Callable[..., None]] = []


def _scripted_step_loop() -> Callable[..., None]:
    """:func:`_cnn_step_loop` compiled once by TorchScript, or the Python function where that is unavailable.

    Why: a step is six kernels on ~10⁴ elements, so the ~2-9 µs of Python argument parsing and dispatch per
    kernel cost as much as the kernels (measured on the shared 2-core machine: six tiny kernels 45-47 µs a step
    from Python, 19 µs from TorchScript). TorchScript calls the same ATen kernels on the same buffers, so the
    steps are bit for bit those of the Python loop (tested); it runs with graph optimizations off
    (``torch.jit.optimized_execution(False)``), so no fuser may change their rounding. ``torch.jit.script`` is
    deprecated in favour of ``torch.compile``, which generates new kernels and so changes float32 rounding.
    """
    if not _SCRIPTED_STEP_LOOP:
        loop: Callable[..., None] = _cnn_step_loop
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                loop = torch.jit.script(_cnn_step_loop)
        except Exception:  # TorchScript missing or refusing the function: the Python loop is the same steps
            loop = _cnn_step_loop
        _SCRIPTED_STEP_LOOP.append(loop)
    return _SCRIPTED_STEP_LOOP[0]


class _CNNStepper:
    """Sequential single-sample SGD steps of all ``T`` trials at once, on buffers allocated once per call.

    With ``K̄ = conj(K)`` and ``x̄ = conj(x)`` (module doc, ``c = 2λ/p``), one step for every trial is six
    tensor kernels and no allocation:

        ``h = Σ_c K̄_c ⊙ x_c``,  ``e = y − Re Σ conj(W) h``,  ``δ = Σ_i e_i W_i``,
        ``W += c e hᵀ``,  ``K̄_c += c δ ⊙ x̄_c``  (the conjugate of ``K_c += c conj(δ) ⊙ x_c``).

    Conjugation is exact, so this is bit for bit the step written with ``K``. The steps of a chunk run in
    :func:`_cnn_step_loop`, compiled by TorchScript when ``scripted`` (:func:`_scripted_step_loop`).
    """

    def __init__(
        self, state: _CNNState, data: torch.Tensor, targets: torch.Tensor, c: float, chunk: int, scripted: bool = True
    ) -> None:
        self.state, self.data, self.targets, self.c = state, data, targets, c
        t, p, g = state.trials, state.problem.num_classes, state.groups
        r = state.K_bar.shape[-1]
        dev, cdt, rdt = data.device, state.K_bar.dtype, state.Wr.dtype
        self.xc = torch.empty(t * chunk, *data.shape[1:], dtype=cdt, device=dev)
        self.xc_bar = torch.empty_like(self.xc)
        self.yc = torch.empty(t * chunk, p, dtype=rdt, device=dev)
        self.prod = torch.empty_like(state.K_bar)
        self.h = torch.empty(t, g, r, dtype=cdt, device=dev)
        self.h_real = torch.view_as_real(self.h).view(t, 1, -1)
        self.err = torch.empty(t, 1, p, dtype=rdt, device=dev)
        self.delta_real = torch.empty(t, 1, state.Wr.shape[-1], dtype=rdt, device=dev)
        self.delta = torch.view_as_complex(self.delta_real.view(t, g, r, 2))
        self.loop = _scripted_step_loop() if scripted else _cnn_step_loop

    def steps(self, idx: torch.Tensor) -> None:
        """``idx (T, B)``: the sample of each trial at each of the ``B`` steps (``B <= chunk``)."""
        state = self.state
        t, count = idx.shape
        flat = idx.reshape(-1).to(self.data.device)
        n_rows = t * count
        xc = torch.index_select(self.data, 0, flat, out=self.xc[:n_rows]).view(t, count, *self.data.shape[1:])
        xc_bar = torch.conj_physical(xc, out=self.xc_bar[:n_rows].view_as(xc))
        yc = torch.index_select(self.targets, 0, flat, out=self.yc[:n_rows]).view(t, count, 1, -1)  # (T, B, 1, p)
        with torch.jit.optimized_execution(False):
            self.loop(
                state.K_bar, state.Wr, xc, xc_bar, yc, self.prod, self.h, self.h_real, self.err,
                self.delta_real, self.delta, self.c, state.groups == 1,
            )  # fmt: skip


def _cnn_full_batch(state: _CNNState, data: torch.Tensor, targets: torch.Tensor, c: float, steps: int) -> None:
    """``steps`` full-batch GD steps on the dataset-averaged loss (the same formulas, averaged)."""
    K_bar, Wr = state.K_bar, state.Wr
    t = Wr.shape[0]
    g = state.groups
    n_samples = data.shape[0]
    for _ in range(steps):
        grad_w = torch.zeros_like(Wr)
        grad_k = torch.zeros_like(K_bar)
        for start in range(0, n_samples, _FULL_BATCH_CHUNK):
            x = data[start : start + _FULL_BATCH_CHUNK]  # (N', C, R)
            y = targets[start : start + _FULL_BATCH_CHUNK]
            prod = K_bar[:, None] * x[None]  # (T, N', C, R)
            h = prod.sum(dim=2, keepdim=True) if g == 1 else prod
            h_real = torch.view_as_real(h).reshape(t, x.shape[0], -1)
            err = y[None] - torch.bmm(h_real, Wr.transpose(1, 2))  # (T, N', p)
            grad_w += torch.bmm(err.transpose(1, 2), h_real)
            delta = torch.view_as_complex(torch.bmm(err, Wr).view(t, x.shape[0], g, -1, 2))
            grad_k += (delta.conj() * x[None]).sum(dim=1)
        Wr.add_(grad_w, alpha=c / n_samples)
        K_bar.add_(grad_k.conj(), alpha=c / n_samples)


def _run_loop(
    problem: LinearProblem,
    recorder: _Recorder,
    events: list[int],
    record_at: set[int],
    snapshot_at: set[int],
    sampling: str,
    seed: int,
    trials: int,
    advance: Callable[[int, torch.Tensor | None], None],
    record: Callable[[int], _RecordInputs],
    snapshot: Callable[[int], dict[str, np.ndarray]],
    progress: Progress | None,
    threads: int | None,
    chunk: int,
) -> str:
    """Advance from event to event; returns the divergence message ('' if none)."""
    stream = _SampleStream(problem.num_samples, sampling, seed, trials) if sampling != "full_batch" else None
    indices: Iterable[int] = range(len(events))
    if progress is not None:
        indices = progress(indices)
    done = 0
    with _cpu_threads(problem.device, threads):
        try:
            for e in indices:
                target = events[e]
                while done < target:
                    count = min(chunk, target - done)
                    advance(count, stream.take(count) if stream is not None else None)
                    done += count
                if target in record_at:
                    message = recorder.record(target, record(target), trials)
                    if message:
                        return message
                if target in snapshot_at:
                    recorder.add_snapshot(target, snapshot(target))
            return recorder.flush()
        finally:
            recorder.close()  # the record worker never outlives the call (divergence, errors)


def train_linear_cnn(
    problem: LinearProblem,
    init: CNNParameters,
    learning_rate: float,
    num_updates: int,
    *,
    sampling: Sampling = "random",
    record_every: int = 500,
    snapshot_times: Sequence[int] = (),
    record_wbar: bool = False,
    seed: int = 0,
    divergence_factor: float = 1e4,
    on_divergence: Literal["raise", "return"] = "raise",
    progress: Progress | None = None,
    threads: int | None = 1,
    record_threads: int | None = None,
    overlap_records: bool = False,
) -> LinearRun:
    """Train ``T`` independent linear CNNs (:class:`freqlens.models.linear.LinearCNN`) together.

    Args:
        problem: the prepared dataset (:meth:`LinearProblem.from_data`); its dtype/device are used.
        init: ``CNNParameters`` with ``T`` trials (``training.linear_init``); the channel mode follows
            the hidden size of ``init.weight``.
        learning_rate: ``λ`` of ``θ ← θ − λ ∇_θ (1/p)‖y − ŷ‖²``.
        num_updates: number of updates (samples for batch size 1, GD steps for ``"full_batch"``).
        sampling: ``"random"`` (uniform draws), ``"epochs"`` (shuffled epochs) or ``"full_batch"``.
        record_every: records at ``0, record_every, 2 record_every, ...`` and at ``num_updates``.
        snapshot_times: updates at which kernel and dense weights are stored.
        record_wbar: also record ``|W̄_αm|`` (one channel / ``channel_mode="sum"``).
        seed: sample-order seed; trial ``i`` uses stream ``(seed, i)``.
        divergence_factor: stop when the training loss exceeds this factor times its initial value.
        on_divergence: ``"raise"`` :class:`LinearTrainingDiverged` (with the partial run attached) or
            ``"return"`` the partial run with ``diverged=True``.
        threads: CPU threads during the call (default 1, see :func:`_cpu_threads`; ``None`` keeps torch's).
        record_threads: CPU threads for the stacked record products (:class:`_Recorder`; ``None``: as
            ``threads``). Those products are large enough to split; the steps are not.
        overlap_records: on CPU, complete the stacked record products in one worker thread while training
            goes on (:class:`_Recorder`; the same products, so the same records). Off by default: the worker
            is a second busy thread, which oversubscribes a caller that pinned one thread per core (sweeps).
    """
    lr, num_updates, record_every = _check_common(problem, learning_rate, num_updates, sampling, record_every)
    check_choice("on_divergence", on_divergence, ("raise", "return"))
    _check_threads(threads)
    _check_threads(record_threads, "record_threads")
    if not isinstance(init, CNNParameters):
        raise TypeError(f"init must be CNNParameters (see freqlens.training.linear_init), got {type(init).__name__}")
    events, record_at = _event_times(num_updates, record_every, snapshot_times)
    t0 = time.perf_counter()
    state = _CNNState(problem, init)
    if record_wbar and state.groups != 1:
        raise ValueError("record_wbar needs channel_mode='sum' (one hidden map)")
    p = problem.num_classes
    c = 2.0 * lr / p
    data = problem.cnn_data  # n x̂_R = n c(x)/√ω (module doc), made once per problem
    targets = problem.targets
    recorder = _Recorder(problem, divergence_factor, lr, "cnn", record_threads=record_threads, overlap=overlap_records)

    stepper = _CNNStepper(state, data, targets, c, _CNN_CHUNK) if sampling != "full_batch" else None

    def advance(count: int, idx: torch.Tensor | None) -> None:
        if idx is None or stepper is None:
            _cnn_full_batch(state, data, targets, c, count)
            return
        stepper.steps(idx)

    def record(step: int) -> _RecordInputs:
        frozen = state.frozen()  # the worker may evaluate it while training goes on

        def inputs() -> tuple[torch.Tensor, dict[str, np.ndarray], bool]:
            finite = frozen.finite()
            return frozen.end_to_end(), frozen.spectra(record_wbar) if finite else {}, finite

        return inputs

    def snapshot(step: int) -> dict[str, np.ndarray]:
        return state.parameters()

    message = _run_loop(
        problem, recorder, events, record_at, set(snapshot_times), sampling, seed, state.trials,
        advance, record, snapshot, progress, threads=threads, chunk=_CNN_CHUNK,
    )  # fmt: skip
    run = recorder.run(sampling, state.parameters() if not message else {}, message, time.perf_counter() - t0)
    if message and on_divergence == "raise":
        raise LinearTrainingDiverged(message, run)
    return run


# ----------------------------------------------------------------------------------- the FCNN
class _FCNNState:
    """FCNN parameters of ``T`` trials; ``W1 (T, H, D')`` acts on the real view ``φ(x)``, ``W2 (T, p, H)``."""

    def __init__(self, problem: LinearProblem, init: FCNNParameters) -> None:
        c, n, _ = problem.image_shape
        p = problem.num_classes
        if init.w1.shape[2] != c * n * n:
            raise ValueError(f"init.w1 must have D = C n² = {c * n * n} columns, got {describe(init.w1)}")
        if init.w2.shape[1] != p:
            raise ValueError(f"init.w2 must have p={p} rows, got {describe(init.w2)}")
        self.problem = problem
        dev, dt = problem.device, problem.dtype
        t, h = init.num_trials, int(init.w1.shape[1])
        rows = init.w1.to(dev, torch.float64).reshape(t, h, c, n, n)
        self.W1 = torch.view_as_real(problem.basis.coefficients(rows)).reshape(t, h, -1).to(dt).contiguous()
        self.W2 = init.w2.to(dev, dt, copy=True).contiguous()

    @property
    def trials(self) -> int:
        return int(self.W1.shape[0])

    def finite(self) -> bool:
        return bool(torch.isfinite(self.W1).all() and torch.isfinite(self.W2).all())

    def end_to_end(self) -> torch.Tensor:
        return torch.bmm(self.W2.to(torch.float64), self.W1.to(torch.float64))

    def w1_images(self, trials: int, rows: int) -> torch.Tensor:
        c = self.problem.image_shape[0]
        w1 = self.W1[:trials, :rows].to(torch.float64).reshape(trials, rows, c, -1, 2)
        return self.problem.basis.images(torch.view_as_complex(w1.contiguous()))  # (T', rows, C, n, n)

    def parameters(self) -> dict[str, np.ndarray]:
        t, h = (int(v) for v in self.W1.shape[:2])
        return {"w1": _np(self.w1_images(t, h).reshape(t, h, -1)), "w2": _np(self.W2)}


def _fcnn_chunk(state: _FCNNState, xb: torch.Tensor, yb: torch.Tensor, c: float) -> None:
    """``B`` sequential single-sample SGD steps with a lazy rank-``B`` update of ``W1`` (module doc)."""
    W1, W2 = state.W1, state.W2
    t, p, hidden = W2.shape[0], W2.shape[1], W2.shape[2]
    count = xb.shape[1]
    u0 = torch.bmm(W1, xb.transpose(1, 2))  # (T, H, B): W1_0 x_s
    gram = torch.bmm(xb, xb.transpose(1, 2))  # (T, B, B)
    acc = torch.zeros(t, hidden, count, dtype=W1.dtype, device=W1.device)  # a_s = c W2ᵀ e_s
    for s in range(count):
        u = u0[:, :, s]
        if s:
            u = u + torch.bmm(acc[:, :, :s], gram[:, :s, s : s + 1]).view(t, hidden)
        err = yb[:, s] - torch.bmm(W2, u.view(t, hidden, 1)).view(t, p)
        acc[:, :, s] = torch.bmm(err.view(t, 1, p), W2).view(t, hidden) * c
        W2.baddbmm_(err.view(t, p, 1), u.view(t, 1, hidden), alpha=c)
    W1.baddbmm_(acc, xb)


def _fcnn_full_batch(state: _FCNNState, data: torch.Tensor, targets: torch.Tensor, c: float, steps: int) -> None:
    W1, W2 = state.W1, state.W2
    n_samples = data.shape[0]
    for _ in range(steps):
        g1 = torch.zeros_like(W1)
        g2 = torch.zeros_like(W2)
        for start in range(0, n_samples, _FULL_BATCH_CHUNK):
            x = data[start : start + _FULL_BATCH_CHUNK]
            y = targets[start : start + _FULL_BATCH_CHUNK]
            hid = torch.matmul(x, W1.transpose(1, 2))  # (T, N', H)
            err = y[None] - torch.bmm(hid, W2.transpose(1, 2))  # (T, N', p)
            g2 += torch.bmm(err.transpose(1, 2), hid)
            g1 += torch.bmm(torch.bmm(W2.transpose(1, 2), err.transpose(1, 2)), x.expand(W1.shape[0], -1, -1))
        W1.add_(g1, alpha=c / n_samples)
        W2.add_(g2, alpha=c / n_samples)


def train_linear_fcnn(
    problem: LinearProblem,
    init: FCNNParameters,
    learning_rate: float,
    num_updates: int,
    *,
    sampling: Sampling = "random",
    record_every: int = 500,
    snapshot_times: Sequence[int] = (),
    snapshot_trials: int = 1,
    snapshot_rows: int = 8,
    seed: int = 0,
    divergence_factor: float = 1e4,
    on_divergence: Literal["raise", "return"] = "raise",
    progress: Progress | None = None,
    threads: int | None = 1,
    record_threads: int | None = None,
    overlap_records: bool = False,
) -> LinearRun:
    """Train ``T`` independent linear FCNNs (:class:`freqlens.models.linear.LinearFCNN`) together.

    Same protocol and arguments as :func:`train_linear_cnn`; snapshots store the first
    ``snapshot_rows`` rows of ``W1`` (as images) of the first ``snapshot_trials`` trials, and ``W2``.
    """
    lr, num_updates, record_every = _check_common(problem, learning_rate, num_updates, sampling, record_every)
    check_choice("on_divergence", on_divergence, ("raise", "return"))
    _check_threads(threads)
    _check_threads(record_threads, "record_threads")
    if not isinstance(init, FCNNParameters):
        raise TypeError(f"init must be FCNNParameters (see freqlens.training.linear_init), got {type(init).__name__}")
    snapshot_trials = check_positive_int("snapshot_trials", snapshot_trials)
    snapshot_rows = check_positive_int("snapshot_rows", snapshot_rows)
    events, record_at = _event_times(num_updates, record_every, snapshot_times)
    t0 = time.perf_counter()
    state = _FCNNState(problem, init)
    p = problem.num_classes
    c = 2.0 * lr / p
    data = problem.phi
    targets = problem.targets
    recorder = _Recorder(problem, divergence_factor, lr, "fcnn", record_threads=record_threads, overlap=overlap_records)

    def advance(count: int, idx: torch.Tensor | None) -> None:
        if idx is None:
            _fcnn_full_batch(state, data, targets, c, count)
            return
        flat = idx.reshape(-1).to(problem.device)
        xb = data.index_select(0, flat).view(state.trials, count, -1)
        yb = targets.index_select(0, flat).view(state.trials, count, p)
        _fcnn_chunk(state, xb, yb, c)

    def record(step: int) -> _RecordInputs:
        end_to_end, finite = state.end_to_end(), state.finite()  # W1 is large: the map, not a copy, is kept
        return lambda: (end_to_end, {}, finite)

    def snapshot(step: int) -> dict[str, np.ndarray]:
        st = min(snapshot_trials, state.trials)
        rows = min(snapshot_rows, int(state.W1.shape[1]))
        return {"w1": _np(state.w1_images(st, rows)), "weight": _np(state.W2)}

    message = _run_loop(
        problem, recorder, events, record_at, set(snapshot_times), sampling, seed, state.trials,
        advance, record, snapshot, progress, threads=threads, chunk=_FCNN_CHUNK,
    )  # fmt: skip
    run = recorder.run(sampling, state.parameters() if not message else {}, message, time.perf_counter() - t0)
    if message and on_divergence == "raise":
        raise LinearTrainingDiverged(message, run)
    return run
