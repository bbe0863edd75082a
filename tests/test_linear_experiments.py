"""End-to-end runs of the linear-CNN paper experiments at tiny sizes: run, stored arrays, summary, replot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from freqlens.analysis.statistics import NO_VERDICT
from freqlens.experiments.registry import get_experiment
from freqlens.experiments.runner import replot, run_experiment
from freqlens.io import read_json, read_npz

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def _run(name: str, tmp_path: Path, data: Path | None = None, **overrides: object) -> tuple[Path, dict, dict]:
    out = run_experiment(name, out=tmp_path, quick=True, data_dir=data, overrides=overrides, show_progress=False)
    return out, dict(read_npz(out / "data.npz")), read_json(out / "summary.json")


def test_fig3_arrays_theory_and_claims(tmp_path: Path) -> None:
    out, data, summary = _run("pinson-fig3", tmp_path, trials=2, updates=2000, compare_uniform_sampling=False)
    r = len(data["t"])
    assert data["t"][0] == 0 and data["t"][-1] == 2000
    assert data["s"].shape == (4,)
    assert data["a_cnn"].shape == data["a_fcnn"].shape == (2, r, 4)
    assert data["a_cnn_theory"].shape == data["a_fcnn_theory"].shape == (r, 4)
    # the theory starts from the experiment's own a_α(0) and saturates at s_α
    assert np.allclose(data["a_cnn_theory"][0], data["a_cnn"][:, 0].mean(axis=0), rtol=1e-12)
    assert np.allclose(data["a_fcnn_theory"][-1, :2], data["s"][:2], rtol=1e-3)
    measured = summary["measured"]
    assert measured["cnn_mean_vs_theory_max_abs_over_s0"] < 0.05
    theory, final = summary["claims"]
    worse = max(measured[f"{net}_mean_vs_theory_max_abs_over_s0"] for net in ("cnn", "fcnn"))
    assert theory["measured"] == pytest.approx(worse, rel=1e-5)  # the worse network decides
    assert theory["paper"] == "<= 0.02" and final["paper"] == "<= 0.001" and theory["verdict"] == NO_VERDICT  # 2 trials
    assert summary["half_times"]["mode_0"]["cnn_over_fcnn_half_time"] == pytest.approx(1.0, abs=0.1)
    assert summary["half_times"]["mode_1"]["cnn_over_fcnn_half_time"] == pytest.approx(np.sqrt(2), abs=0.15)
    assert (out / "fig3_pure_cosines.png").is_file()
    replot(out)  # plotting only reads data.npz


def test_sums_of_cosines_experiments(tmp_path: Path) -> None:
    _, data, summary = _run("pinson-fig4", tmp_path, trials=1)
    assert data["khat_abs"].shape == (1, 121, 256) and data["winners"].sum() == 4
    final = data["khat_abs"][:, -1] ** 2
    for a in range(2):  # the stored fraction is Σ_winners |k̂|² / Σ_{M̄_α} |k̂|² of the final kernel
        expected = (final * data["winners"][a]).sum(axis=1) / (final * data["supports"][a]).sum(axis=1)
        assert np.allclose(data["energy_on_winners"][:, a], expected, rtol=1e-12)
    (wta,) = summary["claims"]  # one trial: the tolerance is measured, no verdict from n = 1
    assert wta["measured"] == pytest.approx(1 - data["energy_on_winners"].min(), rel=1e-5) and wta["measured"] <= 0.05
    assert wta["verdict"] == NO_VERDICT and wta["n"] == 1
    _, data_s1, summary_s1 = _run("pinson-figS1", tmp_path, trials=1, updates=300)
    assert data_s1["A_theory"].shape == data_s1["A_cnn"].shape
    assert summary_s1["measured"]["offdiag_peak_over_s0"] < 0.05
    out_s2, _, summary_s2 = _run("pinson-figS2", tmp_path, trials=1)
    balanced = summary_s2["measured"]["balanced_within_10pct_from_t"]
    assert np.all(np.diff(balanced) > 0)  # mode 0 balances first
    (cascade,) = summary_s2["claims"]
    assert cascade["statistic"] == "paired t" and cascade["n"] == 1 and cascade["verdict"] == NO_VERDICT
    assert cascade["measured"] == pytest.approx(balanced[1] - balanced[0])  # one trial: its own balance times
    assert (out_s2 / "figS2_balancedness.png").is_file()


def test_figS5_shapes(tmp_path: Path) -> None:
    out, data, summary = _run(
        "pinson-figS5", tmp_path, trials=1, updates=2000, snapshot_times=(1000, 2000), lr_cnn=1e-3, theory=True
    )
    assert data["row_index"].tolist() == [2, 4]
    assert data["theory__A_cnn"].shape == data["A_cnn"].shape
    assert len(summary["measured"]["corr_khat_vs_max_vhat_of_discovered_modes"]) == 2
    assert (out / "figS5_kernel_vs_singular_vectors.png").is_file()


def test_fig5_and_fig6_tiny(tmp_path: Path, cifar_root: Path) -> None:
    data_dir = cifar_root.parent
    _, data, summary = _run(
        "pinson-fig5", tmp_path, data_dir, trials=1, shapes_updates=1000, shapes_snapshot_times=(500,),
        shapes_theory=False,
        cifar_train_per_class=60, cifar_test_per_class=20, cifar_updates=1000, cifar_snapshot_times=(500,),
        cifar_hidden_fcnn=64,
    )  # fmt: skip
    assert data["cifar__A_cnn"].shape[-1] == 3  # mean subtracted: 3 modes
    assert int(data["cifar__num_train"]) == 240 and int(data["cifar__num_test"]) == 80
    assert "cifar4_fcnn_test_loss" in summary["measured"]
    # the averaged flows on the CIFAR-4 moments (issue 15 item 3), from the same inits: new arrays only
    assert data["cifar__theory__A_cnn"].shape == data["cifar__A_cnn"].shape
    assert data["cifar__theory__A_fcnn"].shape == data["cifar__A_fcnn"].shape
    for net in ("cnn", "fcnn"):  # same initial A (float32 training data vs float64 moments of the same images)
        a0, a0_theory = data[f"cifar__A_{net}"][:, 0], data[f"cifar__theory__A_{net}"][:, 0]
        assert np.abs(a0_theory - a0).max() <= 1e-4 * np.abs(a0).max()
    theory = summary["measured"]["cifar4_theory"]
    assert len(theory["fcnn"]["predicted_half_times_median"]) == 3
    for net in ("cnn", "fcnn"):  # trial mean against the trial-mean flow, in units of s_0
        dev = np.abs(data[f"cifar__A_{net}"].mean(axis=0) - data[f"cifar__theory__A_{net}"].mean(axis=0)).max()
        assert theory[net]["mean_A_vs_averaged_flow_max_abs_over_s0"] == pytest.approx(dev / data["cifar__s"][0])
    assert len(theory["cnn_winners"]["measured_kl_per_trial"][0]) == 3
    _, data6, summary6 = _run(
        "pinson-fig6", tmp_path, data_dir, train_images=64, test_images=32, eval_images=32, record_every=4
    )
    assert data6["linear__A"].shape == (1, 3, 10, 10) and data6["relu__loss_test"].shape == (1, 3)
    assert set(summary6["measured"]) == {"linear", "relu"}
    record = {k for k in data6 if k.startswith("relu__")}
    assert record == {f"relu__{k}" for k in ("batches", "A", "loss_train", "loss_test")}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="sampling"):
        get_experiment("pinson-fig3").make_config(overrides={"sampling": "batch"})
    with pytest.raises(ValueError, match="shapes"):
        get_experiment("pinson-figS5").make_config(overrides={"shapes": ("square", "hexagon")})
    with pytest.raises(ValueError, match="snapshot_times"):
        get_experiment("pinson-fig5").make_config(overrides={"shapes_snapshot_times": (1234,)})


def test_fig6_medium_scale_is_offered_and_sized_between_quick_and_full() -> None:
    # The medium scale (docs/linear_cnn_dynamics.md): the full protocol on all images, fewer batches at a larger
    # learning rate; its flow time lr x batches must lie between the quick and the full run's.
    exp = get_experiment("pinson-fig6")
    assert exp.scale_names() == ("quick", "medium", "full")
    quick, medium, full = (exp.make_config(scale=s) for s in ("quick", "medium", "full"))
    assert medium.train_images == full.train_images == 0 and medium.batch_size == full.batch_size
    assert medium.trials >= 3  # a verdict needs 3 trials per network

    def flow(cfg: object, images: int) -> float:
        return float(cfg.lr * cfg.epochs * (images // cfg.batch_size))  # type: ignore[attr-defined]

    assert flow(quick, quick.train_images) < flow(medium, 50000) < flow(full, 50000)
