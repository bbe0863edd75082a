"""Records from sufficient statistics (loss = quadratic in the end-to-end map, A = linear) against direct
evaluation of the trained networks on every sample, float64 (spec §2 Eq. 5, §4.1)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from freqlens import DatasetStructure
from freqlens.models.linear import LinearCNN, mse_loss_per_class
from freqlens.training.linear_init import random_cnn_init
from freqlens.training.linear_problem import LinearProblem, _cholesky_blocks, _lower_product_sq_norm
from freqlens.training.linear_trainer import train_linear_cnn


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
