"""The "uses" section of ``analyze`` (issue 16 item 4): the three maps beside the weight and activation spectra,
the owners' numbers on the same images, exact save/load, tables, figures, HTML, CLI, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from freqlens.analysis.first_layer_energy import first_layer_energy_profile
from freqlens.analysis.frequency_use import fourier_heatmap, input_frequency_sensitivity
from freqlens.cli import main
from freqlens.report import Report, analyze
from freqlens.report.figures import uses_figures
from freqlens.report.uses import USES
from models_zoo import ZOO, seeded
from test_tracker import sgd_steps

USES_FIGURES = ("uses_fourier_heatmap", "uses_frequency_sensitivity", "uses_first_layer_energy", "uses_beside_spectra")
MODEL_SOURCE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
"""


def trained_cnn(steps: int = 5) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small CNN trained for a few SGD steps on seeded random images: ``(model, x, y)``."""
    namespace: dict[str, object] = {}
    exec(MODEL_SOURCE, namespace)  # the same factory the CLI test loads from a file
    net = namespace["build"]()  # type: ignore[operator]
    assert isinstance(net, nn.Module)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(40, 3, 12, 12, generator=gen), torch.randint(0, 4, (40,), generator=gen)
    sgd_steps(net, x, y, steps, 0.5)
    return net.eval(), x, y


SETTINGS = {"batch_size": 8, "uses_max_images": 16, "heatmap_metric": "loss", "progress": False}


def test_uses_section_holds_the_owners_numbers_and_round_trips_exactly(tmp_path: Path) -> None:
    net, x, y = trained_cnn()
    net.train()  # analysis must leave every flag and weight as found
    state = {k: v.clone() for k, v in net.state_dict().items()}
    report = analyze(net, (x, y), uses=True, **SETTINGS)  # type: ignore[arg-type]
    assert net.training and all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert report.uses is not None and list(report.uses) == list(USES)
    assert not any("skipped" in u for u in report.uses.values())
    # the same numbers as the owners' public functions on the same 16 images and settings
    first = (x[:16], y[:16])
    hm = fourier_heatmap(net, first, eps=4.0, metric="loss", batch_size=8, seed=0, progress=False)
    fs = input_frequency_sensitivity(net, first, batch_size=8, progress=False)
    fl = first_layer_energy_profile(net, first, batch_size=8, progress=False)
    np.testing.assert_array_equal(report.arrays["uses_heatmap_values"], hm.values)
    assert report.uses["fourier_heatmap"]["baseline"] == hm.baseline and hm.effect.max() > 0
    np.testing.assert_array_equal(report.arrays["uses_sensitivity_sensitivity"], fs.sensitivity)
    np.testing.assert_array_equal(report.arrays["uses_sensitivity_power"], fs.power)
    np.testing.assert_array_equal(report.arrays["uses_fl_energy"], fl.energy)
    np.testing.assert_array_equal(report.arrays["uses_fl_eigenvalues"], fl.eigenvalues)
    assert report.uses["first_layer_energy"]["layer"] == "0" and report.uses["first_layer_energy"]["fit"] is not None
    # top frequencies: signed labels of the largest entries of the maps
    top = report.uses["fourier_heatmap"]["top_frequencies"]
    at = {(int(r), int(c)): hm.effect[i, j] for i, r in enumerate(hm.row_frequencies)
          for j, c in enumerate(hm.col_frequencies)}  # fmt: skip
    assert len(top) == 5 and at[tuple(top[0])] == hm.effect.max()
    assert [at[tuple(f)] for f in top] == sorted((at[tuple(f)] for f in top), reverse=True)
    assert not any([-k, -l] in top for k, l in top if (k, l) != (0, 0))  # one frequency per pair ±ω
    # exact save/load, and the rebuilt result objects give the owners' tables
    loaded = Report.load(report.save(tmp_path / "rep"))
    assert loaded == report and loaded.uses == report.uses
    rebuilt = loaded.uses_results()
    assert set(rebuilt) == set(USES)
    np.testing.assert_array_equal(rebuilt["fourier_heatmap"].values, hm.values)
    assert rebuilt["first_layer_energy"].fit == fl.fit
    tables = loaded.tables()
    for name, owner in (("fourier_heatmap", hm), ("frequency_sensitivity", fs), ("first_layer_energy", fl)):
        assert tables[name].keys() == owner.table().keys()
        for col in tables[name]:
            np.testing.assert_array_equal(tables[name][col], owner.table()[col])
    assert "uses: fourier_heatmap" in repr(report) and "\n" not in repr(report)


def test_html_shows_the_three_maps_next_to_weight_and_activation_spectra() -> None:
    pytest.importorskip("jinja2", reason="jinja2 is the optional 'report' extra (HTML templates)")
    net, x, y = trained_cnn()
    report = analyze(net, x, labels=y, uses=True, **SETTINGS)  # type: ignore[arg-type]
    figures = uses_figures(report)
    assert set(figures) == set(USES_FIGURES)
    beside = figures["uses_beside_spectra"]
    titles = [ax.get_title() for ax in beside.axes if ax.get_title()]
    assert any(t.startswith("heat map") for t in titles) and any(t.startswith("input sensitivity") for t in titles)
    assert any(t.startswith("weights 0: σ_max") for t in titles) and any(t.startswith("activations 0") for t in titles)
    html = report.to_html()
    assert '<section id="uses">' in html and '<section id="layers">' in html
    for name in (*USES_FIGURES, "radial_energy", "operator_norms"):
        assert f'id="fig-{name}"' in html, name
    uses_part = html[html.index('<section id="uses">') : html.index("</section>", html.index('<section id="uses">'))]
    assert all(f'id="fig-{n}"' in uses_part for n in USES_FIGURES)  # drawn inside the uses section
    assert "first_layer_energy" in uses_part and "linear fit alpha" in uses_part


def test_dataset_and_dataloader_give_the_same_uses_numbers() -> None:
    net, x, y = trained_cnn(steps=2)
    ds = torch.utils.data.TensorDataset(x, y)
    a = analyze(net, (x, y), uses=True, **SETTINGS)  # type: ignore[arg-type]
    for data in (ds, torch.utils.data.DataLoader(ds, batch_size=8)):
        b = analyze(net, data, uses=True, **SETTINGS)  # type: ignore[arg-type]
        assert b.uses == a.uses
        for key in (k for k in a.arrays if k.startswith("uses_")):
            np.testing.assert_array_equal(b.arrays[key], a.arrays[key])


def test_uses_needs_its_input_and_says_so_in_one_line() -> None:
    net, x, y = trained_cnn(steps=1)
    cases = [
        ({"data": None, "input_shape": (3, 12, 12), "uses": True}, "needs data"),
        ({"data": x, "uses": True}, r"needs labels: pass labels="),
        ({"data": torch.utils.data.TensorDataset(x), "uses": True}, r"items must be \(x, y\)"),
        ({"data": x, "labels": y[:5], "uses": True}, "labels must be a 1-D tensor with one class index per image"),
        ({"data": x, "labels": y.float(), "uses": True}, "labels must be integer class indices"),
        ({"data": x, "labels": y}, "labels= is only used by the 'uses' section"),
        ({"data": x, "uses": "nope"}, "uses must be True, False, 'all' or names from"),
        ({"data": (x, y), "uses": True, "heatmap_metric": "acc"}, "heatmap_metric"),
        ({"data": (x, y), "uses": True, "heatmap_eps": 0}, "heatmap_eps must be a number > 0"),
        ({"data": iter([(x, y)]), "uses": True}, "needs re-iterable data"),
    ]
    for kwargs, message in cases:
        with pytest.raises((ValueError, TypeError), match=message) as info:
            analyze(net, progress=False, **kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    # data=(x, y) without uses measures the images as before; the first-layer profile alone needs no labels
    assert analyze(net, (x, y), batch_size=8, progress=False).uses is None
    report = analyze(net, x, uses=["first_layer_energy"], batch_size=8, progress=False)
    assert report.uses is not None and list(report.uses) == ["first_layer_energy"]


def test_uses_on_a_decoder_marks_what_does_not_apply_and_strict_raises() -> None:
    net = seeded(ZOO["unet"][0], **ZOO["unet"][1])
    x, y = torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
    report = analyze(net, (x, y), uses=True, batch_size=4, progress=False)
    assert report.uses is not None
    assert "class scores" in report.uses["fourier_heatmap"]["skipped"]  # a decoder has no classes
    assert "skipped" in report.uses["frequency_sensitivity"]
    assert report.uses["first_layer_energy"]["layer"] == "enc1"
    assert set(report.uses_results()) == {"first_layer_energy"}
    with pytest.raises(ValueError, match="class scores"):
        analyze(net, (x, y), uses=True, batch_size=4, strict=True, progress=False)


def test_cli_analyze_uses_writes_the_section(tmp_path: Path) -> None:
    pytest.importorskip("jinja2", reason="jinja2 is the optional 'report' extra (HTML templates)")
    run = uses_cli_run(tmp_path)
    doc = json.loads((run / "report.json").read_text())
    assert list(doc["uses"]) == list(USES) and not any("skipped" in u for u in doc["uses"].values())
    html = (run / "report.html").read_text()
    for name in (*USES_FIGURES, "radial_energy"):
        assert f'id="fig-{name}"' in html and (run / "figures" / f"{name}.png").is_file()
    assert Report.load(run).uses == doc["uses"]


def uses_cli_run(tmp_path: Path) -> Path:
    """``freqlens analyze --model file.py:build --weights w.pt --data d.pt --uses --html`` on the trained CNN."""
    net, x, y = trained_cnn()
    (tmp_path / "user_model.py").write_text(MODEL_SOURCE)
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    out = tmp_path / "run"
    argv = ["analyze", "--model", f"{tmp_path / 'user_model.py'}:build", "--weights", str(tmp_path / "weights.pt"),
            "--data", str(tmp_path / "data.pt"), "--uses", "--uses-max-images", "16", "--batch-size", "8",
            "--html", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out
