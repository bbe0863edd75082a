"""Run an experiment into its run directory, re-plot one, or rerun from a saved ``config.json``.

Reliability rules (one place for all of them):

* A run's **fingerprint** hashes everything that determines its numbers: experiment, scale, config, seed,
  device, the identity of every dataset file it reads (sizes and a sampled hash), the freqlens version and a
  digest of freqlens' own source. Every file a run reuses (stages, training checkpoints, trained weights)
  lives in ``stages/<fingerprint>/``, so another configuration never trusts it. Launcher settings that only
  decide which process computes a cell (:data:`LAUNCHER_FIELDS`: ``workers``) are left out, so an interrupted run
  resumed with more or fewer workers reuses its finished cells (the numbers do not depend on them: tested).
* Results are published only when the run has finished, ``config.json`` last
  (:meth:`freqlens.io.RunDirectory.publish`): a failed or interrupted run leaves the previous finished run's
  files untouched and consistent.
* One writer per run directory (a lock file with the owner's PID; a stale lock is taken over); leftover temp
  files of a killed run are removed at the next start.
* Torch's CPU thread count is pinned for the whole run (oversubscription on a shared machine costs 5-18x).
* Failures inside an experiment surface as :class:`RunFailed` (one line, the cause kept as ``__cause__``);
  invalid arguments raise ``ValueError``/``TypeError`` before any work.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import platform
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets.readers import dataset_files, locate_dataset
from ..io import RunDirectory, clean_temp_files, config_hash, file_identity, flatten_tree, to_jsonable, unflatten_tree
from ..plots import paper_style, save_figure
from ..training.linear_trainer import LinearTrainingDiverged
from ..training.loop import TrainingDiverged
from .registry import Experiment, RunContext, build_config, get_experiment

__all__ = [
    "LAUNCHER_FIELDS",
    "MAX_SEED",
    "RunFailed",
    "RunPlan",
    "check_requirements",
    "finished_fingerprint",
    "plan_run",
    "replot",
    "rerun",
    "resolve_data_dir",
    "run_experiment",
]

#: Seeds are 32-bit so that every derived stream (``seed * 1_000_003 + offset``) fits torch's 64-bit seeds.
MAX_SEED = 2**32 - 1


class RunFailed(RuntimeError):
    """An experiment failed while running (not a bad argument); the original error is ``__cause__``."""


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """``--data`` if given, else ``$FREQLENS_DATA``, else ``None`` (plumbing). Returned absolute."""
    if data_dir is None:
        env = os.environ.get("FREQLENS_DATA")
        data_dir = env if env else None
    if data_dir is None:
        return None
    if not isinstance(data_dir, str | Path):
        raise TypeError(f"data_dir must be a path, got {type(data_dir).__name__}")
    return Path(data_dir).expanduser().resolve()


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``, checked against this torch build (plumbing)."""
    text = str(device)
    if text not in ("cpu", "cuda") and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={text!r} was requested but this torch build sees no CUDA device")
        if ":" in text and int(text[5:]) >= torch.cuda.device_count():
            raise ValueError(f"device={text!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device(text)


def check_seed(seed: Any) -> int:
    """A seed is an integer in ``[0, MAX_SEED]`` (integer-like numpy scalars accepted) (plumbing)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r} ({type(seed).__name__})")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {int(seed)}")
    return int(seed)


def check_threads(threads: Any) -> int | None:
    """``None`` (the config's ``cpu_threads`` if set, else 1) or a positive integer (plumbing)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or int(threads) < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def check_requirements(exp: Experiment, data_dir: Path | None) -> None:
    """Fail before any computation if the experiment needs a dataset that cannot be found."""
    for name in exp.needs:
        if data_dir is None:
            raise ValueError(f"{exp.name} needs the {name} dataset: pass --data DIR (or set FREQLENS_DATA)")
        locate_dataset(name, data_dir)


def _versions() -> dict[str, str]:
    """The versions recorded in ``config.json``: freqlens, torch, numpy, python (plumbing)."""
    from .._version import __version__

    return {
        "freqlens": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """Hash of freqlens' own ``*.py`` files: a code change invalidates every reused file (plumbing)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def data_identity(exp: Experiment, data_dir: Path | None) -> dict[str, Any]:
    """Sizes and sampled hashes of the dataset files the experiment reads (plumbing)."""
    if data_dir is None:
        return {}
    return {name: file_identity(dataset_files(name, data_dir)) for name in exp.needs}


#: Config fields that choose how cells are spread over processes, never what a cell computes: left out of the
#: fingerprint (module docstring). ``cpu_threads`` is not one of them: the thread count can change the order of
#: floating-point reductions.
LAUNCHER_FIELDS: frozenset[str] = frozenset({"workers"})


@dataclass(frozen=True)
class RunPlan:
    """Everything that determines one run, checked, and its fingerprint (see the module docstring)."""

    experiment: Experiment
    config: Any
    scale: str
    seed: int
    device: torch.device
    data_dir: Path | None
    data: Mapping[str, Any]
    fingerprint: str

    @property
    def quick(self) -> bool:
        """Whether this run uses the quick scale (plumbing)."""
        return self.scale == "quick"

    def identity(self) -> dict[str, Any]:
        """What the fingerprint hashes (the config without its :data:`LAUNCHER_FIELDS`)."""
        config = {k: v for k, v in to_jsonable(self.config).items() if k not in LAUNCHER_FIELDS}
        return {
            "experiment": self.experiment.name,
            "scale": self.scale,
            "seed": self.seed,
            "device": str(self.device),
            "config": config,
            "data": to_jsonable(self.data),
            "freqlens": _versions()["freqlens"],
            "source": source_digest(),
        }


def plan_run(
    name: str,
    *,
    scale: str | None = None,
    quick: bool = False,
    seed: Any = 0,
    device: str | torch.device = "cpu",
    data_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunPlan:
    """Check every argument of a run and compute its fingerprint, without running anything.

    ``quick=True`` is ``scale="quick"``; asking for both a scale and ``quick`` with different meanings is an
    error. Datasets named in the experiment's ``needs`` must be found under ``data_dir``.
    """
    exp = get_experiment(name)
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    if scale is not None and not isinstance(scale, str):
        raise TypeError(f"scale must be a string, got {scale!r}")
    if quick and scale not in (None, "quick"):
        raise ValueError(f"quick=True contradicts scale={scale!r}; pass one of them")
    chosen = scale if scale is not None else ("quick" if quick else "full")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TypeError(f"overrides must be a mapping of config keys to values, got {type(overrides).__name__}")
    config = exp.make_config(scale=chosen, overrides=overrides)
    seed = check_seed(seed)
    dev = resolve_device(device)
    if dev.type not in exp.devices:
        raise ValueError(
            f"{exp.name} computes on {' or '.join(exp.devices)} only; device={str(dev)!r} is not supported by it"
        )
    data = resolve_data_dir(data_dir)
    check_requirements(exp, data)
    ident = data_identity(exp, data)
    plan = RunPlan(exp, config, chosen, seed, dev, data, ident, fingerprint="")
    return dataclasses.replace(plan, fingerprint=config_hash(plan.identity()))


def finished_fingerprint(run_path: str | Path) -> str | None:
    """The fingerprint of the finished run published in ``run_path``, or ``None`` (none, unfinished, damaged)."""
    cfg = Path(run_path) / RunDirectory.CONFIG
    if not cfg.is_file():
        return None
    try:
        record = RunDirectory(run_path).read_config()
    except (ValueError, OSError):
        return None
    fp = record.get("fingerprint")
    if not record.get("finished") or not isinstance(fp, str):
        return None
    data = Path(run_path) / RunDirectory.DATA
    return fp if data.is_file() else None


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Torch's intra-op CPU threads set to ``count`` for the body (``count <= 0`` leaves them), restored after.

    The one thread pin of freqlens (plumbing): the runner wraps every run in it, and experiments that pin a
    stage of their own use it too. Small models on a shared CPU run much faster on one thread (no OpenMP
    spin-waiting, no oversubscription); CUDA runs are pinned as well, for their data preparation and analysis.
    """
    before = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _thread_count(config: Any, threads: int | None) -> int:
    """CPU threads: the argument, else ``$FREQLENS_THREADS``, else the config's ``cpu_threads``, else 1 (plumbing)."""
    if threads is not None:
        return threads
    env = os.environ.get("FREQLENS_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"FREQLENS_THREADS must be a positive integer, got {env!r}")
        return int(env)
    configured = getattr(config, "cpu_threads", 0)
    return int(configured) if isinstance(configured, int) and configured > 0 else 1


def _learning_rate_keys(config: Any) -> list[str]:
    """The config fields that are learning rates, for the hint after a divergence (plumbing)."""
    return [f.name for f in dataclasses.fields(config) if "lr" in f.name.split("_") or f.name.startswith("lr")]


def _failure(plan: RunPlan, exc: BaseException) -> RunFailed:
    """A one-line :class:`RunFailed` for ``exc``, with a learning-rate hint after a divergence (plumbing)."""
    name = plan.experiment.name
    if isinstance(exc, TrainingDiverged | LinearTrainingDiverged):
        keys = _learning_rate_keys(plan.config)
        hint = f"; lower it with --set {keys[0]}=VALUE" if len(keys) == 1 else ""
        if len(keys) > 1:
            hint = f"; lower it with --set KEY=VALUE (learning-rate keys: {', '.join(keys)})"
        return RunFailed(f"{name}: {exc}{hint}; finished stages are kept and reused")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return RunFailed(f"{name} failed: {type(exc).__name__}: {text}")


def run_experiment(
    name: str,
    out: str | Path = "runs",
    quick: bool = False,
    seed: Any = 0,
    device: str | torch.device = "cpu",
    data_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    show_progress: bool = True,
    *,
    scale: str | None = None,
    run_path: str | Path | None = None,
    threads: int | None = None,
) -> Path:
    """Run experiment ``name`` and publish ``config.json``, ``data.npz``, ``summary.json`` and the figures.

    The run directory is ``run_path`` if given, else ``out/name``. Finished stages of an interrupted run with
    the same fingerprint are reused; the results are published only when everything has finished. ``threads``
    pins torch's CPU threads (default: the config's ``cpu_threads`` if set, else ``$FREQLENS_THREADS``, else 1).
    Returns the run directory. Raises :class:`RunFailed` when the experiment itself fails.
    """
    plan = plan_run(name, scale=scale, quick=quick, seed=seed, device=device, data_dir=data_dir, overrides=overrides)
    threads = check_threads(threads)
    if not isinstance(out, str | Path):
        raise TypeError(f"out must be a folder path, got {type(out).__name__}")
    run_dir = RunDirectory(run_path) if run_path is not None else RunDirectory(out, name)
    exp, config = plan.experiment, plan.config
    n_threads = _thread_count(config, threads)
    record: dict[str, Any] = {
        "experiment": name,
        "description": exp.description,
        "scale": plan.scale,
        "quick": plan.quick,
        "seed": plan.seed,
        "device": str(plan.device),
        "data_dir": str(plan.data_dir) if plan.data_dir is not None else None,
        "data_identity": plan.data,
        "config": dataclasses.asdict(config),
        "fingerprint": plan.fingerprint,
        "threads": n_threads,
        "versions": {**_versions(), "source": source_digest()},
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with run_dir.locked():
        clean_temp_files(run_dir.path)
        ctx = RunContext(
            run_dir=run_dir,
            seed=plan.seed,
            device=plan.device,
            data_dir=plan.data_dir,
            quick=plan.quick,
            fingerprint=plan.fingerprint,
            show_progress=show_progress,
            scale=plan.scale,
        )
        t0 = time.perf_counter()
        with cpu_threads(n_threads):
            torch.manual_seed(plan.seed)
            try:
                result = exp.run(ctx, config)
            except (KeyboardInterrupt, RunFailed):
                raise
            except Exception as exc:
                raise _failure(plan, exc) from exc
            elapsed = time.perf_counter() - t0
            summary = {
                "experiment": name,
                "scale": plan.scale,
                "quick": plan.quick,
                "seed": plan.seed,
                "runtime_s": round(elapsed, 3),
                **result.summary,
            }
            staged = run_dir.stages_dir(plan.fingerprint) / "result"
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir(parents=True)
            flat = flatten_tree(result.data)
            RunDirectory(staged).write_data(flat)
            RunDirectory(staged).write_summary(summary)
            _plot_into(exp, staged, flat, config, summary)
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record["runtime_s"] = round(time.perf_counter() - t0, 3)
        run_dir.publish(staged, record)
        staged.rmdir()
    return run_dir.path


def _plot_into(
    exp: Experiment, folder: Path, data: Mapping[str, np.ndarray], config: Any, summary: Mapping[str, Any]
) -> list[Path]:
    """Draw the experiment's figures from saved data in the paper style, write them as PNG/PDF (plumbing).

    ``plot`` gets the nested result back (:func:`freqlens.io.unflatten_tree`), in a run and in a replot alike."""
    written: list[Path] = []
    with paper_style():
        figures = exp.plot(unflatten_tree(data), config, summary)
        for stem, fig in figures.items():
            written += save_figure(fig, folder / stem)
    return written


def _strict(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: Path, default: Any) -> Any:
    """A value of a saved ``config.json`` with the exact JSON type it must have (no coercion)."""
    if key not in record:
        return default
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{where}: {key!r} must be {names}, got {value!r}")
    return value


def _load_record(path: str | Path) -> tuple[Experiment, RunDirectory, dict[str, Any]]:
    """The experiment, run directory and ``config.json`` record of a finished run at ``path`` (plumbing)."""
    path = Path(path).expanduser()
    cfg_file = path if path.name == RunDirectory.CONFIG else path / RunDirectory.CONFIG
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"no finished run in {cfg_file.parent}: {RunDirectory.CONFIG} is missing (a run writes it when it "
            "finishes; an interrupted run resumes with the same `freqlens reproduce` command)"
        )
    run_dir = RunDirectory(cfg_file.parent)
    record = run_dir.read_config()
    if not isinstance(record, dict):
        raise ValueError(f"{cfg_file}: not a freqlens config.json (expected a JSON object)")
    for key in ("experiment", "config"):
        if key not in record:
            raise ValueError(f"{cfg_file}: missing key {key!r}; not a freqlens config.json")
    _strict(record, "experiment", str, cfg_file, None)
    _strict(record, "config", dict, cfg_file, None)
    return get_experiment(record["experiment"]), run_dir, record


def replot(path: str | Path) -> list[Path]:
    """Redraw the figures of a finished run directory from its ``data.npz`` (no recomputation)."""
    exp, run_dir, record = _load_record(path)
    if not record.get("finished"):
        raise ValueError(f"{run_dir.path}: the run described by config.json has not finished; nothing to replot")
    config = build_config(exp.config_cls, record["config"], where=exp.name)
    with run_dir.locked():
        try:
            return _plot_into(exp, run_dir.path, run_dir.read_data(), config, run_dir.read_summary())
        except KeyError as exc:
            # data.npz of an earlier freqlens may name its arrays differently (flat names before nested records)
            written = record.get("versions", {}).get("freqlens", "an unknown version")
            raise ValueError(
                f"{run_dir.path}: data.npz has no array {exc} that {exp.name}'s plot needs (written by freqlens "
                f"{written}); recompute it with `freqlens rerun {run_dir.path}`"
            ) from exc


def rerun(
    path: str | Path,
    out: str | Path | None = None,
    device: str | None = None,
    data_dir: str | Path | None = None,
    show_progress: bool = True,
    threads: int | None = None,
) -> Path:
    """Run again exactly what a ``config.json`` describes (same scale, config and seed).

    The rerun goes into the same run directory, or into ``out/<experiment>`` when ``out`` is given. Values of
    the saved file are type-checked strictly (``"quick": "false"`` or ``"seed": 1.5`` are errors).
    """
    exp, run_dir, record = _load_record(path)
    where = run_dir.path / RunDirectory.CONFIG
    quick = _strict(record, "quick", bool, where, False)
    scale = _strict(record, "scale", str, where, None)
    seed = _strict(record, "seed", int, where, 0)
    saved_device = _strict(record, "device", str, where, "cpu")
    saved_data = _strict(record, "data_dir", (str, type(None)), where, None)
    if scale is not None and quick != (scale == "quick"):
        raise ValueError(f"{where}: 'quick' ({quick}) and 'scale' ({scale!r}) disagree")
    return run_experiment(
        exp.name,
        out=out if out is not None else "runs",
        quick=quick if scale is None else False,
        scale=scale,
        seed=seed,
        device=device or saved_device,
        data_dir=data_dir if data_dir is not None else saved_data,
        overrides=record["config"],
        show_progress=show_progress,
        run_path=None if out is not None else run_dir.path,
        threads=threads,
    )
