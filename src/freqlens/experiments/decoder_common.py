"""Helpers shared by the decoder-paper experiments (``decoder-*``): data, layer outputs, fits, figures.

Registers no experiment. Datasets: the paper's Tiny-ImageNet and Broden are not available to freqlens, so
the experiments use CIFAR-10 (32×32 RGB) and MNIST (28×28 grey) instead (``docs/decoder_spectra.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from ..analysis.statistics import Claim, Direction, directional_claim
from ..datasets import load_cifar10, load_mnist
from ..plots import MODE_COLORS
from ..spectral.maps import clip_dc_for_display
from .cells import map_stages
from .registry import RunContext

__all__ = [
    "DATASET_LABELS",
    "DC_LEGEND",
    "FAMILY_KEYS",
    "FamilyCell",
    "FamilySweep",
    "autoencoder_seeds",
    "compare_family_p_low",
    "draw_family_row",
    "draw_magnitude",
    "draw_p_low_bars",
    "family_summary",
    "load_images",
    "log_display",
    "mean_std",
    "stack_network_records",
    "sweep_network_families",
]

DATASET_LABELS = {"cifar10": "CIFAR-10", "mnist": "MNIST", "white": "white noise 64x64"}
#: Legend for bar charts drawn as "with DC" (plain) / "without DC" (hatched) pairs.
DC_LEGEND = [
    Patch(facecolor="white", edgecolor="k", lw=0.5, label="with DC"),
    Patch(facecolor="white", edgecolor="k", lw=0.5, hatch="//", label="without DC"),
]
#: Size of the synthetic white-noise images (spec §5 item 11 uses 64×64 white input, 3 channels).
WHITE_SHAPE = (3, 64, 64)


def load_images(ctx: RunContext, dataset: str, count: int, offset: int = 0, split: str = "test") -> torch.Tensor:
    """``count`` images of ``dataset``, float64 ``(N, C, H, W)``, standardised per channel with the subset's
    own mean and std (the usual CNN input preprocessing; it removes most of the DC bin of raw ``[0, 1]``
    images; choice documented in ``docs/decoder_spectra.md``).

    ``"cifar10"`` / ``"mnist"``: a random subset of the split drawn with
    ``ctx.rng("<dataset>_<split>_images", legacy_offset=offset)``. ``"white"``: i.i.d. standard normal images of
    shape :data:`WHITE_SHAPE` drawn with ``ctx.generator("white_noise_images", legacy_offset=offset)`` (a flat input
    spectrum, so only the network shapes the output spectrum; spec §5 item 11)."""
    if dataset not in DATASET_LABELS:
        raise ValueError(f"dataset must be one of {sorted(DATASET_LABELS)}, got {dataset!r}")
    if dataset == "white":
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        w = torch.randn(
            count,
            *WHITE_SHAPE,
            generator=ctx.generator("white_noise_images", legacy_offset=offset),
            dtype=torch.float64,
        )
        return (w - w.mean(dim=(0, 2, 3), keepdim=True)) / w.std(dim=(0, 2, 3), keepdim=True)
    root = ctx.require_data(DATASET_LABELS[dataset])
    x = load_cifar10(root, split)[0] if dataset == "cifar10" else load_mnist(root, split)[0]
    if count < 1 or count > x.shape[0]:
        raise ValueError(f"count must lie in [1, {x.shape[0]}] for {dataset} {split}, got {count}")
    idx = np.sort(
        ctx.rng(f"{dataset}_{split}_images", legacy_offset=offset).choice(x.shape[0], size=count, replace=False)
    )
    x = x[torch.from_numpy(idx)].to(torch.float64)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / std


def autoencoder_seeds(
    ctx: RunContext,
    network: int,
    *,
    legacy_init_offset: int,
    epochs: int,
    legacy_shared_with: tuple[str, ...] = (),
) -> tuple[int, int]:
    """``(torch seed of the initial weights, EpochSampler seed)`` of trained auto-encoder number ``network``
    (decoder-learning / decoder-upsampling; plumbing).

    Network 0 keeps the pre-stream seeds of the one-network runs (initial weights ``seed * 1_000_003 +
    legacy_init_offset``, batches ``seed``), so that its numbers stay bit-identical to them; networks ``>= 1``
    draw the named streams ``("autoencoder_init", network)`` and ``("autoencoder_batches", network)``.
    ``epochs``: the sampler's epoch count (:func:`freqlens.training.loop.sampler_epochs`), guarded against
    every other seed of the run; ``legacy_shared_with``: as :meth:`RunContext.sampler_seed` (network 0 only)."""
    if network < 0:
        raise ValueError(f"network must be >= 0, got {network}")
    if network == 0:
        init = ctx.torch_seed("autoencoder_init", legacy_offset=legacy_init_offset)
        batches = ctx.sampler_seed(
            "autoencoder_batches",
            legacy_offset=0,
            legacy_multiplier=1,
            epochs=epochs,
            legacy_shared_with=legacy_shared_with,
        )
        return init, batches
    init = ctx.torch_seed("autoencoder_init", network)
    return init, ctx.sampler_seed("autoencoder_batches", network, epochs=epochs)


def stack_network_records(records: Sequence[Mapping[str, Any]], shared: Sequence[str] = ()) -> dict[str, Any]:
    """One record of several networks' records of the same layout: every array gets a leading network axis
    (nested mappings recursively); keys in ``shared`` (the same for every network: layer names, replica
    positions) are kept once, from network 0 (plumbing)."""
    if not records:
        raise ValueError("records must hold at least one network's record")
    out: dict[str, Any] = {}
    for key, first in records[0].items():
        values = [r[key] for r in records]
        if key in shared:
            out[key] = first
        elif isinstance(first, Mapping):
            out[key] = stack_network_records(values, shared)
        else:
            out[key] = np.stack([np.asarray(v) for v in values])
    return out


def mean_std(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``{mean, std}`` (population std) of ``values``, rounded to 6 decimals for ``summary.json`` (plumbing)."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(arr.mean()), 6), "std": round(float(arr.std()), 6)}


def log_display(magnitude: np.ndarray) -> np.ndarray:
    """``log10`` of an unshifted magnitude map with DC clipped to the second-largest value (as the paper's
    figures), fftshifted for display (DC at the centre)."""
    clipped = clip_dc_for_display(magnitude)
    floor = max(float(clipped.max()), 1e-300) * 1e-12
    return np.fft.fftshift(np.log10(clipped + floor))


def draw_magnitude(
    ax: Axes,
    magnitude: np.ndarray,
    title: str | None = None,
    marks: np.ndarray | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> Any:
    """Draw a magnitude map (unshifted ``(H, W)``) as the paper does: fftshifted, log scale, DC clipped.

    Axes are the signed frequencies ``(k, l)`` (DC at the centre). ``marks``: unshifted ``(P, 2)`` positions
    to circle (e.g. the predicted DC replicas of Thm 4.4). ``colorbar``: a log10 scale bar next to the map (on
    by default: a log map without its scale cannot be read)."""
    h, w = magnitude.shape
    shown = log_display(magnitude)
    ext = (-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5)
    im = ax.imshow(shown, cmap="viridis", extent=ext, vmin=vmin, vmax=vmax)
    ax.set_xticks([-(w // 2), 0, w - w // 2 - 1])
    ax.set_yticks([-(h // 2), 0, h - h // 2 - 1])
    ax.tick_params(labelsize=6, length=2)
    if marks is not None and len(marks):
        ku = np.where(marks[:, 0] >= h - h // 2, marks[:, 0] - h, marks[:, 0])
        lv = np.where(marks[:, 1] >= w - w // 2, marks[:, 1] - w, marks[:, 1])
        ax.scatter(lv, ku, s=60, facecolors="none", edgecolors="#D55E00", linewidths=0.9)
    if title:
        ax.set_title(title, fontsize=7)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        cb.ax.tick_params(labelsize=6)
        cb.set_label("log10 |H|", fontsize=6)
    return im


#: The arrays of one network family that experiments store and plot (see :func:`network_family_statistics`).
FAMILY_KEYS = ("p_low", "p_low_no_dc", "magnitude")


@dataclass(frozen=True)
class FamilyCell:
    """One cell of :func:`sweep_network_families`: the dataset (number and name), the setting's record path
    (e.g. ``("zeros",)`` or ``("default", "K3")``) and the dataset's images ``(N, C, H, W)`` float64 (plumbing)."""

    dataset_index: int
    dataset: str
    setting: tuple[str, ...]
    images: np.ndarray


