"""``cbn-depth``: representation cost against depth (conv_bottleneck §2.2, §5c, C9).

Train the same task at depths ``L₀ … L₀+8`` to near-zero loss with a small λ and fit
``‖θ‖²_op ≈ a L + b``: the slope ``a`` estimates ``R⁽⁰⁾`` (≈ the CBN rank) and the intercept ``b`` estimates
``R⁽¹⁾``. The lower bound ``‖θ‖²_op ≥ L Σ_i s_i(Jf_θ(x))^{2/L}`` (C9) is checked on every trained net.

Task [A]: autoencoding random real images supported on ``{‖ν‖₁ ≤ 1}`` (the constant plus the pairs ``±(1,0)``
and ``±(0,1)``): the map is the identity on a 5-dimensional space carried by 1 self-conjugate frequency and 2
pairs, so ``Rank_CBN = 1 + 2·2 = 5`` and the Jacobian has rank 5 at every input (``R⁽⁰⁾ ≥ 5``). A ReLU net
also needs a non-negative representation, i.e. a constant offset; if it is carried through the weights it is
one more self-conjugate direction (spec §2.4 "offset subtlety"), so ``a`` between 5 and 6 is expected.
λ = 0.05 (not "small" in absolute terms, but 0.35 % of the data energy is lost) lets the norm converge on a CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ..analysis.bottleneck_metrics import r1_jacobian_bound
from ..analysis.cbn import check_lower_bound, estimate_cbn_rank, jacobian_singular_values
from ..analysis.statistics import Claim, claim_records, exact_claim, not_reached_claim, slope_equals_claim
from ..datasets.bottleneck_tasks import low_frequency_shapes
from ..io import flatten_tree, unflatten_tree
from ..spectral.weights import weight_spectra
from ..theory.bottleneck import fit_depth_slope
from .cbn_common import (
    CBNConfig,
    build_cnn,
    convergence_summary,
    cpu_threads,
    draw_layer_spectra,
    layer_arrays,
    read_layers,
    regression_loss,
    task_seed,
    train_in_phases,
)
from .cells import check_workers, map_stages
from .registry import Experiment, ExperimentResult, RunContext, register


@dataclass(frozen=True)
class DepthConfig(CBNConfig):
    """All values chosen here (spec §5c gives the protocol, not the numbers; docs/conv_bottleneck.md)."""

    n: int = 8
    max_l1: int = 1
    n_train: int = 512
    width: int = 16
    depths: tuple[int, ...] = (6, 7, 8, 9, 10, 11, 12, 13, 14)
    seeds: int = 3
    weight_decay: float = 0.05
    bias_multiplier: float = 1.0
    adam_lr: float = 2e-3
    adam_steps: int = 20000
    batch_size: int = 512
    c9_inputs: int = 16
    workers: int = 1  # processes training the nets in parallel (same numbers as 1)

    def validate(self) -> None:
        """Refuse fewer than two distinct depths >= 2 or no seed (plumbing)."""
        if len(set(self.depths)) < 2 or min(self.depths) < 2:
            raise ValueError(f"depths needs at least two distinct values >= 2, got {self.depths}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        check_workers(self.workers)

    @property
    def expected_rank(self) -> int:
        """``Rank_CBN = 1 + 2·#pairs`` of the task's support ``{0 < ‖ν‖₁ ≤ max_l1}`` (conv_bottleneck §2.4)."""
        pairs = (
            sum(
                1
                for k in range(-self.max_l1, self.max_l1 + 1)
                for l in range(-self.max_l1, self.max_l1 + 1)
                if 0 < abs(k) + abs(l) <= self.max_l1
            )
            // 2
        )
        return 1 + 2 * pairs


