"""Reliability: no silent wrong results, no code execution from run folders, no lost work, one-line errors.

The bad inputs are one table (call, expected error class, phrase the message must contain); the run-folder
scenarios (stale checkpoints, failed reruns, damaged stages, locks, payload checkpoints, leftover temp files)
run end to end on a tiny registered experiment that trains with :func:`freqlens.training.loop.train`.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from freqlens import cli
from freqlens._validation import check_float_dtype, check_model_usable
from freqlens.datasets import readers
from freqlens.experiments import registry
from freqlens.experiments.registry import Experiment, ExperimentResult, RunContext, register
from freqlens.experiments.runner import RunFailed, finished_fingerprint, plan_run, replot, rerun, run_experiment
from freqlens.hooks import evaluation_mode
from freqlens.io import RunDirectory, RunLocked
from freqlens.training.loop import EpochSampler, train

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- a toy experiment
@dataclass(frozen=True)
class ToyConfig:
    steps: int = 12
    lr: float = 0.05
    fail_after_training: bool = False


def _toy_run(ctx: RunContext, cfg: ToyConfig) -> ExperimentResult:
    g = ctx.generator(1)
    x = torch.randn(32, 4, generator=g, dtype=torch.float64)
    y = x @ torch.randn(4, 1, generator=g, dtype=torch.float64)
    net = nn.Linear(4, 1).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    def compute() -> dict[str, Any]:
        history = train(
            net,
            lambda m, xb, yb: ((m(xb) - yb) ** 2).mean(),
            EpochSampler(x, y, 8, seed=ctx.seed),
            torch.optim.SGD(net.parameters(), lr=cfg.lr),
            cfg.steps,
            record_every=4,
            checkpoint=ctx.checkpoint_path("toy_net"),
            checkpoint_every=4,
        )
        return {"weight": net.weight.detach().numpy().copy(), "loss": history.as_arrays()["train_loss"]}

    trained = ctx.stage("trained", compute)
    if cfg.fail_after_training:
        raise ArithmeticError("planned failure after the training stage")
    return ExperimentResult(data=dict(trained), summary={"final_loss": float(trained["loss"][-1])})


def _toy_plot(data: Any, cfg: Any, summary: Any) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(data["loss"])
    return {"toy": fig}


@pytest.fixture
def toy() -> Iterator[str]:
    name = "test-toy-reliability"
    register(Experiment(name, "toy experiment for the reliability tests", ToyConfig, _toy_run, _toy_plot))
    try:
        yield name
    finally:
        registry._REGISTRY.pop(name, None)


def _published(path: Path) -> dict[str, bytes]:
    return {n: (path / n).read_bytes() for n in ("config.json", "data.npz", "summary.json")}


def _data(path: Path) -> dict[str, np.ndarray]:
    return RunDirectory(path).read_data()


# ----------------------------------------------------------------------------------------- run folders
def test_stale_checkpoint_across_seeds_gives_the_new_seeds_numbers(toy: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    run_experiment(toy, out=shared, seed=0, show_progress=False)
    seed1_shared = _data(run_experiment(toy, out=shared, seed=1, show_progress=False))
    seed1_fresh = _data(run_experiment(toy, out=tmp_path / "fresh", seed=1, show_progress=False))
    seed0 = _data(run_experiment(toy, out=tmp_path / "zero", seed=0, show_progress=False))
    for key in seed1_fresh:
        assert np.array_equal(seed1_shared[key], seed1_fresh[key]), key
    assert not np.array_equal(seed1_shared["weight"], seed0["weight"])
    record = json.loads((shared / toy / "config.json").read_text())
    assert record["seed"] == 1 and record["finished"]


def test_training_checkpoint_is_keyed_by_fingerprint(toy: str, tmp_path: Path) -> None:
    a = plan_run(toy, seed=0)
    b = plan_run(toy, seed=1)
    c = plan_run(toy, seed=0, overrides={"lr": 0.01})
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert plan_run(toy, seed=0).fingerprint == a.fingerprint  # deterministic
    path = run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    assert (path / "stages" / a.fingerprint / "toy_net.pt").is_file()
    assert finished_fingerprint(path) == a.fingerprint


def test_failed_run_leaves_the_finished_run_untouched(toy: str, tmp_path: Path) -> None:
    path = run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    before = _published(path)
    with pytest.raises(RunFailed, match="planned failure"):
        run_experiment(toy, out=tmp_path, seed=5, overrides={"fail_after_training": True}, show_progress=False)
    assert _published(path) == before
    replot(path)  # config.json still describes data.npz beside it
    assert finished_fingerprint(path) == plan_run(toy, seed=0).fingerprint


def test_rerun_goes_into_the_same_folder_and_is_exact(toy: str, tmp_path: Path) -> None:
    path = run_experiment(toy, out=tmp_path / "a", seed=2, show_progress=False)
    first = _data(path)
    again = rerun(path, show_progress=False)
    assert again == path
    assert all(np.array_equal(first[k], v) for k, v in _data(again).items())
    elsewhere = rerun(path, out=tmp_path / "b", show_progress=False)
    assert elsewhere == tmp_path / "b" / toy
    assert all(np.array_equal(first[k], v) for k, v in _data(elsewhere).items())


@pytest.mark.parametrize(
    ("key", "value", "phrase"),
    [
        ("quick", "false", "'quick' must be bool"),
        ("seed", 1.5, "'seed' must be int"),
        ("seed", True, "'seed' must be int"),
        ("device", 3, "'device' must be str"),
    ],
)
def test_rerun_refuses_mistyped_config(toy: str, tmp_path: Path, key: str, value: Any, phrase: str) -> None:
    path = run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    record = json.loads((path / "config.json").read_text())
    record[key] = value
    (path / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=phrase):
        rerun(path, show_progress=False)


def test_damaged_stage_and_checkpoint_are_recomputed(toy: str, tmp_path: Path) -> None:
    path = run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    good = _data(path)
    stages = path / "stages" / plan_run(toy, seed=0).fingerprint
    stage = stages / "trained.npz"
    stage.write_bytes(stage.read_bytes()[: len(stage.read_bytes()) // 2])  # truncated zip
    ckpt = stages / "toy_net.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    again = _data(run_experiment(toy, out=tmp_path, seed=0, show_progress=False))
    assert all(np.array_equal(good[k], v) for k, v in again.items())


def test_payload_checkpoint_does_not_execute(toy: str, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    fp = plan_run(toy, seed=0).fingerprint
    ckpt = RunDirectory(tmp_path, toy).stage_path("toy_net", fp, suffix=".pt")
    ckpt.parent.mkdir(parents=True)
    torch.save({"format": 2, "model": Payload()}, ckpt)
    with pytest.raises(RunFailed, match="refusing to load this checkpoint"):
        run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    assert not marker.exists()


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_lock(toy: str, tmp_path: Path) -> None:
    rd = RunDirectory(tmp_path, toy)
    with rd.locked(), pytest.raises(RunLocked, match=f"PID {os.getpid()}"):
        run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (rd.path / ".lock").write_text(f"{int(dead.stdout)} {os.uname().nodename}\n")
    run_experiment(toy, out=tmp_path, seed=0, show_progress=False)  # stale lock of a dead process: taken over
    assert not (rd.path / ".lock").exists()


def test_leftover_temp_files_are_cleaned(toy: str, tmp_path: Path) -> None:
    path = run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    leftovers = [path / ".data.npz.x1.tmp", path / "stages" / ".trained.npz.x2.tmp"]
    for f in leftovers:
        f.write_bytes(b"half")
    run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    assert not any(f.exists() for f in leftovers)


# ----------------------------------------------------------------------------------------- bad inputs
def _fake_cifar(root: Path, labels: Any, protocol: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    batch = {b"data": np.arange(n * 3072, dtype=np.int64).astype(np.uint8).reshape(n, 3072), b"labels": labels}
    (root / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    return root


def _reader_cases(tmp: Path) -> list[tuple[str, Callable[[], Any], type[BaseException], str]]:
    nowhere = tmp / "nowhere"
    return [
        ("mnist int64 dtype", lambda: readers.load_mnist(nowhere, dtype=torch.int64), ValueError, "floating dtype"),
        ("mnist uint8 dtype", lambda: readers.load_mnist(nowhere, dtype=torch.uint8), ValueError, "floating dtype"),
        ("cifar bool dtype", lambda: readers.load_cifar10(nowhere, dtype=torch.bool), ValueError, "floating dtype"),
        ("cifar numpy dtype", lambda: readers.load_cifar10(nowhere, dtype=np.float32), TypeError, "torch floating"),
        ("cifar float class", lambda: readers.load_cifar10(nowhere, classes=(1.7,)), TypeError, "integers in 0..9"),
        ("cifar str classes", lambda: readers.load_cifar10(nowhere, classes="01"), TypeError, "sequence of CIFAR"),
        ("cifar bool class", lambda: readers.load_cifar10(nowhere, classes=(True,)), TypeError, "integers in 0..9"),
        ("cifar mean flag", lambda: readers.load_cifar10(nowhere, subtract_mean="yes"), TypeError, "subtract_mean"),
        (
            "cifar float labels",
            lambda: readers.load_cifar10(_fake_cifar(tmp / "floatlab", [3.0, 1.0]), split="test"),
            ValueError,
            "must be integer class indices",
        ),
    ]


def _runner_cases(toy: str, tmp: Path) -> list[tuple[str, Callable[[], Any], type[BaseException], str]]:
    afile = tmp / "a-file"
    afile.write_text("x")
    return [
        ("seed float", lambda: run_experiment(toy, out=tmp, seed=1.5), TypeError, "seed must be an integer"),
        ("seed bool", lambda: run_experiment(toy, out=tmp, seed=True), TypeError, "seed must be an integer"),
        ("seed huge", lambda: run_experiment(toy, out=tmp, seed=2**70), ValueError, "seed must be an integer in"),
        ("seed negative", lambda: run_experiment(toy, out=tmp, seed=-1), ValueError, "seed must be an integer in"),
        ("quick str", lambda: run_experiment(toy, out=tmp, quick="false"), TypeError, "quick must be True or False"),
        ("scale unknown", lambda: run_experiment(toy, out=tmp, scale="huge"), ValueError, "scale must be one of"),
        ("quick vs scale", lambda: plan_run(toy, quick=True, scale="full"), ValueError, "contradicts"),
        ("out is a file", lambda: run_experiment(toy, out=afile), ValueError, "is not a directory"),
        ("out /dev/null", lambda: run_experiment(toy, out="/dev/null"), ValueError, "is not a directory"),
        ("device", lambda: run_experiment(toy, out=tmp, device="tpu"), ValueError, "device must be"),
        ("threads", lambda: run_experiment(toy, out=tmp, threads=0), ValueError, "threads must be a positive"),
        ("overrides", lambda: run_experiment(toy, out=tmp, overrides=[1]), TypeError, "overrides must be a mapping"),
        ("unknown key", lambda: run_experiment(toy, out=tmp, overrides={"lrr": 1}), ValueError, "unknown config"),
        ("replot nothing", lambda: replot(tmp / "empty"), FileNotFoundError, "no finished run"),
    ]


def _model_cases() -> list[tuple[str, Callable[[], Any], type[BaseException], str]]:
    with torch.device("meta"):
        meta = nn.Conv2d(1, 2, 3)
    nan = nn.Conv2d(1, 2, 3)
    with torch.no_grad():
        nan.weight[0, 0, 0, 0] = float("nan")
    return [
        ("meta model", lambda: check_model_usable("model", meta), ValueError, "meta device"),
        ("nan weight", lambda: check_model_usable("model", nan), ValueError, "NaN or infinite values in 'weight'"),
        ("not a module", lambda: check_model_usable("model", "net"), TypeError, "must be a torch.nn.Module"),
        ("int dtype", lambda: check_float_dtype("dtype", torch.int64), ValueError, "floating dtype"),
    ]


def test_bad_inputs_give_clear_errors(toy: str, tmp_path: Path) -> None:
    cases = _reader_cases(tmp_path) + _runner_cases(toy, tmp_path) + _model_cases()
    assert len({c[0] for c in cases}) == len(cases)
    for label, call, kind, phrase in cases:
        with pytest.raises(kind) as info:
            call()
        message = str(info.value)
        assert phrase in message, f"{label}: {message!r} lacks {phrase!r}"
        assert "\n" not in message, f"{label}: message is not one line: {message!r}"


def test_cifar_batch_repickled_with_protocol_5_is_read(tmp_path: Path) -> None:
    labels = [3, 8, 0]
    x2, _ = readers.load_cifar10(_fake_cifar(tmp_path / "p2", labels, protocol=2), split="test")
    x5, y5 = readers.load_cifar10(_fake_cifar(tmp_path / "p5", labels, protocol=5), split="test")
    assert torch.equal(x2, x5) and y5.tolist() == labels


# ----------------------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize(
    ("argv", "code", "phrase"),
    [
        (["reproduce", "pinson-fig2", "--quick", "--out", "/dev/null"], 2, "is not a directory"),
        (["reproduce", "nope-fig9"], 2, "unknown experiment"),
        (["replot", "/nonexistent/run"], 2, "no finished run"),
        (["rerun", "/nonexistent/run"], 2, "no finished run"),
    ],
)
def test_cli_errors_are_one_line(argv: list[str], code: int, phrase: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0] and "Traceback" not in err[0]


def test_cli_failed_run_exit_1_names_the_learning_rate(
    toy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reproduce", toy, "--out", str(tmp_path), "--no-progress", "--set", "lr=1e12"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0] and "--set lr=VALUE" in err[0]
    with pytest.raises(RunFailed):
        cli.main([*argv, "--debug"])


def test_python_dash_m_freqlens(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-m", "freqlens", "--version"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.startswith("freqlens ")
    bad = subprocess.run(
        [sys.executable, "-m", "freqlens", "replot", str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------- the user's model
def test_evaluation_mode_restores_every_flag_and_leaves_state_untouched() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2))
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a model in train mode
    flags = [m.training for m in net.modules()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with evaluation_mode(net):
        assert not any(m.training for m in net.modules())
        net(torch.randn(4, 1, 8, 8))
    assert [m.training for m in net.modules()] == flags
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ZeroDivisionError), evaluation_mode(net):
        raise ZeroDivisionError
    assert [m.training for m in net.modules()] == flags


def test_measurements_leave_the_model_exactly_as_found() -> None:
    from freqlens.spectral import activation_spectra, weight_spectra

    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, padding_mode="circular"),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Conv2d(3, 2, 3, padding=1, padding_mode="circular"),
    ).double()
    net.train()
    net[1].eval()
    flags = [m.training for m in net.modules()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    weight_spectra(net, (1, 8, 8))
    activation_spectra(net, torch.randn(6, 1, 8, 8, dtype=torch.float64), batch_size=3)
    assert [m.training for m in net.modules()] == flags
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


# ----------------------------------------------------------------------------------------- kill -9, then resume
_SLOW_EXPERIMENT = """
import os, sys, time
from dataclasses import dataclass
import numpy as np
from freqlens.experiments.registry import Experiment, ExperimentResult, register
from freqlens.experiments.runner import run_experiment

