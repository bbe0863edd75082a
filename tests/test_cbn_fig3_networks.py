"""cbn-fig3 over several networks: per-network rows, scaling curves and the claims judged over the networks
(issue 12 items 4, 5); network 0 is the one-network run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from freqlens.experiments.runner import plan_run, run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)

SMALL = {"adam_steps": 6, "gd_steps": 2, "record_every": 2, "batch_size": 16, "cpu_threads": 1, "n_train": 32,
         "n_eval": 16, "width": 3, "depth": 4}  # fmt: skip


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_networks_rows_scaling_and_network_zero_unchanged(tmp_path: Path) -> None:
    one = _summary(run_experiment("cbn-fig3", tmp_path / "one", quick=True, overrides=SMALL, show_progress=False))
    path = run_experiment("cbn-fig3", tmp_path / "three", quick=True, overrides={**SMALL, "networks": 3},
                          show_progress=False)  # fmt: skip
    three = _summary(path)
    for key in ("test_reconstruction_error", "op_norm", "cbn_rank", "weights_vs_expected", "convergence"):
        assert one[key] == three[key], key  # network 0 is the one-network run, bit for bit
    nets = three["networks"]
    assert nets["network"] == [0, 1, 2] and len(set(nets["op_norm"])) == 3  # own initial weights and batches
    assert nets["weight_rank"][0] == three["cbn_rank"]["weights"]["rank"]
    for key in ("weights", "activations"):
        found, missing = np.array(nets[f"{key}_found"]), np.array(nets[f"{key}_missing"])
        assert np.all(found + missing == len(three["expected_frequencies"]))
    claims = three["claims"]
    assert [c["n"] for c in claims] == [3, 3] and all(c["verdict"] == "not reached" for c in claims)  # 6 steps
    data = np.load(path / "data.npz")
    assert data["scaling__network_2__kept_weights"].shape == data["scaling__network_2__step"].shape
    assert (path / "scaling.png").is_file() and (path / "fig3_spectra.png").is_file()


def test_workers_give_the_same_numbers(tmp_path: Path) -> None:
    over = {**SMALL, "networks": 2}
    serial = _summary(run_experiment("cbn-fig3", tmp_path / "a", quick=True, overrides=over, show_progress=False))
    pooled = _summary(
        run_experiment("cbn-fig3", tmp_path / "b", quick=True, overrides={**over, "workers": 2}, show_progress=False)
    )
    assert serial["networks"] == pooled["networks"]


@pytest.mark.parametrize("name", ["cbn-fig1", "cbn-fig2", "cbn-fig3", "cbn-fig4"])
def test_medium_scale_is_offered_judged_over_three_networks_and_longer_than_quick(name: str) -> None:
    from freqlens.experiments.registry import get_experiment

    exp = get_experiment(name)
    assert exp.scale_names() == ("quick", "medium", "full")
    quick, medium = exp.make_config(scale="quick"), exp.make_config(scale="medium")
    assert medium.networks >= 3  # a verdict needs 3 networks (analysis.statistics.MIN_SAMPLES)
    assert medium.adam_steps > quick.adam_steps and medium.adam_schedule == "cosine"
    assert medium.width == quick.width  # the same network, trained longer (docs/conv_bottleneck.md)


def test_cbn_depth_medium_scale_trains_the_quick_nets_longer_with_three_seeds() -> None:
    from freqlens.experiments.registry import get_experiment

    exp = get_experiment("cbn-depth")
    quick, medium = exp.make_config(scale="quick"), exp.make_config(scale="medium")
    assert medium.seeds >= 3 and medium.adam_steps > quick.adam_steps and medium.adam_schedule == "cosine"
    assert (medium.width, medium.n, medium.depths) == (quick.width, quick.n, quick.depths)


def test_a_run_resumed_with_other_workers_reuses_its_finished_cells(tmp_path: Path) -> None:
    over = {**SMALL, "networks": 2}

    def fingerprint(**changes: int) -> str:
        return plan_run("cbn-fig3", quick=True, overrides={**over, **changes}).fingerprint

    assert fingerprint() == fingerprint(workers=2) != fingerprint(networks=3)  # workers: a launcher setting
    path = run_experiment("cbn-fig3", tmp_path / "run", quick=True, overrides=over, show_progress=False)
    first = _summary(path)
    stages = sorted(p for p in (path / "stages").rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in stages}
    (path / "config.json").unlink()  # as if the run had been interrupted before publishing
    again = run_experiment("cbn-fig3", path, quick=True, overrides={**over, "workers": 2}, show_progress=False)
    assert stages and all(p.stat().st_mtime_ns == stamps[p] for p in stages)  # nothing retrained or rewritten
    assert _summary(again)["networks"] == first["networks"]