def _depth_slope_claim(data: Mapping[str, np.ndarray]) -> Claim:
    """§2.2 / §5c: the slope of ``‖θ‖²_op`` against ``L`` equals the CBN rank measured on the same networks
    (mean of their weight-spectrum ranks), judged by the slope's t interval (``df = nets - 2``). "Not reached"
    while a net has not settled (its norm or kept count still moving over the last 10 % of the steps,
    :func:`convergence_summary`): the slope of norms that are still falling says nothing about ``R⁽⁰⁾``."""
    statement = (
        "§2.2 / §5c: ||theta||^2_op grows with depth L at slope R(0) = the CBN rank, measured on the same networks"
    )
    ranks = data["weight_rank"]
    note = (
        f"paper = mean weight-spectrum CBN rank of the {ranks.size} nets (range {int(ranks.min())}-"
        f"{int(ranks.max())}); one point per trained net"
    )
    if "settled" in data:
        settled = np.asarray(data["settled"], dtype=bool)
        note += f"; loss also on a plateau (converged) in {int(np.sum(data['converged']))} of {ranks.size}"
        if not settled.all():
            unsettled = [f"L={int(d)}" for d, ok in zip(data["depth"], settled, strict=True) if not ok]
            fit = fit_depth_slope(data["depth"], data["op_norm"])
            reason = (
                f"{len(unsettled)} of {ranks.size} nets have not settled (norm or kept count still moving: "
                f"{', '.join(unsettled)}); {note}"
            )
            return not_reached_claim(statement, float(np.mean(ranks)), fit.a, int(ranks.size), reason)
    return slope_equals_claim(statement, float(np.mean(ranks)), data["depth"], data["op_norm"], note=note)


#: The statement of the C9 claim (the plot finds its verdict by it).
C9_STATEMENT = "C9: ||theta||^2_op >= L sum_i s_i(Jf(x))^(2/L) on every trained net and probe input"


def _c9_claim(data: Mapping[str, np.ndarray], holds_on_every_net: bool) -> Claim:
    """C9 (§5c) is an inequality on each trained net, no sampling noise: holds if the bound is below the norm on
    every net (``c9_max_ratio`` = max over probe inputs of bound / ``‖θ‖²_op``), contradicted otherwise."""
    return exact_claim(
        C9_STATEMENT,
        "bound / ||theta||^2_op <= 1",
        float(np.max(data["c9_max_ratio"])),
        int(data["depth"].size),
        holds_on_every_net,
        "max over nets and probe inputs of bound / ||theta||^2_op",
    )


ROW_KEYS = (
    "depth",
    "seed",
    "op_norm",
    "op_norm_with_bias",
    "plain_norm",
    "train_loss",
    "c9_max_bound",
    "c9_max_ratio",
    "weight_rank",
    "r1_jacobian_bound",
    "jacobian_rank",
    "converged",
    "settled",
)
INT_ROWS = ("depth", "seed", "weight_rank", "jacobian_rank", "converged", "settled")


def _train_and_measure(ctx: RunContext, cell: tuple[DepthConfig, int, int, bool]) -> dict[str, Any]:
    """One cell of :func:`run_depth`: train the net of ``(depth, seed)`` and measure its row (plumbing); with
    ``keep_spectra`` also its layer spectra and training history (drawn for the deepest net)."""
    cfg, depth, seed, keep_spectra = cell
    with cpu_threads(cfg.cpu_threads):
        x = low_frequency_shapes(cfg.n_train, cfg.n, cfg.max_l1, seed=task_seed(ctx, "train_images"))
        probe = x[: cfg.c9_inputs].double()
        model = build_cnn(cfg, 1, 1, depth, cfg.n, ctx, 1000 * depth + seed)
        history = train_in_phases(
            ctx,
            model,
            x.to(ctx.device),
            x.to(ctx.device),
            regression_loss,
            cfg.train_settings(),
            f"L{depth:02d}_seed{seed}",
            sampler_seed=seed,
        )
        model = model.cpu().double().eval()
        norm = float(model.operator_norm_sq().detach())
        check = check_lower_bound(model, probe, depth, norm)
        sv = jacobian_singular_values(model, probe[0])
        spectra = weight_spectra(model, (1, cfg.n, cfg.n))
        est = estimate_cbn_rank([lay.singular_values for lay in spectra.layers], threshold=cfg.threshold)
        with torch.no_grad():
            loss = float(regression_loss(model, x.double(), x.double()))
        out: dict[str, Any] = {
            "depth": depth,
            "seed": seed,
            "op_norm": norm,
            "op_norm_with_bias": float(model.operator_norm_sq(include_bias=True).detach()),
            "plain_norm": float(model.plain_norm_sq().detach()),
            "train_loss": loss,
            "c9_max_bound": float(check.bounds.max()),
            "c9_max_ratio": check.max_ratio,
            "weight_rank": est.rank,
            "r1_jacobian_bound": r1_jacobian_bound(sv, cfg.expected_rank),
            "jacobian_rank": int((sv > 1e-3 * sv.max()).sum()),
            "c9_holds": bool(check.holds),
            **{key: int(convergence_summary(history)[key]) for key in ("converged", "settled")},
        }
        if keep_spectra:  # a stage holds flat arrays: the record is flattened here, rebuilt in run_depth
            deepest = {"weight_sv": layer_arrays([lay.singular_values for lay in spectra.layers]), "training": history}
            out.update(flatten_tree({"deepest": deepest}))
    return out


