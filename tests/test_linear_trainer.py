"""The fast linear trainers against autograd + torch.optim.SGD, recording, divergence and determinism.

Records from sufficient statistics (loss quadratic in the end-to-end map, A linear) are checked against
direct evaluation of the trained networks on every sample, float64 (spec §2 Eq. 5, §4.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from freqlens import DatasetStructure
from freqlens.datasets import sums_of_cosines
from freqlens.models.linear import LinearCNN, LinearFCNN, mse_loss_per_class
from freqlens.training import linear_trainer
from freqlens.training.linear_init import (
    CNNParameters,
    FCNNParameters,
    random_cnn_init,
    random_fcnn_init,
    trial_generator,
)
from freqlens.training.linear_problem import LinearProblem, _cholesky_blocks, _lower_product_sq_norm
from freqlens.training.linear_spectral import RealFourierBasis
from freqlens.training.linear_trainer import (
    LinearRun,
    LinearTrainingDiverged,
    _SampleStream,
    train_linear_cnn,
    train_linear_fcnn,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def _data(n_samples: int = 14, c: int = 2, n: int = 6, p: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_samples, c, n, n, generator=g, dtype=torch.float64), torch.arange(n_samples) % p


def _reference_sgd(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, p: int, lr: float, order: torch.Tensor
) -> list[float]:
    """Straightforward PyTorch: autograd + torch.optim.SGD, one sample per step; returns full-set losses."""
    y = torch.eye(p, dtype=torch.float64)[labels]
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for i in order.tolist():
        opt.zero_grad()
        mse_loss_per_class(model(x[i : i + 1]), y[i : i + 1]).backward()
        opt.step()
    with torch.no_grad():
        return [float(mse_loss_per_class(model(x), y))]


def test_real_fourier_basis_is_an_isometry() -> None:
    for n in (1, 2, 5, 6):
        basis = RealFourierBasis.for_size(n)
        g = torch.Generator().manual_seed(n)
        a = torch.randn(3, n, n, generator=g, dtype=torch.float64)
        b = torch.randn(3, n, n, generator=g, dtype=torch.float64)
        ca, cb = basis.coefficients(a), basis.coefficients(b)
        assert basis.size == (n * n + int(basis.weight.tolist().count(1.0))) // 2
        dots = (torch.view_as_real(ca) * torch.view_as_real(cb)).sum(dim=(-2, -1))
        assert torch.allclose(dots, (a * b).sum(dim=(-2, -1)), atol=1e-12)
        assert torch.allclose(basis.images(ca), a, atol=1e-12)


@pytest.mark.parametrize("mode", ["sum", "separate"])
@pytest.mark.parametrize("sampling", ["random", "epochs"])
def test_cnn_trainer_equals_autograd_sgd(mode: str, sampling: str) -> None:
    x, labels = _data()
    p = 3
    problem = LinearProblem.from_data(x, labels)
    init = random_cnn_init(2, (2, 6, 6), p, 0.2, 0.2, seed=4, channel_mode=mode)
    lr, steps = 0.01, 40
    run = train_linear_cnn(problem, init, lr, steps, sampling=sampling, record_every=10, seed=9)  # type: ignore[arg-type]
    order = _SampleStream(x.shape[0], sampling, seed=9, trials=2).take(steps)
    for t in range(2):
        model = LinearCNN((2, 6, 6), p, mode).set_parameters(init.kernel[t], init.weight[t])  # type: ignore[arg-type]
        losses = _reference_sgd(model, x, labels, p, lr, order[t])
        assert np.allclose(run.final["kernel"][t], model.kernel.detach().numpy(), atol=1e-13)
        assert np.allclose(run.final["weight"][t], model.weight.detach().numpy(), atol=1e-13)
        assert run.loss_train[t, -1] == pytest.approx(losses[-1], rel=1e-11)
        # A(t) recorded in closed form equals Uᵀ Σ_ŷx V from the network's predictions
        a_direct = problem.structure.effective_singular_values(x, model(x).detach())
        assert np.allclose(run.a_train[t, -1], a_direct, atol=1e-12)
    if sampling == "epochs":  # shuffled epochs visit every sample once per epoch
        for t in range(2):
            assert sorted(order[t, :14].tolist()) == list(range(14))


def test_fcnn_trainer_equals_autograd_sgd() -> None:
    x, labels = _data(n_samples=20)
    p = 3
    problem = LinearProblem.from_data(x, labels)
    init = random_fcnn_init(2, 72, 9, p, 0.1, seed=2)
    lr, steps = 0.02, 300  # several lazy-update blocks
    run = train_linear_fcnn(problem, init, lr, steps, record_every=100, seed=5, snapshot_times=(0, 300))
    order = _SampleStream(x.shape[0], "random", seed=5, trials=2).take(steps)
    for t in range(2):
        model = LinearFCNN(72, 9, p).set_parameters(init.w1[t], init.w2[t])
        losses = _reference_sgd(model, x, labels, p, lr, order[t])
        assert np.allclose(run.final["w1"][t], model.w1.detach().numpy(), atol=1e-12)
        assert np.allclose(run.final["w2"][t], model.w2.detach().numpy(), atol=1e-12)
        assert run.loss_train[t, -1] == pytest.approx(losses[-1], rel=1e-10)
    assert run.w1_snapshots is not None and run.w1_snapshots.shape == (1, 2, 8, 2, 6, 6)
    assert np.allclose(run.w1_snapshots[0, 0].reshape(8, -1), init.w1[0, :8].numpy(), atol=1e-13)
    assert np.allclose(run.w1_snapshots[0, 1].reshape(8, -1), run.final["w1"][0, :8], atol=1e-13)


@pytest.mark.parametrize("network", ["cnn", "fcnn"])
def test_full_batch_equals_autograd_gd(network: str) -> None:
    x, labels = _data(n_samples=9, c=1, n=5)
    p = 3
    problem = LinearProblem.from_data(x, labels)
    y = torch.eye(p, dtype=torch.float64)[labels]
    lr, steps = 0.05, 25
    model: torch.nn.Module
    if network == "cnn":
        cinit = random_cnn_init(1, (1, 5, 5), p, 0.3, 0.3, seed=1)
        run = train_linear_cnn(problem, cinit, lr, steps, sampling="full_batch", record_every=steps)
        model = LinearCNN((1, 5, 5), p).set_parameters(cinit.kernel[0], cinit.weight[0])
    else:
        finit = random_fcnn_init(1, 25, 7, p, 0.3, seed=1)
        run = train_linear_fcnn(problem, finit, lr, steps, sampling="full_batch", record_every=steps)
        model = LinearFCNN(25, 7, p).set_parameters(finit.w1[0], finit.w2[0])
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        mse_loss_per_class(model(x), y).backward()
        opt.step()
    for name, value in run.final.items():
        assert np.allclose(value[0], getattr(model, name).detach().numpy(), atol=1e-12), name


def test_moment_route_equals_direct_route_and_test_set() -> None:
    x, labels = _data(n_samples=40, c=1, n=4, p=2, seed=3)
    xt, lt = _data(n_samples=8, c=1, n=4, p=2, seed=8)
    problem = LinearProblem.from_data(x, labels, xt, lt)
    assert problem.train.sigma_phi_phi is not None  # N = 40 > D' = 2 * 10 -> moment route
    assert problem.test is not None and problem.test.phi is not None  # N = 8 -> direct route
    init = random_cnn_init(3, (1, 4, 4), 2, 0.4, 0.4, seed=0)
    run = train_linear_cnn(problem, init, 0.01, 30, record_every=15)
    assert run.loss_test is not None and run.a_test is not None
    st = DatasetStructure.from_data(x, labels)
    y, yt = torch.eye(2, dtype=torch.float64)[labels], torch.eye(2, dtype=torch.float64)[lt]
    for t in range(3):
        m = LinearCNN((1, 4, 4), 2).set_parameters(
            torch.from_numpy(run.final["kernel"][t]), torch.from_numpy(run.final["weight"][t])
        )
        with torch.no_grad():
            assert run.loss_train[t, -1] == pytest.approx(float(mse_loss_per_class(m(x), y)), rel=1e-10)
            assert run.loss_test[t, -1] == pytest.approx(float(mse_loss_per_class(m(xt), yt)), rel=1e-10)
            assert np.allclose(run.a_train[t, -1], st.effective_singular_values(x, m(x)), atol=1e-12)
            # test-set A uses the training structure's U, V
            a_test = st.U.T @ (m(xt).numpy().T @ xt.reshape(8, -1).numpy() / 8) @ st.V
            assert np.allclose(run.a_test[t, -1], a_test, atol=1e-12)


def test_recorded_spectra_balance_and_snapshots() -> None:
    x, labels = sums_of_cosines(n=8, freq_sets=(((0, 1), (2, 3)), ((1, 1),)), amplitudes=((1.0, 0.5), (0.7,)))
    problem = LinearProblem.from_data(x, labels)
    init = random_cnn_init(2, (1, 8, 8), 2, 0.05, 0.05, seed=1)
    run = train_linear_cnn(problem, init, 0.02, 60, record_every=20, snapshot_times=(0, 20, 60), record_wbar=True)
    assert run.t.tolist() == [0, 20, 40, 60] and run.snapshot_t.tolist() == [0, 20, 60]
    assert run.khat_abs is not None and run.balance is not None and run.wbar_abs is not None
    assert run.kernel_snapshots is not None and run.weight_snapshots is not None
    q = np.fft.fft2  # independent route for |k̂| (unitary: /n)
    for t in range(2):
        for s_idx, step in enumerate(run.snapshot_t):
            r = int(np.flatnonzero(run.t == step)[0])
            k = run.kernel_snapshots[t, s_idx, 0]
            w = run.weight_snapshots[t, s_idx]
            assert np.allclose(run.khat_abs[t, r, 0], np.abs(q(k) / 8).reshape(-1), atol=1e-12)
            w_hat = np.abs(q(w.reshape(2, 8, 8)) / 8).reshape(2, -1)
            ratio = np.linalg.norm(w_hat, axis=0) / np.abs(q(k) / 8).reshape(-1)
            assert np.allclose(run.balance[t, r, 0], ratio, rtol=1e-10)
            wbar = problem.structure.U.T @ w @ np.conj(np.kron(*(2 * [np.fft.fft(np.eye(8)) / np.sqrt(8)])))
            assert np.allclose(run.wbar_abs[t, r], np.abs(wbar), atol=1e-12)
    assert np.allclose(run.kernel_snapshots[:, 0], init.kernel.numpy())


def test_determinism_and_trial_independence() -> None:
    x, labels = _data(n_samples=10, c=1, n=4)
    problem = LinearProblem.from_data(x, labels)
    init = random_cnn_init(3, (1, 4, 4), 3, 0.2, 0.2, seed=11)
    a = train_linear_cnn(problem, init, 0.01, 50, record_every=25, seed=2)
    b = train_linear_cnn(problem, init, 0.01, 50, record_every=25, seed=2)
    c = train_linear_cnn(problem, init, 0.01, 50, record_every=25, seed=3)
    for key, value in a.arrays().items():
        if key != "wall_time_s":
            assert np.array_equal(value, b.arrays()[key]), key
    assert not np.array_equal(a.final["kernel"], c.final["kernel"])
    # trial 1 of a 3-trial run equals a 1-trial run given the same init and stream
    single_init = random_cnn_init(3, (1, 4, 4), 3, 0.2, 0.2, seed=11)
    assert torch.equal(single_init.kernel, init.kernel)
    one = CNNParameters(init.kernel[:1].clone(), init.weight[:1].clone())
    d = train_linear_cnn(problem, one, 0.01, 50, record_every=25, seed=2)
    assert np.array_equal(d.final["kernel"][0], a.final["kernel"][0])
    # the init generator stream depends only on (seed, trial, stream)
    assert torch.equal(
        torch.randn(3, generator=trial_generator(5, 1, 2)), torch.randn(3, generator=trial_generator(5, 1, 2))
    )
    # runs round-trip through arrays (stage storage)
    back = LinearRun.from_arrays(a.arrays("cnn_"), "cnn", "random", prefix="cnn_")
    assert np.array_equal(back.a_train, a.a_train) and np.array_equal(back.final["kernel"], a.final["kernel"])


def test_divergence_stops_with_message_and_keeps_records() -> None:
    x, labels = _data(n_samples=6, c=1, n=4)
    problem = LinearProblem.from_data(x, labels)
    init = random_cnn_init(2, (1, 4, 4), 3, 1.0, 1.0, seed=0)
    with pytest.raises(LinearTrainingDiverged, match=r"learning_rate=5") as info:
        train_linear_cnn(problem, init, 5.0, 2000, record_every=10)
    partial = info.value.run
    assert partial.diverged and partial.t[0] == 0 and np.isfinite(partial.loss_train).all()
    assert len(partial.t) >= 1
    run = train_linear_cnn(problem, init, 5.0, 2000, record_every=10, on_divergence="return")
    assert run.diverged and "lower the learning rate" in run.message and run.t[-1] < 2000
    finit = random_fcnn_init(1, 16, 5, 3, 1.0, seed=0)
    with pytest.raises(LinearTrainingDiverged, match="FCNN.*learning_rate=5"):
        train_linear_fcnn(problem, finit, 5.0, 2000, record_every=10)


def test_bad_arguments_raise_before_training() -> None:
    x, labels = _data(n_samples=6, c=1, n=4)
    problem = LinearProblem.from_data(x, labels)
    init = random_cnn_init(1, (1, 4, 4), 3, 0.1, 0.1, seed=0)
    with pytest.raises(ValueError, match="learning_rate"):
        train_linear_cnn(problem, init, -1.0, 10)
    with pytest.raises(ValueError, match="sampling"):
        train_linear_cnn(problem, init, 0.1, 10, sampling="minibatch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="snapshot_times"):
        train_linear_cnn(problem, init, 0.1, 10, snapshot_times=(11,))
    with pytest.raises(TypeError, match="CNNParameters"):
        train_linear_cnn(problem, FCNNParameters(torch.zeros(1, 2, 16), torch.zeros(1, 3, 2)), 0.1, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init.kernel must have shape"):
        train_linear_cnn(problem, random_cnn_init(1, (2, 4, 4), 3, 0.1, 0.1, seed=0), 0.1, 10)
    with pytest.raises(ValueError, match="labels must have one entry per image"):
        LinearProblem.from_data(x, labels[:5])
    with pytest.raises(ValueError, match="dtype"):
        LinearProblem.from_data(x, labels, dtype=torch.float16)
    with pytest.raises(ValueError, match="x_test and labels_test"):
        LinearProblem.from_data(x, labels, x_test=x)
    with pytest.raises(ValueError, match="seed"):
        trial_generator(-1, 0)
    with pytest.raises(ValueError, match="threads"):
        train_linear_cnn(problem, init, 0.1, 10, threads=0)
    with pytest.raises(ValueError, match="record_threads"):
        train_linear_fcnn(problem, random_fcnn_init(1, 16, 5, 3, 0.1, seed=0), 0.1, 10, record_threads=0)


def test_thread_setting_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = _data(n_samples=6, c=1, n=4)
    problem = LinearProblem.from_data(x, labels)
    init = random_cnn_init(1, (1, 4, 4), 3, 0.1, 0.1, seed=0)
    torch.set_num_threads(2)
    train_linear_cnn(problem, init, 0.01, 20, record_every=10)  # runs on one thread (default)
    assert torch.get_num_threads() == 2
    moments = LinearProblem.from_data(*_data(n_samples=40, c=1, n=4))  # N > D': stacked record products
    seen: list[int] = []
    quadratic = type(moments.train).quadratic

    def spy(self: object, end_to_end: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return quadratic(self, end_to_end)  # type: ignore[arg-type]

    monkeypatch.setattr(type(moments.train), "quadratic", spy)
    train_linear_cnn(moments, init, 0.01, 20, record_every=10, record_threads=3)
    assert seen == [3] and torch.get_num_threads() == 2  # one stacked product, on record_threads
    with pytest.raises(LinearTrainingDiverged):
        train_linear_cnn(problem, random_cnn_init(1, (1, 4, 4), 3, 1.0, 1.0, seed=0), 5.0, 2000, record_every=10)
    assert torch.get_num_threads() == 2


# ------------------------------------------------------------- records from sufficient statistics
def _direct_records(
    run_final: dict[str, np.ndarray], t: int, mode: str, x: torch.Tensor, labels: torch.Tensor, p: int
) -> tuple[float, torch.Tensor]:
    """Loss and predictions of trial ``t``'s final network on every sample of ``x`` (the direct route)."""
    model = LinearCNN(tuple(x.shape[1:]), p, mode).set_parameters(  # type: ignore[arg-type]
        torch.from_numpy(run_final["kernel"][t]), torch.from_numpy(run_final["weight"][t])
    )
    y = torch.eye(p, dtype=torch.float64)[labels]
    with torch.no_grad():
        pred = model(x)
        return float(mse_loss_per_class(pred, y)), pred