@dataclass(frozen=True)
class Cfg:
    parts: int = 6

def run(ctx, cfg):
    pause = float(os.environ.get("TOY_PAUSE", "0"))
    out = []
    for i in range(cfg.parts):
        def compute(i=i):
            with open(os.environ["TOY_LOG"], "a") as log:
                log.write(f"{i}\\n")
            time.sleep(pause)
            return {"v": ctx.rng(i).standard_normal(3)}
        out.append(ctx.stage(f"part{i}", compute)["v"])
    return ExperimentResult({"v": np.stack(out)}, {"parts": cfg.parts})

register(Experiment("test-slow-parts", "slow stages", Cfg, run, lambda data, cfg, summary: {}))
run_experiment("test-slow-parts", out=sys.argv[1], seed=4, show_progress=False)
"""


def test_kill_9_mid_run_then_resume_computes_only_the_missing_stages(tmp_path: Path) -> None:
    import time

    script = tmp_path / "slow.py"
    script.write_text(_SLOW_EXPERIMENT)
    log = tmp_path / "computed.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TOY_LOG": str(log), "TOY_PAUSE": "0.4"}
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("test-slow-parts/stages/*/part*.npz"))) < 2:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup runs
    proc.wait()
    done_before = len(list(out.glob("test-slow-parts/stages/*/part*.npz")))
    assert 2 <= done_before < 6, done_before
    assert not (out / "test-slow-parts" / "config.json").exists()  # nothing published by the killed run
    log.write_text("")
    subprocess.run([sys.executable, str(script), str(out)], env={**env, "TOY_PAUSE": "0"}, check=True)
    recomputed = [int(s) for s in log.read_text().split()]
    assert recomputed == list(range(done_before, 6))  # only the missing stages ran again
    subprocess.run([sys.executable, str(script), str(tmp_path / "fresh")], env={**env, "TOY_PAUSE": "0"}, check=True)
    resumed = RunDirectory(out / "test-slow-parts").read_data()["v"]
    fresh = RunDirectory(tmp_path / "fresh" / "test-slow-parts").read_data()["v"]
    assert np.array_equal(resumed, fresh)


def test_cpu_only_experiment_refuses_cuda(toy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # pretend a GPU, so only the rule can refuse
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    registry._REGISTRY[toy] = Experiment(toy, "cpu only", ToyConfig, _toy_run, _toy_plot, devices=("cpu",))
    with pytest.raises(ValueError, match="computes on cpu only"):
        plan_run(toy, device="cuda")
    assert plan_run(toy, device="cpu").device.type == "cpu"


def test_named_random_streams_are_distinct_stable_and_keep_legacy_offsets(tmp_path: Path) -> None:
    ctx = RunContext(RunDirectory(tmp_path), 7, torch.device("cpu"), None, True, "f", show_progress=False)
    draws = {
        (name, i): ctx.rng(name, i).standard_normal(4).tobytes()
        for name in ("white_noise", "network")
        for i in range(12)
    }
    assert len(set(draws.values())) == len(draws)  # no two (stream, index) pairs share numbers
    assert ctx.rng("network", 3).standard_normal(4).tobytes() == draws[("network", 3)]  # reproducible
    seeds = {ctx.torch_seed(name, i) for name in ("white_noise", "network") for i in range(12)}
    assert len(seeds) == 24 and all(0 <= s < 2**63 for s in seeds)
    assert torch.equal(
        torch.randn(3, generator=ctx.generator(5)),
        torch.randn(3, generator=torch.Generator().manual_seed(7 * 1_000_003 + 5)),
    )
    assert np.array_equal(ctx.rng(41).standard_normal(2), np.random.default_rng([7, 41]).standard_normal(2))
    other = RunContext(RunDirectory(tmp_path), 8, torch.device("cpu"), None, True, "f", show_progress=False)
    assert other.rng("network", 3).standard_normal(4).tobytes() != draws[("network", 3)]
    with pytest.raises(TypeError, match="stream must be"):
        ctx.seed_sequence("")


def test_fingerprint_covers_the_data_read_but_not_where_it_lies(
    toy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FREQLENS_DATA", raising=False)
    registry._REGISTRY[toy] = Experiment(toy, "needs data", ToyConfig, _toy_run, _toy_plot, needs=("cifar10",))
    a = _fake_cifar(tmp_path / "a", [1, 2])
    moved = _fake_cifar(tmp_path / "elsewhere", [1, 2])
    changed = _fake_cifar(tmp_path / "c", [1, 3])
    fp = plan_run(toy, data_dir=a).fingerprint
    assert plan_run(toy, data_dir=moved).fingerprint == fp
    assert plan_run(toy, data_dir=changed).fingerprint != fp
    with pytest.raises(ValueError, match="needs the cifar10 dataset"):
        plan_run(toy)


@pytest.mark.parametrize(
    "tree",
    [
        {"a": np.arange(3)},
        {"white": {"default": {"K1": {"p_low": np.ones(2)}, "K3": {"p_low": np.zeros(2)}}}, "grid": np.eye(2)},
        {"x_y": {"z1": 1.5}},
    ],
)
def test_result_tree_flattens_to_identifier_names_and_back(tree, tmp_path):
    from freqlens.io import RunDirectory, flatten_tree, unflatten_tree

    flat = flatten_tree(tree)
    assert all(name.isidentifier() for name in flat)
    rd = RunDirectory(tmp_path / "run").create()
    rd.write_data(flat)
    back = unflatten_tree(rd.read_data())

    def same(a, b):
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return np.array_equal(np.asarray(a), b)

    assert same(tree, back)


@pytest.mark.parametrize("bad", ["", "a__b", "_a", "a_", 3])
def test_result_tree_refuses_ambiguous_level_names(bad):
    from freqlens.io import flatten_tree

    with pytest.raises(ValueError, match="result level names"):
        flatten_tree({"ok": {bad: np.zeros(1)}})


def test_replot_of_a_run_with_other_array_names_says_to_rerun(toy: str, tmp_path: Path) -> None:
    from freqlens.io import write_npz

    path = run_experiment(toy, out=tmp_path, seed=0, show_progress=False)
    data = _data(path)
    # an earlier freqlens stored the same arrays under other (flat) names
    write_npz(path / RunDirectory.DATA, {f"old_{k}": v for k, v in data.items()})
    with pytest.raises(ValueError, match=r"no array 'loss'.*freqlens rerun"):
        replot(path)
