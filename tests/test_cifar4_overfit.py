"""pinson-cifar4-overfit: the overfitting statistic on known curves, and a tiny end-to-end run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from freqlens.analysis.linear_dynamics_metrics import rises_after_discovery
from freqlens.experiments.runner import run_experiment
from freqlens.io import read_json, read_npz

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rise_is_measured_from_the_last_discovery_time_not_the_test_minimum() -> None:
    t = np.array([0, 10, 20, 30, 40])
    loss = np.array([[1.0, 0.5, 0.2, 0.4, 0.6], [1.0, 0.8, 0.6, 0.5, 0.7], [1.0, 0.9, 0.8, 0.7, 0.6]])
    half = np.array([[10.0, 20.0], [5.0, 30.0], [10.0, np.inf]])  # trial 2 never finds mode 1
    rise = rises_after_discovery(t, loss, half)
    # trial 0: last discovery at 20 -> 0.6 - 0.2; trial 1: at 30 -> 0.7 - 0.5 (its minimum); trial 2: nan
    np.testing.assert_allclose(rise[:2], [0.4, 0.2], rtol=0, atol=1e-15)
    assert np.isnan(rise[2])
    # a discovery between two records is measured at the next record (the first one where a >= s/2 was seen)
    np.testing.assert_allclose(rises_after_discovery(t, loss[:1], np.array([[10.0, 15.0]])), [0.4], atol=1e-15)


def test_tiny_run_reports_landmarks_and_a_claim(tmp_path: Path, cifar_root: Path) -> None:
    out = run_experiment(
        "pinson-cifar4-overfit", out=tmp_path, quick=True, data_dir=cifar_root.parent, show_progress=False,
        overrides={"train_per_class": 30, "test_per_class": 20, "updates": 1500, "record_every": 100,
                   "hidden": 32, "lr_fcnn": 2e-2, "sigma": 1e-3},
    )  # fmt: skip
    data, summary = dict(read_npz(out / "data.npz")), read_json(out / "summary.json")
    assert data["loss_test"].shape == data["loss_train"].shape == (3, 16)
    assert data["half"].shape == (3, 3) and data["A"].shape == (3, 16, 3)  # mean subtracted: 3 modes
    measured = summary["measured"]
    assert measured["train_images"] == 120
    claim = summary["claims"][0]
    found = int(np.isfinite(data["half"]).all(axis=1).sum())
    assert measured["trials_all_modes_found"] == found
    assert (claim["verdict"] == "not reached") == (found < 3)
    if found >= 3:  # the claim's number is the mean of the per-trial rises
        assert claim["measured"] == pytest.approx(float(np.nanmean(data["rise"])), abs=1e-6)
    assert (out / "cifar4_overfit.png").is_file()
