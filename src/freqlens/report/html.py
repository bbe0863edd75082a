"""Self-contained HTML of a report, rendered from the Jinja2 template in ``templates/`` (plumbing).

Figures are embedded as base64 PNG, tables sort with a few lines of inline JavaScript, nothing is loaded
from the network (a Content-Security-Policy forbids it).
"""

from __future__ import annotations

import base64
import io
from importlib import resources
from typing import TYPE_CHECKING, Any

from .core import LAYER_COLUMNS

if TYPE_CHECKING:
    from .core import Report

__all__ = ["figure_png", "render_html"]


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """PNG bytes of a matplotlib figure (plumbing)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)


def _uses_rows(uses: dict[str, Any] | None) -> list[dict[str, str]]:
    """One line per "uses" analysis for the HTML table (plumbing)."""
    out = []
    for name, u in (uses or {}).items():
        if "skipped" in u:
            out.append({"name": name, "css": "skipped", "samples": "", "result": f"skipped: {u['skipped']}", "top": ""})
            continue
        if name == "fourier_heatmap":
            result = (
                f"baseline {u['metric']} {_fmt(u['baseline'])}, largest change {_fmt(u['max_effect'])} "
                f"(eps {u['eps']:g})"
            )
        elif name == "frequency_sensitivity":
            result = "E|dL/dx̂(ω)| per channel, with the data power E|x̂(ω)|²"
        else:
            fit = u.get("fit")
            result = f"layer {u['layer']}" + (
                f"; linear fit alpha {_fmt(fit['init_energy'])}, beta {_fmt(fit['target_energy'])}, "
                f"tau {_fmt(fit['time'])}, relative RMS {_fmt(fit['relative_rms'])}"
                if fit
                else ""
            )
        samples = f"{u['num_patches']} patches" if "num_patches" in u else f"{u['num_images']} images"
        top = " ".join(f"({k}, {l})" for k, l in u.get("top_frequencies", []))
        out.append({"name": name, "css": "exact", "samples": samples, "result": result, "top": top})
    return out


def render_html(
    report: Report, figures: bool = True, standalone: bool = True, pngs: dict[str, bytes] | None = None
) -> str:
    """The report as HTML: a full page (``standalone``) or a fragment for Jupyter; ``pngs`` (figure name ->
    PNG bytes) embeds figures already drawn instead of drawing them again (plumbing)."""
    try:
        import jinja2
    except ImportError as exc:
        raise ImportError("HTML reports need jinja2: pip install 'freqlens[report]' (or pip install jinja2)") from exc
    source = resources.files("freqlens.report").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True)
    template = env.from_string(source)
    counts: dict[str, int] = {}
    table_rows = []
    for row in report.rows:
        status = str(row.get("status"))
        counts[status] = counts.get(status, 0) + 1
        css = {"skipped": "skipped", "exact": "exact"}.get(status, "bound")
        table_rows.append({"css": css, "cells": {c: _fmt(row.get(c)) for c in LAYER_COLUMNS}})
    images: dict[str, str] = {}
    if figures:
        drawn = pngs if pngs is not None else {name: figure_png(fig) for name, fig in report.plot().items()}
        images = {name: base64.b64encode(png).decode("ascii") for name, png in drawn.items()}
    uses_images = {k: v for k, v in images.items() if k.startswith("uses_")}  # drawn in their own section
    return template.render(
        meta=report.meta,
        rows=report.rows,
        columns=LAYER_COLUMNS,
        table_rows=table_rows,
        status_counts=", ".join(f"{v} {k}" for k, v in counts.items()) or "none",
        cbn=report.cbn,
        decoder=report.decoder,
        tracker=report.tracker,
        figures={k: v for k, v in images.items() if k not in uses_images},
        uses=report.uses,
        uses_rows=_uses_rows(report.uses),
        uses_figures=uses_images,
        standalone=standalone,
        fmt=_fmt,
    )
