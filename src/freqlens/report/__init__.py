"""The front door: analyse any CNN in one call (``analyze`` -> :class:`Report`), track its frequencies during
training (:class:`FrequencyTracker`), read the result in a browser (``Report.to_html``).

Every call into freqlens' measurement API goes through :mod:`freqlens.report.measure` (one adapter).
"""

from .analyze import analyze
from .core import Report
from .tracker import FrequencyTracker

__all__ = ["FrequencyTracker", "Report", "analyze"]
