"""freqlens: which frequencies does a convolutional network learn, keep and use, and why?

Layers (lower never imports higher): ``fourier`` / ``hooks`` / ``io`` -> ``structure`` / ``datasets`` ->
``spectral`` -> ``models`` -> ``training`` -> ``theory`` -> ``analysis`` -> ``experiments`` -> ``cli``.

The most used entry points are re-exported here; everything else lives in the submodules.
"""

from . import datasets, fourier
from .analysis import decoder_report, estimate_cbn_rank
from .spectral import activation_spectra, propagate, spectrum_map, weight_spectra
from .structure import DatasetStructure, DominantFrequencies

__version__ = "0.1.0"

__all__ = [
    "DatasetStructure",
    "DominantFrequencies",
    "__version__",
    "activation_spectra",
    "datasets",
    "decoder_report",
    "estimate_cbn_rank",
    "fourier",
    "propagate",
    "spectrum_map",
    "weight_spectra",
]
