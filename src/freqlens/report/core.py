"""``Report``: everything :func:`freqlens.report.analyze` measured on one model, in a form people can use.

Plain data: ``meta`` (dict), ``rows`` (one JSON-ready dict per conv layer call, in call order), ``arrays``
(named NumPy arrays: ``w{i}_sv`` per-frequency weight singular values of row ``i`` on its grid, ``w{i}_true_sv``
the true singular values of small layers, ``a{i}_sv`` activation singular values, ``a{i}_radial_centres`` /
``a{i}_radial_energy``, ``decoder_*``, ``track_*``, ``uses_*``), ``cbn`` and ``decoder`` summaries, for tracked
runs ``tracker`` and, when asked for, ``uses`` (the "uses" section: :mod:`freqlens.report.uses`). ``save``
writes ``report.json`` + ``report.npz`` (no pickle); ``load`` reads them back exactly.

Frequencies are the signed integer labels of :func:`freqlens.fourier.signed_frequencies` (FFT order, in
``(-n/2, n/2]``) in every table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_json, read_npz, write_json, write_npz
from .measure import signed_frequency_labels

__all__ = ["LAYER_COLUMNS", "REPORT_FORMAT", "Report", "read_format_json"]

REPORT_FORMAT = "freqlens-report/1"

#: Columns of the per-layer table, in display order.
LAYER_COLUMNS = (
    "layer",
    "type",
    "input_shape",
    "output_shape",
    "operator",
    "status",
    "values",
    "true_values",
    "bound_norm",
    "operator_norm",
    "weight_kept",
    "act_kept",
    "p_low",
    "act_images",
)


def read_format_json(folder: Path, filename: str, fmt: str, written_by: str) -> dict[str, Any]:
    """``folder/filename`` parsed, refused unless its ``format`` field is ``fmt`` (plumbing)."""
    if not (folder / filename).is_file():
        raise FileNotFoundError(f"path {str(folder)!r} holds no {filename} (expected a folder written by {written_by})")
    doc = read_json(folder / filename)
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ValueError(f"{folder / filename}: not a {fmt} file")
    return doc


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return value


def _column(values: list[Any]) -> np.ndarray:
    cells = [_cell(v) for v in values]
    if all(isinstance(c, bool) for c in cells):
        return np.array(cells, dtype=bool)
    if all(isinstance(c, int) and not isinstance(c, bool) for c in cells):
        return np.array(cells, dtype=np.int64)
    if all(c is None or (isinstance(c, int | float) and not isinstance(c, bool)) for c in cells):
        return np.array([np.nan if c is None else float(c) for c in cells], dtype=np.float64)
    return np.array(["" if c is None else str(c) for c in cells], dtype=str)


def _frequency_long_table(rows: list[dict[str, Any]], arrays: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
    """One row per (layer, ω, index) of ``{prefix}{i}_sv`` arrays ``(H, W, r)``, with signed ``k, l``."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("layer", "k", "l", "index", "singular_value")}
    for i, row in enumerate(rows):
        sv = arrays.get(f"{prefix}{i}_sv")
        if sv is None:
            continue
        h, w, r = sv.shape
        kk, ll, jj = np.meshgrid(signed_frequency_labels(h), signed_frequency_labels(w), np.arange(r), indexing="ij")
        parts["layer"].append(np.full(sv.size, row["layer"]))
        parts["k"].append(kk.reshape(-1))
        parts["l"].append(ll.reshape(-1))
        parts["index"].append(jj.reshape(-1))
        parts["singular_value"].append(sv.reshape(-1))
    out: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    out["layer"] = out["layer"].astype(str)
    return out


