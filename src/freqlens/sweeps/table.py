"""The tidy table of a sweep: one row per finished cell, one column per swept key and per headline number.

Headline numbers are every numeric scalar of the cell's ``summary.json``, nested keys joined with dots
(``fit_op_norm.a``); booleans, strings and lists are not numbers and are left out. Non-finite values, which
``summary.json`` stores as ``"nan"``/``"inf"``/``"-inf"``, come back as floats.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ..io import atomic_write_bytes, atomic_write_text

__all__ = ["flatten_numbers", "mean_ci95", "table_arrays", "to_dataframe", "write_table"]

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: summary.json entries that describe the run rather than measure anything (the seed is its own column).
NOT_HEADLINES = ("seed",)


def flatten_numbers(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every numeric scalar of a nested mapping, by dotted key (plumbing)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, f"{name}."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, str) and value in _NON_FINITE:
            out[name] = _NON_FINITE[value]
    return out


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float | None]:
    """Mean and half-width of the 95 % Student-t interval ``t_{0.975, n-1} · s / √n`` (``s``: sample standard
    deviation, ddof 1); ``None`` for ``n < 2`` (plumbing: no interval from one seed)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, None
    if v.size < 2:
        return float(v.mean()), None
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return float(v.mean()), half


def cell_value(value: Any) -> Any:
    """A swept value as a table entry: numbers and strings as they are, anything else as JSON text (plumbing)."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


def table_arrays(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Columns as numpy arrays: numeric columns as float64 (missing: NaN), the others as strings (plumbing)."""
    out: dict[str, np.ndarray] = {}
    for col in columns:
        values = [row.get(col) for row in rows]
        numeric = all((isinstance(v, int | float) and not isinstance(v, bool)) or v is None for v in values)
        if numeric:
            out[col] = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
            if col == "seed":
                out[col] = out[col].astype(np.int64)
        else:
            out[col] = np.array(["" if v is None else str(v) for v in values], dtype=str)
    return out


def to_dataframe(arrays: Mapping[str, np.ndarray]) -> Any:
    """A pandas DataFrame of the columns when pandas is installed, else the dict of arrays itself (plumbing)."""
    if importlib.util.find_spec("pandas") is None:
        return dict(arrays)
    import pandas as pd

    return pd.DataFrame({k: v for k, v in arrays.items()})


def write_table(arrays: Mapping[str, np.ndarray], stem: Path) -> list[Path]:
    """``stem.csv`` always, ``stem.parquet`` when pyarrow is installed; both written atomically (plumbing)."""
    columns = list(arrays)
    n = len(next(iter(arrays.values()))) if arrays else 0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for i in range(n):
        writer.writerow([_csv_entry(arrays[c][i]) for c in columns])
    written = [atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())]
    if importlib.util.find_spec("pyarrow") is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({c: arrays[c] for c in columns}), sink)
        written.append(atomic_write_bytes(stem.with_suffix(".parquet"), sink.getvalue().to_pybytes()))
    return written


def _csv_entry(value: Any) -> Any:
    """A table entry as CSV text: floats in their shortest round-trip form (plumbing)."""
    if isinstance(value, np.floating):
        return repr(float(value))  # shortest round-trip text of the float64
    return value.item() if isinstance(value, np.generic) else value
