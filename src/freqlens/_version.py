"""The installed version of freqlens, read from the package metadata: pyproject.toml is its one source (plumbing).

A source tree used without installing has no metadata; it then reports ``0+unknown`` rather than a number
that could silently disagree with pyproject.toml.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("freqlens")
except PackageNotFoundError:  # pragma: no cover - only outside an install
    __version__ = "0+unknown"

__all__ = ["__version__"]
