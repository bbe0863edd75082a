"""cbn-fig4 over several networks: per-network rows, the phase read-out baselines (untrained, shuffled targets)
and the claims judged over the networks (issue 12 item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from freqlens.analysis.statistics import CONTRADICTED, HOLDS, NO_VERDICT, NOT_REACHED
from freqlens.experiments.cbn_fig4 import _pairs_claim, _readout_claims
from freqlens.experiments.runner import run_experiment

TINY = {"adam_steps": 6, "gd_steps": 2, "record_every": 2, "batch_size": 16, "cpu_threads": 1}
SMALL = {**TINY, "n_train": 32, "n_eval": 24, "width": 3, "depth": 3, "phase_layer": 2}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_three_networks_with_baselines_and_network_zero_unchanged(tmp_path: Path) -> None:
    one = _summary(run_experiment("cbn-fig4", tmp_path / "one", quick=True, overrides=SMALL, show_progress=False))
    path = run_experiment("cbn-fig4", tmp_path / "three", quick=True, overrides={**SMALL, "networks": 3},
                          show_progress=False)  # fmt: skip
    three = _summary(path)
    # the scaling curves of every network (kept count and norm against steps), drawn with the paper's count
    data = np.load(path / "data.npz")
    assert data["scaling__network_2_shuffled__kept_weights"].shape == data["scaling__network_2_shuffled__step"].shape
    assert (path / "scaling.png").is_file() and (path / "fig4b_baselines.png").is_file()
    # network 0 is the one-network run, bit for bit: its headline numbers do not move
    for key in ("test_error", "op_norm", "cbn_rank", "phase_readout"):
        assert one[key] == three[key], key
    nets = three["networks"]
    assert nets["network"] == [0, 1, 2, 0, 1, 2] and nets["shuffled_targets"] == [0, 0, 0, 1, 1, 1]
    assert nets["untrained_position_R_x"][3:] == [None] * 3  # the untrained baseline is read on trained rows only
    assert all(v is not None for v in nets["untrained_position_R_x"][:3])
    assert len(set(nets["op_norm"][:3])) == 3  # own initial weights and batches per network
    # the shuffled baseline trains on other targets: its trajectory differs from its trained twin
    assert nets["op_norm"][0] != nets["op_norm"][3]
    claims = three["claims"]
    assert len(claims) == 5 and all(c["n"] == 3 for c in claims)
    assert claims[0]["verdict"] == NOT_REACHED  # 6 Adam steps: no network has converged
    # one network: no verdict from fewer than 3
    assert all(c["verdict"] in (NO_VERDICT, NOT_REACHED) for c in one["claims"])


def test_workers_give_the_same_numbers(tmp_path: Path) -> None:
    over = {**SMALL, "networks": 2, "shuffled_baseline": False}
    serial = _summary(run_experiment("cbn-fig4", tmp_path / "a", quick=True, overrides=over, show_progress=False))
    pooled = _summary(
        run_experiment("cbn-fig4", tmp_path / "b", quick=True, overrides={**over, "workers": 2}, show_progress=False)
    )
    assert serial["networks"] == pooled["networks"]


def _row(kept: int, settled: int = 1, trained: float = 0.9, untrained: float = 0.5) -> dict[str, float]:
    return {
        "kept_at_x": kept,
        "kept_at_y": 2,
        "op_norm": 1.0,
        "weight_rank": 11,
        "converged": 0,  # a loss still falling does not block the claim; an unsettled kept count does
        "settled": settled,
        "position_gain_x": trained,
        "velocity_gain_x": trained,
        "untrained_position_gain_x": untrained,
        "untrained_velocity_gain_x": untrained,
    }


def test_pairs_claim_needs_convergence_and_reads_the_count() -> None:
    assert _pairs_claim([_row(2), _row(2), _row(2)]).verdict == HOLDS
    assert _pairs_claim([_row(1), _row(1), _row(1)]).verdict == CONTRADICTED
    assert _pairs_claim([_row(2), _row(2, settled=0), _row(2)]).verdict == NOT_REACHED  # no vacuous pass
    assert _pairs_claim([_row(2), _row(2)]).verdict == NO_VERDICT
    gone = {**_row(0), "weight_rank": 0}  # a network collapsed to a constant map: no bottleneck to count
    two = _pairs_claim([_row(2), _row(2), gone])
    assert two.verdict == NO_VERDICT and two.n == 2 and "1 of 3 networks collapsed" in two.note
    assert _pairs_claim([gone] * 3).verdict == NOT_REACHED


def test_readout_claims_need_trained_to_beat_both_baselines() -> None:
    rng = np.random.default_rng(0)
    rows = [_row(2, trained=0.9 + 0.01 * rng.standard_normal(), untrained=0.5) for _ in range(4)]
    better = [{"position_gain_x": 0.3 + 0.01 * k, "velocity_gain_x": 0.3, "weight_rank": 5} for k in range(4)]
    assert all(c.verdict == HOLDS for c in _readout_claims(rows, better))
    worse = [{"position_gain_x": 0.99, "velocity_gain_x": 0.99 - 0.001 * k, "weight_rank": 5} for k in range(4)]
    verdicts = [c.verdict for c in _readout_claims(rows, worse)]
    assert verdicts == [HOLDS, CONTRADICTED, HOLDS, CONTRADICTED]  # untrained beaten, shuffled not
    collapsed = [{"position_gain_x": 0.0, "velocity_gain_x": 0.0, "weight_rank": 0}] * 4
    notes = [c.note for c in _readout_claims(rows, collapsed)]
    assert "4 of 4 shuffled-target networks collapsed" in notes[1] and "collapsed" not in notes[0]
    gone = _readout_claims([*rows[:3], {**rows[3], "weight_rank": 0}], better)  # a trained network collapsed
    assert all(c.n == 3 for c in gone) and "1 of 4 trained networks collapsed" in gone[0].note


def test_a_constant_phase_has_no_gain() -> None:
    """A rank-1 block makes arg z2 - arg z1 constant: R = 1 at slope 0, which is no read-out (gain 0)."""
    from freqlens.experiments.cbn_fig4 import _readout_numbers

    flat = {"slope_cycles_per_n": 0.0, "resultant": 1.0, "resultant_at_zero_slope": 1.0}
    moving = {"slope_cycles_per_n": -1.0, "resultant": 0.9, "resultant_at_zero_slope": 0.1}
    nums = _readout_numbers({a: {"position_fit": moving, "velocity_fit": flat} for a in "xy"})
    assert nums["velocity_gain_x"] == 0.0 and nums["velocity_R_x"] == 1.0
    assert nums["position_gain_x"] == pytest.approx(0.8)
