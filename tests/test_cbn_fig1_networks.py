"""cbn-fig1 over several networks: per-network rows, the claims judged over the networks (issue 12 item 4) and a
medium scale; network 0 is the one-network run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freqlens.analysis.statistics import CONTRADICTED, HOLDS, NO_VERDICT, NOT_REACHED, NOT_SIGNIFICANT
from freqlens.experiments.cbn_fig1 import _fig1_claims
from freqlens.experiments.runner import run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)

SMALL = {"adam_steps": 6, "gd_steps": 2, "record_every": 2, "batch_size": 16, "cpu_threads": 1, "n_train": 32,
         "n_eval": 16, "width": 3, "depth": 4, "warmup_steps": 2}  # fmt: skip


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def _row(weights: int, away: int = 0, settled: int = 1, activations: int | None = None) -> dict[str, float]:
    acts = weights if activations is None else activations
    return {"weight_rank": weights, "activation_rank": acts, "weights_nonconstant": away,
            "activations_nonconstant": away, "converged": 0, "settled": settled}  # fmt: skip


def test_claims_read_the_count_and_the_constant_frequencies() -> None:
    count, constant, act_count, act_constant = _fig1_claims([_row(6), _row(6), _row(6)])
    assert count.verdict == constant.verdict == act_count.verdict == act_constant.verdict == HOLDS
    assert count.n == 3 and "directions away from omega=0 per network [0, 0, 0]" in count.note
    count, constant, _, _ = _fig1_claims([_row(9, 8), _row(10, 9), _row(9, 8)])  # the quick runs' set
    assert count.verdict == constant.verdict == CONTRADICTED
    assert _fig1_claims([_row(6), _row(6)])[0].verdict == NO_VERDICT  # two networks: no verdict
    count, *_ = _fig1_claims([_row(4), _row(3), _row(7, 6)])  # the medium run's counts: [-0.5, 9.8] holds 5 and 7
    assert count.verdict == NOT_SIGNIFICANT and "too wide" in count.note
    count, *_ = _fig1_claims([_row(6), _row(6, settled=0), _row(6)])
    assert count.verdict == NOT_REACHED and "1 of 3 networks have not settled" in count.note  # no vacuous pass
    count, *_ = _fig1_claims([_row(6), _row(40), _row(6)])
    assert count.verdict == NOT_REACHED and "has not formed" in count.note
    count, *_ = _fig1_claims([_row(6), _row(6), _row(6), _row(0, activations=1)])
    assert count.verdict == HOLDS and count.n == 3 and "1 of 4 networks collapsed" in count.note


@pytest.mark.slow
def test_networks_rows_and_network_zero_unchanged(tmp_path: Path, mnist_root: Path) -> None:
    data_dir = mnist_root.parent
    one = _summary(run_experiment("cbn-fig1", tmp_path / "one", quick=True, data_dir=data_dir, overrides=SMALL,
                                  show_progress=False))  # fmt: skip
    path = run_experiment("cbn-fig1", tmp_path / "three", quick=True, data_dir=data_dir,
                          overrides={**SMALL, "networks": 3, "workers": 2}, show_progress=False)  # fmt: skip
    three = _summary(path)
    for key in ("test_accuracy", "op_norm", "cbn_rank", "fc_head_singular_values", "last_conv_layers"):
        assert one[key] == three[key], key  # network 0 is the one-network run, bit for bit
    nets = three["networks"]
    assert nets["network"] == [0, 1, 2] and len(set(nets["op_norm"])) == 3  # own initial weights and batches
    assert nets["weight_rank"][0] == three["cbn_rank"]["weights"]["rank"]
    assert all(0 <= a <= k for a, k in zip(nets["weights_nonconstant"], nets["weight_rank"], strict=True))
    assert [c["n"] for c in three["claims"]] == [3, 3, 3, 3]
    assert (path / "scaling.png").is_file() and (path / "fig1_spectra.png").is_file()
