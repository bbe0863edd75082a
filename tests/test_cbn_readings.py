"""The normalisation readings of the cbn-* objective (loss sum/mean, operator/plain penalty, λ, λ/2, λ/L), the
convergence read-out (last-10 % trend) and the kept count recorded during training (issue 12 items 2, 3, 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from freqlens.analysis.bottleneck_metrics import PLATEAU_TOLERANCE, tail_trend
from freqlens.analysis.cbn import estimate_cbn_rank
from freqlens.experiments.cbn_common import (
    _optimisation_phases,
    _reduced_loss,
    _training_recorder,
    convergence_summary,
    effective_lambda,
    regression_loss,
    training_curves,
)
from freqlens.experiments.registry import get_experiment
from freqlens.experiments.runner import run_experiment
from freqlens.models.circular_cnn import CircularCNN
from freqlens.spectral.weights import weight_spectra
from freqlens.training.loop import l2_penalty


def _net(operator_normalised: bool) -> CircularCNN:
    net = CircularCNN(2, 4, 3, 4, 8, downsample_at=(2,), head="gap_fc", operator_normalised=operator_normalised,
                      generator=torch.Generator().manual_seed(3)).double()  # fmt: skip
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 1:  # biases start at zero: make them count
                p.normal_(generator=torch.Generator().manual_seed(p.numel()))
    return net


@pytest.mark.parametrize("operator_normalised", [True, False])
def test_penalty_factors_give_the_operator_and_the_plain_norm(operator_normalised):
    net = _net(operator_normalised)
    for norm, reference in (("operator", net.operator_norm_sq), ("plain", net.plain_norm_sq)):
        terms = net.penalty_factors(norm)  # type: ignore[arg-type]
        assert [id(p) for p, _ in terms] == [id(p) for p in net.parameters()]
        total = l2_penalty([p for p, _ in terms], [f for _, f in terms]).detach()
        expected = reference(include_bias=True).detach()
        assert abs(float(total - expected)) <= 1e-12 * float(expected)
    with pytest.raises(ValueError, match="norm must be"):
        net.penalty_factors("spectral")  # type: ignore[arg-type]


def test_l2_penalty_weights_are_checked_and_unit_weights_change_nothing():
    params = [torch.randn(3, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    assert torch.equal(l2_penalty(params), l2_penalty(params, [1.0, 1.0, 1.0]))
    assert torch.isclose(l2_penalty(params, [0.0, 2.0, 0.0]), 2 * params[1].pow(2).sum())
    with pytest.raises(ValueError, match="weights has 2 entries for 3"):
        l2_penalty(params, [1.0, 1.0])


def test_mean_reduction_divides_by_the_output_entries_and_leaves_labels_alone():
    net = _net(True)
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mean = _reduced_loss(regression_loss, "mean", y)
    assert torch.isclose(mean(net, x, y), regression_loss(net, x, y) / 3)
    assert torch.isclose(mean(net, x, y), torch.nn.functional.mse_loss(net(x), y))  # PyTorch's MSELoss default
    labels = torch.tensor([0, 1, 2, 0, 1])
    assert _reduced_loss(regression_loss, "mean", labels) is regression_loss
    assert _reduced_loss(regression_loss, "sum", y) is regression_loss


def test_lambda_scales_and_bad_readings_fail_before_work():
    assert effective_lambda(0.1, "lambda", 9) == 0.1
    assert effective_lambda(0.1, "lambda/2", 9) == 0.05
    assert effective_lambda(0.1, "lambda/L", 10) == pytest.approx(0.01)
    exp = get_experiment("cbn-fig4")
    for key, value in (("loss_reduction", "median"), ("penalty_norm", "nuclear"), ("lambda_scale", "2lambda")):
        with pytest.raises(ValueError, match=f"{key} must be one of"):
            exp.config_cls(**{key: value})
    with pytest.raises(ValueError, match="adam_schedule must be one of"):
        exp.config_cls(adam_schedule="step")
    with pytest.raises(ValueError, match="adam_lr_end must be in"):
        exp.config_cls(adam_schedule="cosine", adam_lr=1e-3, adam_lr_end=2e-3)


def test_the_cosine_schedule_reaches_the_adam_phase_only():
    cfg = get_experiment("cbn-fig4").config_cls(adam_schedule="cosine", adam_lr=1e-3, adam_lr_end=1e-5,
                                                warmup_steps=3, adam_steps=10, gd_steps=2)  # fmt: skip
    phases = _optimisation_phases(_net(True), cfg.train_settings())
    annealed = [(name, lr_at is not None) for name, _, _, _, lr_at in phases]
    assert annealed == [("warmup", False), ("adam", True), ("gd", False)]
    adam_lr_at = phases[1][4]
    assert adam_lr_at is not None and adam_lr_at(0) == 1e-3 and adam_lr_at(10) == pytest.approx(1e-5)
    constant = _optimisation_phases(_net(True), get_experiment("cbn-fig4").config_cls().train_settings())
    assert all(lr_at is None for *_, lr_at in constant)  # the default reading is unchanged


def test_tail_trend_reads_the_last_tenth_and_the_plateau():
    steps = np.arange(0, 10001, 100)
    falling = 1000.0 - 0.05 * steps  # line over the last 10 %: 550 -> 500, mean 525
    t = tail_trend(steps, falling)
    assert (t.first_step, t.last_step, t.points) == (9000, 10000, 11)
    assert t.slope_per_1000_steps == pytest.approx(-50.0)
    assert t.relative_change == pytest.approx(-50.0 / 525.0)
    assert not t.on_plateau
    flat = 3.0 + 1e-3 * np.sin(steps)
    assert tail_trend(steps, flat).on_plateau and abs(tail_trend(steps, flat).relative_change) < PLATEAU_TOLERANCE
    with pytest.raises(ValueError, match="same non-zero length"):
        tail_trend(steps, falling[:-1])


def test_training_curves_lay_the_phases_end_to_end_and_convergence_uses_them():
    history = {
        "adam": {"step": np.array([0, 50, 100]), "train_loss": np.array([5.0, 4.0]), "op_norm": np.array([9, 8, 7.0])},
        "gd": {"step": np.array([0, 50, 100]), "train_loss": np.array([3.0, 3.0]), "op_norm": np.array([7, 7, 7.0]),
               "kept_weights": np.array([6, 5, 4.0])},
    }  # fmt: skip
    curves = training_curves(history)
    assert curves["op_norm"][0].tolist() == [0, 50, 100, 100, 150, 200]
    assert curves["train_loss"][0].tolist() == [50, 100, 150, 200]
    conv = convergence_summary(history, fraction=0.5)
    assert conv["op_norm"]["window_steps"] == [100, 200] and conv["op_norm"]["on_plateau"]
    assert conv["train_loss"]["records"] == 3 and not conv["train_loss"]["on_plateau"]  # 4, 3, 3: still falling
    assert not conv["converged"]
    assert not conv["settled"]  # the kept count still falls: 6, 5, 4
    history["gd"]["kept_weights"] = np.array([4, 4, 4.0])
    settled = convergence_summary(history, fraction=0.5)
    assert settled["settled"] and not settled["converged"]  # norm and count flat, loss still falling


def test_recorded_kept_count_is_the_weight_spectrum_rank():
    net = _net(True).float()
    record = _training_recorder(0.5)(0, net)
    spectra = weight_spectra(net, (2, 8, 8), layers=net.conv_names)
    assert record["kept_weights"] == estimate_cbn_rank([s.singular_values for s in spectra.layers], threshold=0.5).rank
    assert record["op_norm"] == pytest.approx(float(net.operator_norm_sq().detach()))


def test_a_reading_changes_the_objective_and_the_summary_reports_convergence(tmp_path):
    over = {"adam_steps": 6, "gd_steps": 0, "record_every": 2, "batch_size": 16, "cpu_threads": 1,
            "n_train": 32, "n_eval": 16, "width": 3, "depth": 3, "phase_layer": 2}  # fmt: skip
    a = run_experiment("cbn-fig4", tmp_path / "a", quick=True, overrides=over, show_progress=False)
    b = run_experiment("cbn-fig4", tmp_path / "b", quick=True, overrides={**over, "penalty_norm": "plain"},
                       show_progress=False)  # fmt: skip
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert sa["op_norm"] != sb["op_norm"]  # a weaker penalty: a different trajectory
    for s in (sa, sb):
        assert set(s["convergence"]) >= {"train_loss", "op_norm", "kept_weights", "converged", "criterion"}
    assert np.load(a / "data.npz")["training__adam__kept_weights"].shape == (4,)
