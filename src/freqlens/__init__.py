"""freqlens: which frequencies does a convolutional network learn, keep and use, and why?

Layers (lower never imports higher): ``fourier`` -> ``structure`` / ``datasets`` -> models and
training -> theory -> analyses -> ``experiments`` -> ``cli``.
"""

from . import datasets, fourier
from .structure import DatasetStructure, DominantFrequencies

__version__ = "0.1.0"

__all__ = ["DatasetStructure", "DominantFrequencies", "__version__", "datasets", "fourier"]
