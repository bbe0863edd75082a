"""Experiments: one module per figure family, each registering itself in :mod:`.registry`.

Use ``freqlens list`` / ``freqlens reproduce NAME`` or :func:`freqlens.experiments.runner.run_experiment`.
"""

from .registry import Experiment, ExperimentResult, RunContext, all_experiments, get_experiment, register

__all__ = ["Experiment", "ExperimentResult", "RunContext", "all_experiments", "get_experiment", "register"]
