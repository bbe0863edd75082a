"""The HTML report in a real browser: headless Chromium (Debian's package) renders it; every section and
every embedded image is present and decoded; a screenshot is saved. Skips with a reason without Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from freqlens.cli import main
from freqlens.report import FrequencyTracker
from test_report_uses import USES_FIGURES, uses_cli_run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium; .ci/run does it)"
)


pytest.importorskip("jinja2", reason="jinja2 is the optional 'report' extra (HTML templates)")


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--virtual-time-budget=10000",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def _tracked_run(out: Path) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    x, y = torch.rand(24, 3, 8, 8), torch.randint(0, 3, (24,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with FrequencyTracker(net, probe=x[:8], every=2, out=out) as tracker:
        for _ in range(6):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tracker.step(loss=loss)
    torch.save({"x": x}, out.parent / "probe.pt")
    return net


@pytest.mark.slow
def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    _tracked_run(tmp_path / "track")
    model_file = tmp_path / "user_model.py"
    model_file.write_text(
        "from torch import nn\nimport torch\n\ndef build():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),\n"
        "                         nn.Conv2d(4, 3, 3, padding=1, padding_mode='circular'))\n"
    )
    out = tmp_path / "run"
    argv = ["analyze", "--model", f"{model_file}:build", "--data", str(tmp_path / "probe.pt"), "--out", str(out)]
    code = main([*argv, "--html", "--track", str(tmp_path / "track"), "--no-progress"])
    assert code == 0
    assert '<section id="decoder">' in (out / "report.html").read_text()  # the model upsamples
    _check_in_browser(out / "report.html", tmp_path, tracked=True)


def _check_in_browser(html: Path, tmp_path: Path, tracked: bool, uses: bool = False) -> None:
    """Every section and figure is in the rendered DOM, every image decoded; saves a screenshot."""
    text = html.read_text()
    n_images = text.count("<img ")
    assert n_images >= 4 + 4 * tracked + 4 * uses  # report figures (+ over-time plots, + the uses maps)
    assert "http://" not in text and "https://" not in text
    dom = _chromium(tmp_path, "--dump-dom", html.as_uri()).stdout
    sections = ("summary", "layers", "cbn", "figures", *(("tracker",) if tracked else ()), *(("uses",) if uses else ()))
    for section in sections:
        assert f'<section id="{section}">' in dom, section
    names = ["operator_norms", "radial_energy", "p_low", "cbn"]
    if tracked:
        names += ["track_loss", "track_weight_frequencies", "track_activation_energy", "track_bottleneck"]
    if uses:
        names += list(USES_FIGURES)
    for name in names:
        assert f'id="fig-{name}"' in dom, name
    assert f'data-images-decoded="{n_images}/{n_images}"' in dom
    assert len(re.findall(r'<img [^>]*data-decoded="yes"', dom)) == n_images
    shot = Path(os.environ.get("FREQLENS_SCREENSHOT_DIR", tmp_path)) / f"{html.parent.name}_screenshot.png"
    _chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", html.as_uri())
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_uses_section_renders_in_chromium(tmp_path: Path) -> None:
    """``freqlens analyze --uses --html`` on a briefly trained CNN: the three maps render beside the spectra."""
    run = uses_cli_run(tmp_path)
    _check_in_browser(run / "report.html", tmp_path, tracked=False, uses=True)


@pytest.mark.skipif("FREQLENS_BROWSER_REPORT" not in os.environ, reason="set FREQLENS_BROWSER_REPORT=run/report.html")
def test_given_report_renders_in_chromium(tmp_path: Path) -> None:
    """Check a report made elsewhere (e.g. the CIFAR-10 tracked run of docs/analyze.md)."""
    html = Path(os.environ["FREQLENS_BROWSER_REPORT"])
    text = html.read_text()
    _check_in_browser(html, tmp_path, tracked='<section id="tracker">' in text, uses='<section id="uses">' in text)
