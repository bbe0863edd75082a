"""Deep linear and ReLU CNNs on CIFAR-10 (Pinson et al. 2023, §6, App. K; spec §9 App. K, §10 Fig. 6).

Both networks: Conv(16) -> Conv(16) -> [MaxPool] -> Conv(16) -> Conv(16) -> [MaxPool] -> Flatten ->
Dense(16) -> Dense(10); the non-linear one has ReLU after every conv and after Dense(16) and the two
max-pool layers. MSE loss (Keras, 1/p), batches of 8 over all 50000 training images, 25 epochs; every
500 batches the train and test losses on 5000-image subsets and ``A = Uᵀ Σ_ŷx V`` (spec Eq. 5) with
``U, V`` from the SVD of the training set's ``Σ_yx`` (p = 10, x ∈ R³⁰⁷²). Training uses the shared
generic loop :func:`freqlens.training.loop.train` (deterministic batches, checkpoint/resume).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from scipy import stats
from torch import nn

from ..analysis.linear_dynamics_metrics import effective_singular_values, half_times
from ..analysis.statistics import Claim, claim_records, directional_claim, not_reached_claim
from ..datasets import load_cifar10
from ..plots import MODE_COLORS
from ..structure import DatasetStructure
from ..training.loop import EpochSampler, sampler_epochs, train
from .registry import Experiment, ExperimentResult, RunContext, register


class PinsonDeepCNN(nn.Module):
    """The App. K network (spec §9): four ``k×k`` 'same'-padded convolutions with ``channels`` maps, two
    dense layers; ``nonlinear`` adds ReLU (convs and the first dense layer) and two ``pool×pool``
    max-pool layers. Weights: Glorot normal (truncated at 2 std, std ``sqrt(2/(fan_in+fan_out))``)
    times ``init_scale``; no biases (so the linear network is exactly linear)."""

    def __init__(
        self,
        nonlinear: bool,
        kernel_size: int = 3,
        channels: int = 16,
        hidden: int = 16,
        num_classes: int = 10,
        pool: int = 2,
        init_scale: float = 1.0,
        image_shape: tuple[int, int, int] = (3, 32, 32),
    ) -> None:
        """Build the layers and draw the scaled, truncated Glorot-normal weights (spec §9 App. K)."""
        super().__init__()
        c, h, w = image_shape
        self.nonlinear = nonlinear
        self.pool = pool
        convs = []
        for i in range(4):
            convs.append(nn.Conv2d(c if i == 0 else channels, channels, kernel_size, padding="same", bias=False))
        self.convs = nn.ModuleList(convs)
        side_h, side_w = (h // pool**2, w // pool**2) if nonlinear else (h, w)
        self.dense = nn.Linear(channels * side_h * side_w, hidden, bias=False)
        self.out = nn.Linear(hidden, num_classes, bias=False)
        for module in (*self.convs, self.dense, self.out):
            weight = module.weight
            fan_in = weight[0].numel()
            fan_out = weight.shape[0] * (weight[0, 0].numel() if weight.ndim == 4 else 1)
            std = math.sqrt(2.0 / (fan_in + fan_out))
            with torch.no_grad():
                nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
                weight.mul_(init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Four convs (ReLU and two max-pools when non-linear), Dense(16), Dense(10) (spec §9 App. K)."""
        act = F.relu if self.nonlinear else (lambda z: z)
        for i, conv in enumerate(self.convs):
            x = act(conv(x))
            if self.nonlinear and i in (1, 3):
                x = F.max_pool2d(x, self.pool)
        return self.out(act(self.dense(x.flatten(1))))


