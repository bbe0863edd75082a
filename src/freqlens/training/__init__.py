"""Training: the fast Fourier-domain trainer for the linear models and one generic, resumable torch loop."""

from .linear_problem import LinearProblem
from .linear_trainer import LinearRun, train_linear_cnn, train_linear_fcnn
from .loop import EpochSampler, TrainingDiverged, train

__all__ = [
    "EpochSampler",
    "LinearProblem",
    "LinearRun",
    "TrainingDiverged",
    "train",
    "train_linear_cnn",
    "train_linear_fcnn",
]
