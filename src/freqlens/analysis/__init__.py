"""Analyses of trained or random models: CBN rank, latent-frequency perturbations, decoder reports."""

from .cbn import CBNRankEstimate, check_lower_bound, estimate_cbn_rank
from .decoder_report import DecoderReport, decoder_report
from .perturbation import kept_directions, perturb_along

__all__ = [
    "CBNRankEstimate",
    "DecoderReport",
    "check_lower_bound",
    "decoder_report",
    "estimate_cbn_rank",
    "kept_directions",
    "perturb_along",
]