#: A sweep's cell function: module level (picklable), ``measure(ctx, (cfg, cell)) -> {name: array}``.
FamilyMeasure = Callable[[RunContext, tuple[Any, FamilyCell]], Mapping[str, Any]]


@dataclass
class FamilySweep:
    """What :func:`sweep_network_families` measured: the images per dataset and the family statistics per
    ``(dataset, setting)`` (plumbing)."""

    images: dict[str, torch.Tensor]
    families: dict[tuple[str, tuple[str, ...]], dict[str, np.ndarray]]

    def tree(self) -> dict[str, Any]:
        """The nested record ``{dataset: {"input_magnitude": (H, W), setting...: {p_low, p_low_no_dc,
        magnitude}}}`` that ``data.npz`` stores and ``plot`` reads (plumbing)."""
        tree: dict[str, Any] = {}
        for ds, x in self.images.items():
            tree[ds] = {"input_magnitude": torch.fft.fft2(x).abs().mean(dim=(0, 1)).numpy()}
        for (ds, setting), res in self.families.items():
            node = tree[ds]
            for level in setting[:-1]:
                node = node.setdefault(level, {})
            node[setting[-1]] = {key: res[key] for key in FAMILY_KEYS}
        return tree


def sweep_network_families(
    ctx: RunContext,
    cfg: Any,
    stage: str,
    image_offset: int,
    settings: Sequence[tuple[str, ...]],
    measure: FamilyMeasure,
    workers: int = 1,
) -> FamilySweep:
    """The sweep of decoder-padding, -mean and -kernel (plumbing): for every dataset ``cfg.datasets[di]``
    (``cfg.num_images`` images drawn at ``image_offset + di``) and every setting, one resumable stage
    ``{stage}_{dataset}_{setting...}`` computing ``measure(ctx, (cfg, FamilyCell(...)))``, on ``workers``
    processes (:func:`freqlens.experiments.cells.map_stages`; the same numbers for any count)."""
    images = {ds: load_images(ctx, ds, cfg.num_images, offset=image_offset + di) for di, ds in enumerate(cfg.datasets)}
    cells = [
        ("_".join((stage, ds, *setting)), (cfg, FamilyCell(di, ds, setting, images[ds].numpy())))
        for di, ds in enumerate(cfg.datasets)
        for setting in settings
    ]
    results = map_stages(ctx, cells, measure, workers=workers)
    families = {(payload[1].dataset, payload[1].setting): res for (_, payload), res in zip(cells, results)}
    return FamilySweep(images, families)


