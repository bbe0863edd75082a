"""The experiment registry: each figure family is one module that declares a config, runs and plots.

An experiment module builds an :class:`Experiment` and calls :func:`register` at import time.
``run(ctx, config)`` computes and returns an :class:`ExperimentResult` (named arrays + headline
numbers); ``plot(data, config, summary)`` only draws what ``run`` stored, so any run directory can be
re-plotted without recomputation (``freqlens replot``).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ..io import RunDirectory
from ..training.loop import EPOCH_SEED_MULTIPLIER

__all__ = [
    "Experiment",
    "ExperimentResult",
    "RunContext",
    "all_experiments",
    "get_experiment",
    "register",
]

I = TypeVar("I")

#: The multiplier of the pre-stream seed arithmetic ``seed * 1_000_003 + offset`` (legacy offsets).
LEGACY_MULTIPLIER = 1_000_003


def _check_stream_name(stream: Any) -> None:
    """A stream name is a non-empty string (plumbing)."""
    if not isinstance(stream, str) or not stream:
        raise TypeError(f"stream must be a non-empty name, got {stream!r}")


def _check_offset(name: str, value: Any) -> int:
    """A legacy offset or multiplier is an integer (plumbing)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _legacy_value(seed: int, offset: Any, multiplier: Any) -> int:
    """The pre-stream derived seed ``seed * multiplier + offset`` (plumbing)."""
    return int(seed) * _check_offset("legacy_multiplier", multiplier) + _check_offset("legacy_offset", offset)


def _legacy_call(stream: str | int, legacy_offset: int | None) -> tuple[str, int | None]:
    """``(stream name, legacy offset)`` of a generator call; a bare integer is the unnamed legacy form (plumbing)."""
    if isinstance(stream, str):
        _check_stream_name(stream)
        return stream, legacy_offset
    offset = _check_offset("offset", stream)
    if legacy_offset is not None:
        raise TypeError(f"give a stream name with legacy_offset, got offset {stream!r} and legacy_offset too")
    return f"offset {offset}", offset


@dataclass
class ExperimentResult:
    """What an experiment returns: ``data`` (every plotted array, by name; nested mappings are records that
    :func:`freqlens.io.flatten_tree` stores as ``level__level__name``) and ``summary`` (headline numbers)."""

    data: Mapping[str, Any]
    summary: dict[str, Any]