def run_depth(ctx: RunContext, cfg: DepthConfig) -> ExperimentResult:
    """Train every depth × seed, fit ``‖θ‖²_op ≈ aL + b`` (a ≈ R⁽⁰⁾, b ≈ R⁽¹⁾) and check C9 (conv_bottleneck §5c)."""
    depths = sorted(set(cfg.depths))
    # One cell per net (each a resumable stage); `workers` > 1 trains them on a process pool, same numbers.
    cells = [
        (f"net_L{depth:02d}_seed{seed}", (cfg, depth, seed, depth == depths[-1] and seed == 0))
        for depth in depths
        for seed in range(cfg.seeds)
    ]
    measured = map_stages(ctx, cells, _train_and_measure, workers=cfg.workers)
    rows: dict[str, list[float]] = {
        k: [int(m[k]) if k in INT_ROWS else float(m[k]) for m in measured] for k in ROW_KEYS
    }
    c9_all = all(bool(m["c9_holds"]) for m in measured)
    deepest = unflatten_tree({k: v for k, v in measured[-cfg.seeds].items() if k.startswith("deepest__")})
    with cpu_threads(cfg.cpu_threads):
        x = low_frequency_shapes(cfg.n_train, cfg.n, cfg.max_l1, seed=task_seed(ctx, "train_images"))
    data: dict[str, Any] = {k: np.asarray(v) for k, v in rows.items()}
    data.update(deepest)  # the record of the deepest net (max depth, seed 0)
    fit = fit_depth_slope(data["depth"], data["op_norm"])
    fit_bias = fit_depth_slope(data["depth"], data["op_norm_with_bias"])
    data["fit_ab"] = np.array([fit.a, fit.b])
    summary = {
        "task": f"autoencoder of {cfg.n}x{cfg.n} images supported on ‖ν‖₁ ≤ {cfg.max_l1}",
        "expected_R0_rank_cbn": cfg.expected_rank,
        "fit_op_norm": {
            "a": round(fit.a, 4),
            "a_stderr": round(fit.a_stderr, 4),
            "b": round(fit.b, 4),
            "b_stderr": round(fit.b_stderr, 4),
        },
        "fit_op_norm_with_bias": {"a": round(fit_bias.a, 4), "b": round(fit_bias.b, 4)},
        "a_over_expected_rank": round(fit.a / cfg.expected_rank, 4),
        "r1_jacobian_bound_mean": round(float(np.mean(data["r1_jacobian_bound"])), 4),
        "c9_max_ratio_bound_over_norm": round(float(np.max(data["c9_max_ratio"])), 6),
        "weight_rank_per_net": [int(v) for v in data["weight_rank"]],
        "jacobian_rank_per_net": [int(v) for v in data["jacobian_rank"]],
        "settled_per_net": [int(v) for v in data["settled"]],
        "converged_per_net": [int(v) for v in data["converged"]],
        "max_train_loss": round(float(np.max(data["train_loss"])), 6),
        "train_energy_per_image": round(float(x.double().pow(2).flatten(1).sum(1).mean()), 4),
        "nets": len(rows["depth"]),
        "claims": [_depth_slope_claim(data), _c9_claim(data, c9_all)],
    }
    return ExperimentResult(data=data, summary=summary)


