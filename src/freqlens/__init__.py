"""freqlens: which frequencies does a convolutional network learn, keep and use, and why?

Layers (lower never imports higher; the full table of allowed imports is the README's "Layout" section,
enforced by tests/test_layering.py): ``_validation`` -> ``fourier`` / ``io`` / ``hooks`` -> ``structure`` /
``datasets`` / ``plots`` -> ``spectral`` -> ``models`` -> ``training`` -> ``theory`` -> ``analysis`` ->
``experiments`` -> ``sweeps`` -> ``cli``.

The most used entry points are re-exported here, lazily (PEP 562 ``__getattr__``): ``import freqlens`` loads
no torch, so ``import freqlens.theory`` stays NumPy-only; ``freqlens.weight_spectra`` imports its submodule
on first use.
"""

import importlib as _importlib
import pkgutil as _pkgutil
import typing as _typing

from ._version import __version__

if _typing.TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below resolves the same names
    from . import datasets, fourier
    from .analysis import decoder_report, estimate_cbn_rank
    from .analysis.first_layer_energy import first_layer_energy_profile
    from .analysis.frequency_use import fourier_heatmap, input_frequency_sensitivity
    from .report import FrequencyTracker, Report, analyze
    from .spectral import activation_spectra, propagate, register_rule, spectrum_map, weight_spectra
    from .structure import DatasetStructure, DominantFrequencies
    from .sweeps import sweep

# public name -> (submodule, attribute in it; None when the name is the submodule itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "DatasetStructure": ("structure", "DatasetStructure"),
    "DominantFrequencies": ("structure", "DominantFrequencies"),
    "FrequencyTracker": ("report", "FrequencyTracker"),
    "Report": ("report", "Report"),
    "analyze": ("report", "analyze"),
    "sweep": ("sweeps", "sweep"),
    "activation_spectra": ("spectral", "activation_spectra"),
    "datasets": ("datasets", None),
    "decoder_report": ("analysis", "decoder_report"),
    "estimate_cbn_rank": ("analysis", "estimate_cbn_rank"),
    "first_layer_energy_profile": ("analysis.first_layer_energy", "first_layer_energy_profile"),
    "fourier": ("fourier", None),
    "fourier_heatmap": ("analysis.frequency_use", "fourier_heatmap"),
    "input_frequency_sensitivity": ("analysis.frequency_use", "input_frequency_sensitivity"),
    "propagate": ("spectral", "propagate"),
    "register_rule": ("spectral", "register_rule"),
    "spectrum_map": ("spectral", "spectrum_map"),
    "weight_spectra": ("spectral", "weight_spectra"),
}

__all__ = [
    "DatasetStructure",
    "DominantFrequencies",
    "FrequencyTracker",
    "Report",
    "__version__",
    "activation_spectra",
    "analyze",
    "datasets",
    "decoder_report",
    "estimate_cbn_rank",
    "first_layer_energy_profile",
    "fourier",
    "fourier_heatmap",
    "input_frequency_sensitivity",
    "propagate",
    "register_rule",
    "spectrum_map",
    "sweep",
    "weight_spectra",
]


def _submodules() -> list[str]:
    return [m.name for m in _pkgutil.iter_modules(__path__)]


# Under TYPE_CHECKING mypy sees only the explicit imports above, so a misspelt ``freqlens.X`` is a type error
# rather than an ``Any`` from a module-level __getattr__.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> _typing.Any:
        """A re-exported name or a submodule, imported on first access and cached (PEP 562; plumbing).

        Submodules stay reachable as attributes (``freqlens.spectral.weights``) as they were when this package
        imported them eagerly.
        """
        if name in _LAZY:
            submodule, attribute = _LAZY[name]
            module = _importlib.import_module(f".{submodule}", __name__)
            value = module if attribute is None else getattr(module, attribute)
        elif name in _submodules():
            value = _importlib.import_module(f".{name}", __name__)
        else:
            raise AttributeError(f"module 'freqlens' has no attribute {name!r}")
        globals()[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        """The public names, the submodules and the module dunders, as an eager package would list them (plumbing)."""
        dunders = {n for n in globals() if n.startswith("__") and n.endswith("__")} - {"__getattr__", "__dir__"}
        return sorted(dunders | set(__all__) | set(_submodules()))
