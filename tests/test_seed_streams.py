"""Seeds come from the run context: named streams, legacy offsets under a name, and the collision guard."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from freqlens.experiments import pinson_deep, registry
from freqlens.experiments.registry import LEGACY_MULTIPLIER, RunContext, all_experiments, get_experiment
from freqlens.experiments.runner import plan_run
from freqlens.io import RunDirectory
from freqlens.training.loop import EPOCH_SEED_MULTIPLIER, EpochSampler, sampler_epochs

EXPERIMENTS = Path(registry.__file__).parent
#: Every module of the experiments package: each seed comes from a RunContext method, none reads ``ctx.seed``.
SEEDED_BY_CONTEXT = sorted(EXPERIMENTS.glob("*.py"))
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


def _ctx_seed_reads(source: str) -> list[int]:
    """Lines of ``source`` that read ``ctx.seed`` (seed arithmetic outside the run context)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr == "seed"
        and isinstance(node.value, ast.Name)
        and node.value.id == "ctx"
    ]


def test_the_seed_scan_covers_every_figure_family_and_fires_on_the_old_arithmetic() -> None:
    stems = {p.stem for p in SEEDED_BY_CONTEXT}
    for family in ("pinson_", "cbn_", "decoder_", "uses_"):
        assert any(s.startswith(family) for s in stems), family
    assert {"pinson_deep", "cbn_common", "cbn_fig4", "pinson_common"} <= stems
    old = (  # the pre-stream forms of pinson-*, pinson-fig6, cbn_common and cbn-fig4
        "init = random_cnn_init(t, shape, p, s, s, seed=ctx.seed)\n"
        "run = train_linear_cnn(problem, init, lr, n, seed=ctx.seed + 1)\n"
        "torch.manual_seed(ctx.seed * 1000 + trial)\n"
        "sampler = EpochSampler(x, y, batch, seed=ctx.seed * 7919 + sampler_seed)\n"
        "train_set = ball_under_gravity(n, seed=ctx.seed * 2 + 0)\n"
    )
    assert _ctx_seed_reads(old) == [1, 2, 3, 4, 5]
    assert _ctx_seed_reads("seed = ctx.torch_seed('fig6_network', trial)\nctx.seed_for('a', 'b')\n") == []


@pytest.mark.parametrize("path", SEEDED_BY_CONTEXT, ids=lambda p: p.stem)
def test_no_seed_arithmetic_outside_the_run_context(path: Path) -> None:
    """No ``ctx.seed`` is read in these modules: every seed is derived by a RunContext method."""
    reads = _ctx_seed_reads(path.read_text())
    assert reads == [], f"{path.name} reads ctx.seed at lines {reads}"


@pytest.mark.parametrize("name", DECODER_EXPERIMENTS)
def test_decoder_experiments_refuse_cuda_clearly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # pretend a GPU: only the declaration refuses
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_experiment(name).devices == ("cpu",)
    with pytest.raises(ValueError, match=rf"{name} computes on cpu only; device='cuda' is not supported"):
        plan_run(name, device="cuda", quick=True)  # refused before the data is looked for


def test_the_experiment_families_are_found() -> None:
    assert len(DECODER_EXPERIMENTS) == 8 and len(USES_EXPERIMENTS) == 3


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


def test_guard_fires_on_the_old_pinson_fig6_seeds(tmp_path: Path) -> None:
    # pinson-fig6 seeded network ``trial`` (and its sampler) with seed*1000 + trial and its four image subsets
    # with seed + k: at seed 0 trials 0-3 drew from the subsets' CPU streams.
    for trial in range(4):
        ctx = _ctx(tmp_path)
        ctx.generator(list(pinson_deep.SUBSET_STREAMS)[trial], legacy_offset=trial, legacy_multiplier=1)
        with pytest.raises(ValueError, match=r"seed collision: stream 'fig6_network'.*_images"):
            ctx.torch_seed("fig6_network", legacy_offset=trial, legacy_multiplier=1000)
    ctx = _ctx(tmp_path)
    ctx.generator("train_images", legacy_offset=0, legacy_multiplier=1)
    with pytest.raises(ValueError, match=r"sampler of stream 'fig6_batches' seeds its epoch 0 .*'train_images'"):
        ctx.sampler_seed("fig6_batches", legacy_offset=0, legacy_multiplier=1000, epochs=2)


