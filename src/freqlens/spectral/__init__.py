"""Per-frequency views of conv layers and feature maps.

* ``conv``: canonical conv-layer description and exact multipliers (the one implementation).
* ``weights``: singular values of every conv layer at every frequency (stride, padding, transposed conv).
* ``activations``: streaming per-frequency spectra of activations over a dataset.
* ``maps``: spectrum maps of feature maps, radial profiles, ``p_low``.
* ``propagation``: exact frequency-by-frequency propagation rules through a network.
* ``rules``: the layer-rule registry (one rule object per layer type; :func:`register_rule` for user layers).
"""

from .activations import ActivationSpectra, activation_spectra
from .conv import ConvGeometry, conv_geometry, module_transfer_matrices
from .maps import p_low, radial_profile, spectrum_map
from .propagation import LayerRule, NoExactRuleError, PropagationResult, propagate
from .rules import SpectralRule, TransferRule, layer_verdict, register_rule, rule_for, unregister_rule
from .weights import LayerSpectrum, WeightSpectra, layer_spectrum, weight_spectra

__all__ = [
    "ActivationSpectra",
    "ConvGeometry",
    "LayerRule",
    "LayerSpectrum",
    "NoExactRuleError",
    "PropagationResult",
    "SpectralRule",
    "TransferRule",
    "WeightSpectra",
    "activation_spectra",
    "conv_geometry",
    "layer_spectrum",
    "layer_verdict",
    "module_transfer_matrices",
    "p_low",
    "propagate",
    "radial_profile",
    "register_rule",
    "rule_for",
    "spectrum_map",
    "unregister_rule",
    "weight_spectra",
]
