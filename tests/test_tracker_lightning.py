"""FrequencyTrackerCallback: a Lightning fit writes exactly the run a hand loop with FrequencyTracker writes (same
seed, same batches), for ``lightning.pytorch`` and ``pytorch_lightning``; a fit resumed from a checkpoint gives
the uninterrupted run; clear ImportError without Lightning; ``import freqlens`` never loads Lightning."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from freqlens.report import FrequencyTracker
from freqlens.report.tracker import load_run

BACKENDS = [
    pytest.param(
        "lightning.pytorch",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("lightning") is None, reason="lightning not installed (freqlens[tracking])"
        ),
    ),
    pytest.param(
        "pytorch_lightning",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("pytorch_lightning") is None, reason="pytorch_lightning not installed"
        ),
    ),
]
EPOCHS, BATCH, N, EVERY = 2, 8, 40, 3  # 5 batches per epoch: records straddle the epoch boundary


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(N, 3, 8, 8, generator=g), torch.randint(0, 3, (N,), generator=g), torch.rand(6, 3, 8, 8)


def _module_class(pl: Any) -> type:
    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(
                nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                nn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular"), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
            )  # fmt: skip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return {"loss": loss}

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.3, momentum=0.9)

    return Tiny


def _loader() -> torch.utils.data.DataLoader:
    x, y, _ = _data()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def _trainer(pl: Any, tmp: Path, callbacks: list[Any], epochs: int, **kw: Any) -> Any:
    return pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, callbacks=callbacks, logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp), **kw,
    )  # fmt: skip


def _hand_run(module: nn.Module, out: Path, probe: torch.Tensor) -> None:
    """The same training as the Trainer's, written by hand around a FrequencyTracker."""
    opt = module.configure_optimizers()  # type: ignore[operator]
    with FrequencyTracker(module, probe=probe, every=EVERY, out=out) as tracker:
        for _ in range(EPOCHS):
            module.train()
            for x, y in _loader():
                loss = nn.functional.cross_entropy(module(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tracker.step(loss=loss)


def _assert_same_run(a: Path, b: Path) -> None:
    doc_a, arr_a = load_run(a)
    doc_b, arr_b = load_run(b)
    assert doc_a == doc_b  # config, operators, every record (steps, losses, CBN ranks)
    assert sorted(arr_a) == sorted(arr_b)
    for key in arr_a:
        np.testing.assert_array_equal(arr_a[key], arr_b[key], err_msg=key)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_writes_the_hand_loop_run(tmp_path: Path, backend: str) -> None:
    pl = importlib.import_module(backend)
    from freqlens.report import lightning as fl

    callback_cls = fl.FrequencyTrackerCallback if backend == "lightning.pytorch" else fl.PLFrequencyTrackerCallback
    assert callback_cls is not None and issubclass(callback_cls, pl.Callback)
    _, _, probe = _data()
    tiny = _module_class(pl)
    callback = callback_cls(probe=probe, every=EVERY, out=tmp_path / "fit")
    _trainer(pl, tmp_path, [callback], EPOCHS, enable_checkpointing=False).fit(tiny(), _loader())
    _hand_run(tiny(), tmp_path / "hand", probe)
    doc, arrays = load_run(tmp_path / "fit")
    steps = EPOCHS * N // BATCH
    assert [r["step"] for r in doc["records"]] == list(range(0, steps + 1, EVERY))
    assert doc["records"][0]["loss"] is None and all(r["loss"] > 0 for r in doc["records"][1:])
    assert doc["config"]["layers"] == ["net.0", "net.3"]
    assert not np.array_equal(arrays["track_w0_top"][0], arrays["track_w0_top"][-1])  # it trained
    _assert_same_run(tmp_path / "fit", tmp_path / "hand")


@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_fit_resumed_from_a_checkpoint_rewinds_to_it(tmp_path: Path, backend: str) -> None:
    """Fit 1 epoch and checkpoint; the run then goes on past the checkpoint (a crash after it); resuming from
    the checkpoint drops those records and ends with the run of one uninterrupted 2-epoch fit."""
    pl = importlib.import_module(backend)
    from freqlens.report.lightning import FrequencyTrackerCallback

    _, _, probe = _data()
    tiny = _module_class(pl)
    run = tmp_path / "resumed"
    ckpt_dir = tmp_path / "ckpt"
    saver = pl.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True)
    cb = FrequencyTrackerCallback(probe=probe, every=EVERY, out=run)
    _trainer(pl, tmp_path, [cb, saver], 1).fit(tiny(), _loader())
    assert cb.tracker is not None and cb.tracker.global_step == N // BATCH
    assert cb.tracker.step(loss=1.0)  # a record past the checkpoint (step 6), as a crashed longer run leaves
    assert load_run(run)[0]["records"][-1]["step"] == N // BATCH + 1

    cb2 = FrequencyTrackerCallback(probe=probe, every=EVERY, out=run)
    resumed = _trainer(pl, tmp_path, [cb2], EPOCHS, enable_checkpointing=False)
    resumed.fit(tiny(), _loader(), ckpt_path=str(ckpt_dir / "last.ckpt"))
    _hand_run(tiny(), tmp_path / "hand", probe)
    _assert_same_run(run, tmp_path / "hand")


def test_missing_lightning_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: "import name" raises ImportError
    monkeypatch.delitem(sys.modules, "freqlens.report.lightning", raising=False)
    with pytest.raises(ImportError, match=r"freqlens\[tracking\]"):
        importlib.import_module("freqlens.report.lightning")


def test_import_freqlens_does_not_load_lightning() -> None:
    code = (
        "import sys, freqlens, freqlens.report, freqlens.cli; freqlens.FrequencyTracker; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'wandb')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