def test_pinson_fig6_seeds_are_named_and_pass_the_guard(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    x, y = torch.arange(40.0).reshape(20, 2), torch.arange(20)
    picked = [pinson_deep._subset(ctx, x, y, 5, name)[1] for name in pinson_deep.SUBSET_STREAMS]
    for k, rows in enumerate(picked):  # the subsets keep their legacy seeds seed + k (same images as before)
        assert torch.equal(rows, torch.randperm(20, generator=torch.Generator().manual_seed(k))[:5])
    for trial in range(6):  # networks and batches on named streams: no clash with the subsets' seeds 0..3
        assert ctx.torch_seed("fig6_network", trial) >= 2**20
        ctx.sampler_seed("fig6_batches", trial, epochs=1000)
    assert pinson_deep.SUBSET_STREAMS == {
        "train_images": 0,
        "test_images": 1,
        "train_eval_images": 2,
        "test_eval_images": 3,
    }


def test_epoch_sampler_seeds_epochs_as_the_guard_assumes() -> None:
    x = torch.arange(10.0)
    sampler = EpochSampler(x, x, 3, seed=4)
    for epoch in range(3):
        perm = torch.randperm(10, generator=torch.Generator().manual_seed(4 * EPOCH_SEED_MULTIPLIER + epoch))
        batch, _ = sampler(epoch * sampler.batches_per_epoch)
        assert torch.equal(batch, x[perm[:3]])
    assert EPOCH_SEED_MULTIPLIER == LEGACY_MULTIPLIER  # so legacy torch seeds and epoch seeds can meet
    assert [sampler_epochs(10, 3, s) for s in (0, 1, 3, 4, 7)] == [0, 1, 1, 2, 3]  # 3 batches per epoch
    assert sampler_epochs(10, None, 5) == 5  # full batch: one epoch per step


def test_guard_covers_sampler_epoch_seeds_against_torch_seeds(tmp_path: Path) -> None:
    # cbn-*: network generator seed*1_000_003 + 1, sampler seed*7919 + 0: at seed 0 epoch 1 reuses seed 1.
    ctx = _ctx(tmp_path)
    ctx.generator("cbn_network", legacy_offset=1)
    with pytest.raises(ValueError, match=r"sampler of stream 'cbn_batches' seeds its epoch 1 with torch:cpu seed 1"):
        ctx.sampler_seed("cbn_batches", legacy_offset=0, legacy_multiplier=7919, epochs=2)
    ctx = _ctx(tmp_path)  # the other order
    ctx.sampler_seed("cbn_batches", legacy_offset=0, legacy_multiplier=7919, epochs=2)
    with pytest.raises(ValueError, match=r"stream 'cbn_network' .* sampler of stream 'cbn_batches' .* epoch 1"):
        ctx.generator("cbn_network", legacy_offset=1)
    ctx.generator("cbn_network", legacy_offset=2)  # past the sampler's epochs: no shared stream
    ctx.torch_seed("cbn_network", legacy_offset=1, device="cuda")  # a CUDA generator is another stream
    ctx = _ctx(tmp_path, seed=1)  # at seed 1 the same arithmetic stays apart
    ctx.generator("cbn_network", legacy_offset=1)
    ctx.sampler_seed("cbn_batches", legacy_offset=0, legacy_multiplier=7919, epochs=30_000)
    ctx = _ctx(tmp_path)  # two samplers whose epoch seeds overlap: 1 * 1_000_003 is epoch 1_000_003 of sampler 0
    ctx.sampler_seed("a", legacy_offset=0, epochs=EPOCH_SEED_MULTIPLIER + 1)
    with pytest.raises(ValueError, match=r"sampler of stream 'b' seeds its epoch 0 .* stream 'a'"):
        ctx.sampler_seed("b", legacy_offset=1, epochs=1, legacy_shared_with=("c",))


def test_declared_legacy_sharing_is_allowed_only_for_the_named_streams(tmp_path: Path) -> None:
    # decoder-fit at seed 0: network s=0 of kind 0 is seeded 100*0 + 0, sampler s=0 epoch 0 is seeded 0*7 + 0.
    ctx = _ctx(tmp_path)
    ctx.torch_seed("fit_network", legacy_offset=0)
    with pytest.raises(ValueError, match="sampler of stream 'fit_batches' seeds its epoch 0"):
        ctx.sampler_seed("fit_batches", legacy_offset=0, legacy_multiplier=7, epochs=3)
    ctx = _ctx(tmp_path)
    ctx.torch_seed("fit_network", legacy_offset=0)
    shared = ctx.sampler_seed(
        "fit_batches", legacy_offset=0, legacy_multiplier=7, epochs=3, legacy_shared_with=("fit_network",)
    )
    assert shared == 0
    ctx.torch_seed("fit_network", legacy_offset=2)  # kind 0, network 2 meets epoch 2: declared as well
    with pytest.raises(ValueError, match="stream 'other_network' .* sampler of stream 'fit_batches'"):
        ctx.torch_seed("other_network", legacy_offset=1)  # not declared: still a collision
    with pytest.raises(TypeError, match="legacy_shared_with needs legacy_offset and epochs"):
        ctx.sampler_seed("named", epochs=3, legacy_shared_with=("fit_network",))
    with pytest.raises(TypeError, match="legacy_shared_with needs legacy_offset and epochs"):
        ctx.sampler_seed("legacy", legacy_offset=9, legacy_shared_with=("fit_network",))
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        ctx.sampler_seed("x", epochs=-1)


LINEAR_AND_CBN = sorted(e.name for e in all_experiments() if e.name.startswith(("pinson-", "cbn-")))


def test_linear_and_cbn_families_are_found() -> None:
    assert len([n for n in LINEAR_AND_CBN if n.startswith("pinson-")]) == 10
    assert len([n for n in LINEAR_AND_CBN if n.startswith("cbn-")]) == 5


@pytest.mark.parametrize("name", LINEAR_AND_CBN)
def test_linear_and_cbn_experiments_honour_or_refuse_the_device(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = get_experiment(name)
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda' \(or 'cuda:N'\), got 'meta'"):
        plan_run(name, device="meta", quick=True)  # refused before the data is looked for
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # pretend a GPU: only the declaration decides
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    if "cuda" in exp.devices:  # then the module computes on ctx.device
        assert "ctx.device" in Path(sys.modules[exp.run.__module__].__file__ or "").read_text()
        if not exp.needs:
            assert plan_run(name, device="cuda", quick=True).device == torch.device("cuda")
    else:
        with pytest.raises(ValueError, match=rf"{name} computes on cpu only; device='cuda' is not supported"):
            plan_run(name, device="cuda", quick=True)


@pytest.mark.parametrize("seed", [0, 5])
def test_guard_fires_on_decoder_learnings_epoch_72_at_every_seed(tmp_path: Path, seed: int) -> None:
    # decoder-learning: initial weights seed*1_000_003 + 72, sampler seed*1 + 0 for 400 epochs (declared shared).
    ctx = _ctx(tmp_path, seed)
    ctx.torch_seed("autoencoder_init", legacy_offset=72)
    with pytest.raises(ValueError, match="sampler of stream 'autoencoder_batches' seeds its epoch 72"):
        ctx.sampler_seed("autoencoder_batches", legacy_offset=0, legacy_multiplier=1, epochs=400)
    ctx = _ctx(tmp_path, seed)
    ctx.torch_seed("autoencoder_init", legacy_offset=72)
    ctx.sampler_seed("autoencoder_batches", legacy_offset=0, legacy_multiplier=1, epochs=72)  # epochs 0..71: apart