@dataclass
class RunContext:
    """Everything an experiment needs from the outside world: where to write, seed, device, data."""

    run_dir: RunDirectory
    seed: int
    device: torch.device
    data_dir: Path | None
    quick: bool
    fingerprint: str
    show_progress: bool = True
    scale: str = "full"
    #: ``(generator kind, seed) -> stream name`` of every seed derived in this run (the collision guard). Shared
    #: by ``dataclasses.replace`` copies; a pooled worker checks its own copy (its cells only).
    seed_owners: dict[tuple[str, int], str] = field(default_factory=dict, repr=False, compare=False)
    #: ``(kind, first, stop, stream, shared_with)``: seeds ``first..stop-1`` an ``EpochSampler`` of ``stream`` feeds
    #: to CPU generators (one per epoch), guarded against point seeds and other ranges of the same kind.
    seed_ranges: list[tuple[str, int, int, str, frozenset[str]]] = field(
        default_factory=list, repr=False, compare=False
    )

    def progress(
        self, iterable: Iterable[I], total: int | None = None, desc: str | None = None, unit: str = "it"
    ) -> Iterator[I]:
        """A tqdm progress bar (disabled with ``--no-progress``)."""
        return iter(
            tqdm(
                iterable,
                total=total,
                desc=desc,
                unit=unit,
                disable=not self.show_progress,
                leave=False,
                dynamic_ncols=True,
            )
        )

    def log(self, message: str) -> None:
        """Print ``message`` above the progress bars when progress is shown (plumbing)."""
        if self.show_progress:
            tqdm.write(message)

    def seed_sequence(self, stream: str, index: int = 0) -> np.random.SeedSequence:
        """The ``numpy.random.SeedSequence`` of named stream ``stream``, item ``index`` (plumbing).

        Streams are keyed by name (a stable CRC-32 of the UTF-8 name, not Python's salted ``hash``) and index, so
        two uses can only share random numbers when they use the same name and index: e.g.
        ``("white_noise", 0)`` and ``("network", 10)`` never collide, unlike ``seed * c + offset`` arithmetic.
        """
        _check_stream_name(stream)
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            raise ValueError(f"index must be an integer >= 0, got {index!r}")
        return np.random.SeedSequence(int(self.seed), spawn_key=(zlib.crc32(stream.encode()), int(index)))

    def torch_seed(
        self,
        stream: str,
        index: int = 0,
        *,
        legacy_offset: int | None = None,
        legacy_multiplier: int = LEGACY_MULTIPLIER,
        device: str = "cpu",
    ) -> int:
        """A seed for ``torch.manual_seed`` / a ``torch.Generator`` on ``device`` (plumbing).

        Named stream (default): 63 bits of ``seed_sequence(stream, index)``. ``legacy_offset=o``: the
        pre-stream arithmetic ``seed * legacy_multiplier + o`` (kept so that earlier runs stay bit-identical),
        still requested under ``stream``: when two different streams derive the same seed for the same kind
        of generator within this run, a ``ValueError`` names both (the collision guard).
        """
        if legacy_offset is None:
            _check_stream_name(stream)
            hi, lo = (int(v) for v in self.seed_sequence(stream, index).generate_state(2, dtype=np.uint32))
            value = ((hi << 32) | lo) & (2**63 - 1)
        else:
            value = _legacy_value(self.seed, legacy_offset, legacy_multiplier)
        return self._claim_seed(f"torch:{device}", value, stream)

    def seed_for(
        self,
        consumer: str,
        stream: str,
        index: int = 0,
        *,
        legacy_offset: int | None = None,
        legacy_multiplier: int = 1,
    ) -> int:
        """The integer ``seed`` argument of a function that derives its own generators from it (plumbing):
        ``consumer`` names that derivation (e.g. ``"epoch_sampler"``, ``"linear_init"``), and seeds are guarded
        among requests for the same consumer (the same integer means the same numbers only there). Named stream:
        31 bits of ``seed_sequence(stream, index)``; ``legacy_offset=o``: ``seed * legacy_multiplier + o``.
        """
        _check_stream_name(consumer)
        if legacy_offset is None:
            value = int(self.seed_sequence(stream, index).generate_state(1, dtype=np.uint32)[0]) >> 1
        else:
            _check_stream_name(stream)
            value = _legacy_value(self.seed, legacy_offset, legacy_multiplier)
        return self._claim_seed(f"seed_for:{consumer}", value, stream)

    def sampler_seed(
        self,
        stream: str,
        index: int = 0,
        *,
        legacy_offset: int | None = None,
        legacy_multiplier: int = 1,
        epochs: int | None = None,
        legacy_shared_with: tuple[str, ...] = (),
    ) -> int:
        """The ``seed`` of a :class:`freqlens.training.loop.EpochSampler`: ``seed_for("epoch_sampler", ...)``
        (plumbing). The sampler seeds a CPU ``torch.Generator`` per epoch ``e`` with ``seed * 1_000_003 + e``;
        given ``epochs`` (see :func:`freqlens.training.loop.sampler_epochs`) those seeds are guarded too, against
        every :meth:`torch_seed` on CPU and every other sampler of this run: e.g. sampler seed 0 and a network
        seeded ``seed * 1_000_003 + 1`` share one stream in epoch 1 at seed 0. ``legacy_shared_with`` names
        the streams whose legacy seeds this legacy sampler is known to share (kept only so that earlier runs stay
        bit-identical; each use says why at its call site)."""
        value = self.seed_for(
            "epoch_sampler", stream, index, legacy_offset=legacy_offset, legacy_multiplier=legacy_multiplier
        )
        if legacy_shared_with and (legacy_offset is None or epochs is None):
            raise TypeError("legacy_shared_with needs legacy_offset and epochs: only legacy seeds may be shared")
        if epochs is not None:
            count = _check_offset("epochs", epochs)
            if count < 0:
                raise ValueError(f"epochs must be >= 0, got {count}")
            first = value * EPOCH_SEED_MULTIPLIER
            self._claim_range("torch:cpu", first, first + count, stream, frozenset(legacy_shared_with))
        return value

    def generator(
        self,
        stream: str | int = 0,
        index: int = 0,
        *,
        legacy_offset: int | None = None,
        legacy_multiplier: int = LEGACY_MULTIPLIER,
        device: torch.device | str = "cpu",
    ) -> torch.Generator:
        """A ``torch.Generator`` on ``device`` seeded by :meth:`torch_seed` (plumbing): ``generator("name", i)``
        draws named stream ``(name, i)``; ``generator("name", legacy_offset=o)`` the original
        ``seed * 1_000_003 + o`` seeding. A bare integer ``generator(o)`` is the unnamed legacy form (still
        guarded, as stream ``"offset o"``)."""
        name, legacy_offset = _legacy_call(stream, legacy_offset)
        dev = torch.device(device)
        seed = self.torch_seed(
            name, index, legacy_offset=legacy_offset, legacy_multiplier=legacy_multiplier, device=dev.type
        )
        return torch.Generator(device=dev).manual_seed(seed)

    def rng(self, stream: str | int = 0, index: int = 0, *, legacy_offset: int | None = None) -> np.random.Generator:
        """A numpy generator (plumbing): ``rng("name", i)`` draws named stream ``(name, i)`` (see
        :meth:`seed_sequence`); ``rng("name", legacy_offset=o)`` (or the unnamed ``rng(o)``) keeps the original
        ``default_rng([seed, o])`` seeding, guarded against another stream asking for the same ``o``."""
        name, legacy_offset = _legacy_call(stream, legacy_offset)
        if legacy_offset is None:
            return np.random.default_rng(self.seed_sequence(name, index))
        self._claim_seed("numpy", int(legacy_offset), name)
        return np.random.default_rng([int(self.seed), int(legacy_offset)])

    def _claim_seed(self, kind: str, value: int, stream: str) -> int:
        """Record that ``stream`` uses seed ``value`` for generators of ``kind``; refuse a second stream, also one
        whose seed lies in the epoch seeds of another stream's sampler (plumbing)."""
        for k, first, stop, owner, shared in self.seed_ranges:
            if k == kind and first <= value < stop and owner != stream and stream not in shared:
                raise ValueError(
                    f"seed collision: stream {stream!r} derives {kind} seed {value}, which the sampler of stream "
                    f"{owner!r} uses for its epoch {value - first}; give one of them a named stream (no legacy_offset)"
                )
        owner = self.seed_owners.setdefault((kind, int(value)), stream)
        if owner != stream:
            raise ValueError(
                f"seed collision: stream {stream!r} derives {kind} seed {value}, which stream {owner!r} already "
                "uses in this run; give one of them a named stream (no legacy_offset) or another legacy offset"
            )
        return int(value)

    def _claim_range(self, kind: str, first: int, stop: int, stream: str, shared: frozenset[str]) -> None:
        """Record that the sampler of ``stream`` seeds generators of ``kind`` with ``first..stop-1``; refuse an
        overlap with a seed or a range of another stream not in ``shared`` (plumbing)."""
        clashes = [
            (value, owner)
            for (k, value), owner in self.seed_owners.items()
            if k == kind and first <= value < stop and owner != stream and owner not in shared
        ]
        clashes += [
            (max(first, lo), owner)
            for k, lo, hi, owner, _ in self.seed_ranges
            if k == kind and lo < stop and first < hi and owner != stream and owner not in shared
        ]
        if clashes:
            value, owner = min(clashes)
            raise ValueError(
                f"seed collision: the sampler of stream {stream!r} seeds its epoch {value - first} with {kind} seed "
                f"{value}, which stream {owner!r} already uses in this run; give one of them a named stream"
            )
        self.seed_ranges.append((kind, first, stop, stream, shared))

    def require_data(self, what: str) -> Path:
        """The user's data directory; a clear error when ``--data`` was not given."""
        if self.data_dir is None:
            raise ValueError(f"this experiment needs {what}: pass --data DIR (or set FREQLENS_DATA)")
        return self.data_dir

    def stage(self, key: str, compute: Callable[[], Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Resumable unit of work: return the stored result of ``key`` if an earlier run with the same
        configuration finished it, else compute, store atomically and return it.

        Values must be numpy-convertible (scalars become 0-d arrays).
        """
        cached = self.run_dir.load_stage(key, self.fingerprint)
        if cached is not None:
            self.log(f"[resume] stage {key!r} loaded from {self.run_dir.stage_path(key, self.fingerprint)}")
            return cached
        result = {k: np.asarray(v) for k, v in compute().items()}
        self.run_dir.save_stage(key, result, self.fingerprint)
        return result

    def checkpoint_path(self, key: str) -> Path:
        """Where a training checkpoint named ``key`` of *this* run lives: inside the run's fingerprinted stage
        folder, so a run with another config, seed, device, data or code version never resumes from it."""
        return self.run_dir.stage_path(key, self.fingerprint, suffix=".pt")


PlotFn = Callable[[Mapping[str, np.ndarray], Any, Mapping[str, Any]], dict[str, Figure]]
RunFn = Callable[[RunContext, Any], ExperimentResult]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment (one figure or figure family).

    Attributes:
        name: CLI name, e.g. ``"pinson-fig2"``.
        description: one line for ``freqlens list``.
        config_cls: a dataclass whose defaults are the **full** (paper) settings.
        run / plot: see the module docstring.
        quick: overrides applied by ``--quick`` / ``--scale quick`` (CI-sized run).
        scales: further named scales (e.g. ``"medium"``), each a mapping of overrides of the full defaults.
        needs: datasets read from ``--data``: any of ``"mnist"``, ``"cifar10"``.
        devices: device types the experiment computes on; another ``--device`` is refused before any work
            (an experiment that computes on the CPU whatever it is given must not record ``cuda``).
        paper: ``"pinson"``, ``"cbn"`` or ``"decoder"``; ``figure``: what it reproduces.
    """

    name: str
    description: str
    config_cls: type
    run: RunFn
    plot: PlotFn
    quick: Mapping[str, Any] = field(default_factory=dict)
    scales: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    devices: tuple[str, ...] = ("cpu", "cuda")
    paper: str = ""
    figure: str = ""

    def scale_names(self) -> tuple[str, ...]:
        """The scales this experiment offers: ``quick``, its own named ones, and ``full`` (the paper's)."""
        return ("quick", *[k for k in self.scales if k not in ("quick", "full")], "full")

    def scale_overrides(self, scale: str) -> Mapping[str, Any]:
        """The overrides of the full defaults that make ``scale``."""
        if scale not in self.scale_names():
            raise ValueError(f"{self.name}: scale must be one of {list(self.scale_names())}, got {scale!r}")
        if scale == "quick":
            return self.quick
        return {} if scale == "full" else self.scales[scale]

    def make_config(
        self, quick: bool = False, overrides: Mapping[str, Any] | None = None, scale: str | None = None
    ) -> Any:
        """Defaults, then the scale's overrides (``quick=True`` is ``scale="quick"``), then the user's (validated)."""
        values: dict[str, Any] = {}
        values.update(self.scale_overrides(scale if scale is not None else ("quick" if quick else "full")))
        if overrides:
            values.update(overrides)
        return build_config(self.config_cls, values, where=self.name)


def build_config(config_cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """Instantiate ``config_cls`` from a mapping, rejecting unknown keys and coercing lists to tuples."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown config keys {unknown}; valid keys are {sorted(fields)}")
    base = config_cls()
    kwargs = {}
    for key, value in values.items():
        default = getattr(base, key)
        kwargs[key] = _coerce_like(default, value, f"{where}.{key}")
    config = dataclasses.replace(base, **kwargs)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def _coerce_like(default: Any, value: Any, where: str) -> Any:
    """``value`` (from JSON or ``--set``) converted to the type of the config default, or a clear error (plumbing)."""
    if isinstance(default, tuple) and isinstance(value, list | tuple):
        if default and all(isinstance(d, tuple) for d in default):
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value.is_integer():
        return int(value)
    if default is not None and value is not None and not isinstance(value, type(default)):
        raise ValueError(f"{where} must be of type {type(default).__name__}, got {value!r}")
    return value


_REGISTRY: dict[str, Experiment] = {}
_DISCOVERED = False
_NOT_EXPERIMENTS = {"registry", "runner"}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the registry (called at import time by experiment modules)."""
    if not dataclasses.is_dataclass(experiment.config_cls):
        raise TypeError(f"{experiment.name}: config_cls must be a dataclass")
    existing = _REGISTRY.get(experiment.name)
    if existing is not None and existing.run is not experiment.run:
        raise ValueError(f"experiment name {experiment.name!r} is registered twice")
    for scale in experiment.scale_names():  # fail at import if a scale's overrides are invalid
        experiment.make_config(scale=scale)
    _REGISTRY[experiment.name] = experiment
    return experiment


def _discover() -> None:
    """Import every experiment module once, so that each registers itself (plumbing)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    from .. import experiments as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _NOT_EXPERIMENTS:
            continue
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    _DISCOVERED = True


def all_experiments() -> list[Experiment]:
    """Every registered experiment, sorted by name."""
    _discover()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_experiment(name: str) -> Experiment:
    """The registered experiment called ``name``; an unknown name raises naming ``freqlens list`` (plumbing)."""
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; `freqlens list` shows the {len(_REGISTRY)} registered ones")
    return _REGISTRY[name]