@pytest.mark.parametrize("mode", ["sum", "separate"])
def test_moment_records_equal_direct_evaluation(mode: str) -> None:
    g = torch.Generator().manual_seed(7)
    c, n, p = 2, 5, 3
    x = torch.randn(120, c, n, n, generator=g, dtype=torch.float64)  # N = 120 > D' = 2 c |R| = 52
    xt = 0.5 + torch.randn(90, c, n, n, generator=g, dtype=torch.float64)
    labels, lt = torch.arange(120) % p, torch.arange(90) % p
    problem = LinearProblem.from_data(x, labels, xt, lt)
    assert problem.test is not None
    for moments in (problem.train, problem.test):
        assert moments.sigma_phi_phi is not None and moments.factor is not None  # the factored route
    init = random_cnn_init(2, (c, n, n), p, 0.3, 0.3, seed=3, channel_mode=mode)
    run = train_linear_cnn(problem, init, 2e-3, 60, record_every=60, seed=1)
    assert run.loss_test is not None and run.a_test is not None
    structure = DatasetStructure.from_data(x, labels)
    for t in range(2):
        loss, pred = _direct_records(run.final, t, mode, x, labels, p)
        loss_t, pred_t = _direct_records(run.final, t, mode, xt, lt, p)
        assert run.loss_train[t, -1] == pytest.approx(loss, rel=1e-10)
        assert run.loss_test[t, -1] == pytest.approx(loss_t, rel=1e-10)
        assert np.abs(run.a_train[t, -1] - structure.effective_singular_values(x, pred)).max() < 1e-10
        a_test = structure.U.T @ (pred_t.numpy().T @ xt.reshape(90, -1).numpy() / 90) @ structure.V
        assert np.abs(run.a_test[t, -1] - a_test).max() < 1e-10