def family_summary(family: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``summary.json`` entry of one network family: output ``p_low`` with and without DC (mean ± std over
    networks, §4 item 7) and how many all-zero outputs were left out (plumbing)."""
    return {
        "output_p_low": mean_std(family["p_low"][:, -1]),
        "output_p_low_no_dc": mean_std(family["p_low_no_dc"][:, -1]),
        "images_with_all_zero_output_left_out": int(family["undefined_images"][:, -1].sum()),
    }


def compare_family_p_low(
    statement: str,
    paper: str,
    first: Mapping[str, np.ndarray],
    second: Mapping[str, np.ndarray],
    expected: Direction,
    paired: bool,
) -> list[Claim]:
    """The claim "output ``p_low`` of family ``first`` is ``expected`` (greater/less) than of ``second``",
    judged over networks for ``p_low`` with DC (the paper's definition) and without DC (§4 item 7).

    ``first["p_low"]``, ``first["p_low_no_dc"]`` (and the same for ``second``): ``(networks, L)`` arrays as
    :func:`network_family_statistics` returns them; the last layer is compared. ``paired=True`` (same weights
    or normal draws in both settings): paired t, ``df = n - 1``; ``paired=False`` (different networks): Welch's
    t with the Welch-Satterthwaite df. Verdict by :func:`freqlens.analysis.statistics.directional_claim`
    (two-sided 5%; fewer than 3 networks: no verdict). One shared comparison for decoder-padding/-mean/-kernel."""
    claims = []
    for key, what in (("p_low", "p_low with DC"), ("p_low_no_dc", "p_low without DC")):
        claims.append(
            directional_claim(
                f"{statement} ({what})",
                paper,
                np.asarray(first[key])[:, -1],
                expected,
                other=np.asarray(second[key])[:, -1],
                paired=paired,
                note=f"measured = mean difference of output {what} over networks (first - second)",
            )
        )
    return claims


def draw_family_row(
    axes: Sequence[Axes],
    dataset_tree: Mapping[str, Any],
    dataset: str,
    records: Sequence[Mapping[str, np.ndarray]],
    titles: Sequence[str],
    tick_labels: Sequence[str],
) -> None:
    """One figure row of a family sweep (plumbing): the dataset's input magnitude map, the mean output map of
    every setting's record, and the paired ``p_low`` bars (:func:`draw_p_low_bars`) in the last axes."""
    draw_magnitude(axes[0], dataset_tree["input_magnitude"], f"{DATASET_LABELS[dataset]} input")
    for ax, record, title in zip(axes[1:], records, titles):
        draw_magnitude(ax, record["magnitude"], title)
    draw_p_low_bars(
        axes[-1], {key: [rec[key][:, -1] for rec in records] for key in ("p_low", "p_low_no_dc")}, tick_labels
    )


def draw_p_low_bars(ax: Axes, values: Mapping[str, Sequence[np.ndarray]], tick_labels: Sequence[str]) -> None:
    """Paired bars per setting: ``p_low`` of the output with DC (plain) and without DC (hatched), mean ± std over
    networks. ``values["p_low"]`` / ``values["p_low_no_dc"]``: one array of per-network values per setting
    (NaN = every image undefined, left out)."""
    xs = np.arange(len(tick_labels))
    colors = [MODE_COLORS[i % len(MODE_COLORS)] for i in range(len(tick_labels))]
    for off, key, hatch in ((-0.18, "p_low", ""), (0.18, "p_low_no_dc", "//")):
        vals = values[key]
        ax.bar(
            xs + off,
            [np.nanmean(v) for v in vals],
            0.36,
            yerr=[np.nanstd(v) for v in vals],
            color=colors,
            hatch=hatch,
            edgecolor="k",
            lw=0.4,
        )
    ax.set_xticks(xs)
    ax.set_xticklabels(list(tick_labels), fontsize=7)
    ax.set_ylabel("$p_{low}$ of output")
    ax.set_ylim(0, 1.2)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.legend(handles=DC_LEGEND, fontsize=6, ncol=2, loc="upper center", frameon=False)
