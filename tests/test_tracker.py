"""FrequencyTracker: records at the right steps, values against an independent route, resumable run directory,
config mismatch refused, model left as found, TensorBoard scalars read back with tensorboard's own reader (clear
error without tensorboard)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from freqlens.report import FrequencyTracker
from freqlens.report.tracker import load_run


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Conv2d(3, 3, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 2),
    )


def sgd_steps(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, tracker: FrequencyTracker | None = None
) -> None:
    """Full-batch SGD on cross-entropy for ``steps`` steps, telling ``tracker`` each loss."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if tracker is not None:
            tracker.step(loss=loss)


def _train(net: nn.Module, tracker: FrequencyTracker, steps: int) -> None:
    torch.manual_seed(1)
    x, y = torch.rand(16, 2, 8, 8), torch.randint(0, 2, (16,))
    sgd_steps(net, x, y, steps, 0.5, tracker)


def test_records_steps_loss_and_dc_singular_values(tmp_path: Path) -> None:
    net = _net().train()
    probe = torch.rand(6, 2, 8, 8)
    with FrequencyTracker(net, probe=probe, every=3, out=tmp_path / "run", frequencies=[(0, 0), (1, 2)]) as tr:
        _train(net, tr, 7)
        assert net.training and all(m.training for m in net.modules())  # measurement did not switch modes
    doc, arrays = load_run(tmp_path / "run")
    assert [r["step"] for r in doc["records"]] == [0, 3, 6]
    assert doc["records"][0]["loss"] is None and doc["records"][-1]["loss"] > 0
    assert np.isnan(arrays["track_loss"][0]) and arrays["track_loss"][-1] == doc["records"][-1]["loss"]
    assert doc["operators"][0] == "circular: exact"
    assert doc["operators"][1] == "zero padding: circulant embedding, upper bound"
    # independent route: a circular conv at ω = 0 multiplies by Σ_xy W[:, :, x, y]; the last record saw
    # the weights after step 6 (the training loop ran one more step since)
    assert arrays["track_w0_at"].shape == (3, 2, 2)
    assert not np.array_equal(arrays["track_w0_at"][0], arrays["track_w0_at"][-1])  # weights moved


def test_dc_values_match_the_kernel_sum(tmp_path: Path) -> None:
    net = _net()
    tr = FrequencyTracker(net, probe=torch.rand(4, 2, 8, 8), every=1, out=tmp_path / "r", frequencies=[(0, 0)])
    kernel = net[0].weight.detach().double().sum(dim=(2, 3))
    expected = np.linalg.svd(kernel.numpy(), compute_uv=False)
    _, arrays = load_run(tmp_path / "r")
    np.testing.assert_allclose(arrays["track_w0_at"][0, 0], expected, rtol=1e-10)
    tr.close()


def test_resume_continues_the_run_and_refuses_another_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    net = _net()
    probe = torch.rand(4, 2, 8, 8)
    tr = FrequencyTracker(net, probe=probe, every=2, out=out)
    _train(net, tr, 4)
    again = FrequencyTracker(net, probe=probe, every=2, out=out)
    assert again.global_step == 4 and len(again.records) == 3
    _train(net, again, 2)
    doc, arrays = load_run(out)
    assert [r["step"] for r in doc["records"]] == [0, 2, 4, 6]
    assert arrays["track_steps"].tolist() == [0, 2, 4, 6]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files
    with pytest.raises(ValueError, match="out .* another config"):
        FrequencyTracker(net, probe=probe, every=5, out=out)


def test_model_state_left_as_found(tmp_path: Path) -> None:
    net = _net().train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    tr = FrequencyTracker(net, probe=torch.rand(4, 2, 8, 8), every=1, out=tmp_path / "r")
    tr.record()
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k  # BatchNorm running stats untouched by the probe
    assert net.training


def test_bad_arguments(tmp_path: Path) -> None:
    net = _net()
    with pytest.raises(ValueError, match="every must be"):
        FrequencyTracker(net, probe=torch.rand(4, 2, 8, 8), every=0, out=tmp_path / "a")
    with pytest.raises(ValueError, match="probe must be"):
        FrequencyTracker(net, probe=torch.rand(2, 8, 8), out=tmp_path / "b")
    with pytest.raises(ValueError, match="layers \\['x'\\]"):
        FrequencyTracker(net, probe=torch.rand(4, 2, 8, 8), out=tmp_path / "c", layers=["x"])


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_missing_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match="freqlens\\[tensorboard\\]"):
        FrequencyTracker(_net(), probe=torch.rand(4, 2, 8, 8), out=tmp_path / "t", tensorboard=True)


