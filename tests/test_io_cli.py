"""Run directories, atomic writes, resumable stages, the registry and the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from freqlens import cli
from freqlens.experiments.registry import Experiment, ExperimentResult, RunContext, all_experiments, build_config
from freqlens.experiments.runner import replot, run_experiment
from freqlens.io import RunDirectory, atomic_write_bytes, read_npz, to_jsonable, write_npz


def test_atomic_write_leaves_no_temp_files_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a" / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_npz_roundtrip_and_validation(tmp_path: Path) -> None:
    arrays = {"a": np.arange(5.0), "b": np.eye(2, dtype=complex), "s": 3.5}
    write_npz(tmp_path / "d.npz", arrays)
    back = read_npz(tmp_path / "d.npz")
    assert np.array_equal(back["a"], arrays["a"]) and np.array_equal(back["b"], arrays["b"]) and float(back["s"]) == 3.5
    with pytest.raises(ValueError, match="identifiers"):
        write_npz(tmp_path / "e.npz", {"bad name": np.zeros(1)})
    with pytest.raises(ValueError, match="dtype object"):
        write_npz(tmp_path / "e.npz", {"x": np.array([None, 1], dtype=object)})
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable .npz"):
        read_npz(tmp_path / "junk.npz")


def test_to_jsonable() -> None:
    assert to_jsonable({"a": np.float64("nan"), "b": (1, np.int64(2)), "c": np.array([1.0, np.inf])}) == {
        "a": "nan",
        "b": [1, 2],
        "c": [1.0, "inf"],
    }


def test_stage_resume_and_fingerprint(tmp_path: Path) -> None:
    rd = RunDirectory(tmp_path, "exp")
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(3)}

    ctx = RunContext(
        run_dir=rd,
        seed=0,
        device=__import__("torch").device("cpu"),
        data_dir=None,
        quick=True,
        fingerprint="f1",
        show_progress=False,
    )
    assert ctx.stage("s1", compute)["x"].tolist() == [0, 1, 2]
    assert ctx.stage("s1", compute)["x"].tolist() == [0, 1, 2]
    assert len(calls) == 1  # second call resumed from disk
    ctx.fingerprint = "f2"  # another configuration: the stale stage is not trusted
    ctx.stage("s1", compute)
    assert len(calls) == 2
    rd.stage_path("s1", ctx.fingerprint).write_bytes(b"damaged")
    ctx.stage("s1", compute)
    assert len(calls) == 3


@dataclass(frozen=True)
class _Cfg:
    n: int = 3
    scale: float = 1.0
    sizes: tuple[int, ...] = (1, 2)


def test_build_config_validation() -> None:
    cfg = build_config(_Cfg, {"n": 5, "scale": 2, "sizes": [4, 5]})
    assert cfg == _Cfg(5, 2.0, (4, 5))
    with pytest.raises(ValueError, match="unknown config keys \\['m'\\]"):
        build_config(_Cfg, {"m": 1})
    with pytest.raises(ValueError, match="must be of type int"):
        build_config(_Cfg, {"n": "three"})


def test_registry_lists_foundation_experiments() -> None:
    names = [e.name for e in all_experiments()]
    assert {"pinson-fig2", "pinson-figS4"} <= set(names)
    for e in all_experiments():
        assert e.description and e.make_config(quick=True) is not None


def test_reproduce_fig2_run_directory_and_determinism(tmp_path: Path) -> None:
    path = run_experiment("pinson-fig2", out=tmp_path / "a", quick=True, seed=3, show_progress=False)
    files = {p.name for p in path.iterdir()}
    assert {
        "config.json",
        "data.npz",
        "summary.json",
        "fig2_structure.png",
        "fig2_structure.pdf",
        "fig2_modes.png",
        "fig2_modes.pdf",
    } <= files
    config = json.loads((path / "config.json").read_text())
    assert (
        config["experiment"] == "pinson-fig2"
        and config["seed"] == 3
        and config["config"]["n"] == 16
        and "finished" in config
    )
    summary = json.loads((path / "summary.json").read_text())
    assert len(summary["singular_values"]) == 6 and summary["off_diagonal_fraction_VtSxxV"] < 1e-12
    data = read_npz(path / "data.npz")
    again = read_npz(
        run_experiment("pinson-fig2", out=tmp_path / "b", quick=True, seed=3, show_progress=False) / "data.npz"
    )
    assert data.keys() == again.keys() and all(np.array_equal(data[k], again[k]) for k in data)
    (path / "fig2_structure.png").unlink()
    replot(path)
    assert (path / "fig2_structure.png").is_file()


def test_cli_list_and_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "pinson-fig2" in out and "needs --data: cifar10" in out
    assert cli.main(["reproduce", "pinson-figX", "--out", str(tmp_path)]) == 2
    assert "unknown experiment 'pinson-figX'" in capsys.readouterr().err
    monkeypatch.delenv("FREQLENS_DATA", raising=False)
    assert cli.main(["reproduce", "pinson-figS4", "--out", str(tmp_path)]) == 2
    assert "needs the cifar10 dataset: pass --data DIR" in capsys.readouterr().err
    assert not (tmp_path / "pinson-figS4").exists()  # failed before any work or file
    assert cli.main(["reproduce", "pinson-figS4", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err
    assert cli.main(["reproduce", "pinson-fig2", "--set", "nn=3", "--out", str(tmp_path)]) == 2
    assert "unknown config keys ['nn']" in capsys.readouterr().err
    assert cli.main(["reproduce", "pinson-fig2", "--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "device must be 'cpu' or 'cuda'" in capsys.readouterr().err


def test_cli_reproduce_with_override_and_rerun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            [
                "reproduce",
                "pinson-fig2",
                "--quick",
                "--no-progress",
                "--out",
                str(tmp_path),
                "--set",
                "n=12",
                "--set",
                "shapes=['ring','cross','square']",
            ]
        )
        == 0
    )
    cfg = json.loads((tmp_path / "pinson-fig2" / "config.json").read_text())
    assert cfg["config"]["n"] == 12 and cfg["config"]["shapes"] == ["ring", "cross", "square"]
    before = read_npz(tmp_path / "pinson-fig2" / "data.npz")
    assert cli.main(["rerun", str(tmp_path / "pinson-fig2"), "--no-progress"]) == 0
    after = read_npz(tmp_path / "pinson-fig2" / "data.npz")
    assert np.array_equal(before["S"], after["S"]) and before["S"].shape == (3,)


def test_reproduce_all_skips_missing_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FREQLENS_DATA", raising=False)
    assert (
        cli.main(["reproduce", "pinson-fig2", "pinson-figS4", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    )
    err = capsys.readouterr().err
    assert "[skip] pinson-figS4" in err and (tmp_path / "pinson-fig2" / "data.npz").is_file()


def test_figS4_quick_real(cifar_root: Path, tmp_path: Path) -> None:
    path = run_experiment("pinson-figS4", out=tmp_path, quick=True, data_dir=cifar_root.parent, show_progress=False)
    summary = json.loads((path / "summary.json").read_text())
    assert summary["rank"] == 3  # mean subtraction removes one mode
    assert summary["s_last_over_s0"] < 1e-12
    assert {"figS4_cifar4_structure.png", "figS4_cifar4_structure.pdf"} <= {p.name for p in path.iterdir()}


def test_experiment_register_rejects_non_dataclass() -> None:
    from freqlens.experiments.registry import register

    with pytest.raises(TypeError, match="must be a dataclass"):
        register(Experiment("x", "y", int, lambda c, g: ExperimentResult({}, {}), lambda d, c, s: {}))
