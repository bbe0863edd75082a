"""Sweeps (freqlens.sweeps) and pooled experiment cells (freqlens.experiments.cells).

The launcher tests run one small sweep (pinson-figS1 quick, shortened, 2 settings x 3 seeds) on every engine
that is installed and compare the per-cell data.npz bit for bit; the kill test really SIGKILLs a `freqlens
sweep` process group half-way and reruns the same command.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from freqlens.experiments.cells import map_stages
from freqlens.experiments.runner import finished_fingerprint, run_experiment
from freqlens.io import RunDirectory, read_npz
from freqlens.sweeps import flatten_numbers, mean_ci95, parse_grid_values, parse_seeds, read_manifest, sweep
from freqlens.sweeps.launchers import require

SHORT = {"trials": 2, "updates": 40, "record_every": 10}
GRID = {"sigma": [1e-4, 3e-4]}
SEEDS = range(3)


def _arrays_equal_bitwise(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


def _cell_data(out: Path) -> dict[str, dict[str, np.ndarray]]:
    manifest = read_manifest(out)
    return {c["id"]: read_npz(out / c["path"] / "data.npz") for c in manifest["cells"]}


# ----------------------------------------------------------------------------------------------- arguments
def test_parse_seeds_and_grid():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0-1,7") == [0, 1, 7]
    assert parse_seeds("5") == [5]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("a-b")
    with pytest.raises(ValueError, match="ends before"):
        parse_seeds("3-1")
    assert parse_grid_values("sigma=1e-4,2e-4") == ("sigma", [1e-4, 2e-4])
    assert parse_grid_values("depths=(2,3),(4,5)") == ("depths", [(2, 3), (4, 5)])
    assert parse_grid_values("sampling=epochs,uniform") == ("sampling", ["epochs", "uniform"])
    with pytest.raises(ValueError, match="KEY=V1"):
        parse_grid_values("sigma")


def test_mean_ci95_is_the_student_t_interval():
    mean, half = mean_ci95([1.0, 2.0, 4.0])
    s = np.std([1.0, 2.0, 4.0], ddof=1)
    assert mean == pytest.approx(7 / 3)
    assert half == pytest.approx(4.302652729911275 * s / math.sqrt(3))  # t_{0.975, 2} from the t table
    assert mean_ci95([3.0]) == (3.0, None)  # no interval from one seed


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30))
def test_mean_ci95_half_width_scales_with_the_data(values):
    m1, h1 = mean_ci95(values)
    m2, h2 = mean_ci95([2 * v for v in values])
    assert h1 is not None and h2 is not None
    assert m2 == pytest.approx(2 * m1, rel=1e-9, abs=1e-6)
    assert h2 == pytest.approx(2 * h1, rel=1e-9, abs=1e-6)


def test_flatten_numbers_keeps_numeric_scalars_only():
    summary = {"a": 1, "b": {"c": 2.5, "d": "text", "e": [1, 2], "f": True, "g": "nan"}, "h": "inf"}
    assert flatten_numbers(summary).keys() == {"a", "b.c", "b.g", "h"}
    assert math.isnan(flatten_numbers(summary)["b.g"]) and flatten_numbers(summary)["h"] == math.inf


def test_bad_arguments_fail_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="launcher must be one of"):
        sweep("pinson-figS1", GRID, SEEDS, quick=True, out=tmp_path, launcher="cluster")
    with pytest.raises(ValueError, match="unknown config keys"):
        sweep("pinson-figS1", {"not_a_key": [1, 2]}, SEEDS, quick=True, out=tmp_path)
    with pytest.raises(TypeError, match="range"):
        sweep("pinson-figS1", GRID, 3, quick=True, out=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both swept"):
        sweep("pinson-figS1", GRID, SEEDS, quick=True, out=tmp_path, overrides={"sigma": 1e-3})
    assert not (tmp_path / "sweep.json").exists()


def test_missing_engine_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"pip install 'freqlens\[ray\]'"):
        require("ray")


# ----------------------------------------------------------------------------------------------- launchers
@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    table = sweep("pinson-figS1", GRID, SEEDS, quick=True, out=out, overrides=SHORT, workers=2, threads=1)
    return out, table


def test_local_sweep_writes_cells_manifest_table_and_plot(local_sweep):
    out, table = local_sweep
    manifest = read_manifest(out)
    assert manifest["counts"] == {"finished": 6}
    assert [c["values"]["sigma"] for c in manifest["cells"]] == [1e-4] * 3 + [3e-4] * 3
    for cell in manifest["cells"]:
        assert finished_fingerprint(out / cell["path"]) == cell["fingerprint"]
        assert cell["error"] is None
    rows = (out / "sweep.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("cell,seed,sigma,status,")
    summary = RunDirectory(out / manifest["cells"][4]["path"]).read_summary()
    headline = "measured.max_abs_offdiagonal_any_trial"
    value = summary["measured"]["max_abs_offdiagonal_any_trial"]
    if isinstance(table, dict):
        assert table[headline][4] == value
    else:
        assert table[headline].iloc[4] == value
        if importlib.util.find_spec("pyarrow") is not None:
            import pandas as pd

            assert pd.read_parquet(out / "sweep.parquet")[headline].iloc[4] == value
    assert (out / "sweep_sigma.png").is_file()


def test_rerunning_a_finished_sweep_runs_nothing(local_sweep, monkeypatch):
    out, _ = local_sweep
    import freqlens.sweeps.engine as engine

    def boom(*args, **kwargs):
        raise AssertionError("a finished cell was launched again")

    monkeypatch.setattr(engine, "launch_local", boom)
    sweep("pinson-figS1", GRID, SEEDS, quick=True, out=out, overrides=SHORT, workers=2, threads=1)
    assert read_manifest(out)["counts"] == {"cached": 6}


def test_cells_match_a_plain_reproduce_run(local_sweep, tmp_path):
    out, _ = local_sweep
    cell = read_manifest(out)["cells"][3]
    path = run_experiment(
        "pinson-figS1", tmp_path, quick=True, seed=cell["seed"], overrides={**SHORT, **cell["values"]},
        show_progress=False,
    )  # fmt: skip
    assert _arrays_equal_bitwise(read_npz(path / "data.npz"), read_npz(out / cell["path"] / "data.npz"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed: pip install 'freqlens[ray]'")
def test_ray_gives_the_local_numbers(local_sweep, tmp_path):
    out, _ = local_sweep
    sweep("pinson-figS1", GRID, SEEDS, quick=True, out=tmp_path, overrides=SHORT, launcher="ray", workers=2)
    assert read_manifest(tmp_path)["counts"] == {"finished": 6}
    local, ray_cells = _cell_data(out), _cell_data(tmp_path)
    assert local.keys() == ray_cells.keys()
    assert all(_arrays_equal_bitwise(local[k], ray_cells[k]) for k in local)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("submitit") is None, reason="submitit not installed: pip install 'freqlens[slurm]'"
)
def test_submitit_local_executor_gives_the_local_numbers(local_sweep, tmp_path):
    out, _ = local_sweep
    sweep(
        "pinson-figS1", GRID, SEEDS, quick=True, out=tmp_path, overrides=SHORT, launcher="slurm",
        slurm_executor="local", slurm={"timeout_min": 20},
    )  # fmt: skip
    assert read_manifest(tmp_path)["counts"] == {"finished": 6}
    local, slurm_cells = _cell_data(out), _cell_data(tmp_path)
    assert local.keys() == slurm_cells.keys()
    assert all(_arrays_equal_bitwise(local[k], slurm_cells[k]) for k in local)


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path):
    # lr_cnn=1e4 makes the linear CNN diverge at run time (the config itself is valid).
    table = sweep(
        "pinson-figS1", {"lr_cnn": [5e-4, 1e4]}, [0], quick=True, out=tmp_path, overrides=SHORT, workers=2, threads=1
    )
    cells = {c["values"]["lr_cnn"]: c for c in read_manifest(tmp_path)["cells"]}
    assert cells[5e-4]["status"] == "finished" and cells[5e-4]["error"] is None
    assert cells[1e4]["status"] == "failed"
    assert "RunFailed" in cells[1e4]["error"] and "\n" not in cells[1e4]["error"]
    assert len(table["cell"]) == 1


# ----------------------------------------------------------------------------------------------- kill -9
@pytest.mark.slow
def test_kill_9_then_the_same_command_runs_only_the_missing_cells(tmp_path):
    out = tmp_path / "sweep"
    cmd = [
        sys.executable, "-m", "freqlens", "sweep", "pinson-figS1", "--quick", "--grid", "sigma=1e-4,2e-4,3e-4,4e-4",
        "--seeds", "0", "--set", "trials=2", "--set", "updates=300", "--out", str(out), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    cells = out / "cells"
    deadline = time.monotonic() + 900
    finished: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        finished = [p for p in cells.glob("*") if finished_fingerprint(p)] if cells.is_dir() else []
        if finished:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.communicate()[0].decode()}"
    assert finished, "no cell finished in time"
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its pool workers, as a crash would
    proc.wait()
    before = {p.name: (p / "data.npz").stat().st_mtime_ns for p in cells.glob("*") if finished_fingerprint(p)}
    assert 1 <= len(before) < 4
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    manifest = read_manifest(out)
    status = {c["id"]: c["status"] for c in manifest["cells"]}
    assert {k for k, v in status.items() if v == "cached"} == set(before)
    assert {k for k, v in status.items() if v == "finished"} == set(status) - set(before)
    for name, mtime in before.items():
        assert (cells / name / "data.npz").stat().st_mtime_ns == mtime  # not rewritten
    assert f"{len(before)} already finished, {4 - len(before)} to run" in rerun.stdout
    assert not list(out.rglob("*.tmp")), "a half-written file was left behind"


# ----------------------------------------------------------------------------------------------- cells
def _square(ctx, value):
    return {"value": np.asarray(value, dtype=np.float64) ** 2, "seed": ctx.seed}


def _fail_on_three(ctx, value):
    if value == 3:
        raise ValueError("three is not allowed")
    return {"value": np.asarray(value)}


def _ctx(tmp_path):
    import torch

    from freqlens.experiments.registry import RunContext

    return RunContext(RunDirectory(tmp_path), 7, torch.device("cpu"), None, True, "abc123", show_progress=False)


def test_map_stages_serial_and_pooled_agree_and_resume(tmp_path):
    cells = [(f"c{i}", i) for i in range(4)]
    pooled = map_stages(_ctx(tmp_path / "a"), cells, _square, workers=2)
    serial = map_stages(_ctx(tmp_path / "b"), cells, _square, workers=1)
    assert [float(r["value"]) for r in pooled] == [0.0, 1.0, 4.0, 9.0]
    assert all(_arrays_equal_bitwise(p, s) for p, s in zip(pooled, serial))
    # every cell is now a finished stage: a second call loads them (a failing fn would show a recomputation)
    again = map_stages(_ctx(tmp_path / "a"), cells, _fail_on_three, workers=2)
    assert [float(r["value"]) for r in again] == [0.0, 1.0, 4.0, 9.0]


def test_map_stages_raises_the_failure_and_keeps_the_other_stages(tmp_path):
    ctx = _ctx(tmp_path)
    with pytest.raises(ValueError, match="three is not allowed"):
        map_stages(ctx, [(f"c{i}", i) for i in range(5)], _fail_on_three, workers=2)
    assert ctx.run_dir.load_stage("c3", ctx.fingerprint) is None
    assert ctx.run_dir.load_stage("c0", ctx.fingerprint) is not None


def test_map_stages_rejects_bad_cells(tmp_path):
    with pytest.raises(ValueError, match="distinct stage keys"):
        map_stages(_ctx(tmp_path), [("a", 1), ("a", 2)], _square)
    with pytest.raises(ValueError, match="module-level"):
        map_stages(_ctx(tmp_path), [("a", 1), ("b", 2)], lambda ctx, v: {"v": v}, workers=2)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        map_stages(_ctx(tmp_path), [("a", 1)], _square, workers=0)


CBN_TINY = {"adam_steps": 6, "gd_steps": 2, "record_every": 2, "batch_size": 16, "cpu_threads": 1}


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("cbn-depth", {**CBN_TINY, "n_train": 16, "width": 3, "depths": (2, 3, 4), "c9_inputs": 2, "n": 6}),
        ("decoder-kernel", {"datasets": ["white"], "num_images": 4, "networks": 2, "kernel_sizes": [1, 3, 5]}),
    ],
)
def test_internal_cells_give_identical_numbers_serially_and_on_two_workers(tmp_path, request, name, overrides):
    # decoder-kernel declares CIFAR-10/MNIST as needed even when only white noise is measured
    data = request.getfixturevalue("data_root") if name == "decoder-kernel" else None
    runs = {
        w: run_experiment(
            name, tmp_path / f"w{w}", quick=True, data_dir=data, overrides={**overrides, "workers": w},
            show_progress=False,
        )
        for w in (1, 2)
    }  # fmt: skip
    assert _arrays_equal_bitwise(read_npz(runs[1] / "data.npz"), read_npz(runs[2] / "data.npz"))
    s1, s2 = (json.loads((runs[w] / "summary.json").read_text()) for w in (1, 2))
    s1.pop("runtime_s"), s2.pop("runtime_s")
    assert s1 == s2
