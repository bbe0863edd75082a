"""Run an experiment into its run directory, re-plot one, or rerun from a saved ``config.json``."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets.readers import locate_dataset
from ..io import RunDirectory, config_hash, to_jsonable
from ..plots import paper_style, save_figure
from .registry import Experiment, RunContext, build_config, get_experiment

__all__ = ["check_requirements", "replot", "rerun", "resolve_data_dir", "run_experiment"]


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """``--data`` if given, else ``$FREQLENS_DATA``, else ``None``."""
    if data_dir is None:
        env = os.environ.get("FREQLENS_DATA")
        data_dir = env if env else None
    return Path(data_dir).expanduser() if data_dir is not None else None


def resolve_device(device: str) -> torch.device:
    """``device`` as a ``torch.device``; refuses names other than cpu/cuda[:N] and absent CUDA (plumbing)."""
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but this torch build sees no CUDA device")
    return torch.device(device)


def check_requirements(exp: Experiment, data_dir: Path | None) -> None:
    """Fail before any computation if the experiment needs a dataset that cannot be found."""
    for name in exp.needs:
        if data_dir is None:
            raise ValueError(f"{exp.name} needs the {name} dataset: pass --data DIR (or set FREQLENS_DATA)")
        locate_dataset(name, data_dir)


def _versions() -> dict[str, str]:
    """The versions recorded in ``config.json``: freqlens, torch, numpy, python (plumbing)."""
    from .. import __version__

    return {
        "freqlens": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def run_experiment(
    name: str,
    out: str | Path = "runs",
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    show_progress: bool = True,
) -> Path:
    """Run experiment ``name`` and write ``out/name/{config.json, data.npz, summary.json, figures}``.

    Finished stages in ``out/name/stages`` from an interrupted run with the same configuration are
    reused. Returns the run directory.
    """
    exp = get_experiment(name)
    config = exp.make_config(quick=quick, overrides=overrides)
    dev = resolve_device(device)
    data = resolve_data_dir(data_dir)
    check_requirements(exp, data)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    run_dir = RunDirectory(out, name)
    identity = {
        "experiment": name,
        "seed": seed,
        "device": str(dev),
        "config": to_jsonable(config),
        "freqlens": _versions()["freqlens"],
    }
    fingerprint = config_hash(identity)
    record: dict[str, Any] = {
        "experiment": name,
        "description": exp.description,
        "quick": quick,
        "seed": seed,
        "device": str(dev),
        "data_dir": str(data) if data is not None else None,
        "config": dataclasses.asdict(config),
        "fingerprint": fingerprint,
        "versions": _versions(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    run_dir.write_config(record)

    torch.manual_seed(seed)
    ctx = RunContext(
        run_dir=run_dir,
        seed=seed,
        device=dev,
        data_dir=data,
        quick=quick,
        fingerprint=fingerprint,
        show_progress=show_progress,
    )
    t0 = time.perf_counter()
    result = exp.run(ctx, config)
    elapsed = time.perf_counter() - t0
    run_dir.write_data(result.data)
    summary = {"experiment": name, "quick": quick, "seed": seed, "runtime_s": round(elapsed, 3), **result.summary}
    run_dir.write_summary(summary)
    _plot_into(exp, run_dir, result.data, config, summary)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run_dir.write_config(record)
    return run_dir.path


def _plot_into(
    exp: Experiment, run_dir: RunDirectory, data: Mapping[str, np.ndarray], config: Any, summary: Mapping[str, Any]
) -> list[Path]:
    """Draw the experiment's figures from saved data in the paper style and write them as PNG/PDF (plumbing)."""
    written: list[Path] = []
    with paper_style():
        figures = exp.plot(data, config, summary)
        for stem, fig in figures.items():
            written += save_figure(fig, run_dir.path / stem)
    return written


def _load_record(path: str | Path) -> tuple[Experiment, RunDirectory, dict[str, Any]]:
    """The experiment, run directory and ``config.json`` record of a finished run at ``path`` (plumbing)."""
    path = Path(path)
    cfg_file = path if path.name == RunDirectory.CONFIG else path / RunDirectory.CONFIG
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"no {RunDirectory.CONFIG} in {path}: expected a run directory written by `freqlens reproduce`"
        )
    run_dir = RunDirectory(cfg_file.parent.parent, cfg_file.parent.name)
    record = run_dir.read_config()
    for key in ("experiment", "config"):
        if key not in record:
            raise ValueError(f"{cfg_file}: missing key {key!r}; not a freqlens config.json")
    return get_experiment(record["experiment"]), run_dir, record


def replot(path: str | Path) -> list[Path]:
    """Redraw the figures of a finished run directory from its ``data.npz`` (no recomputation)."""
    exp, run_dir, record = _load_record(path)
    config = build_config(exp.config_cls, record["config"], where=exp.name)
    return _plot_into(exp, run_dir, run_dir.read_data(), config, run_dir.read_summary())


def rerun(
    path: str | Path,
    out: str | Path | None = None,
    device: str | None = None,
    data_dir: str | Path | None = None,
    show_progress: bool = True,
) -> Path:
    """Run again exactly what a ``config.json`` describes (same config and seed)."""
    exp, run_dir, record = _load_record(path)
    return run_experiment(
        exp.name,
        out=out if out is not None else run_dir.path.parent,
        quick=bool(record.get("quick", False)),
        seed=int(record.get("seed", 0)),
        device=device or str(record.get("device", "cpu")),
        data_dir=data_dir if data_dir is not None else record.get("data_dir"),
        overrides=record["config"],
        show_progress=show_progress,
    )
