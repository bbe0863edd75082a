"""``freqlens analyze``: the front door on the command line (issue 13, item 3) (plumbing).

``freqlens analyze --model pkg.module:factory | path/to/file.py:factory [--weights ckpt.pt]
[--input-shape C,H,W] [--data mnist:DIR | cifar10:DIR | images:DIR | file.npz | file.pt] [--device cpu|cuda]
[--out DIR] [--html] [--track RUN] [--uses [NAMES]]`` writes a run directory: ``report.json`` + ``report.npz``,
``figures/*.png``, ``report.html`` (with ``--html``) and ``config.json`` (written last: the command, versions).
Weights load with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["add_analyze_parser", "load_data", "load_labelled_data", "load_model"]


def load_model(spec: str, weights: str | None = None) -> nn.Module:
    """``pkg.module:factory`` or ``path/to/file.py:factory`` -> ``factory()``, optionally with a state dict
    from ``weights`` (``torch.load(weights_only=True)``; ``{"state_dict": ...}`` / ``{"model": ...}`` too)."""
    if ":" not in spec:
        raise ValueError(f"--model must be pkg.module:factory or path/to/file.py:factory, got {spec!r}")
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"--model: file {target!r} not found")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"--model: cannot import {target!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules.setdefault(path.stem, module)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ValueError(f"--model: cannot import module {target!r} ({exc})") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"--model: {target!r} has no callable {attr!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"--model: {spec}() returned {type(model).__name__}, expected a torch.nn.Module")
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict):
            for key in ("state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
        if not isinstance(state, dict):
            raise ValueError(f"--weights: {weights!r} holds {type(state).__name__}, expected a state dict")
        model.load_state_dict(state)
    return model.eval()


def _read_images(folder: Path, limit: int | None) -> torch.Tensor:
    import matplotlib.image as mpimg

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    if not files:
        raise FileNotFoundError(f"--data images:{folder}: no .png/.jpg/.jpeg/.bmp file in the folder")
    images = []
    for p in files[:limit]:
        a = np.asarray(mpimg.imread(p))
        a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
        a = a[:, :, None] if a.ndim == 2 else a[:, :, :3]
        images.append(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float())
    sizes = {tuple(t.shape) for t in images}
    if len(sizes) > 1:
        raise ValueError(f"--data images:{folder}: images differ in size/channels {sorted(sizes)[:4]}; resize them")
    return torch.stack(images)


def _tensor_from(obj: Any, where: str, keys: tuple[str, ...] = ("x", "images", "data", "inputs")) -> torch.Tensor:
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(obj)
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, tuple | list) and obj:
        return _tensor_from(obj[0], where, keys)
    if isinstance(obj, dict):
        for key in keys:
            if key in obj:
                return _tensor_from(obj[key], where, keys)
        if len(obj) == 1:
            return _tensor_from(next(iter(obj.values())), where, keys)
    raise ValueError(f"--data {where}: expected a tensor (or a dict with key 'x'/'images'), got {type(obj).__name__}")


_LABEL_KEYS = ("y", "labels", "targets")


def _labels_from(obj: Any) -> torch.Tensor | None:
    """The labels stored beside the images: a dict's ``y`` / ``labels`` / ``targets``, or a pair's second item."""
    found: Any = None
    if isinstance(obj, dict):
        found = next((obj[k] for k in _LABEL_KEYS if k in obj), None)
    elif isinstance(obj, tuple | list) and len(obj) == 2:
        found = obj[1]
    if isinstance(found, np.ndarray):
        found = torch.from_numpy(found)
    return found if isinstance(found, torch.Tensor) else None


def load_labelled_data(spec: str, max_images: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``mnist:DIR`` / ``cifar10:DIR`` (test split, with labels), ``images:DIR`` (no labels), ``file.npz`` or
    ``file.pt`` (images under ``x``/``images``/..., labels under ``y``/``labels``/``targets`` if present) ->
    ``(float images (N, C, ...), labels (N,) or None)`` (plumbing)."""
    from ..datasets import load_cifar10, load_mnist
    from ..io import read_npz

    kind, _, rest = spec.partition(":")
    y: torch.Tensor | None
    if kind == "mnist" and rest:
        x, y = load_mnist(rest, split="test")
    elif kind == "cifar10" and rest:
        x, y = load_cifar10(rest, split="test")
    elif kind == "images" and rest:
        x, y = _read_images(Path(rest), max_images), None
    elif spec.endswith(".npz") or spec.endswith(".pt"):
        obj = read_npz(spec) if spec.endswith(".npz") else torch.load(spec, map_location="cpu", weights_only=True)
        x, y = _tensor_from(obj, spec), _labels_from(obj)
    else:
        raise ValueError(f"--data must be mnist:DIR, cifar10:DIR, images:DIR, file.npz or file.pt, got {spec!r}")
    if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
        raise ValueError(f"--data {spec}: labels of shape {tuple(y.shape)} do not match {x.shape[0]} images")
    if max_images is not None:
        x, y = x[:max_images], (y[:max_images] if y is not None else None)
    return x, y