@dataclass(frozen=True)
class Fig6Config:
    """App. K settings; [?] = lost in the paper.

    Attributes:
        trials: [?] 3 independent trials per network (the paper averages over an unstated number).
        epochs, batch_size: 25 epochs of batches of 8 (paper: 156000 batches).
        train_images / test_images: 0 = all 50000 / 10000 (paper).
        eval_images: 5000-image train and test subsets for the records (paper).
        record_every: 500 batches (paper).
        kernel_size: [?] 3 (the paper says the kernels are much smaller than the 32×32 images).
        pool: [?] 2.
        init_scale: [?] 0.5 x Glorot normal: small enough for the rich, stage-like regime.
        lr: [?] plain SGD 0.05 (the paper only says "learning rate"; plain SGD as in its other experiments).
    """

    trials: int = 3
    epochs: int = 25
    batch_size: int = 8
    train_images: int = 0
    test_images: int = 0
    eval_images: int = 5000
    record_every: int = 500
    kernel_size: int = 3
    channels: int = 16
    hidden: int = 16
    pool: int = 2
    init_scale: float = 0.5
    lr: float = 0.05

    def validate(self) -> None:
        """Refuse non-positive counts, sizes, learning rate or init scale (plumbing)."""
        for name in ("trials", "epochs", "batch_size", "eval_images", "record_every", "kernel_size", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_images < 0 or self.test_images < 0:
            raise ValueError("train_images and test_images must be >= 0 (0 = all)")
        if not (self.lr > 0 and self.init_scale > 0):
            raise ValueError("lr and init_scale must be > 0")


#: ``--scale medium`` (one run: 2606 s at load 1.5-3.5 with ``--threads 1``; read-out in docs/linear_cnn_dynamics.md):
#: 3 epochs of batches of 8 over all 50000 training images (18750 of the paper's 156000 batches) at learning rate 0.1
#: instead of 0.05, so that the gradient-flow time ``lr x batches`` (1875) is a quarter of the full run's (7800);
#: records every 250 batches on 500-image subsets (the half-times are resolved to 250 batches). Chosen from two
#: 6000-batch calibration runs (lr 0.05 and 0.15, one trial): the linear CNN found all 10 modes by 4750 / 3000
#: batches, the ReLU CNN 2 / 5 modes.
MEDIUM: dict[str, Any] = {"epochs": 3, "lr": 0.1, "eval_images": 500, "record_every": 250}

#: The named subsets of Fig. 6 and their legacy seed offsets (``ctx.seed + k``, kept: the same images as before).
SUBSET_STREAMS = {"train_images": 0, "test_images": 1, "train_eval_images": 2, "test_eval_images": 3}


def _subset(
    ctx: RunContext, x: torch.Tensor, y: torch.Tensor, count: int, stream: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random rows of ``(x, y)`` drawn from the run's stream ``stream`` of :data:`SUBSET_STREAMS` (all
    rows when ``count`` is 0 or too big) (plumbing)."""
    if count <= 0 or count >= x.shape[0]:
        return x, y
    gen = ctx.generator(stream, legacy_offset=SUBSET_STREAMS[stream], legacy_multiplier=1)
    idx = torch.randperm(x.shape[0], generator=gen)[:count]
    return x[idx], y[idx]


class DeepRunRecord(TypedDict):
    """The record of one deep CNN kind over its trials (``data["linear"]``, ``data["relu"]``; plumbing):
    ``batches (R,)`` record times, ``A (trials, R, p, p)`` = ``Uᵀ Σ_ŷx V`` (spec Eq. 5), train- and test-subset
    losses ``(trials, R)``."""

    batches: np.ndarray
    A: np.ndarray
    loss_train: np.ndarray
    loss_test: np.ndarray


def _fig6_recorder(
    st: DatasetStructure,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
) -> Callable[[int, nn.Module], dict[str, Any]]:
    """The recorder of :func:`freqlens.training.loop.train`: MSE on the train and test subsets and
    ``A = Uᵀ Σ_ŷx V`` on the train subset (spec Eq. 5), ``U, V`` of the full training set."""
    u = torch.from_numpy(st.U).float().to(device)
    v = torch.from_numpy(st.V).float().to(device)
    xe_d, ye_d, xte_d, yte_d = train[0].to(device), train[1].to(device), test[0].to(device), test[1].to(device)
    xv = xe_d.reshape(xe_d.shape[0], -1) @ v  # (N_eval, p): Vᵀ x

    def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The model's outputs on ``images`` in chunks of 500 (plumbing)."""
        return torch.cat([model(images[i : i + 500]) for i in range(0, images.shape[0], 500)])

    def recorder(step: int, model: nn.Module) -> dict[str, Any]:
        """Subset losses and ``A`` of ``model`` at ``step`` (spec Eq. 5)."""
        yh = predict(model, xe_d)
        yh_t = predict(model, xte_d)
        a = u.T @ (yh.T @ xv / xe_d.shape[0])  # Uᵀ Σ_ŷx V on the train subset
        return {
            "loss_train_subset": float(F.mse_loss(yh, ye_d)),
            "loss_test_subset": float(F.mse_loss(yh_t, yte_d)),
            "A": a.cpu().numpy().astype(np.float64),
        }

    return recorder


def _train_deep_cnn(
    ctx: RunContext,
    cfg: Fig6Config,
    kind: str,
    trial: int,
    train_set: tuple[torch.Tensor, torch.Tensor],
    recorder: Callable[[int, nn.Module], dict[str, Any]],
    batches: int,
) -> dict[str, np.ndarray]:
    """One trial of one network kind (``"linear"`` or ``"relu"``), MSE and plain SGD, as a resumable stage
    (spec §9 App. K); returns its training history."""
    x, y = train_set
    dev = ctx.device

    def compute() -> dict[str, np.ndarray]:
        """Build, seed and train the network; its recorded history (plumbing)."""
        # Named streams: the old ``ctx.seed * 1000 + trial`` equalled the subset seeds ``ctx.seed + k`` (and the
        # sampler's epoch seeds) for trials 0-3 at seed 0. Both network kinds of a trial share its weights.
        torch.manual_seed(ctx.torch_seed("fig6_network", trial))
        model = PinsonDeepCNN(
            kind == "relu", cfg.kernel_size, cfg.channels, cfg.hidden, y.shape[1], cfg.pool, cfg.init_scale
        ).to(dev)
        epochs = sampler_epochs(x.shape[0], cfg.batch_size, batches)
        sampler = EpochSampler(
            x.to(dev), y.to(dev), cfg.batch_size, seed=ctx.sampler_seed("fig6_batches", trial, epochs=epochs)
        )
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
        history = train(
            model, lambda m, xb, yb: F.mse_loss(m(xb), yb), sampler, opt, batches,
            record_every=cfg.record_every, recorder=recorder,
            checkpoint=ctx.checkpoint_path(f"{kind}_{trial}"), checkpoint_every=cfg.record_every,
            progress=lambda it: ctx.progress(it, total=batches, desc=f"{kind} trial {trial}", unit="batch"),
        )  # fmt: skip
        return history.as_arrays()

    return ctx.stage(f"{kind}_{trial}", compute)


def _deep_run_record(runs: list[dict[str, np.ndarray]]) -> DeepRunRecord:
    """The trials of one network kind stacked into its record (plumbing)."""
    return {
        "batches": runs[0]["step"],
        "A": np.stack([r["A"] for r in runs]),  # (trials, R, p, p)
        "loss_train": np.stack([r["loss_train_subset"] for r in runs]),
        "loss_test": np.stack([r["loss_test_subset"] for r in runs]),
    }


def _deep_measured(rec: DeepRunRecord, s: np.ndarray, half: np.ndarray) -> dict[str, Any]:
    """Half-times of the trial-mean and per-trial ``a_α`` (``a_α ≥ s_α/2``), final losses and ``a_α / s_α`` of one
    network kind (spec §9 App. K, Fig. 6)."""
    diag = effective_singular_values(rec["A"])  # (trials, R, p)
    mean_half = half_times(rec["batches"], effective_singular_values(rec["A"].mean(axis=0)), s)
    return {
        "half_time_batches_per_mode": mean_half.tolist(),
        "half_time_batches_per_mode_per_trial": half.tolist(),
        "modes_reached_half": int(np.isfinite(mean_half).sum()),
        "final_loss_train_subset": float(rec["loss_train"][:, -1].mean()),
        "final_loss_test_subset": float(rec["loss_test"][:, -1].mean()),
        "final_a_over_s": (diag.mean(axis=0)[-1] / s).tolist(),
    }


#: What the paper says of Fig. 6, stored with the measurements.
_FIG6_PAPER_CLAIMS = {
    "stages": "both deep CNNs discover the dataset's modes in order, with stage-like transitions",
    "delay": "the non-linear CNN's effective singular values are delayed w.r.t. the linear CNN",
    "loss": "the non-linear CNN reaches a lower loss although both end with the same a_α",
}


def run_fig6(ctx: RunContext, cfg: Fig6Config) -> ExperimentResult:
    """Train the deep linear and ReLU CNNs on CIFAR-10, recording losses and ``A = Uᵀ Σ_ŷx V`` (spec Eq. 5, §9 K).

    ``data``: ``{"s": S, "linear": DeepRunRecord, "relu": DeepRunRecord}``."""
    root = ctx.require_data("CIFAR-10")
    x, labels = load_cifar10(root, "train")
    xt, lt = load_cifar10(root, "test")
    x, labels = _subset(ctx, x, labels, cfg.train_images, "train_images")
    xt, lt = _subset(ctx, xt, lt, cfg.test_images, "test_images")
    st = DatasetStructure.from_data(x, labels, num_classes=10, compute_sigma_xx=False)
    eye = torch.eye(st.num_classes)
    y, yt = eye[labels], eye[lt]
    train_eval = _subset(ctx, x, y, cfg.eval_images, "train_eval_images")
    test_eval = _subset(ctx, xt, yt, cfg.eval_images, "test_eval_images")
    recorder = _fig6_recorder(st, train_eval, test_eval, ctx.device)
    batches = cfg.epochs * (x.shape[0] // cfg.batch_size)
    records = {
        kind: _deep_run_record(
            [_train_deep_cnn(ctx, cfg, kind, i, (x, y), recorder, batches) for i in range(cfg.trials)]
        )
        for kind in ("linear", "relu")
    }
    half = {
        kind: half_times(rec["batches"], effective_singular_values(rec["A"]), st.S) for kind, rec in records.items()
    }
    summary: dict[str, Any] = {
        "batches": batches,
        "paper_claims": _FIG6_PAPER_CLAIMS,
        "measured": {kind: _deep_measured(rec, st.S, half[kind]) for kind, rec in records.items()},
        "claims": _fig6_claims(half, records["linear"]["loss_train"][:, -1], records["relu"]["loss_train"][:, -1]),
    }
    return ExperimentResult(data={"s": st.S, **records}, summary=summary)


#: The statements of the stages and loss claims (the claim builders and the figure titles read them here).
STAGES_STATEMENT = "Fig. 6 ({kind} CNN): the modes are discovered in order (stage-like transitions)"
LOSS_STATEMENT = "Fig. 6: the ReLU CNN reaches a lower final train loss than the linear CNN"


def _stages_claim(kind: str, half: np.ndarray) -> Claim:
    """Fig. 6 stages for one net: per trial, the Spearman correlation of half-time with the mode index over the
    modes it reached, > 0 (one-sample t, ``df = trials - 1``); "not reached" unless every trial reached >= 2
    modes."""
    statement = STAGES_STATEMENT.format(kind=kind)
    reached = np.isfinite(half).sum(axis=1)
    if reached.min() < 2:
        reason = (
            f"fewer than 2 modes reached a_alpha >= s_alpha/2 in some trial (reached per trial: {reached.tolist()})"
        )
        return not_reached_claim(statement, "in order", int(reached.min()), int(half.shape[0]), reason)
    rhos = []
    for row in half:
        idx = np.flatnonzero(np.isfinite(row))
        rhos.append(float(stats.spearmanr(idx, row[idx]).statistic))
    return directional_claim(
        statement,
        "in order",
        rhos,
        "greater",
        note="samples = per-trial Spearman correlation of half-time with mode index (reached modes)",
    )


def _delay_claims(half: Mapping[str, np.ndarray]) -> list[Claim]:
    """Fig. 6 delay: ReLU half-time > linear, per mode every trial of both nets reached (Welch t on log
    half-times over trials); "not reached" if there is no such mode."""
    both = np.isfinite(half["linear"]).all(axis=0) & np.isfinite(half["relu"]).all(axis=0)
    statement = "Fig. 6: the ReLU CNN's effective singular values are delayed w.r.t. the linear CNN"
    if not both.any():
        reason = "no mode reached a_alpha >= s_alpha/2 in every trial of both networks"
        return [not_reached_claim(statement, "delayed", None, int(half["linear"].shape[0]), reason)]
    return [
        directional_claim(
            f"{statement} (mode {alpha})",
            "delayed",
            np.log(half["relu"][:, alpha]),
            "greater",
            other=np.log(half["linear"][:, alpha]),
            paired=False,
            note="measured = mean log half-time ReLU - linear (Welch t over trials)",
        )
        for alpha in np.flatnonzero(both)
    ]


def _fig6_claims(half: Mapping[str, np.ndarray], loss_linear: np.ndarray, loss_relu: np.ndarray) -> list[Claim]:
    """The three Fig. 6 claims over trials: stages per net (:func:`_stages_claim`), the ReLU delay
    (:func:`_delay_claims`) and the loss: final train loss ReLU < linear (Welch t), "not reached" unless both
    nets reached a mode."""
    claims = [_stages_claim(kind, half[kind]) for kind in ("linear", "relu")]
    claims.extend(_delay_claims(half))
    statement = LOSS_STATEMENT
    if not (np.isfinite(half["linear"]).any() and np.isfinite(half["relu"]).any()):
        reason = "a network reached no mode (a_alpha >= s_alpha/2): training too short to compare end states"
        claims.append(not_reached_claim(statement, "lower", None, int(half["linear"].shape[0]), reason))
    else:
        claims.append(
            directional_claim(
                statement,
                "lower",
                loss_relu,
                "less",
                other=loss_linear,
                paired=False,
                note="measured = mean final train-subset loss ReLU - linear (Welch t over trials)",
            )
        )
    return claims


def plot_fig6(data: Mapping[str, Any], cfg: Fig6Config, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw pinson-fig6: train/test losses and ``a_α(t)`` of the linear and ReLU CNNs (plumbing)."""
    s = data["s"]
    verdicts = {c["statement"]: c["verdict"] for c in claim_records(summary.get("claims", []))}
    fig = Figure(figsize=(14.0, 4.0), constrained_layout=True)
    ax_l, ax_a, ax_b = fig.subplots(1, 3)
    for kind, col in (("linear", "#0072B2"), ("relu", "#D55E00")):
        rec = data[kind]
        t = rec["batches"]
        ax_l.plot(t, rec["loss_train"].mean(axis=0), color=col, lw=1.8, label=f"{kind} CNN, train subset")
        ax_l.plot(t, rec["loss_test"].mean(axis=0), color=col, lw=1.2, ls="--", label=f"{kind} CNN, test subset")
    ax_l.set_xlabel("batches")
    ax_l.set_ylabel("MSE loss (1/p), mean of trials")
    loss_verdict = verdicts.get(LOSS_STATEMENT)
    ax_l.set_title("(a) loss" + (f"; ReLU lower at the end: {loss_verdict}" if loss_verdict else ""), fontsize=9)
    ax_l.legend(fontsize=7)
    for ax, kind, title in ((ax_a, "linear", "(b) deep linear CNN"), (ax_b, "relu", "(c) deep ReLU CNN")):
        t = data[kind]["batches"]
        diag = effective_singular_values(data[kind]["A"])  # (trials, R, p)
        mean_half = half_times(t, diag.mean(axis=0), s)  # the summary's half_time_batches_per_mode
        for alpha in range(len(s)):
            col = MODE_COLORS[alpha % len(MODE_COLORS)]
            ax.plot(t, diag[:, :, alpha].mean(axis=0), color=col, lw=1.5, label=f"α={alpha}")
            ax.axhline(s[alpha], color=col, lw=0.5, ls=":")
            if np.isfinite(mean_half[alpha]):  # discovery: the trial mean first reaches s_α/2
                ax.plot([mean_half[alpha]], [s[alpha] / 2], "o", color=col, ms=4, mec="k", mew=0.5)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_xlabel("batches")
        ax.set_ylabel("$a_\\alpha$ (mean of trials; dotted: $s_\\alpha$; dots: $a_\\alpha = s_\\alpha/2$)")
        stages = verdicts.get(STAGES_STATEMENT.format(kind=kind))
        ax.set_title(f"{title}: {int(np.isfinite(mean_half).sum())}/{len(s)} modes reached"
                     + (f"; in order: {stages}" if stages else ""), fontsize=9)  # fmt: skip
        ax.legend(fontsize=6, ncol=2)
    ntr = data["linear"]["A"].shape[0]
    fig.suptitle(f"CIFAR-10, deep CNNs, batch {cfg.batch_size}, {ntr} trial(s) (Pinson et al., Fig. 6)")
    return {"fig6_deep_cnns": fig}


register(
    Experiment(
        name="pinson-fig6",
        description="Linear-CNN paper Fig. 6: deep linear vs ReLU CNNs on CIFAR-10, loss and a_α(t)",
        config_cls=Fig6Config,
        run=run_fig6,
        plot=plot_fig6,
        quick={
            "trials": 1,
            "epochs": 1,
            "train_images": 1600,
            "test_images": 500,
            "eval_images": 300,
            "record_every": 25,
        },
        scales={"medium": MEDIUM},
        needs=("cifar10",),
        paper="pinson",
        figure="Fig. 6",
    )
)
