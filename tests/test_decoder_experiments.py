"""The eight ``decoder-*`` experiments: registration, config validation, and tiny end-to-end runs (run, summary,
figures, determinism). Tiny settings use the synthetic white-noise input or MNIST (fast to read); the real
quick and full runs are documented in ``docs/decoder_spectra.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from freqlens.analysis.statistics import NO_VERDICT, VERDICTS
from freqlens.experiments import all_experiments, get_experiment
from freqlens.experiments.runner import run_experiment
from freqlens.io import read_npz

NAMES = [
    "decoder-depth",
    "decoder-fit",
    "decoder-kernel",
    "decoder-learning",
    "decoder-mean",
    "decoder-padding",
    "decoder-position",
    "decoder-upsampling",
]

TINY: dict[str, dict[str, Any]] = {
    "decoder-padding": {"datasets": ["white"], "num_images": 4, "networks": 2},
    "decoder-mean": {"datasets": ["white"], "num_images": 4, "networks": 1},
    "decoder-position": {"datasets": ["white"], "num_images": 4, "networks": 3},
    "decoder-kernel": {"datasets": ["white"], "num_images": 4, "networks": 1, "kernel_sizes": [1, 3]},
    "decoder-depth": {
        "dataset": "mnist",
        "num_images": 2,
        "depth": 4,
        "networks": 1,
        "map_layers": [1, 3],
        "single_depth": 3,
        "single_networks": 64,
    },
    "decoder-fit": {
        "dataset": "mnist",
        "depth": 3,
        "num_images": 4,
        "networks": 1,
        "train_steps": 2,
        "train_images": 32,
        "batch_size": 16,
        "update_images": 4,
        "map_layers": [1, 3],
    },
    "decoder-upsampling": {
        "dataset": "mnist",
        "chain_images": 2,
        "chain_steps": 1,
        "widths": [4, 4],
        "train_images": 32,
        "epochs": 1,
        "batch_size": 16,
        "report_images": 4,
    },
    "decoder-learning": {
        "dataset": "mnist",
        "widths": [4, 4],
        "train_images": 32,
        "epochs": 2,
        "batch_size": 16,
        "show_epochs": [1, 2],
        "eval_images": 4,
    },
}


def test_registered_with_quick_and_full_configs() -> None:
    names = [e.name for e in all_experiments() if e.paper == "decoder"]
    assert sorted(names) == NAMES
    for name in NAMES:
        exp = get_experiment(name)
        full, quick = exp.make_config(), exp.make_config(quick=True)
        assert full != quick  # quick really is smaller
        assert exp.figure and exp.description


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("decoder-padding", {"datasets": ["imagenet"]}, "datasets must be"),
        ("decoder-fit", {"kinds": ["zero_tanh"]}, "kinds must be"),
        ("decoder-depth", {"map_layers": [60]}, "map_layers"),
        ("decoder-kernel", {"kernel_sizes": [2]}, "odd"),
        ("decoder-learning", {"show_epochs": [500]}, "show_epochs"),
        ("decoder-upsampling", {"chain_modes": ["bicubic"]}, "chain_modes"),
    ],
)
def test_bad_configs_rejected_before_running(name: str, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_experiment(name).make_config(quick=True, overrides=override)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_tiny_end_to_end(name: str, tmp_path: Path, data_root: Path) -> None:
    out = run_experiment(name, out=tmp_path, quick=True, data_dir=data_root, overrides=TINY[name], show_progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert "paper_claim" in summary
    assert summary["claims"] and all(c["verdict"] in VERDICTS for c in summary["claims"])
    assert "measured" in summary or "autoencoder" in summary or "relative_error_per_band_at_epochs" in summary
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs, "no figure written"
    data = read_npz(out / "data.npz")
    assert data
    for key, arr in data.items():
        if arr.dtype.kind == "f":
            assert np.isfinite(arr).all() or "p_low" in key, key  # p_low may be nan only for all-zero maps
    if name == "decoder-upsampling":  # chain records keyed by the chain's own layer names; Thm 4.4 to tolerance
        assert {k for k in data if k.startswith("chain__zero_insertion")} == {"chain__zero_insertion__up1__magnitude"}
        identity = summary["claims"][0]
        assert identity["paper"] == "<= 1e-06" and identity["statistic"].startswith("max abs error")
        assert identity["measured"] <= 1e-6 and identity["verdict"] == NO_VERDICT  # 2 chain images


def test_same_seed_same_numbers(tmp_path: Path, data_root: Path) -> None:
    kwargs: dict[str, Any] = {
        "quick": True,
        "overrides": TINY["decoder-padding"],
        "show_progress": False,
        "data_dir": data_root,
    }
    a = read_npz(run_experiment("decoder-padding", out=tmp_path / "a", seed=3, **kwargs) / "data.npz")
    b = read_npz(run_experiment("decoder-padding", out=tmp_path / "b", seed=3, **kwargs) / "data.npz")
    c = read_npz(run_experiment("decoder-padding", out=tmp_path / "c", seed=4, **kwargs) / "data.npz")
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["white__zeros__p_low"], c["white__zeros__p_low"])
    # nested records {dataset: {"input_magnitude", padding: {p_low, p_low_no_dc, magnitude}}}, stored flat by io
    expected = {"white__input_magnitude"} | {
        f"white__{pad}__{key}"
        for pad in ("zeros", "circular", "reflect")
        for key in ("p_low", "p_low_no_dc", "magnitude")
    }
    assert set(a) == expected


def test_fit_exact_route_and_circular_net_are_exact(tmp_path: Path, data_root: Path) -> None:
    out = run_experiment(
        "decoder-fit", out=tmp_path, quick=True, data_dir=data_root, overrides=TINY["decoder-fit"], show_progress=False
    )
    s = json.loads((out / "summary.json").read_text())
    for kind in ("zero_relu", "zero_linear", "circular_linear"):
        init = s["measured"][kind]["init"]
        assert init["exact_rules_max_relative_error"] < 1e-10
        assert init["weight_update_exact_route_max_relative_error"] < 1e-10
    circ = s["measured"]["circular_linear"]["init"]
    assert min(circ["similarity_paper_route_per_layer"]) == pytest.approx(1.0, abs=1e-9)
    assert min(circ["weight_update_similarity_paper_route_per_layer"]) == pytest.approx(1.0, abs=1e-9)


def test_position_networks_differ_only_by_the_mean_of_one_layer(tmp_path: Path, data_root: Path) -> None:
    """decoder-position pairs its six settings: same draws, the large mean added to exactly one layer."""
    from freqlens.experiments.decoder_common import FamilyCell
    from freqlens.experiments.decoder_position import _position_family
    from freqlens.experiments.registry import RunContext
    from freqlens.io import RunDirectory

    cfg = get_experiment("decoder-position").make_config(quick=True, overrides={"datasets": ["white"]})
    captured: dict[int, list[torch.Tensor]] = {}

    def capture(make_network: Any, networks: int, x: torch.Tensor, low_fraction: float) -> dict[str, Any]:
        captured[len(captured)] = [m.weight.detach().clone() for m in make_network(0).modules()
                                   if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
        return {}

    images = np.zeros((1, 3, 8, 8))
    ctx = RunContext(RunDirectory(tmp_path), 0, torch.device("cpu"), None, True, "f", show_progress=False)
    import freqlens.experiments.decoder_position as module

    original = module.network_family_statistics
    module.network_family_statistics = capture  # type: ignore[assignment]
    try:
        for p in range(6):
            _position_family(ctx, (cfg, FamilyCell(0, "white", (f"pos{p}",), images)))
    finally:
        module.network_family_statistics = original
    base = captured[0]
    for p in range(1, 6):
        diffs = [w - b for w, b in zip(captured[p], base, strict=True)]
        for layer, d in enumerate(diffs):
            expected = cfg.large_mean if layer == p - 1 else 0.0
            assert torch.allclose(d, torch.full_like(d, expected), rtol=0, atol=1e-6), (p, layer)
