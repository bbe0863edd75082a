"""Datasets with known structure and readers for MNIST / CIFAR-10 distribution files.

Every function returns ``(x, labels)``: ``x`` a float tensor ``(N, C, H, W)``, ``labels`` int64 ``(N,)``.
"""

from .readers import CIFAR10_CLASSES, cifar10_mean_image, load_cifar10, load_mnist, locate_dataset, read_idx
from .synthetic import (
    DEFAULT_COSINE_AMPLITUDES,
    DEFAULT_COSINE_FREQS,
    DEFAULT_SUM_AMPLITUDES,
    DEFAULT_SUM_FREQ_SETS,
    SHAPES,
    geometric_shapes,
    pure_cosines,
    sums_of_cosines,
)

__all__ = [
    "CIFAR10_CLASSES",
    "DEFAULT_COSINE_AMPLITUDES",
    "DEFAULT_COSINE_FREQS",
    "DEFAULT_SUM_AMPLITUDES",
    "DEFAULT_SUM_FREQ_SETS",
    "SHAPES",
    "cifar10_mean_image",
    "geometric_shapes",
    "load_cifar10",
    "load_mnist",
    "locate_dataset",
    "pure_cosines",
    "read_idx",
    "sums_of_cosines",
]
