"""cbn-fig2 over several networks: the ±i phase read-out against the untrained and shuffled-target baselines,
claims judged over the networks (issue 12 item 4); network 0 is the one-network run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from freqlens.analysis.statistics import HOLDS, NO_VERDICT, NOT_SIGNIFICANT
from freqlens.experiments.cbn_fig2 import Fig2Config, _position_claims, _shift_claims, position_readout
from freqlens.experiments.runner import run_experiment
from freqlens.models.circular_cnn import CircularCNN

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
    assert len(three["claims"]) == 8 and all(c["n"] == 3 for c in three["claims"])
    gains = np.array(nets["position_gain_x"] + nets["untrained_position_gain_x"][:3], dtype=float)
    assert np.all((gains >= 0) & (gains <= 1)) and nets["untrained_position_gain_y"][3:] == [None] * 3
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


def test_position_readout_of_an_untrained_circular_net_is_equivariance_exactly() -> None:
    # inputs that differ only by a circular shift along x: a circular net shifts its representation with them,
    # so arg z moves by -1 turn per 13 px of the input's centroid (R = 1) and averages to nothing at slope 0
    cfg = Fig2Config(size=13, depth=6, width=3, perturb_layer=3)
    net = CircularCNN(1, 3, 1, 6, 13, generator=torch.Generator().manual_seed(0)).double().eval()
    base = torch.rand(1, 1, 13, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    shifted = torch.cat([torch.roll(base, s, dims=-1) for s in range(13)])
    out = position_readout(net, shifted, cfg)
    assert out["position_slope_x"] == -1.0
    assert out["position_R_x"] == pytest.approx(1.0, abs=1e-12)
    assert out["position_gain_x"] == pytest.approx(1.0, abs=1e-12)  # 13 equally spaced phases: R(0) = 0


def test_position_claims_compare_the_gain_with_both_baselines() -> None:
    def row(gain: float, untrained: float) -> dict[str, float]:
        return {"position_gain_x": gain, "position_gain_y": gain, "untrained_position_gain_x": untrained,
                "untrained_position_gain_y": untrained, "weight_rank": 5}  # fmt: skip

    rows = [row(0.6, 0.58), row(0.7, 0.71), row(0.65, 0.6)]
    claims = _position_claims(rows, [row(0.1, 0.0), row(0.2, 0.0), row(0.15, 0.0)])
    assert len(claims) == 4 and claims[0].verdict == NOT_SIGNIFICANT  # no better than equivariance alone
    assert claims[1].verdict == HOLDS  # but better than the shuffled-target networks
