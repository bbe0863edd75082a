"""cbn-fig2 over several networks: the ±i phase read-out against the untrained and shuffled-target baselines,
claims judged over the networks (issue 12 item 4); network 0 is the one-network run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from freqlens.analysis.statistics import HOLDS, NO_VERDICT, NOT_SIGNIFICANT
from freqlens.experiments.cbn_fig2 import _shift_claims
from freqlens.experiments.runner import run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)

SMALL = {"adam_steps": 6, "gd_steps": 0, "record_every": 2, "batch_size": 16, "cpu_threads": 1, "n_train": 32,
         "n_eval": 8, "width": 3, "depth": 6, "perturb_examples": 1, "shift_examples": 8}  # fmt: skip


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_networks_baselines_and_network_zero_unchanged(tmp_path: Path, mnist_root: Path) -> None:
    def run(name: str, **over: object) -> Path:
        return run_experiment("cbn-fig2", tmp_path / name, quick=True, data_dir=mnist_root.parent,
                              overrides={**SMALL, **over}, show_progress=False)  # fmt: skip

    one = _summary(run("one", shuffled_baseline=False))
    path = run("three", networks=3)
    three = _summary(path)
    for key in ("test_reconstruction_error", "op_norm", "cbn_rank", "perturbations", "convergence"):
        assert one[key] == three[key], key  # network 0 is the one-network run, bit for bit
    nets = three["networks"]
    assert nets["network"] == [0, 1, 2, 0, 1, 2] and nets["shuffled_targets"] == [0, 0, 0, 1, 1, 1]
    assert nets["untrained_shift_x"][3:] == [None] * 3 and all(v is not None for v in nets["untrained_shift_x"][:3])
    shifts = np.array(nets["shift_x"] + nets["shift_y"] + nets["untrained_shift_x"][:3], dtype=float)
    assert np.all((shifts >= 0) & (shifts <= 13 / 2))  # |shift| on a 13-pixel torus
    assert nets["op_norm"][0] != nets["op_norm"][3]  # the shuffled baseline trains on other targets
    assert len(three["claims"]) == 4 and all(c["n"] == 3 for c in three["claims"])
    assert all(c["verdict"] == NO_VERDICT for c in one["claims"])  # one network: no verdict
    assert (path / "scaling.png").is_file() and (path / "fig2b_perturbations.png").is_file()


def _row(trained: float, untrained: float, kept: int = 5) -> dict[str, float]:
    return {"shift_x": trained, "shift_y": trained, "untrained_shift_x": untrained, "untrained_shift_y": untrained,
            "weight_rank": kept}  # fmt: skip


def test_shift_claims_need_trained_to_beat_both_baselines() -> None:
    rows = [_row(3.1, 0.4), _row(3.3, 0.5), _row(2.9, 0.3)]
    shuffled = [_row(0.2, 0.0), _row(0.1, 0.0), _row(0.3, 0.0)]
    claims = _shift_claims(rows, shuffled, 13)
    assert [c.verdict for c in claims] == [HOLDS] * 4 and claims[0].paper == "about n/4 = 3.25 px"
    same = _shift_claims(rows, [_row(3.2, 0.0), _row(3.1, 0.0), _row(3.0, 0.0)], 13)
    assert same[1].verdict == NOT_SIGNIFICANT  # trained no further than the shuffled-target baseline
    assert {c.verdict for c in _shift_claims(rows[:2], shuffled[:2], 13)} == {NO_VERDICT}
    collapsed = _shift_claims(rows, [_row(0.0, 0.0, kept=0)] * 3, 13)
    assert "3 of 3 shuffled-target networks collapsed" in collapsed[1].note  # the baseline is named for what it is
    assert "collapsed" not in collapsed[0].note and "collapsed" not in claims[1].note
    gone = _shift_claims([rows[0], rows[1], _row(0.0, 0.4, kept=0)], shuffled, 13)  # a trained net collapsed
    assert all(c.n == 2 and c.verdict == NO_VERDICT for c in gone)
    assert "1 of 3 trained networks collapsed to a constant map" in gone[0].note
