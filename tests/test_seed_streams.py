"""Seeds come from the run context: named streams, legacy offsets under a name, and the collision guard."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from freqlens.experiments import registry
from freqlens.experiments.registry import LEGACY_MULTIPLIER, RunContext, all_experiments, get_experiment
from freqlens.experiments.runner import plan_run
from freqlens.io import RunDirectory

EXPERIMENTS = Path(registry.__file__).parent
#: Modules whose every seed comes from a RunContext method (the decoder-* and uses-* experiments).
SEEDED_BY_CONTEXT = sorted([*EXPERIMENTS.glob("decoder_*.py"), *EXPERIMENTS.glob("uses_*.py")])
DECODER_EXPERIMENTS = [e.name for e in all_experiments() if e.name.startswith("decoder-")]
USES_EXPERIMENTS = [e.name for e in all_experiments() if e.name.startswith("uses-")]


def _ctx(tmp_path: Path, seed: int = 0) -> RunContext:
    return RunContext(RunDirectory(tmp_path), seed, torch.device("cpu"), None, True, "f", show_progress=False)


def test_guard_fires_on_the_old_decoder_padding_collision(tmp_path: Path) -> None:
    # decoder-padding drew its white-noise images at seed*1_000_003 + 10 and random network #10 (dataset 0)
    # at seed*1_000_003 + 1000*0 + 10: the same torch stream under two names.
    ctx = _ctx(tmp_path, seed=3)
    ctx.generator("white_noise_images", legacy_offset=10)
    with pytest.raises(ValueError, match=r"seed collision: stream 'padding_network'.*'white_noise_images'"):
        ctx.torch_seed("padding_network", legacy_offset=1000 * 0 + 10)


def test_guard_allows_reuse_by_the_same_stream_and_other_generator_kinds(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, seed=2)
    first = ctx.torch_seed("network", legacy_offset=4)
    assert ctx.torch_seed("network", legacy_offset=4) == first  # paired designs reuse their own weights
    ctx.rng("images", legacy_offset=4)  # numpy default_rng([seed, 4]): another generator, no shared numbers
    ctx.sampler_seed("batches", legacy_offset=first, legacy_multiplier=0)  # the sampler derives its own streams
    ctx.torch_seed("noise", legacy_offset=4, device="cuda")  # a CUDA generator is another stream
    with pytest.raises(ValueError, match="seed collision"):
        ctx.rng("other_images", legacy_offset=4)
    with pytest.raises(ValueError, match="seed collision"):
        ctx.generator(4)  # the unnamed legacy form is guarded too (as stream "offset 4")


def test_guard_is_shared_by_replaced_contexts(tmp_path: Path) -> None:
    import dataclasses

    ctx = _ctx(tmp_path)
    ctx.torch_seed("a", legacy_offset=1)
    with pytest.raises(ValueError, match="seed collision"):
        dataclasses.replace(ctx, show_progress=True).torch_seed("b", legacy_offset=1)


def test_named_streams_never_collide_over_many_pairs(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, seed=11)
    names = ("white_noise_images", "padding_network", "mean_network", "kernel_network", "depth_network", "batches")
    seeds = {(n, i): ctx.torch_seed(n, i) for n in names for i in range(400)}  # the guard raises on any repeat
    assert len(set(seeds.values())) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds.values())
    samplers = {ctx.sampler_seed(n, i) for n in names for i in range(400)}
    assert len(samplers) == len(seeds) and all(0 <= s < 2**31 for s in samplers)
    assert ctx.torch_seed("padding_network", 7) == seeds[("padding_network", 7)]  # stable within a run
    assert _ctx(tmp_path, seed=12).torch_seed("padding_network", 7) != seeds[("padding_network", 7)]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    offset=st.integers(0, 100_000),
    multiplier=st.sampled_from([LEGACY_MULTIPLIER, 7, 31, 7919, 1]),
)
def test_legacy_offsets_equal_the_old_arithmetic(
    tmp_path_factory: pytest.TempPathFactory, seed: int, offset: int, multiplier: int
) -> None:
    ctx = _ctx(tmp_path_factory.mktemp("legacy"), seed)
    old = seed * multiplier + offset
    assert ctx.torch_seed("s", legacy_offset=offset, legacy_multiplier=multiplier) == old
    assert ctx.sampler_seed("s", legacy_offset=offset, legacy_multiplier=multiplier) == old
    drawn = torch.randn(5, generator=ctx.generator("s", legacy_offset=offset, legacy_multiplier=multiplier))
    assert torch.equal(drawn, torch.randn(5, generator=torch.Generator().manual_seed(old)))
    if multiplier == LEGACY_MULTIPLIER:  # the default multiplier and the unnamed integer form
        assert torch.equal(torch.randn(5, generator=ctx.generator("s", legacy_offset=offset)), drawn)
        unnamed = _ctx(tmp_path_factory.mktemp("unnamed"), seed).generator(offset)  # guarded as "offset o"
        assert torch.equal(torch.randn(5, generator=unnamed), drawn)
    numbers = ctx.rng("s", legacy_offset=offset).standard_normal(4)
    assert np.array_equal(numbers, np.random.default_rng([seed, offset]).standard_normal(4))


def test_bad_stream_arguments_are_refused(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    with pytest.raises(TypeError, match="stream must be a non-empty name"):
        ctx.torch_seed("")
    with pytest.raises(TypeError, match="legacy_offset must be an integer"):
        ctx.torch_seed("a", legacy_offset=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="give a stream name with legacy_offset"):
        ctx.generator(3, legacy_offset=3)
    with pytest.raises(ValueError, match="index must be an integer >= 0"):
        ctx.torch_seed("a", -1)


@pytest.mark.parametrize("path", SEEDED_BY_CONTEXT, ids=lambda p: p.stem)
def test_no_seed_arithmetic_outside_the_run_context(path: Path) -> None:
    """No ``ctx.seed`` is read in these modules: every seed is derived by a RunContext method."""
    tree = ast.parse(path.read_text())
    reads = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "seed"
        and isinstance(node.value, ast.Name)
        and node.value.id == "ctx"
    ]
    assert reads == [], f"{path.name} reads ctx.seed at lines {reads}"


@pytest.mark.parametrize("name", DECODER_EXPERIMENTS)
def test_decoder_experiments_refuse_cuda_clearly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # pretend a GPU: only the declaration refuses
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_experiment(name).devices == ("cpu",)
    with pytest.raises(ValueError, match=rf"{name} computes on cpu only; device='cuda' is not supported"):
        plan_run(name, device="cuda", quick=True)  # refused before the data is looked for


def test_the_experiment_families_are_found() -> None:
    assert len(DECODER_EXPERIMENTS) == 7 and len(USES_EXPERIMENTS) == 3


@pytest.mark.parametrize("name", USES_EXPERIMENTS)
def test_uses_experiments_declare_cuda(name: str) -> None:
    assert "cuda" in get_experiment(name).devices


def test_seeds_for_self_seeding_consumers_are_guarded_per_consumer(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, seed=5)
    assert ctx.seed_for("linear_init", "cnn_trials", legacy_offset=1) == 5 * 1 + 1  # the old ``ctx.seed + 1``
    ctx.seed_for("shapes", "train_images", legacy_offset=1)  # another consumer derives other numbers from 6
    assert ctx.sampler_seed("batches", legacy_offset=3, legacy_multiplier=7919) == 5 * 7919 + 3
    with pytest.raises(ValueError, match="seed collision: stream 'fcnn_trials'.*seed_for:linear_init"):
        ctx.seed_for("linear_init", "fcnn_trials", legacy_offset=1)
