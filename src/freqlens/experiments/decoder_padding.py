"""``decoder-padding``: zero vs circular vs mirror (reflect) padding (decoder paper Fig. 4c, App. C.3 Fig. 10;
``spec/decoder_spectra.md`` §4 item 4, Thm 4.3).

Five conv layers with 16 kernels of 7×7 (3 in the last), ReLU, at initialisation, applied to white noise,
CIFAR-10 and MNIST images (the paper's Broden / Tiny-ImageNet are unavailable). The same random weights are used for the
three padding modes (paired comparison); results are averaged over several random networks because single
networks are noisy (§5 item 11). Read-out: ``p_low`` of the output (with and without the DC bin), per layer,
the mean output magnitude maps, and the paired t statistic of the difference between paddings. Theory next to
it: where Thm 4.3 puts the leak ``a²τ²`` of one zero padding (share on the axes, share inside ``Ω_low``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..models.decoders import five_layer_network
from ..spectral.maps import low_frequency_mask
from ..theory.decoder_som import zero_padding_som_gain
from .decoder_common import (
    DATASET_LABELS,
    draw_magnitude,
    draw_p_low_bars,
    load_images,
    mean_std,
    network_family_statistics,
)
from .registry import Experiment, ExperimentResult, RunContext, register

PADDINGS = ("zeros", "circular", "reflect")
PADDING_LABELS = {"zeros": "zero", "circular": "circular", "reflect": "mirror (reflect)"}


@dataclass(frozen=True)
class PaddingConfig:
    """Settings of ``decoder-padding`` (defaults = full run; [choice] = not fixed by the paper)."""

    datasets: tuple[str, ...] = ("white", "cifar10", "mnist")  # CIFAR-10/MNIST replace Broden/Tiny-ImageNet
    num_images: int = 512  # [choice] test images per dataset
    networks: int = 20  # [choice] random networks averaged (paired across paddings)
    kernel_size: int = 7
    width: int = 16
    paddings: tuple[str, ...] = PADDINGS
    low_fraction: float = 1 / 8  # Ω_low of §4 item 7

    def validate(self) -> None:
        """Refuse unknown datasets or padding modes and empty counts (plumbing)."""
        if not self.datasets or any(d not in DATASET_LABELS for d in self.datasets):
            raise ValueError(f"datasets must be a non-empty subset of {sorted(DATASET_LABELS)}, got {self.datasets}")
        if not self.paddings or any(p not in PADDINGS for p in self.paddings):
            raise ValueError(f"paddings must be a non-empty subset of {PADDINGS}, got {self.paddings}")
        if self.networks < 1 or self.num_images < 1:
            raise ValueError("networks and num_images must be >= 1")


def _leak_shares(size: tuple[int, ...], pad: int, cfg: PaddingConfig) -> dict[str, float]:
    """Where Thm 4.3's leak ``a²τ_uv²`` of one zero padding ``M → M + 2p`` lands: share on the axes
    (``u = 0`` or ``v = 0``) and share inside ``Ω_low`` (i.i.d. pixels; the theorem's own setting)."""
    m, n = int(size[0]), int(size[1])
    gain = zero_padding_som_gain(1.0, (m, n), (m + 2 * pad, n + 2 * pad))
    axes = np.zeros_like(gain, dtype=bool)
    axes[0, :] = True
    axes[:, 0] = True
    total = float(gain.sum())
    return {
        "share_on_axes": round(float(gain[axes].sum()) / total, 4),
        "share_in_omega_low": round(float(gain[low_frequency_mask((m, n), cfg.low_fraction)].sum()) / total, 4),
    }


def _paired(diff: np.ndarray) -> dict[str, float]:
    """Mean paired difference over networks, its standard error and t statistic (same weights, two paddings)."""
    n = diff.shape[0]
    se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    mean = float(diff.mean())
    t = mean / se if n > 1 and se > 0 else float("nan")
    return {
        "mean": round(mean, 6),
        "standard_error": round(se, 6),
        "paired_t": round(t, 3),
        "fraction_of_networks_positive": round(float((diff > 0).mean()), 4),
    }


def run_padding(ctx: RunContext, cfg: PaddingConfig) -> ExperimentResult:
    """``p_low`` per layer of 5-layer ReLU nets per padding mode, same weights (paired t), Thm 4.3 next to it."""
    data: dict[str, np.ndarray] = {}
    measured: dict[str, Any] = {}
    for di, ds in enumerate(cfg.datasets):
        x = load_images(ctx, ds, cfg.num_images, offset=10 + di)
        data[f"{ds}_input_magnitude"] = torch.fft.fft2(x).abs().mean(dim=(0, 1)).numpy()
        per_ds: dict[str, Any] = {}
        for pad in cfg.paddings:

            def compute(pad: str = pad, x: torch.Tensor = x, di: int = di) -> dict[str, np.ndarray]:
                def make_network(s: int) -> nn.Sequential:
                    with torch.random.fork_rng():
                        torch.manual_seed(ctx.seed * 1_000_003 + 1000 * di + s)  # same weights for every padding
                        return five_layer_network(cfg.kernel_size, pad, x.shape[1], cfg.width, x.shape[1])

                return network_family_statistics(make_network, cfg.networks, x, cfg.low_fraction)

            res = ctx.stage(f"padding_{ds}_{pad}", compute)
            data[f"{ds}_{pad}_p_low"] = res["p_low"]  # (networks, layers)
            data[f"{ds}_{pad}_p_low_no_dc"] = res["p_low_no_dc"]
            data[f"{ds}_{pad}_magnitude"] = res["magnitude"]
            per_ds[pad] = {
                "output_p_low": mean_std(res["p_low"][:, -1]),
                "output_p_low_no_dc": mean_std(res["p_low_no_dc"][:, -1]),
                "images_with_all_zero_output_left_out": int(res["undefined_images"][:, -1].sum()),
                "p_low_no_dc_per_layer": np.round(res["p_low_no_dc"].mean(axis=0), 4).tolist(),
            }
        for a_pad, b_pad in (("zeros", "circular"), ("reflect", "circular")):
            if a_pad not in cfg.paddings or b_pad not in cfg.paddings:
                continue
            for suffix in ("p_low", "p_low_no_dc"):
                diff = data[f"{ds}_{a_pad}_{suffix}"][:, -1] - data[f"{ds}_{b_pad}_{suffix}"][:, -1]
                per_ds[f"{a_pad}_minus_{b_pad}_{suffix}"] = _paired(diff)
        per_ds["theory_thm_4_3_one_zero_padding"] = _leak_shares(tuple(x.shape[-2:]), cfg.kernel_size // 2, cfg)
        measured[DATASET_LABELS[ds]] = per_ds
    verdict: dict[str, dict[str, str]] = {}
    for label, per_ds in measured.items():
        for key, what in (
            ("zeros_minus_circular_p_low", "zero vs circular, p_low with DC"),
            ("zeros_minus_circular_p_low_no_dc", "zero vs circular, p_low without DC"),
            ("reflect_minus_circular_p_low", "mirror vs circular, p_low with DC"),
            ("reflect_minus_circular_p_low_no_dc", "mirror vs circular, p_low without DC"),
        ):
            d = per_ds.get(key)
            if d is None:
                continue
            t = d["paired_t"]
            if not np.isfinite(t):
                word = "too few networks for a paired test"
            elif t > 2:
                word = "higher: consistent with the paper"
            elif t < -2:
                word = "lower: NOT consistent with the paper"
            else:
                word = "no significant difference (|t| <= 2)"
            verdict.setdefault(label, {})[what] = (
                f"paired difference {d['mean']:+.4f} ± {d['standard_error']:.4f} (t = {t:+.1f}, positive in "
                f"{d['fraction_of_networks_positive']:.0%} of networks): {word}"
            )
    summary = {
        "paper_claim": (
            "Fig. 4c / App. C.3: zero padding encodes more significant low-frequency components than circular "
            "padding; mirror padding also enhances low frequencies to some extent."
        ),
        "setup": (
            f"5 conv layers, {cfg.width} kernels of {cfg.kernel_size}x{cfg.kernel_size} (3 in the last), ReLU, PyTorch "
            f"default init, same weights for every padding; {cfg.networks} networks x {cfg.num_images} images"
        ),
        "datasets": [DATASET_LABELS[d] for d in cfg.datasets],
        "datasets_note": "CIFAR-10 and MNIST replace Broden/Tiny-ImageNet; white noise (64x64, spec §5.11) isolates "
        "what the random network itself does to the spectrum",
        "metric": "p_low of the network output (spec §4 item 7, Ω_low = 1/8 band), mean ± std over networks",
        "measured": measured,
        "verdict": verdict,
    }
    return ExperimentResult(data=data, summary=summary)


def plot_padding(data: Mapping[str, np.ndarray], cfg: PaddingConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw decoder-padding: input and output magnitude maps per padding and the ``p_low`` bars (plumbing)."""
    ncol = 1 + len(cfg.paddings) + 1
    fig = Figure(figsize=(2.0 * ncol + 0.5, 2.2 * len(cfg.datasets) + 0.4), constrained_layout=True)
    axes = fig.subplots(len(cfg.datasets), ncol, squeeze=False)
    for r, ds in enumerate(cfg.datasets):
        draw_magnitude(axes[r, 0], data[f"{ds}_input_magnitude"], f"{DATASET_LABELS[ds]} input")
        for j, pad in enumerate(cfg.paddings, start=1):
            draw_magnitude(axes[r, j], data[f"{ds}_{pad}_magnitude"], f"{PADDING_LABELS[pad]} padding: output")
        draw_p_low_bars(
            axes[r, -1],
            {key: [data[f"{ds}_{p}_{key}"][:, -1] for p in cfg.paddings] for key in ("p_low", "p_low_no_dc")},
            [PADDING_LABELS[p].split(" ")[0] for p in cfg.paddings],
        )
    fig.suptitle(
        "Fig. 4c: output magnitude maps (log10, DC clipped) and $p_{low}$ (mean ± std over networks) by padding",
        fontsize=8,
    )
    return {"fig4c_padding": fig}


register(
    Experiment(
        name="decoder-padding",
        description="Decoder paper Fig. 4c: zero vs circular vs mirror padding, p_low of 5-layer ReLU nets",
        config_cls=PaddingConfig,
        run=run_padding,
        plot=plot_padding,
        quick={"num_images": 32, "networks": 4},
        needs=("cifar10", "mnist"),
        paper="decoder",
        devices=("cpu",),
        figure="Fig. 4c, Fig. 10",
    )
)