@dataclass(eq=False)
class Report:
    """What ``analyze`` measured (see the module docstring for the layout)."""

    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    cbn: dict[str, Any] = field(default_factory=dict)
    decoder: dict[str, Any] | None = None
    tracker: dict[str, Any] | None = None
    uses: dict[str, Any] | None = None

    # ------------------------------------------------------------------ views
    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[str(row.get("status"))] = counts.get(str(row.get("status")), 0) + 1
        status = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no conv layer"
        rank = self.cbn.get("activations", {}).get("rank") if self.cbn else None
        extra = f", activation CBN rank {rank}" if rank is not None else ""
        if self.uses:
            extra += f", uses: {', '.join(self.uses)}"
        return (
            f"<freqlens Report of {self.meta.get('model', '?')}: {len(self.rows)} conv layer(s) ({status}), "
            f"input {self.meta.get('input_shape')}, {self.meta.get('images', 0)} image(s){extra}>"
        )

    def _repr_html_(self) -> str:
        from .html import render_html

        return render_html(self, figures=False, standalone=False)

    def to_html(self, figures: bool = True) -> str:
        """A self-contained HTML page (figures as base64 PNG, sortable tables, no network) (plumbing)."""
        from .html import render_html

        return render_html(self, figures=figures, standalone=True)

    def tables(self) -> dict[str, dict[str, np.ndarray]]:
        """Every table as a dict of equal-length column arrays: ``layers`` (one row per conv layer call),
        ``weights`` and ``activations`` (one row per layer, signed frequency ``(k, l)`` and index),
        ``true_singular_values`` (small layers: the true operator's values), ``radial_energy`` and, for the
        "uses" section, ``fourier_heatmap``, ``frequency_sensitivity`` and ``first_layer_energy`` (the owners'
        ``table()``: signed ``k, l`` of the fftshift layout)."""
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        layers = {k: _column([row.get(k) for row in self.rows]) for k in keys}
        true_sv: dict[str, list[np.ndarray]] = {"layer": [], "index": [], "singular_value": []}
        radial: dict[str, list[np.ndarray]] = {"layer": [], "radius": [], "energy": [], "fraction": []}
        for i, row in enumerate(self.rows):
            t = self.arrays.get(f"w{i}_true_sv")
            if t is not None:
                true_sv["layer"].append(np.full(t.size, row["layer"]))
                true_sv["index"].append(np.arange(t.size))
                true_sv["singular_value"].append(t)
            e = self.arrays.get(f"a{i}_radial_energy")
            if e is not None:
                radial["layer"].append(np.full(e.size, row["layer"]))
                radial["radius"].append(self.arrays[f"a{i}_radial_centres"])
                radial["energy"].append(e)
                radial["fraction"].append(e / e.sum() if e.sum() > 0 else np.zeros_like(e))

        def cat(parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
            out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
            out["layer"] = out["layer"].astype(str)
            return out

        out = {
            "layers": layers,
            "weights": _frequency_long_table(self.rows, self.arrays, "w"),
            "activations": _frequency_long_table(self.rows, self.arrays, "a"),
            "true_singular_values": cat(true_sv),
            "radial_energy": cat(radial),
        }
        out.update({name: result.table() for name, result in self.uses_results().items()})
        return out

    def uses_results(self) -> dict[str, Any]:
        """The "uses" section as the owners' result objects (``FourierHeatmap``, ``FrequencySensitivity``,
        ``FirstLayerEnergyProfile``), keyed by analysis name; empty without the section (plumbing)."""
        from .uses import uses_results

        return uses_results(self.uses, self.arrays)

    def to_pandas(self, table: str = "layers") -> Any:
        """One of :meth:`tables` as a ``pandas.DataFrame`` (needs the ``report`` extra) (plumbing)."""
        try:
            pd = importlib.import_module("pandas")
        except ImportError as exc:
            raise ImportError(
                "Report.to_pandas needs pandas: pip install 'freqlens[report]' (or pip install pandas)"
            ) from exc
        tables = self.tables()
        if table not in tables:
            raise ValueError(f"table must be one of {sorted(tables)}, got {table!r}")
        return pd.DataFrame(tables[table])

    def plot(self) -> dict[str, Any]:
        """Matplotlib figures by name (operator norms, radial energy, p_low, CBN counts, true-vs-bound
        spectra; the over-time plots for tracked runs) (plumbing)."""
        from .figures import report_figures

        return report_figures(self)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path/report.json`` and ``path/report.npz`` atomically (no pickle); returns ``path``."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        write_npz(folder / "report.npz", self.arrays)
        write_json(
            folder / "report.json",
            {
                "format": REPORT_FORMAT,
                "meta": self.meta,
                "rows": self.rows,
                "cbn": self.cbn,
                "decoder": self.decoder,
                "tracker": self.tracker,
                "uses": self.uses,
                "arrays": sorted(self.arrays),
            },
        )
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read a report written by :meth:`save` (plumbing)."""
        folder = Path(path)
        doc = read_format_json(folder, "report.json", REPORT_FORMAT, "Report.save")
        arrays = read_npz(folder / "report.npz") if (folder / "report.npz").is_file() else {}
        missing = sorted(set(doc.get("arrays", [])) - set(arrays))
        if missing:
            raise ValueError(f"{folder / 'report.npz'}: arrays {missing[:5]} listed in report.json are missing")
        return cls(
            meta=doc["meta"],
            rows=doc["rows"],
            arrays=arrays,
            cbn=doc["cbn"],
            decoder=doc["decoder"],
            tracker=doc.get("tracker"),
            uses=doc.get("uses"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Report):
            return NotImplemented
        same_arrays = self.arrays.keys() == other.arrays.keys() and all(
            self.arrays[k].dtype == other.arrays[k].dtype
            and np.array_equal(self.arrays[k], other.arrays[k], equal_nan=self.arrays[k].dtype.kind == "f")
            for k in self.arrays
        )
        return same_arrays and (self.meta, self.rows, self.cbn, self.decoder, self.tracker, self.uses) == (
            other.meta,
            other.rows,
            other.cbn,
            other.decoder,
            other.tracker,
            other.uses,
        )

    __hash__ = None  # type: ignore[assignment]