def load_data(spec: str, max_images: int | None = None) -> torch.Tensor:
    """The images of :func:`load_labelled_data` (plumbing)."""
    return load_labelled_data(spec, max_images)[0]


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes C,H,W such as 3,32,32, got {text!r}")
    return shape


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .._version import __version__
    from ..io import write_json
    from .analyze import analyze
    from .core import Report
    from .html import figure_png
    from .tracker import load_run

    if args.model is None and args.track is None:
        raise ValueError("freqlens analyze needs --model (a model to analyse) or --track RUN (a tracked run to plot)")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but torch.cuda.is_available() is False")
    t0 = time.perf_counter()
    if args.model is not None:
        model = load_model(args.model, args.weights)
        data, labels = load_labelled_data(args.data, args.max_images) if args.data else (None, None)
        if data is None and args.input_shape is None:
            raise ValueError("give --data or --input-shape C,H,W so the model can be run")
        if args.uses is not None and data is None:
            raise ValueError(f"--uses {args.uses} needs --data (images, with labels for the heat map and sensitivity)")
        uses = args.uses.split(",") if args.uses not in (None, "all") else args.uses == "all"
        report = analyze(
            model,
            data,
            args.input_shape,
            labels=labels if uses else None,
            uses=uses,
            uses_max_images=args.uses_max_images,
            layers=args.layers.split(",") if args.layers else None,
            device=args.device,
            batch_size=args.batch_size,
            max_images=args.max_images,
            strict=args.strict,
            progress=not args.no_progress,
            exact_norms=not args.no_exact_norms,
        )
    else:
        report = Report(meta={"model": "(tracked run)", "input_shape": None, "images": 0, "notes": []}, rows=[])
    if args.track is not None:
        doc, arrays = load_run(args.track)
        report.tracker = {
            **doc["config"],
            "operators": doc.get("operators", []),
            "records": len(doc["records"]),
            "run": str(Path(args.track).resolve()),
            "history": doc["records"],
        }
        report.arrays.update(arrays)
    out = Path(args.out)
    report.save(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    from ..io import atomic_write_bytes

    pngs = {name: figure_png(fig, dpi=110) for name, fig in report.plot().items()}  # drawn once, used twice
    written = [atomic_write_bytes(figures / f"{name}.png", png) for name, png in pngs.items()]
    if args.html:
        from ..io import atomic_write_text
        from .html import render_html

        atomic_write_text(out / "report.html", render_html(report, pngs=pngs))
    write_json(
        out / "config.json",
        {
            "command": "analyze",
            "argv": sys.argv[1:],
            "model": args.model,
            "weights": str(Path(args.weights).resolve()) if args.weights else None,
            "data": args.data,
            "track": str(Path(args.track).resolve()) if args.track else None,
            "device": args.device,
            "freqlens": __version__,
            "torch": torch.__version__,
        },
    )
    print(f"{report!r}")
    print(f"[done] analyze in {time.perf_counter() - t0:.1f} s -> {out} ({len(written)} figure(s))", flush=True)
    return 0


def add_analyze_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``freqlens analyze`` on the main parser's subparsers (plumbing)."""
    p = sub.add_parser("analyze", help="analyse any CNN: weight/activation spectra, CBN rank, decoder report, HTML")
    p.add_argument("--model", default=None, help="pkg.module:factory or path/to/file.py:factory (called with no args)")
    p.add_argument("--weights", default=None, help="state dict .pt (loaded with torch.load(weights_only=True))")
    p.add_argument("--input-shape", type=_shape, default=None, help="C,H,W, no batch axis (default: the data's)")
    p.add_argument("--data", default=None, help="mnist:DIR, cifar10:DIR (test split), images:DIR, .npz or .pt")
    p.add_argument("--layers", default=None, help="comma-separated conv module names (default: all)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: where the model is)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-images", type=int, default=512, help="images streamed through the model (default 512)")
    p.add_argument("--strict", action="store_true", help="raise on the first layer that cannot be measured")
    p.add_argument("--no-exact-norms", action="store_true", help="skip the true operator norms (big models: faster)")
    p.add_argument("--out", default="runs/analyze", help="run directory (default: runs/analyze)")
    p.add_argument("--html", action="store_true", help="also write a self-contained report.html")
    p.add_argument("--track", default=None, metavar="RUN", help="a FrequencyTracker run: add its over-time plots")
    p.add_argument(
        "--uses",
        nargs="?",
        const="all",
        default=None,
        metavar="NAMES",
        help="add the 'uses' section: Fourier heat map, input-frequency sensitivity, first-layer energy profile "
        "(all, or comma-separated names from fourier_heatmap,frequency_sensitivity,first_layer_energy); "
        "needs --data, with labels for the first two",
    )
    p.add_argument("--uses-max-images", type=int, default=128, help="images for the 'uses' analyses (default 128)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_analyze)
    return p