def plot_depth(data: Mapping[str, Any], cfg: DepthConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw cbn-depth: ``‖θ‖²_op`` and the C9 bound against depth with the fit, and the ranks (plumbing)."""
    fig = Figure(figsize=(12.0, 3.8), constrained_layout=True)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1.0, 1.3]})
    depth = data["depth"]
    a, b = data["fit_ab"]
    ax = axes[0]
    ax.scatter(depth, data["op_norm"], color="#0072B2", s=14, label="$\\|\\theta\\|^2_{op}$ (trained nets)")
    ax.scatter(
        depth,
        data["c9_max_bound"],
        color="#D55E00",
        s=10,
        marker="x",
        label="$L\\,\\Sigma_i s_i(Jf(x))^{2/L}$ (C9, max over x)",
    )
    grid = np.linspace(depth.min() - 0.5, depth.max() + 0.5, 50)
    ax.plot(grid, a * grid + b, color="#0072B2", lw=1, label=f"fit: {a:.2f} L + {b:.2f}")
    ax.plot(
        grid,
        summary["expected_R0_rank_cbn"] * grid,
        color="0.5",
        lw=0.8,
        ls="--",
        label=f"{summary['expected_R0_rank_cbn']} L (Rank$_{{CBN}}$·L)",
    )
    ax.set_xlabel("depth L")
    ax.set_ylabel("operator-normalised norm")
    claim = claim_records(summary.get("claims", []))[:1]
    if claim and claim[0]["ci"] is not None:
        lo, hi = claim[0]["ci"]
        ax.plot(grid, claim[0]["paper"] * grid, color="#009E73", lw=0.8, ls=":", label="measured CBN rank · L")
        ax.set_title(
            f"slope a = {a:.2f} [{lo:.2f}, {hi:.2f}] vs measured rank {claim[0]['paper']:.2f}: {claim[0]['verdict']}",
            fontsize=8,
        )
    else:
        ax.set_title(f"slope a = {a:.2f}, b = {b:.2f}", fontsize=8)
    ax.legend(frameon=False, fontsize=7)
    ax = axes[1]
    ax.scatter(depth, data["c9_max_ratio"], color="#D55E00", s=12)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("depth L")
    ax.set_ylabel("bound / ‖θ‖²_op")
    c9 = [c for c in claim_records(summary.get("claims", [])) if c["statement"] == C9_STATEMENT]
    ax.set_title(f"C9 lower bound on all {summary['nets']} nets: {c9[0]['verdict'] if c9 else 'not checked'}")
    deep = read_layers(data["deepest"]["weight_sv"]) if "deepest" in data else []
    if deep:
        m = draw_layer_spectra(axes[2], deep, f"spectra of the deepest net (L={int(depth.max())})", cfg.threshold)
        fig.colorbar(m, ax=axes[2], label="|ω|", shrink=0.85)
    fig.suptitle(
        f"cbn-depth: {summary['task']} (c={cfg.width}, λ={cfg.weight_decay:g}, β={cfg.bias_multiplier:g})", fontsize=9
    )
    return {"depth_fit": fig}


#: ``--quick``: 6×6 images, c = 6, L = 4 … 12, one seed, 1500 Adam steps.
QUICK: dict[str, Any] = {
    "n": 6,
    "n_train": 128,
    "width": 6,
    "depths": (4, 5, 6, 7, 8, 9, 10, 11, 12),
    "seeds": 1,
    "adam_lr": 5e-3,
    "adam_steps": 1500,
    "gd_steps": 0,
    "batch_size": 128,
    "record_every": 100,
    "c9_inputs": 8,
    "cpu_threads": 1,
}

#: ``--scale medium`` (docs/conv_bottleneck.md "Medium scale"): the quick nets (6×6, c = 6, L = 4 … 12) with 3
#: seeds each (27 nets), trained 8000 full-batch Adam steps cosine-annealed from 5e-3 to 5e-5, recorded every 200
#: steps (the convergence trend over the last 10 % has 4 points), on 2 worker processes. Not calibrated by a sweep:
#: ``settled_per_net`` says which nets had stopped moving, and the slope claim waits for all of them.
MEDIUM: dict[str, Any] = {
    **QUICK,
    "seeds": 3,
    "adam_steps": 8000,
    "adam_schedule": "cosine",
    "adam_lr_end": 5e-5,
    "record_every": 200,
    "workers": 2,
}


register(
    Experiment(
        name="cbn-depth",
        description="Bottleneck paper §5c: ‖θ‖²_op ≈ a L + b over depths (a ≈ R0, b ≈ R1), C9 on every net",
        config_cls=DepthConfig,
        run=run_depth,
        plot=plot_depth,
        quick=QUICK,
        scales={"medium": MEDIUM},
        paper="cbn",
        figure="§5c",
    )
)
