"""Models (plain PyTorch ``nn.Module``): the linear CNN/FCNN of the linear-dynamics paper, the deep
circular CNN family of the bottleneck paper, and the decoders of the decoder paper."""

from .circular_cnn import CircularCNN, CircularConv2d
from .linear import LinearCNN, LinearFCNN

__all__ = ["CircularCNN", "CircularConv2d", "LinearCNN", "LinearFCNN"]