def test_rank_deficient_moments_fall_back_to_the_dense_product() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64).repeat(20, 1, 1, 1)  # rank 4 < D' = 20
    labels = torch.arange(80) % 2
    problem = LinearProblem.from_data(x, labels)
    assert problem.train.sigma_phi_phi is not None and problem.train.factor is None
    init = random_cnn_init(1, (1, 4, 4), 2, 0.3, 0.3, seed=0)
    run = train_linear_cnn(problem, init, 2e-3, 40, record_every=40)
    loss, _ = _direct_records(run.final, 0, "sum", x, labels, 2)
    assert run.loss_train[0, -1] == pytest.approx(loss, rel=1e-10)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    dim=st.integers(1, 40),
    rows=st.integers(1, 5),
    trials=st.integers(1, 3),
    zero=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_blocked_cholesky_quadratic_form(dim: int, rows: int, trials: int, zero: int, seed: int) -> None:
    """tr(b Σ bᵀ) = ‖b L‖² from the column blocks of L, with identically-zero coordinates dropped."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(dim + 5, dim, generator=g, dtype=torch.float64)
    feats[:, : min(zero, dim - 1)] = 0.0  # structural zeros (as the imaginary parts of self-conjugate entries)
    sigma = feats.T @ feats / feats.shape[0]
    live, blocks = _cholesky_blocks(sigma, torch.float64)
    assert live is not None and blocks is not None
    b = torch.randn(trials, rows, dim, generator=g, dtype=torch.float64)
    direct = torch.einsum("tid,de,tie->t", b, sigma, b)
    factored = _lower_product_sq_norm(b.index_select(2, live), blocks)
    assert torch.allclose(factored, direct, rtol=1e-10, atol=1e-12 * float(direct.abs().max()))


def test_stacked_records_equal_direct_evaluation_at_every_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records whose quadratic terms wait for one stacked product (3 records per product here, and a
    remainder at the end) equal the networks evaluated on every sample, at every record (float64)."""
    monkeypatch.setattr(linear_trainer, "_RECORD_BATCH_ROWS", 13)  # 2 trials x 3 classes = 6 rows a record
    g = torch.Generator().manual_seed(11)
    c, n, p = 2, 5, 3
    x = torch.randn(120, c, n, n, generator=g, dtype=torch.float64)  # N = 120 > D' = 52: moment route
    xt = 0.3 + torch.randn(70, c, n, n, generator=g, dtype=torch.float64)
    labels, lt = torch.arange(120) % p, torch.arange(70) % p
    problem = LinearProblem.from_data(x, labels, xt, lt)
    assert problem.train.needs_quadratic and problem.test is not None and problem.test.needs_quadratic
    init = random_cnn_init(2, (c, n, n), p, 0.3, 0.3, seed=5)
    times = tuple(range(0, 61, 10))
    run = train_linear_cnn(problem, init, 3e-3, 60, record_every=10, snapshot_times=times, seed=4)
    assert run.t.tolist() == list(times) and run.snapshot_t.tolist() == list(times)
    assert run.loss_test is not None and run.a_test is not None and run.kernel_snapshots is not None
    assert run.weight_snapshots is not None
    structure = DatasetStructure.from_data(x, labels)
    for t in range(2):
        for r in range(len(times)):
            snap = {"kernel": run.kernel_snapshots[:, r], "weight": run.weight_snapshots[:, r]}
            loss, pred = _direct_records(snap, t, "sum", x, labels, p)
            loss_t, _ = _direct_records(snap, t, "sum", xt, lt, p)
            assert run.loss_train[t, r] == pytest.approx(loss, rel=1e-10)
            assert run.loss_test[t, r] == pytest.approx(loss_t, rel=1e-10)
            assert np.abs(run.a_train[t, r] - structure.effective_singular_values(x, pred)).max() < 1e-10
    monkeypatch.setattr(linear_trainer, "_RECORD_BATCH_ROWS", 1)  # every record completed at once
    immediate = train_linear_cnn(problem, init, 3e-3, 60, record_every=10, snapshot_times=times, seed=4)
    for key in ("loss_train", "loss_test", "a_train", "a_test", "khat_abs", "balance"):
        assert np.allclose(getattr(run, key), getattr(immediate, key), rtol=1e-12, atol=1e-14), key


