"""Seeds of the linear-network experiments (``pinson-fig3`` ... ``pinson-figS5``), each a named run stream.

Not an experiment itself (it registers nothing). The values are the original ``ctx.seed + k`` (legacy offsets,
multiplier 1), so earlier runs stay bit-identical. Initialisations and sample orders are different consumers:
:mod:`freqlens.training.linear_init` draws trial ``t`` from ``SeedSequence([seed, t, 1..4])`` and the
trainers' sample order from ``SeedSequence([seed, t, 10])``, so the same integer there gives other numbers.
A run with several problems (Fig. 3's samplings, Fig. 5's shapes and CIFAR-4) reuses these streams on purpose:
every problem starts from the same trials.
"""

from __future__ import annotations

from .registry import RunContext

__all__ = ["cnn_init_seed", "cnn_sample_seed", "fcnn_init_seed", "fcnn_sample_seed"]


def cnn_init_seed(ctx: RunContext) -> int:
    """The ``seed`` of the linear CNN's initial kernels and weights: the legacy ``ctx.seed`` (plumbing)."""
    return ctx.seed_for("linear_init", "cnn_init", legacy_offset=0)


def fcnn_init_seed(ctx: RunContext) -> int:
    """The ``seed`` of the linear FCNN's random initial weights: the legacy ``ctx.seed + 100`` (plumbing)."""
    return ctx.seed_for("linear_init", "fcnn_init", legacy_offset=100)


def cnn_sample_seed(ctx: RunContext) -> int:
    """The ``seed`` of the linear CNN trainer's sample order: the legacy ``ctx.seed + 1`` (plumbing)."""
    return ctx.seed_for("linear_sample_order", "cnn_samples", legacy_offset=1)


def fcnn_sample_seed(ctx: RunContext) -> int:
    """The ``seed`` of the linear FCNN trainer's sample order: the legacy ``ctx.seed + 2`` (plumbing)."""
    return ctx.seed_for("linear_sample_order", "fcnn_samples", legacy_offset=2)