def test_tensorboard_scalars_equal_the_run_directory(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'freqlens[report]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    net = _net()
    with FrequencyTracker(net, probe=torch.rand(6, 2, 8, 8), every=2, out=tmp_path / "run", tensorboard=True) as tr:
        _train(net, tr, 6)
    doc, arrays = load_run(tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    names = doc["config"]["layers"]
    assert {"loss", "freqlens/weight_cbn_rank", "freqlens/activation_cbn_rank"} | {
        f"freqlens/p_low/{n}" for n in names
    } <= tags

    def series(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in events.Scalars(tag)]

    # TensorBoard stores scalars as float32: compare with the run directory's values rounded the same way
    records = doc["records"]
    assert series("loss") == [(r["step"], float(np.float32(r["loss"]))) for r in records if r["loss"] is not None]
    for key in ("weight_cbn_rank", "activation_cbn_rank"):
        assert series(f"freqlens/{key}") == [(r["step"], float(np.float32(r[key]))) for r in records]
    for j, name in enumerate(names):
        expected = [(r["step"], float(np.float32(arrays["track_p_low"][i, j]))) for i, r in enumerate(records)]
        assert series(f"freqlens/p_low/{name}") == expected
    assert [r["step"] for r in records] == [0, 2, 4, 6]


def test_readme_tracker_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Quick start") : readme.index("## Reproducing figures")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    tracker_block = next(b for b in blocks if "FrequencyTracker" in b)
    assert len([line for line in tracker_block.splitlines() if line.strip()]) <= 12  # "a 10-line example"
    monkeypatch.chdir(tmp_path)
    exec(compile(tracker_block, "README tracker example", "exec"), {})
    doc, _ = load_run(tmp_path / "runs" / "track")
    assert [r["step"] for r in doc["records"]] == [0, 10, 20, 30, 40, 50]


class _FakeWandbRun:
    """Stands in for a W&B run: keeps what the tracker logs and defines."""

    def __init__(self) -> None:
        self.logged: list[dict[str, float]] = []
        self.metrics: list[tuple[str, str | None]] = []
        self.finished = False

    def log(self, data: dict[str, float]) -> None:
        self.logged.append(dict(data))

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        self.metrics.append((name, step_metric))

    def finish(self) -> None:
        self.finished = True


def _expected_wandb_rows(out: Path) -> list[dict[str, float]]:
    """What W&B should hold for a run directory, built from tracker.json / tracker.npz."""
    doc, arrays = load_run(out)
    rows = []
    for i, r in enumerate(doc["records"]):
        row: dict[str, float] = {"freqlens/step": r["step"]}
        if r["loss"] is not None:
            row["freqlens/loss"] = r["loss"]
        for key in ("weight_cbn_rank", "activation_cbn_rank"):
            row[f"freqlens/{key}"] = r[key]
        for j, name in enumerate(doc["config"]["layers"]):
            row[f"freqlens/p_low/{name}"] = float(arrays["track_p_low"][i, j])
        rows.append(row)
    return rows


def test_wandb_run_object_gets_every_record(tmp_path: Path) -> None:
    run = _FakeWandbRun()
    net = _net()
    with FrequencyTracker(net, probe=torch.rand(6, 2, 8, 8), every=2, out=tmp_path / "run", wandb=run) as tr:
        _train(net, tr, 5)
    assert run.metrics == [("freqlens/step", None), ("freqlens/*", "freqlens/step")]
    assert run.logged == _expected_wandb_rows(tmp_path / "run")
    assert [row["freqlens/step"] for row in run.logged] == [0, 2, 4]
    assert not run.finished  # the user's run: the tracker does not finish it


def test_wandb_bad_argument_and_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match="wandb must be True, False or a W&B run"):
        FrequencyTracker(_net(), probe=torch.rand(4, 2, 8, 8), out=tmp_path / "a", wandb="yes")
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # as if wandb were not installed
    with pytest.raises(ImportError, match="freqlens\\[tracking\\]"):
        FrequencyTracker(_net(), probe=torch.rand(4, 2, 8, 8), out=tmp_path / "b", wandb=True)


def _wandb_history(path: Path) -> list[dict[str, object]]:
    """History rows of an offline ``run-*.wandb`` file: a 7-byte header, then LevelDB-log framed records (32 KiB
    blocks; chunk header crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last) of protobuf Records."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, buf, rows = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_wandb_true_offline_run_files_hold_the_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = pytest.importorskip("wandb", reason="wandb not installed (pip install 'freqlens[tracking]')")
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                       "WANDB_ERROR_REPORTING": "false", "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true",
                       "WANDB_CONSOLE": "off"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert wandb.run is None
    net = _net()
    out = tmp_path / "run"
    with FrequencyTracker(net, probe=torch.rand(6, 2, 8, 8), every=2, out=out, wandb=True) as tr:
        _train(net, tr, 5)
    assert wandb.run is None  # the tracker started this run, so close() finished it
    wandb.teardown()  # stops W&B's service process, which writes the run file asynchronously
    (run_file,) = (out / "wandb").glob("wandb/offline-run-*/run-*.wandb")
    rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in _wandb_history(run_file)]
    assert rows == _expected_wandb_rows(out)
    assert len(rows) == 3
