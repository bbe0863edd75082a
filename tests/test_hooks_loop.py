"""hooks and training.loop: layer selection/capture/tracing, deterministic resumable training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from freqlens.hooks import LayerForwardError, capture_layers, select_layers, trace_layers
from freqlens.training.loop import EpochSampler, TrainingDiverged, cosine_lr, flushed_denormals, train


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 2, 3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(32, 3),
    )


def test_select_layers_and_errors() -> None:
    net = _net()
    assert [n for n, _ in select_layers(net, types=(nn.Conv2d,))] == ["0", "2"]
    assert [n for n, _ in select_layers(net, names=["4", "0"])] == ["4", "0"]
    with pytest.raises(ValueError, match="layers \\['9'\\] not found"):
        select_layers(net, names=["9"])
    with pytest.raises(TypeError, match="layer '1' is ReLU; expected one of: Conv2d"):
        select_layers(net, names=["1"], types=(nn.Conv2d,))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        select_layers("net")  # type: ignore[arg-type]


def test_capture_layers_and_cleanup() -> None:
    net = _net()
    seen: list[tuple[str, tuple[int, ...]]] = []
    with capture_layers(select_layers(net, types=(nn.Conv2d,)), lambda n, m, i, o: seen.append((n, tuple(o.shape)))):
        net(torch.randn(2, 1, 8, 8))
    assert seen == [("0", (2, 4, 8, 8)), ("2", (2, 2, 4, 4))]
    with pytest.raises(RuntimeError), capture_layers(select_layers(net), lambda *a: seen.append(("x", ()))):
        net(torch.randn(2, 1, 5, 5))  # wrong size for the Linear head
    n_before = len(seen)
    net(torch.randn(2, 1, 8, 8))
    assert len(seen) == n_before  # hooks were removed despite the exception


def test_trace_layers_shapes_and_failure_names_layer() -> None:
    net = _net()
    trace = trace_layers(net, torch.randn(1, 1, 8, 8))
    assert [(t.name, t.input_shape, t.output_shape) for t in trace][:3] == [
        ("0", (1, 1, 8, 8), (1, 4, 8, 8)),
        ("1", (1, 4, 8, 8), (1, 4, 8, 8)),
        ("2", (1, 4, 8, 8), (1, 2, 4, 4)),
    ]
    with pytest.raises(LayerForwardError, match="forward pass failed in layer '4'"):
        trace_layers(net, torch.randn(1, 1, 6, 6))


def test_epoch_sampler_covers_each_sample_once_and_is_deterministic() -> None:
    x = torch.arange(10.0)[:, None]
    y = torch.arange(10)
    s = EpochSampler(x, y, batch_size=3, seed=5)
    assert s.batches_per_epoch == 3
    seen = torch.cat([s(k)[1] for k in range(3)])
    assert len(set(seen.tolist())) == 9
    again = EpochSampler(x, y, batch_size=3, seed=5)
    assert all(torch.equal(s(k)[1], again(k)[1]) for k in range(7))
    assert not torch.equal(torch.cat([s(k)[1] for k in range(3)]), torch.cat([s(k)[1] for k in range(3, 6)]))
    with pytest.raises(ValueError, match="batch_size must be in \\[1, 10\\]"):
        EpochSampler(x, y, batch_size=11)
    with pytest.raises(ValueError, match="same number of samples"):
        EpochSampler(x, y[:5], batch_size=2)


def _task() -> tuple[nn.Module, EpochSampler]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return _net().double(), EpochSampler(x, y, batch_size=8, seed=2)


def _ce(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(xb), yb)


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("annealed", [False, True])
def test_train_deterministic_and_resume_exact(tmp_path: Path, annealed: bool) -> None:
    lr_at = cosine_lr(1e-2, 1e-4, 12) if annealed else None

    def run(ckpt: Path | None, stop_at: int | None = None) -> tuple[nn.Module, dict[str, np.ndarray]]:
        model, sampler = _task()

        def batch_at(step: int):
            if stop_at is not None and step == stop_at:
                raise _Interrupted  # e.g. the job is killed while computing step 11
            return sampler(step)

        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        rec = lambda step, m: {"w_norm": float(sum(p.pow(2).sum() for p in m.parameters()))}  # noqa: E731
        hist = train(
            model, _ce, batch_at, opt, 12, l2=1e-3, record_every=4, recorder=rec, checkpoint=ckpt, checkpoint_every=5,
            lr_at=lr_at,
        )  # fmt: skip
        assert opt.param_groups[0]["lr"] == (lr_at(11) if lr_at is not None else 1e-2)  # the last step's rate
        return model, hist.as_arrays()

    m_full, h_full = run(None)
    m_again, _ = run(None)
    assert all(torch.equal(a, b) for a, b in zip(m_full.state_dict().values(), m_again.state_dict().values()))
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(_Interrupted):
        run(ckpt, stop_at=11)  # last checkpoint: step 10
    m_res, h_res = run(ckpt)  # resumes at step 10
    assert all(torch.equal(a, b) for a, b in zip(m_full.state_dict().values(), m_res.state_dict().values()))
    assert h_full["step"].tolist() == h_res["step"].tolist() == [0, 4, 8, 12]
    assert np.array_equal(h_full["w_norm"], h_res["w_norm"])
    assert np.array_equal(h_full["train_loss"], h_res["train_loss"])


def test_cosine_lr_anneals_from_start_to_end_and_refuses_bad_rates() -> None:
    lr_at = cosine_lr(1e-2, 1e-4, 100)
    assert lr_at(0) == 1e-2 and lr_at(100) == pytest.approx(1e-4, abs=1e-18) and lr_at(500) == lr_at(100)
    assert lr_at(50) == pytest.approx(0.5 * (1e-2 + 1e-4))
    assert all(lr_at(t + 1) <= lr_at(t) for t in range(100))
    for start, end, steps, match in ((0.0, 0.0, 5, "start"), (1e-3, 2e-3, 5, "end"), (1e-3, 0.0, 0, "steps")):
        with pytest.raises(ValueError, match=match):
            cosine_lr(start, end, steps)


def test_flushed_denormals_zeroes_denormals_inside_and_restores_the_setting() -> None:
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # below float32's smallest normal 1.18e-38
    assert float(tiny * 2) != 0.0  # torch's default: denormals are kept
    with flushed_denormals():
        assert float(tiny * 2) == 0.0
        with flushed_denormals():  # nested: the inner block restores the outer's setting
            pass
        assert float(tiny * 2) == 0.0
    assert float(tiny * 2) != 0.0


def test_coupled_l2_step_matches_closed_form() -> None:
    model, sampler = _task()
    before = [p.detach().clone() for p in model.parameters()]
    xb, yb = sampler(0)
    model.zero_grad()
    _ce(model, xb, yb).backward()
    grads = [p.grad.detach().clone() for p in model.parameters()]
    lr, lam = 0.1, 0.01
    train(model, _ce, sampler, torch.optim.SGD(model.parameters(), lr=lr), 1, l2=lam)
    for p, b, g in zip(model.parameters(), before, grads):
        assert torch.allclose(p.detach(), b - lr * (g + 2 * lam * b), atol=1e-14)


def test_divergence_names_learning_rate_and_keeps_history() -> None:
    model, sampler = _task()
    opt = torch.optim.SGD(model.parameters(), lr=1e4)
    with pytest.raises(TrainingDiverged, match="learning rate 10000") as info:
        train(model, _ce, sampler, opt, 200, record_every=1, recorder=lambda s, m: {"s": s}, divergence_factor=10)
    assert len(info.value.history.step) >= 1


def test_deferred_loss_reads_give_the_same_run_and_still_catch_divergence(tmp_path: Path) -> None:
    # the accelerator path (losses kept on the device, read at record/checkpoint points) forced on the CPU
    histories, params = [], []
    for every_step in (True, False):
        model, sampler = _task()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        hist = train(model, _ce, sampler, opt, 23, record_every=5, recorder=lambda s, m: {"s": s},
                     read_loss_every_step=every_step)  # fmt: skip
        histories.append(hist)
        params.append([p.detach().clone() for p in model.parameters()])
    assert histories[0].step == histories[1].step
    for key in histories[0].values:
        assert np.array_equal(np.asarray(histories[0].values[key]), np.asarray(histories[1].values[key])), key
    assert all(torch.equal(a, b) for a, b in zip(*params, strict=True))

    # an interrupted deferred run, resumed, is the uninterrupted one (the running mean survives the checkpoint)
    def interrupt_at_15(step: int, model: nn.Module) -> dict[str, float]:
        if step == 15:
            raise KeyboardInterrupt
        return {"s": step}

    model, sampler = _task()
    ckpt = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        train(model, _ce, sampler, torch.optim.SGD(model.parameters(), lr=0.1), 23, record_every=5,
              recorder=interrupt_at_15, checkpoint=ckpt, checkpoint_every=4, read_loss_every_step=False)  # fmt: skip
    model, sampler = _task()
    resumed = train(model, _ce, sampler, torch.optim.SGD(model.parameters(), lr=0.1), 23, record_every=5,
                    recorder=lambda s, m: {"s": s}, checkpoint=ckpt, checkpoint_every=4,
                    read_loss_every_step=False)  # fmt: skip
    assert resumed.step == histories[1].step
    assert np.array_equal(np.asarray(resumed.values["train_loss"]), np.asarray(histories[1].values["train_loss"]))
    model, sampler = _task()
    opt = torch.optim.SGD(model.parameters(), lr=1e4)
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+ .*learning rate 10000"):
        train(model, _ce, sampler, opt, 200, record_every=50, divergence_factor=10, read_loss_every_step=False)


def test_trace_layers_sees_parametrized_convs() -> None:
    from torch.nn.utils import parametrize

    class Scale(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return 2 * w

    net = _net()
    parametrize.register_parametrization(net[0], "weight", Scale())
    names = [t.name for t in trace_layers(net, torch.randn(1, 1, 8, 8))]
    assert names[:3] == ["0", "1", "2"]