@pytest.mark.parametrize("network", ["cnn", "fcnn"])
def test_stacked_records_find_divergence_where_immediate_records_do(
    network: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Divergence found in a stacked batch of records stops at the same record, with the same records and
    snapshots kept, as when every record is completed at once."""
    x, labels = _data(n_samples=60, c=1, n=4)  # N = 60 > D' = 20: moment route
    problem = LinearProblem.from_data(x, labels)
    assert problem.train.needs_quadratic
    snaps, ret = range(0, 3001, 2), "return"

    def diverging_run() -> LinearRun:
        if network == "cnn":
            init = random_cnn_init(2, (1, 4, 4), 3, 0.3, 0.3, seed=0)
            return train_linear_cnn(problem, init, 0.1, 3000, record_every=1, snapshot_times=snaps, on_divergence=ret)
        finit = random_fcnn_init(2, 16, 5, 3, 0.3, seed=0)
        return train_linear_fcnn(problem, finit, 0.2, 3000, record_every=1, snapshot_times=snaps, on_divergence=ret)

    monkeypatch.setattr(linear_trainer, "_RECORD_BATCH_ROWS", 10**6)  # one product at the end (or at NaN)
    stacked = diverging_run()
    monkeypatch.setattr(linear_trainer, "_RECORD_BATCH_ROWS", 1)
    immediate = diverging_run()
    assert immediate.diverged and stacked.diverged and stacked.message == immediate.message
    assert 2 < immediate.t[-1] < 3000  # several records before the divergence
    assert np.array_equal(stacked.t, immediate.t) and np.array_equal(stacked.snapshot_t, immediate.snapshot_t)
    assert np.allclose(stacked.loss_train, immediate.loss_train, rtol=1e-12)
    assert stacked.snapshot_t[-1] <= stacked.t[-1]  # nothing kept from the diverged record on


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("network", ["cnn", "fcnn"])
def test_overlapped_records_equal_records_completed_in_line(
    network: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record products completed in the worker thread while training goes on give bit for bit the run of the
    in-line products (many batches in flight), for a finished and for a diverging run, in float64 and in
    float32 (pinson-fig5's CIFAR-4 dtype), and no worker outlives the call."""
    import threading

    monkeypatch.setattr(linear_trainer, "_RECORD_BATCH_ROWS", 13)  # 2 trials x 3 classes = 6 rows a record
    g = torch.Generator().manual_seed(3)
    x = torch.randn(90, 2, 4, 4, generator=g, dtype=torch.float64)  # N = 90 > D' = 40: moment route
    xt = 0.2 + torch.randn(70, 2, 4, 4, generator=g, dtype=torch.float64)
    labels, lt = torch.arange(90) % 3, torch.arange(70) % 3
    problem = LinearProblem.from_data(x, labels, xt, lt, dtype=dtype)
    assert problem.train.needs_quadratic and problem.test is not None and problem.test.needs_quadratic

    def run(lr: float, overlap: bool) -> LinearRun:
        kw = {"record_every": 7, "snapshot_times": range(0, 1401, 50), "on_divergence": "return", "seed": 2}
        if network == "cnn":
            init = random_cnn_init(2, (2, 4, 4), 3, 0.01, 0.01, seed=1)  # small: a while before it diverges
            return train_linear_cnn(problem, init, lr, 1400, overlap_records=overlap, **kw)  # type: ignore[arg-type]
        finit = random_fcnn_init(2, 32, 5, 3, 0.01, seed=1)
        return train_linear_fcnn(problem, finit, lr, 1400, overlap_records=overlap, **kw)  # type: ignore[arg-type]

    threads_seen: list[str] = []
    quadratic = type(problem.train).quadratic

    def spy(self: object, end_to_end: torch.Tensor) -> torch.Tensor:
        threads_seen.append(threading.current_thread().name)
        return quadratic(self, end_to_end)  # type: ignore[arg-type]

    monkeypatch.setattr(type(problem.train), "quadratic", spy)
    for lr, diverges in ((2e-3, False), (0.12 if network == "cnn" else 0.2, True)):
        threads_seen.clear()
        overlapped = run(lr, True)
        assert threads_seen and all(name.startswith("freqlens-records") for name in threads_seen)
        threads_seen.clear()
        in_line = run(lr, False)
        assert threads_seen and threading.current_thread().name in threads_seen
        assert overlapped.diverged == in_line.diverged == diverges and overlapped.message == in_line.message
        if diverges:
            assert 100 < in_line.t[-1] < 1400  # many batches (3 records each) before the divergence
        else:
            assert in_line.t[-1] == 1400
        for key, value in in_line.arrays().items():
            assert key == "wall_time_s" or np.array_equal(overlapped.arrays()[key], value, equal_nan=True), key
        assert not [t for t in threading.enumerate() if t.name.startswith("freqlens-records")]


def test_full_magnitude_spreads_each_representative_to_its_pair() -> None:
    for n in (1, 4, 5):
        basis = RealFourierBasis.for_size(n)
        values = torch.arange(2 * basis.size, dtype=torch.float64).reshape(2, basis.size)
        full = basis.full_magnitude(values)
        assert torch.equal(full[:, basis.index], values) and torch.equal(full[:, basis.conj], values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["sum", "separate"])
def test_scripted_steps_equal_the_python_steps_bit_for_bit(dtype: torch.dtype, mode: str) -> None:
    """The TorchScript step loop calls the same kernels as the Python loop: identical parameters after
    hundreds of steps in float32 and float64 (so pinson-fig5's float32 runs keep their rounding)."""
    loop = linear_trainer._scripted_step_loop()
    assert isinstance(loop, torch.jit.ScriptFunction)  # TorchScript is there in the pinned torch
    x, labels = _data(n_samples=50, c=3, n=8, p=4, seed=3)
    problem = LinearProblem.from_data(x, labels, dtype=dtype)
    init = random_cnn_init(5, (3, 8, 8), 4, 0.2, 0.2, seed=2, channel_mode=mode)
    params = []
    for scripted in (True, False):
        state = linear_trainer._CNNState(problem, init)
        data = problem.cnn_data
        stepper = linear_trainer._CNNStepper(state, data, problem.targets, 2e-3, 16, scripted=scripted)
        stream = _SampleStream(problem.num_samples, "epochs", seed=1, trials=5)
        for count in (16, 16, 5, 16, *([16] * 20)):
            stepper.steps(stream.take(count))
        params.append((state.K_bar.clone(), state.Wr.clone()))
    assert torch.equal(params[0][0], params[1][0]) and torch.equal(params[0][1], params[1][1])
    assert not torch.equal(params[0][1], linear_trainer._CNNState(problem, init).Wr)  # it did train


def test_fcnn_weight_snapshots_are_taken_at_their_times_in_float64() -> None:
    """A float64 snapshot of ``W2`` is a copy, not a view of the live parameter (it was the final ``W2``)."""
    x, labels = _data(n_samples=30, c=1, n=4)
    problem = LinearProblem.from_data(x, labels)
    run = train_linear_fcnn(problem, random_fcnn_init(2, 16, 5, 3, 0.3, seed=1), 1e-2, 200, snapshot_times=(0, 200))
    assert run.weight_snapshots is not None
    assert np.array_equal(run.weight_snapshots[:, 0], random_fcnn_init(2, 16, 5, 3, 0.3, seed=1).w2.numpy())
    assert np.array_equal(run.weight_snapshots[:, 1], run.final["w2"])
    assert not np.array_equal(run.weight_snapshots[:, 0], run.weight_snapshots[:, 1])


def test_cnn_data_is_made_once_per_problem() -> None:
    """``X = n c(x)/√ω`` is cached on the problem: a second call reuses it and trains bit for bit the same."""
    x, labels = _data(n_samples=12, c=2, n=5)
    problem = LinearProblem.from_data(x, labels, dtype=torch.float32)
    scale = problem.basis.scale(torch.float64)
    assert torch.equal(problem.cnn_data, problem.coeffs * (problem.n / scale).to(torch.float32))
    assert problem.cnn_data is problem.cnn_data
    init = random_cnn_init(2, (2, 5, 5), 3, 0.2, 0.2, seed=0)
    first, second = (train_linear_cnn(problem, init, 1e-2, 40, record_every=20) for _ in range(2))
    assert np.array_equal(first.loss_train, second.loss_train) and np.array_equal(first.a_train, second.a_train)
