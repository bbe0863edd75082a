"""Does the linear FCNN overfit CIFAR-4 after it has found its modes? (Pinson et al. 2023, §5, Fig. 5 right.)

``pinson-cifar4-overfit`` trains only the FCNN of ``pinson-fig5``'s CIFAR-4 panel (same data, protocol and
loss; spec ``linear_cnn_dynamics.md`` §9 I.4) and measures its test loss after the last mode is discovered.
The paper reports that the FCNN "has found all modes after ≈18 000 samples ... then overfits"; its width,
init scale, learning rate and training-set size were lost, so this experiment exists to be swept over them
(``freqlens sweep pinson-cifar4-overfit --grid lr_fcnn=... --grid train_per_class=...``: the table in
``docs/linear_cnn_dynamics.md``).

The overfitting statistic is fixed before looking at the test curve: per trial, ``rise = L_test(final) -
L_test(t_all)`` with ``t_all`` the trial's discovery time of its last mode (``a_α ≥ s_α/2``); the claim
"the test loss rises after all modes are found" is a one-sample t of the rises over trials (``df = T - 1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..analysis.linear_dynamics_metrics import (
    effective_singular_values,
    half_times,
    loss_stats,
    overfitting_claim,
    rises_after_discovery,
)
from ..analysis.statistics import claim_records
from ..training.linear_init import random_fcnn_init
from ..training.linear_trainer import train_linear_fcnn
from .pinson_general import cifar4_problem
from .registry import Experiment, ExperimentResult, RunContext, register


@dataclass(frozen=True)
class OverfitConfig:
    """The FCNN half of ``pinson-fig5``'s CIFAR-4 run (defaults equal ``pinson-fig5``'s ``cifar_*`` values).
    [?] = lost in the paper; these are the keys to sweep.

    Attributes:
        classes: CIFAR-10 classes (0-3 = airplane, automobile, bird, cat: paper).
        train_per_class / test_per_class: images per class, 0 = all (5000 / 1000: paper). [?] for the
            overfitting: a smaller training set overfits sooner.
        trials: independent FCNNs (init and sample order), the samples of the overfitting test.
        updates: single-sample updates in shuffled epochs (100 000: paper).
        sigma: [?] init std of both weight matrices.
        lr_fcnn: [?] learning rate (1.8e-3 in ``pinson-fig5``: tuned to the paper's 18 000 samples).
        hidden: [?] hidden width (``n² = 1024`` in ``pinson-fig5``).
        record_every: updates between records of ``A(t)`` and both losses.
        float32: train in float32 (records accumulated in float64).
    """

    classes: tuple[int, ...] = (0, 1, 2, 3)
    train_per_class: int = 0
    test_per_class: int = 0
    trials: int = 3
    updates: int = 100000
    sigma: float = 1e-4
    lr_fcnn: float = 1.8e-3
    hidden: int = 1024
    record_every: int = 500
    float32: bool = True

    def validate(self) -> None:
        """Refuse counts that cannot run (plumbing)."""
        if self.train_per_class < 0 or self.test_per_class < 0:
            raise ValueError("train_per_class and test_per_class must be >= 0 (0 = all)")
        if self.trials < 1 or self.hidden < 1 or self.updates < self.record_every:
            raise ValueError("trials and hidden must be >= 1 and updates >= record_every")


def run_overfit(ctx: RunContext, cfg: OverfitConfig) -> ExperimentResult:
    """FCNN trials on CIFAR-4; discovery times, test-loss landmarks and the overfitting claim (spec §9 I.4).

    ``data``: ``t``, ``s``, ``A`` (effective singular values), ``loss_train``, ``loss_test``, ``half``, ``rise``."""
    problem = cifar4_problem(ctx, cfg.classes, cfg.train_per_class, cfg.test_per_class, cfg.float32, ctx.device)
    st = problem.structure
    c, n, _ = st.image_shape
    init = random_fcnn_init(
        cfg.trials, c * n * n, cfg.hidden, st.num_classes, cfg.sigma, seed=ctx.seed_for("linear_init", "fcnn")
    )
    run = ctx.stage(
        "fcnn",
        lambda: train_linear_fcnn(
            problem, init, cfg.lr_fcnn, cfg.updates, sampling="epochs", record_every=cfg.record_every,
            seed=ctx.seed_for("linear_samples", "fcnn"),
            progress=lambda it: ctx.progress(it, desc="CIFAR-4 FCNN", unit="rec"),
        ).arrays(include_final=False),
    )  # fmt: skip
    rank = st.rank()
    t, s = np.asarray(run["t"]), st.S[:rank]
    a = effective_singular_values(np.asarray(run["a_train"])[:, :, :rank, :rank])
    half = half_times(t, a, s)
    loss_test = np.asarray(run["loss_test"])
    rise = rises_after_discovery(t, loss_test, half)
    data = {"t": t, "s": s, "A": a, "loss_train": np.asarray(run["loss_train"]), "loss_test": loss_test,
            "half": half, "rise": rise}  # fmt: skip
    return ExperimentResult(data=data, summary=_summary(cfg, data, problem.num_samples))


def _summary(cfg: OverfitConfig, d: Mapping[str, np.ndarray], num_train: int) -> dict[str, Any]:
    """Landmarks (numbers for the sweep table) and the overfitting claim (plumbing over :func:`run_overfit`)."""
    found = np.isfinite(d["half"]).all(axis=1)
    test = loss_stats(d["t"].astype(float), d["loss_test"])
    claim = overfitting_claim(
        "the FCNN's test loss rises after it has found all modes (overfitting; Fig. 5 right, §5)",
        d["t"], d["loss_test"], d["half"],
    )  # fmt: skip
    rise_mean = float(np.nanmean(d["rise"])) if found.any() else float("nan")
    measured = {
        "train_images": int(num_train),
        "trials_all_modes_found": int(found.sum()),
        "last_discovery_samples_median": float(np.median(d["half"].max(axis=1))),
        "test_loss": dict(test),
        "test_rise_after_modes_mean": rise_mean,
        "test_rise_after_modes_relative": rise_mean / test["min"] if test["min"] > 0 else float("nan"),
    }
    return {
        "paper_claim": "the FCNN has found all modes after ≈18000 samples at train and test loss ≈0.21, then "
        "overfits (its width, init, learning rate and training-set size are lost: sweep them)",
        "measured": measured,
        "claims": claim_records([claim]),
    }


def plot_overfit(data: Mapping[str, Any], cfg: OverfitConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Train and test loss of every trial with the last discovery time marked (plumbing)."""
    fig = Figure(figsize=(6.0, 3.4), constrained_layout=True)
    ax = fig.subplots()
    t = data["t"]
    for i in range(data["loss_test"].shape[0]):
        ax.plot(t, data["loss_train"][i], color="C0", lw=0.8, label="train" if i == 0 else None)
        ax.plot(t, data["loss_test"][i], color="C3", lw=0.8, label="test" if i == 0 else None)
        last = data["half"][i].max()
        if np.isfinite(last):
            ax.axvline(last, color="0.6", ls=":", lw=0.8, label="all modes found" if i == 0 else None)
    verdict = summary["claims"][0]["verdict"]
    ax.set_xlabel("samples seen")
    ax.set_ylabel("loss")
    ax.set_title(
        f"CIFAR-4 FCNN: {int(summary['measured']['train_images'])} train images, lr {cfg.lr_fcnn:g}, "
        f"σ {cfg.sigma:g}, width {cfg.hidden}; rise after modes: {verdict}",
        fontsize=8,
    )
    ax.legend(fontsize=7, loc="lower left")  # the empty corner: losses start high and the train loss ends low
    return {"cifar4_overfit": fig}


register(
    Experiment(
        name="pinson-cifar4-overfit",
        description="Linear-CNN paper Fig. 5 right: does the CIFAR-4 FCNN overfit after finding its modes?",
        config_cls=OverfitConfig,
        run=run_overfit,
        plot=plot_overfit,
        quick={"train_per_class": 250, "test_per_class": 200, "updates": 10000},
        needs=("cifar10",),
        paper="pinson",
        figure="Fig. 5",
    )
)
