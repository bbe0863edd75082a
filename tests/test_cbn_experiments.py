"""The cbn-* experiments end to end with tiny settings: files, summary fields, determinism, resumption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from freqlens.datasets.bottleneck_tasks import ball_under_gravity, lowfreq_shapes_times_pattern, render_blobs
from freqlens.experiments.registry import get_experiment
from freqlens.experiments.runner import replot, run_experiment

TINY = {"adam_steps": 6, "gd_steps": 2, "record_every": 2, "batch_size": 16, "cpu_threads": 1}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def _check_rank_block(rank: dict) -> None:
    for key in ("weights", "activations"):
        est = rank[key]
        assert est["rank"] == est["self_conjugate"] + est["paired"] and est["paired"] % 2 == 0
        assert isinstance(est["frequencies"], list) and "frequencies_text" in est
    assert rank["parseval_max_rel_error"] < 1e-10


def test_cbn_fig3_and_fig4_run_replot_and_are_deterministic(tmp_path):
    over3 = {**TINY, "n_train": 32, "n_eval": 16, "width": 3, "depth": 4}
    p1 = run_experiment("cbn-fig3", tmp_path / "a", quick=True, overrides=over3, show_progress=False)
    p2 = run_experiment("cbn-fig3", tmp_path / "b", quick=True, overrides=over3, show_progress=False)
    s1, s2 = _summary(p1), _summary(p2)
    _check_rank_block(s1["cbn_rank"])
    assert s1["cbn_rank"] == s2["cbn_rank"] and s1["op_norm"] == s2["op_norm"]  # same seed, same numbers
    d1, d2 = np.load(p1 / "data.npz"), np.load(p2 / "data.npz")
    assert np.array_equal(d1["weight_sv__02"], d2["weight_sv__02"])
    # nested records: layers under weight_sv/act_sv, the training history under training/<phase>
    assert sorted(k for k in d1.files if k.startswith("act_sv__")) == [f"act_sv__{i:02d}" for i in range(1, 5)]
    assert {"training__adam__step", "training__adam__op_norm", "training__gd__train_loss"} <= set(d1.files)
    assert not any(k.startswith(("adam_", "gd_", "warmup_")) for k in d1.files)
    assert (p1 / "fig3_spectra.png").is_file() and (p1 / "training.png").is_file()
    assert replot(p1)
    over4 = {**TINY, "n_train": 32, "n_eval": 24, "width": 3, "depth": 3, "phase_layer": 2}
    p4 = run_experiment("cbn-fig4", tmp_path / "a", quick=True, overrides=over4, show_progress=False)
    s4 = _summary(p4)
    _check_rank_block(s4["cbn_rank"])
    for axis in ("x", "y"):
        assert 0.0 <= s4["phase_readout"][axis]["position_fit"]["resultant"] <= 1.0
    assert (p4 / "fig4b_phases.png").is_file()
    d4 = np.load(p4 / "data.npz")
    for axis in ("x", "y"):
        rec = {k.split("__")[-1] for k in d4.files if k.startswith(f"phase_readout__{axis}__")}
        assert rec == {"phase1", "dphase", "position", "velocity", "singular_values"}
        assert d4[f"phase_readout__{axis}__phase1"].shape == d4[f"phase_readout__{axis}__position"].shape == (24,)


def test_cbn_depth_fits_and_checks_c9_on_every_net(tmp_path):
    over = {**TINY, "n_train": 16, "width": 3, "depths": (2, 3, 4), "c9_inputs": 2, "n": 6}
    path = run_experiment("cbn-depth", tmp_path, quick=True, overrides=over, show_progress=False)
    s = _summary(path)
    c9 = [c for c in s["claims"] if c["statement"].startswith("C9")]
    assert s["nets"] == 3 and len(c9) == 1 and c9[0]["verdict"] == "holds" and c9[0]["measured"] <= 1.0
    assert s["c9_max_ratio_bound_over_norm"] <= 1.0
    data = np.load(path / "data.npz")
    a, b = data["fit_ab"]
    fit = np.polyfit(data["depth"], data["op_norm"], 1)
    assert np.allclose([a, b], fit)
    assert (path / "depth_fit.png").is_file()
    # the deepest net's record: its 4 layer spectra and its training history
    deepest = sorted(k for k in data.files if k.startswith("deepest__weight_sv__"))
    assert deepest == [f"deepest__weight_sv__{i:02d}" for i in range(1, 5)]
    assert "deepest__training__adam__op_norm" in data.files


def test_depth_slope_claim_waits_for_every_net_to_settle():
    from freqlens.analysis.statistics import HOLDS, NOT_REACHED
    from freqlens.experiments.cbn_depth import _depth_slope_claim

    depth = np.arange(4.0, 13.0)
    noise = np.array([0.3, -0.2, 0.1, -0.3, 0.2, 0.0, -0.1, 0.3, -0.2])
    data = {"depth": depth, "op_norm": 6.0 * depth - 3.0 + noise, "weight_rank": np.full(9, 6),
            "settled": np.ones(9, dtype=int), "converged": np.zeros(9, dtype=int)}  # fmt: skip
    claim = _depth_slope_claim(data)
    assert claim.verdict == HOLDS and claim.df == 7 and "converged) in 0 of 9" in claim.note
    data["settled"] = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1])
    claim = _depth_slope_claim(data)
    assert claim.verdict == NOT_REACHED and "1 of 9 nets have not settled" in claim.note and "L=11" in claim.note
    assert claim.measured == pytest.approx(np.polyfit(depth, data["op_norm"], 1)[0], rel=1e-4)


def test_resume_reuses_the_trained_stage(tmp_path, monkeypatch):
    over = {**TINY, "n_train": 16, "width": 2, "depths": (2, 3), "c9_inputs": 1, "n": 4}
    run_experiment("cbn-depth", tmp_path, quick=True, overrides=over, show_progress=False)
    import freqlens.experiments.cbn_common as common

    def boom(*args, **kwargs):
        raise AssertionError("training ran again instead of loading the stage")

    monkeypatch.setattr(common, "train", boom)
    path = run_experiment("cbn-depth", tmp_path, quick=True, overrides=over, show_progress=False)
    assert _summary(path)["nets"] == 2


@pytest.mark.slow
def test_cbn_fig1_and_fig2_on_mnist(tmp_path, mnist_root):
    data_dir = mnist_root.parent
    over1 = {**TINY, "n_train": 32, "n_eval": 16, "width": 3, "depth": 4, "warmup_steps": 2}
    p1 = run_experiment("cbn-fig1", tmp_path, quick=True, data_dir=data_dir, overrides=over1, show_progress=False)
    s1 = _summary(p1)
    _check_rank_block(s1["cbn_rank"])
    assert len(s1["fc_head_singular_values"]) == 3 and s1["layer_grids"] == [[14, 14], [14, 14], [7, 7]]
    assert "training__warmup__train_loss" in np.load(p1 / "data.npz").files
    over2 = {**TINY, "n_train": 32, "n_eval": 8, "width": 3, "depth": 6, "perturb_examples": 1, "threshold": 0.0}
    p2 = run_experiment("cbn-fig2", tmp_path, quick=True, data_dir=data_dir, overrides=over2, show_progress=False)
    s2 = _summary(p2)
    _check_rank_block(s2["cbn_rank"])
    assert s2["perturbations"] and all(len(p["omega"]) == 2 for p in s2["perturbations"])
    data = np.load(p2 / "data.npz")
    assert data["perturb_outputs"].shape[1:3] == (5, 1)
    assert (p2 / "fig2b_perturbations.png").is_file()


def test_quick_configs_are_valid_and_full_defaults_match_the_paper():
    table = {
        "cbn-fig1": (11, 60, 0.005, 0.5),
        "cbn-fig2": (12, 50, 0.04, 1.0),
        "cbn-fig3": (10, 60, 0.0005, 0.25),
        "cbn-fig4": (9, 60, 0.0001, 0.25),
    }
    for name, (depth, width, lam, beta) in table.items():
        exp = get_experiment(name)
        full = exp.make_config()
        assert (full.depth, full.width, full.weight_decay, full.bias_multiplier) == (depth, width, lam, beta)
        quick = exp.make_config(quick=True)
        assert quick.depth == depth and quick.weight_decay == lam and quick.bias_multiplier == beta
    assert get_experiment("cbn-fig1").make_config().downsample_at == (2, 4)
    assert get_experiment("cbn-depth").make_config(quick=True).depths == (4, 5, 6, 7, 8, 9, 10, 11, 12)
    with pytest.raises(ValueError, match="perturb_layer"):
        get_experiment("cbn-fig2").make_config(overrides={"perturb_layer": 12})


# ---------------------------------------------------------------------------------------------- datasets
def test_shapes_times_pattern_spectrum_sits_around_the_carrier():
    x = lowfreq_shapes_times_pattern(8, n=16, seed=1, dtype=torch.float64)[:, 0].numpy()
    spec = np.abs(np.fft.fft2(x)).sum(axis=0)
    f = np.fft.fftfreq(16) * 16
    k, l = np.meshgrid(f, f, indexing="ij")
    near = np.minimum(np.abs(k - 5) + np.abs(l - 5), np.abs(k + 5) + np.abs(l + 5)) <= 2
    assert spec[~near].max() < 1e-9 * spec.max() and spec[near].min() > 0
    with pytest.raises(ValueError, match="Nyquist"):
        lowfreq_shapes_times_pattern(2, n=12)


def test_ball_frames_follow_the_kinematics_and_shift_exactly():
    balls = ball_under_gravity(5, n=16, gravity=0.5, seed=3, dtype=torch.float64)
    assert balls.inputs.shape == (5, 4, 16, 16) and balls.targets.shape == (5, 4, 16, 16)
    p, v = balls.positions, balls.velocities
    assert np.allclose(np.diff(v[..., 0], axis=1), 0.5) and np.allclose(np.diff(v[..., 1], axis=1), 0.0)
    step = (p[:, 1:] - p[:, :-1] - v[:, :-1] - np.array([0.25, 0.0])) % 16
    assert np.allclose(np.minimum(step, 16 - step), 0.0, atol=1e-9)
    # rendering is exactly shift-equivariant: an integer shift of the position rolls the image
    img = render_blobs(np.array([[3.3, 7.6]]), 16, 1.0)[0]
    rolled = render_blobs(np.array([[5.3, 4.6]]), 16, 1.0)[0]
    assert np.allclose(np.roll(img, (2, -3), axis=(0, 1)), rolled, atol=1e-12)
    assert abs(render_blobs(np.array([[4.0, 4.0]]), 16, 1.0)[0].max() - 1.0) < 1e-12
