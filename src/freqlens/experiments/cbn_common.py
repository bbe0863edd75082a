"""Shared pieces of the bottleneck-paper experiments (``cbn-*``): training in two phases, the spectral
analysis of a trained :class:`~freqlens.models.circular_cnn.CircularCNN`, and the Fig. 2a-style plots.

Not an experiment itself (it registers nothing). Conventions for every ``cbn-*`` experiment
(conv_bottleneck §4.0, ``docs/conv_bottleneck.md``):

* λ: coupled L2 ``λ Σ‖θ‖²`` on the trained tensors, which are operator-normalised (``‖V‖² = ‖MW‖²``), so the
  penalty is ``λ(‖θ‖²_op + ‖b‖²)``; β: the bias multiplier (reading (i) of ambiguity 1).
* Data loss: per-sample squared error summed over channels and pixels, averaged over samples (regression),
  or mean cross-entropy (classification).
* Adam (``adam_steps`` at ``adam_lr``), then optionally plain SGD (``gd_steps`` at ``gd_lr``), both through
  :func:`freqlens.training.loop.train` with resumable checkpoints; the trained weights are a run stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..analysis.bottleneck_metrics import PLATEAU_TOLERANCE, tail_trend
from ..analysis.cbn import CBNRankEstimate, estimate_cbn_rank, largest_log_gap_count
from ..analysis.statistics import Claim, directional_claim, equality_claim, not_reached_claim
from ..io import flatten_tree, to_jsonable, unflatten_tree
from ..models.circular_cnn import CircularCNN, PenaltyNorm
from ..spectral.activations import activation_spectra
from ..spectral.weights import weight_spectra
from ..training.loop import EpochSampler, cosine_lr, flushed_denormals, sampler_epochs, train
from .cells import map_stages
from .registry import RunContext
from .runner import cpu_threads

__all__ = [
    "NETWORK_STREAM",
    "CBNConfig",
    "TrainSettings",
    "analyse_bottleneck",
    "build_cnn",
    "classification_loss",
    "convergence_summary",
    "cpu_threads",
    "draw_activation_spectra",
    "draw_bottleneck_panels",
    "draw_kept_map",
    "draw_kept_maps",
    "draw_layer_spectra",
    "draw_scaling",
    "layer_arrays",
    "network_curves",
    "rank_caption",
    "rank_captions",
    "read_layers",
    "regression_loss",
    "task_seed",
    "train_in_phases",
    "training_curves",
]


@dataclass(frozen=True)
class TrainSettings:
    """The optimisation part of a ``cbn-*`` config (all lost in the paper; chosen values in each config)."""

    weight_decay: float
    warmup_steps: int
    adam_lr: float
    adam_steps: int
    gd_lr: float
    gd_steps: int
    batch_size: int
    record_every: int
    loss_reduction: str = "sum"
    penalty_norm: str = "operator"
    lambda_scale: str = "lambda"
    record_threshold: float = 0.5  # τ of the kept count recorded during training
    adam_schedule: str = "constant"  # or "cosine": η annealed from adam_lr to adam_lr_end over the Adam phase
    adam_lr_end: float = 0.0


#: Readings of the lost normalisations (conv_bottleneck §4.0, ambiguities 1 and 3), each a config field:
#: the data loss per sample summed (``"sum"``) or averaged (``"mean"``, PyTorch's ``MSELoss`` default) over the
#: output's channels and pixels; the penalty on ``‖θ‖²_op`` (``"operator"``) or on the plain ``Σ‖W‖²``
#: (``"plain"``); and the coefficient ``λ``, ``λ/2`` or ``λ/L``.
LOSS_REDUCTIONS = ("sum", "mean")
PENALTY_NORMS: tuple[str, ...] = get_args(PenaltyNorm)  # the model owns the norms it can penalise
LAMBDA_SCALES = ("lambda", "lambda/2", "lambda/L")
#: Learning-rate schedules of the Adam phase: constant ``adam_lr`` (the paper's "Adam, lr ~1e-3 until the loss
#: plateaus"), or cosine annealing to ``adam_lr_end`` (chosen here: a constant-lr Adam run did not reach a
#: plateau of loss and norm within 15 000 steps, docs/conv_bottleneck.md).
ADAM_SCHEDULES = ("constant", "cosine")


def check_readings(loss_reduction: str, penalty_norm: str, lambda_scale: str) -> None:
    """Refuse a reading outside :data:`LOSS_REDUCTIONS`, :data:`PENALTY_NORMS`, :data:`LAMBDA_SCALES`, naming
    the config field (plumbing)."""
    for field_name, value, allowed in (
        ("loss_reduction", loss_reduction, LOSS_REDUCTIONS),
        ("penalty_norm", penalty_norm, PENALTY_NORMS),
        ("lambda_scale", lambda_scale, LAMBDA_SCALES),
    ):
        if value not in allowed:
            raise ValueError(f"{field_name} must be one of {', '.join(allowed)}; got {value!r}")


def effective_lambda(weight_decay: float, lambda_scale: str, layers: int) -> float:
    """The coefficient in front of the penalty: ``λ``, ``λ/2`` or ``λ/L`` (``L`` = weight layers, FC included;
    conv_bottleneck §4.0 "variants to try")."""
    divisor = {"lambda": 1, "lambda/2": 2, "lambda/L": layers}.get(lambda_scale)
    if divisor is None:
        raise ValueError(f"lambda_scale must be one of {', '.join(LAMBDA_SCALES)}; got {lambda_scale!r}")
    return weight_decay / divisor


@dataclass(frozen=True)
class CBNConfig:
    """Fields every ``cbn-*`` config shares: the network options, the optimisation (``TrainSettings``) and the
    CBN-rank threshold. Each experiment's config subclasses it and re-declares the defaults it changes, so
    the values of one experiment stay readable in one place."""

    width: int = 60
    kernel_size: int = 0  # 0 = full-size circular kernels
    weight_decay: float = 0.0005
    bias_multiplier: float = 0.25
    warmup_steps: int = 0
    adam_lr: float = 1e-3
    adam_steps: int = 30000
    gd_lr: float = 1e-3
    gd_steps: int = 5000
    batch_size: int = 128
    record_every: int = 250
    threshold: float = 0.5
    cpu_threads: int = 0
    loss_reduction: str = "sum"
    penalty_norm: str = "operator"
    lambda_scale: str = "lambda"
    adam_schedule: str = "constant"
    adam_lr_end: float = 0.0

    def __post_init__(self) -> None:
        """Refuse an unknown normalisation reading before any work (plumbing)."""
        check_readings(self.loss_reduction, self.penalty_norm, self.lambda_scale)
        if self.adam_schedule not in ADAM_SCHEDULES:
            raise ValueError(f"adam_schedule must be one of {', '.join(ADAM_SCHEDULES)}; got {self.adam_schedule!r}")
        if self.adam_schedule == "cosine" and not 0 <= self.adam_lr_end <= self.adam_lr:
            raise ValueError(f"adam_lr_end must be in [0, adam_lr={self.adam_lr}], got {self.adam_lr_end}")

    def train_settings(self) -> TrainSettings:
        """The two-phase training settings (warm-up, Adam, then full-batch GD) of this config (plumbing)."""
        return TrainSettings(
            self.weight_decay,
            self.warmup_steps,
            self.adam_lr,
            self.adam_steps,
            self.gd_lr,
            self.gd_steps,
            self.batch_size,
            self.record_every,
            self.loss_reduction,
            self.penalty_norm,
            self.lambda_scale,
            self.threshold,
            adam_schedule=self.adam_schedule,
            adam_lr_end=self.adam_lr_end,
        )


#: The run stream of every ``cbn-*`` network's initial weights (:func:`build_cnn`).
NETWORK_STREAM = "cbn_network"


def build_cnn(
    cfg: CBNConfig,
    in_channels: int,
    out_channels: int,
    depth: int,
    size: int,
    ctx: RunContext,
    seed_offset: int = 1,
    generator: torch.Generator | None = None,
    **options: Any,
) -> CircularCNN:
    """The ``CircularCNN`` of a ``cbn-*`` experiment: width, kernel size (0 = full-size) and bias multiplier from
    ``cfg``, weights from ``generator`` or else the run's stream ``"cbn_network"`` at legacy offset ``seed_offset``
    (the original ``ctx.seed * 1_000_003 + seed_offset``), on the run's device. ``options`` go to
    :class:`CircularCNN` (``downsample_at``, ``head``)."""
    return CircularCNN(
        in_channels,
        cfg.width,
        out_channels,
        depth,
        size,
        kernel_size=cfg.kernel_size or None,
        bias_multiplier=cfg.bias_multiplier,
        generator=generator if generator is not None else ctx.generator(NETWORK_STREAM, legacy_offset=seed_offset),
        **options,
    ).to(ctx.device)


def network_cnn(
    cfg: CBNConfig,
    network: int,
    in_channels: int,
    out_channels: int,
    depth: int,
    size: int,
    ctx: RunContext,
    **options: Any,
) -> CircularCNN:
    """Network ``network``'s :func:`build_cnn` of a several-network ``cbn-*`` run: network 0 from the legacy
    seeding (bit-identical to the one-network runs), the others from the named stream ``("cbn_network", network)``."""
    generator = None if network == 0 else ctx.generator(NETWORK_STREAM, network)
    return build_cnn(cfg, in_channels, out_channels, depth, size, ctx, generator=generator, **options)


def is_collapsed(row: Mapping[str, float]) -> bool:
    """Whether a network's measured row is the collapsed solution: no kept weight direction (CBN rank 0), i.e. the
    map is a constant (θ ≈ 0: the penalty won over the data, a stationary point of every ``cbn-*`` objective)."""
    return float(row["weight_rank"]) == 0


def collapse_note(rows: Sequence[Mapping[str, float]], what: str) -> str:
    """``"; k of n <what> collapsed ..."`` when some ``rows`` are :func:`is_collapsed`, else ``""``: a baseline that
    collapsed carries no read-out at all, so beating it shows only that the task had to be learned, and a trained
    network that collapsed has no bottleneck to count (plumbing for the claims' notes)."""
    collapsed = sum(1 for r in rows if is_collapsed(r))
    if not collapsed:
        return ""
    return f"; {collapsed} of {len(rows)} {what} collapsed to a constant map (no kept weight direction)"


def learned_networks(
    rows: Sequence[Mapping[str, float]], shuffled: Sequence[Mapping[str, float]] = (), what: str = "trained networks"
) -> tuple[list[Mapping[str, float]], list[Mapping[str, float]], str]:
    """The networks' rows that did not collapse (:func:`is_collapsed`: a constant map has no bottleneck to count
    and no read-out to compare), their shuffled-target twins (same position), and a note naming those left out
    ("" if none; plumbing for the claims)."""
    keep = [i for i, r in enumerate(rows) if not is_collapsed(r)]
    note = "" if len(keep) == len(rows) else collapse_note(rows, what) + " and are left out"
    return [rows[i] for i in keep], [shuffled[i] for i in keep if i < len(shuffled)], note


def baseline_claims(
    rows: Sequence[Mapping[str, float]],
    shuffled: Sequence[Mapping[str, float]],
    key: str,
    statement: str,
    paper: str,
    note: str,
    baselines: Mapping[str, str],
) -> list[Claim]:
    """A read-out ``key`` of the trained networks against the same networks untrained (their
    ``untrained_<key>``) and against the networks trained on shuffled targets (the shuffled rows' ``key``),
    paired by network (``df = networks - 1``): the read-out is learned only where trained beats both. Trained
    networks that collapsed are left out with their baselines, and a collapsed baseline is named (``statement``
    holds ``{baseline}``; ``baselines`` describes ``"untrained"`` and ``"trained on shuffled targets"``)."""
    rows, shuffled, left_out = learned_networks(rows, shuffled)
    trained = [r[key] for r in rows]
    shuffled_collapsed = collapse_note(shuffled, "shuffled-target networks")
    claims = []
    for baseline, other, extra in (
        ("untrained", [r[f"untrained_{key}"] for r in rows], ""),
        ("trained on shuffled targets", [r[key] for r in shuffled], shuffled_collapsed),
    ):
        claims.append(
            directional_claim(
                statement.format(baseline=baseline),
                paper,
                trained[: len(other)],
                "greater",
                other=other[: len(trained)],
                note=f"{note}; {baseline}: {baselines[baseline]}{extra}{left_out}",
            )
        )
    return claims


#: The two readings of a kept set: from the weight spectra and from the activation spectra (§5a, §5b), and the
#: per-network row holding each one's CBN rank.
KEPT_SETS = ("weights", "activations")
RANK_ROWS = {"weights": "weight_rank", "activations": "activation_rank"}


def settled_count_claim(
    statement: str,
    claimed: float,
    rows: Sequence[Mapping[str, float]],
    key: str,
    detail: Callable[[Sequence[Mapping[str, float]]], str] | None = None,
    not_formed_factor: float | None = None,
) -> Claim:
    """A kept-direction count claim over networks: the mean of ``key`` equals ``claimed`` (t interval,
    ``df = networks - 1``, :func:`equality_claim`; no verdict below 3 networks). Networks that collapsed to a
    constant map (:func:`is_collapsed`) are left out and named. "Not reached" when every network collapsed, when a
    network has not *settled* (norm or kept count still moving, :func:`convergence_summary`: a count on a falling
    norm is a transient), or, with ``not_formed_factor``, when a count is above that many times ``claimed`` (the
    bottleneck has not formed, so containing the claimed set would be vacuous). ``detail(rows)`` adds the
    claim's own numbers of the learned networks to the note."""
    rows, _, collapsed = learned_networks(rows, what="networks")  # a constant map has no bottleneck to count
    if not rows:
        return not_reached_claim(statement, claimed, None, 0, f"every network collapsed{collapsed}")
    counts = [float(r[key]) for r in rows]
    note = f"{key} per network {[int(c) for c in counts]}"
    note += f"; {detail(rows)}" if detail is not None else ""
    note += f"; loss also on a plateau (converged) in {sum(1 for r in rows if r['converged'])} of {len(rows)}"
    note += collapsed
    mean = float(np.mean(counts))
    if not_formed_factor is not None and max(counts) > not_formed_factor * claimed:
        reason = (
            f"a kept set above {not_formed_factor:g} x the claimed {claimed:g} directions: the bottleneck has not "
            f"formed, so containing the claimed set is vacuous; {note}"
        )
        return not_reached_claim(statement, claimed, mean, len(rows), reason)
    unsettled = sum(1 for r in rows if not r["settled"])
    if unsettled:
        reason = f"{unsettled} of {len(rows)} networks have not settled (norm or kept count still moving); {note}"
        return not_reached_claim(statement, claimed, mean, len(rows), reason)
    return equality_claim(statement, float(claimed), counts, note=note, resolution=1.0)  # a count: 5, 7 differ


def network_stage_key(network: int, suffix: str = "") -> str:
    """The training stage of network ``network`` (``train`` for network 0, as in the one-network runs; plumbing)."""
    return ("train" if network == 0 else f"train_net{network}") + suffix


def headline_arrays(detail: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Network 0's headline numbers (``detail``, JSON) and figure arrays (``data``) as flat arrays of its cell, read
    back by :func:`measure_networks` (plumbing)."""
    return {"detail_json": np.array(json.dumps(to_jsonable(detail))), **flatten_tree({"detail": data})}


@dataclass(frozen=True)
class MeasuredNetworks:
    """What :func:`measure_networks` returns: network 0's ``detail`` and figure ``data`` (with every network's
    scaling curves under ``data["scaling"]``), and one row of numbers per cell, in cell order."""

    detail: dict[str, Any]
    data: dict[str, Any]
    rows: list[dict[str, float]]

    def lists(self, keys: Sequence[str]) -> dict[str, list[float | None]]:
        """``summary["networks"]``: per key, the value of every row (``None`` where a row has none; plumbing)."""
        return {key: [round(r[key], 5) if key in r else None for r in self.rows] for key in keys}


def measure_networks(
    ctx: RunContext,
    cells: Sequence[tuple[str, Any]],
    fn: Callable[[RunContext, Any], Mapping[str, Any]],
    workers: int,
    row_keys: Sequence[str],
) -> MeasuredNetworks:
    """Run the network cells (:func:`map_stages`; the first cell is network 0 and carries :func:`headline_arrays`)
    and collect them: network 0's detail and figure data, every cell's scaling curves and its ``row_keys``
    numbers (plumbing shared by the several-network ``cbn-*`` experiments)."""
    measured = map_stages(ctx, cells, fn, workers=workers)
    first = measured[0]
    detail = json.loads(str(first["detail_json"]))
    data = unflatten_tree({k: v for k, v in first.items() if k.startswith("detail__")})["detail"]
    data["scaling"] = network_scaling(measured, [key for key, _ in cells])
    rows = [{k: float(m[k]) for k in row_keys if k in m} for m in measured]
    return MeasuredNetworks(detail, data, rows)


def network_scaling(measured: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{label: network_curves(...)}`` of the measured network cells, each cell's flat ``curve__*`` arrays
    unflattened (the input of :func:`draw_scaling`; plumbing)."""
    return {
        label: unflatten_tree({k: v for k, v in m.items() if k.startswith("curve__")})["curve"]
        for label, m in zip(labels, measured, strict=True)
    }


def task_seed(ctx: RunContext, stream: str, *, legacy_offset: int = 0, legacy_multiplier: int = 1) -> int:
    """The ``seed`` of a :mod:`freqlens.datasets.bottleneck_tasks` generator (they draw from
    ``numpy.random.default_rng([seed, k])``): the legacy ``ctx.seed * legacy_multiplier + legacy_offset`` under the
    run stream ``stream`` (plumbing)."""
    return ctx.seed_for("bottleneck_task", stream, legacy_offset=legacy_offset, legacy_multiplier=legacy_multiplier)


def regression_loss(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """``(1/B) Σ_n ‖f(x_n) − y_n‖²`` (sum over channels and pixels)."""
    return (model(xb) - yb).pow(2).flatten(1).sum(dim=1).mean()


def classification_loss(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy."""
    return F.cross_entropy(model(xb), yb)


#: The optimisation phases of :func:`train_in_phases`, in order.
PHASES = ("warmup", "adam", "gd")


Phase = tuple[str, torch.optim.Optimizer, int, float, Callable[[int], float] | None]


def _optimisation_phases(model: CircularCNN, settings: TrainSettings) -> list[Phase]:
    """``(name, optimizer, steps, λ, lr_at)`` of each phase that runs: an Adam warm-up without L2 (if
    ``warmup_steps``), Adam with L2 (its learning rate cosine-annealed if ``adam_schedule == "cosine"``), then
    plain SGD with L2 (if ``gd_steps``) (conv_bottleneck §4.0)."""
    lam = effective_lambda(settings.weight_decay, settings.lambda_scale, model.depth)
    phases: list[Phase] = []
    if settings.warmup_steps > 0:  # fit first, so that L2 does not collapse a deep net to θ = 0
        warmup = torch.optim.Adam(model.parameters(), lr=settings.adam_lr)
        phases.append(("warmup", warmup, settings.warmup_steps, 0.0, None))
    annealed = settings.adam_schedule == "cosine" and settings.adam_steps > 0
    schedule = cosine_lr(settings.adam_lr, settings.adam_lr_end, settings.adam_steps) if annealed else None
    adam = torch.optim.Adam(model.parameters(), lr=settings.adam_lr)
    phases.append(("adam", adam, settings.adam_steps, lam, schedule))
    if settings.gd_steps > 0:
        phases.append(("gd", torch.optim.SGD(model.parameters(), lr=settings.gd_lr), settings.gd_steps, lam, None))
    return phases


def _training_recorder(threshold: float) -> Callable[[int, torch.nn.Module], dict[str, float]]:
    """The record of every ``cbn-*`` training run: ``‖θ‖²_op``, ``‖b‖²`` and ``kept_weights``, the weight-spectrum
    CBN rank at ``threshold`` (plateau count, :func:`estimate_cbn_rank`), so that the kept-direction count can be
    drawn against training steps (issue 12 item 5; conv_bottleneck §4.0, §5a; plumbing)."""

    def record(step: int, net: torch.nn.Module) -> dict[str, float]:
        """The norms and the kept count of ``net`` now (plumbing)."""
        assert isinstance(net, CircularCNN)
        shape = (net.conv_layers[0].in_channels, *net.input_grid)
        spectra = weight_spectra(net, shape, layers=net.conv_names)
        kept = estimate_cbn_rank([lay.singular_values for lay in spectra.layers], threshold=threshold).rank
        return {
            "op_norm": float(net.operator_norm_sq().detach()),
            "bias_norm": float(net.bias_norm_sq().detach()),
            "kept_weights": float(kept),
        }

    return record


def _reduced_loss(
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor], reduction: str, y: torch.Tensor
) -> Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The data loss of the objective: ``loss_fn`` as it is (``"sum"``: summed over the output's channels and
    pixels) or divided by the number of output entries per sample (``"mean"``); labels (cross-entropy, one
    entry per sample) are the same under both readings (conv_bottleneck §4.0)."""
    entries = int(y[0].numel()) if y.dim() > 1 else 1
    if reduction == "sum" or entries == 1:
        return loss_fn
    scale = 1.0 / entries

    def mean_loss(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """``loss_fn`` averaged over the output entries (plumbing)."""
        return loss_fn(model, xb, yb) * scale

    return mean_loss


def _train_phases_stage(
    ctx: RunContext,
    model: CircularCNN,
    data: tuple[torch.Tensor, torch.Tensor, int],
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    settings: TrainSettings,
    key: str,
) -> dict[str, Any]:
    """Run every phase on ``loss + λ Σ‖θ‖²`` over ``data = (x, y, sampler_seed)`` with resumable checkpoints; the
    stage's flat arrays: the history as ``{phase}_{name}`` and the trained weights as ``state_names`` and
    ``state_{i:03d}`` (plumbing)."""
    x, y, sampler_seed = data
    batch = settings.batch_size if settings.batch_size < x.shape[0] else None
    steps = max(settings.warmup_steps, settings.adam_steps, settings.gd_steps)  # each phase restarts at step 0
    # The legacy seed ``ctx.seed * 7919 + sampler_seed``. At seed 0 the epoch seeds 0, 1, ... of sampler seed 0
    # reach the network seeds ``ctx.seed * 1_000_003 + offset`` (offset 1; 1000 L + seed in cbn-depth) once
    # there are more epochs than the offset: kept shared, declared here, so that runs stay bit-identical.
    seed = ctx.sampler_seed(
        "cbn_batches",
        legacy_offset=sampler_seed,
        legacy_multiplier=7919,
        epochs=sampler_epochs(x.shape[0], batch, steps),
        legacy_shared_with=(NETWORK_STREAM,),
    )
    sampler = EpochSampler(x, y, batch, seed=seed)
    objective_loss = _reduced_loss(loss_fn, settings.loss_reduction, y)
    penalised = model.penalty_factors(settings.penalty_norm)  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for name, opt, steps, l2, lr_at in _optimisation_phases(model, settings):

        def progress(it: Iterable[int], _name: str = name, _steps: int = steps) -> Iterable[int]:
            """A progress bar for this phase (plumbing)."""
            return ctx.progress(it, total=_steps, desc=f"{key} {_name}")

        with flushed_denormals():  # decayed weights go denormal: 10x slower steps (training.loop.flushed_denormals)
            history = train(
                model,
                objective_loss,
                sampler,
                opt,
                steps,
                l2=l2,
                l2_params=[p for p, _ in penalised],
                l2_weights=[f for _, f in penalised],  # unit weights are exact: the default reading is unchanged
                record_every=settings.record_every,
                recorder=_training_recorder(settings.record_threshold),
                checkpoint=ctx.checkpoint_path(f"{key}_{name}"),
                progress=progress,
                lr_at=lr_at,
            ).as_arrays()
        for k, v in history.items():
            out[f"{name}_{k}"] = v
    names = list(model.state_dict())
    out["state_names"] = np.array(names, dtype=str)
    for i, v in enumerate(model.state_dict().values()):
        out[f"state_{i:03d}"] = v.detach().cpu().numpy()
    return out


def train_in_phases(
    ctx: RunContext,
    model: CircularCNN,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    settings: TrainSettings,
    key: str,
    sampler_seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """(Optional Adam warm-up without L2,) Adam, then (optionally) SGD on ``loss + λ Σ‖θ‖²``; a resumable run
    stage named ``key`` (conv_bottleneck §4.0).

    Returns the training history as a record ``{phase: {"step", "train_loss", "op_norm", "bias_norm"}}`` for
    the phases of :data:`PHASES` that ran, and loads the trained weights into ``model`` (also when the stage is
    reloaded from an earlier run).
    """
    arrays = ctx.stage(key, lambda: _train_phases_stage(ctx, model, (x, y, sampler_seed), loss_fn, settings, key))
    names = [str(n) for n in arrays["state_names"]]
    model.load_state_dict({n: torch.from_numpy(np.asarray(arrays[f"state_{i:03d}"])) for i, n in enumerate(names)})
    return {
        phase: {k[len(phase) + 1 :]: v for k, v in arrays.items() if k.startswith(f"{phase}_")}
        for phase in PHASES
        if f"{phase}_step" in arrays
    }


def training_curves(history: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The recorded curves of :func:`train_in_phases` over the whole run: per key (``train_loss``, ``op_norm``,
    ``bias_norm``, ``kept_weights``) ``(steps, values)`` with the phases laid end to end (a phase's steps are
    offset by the steps of the phases before it); ``train_loss`` has no record at a phase's step 0."""
    offset = 0
    pieces: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for phase in PHASES:
        if phase not in history:
            continue
        record = history[phase]
        steps = np.asarray(record["step"], dtype=np.int64)
        for key, values in record.items():
            if key == "step":
                continue
            vals = np.asarray(values, dtype=np.float64).reshape(-1)
            st, vs = pieces.setdefault(key, ([], []))
            st.append(offset + steps[steps.size - vals.size :])  # train_loss: aligned with the last records
            vs.append(vals)
        offset += int(steps.max()) if steps.size else 0
    return {k: (np.concatenate(st), np.concatenate(vs)) for k, (st, vs) in pieces.items()}


def convergence_summary(history: Mapping[str, Mapping[str, np.ndarray]], fraction: float = 0.1) -> dict[str, Any]:
    """Whether training has converged: the least-squares trend of the training loss, ``‖θ‖²_op`` and the kept
    count over the last ``fraction`` of all steps (:func:`freqlens.analysis.bottleneck_metrics.tail_trend`);
    ``converged`` when loss and norm are both on a plateau (change ≤ ``PLATEAU_TOLERANCE`` of their mean), and
    ``settled`` when norm and kept count are (the precondition of the kept-set claims)."""
    curves = training_curves(history)
    trends = {key: tail_trend(*curves[key], fraction=fraction) for key in ("train_loss", "op_norm", "kept_weights")
              if key in curves and curves[key][0].size}  # fmt: skip
    out: dict[str, Any] = {key: t.as_dict() for key, t in trends.items()}
    out["converged"] = all(key in trends and trends[key].on_plateau for key in ("train_loss", "op_norm"))
    out["criterion"] = (
        f"loss and ||theta||^2_op change by <= {PLATEAU_TOLERANCE:.0%} of their mean along their least-squares line "
        f"over the last {fraction:.0%} of the steps"
    )
    # The precondition of a kept-set claim: the quantities it reads have settled. A data loss that is a tiny part
    # of the objective (0.0003 of an image energy of 69 in cbn-fig3) keeps falling by a large fraction of itself
    # long after the kept set and the norm have stopped moving, so ``converged`` can stay false there.
    out["settled"] = all(key in trends and trends[key].on_plateau for key in ("op_norm", "kept_weights"))
    out["settled_criterion"] = (
        f"||theta||^2_op and the kept count change by <= {PLATEAU_TOLERANCE:.0%} of their mean over the last "
        f"{fraction:.0%} of the steps"
    )
    return out


def layer_arrays(spectra: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-layer arrays as a record ``{"01": ..., "02": ...}`` (1-based layer ``ℓ``, two digits), for ``data.npz``
    (plumbing)."""
    return {f"{i + 1:02d}": np.asarray(sv) for i, sv in enumerate(spectra)}


def read_layers(layers: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The arrays of a :func:`layer_arrays` record, in layer order (plumbing)."""
    return [np.asarray(layers[k]) for k in sorted(layers, key=int)]


def analyse_bottleneck(
    model: CircularCNN,
    x_eval: torch.Tensor,
    threshold: float,
    thresholds: Sequence[float],
    eps: float,
    edge: int = 1,
) -> tuple[dict[str, Any], dict[str, Any], CBNRankEstimate, CBNRankEstimate]:
    """Weight spectra (§5a), activation spectra (§5b, pre-activations) and the CBN rank from both.

    Returns ``(data record, summary dict, weight estimate, activation estimate)``; the record holds the per-layer
    spectra as ``"weight_sv"`` and ``"act_sv"`` records (:func:`layer_arrays`).
    """
    model = model.double().eval()
    shape = (int(x_eval.shape[1]), *model.input_grid)
    ws = weight_spectra(model, shape, layers=model.conv_names)
    acts = activation_spectra(model, x_eval.double(), layers=model.conv_names, batch_size=256)
    w_sv = [lay.singular_values for lay in ws.layers]
    a_sv = [lay.singular_values for lay in acts.layers]
    est_w = estimate_cbn_rank(w_sv, threshold=threshold, thresholds=thresholds, edge=edge)
    est_a = estimate_cbn_rank(a_sv, threshold=None, eps=eps, thresholds=(eps / 10,), edge=edge)
    gaps = [largest_log_gap_count(sv)[0] for sv in w_sv]
    data: dict[str, Any] = {
        "weight_sv": layer_arrays(w_sv),
        "act_sv": layer_arrays(a_sv),
        "weight_counts": np.array(est_w.per_layer_counts),
        "act_counts": np.array(est_a.per_layer_counts),
        "gap_counts": np.array(gaps),
        "layer_op_norm": np.array([lay.operator_norm_sq for lay in ws.layers]),
        "plateau_weights": np.array(est_w.plateau) + 1,
        "kept_labels_weights": kept_map(est_w)[0],
        "kept_map_weights": kept_map(est_w)[1],
        "kept_labels_acts": kept_map(est_a)[0],
        "kept_map_acts": kept_map(est_a)[1],
        "plateau_acts": np.array(est_a.plateau) + 1,
    }
    if model.fc is not None:
        data["fc_sv"] = np.linalg.svd(model.fc.weight.detach().double().numpy(), compute_uv=False)
    plateau = range(est_w.plateau[0], est_w.plateau[1] + 1)
    summary = {
        "weights": est_w.as_dict(),
        "activations": est_a.as_dict(),
        "weights_vs_activations": {
            "same_rank": est_w.rank == est_a.rank,
            "same_frequencies": est_w.frequencies == est_a.frequencies,
        },
        "largest_log_gap_counts": gaps,
        "plateau_op_norm_per_layer": [round(float(ws.layers[i].operator_norm_sq), 3) for i in plateau],
        "parseval_max_rel_error": float(max(lay.parseval_rel_error for lay in acts.layers)),
        "threshold": threshold,
        "eps": eps,
    }
    return data, summary, est_w, est_a


# ------------------------------------------------------------------------------------------- plots
def _frequency_radius(grid: tuple[int, int]) -> np.ndarray:
    """``|ω|`` (Euclidean norm of the signed labels) on ``grid``: ``(H, W)``."""
    kh = np.fft.fftfreq(grid[0]) * grid[0]
    kw = np.fft.fftfreq(grid[1]) * grid[1]
    return np.sqrt(kh[:, None] ** 2 + kw[None, :] ** 2)


def _scatter_layer(ax: Axes, ell: int, sv: np.ndarray, norm: mcolors.Normalize, cmap: str, floor: float) -> Any:
    """One layer's column of Fig. 2a: its singular values at x = ``ell``, spread by frequency and coloured by
    ``|ω|``, values below ``floor ×`` the layer's largest left out (plumbing)."""
    radius = _frequency_radius(sv.shape[:2])
    order = np.argsort(radius.reshape(-1), kind="stable")
    offsets = np.linspace(-0.32, 0.32, order.size)
    xpos = np.empty(order.size)
    xpos[order] = offsets
    vals = sv.reshape(order.size, -1)
    xs = np.repeat(xpos[:, None], vals.shape[1], axis=1) + ell
    cs = np.repeat(radius.reshape(-1)[:, None], vals.shape[1], axis=1)
    keep = vals > floor * max(float(vals.max()), 1e-300)
    ordering = np.argsort(cs[keep])[::-1]  # low frequencies drawn last (on top)
    return ax.scatter(
        xs[keep][ordering],
        vals[keep][ordering],
        c=cs[keep][ordering],
        s=4,
        cmap=cmap,
        norm=norm,
        linewidths=0,
        rasterized=True,
    )


def _threshold_line(ax: Axes, threshold: float) -> None:
    """The CBN-rank threshold ``τ`` as a dashed line with its label (plumbing)."""
    ax.axhline(threshold, color="0.4", lw=0.8, ls="--")
    ax.text(
        0.45,
        threshold * 0.94,
        f"τ = {threshold:g}",
        color="0.3",
        fontsize=7,
        ha="left",
        va="top",
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
    )


def draw_layer_spectra(
    ax: Axes,
    spectra: Sequence[np.ndarray],
    title: str,
    threshold: float | None = None,
    extra: np.ndarray | None = None,
    floor: float = 1e-4,
    ylabel: str = "singular value",
) -> Any:
    """Fig. 2a style: every singular value of every layer at x = layer, coloured by ``|ω|`` (±ω share a colour).

    Values are spread horizontally by frequency so each layer reads as a column of frequency streaks.
    ``extra``: singular values of a final FC head (ω = 0), drawn as one more layer. Returns the mappable
    (plumbing).
    """
    rmax = max(float(_frequency_radius(sv.shape[:2]).max()) for sv in spectra) or 1.0
    norm = mcolors.Normalize(0.0, rmax)
    cmap = "viridis"
    mappable = None
    for ell, sv in enumerate(spectra, start=1):
        mappable = _scatter_layer(ax, ell, sv, norm, cmap, floor)
    if extra is not None:
        ax.scatter(np.full(extra.size, len(spectra) + 1), extra, c=[0.0] * extra.size, s=10, cmap=cmap, norm=norm)
    n_layers = len(spectra) + (1 if extra is not None else 0)
    if threshold is not None:
        _threshold_line(ax, threshold)
    ax.set_yscale("log")
    ax.set_xticks(range(1, n_layers + 1))
    if extra is not None:
        ax.set_xticklabels([str(i) for i in range(1, len(spectra) + 1)] + ["FC"])
    ax.set_xlim(0.4, n_layers + 0.6)
    ax.set_xlabel("layer ℓ")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return mappable


def kept_map(est: CBNRankEstimate, max_rows: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Kept directions per (frequency class, layer): ``(labels (R,) str, counts (R, layers))``, classes ordered
    by ``‖ω‖₁``, at most ``max_rows`` (the most frequently kept)."""
    seen: dict[str, tuple[int, int]] = {}
    for kept in est.per_layer:
        for (k, l), pair, _ in kept.frequencies:
            label = f"±({k},{l})" if pair else f"({k},{l})"
            order, times = seen.get(label, (abs(k) + abs(l), 0))
            seen[label] = (order, times + 1)
    rows = sorted(seen, key=lambda s: (-seen[s][1], seen[s][0], s))[:max_rows]
    rows = sorted(rows, key=lambda s: (seen[s][0], s))
    grid = np.zeros((len(rows), len(est.per_layer)))
    for j, kept in enumerate(est.per_layer):
        for (k, l), pair, m in kept.frequencies:
            label = f"±({k},{l})" if pair else f"({k},{l})"
            if label in rows:
                grid[rows.index(label), j] = m
    return np.array(rows, dtype=str), grid


def draw_kept_map(ax: Axes, labels: np.ndarray, counts: np.ndarray, title: str) -> None:
    """Heat map of kept directions per (frequency class, layer) with the counts written in."""
    if labels.size == 0:
        ax.text(0.5, 0.5, "nothing kept", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_axis_off()
        return
    top = max(1.0, float(counts.max()))
    ax.imshow(counts, aspect="auto", cmap="Blues", vmin=0, vmax=top, interpolation="nearest")
    for (i, j), v in np.ndenumerate(counts):
        if v:
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=6, color="k" if v < 0.6 * top else "w")
    ax.set_yticks(range(labels.size))
    ax.set_yticklabels([str(v) for v in labels], fontsize=7)
    ax.set_xticks(range(counts.shape[1]))
    ax.set_xticklabels([str(i + 1) for i in range(counts.shape[1])])
    ax.set_xlabel("layer ℓ")
    ax.set_title(title)


def draw_activation_spectra(fig: Figure, ax: Axes, act_layers: Sequence[np.ndarray], title: str) -> None:
    """Activation spectra of every layer, each scaled by its largest value, with the ``|ω|`` colour bar."""
    scaled = [sv / max(float(sv.max()), 1e-300) for sv in act_layers]
    mappable = draw_layer_spectra(ax, scaled, title, None, floor=1e-5, ylabel="ς / max ς")
    fig.colorbar(mappable, ax=ax, label="|ω|", shrink=0.85)


def draw_kept_maps(
    fig: Figure,
    slots: tuple[Any, Any],
    data: Mapping[str, np.ndarray],
    threshold: float,
    eps: float,
    per_layer: bool = False,
) -> None:
    """The two kept-direction maps (weights above ``threshold``, activations at ``1 − eps`` energy) in the
    grid ``slots`` (weights, activations)."""
    where = " per layer" if per_layer else ""
    draw_kept_map(
        fig.add_subplot(slots[0]),
        data["kept_labels_weights"],
        data["kept_map_weights"],
        f"kept (ω, i){where}: weights, s > {threshold:g}",
    )
    draw_kept_map(
        fig.add_subplot(slots[1]),
        data["kept_labels_acts"],
        data["kept_map_acts"],
        f"kept (ω, j){where}: activations, 1−{eps:g} energy",
    )


def draw_bottleneck_panels(
    fig: Figure,
    slots: tuple[Any, Any, Any, Any],
    data: Mapping[str, Any],
    threshold: float,
    eps: float,
    titles: tuple[str, str],
    per_layer: bool = False,
    extra: np.ndarray | None = None,
    colorbar_label: str = "|ω|",
) -> Axes:
    """The four Fig. 2a-style panels of an ``analyse_bottleneck`` record in the grid ``slots`` (weight spectra
    with ``τ`` and an optional FC head ``extra``, activation spectra, and the two kept-direction maps); ``titles``
    of the two spectra panels. Returns the weight-spectra axes (plumbing)."""
    ax = fig.add_subplot(slots[0])
    mappable = draw_layer_spectra(ax, read_layers(data["weight_sv"]), titles[0], threshold, extra=extra)
    fig.colorbar(mappable, ax=ax, label=colorbar_label, shrink=0.85)
    draw_activation_spectra(fig, fig.add_subplot(slots[1]), read_layers(data["act_sv"]), titles[1])
    draw_kept_maps(fig, (slots[2], slots[3]), data, threshold, eps, per_layer=per_layer)
    return ax


def rank_captions(summary: Mapping[str, Any]) -> str:
    """Two lines: :func:`rank_caption` of the weights and of the activations (plumbing)."""
    return f"{rank_caption(summary, 'weights')}\n{rank_caption(summary, 'activations')}"


def rank_caption(summary: Mapping[str, Any], key: str, max_items: int = 14) -> str:
    """One line: rank, split and (at most ``max_items``) frequencies of ``summary[key]`` (weights/activations)."""
    est = summary[key]
    items = est["frequencies_text"].split(", ")
    text = ", ".join(items[:max_items]) + (f", … (+{len(items) - max_items} more)" if len(items) > max_items else "")
    return (
        f"{key}: CBN rank {est['rank']} = {est['self_conjugate']} self-conj. + {est['pairs']} pairs "
        f"(layers {est['plateau_layers'][0]}-{est['plateau_layers'][1]}): {text}"
    )


def draw_training(
    history: Mapping[str, Mapping[str, np.ndarray]], title: str, extra: Mapping[str, str] | None = None
) -> Figure:
    """Training curves of the warm-up / Adam / SGD phases of a :func:`train_in_phases` record: data loss and
    ``‖θ‖²_op`` against the step (plumbing)."""
    fig = Figure(figsize=(8.0, 2.8), constrained_layout=True)
    axes = fig.subplots(1, 2)
    offset = 0
    colours = {"warmup": "#999999", "adam": "#0072B2", "gd": "#D55E00"}
    for phase in PHASES:
        if phase not in history:
            continue
        rec = history[phase]
        steps = np.asarray(rec["step"]) + offset
        if "train_loss" in rec and np.asarray(rec["train_loss"]).size:
            loss = np.asarray(rec["train_loss"])
            axes[0].plot(steps[-loss.size :], loss, color=colours[phase], label=phase)
        if "op_norm" in rec:
            axes[1].plot(steps, rec["op_norm"], color=colours[phase], label=phase)
        offset = int(steps[-1]) if steps.size else offset
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel((extra or {}).get("loss", "training data loss"))
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("$\\|\\theta\\|^2_{op}$ (conv + FC weights)")
    for ax in axes:
        ax.legend(frameon=False)
    fig.suptitle(title, fontsize=9)
    return fig


def network_curves(history: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The scaling-curve record of one trained network: the recorded steps (phases end to end) with
    ``kept_weights`` and ``op_norm`` there (:func:`training_curves`; plumbing)."""
    curves = training_curves(history)
    steps, kept = curves["kept_weights"]
    return {"step": steps, "kept_weights": kept, "op_norm": curves["op_norm"][1]}


def draw_scaling(
    curves: Mapping[str, Mapping[str, np.ndarray]], paper_count: float | None, paper_label: str, title: str
) -> Figure:
    """Scaling curves (issue 12 item 5): the kept-direction count (weight spectra, τ of the run) and
    ``‖θ‖²_op`` against training steps for each network of ``curves`` (``{label: network_curves(...)}``), with
    the paper's count drawn as a line where it gives one, so a reader sees where the runs are heading."""
    fig = Figure(figsize=(9.0, 4.0), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for label, rec in curves.items():
        style = ":" if "shuffled" in label else "-"  # baselines dotted
        axes[0].plot(rec["step"], rec["kept_weights"], style, marker=".", label=label.replace("_", " "))
        axes[1].plot(rec["step"], rec["op_norm"], style)
    if paper_count is not None:
        axes[0].axhline(paper_count, color="k", ls="--", lw=1, label=paper_label)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("kept directions (weight spectra)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("$\\|\\theta\\|^2_{op}$")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=4, frameon=False, fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig
