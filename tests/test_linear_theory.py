"""Theory of spec §4-§8 against independent routes (dense circulants, GD, ODE solvers); spec §11 items 8-16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from freqlens import DatasetStructure
from freqlens import fourier as fr
from freqlens.datasets import pure_cosines, sums_of_cosines
from freqlens.theory import linear_dynamics as theory_ld
from freqlens.theory.linear_dynamics import (
    AveragedCNNDynamics,
    aligned_balanced_a0,
    averaged_fcnn_rhs,
    cnn_balance_invariant,
    cnn_effective_singular_values,
    cnn_sigmoid,
    cnn_transformed_rhs,
    fcnn_sigmoid,
    integrate_averaged_fcnn,
    integrate_cnn_transformed,
    integrate_fcnn_transformed,
    minimal_norm_solution,
    mode_frequency_weights,
    mode_rate_factors,
    mode_winner_index,
    predict_dynamics,
    sigmoid,
    tau_from_learning_rate,
    time_to_learn,
    wta_closed_form,
    wta_discrete,
    wta_rhs,
    wta_winners,
)
from freqlens.training.linear_init import (
    CNNParameters,
    aligned_balanced_cnn_init,
    matched_fcnn_init,
    mode_supports,
    random_cnn_init,
    random_fcnn_init,
)
from freqlens.training.linear_problem import LinearProblem
from freqlens.training.linear_trainer import train_linear_cnn, train_linear_fcnn

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def _orthogonal(m: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((m, m)))
    return q * np.sign(np.diag(r))


def _neg(n: int) -> np.ndarray:
    """Index of (i ⊖ j) in 2-D for vec indices i, j: table (M, M)."""
    kl = fr.frequency_pairs(n)
    return fr.vec_index(kl[:, None, 0] - kl[None, :, 0], kl[:, None, 1] - kl[None, :, 1], n)


@given(n=st.integers(2, 5), p=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_transformed_system_equals_transformed_raw_flow(n: int, p: int, seed: int) -> None:
    """Spec §11 item 8: Eqs. 15-16 = (Uᵀ Ẇ Q*, Q k̇) of the raw averaged flow (§4.2), and Eq. 14."""
    rng = np.random.default_rng(seed)
    m = n * n
    p = min(p, m)
    u, v = _orthogonal(p, rng), _orthogonal(m, rng)
    s = np.sort(rng.uniform(0.5, 2.0, p))[::-1]
    d = rng.uniform(0.5, 2.0, p)
    sigma_yx = u @ np.diag(s) @ v[:, :p].T
    sigma_xx = v[:, :p] @ np.diag(d) @ v[:, :p].T
    w = rng.standard_normal((p, m))
    k = rng.standard_normal(m)
    tau = 1.7
    circ_k = fr.circulant_matrix(k.reshape(n, n), "conv")
    err = sigma_yx - w @ circ_k @ sigma_xx
    dw = err @ circ_k.T / tau
    g = w.T @ err  # E[δ xᵀ]; dk_j = Σ_i G[i, i ⊖ j] (the averaged circ(x)ᵀ δ of S.34-S.36)
    neg = _neg(n)
    dk = np.array([sum(g[i, neg[i, j]] for i in range(m)) for j in range(m)]) / tau
    q = fr.dft_matrix(n)
    wbar, khat, vhat = u.T @ w @ q.conj(), q @ k, q @ v[:, :p]
    dwbar, dkhat = cnn_transformed_rhs(wbar, khat, s, vhat, d, n, tau)
    assert np.allclose(dwbar, u.T @ dw @ q.conj(), atol=1e-10)
    assert np.allclose(dkhat, q @ dk, atol=1e-10)
    a = cnn_effective_singular_values(wbar, khat, vhat, d, n)
    assert np.allclose(a, u.T @ (w @ circ_k @ sigma_xx) @ v[:, :p], atol=1e-10)


def test_conservation_law_of_the_ode_and_gd_drift() -> None:
    """Spec §4.4 / §11 item 10: |k̂_m|² − ‖W̄_{:,m}‖² is constant under (15)-(16); O(λ) drift under GD."""
    x, labels = sums_of_cosines(n=6, freq_sets=(((0, 1), (2, 3)), ((1, 1), (0, 3))), amplitudes=((1, 0.6), (0.8, 0.4)))
    st_ = DatasetStructure.from_data(x, labels)
    n, p = 6, 2
    rng = np.random.default_rng(0)
    q = fr.dft_matrix(n)
    w = 0.1 * rng.standard_normal((p, n * n))
    k = 0.1 * rng.standard_normal(n * n)
    vhat = st_.v_hat[:, 0, :].T
    d = np.diag(st_.v_proj_sigma_xx)
    sol = integrate_cnn_transformed(
        st_.U.T @ w @ q.conj(), q @ k, st_.S, vhat, d, n, tau=50.0, t_eval=np.linspace(0, 3000, 7)
    )
    inv = cnn_balance_invariant(sol["wbar"], sol["khat"])
    assert np.abs(inv - inv[0]).max() < 1e-9
    assert np.abs(sol["A"][-1] - np.diag(st_.S)).max() < 1e-3  # and it learned (A -> S)
    # GD: the invariant drifts by O(λ) (halving λ roughly halves the drift at equal flow time)
    problem = LinearProblem.from_data(x, labels)
    init = CNNParameters(torch.from_numpy(k.reshape(1, 1, n, n)), torch.from_numpy(w[None]))
    drifts = []
    for lr in (0.04, 0.02):
        steps = round(120 / lr)
        run = train_linear_cnn(problem, init, lr, steps, sampling="full_batch", record_every=steps, record_wbar=True)
        assert run.khat_abs is not None and run.wbar_abs is not None
        inv_gd = run.khat_abs[0, :, 0] ** 2 - (run.wbar_abs[0] ** 2).sum(axis=1)
        drifts.append(np.abs(inv_gd[-1] - inv_gd[0]).max())
    assert 0 < drifts[1] < 0.7 * drifts[0]


@pytest.mark.parametrize("dataset", ["pure", "sums", "random"])
def test_one_image_per_class_gives_diagonal_vt_sigma_xx_v(dataset: str) -> None:
    """Spec §2 Eq. 3, §11 item 11: VᵀΣ_xxV = diag(p s²), via the trainer's packed-moment route."""
    if dataset == "pure":
        x, labels = pure_cosines()
    elif dataset == "sums":
        x, labels = sums_of_cosines()
    else:
        x = torch.randn(5, 2, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        labels = torch.arange(5)
    p = int(labels.max()) + 1
    # replicate each image so that N > D' and the moment route (Σ_φφ) is used
    reps = 150
    problem = LinearProblem.from_data(x.repeat(reps, 1, 1, 1), labels.repeat(reps))
    assert problem.train.sigma_phi_phi is not None
    s = problem.structure.S
    vt_sxx_v = problem.v_phi.T @ problem.train.sigma_phi_phi @ problem.v_phi
    proj = vt_sxx_v.numpy()
    assert np.abs(proj - np.diag(np.diag(proj))).max() < 1e-12
    assert np.allclose(np.diag(proj), p * s**2, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dataset", ["pure", "sums"])
def test_aligned_balanced_init_gives_diagonal_a0(dataset: str) -> None:
    """Spec §6.2 / §11 item 12: A(0) diagonal with a_α(0) = n d_α Σ ν_mα |k̂_m|²."""
    x, labels = pure_cosines() if dataset == "pure" else sums_of_cosines()
    problem = LinearProblem.from_data(x, labels)
    st_ = problem.structure
    init = aligned_balanced_cnn_init(st_, num_trials=3, sigma=0.05, seed=2)
    run = train_linear_cnn(problem, init, 1e-3, 0, record_every=1)
    a0 = run.a_train[:, 0]
    offdiag = a0 - np.stack([np.diag(np.diag(a)) for a in a0])
    assert np.abs(offdiag).max() < 1e-12
    khat_abs = np.abs(np.fft.fft2(init.kernel[:, 0].numpy()) / 16).reshape(3, -1)
    nu = np.abs(st_.v_hat[:, 0, :]) * mode_supports(st_)
    predicted = aligned_balanced_a0(khat_abs, nu, np.diag(st_.v_proj_sigma_xx), 16)
    assert np.allclose(np.stack([np.diag(a) for a in a0]), predicted, rtol=1e-10)
    assert (predicted > 0).all()
    # the matched FCNN starts from the same A(0) (spec §6.3)
    fin = matched_fcnn_init(st_, init)
    frun = train_linear_fcnn(problem, fin, 1e-3, 0, record_every=1)
    assert np.allclose(frun.a_train[:, 0], a0, atol=1e-12)


def test_reduced_wta_reproduces_gradient_descent() -> None:
    """Spec §7.2 / §11 item 16: from aligned-balanced init, full-batch GD |k̂_m(t)| = the reduced map (Eq. 24)."""
    freq_sets = (((0, 1), (2, 3), (4, 0), (8, 8)), ((1, 1), (3, 5), (0, 6), (0, 8), (6, 2)))
    amps = ((1.0, 0.6, 0.3, 0.45), (0.8, 0.5, 0.25, 0.3, 0.7))
    x, labels = sums_of_cosines(n=16, freq_sets=freq_sets, amplitudes=amps)
    problem = LinearProblem.from_data(x, labels)
    st_ = problem.structure
    init = aligned_balanced_cnn_init(st_, num_trials=2, sigma=0.01, seed=5)
    lr, steps = 0.01, 600
    run = train_linear_cnn(problem, init, lr, steps, sampling="full_batch", record_every=50)
    assert run.khat_abs is not None
    supports = mode_supports(st_)
    idx = np.flatnonzero(supports.any(axis=0))
    mode_of = supports[:, idx].argmax(axis=0)
    nu = np.abs(st_.v_hat[:, 0, idx])[mode_of, np.arange(len(idx))]
    d = np.diag(st_.v_proj_sigma_xx)
    tau = tau_from_learning_rate(lr, 2)
    for t in range(2):
        r0 = run.khat_abs[t, 0, 0, idx]
        _, r = wta_discrete(r0, nu, mode_of, st_.S, d, 16, tau, steps, record_every=50)
        assert np.abs(r - run.khat_abs[t, :, 0, idx].T).max() < 1e-10
        assert np.abs(r[-1] - r0).max() > 1e-2  # the kernel did move
        # frequencies outside every mode keep their initial value exactly
        off = ~supports.any(axis=0)
        assert np.abs(run.khat_abs[t, -1, 0, off] - run.khat_abs[t, 0, 0, off]).max() < 1e-12
    # ... and the mode a_α of the reduced system equal the recorded diagonal of A
    assert np.allclose(np.diagonal(run.a_train[0, -1]), np.diagonal(run.a_train[0, -1]).clip(0), atol=0)


def test_wta_closed_form_equals_the_ode() -> None:
    rng = np.random.default_rng(3)
    nu = np.array([0.5, 0.3, 0.2, 0.6, 0.6, 0.1])
    mode_of = np.array([0, 0, 0, 1, 1, 1])
    s, d, n, tau = np.array([2.0, 1.0]), np.array([8.0, 2.0]), 8, 400.0
    r0 = rng.uniform(1e-3, 3e-3, 6)
    t = np.linspace(0, 4000, 9)
    closed = wta_closed_form(t, r0, nu, mode_of, s, d, n, tau)
    sol = solve_ivp(
        lambda _t, r: wta_rhs(r, nu, mode_of, s, d, n, tau), (0, 4000), r0, t_eval=t, rtol=1e-12, atol=1e-15
    )
    assert np.allclose(closed["r"], sol.y.T, rtol=1e-7, atol=1e-12)
    # winner-takes-all: the largest ν of mode 0 dominates; tied maximisers of mode 1 share
    final = closed["r"][-1]
    assert final[0] ** 2 > 0.95 * (final[:3] ** 2).sum()
    win = wta_winners(np.array([[0.5, 0.3, 0.2, 0, 0, 0], [0, 0, 0, 0.6, 0.6, 0.1]]))
    assert win.tolist() == [[True, False, False, False, False, False], [False, False, False, True, True, False]]


def test_pure_cosine_gd_follows_eq22_with_rate_n_nu() -> None:
    """Spec §6.4 / §11 item 13: full-batch GD matches Eq. 22 with rate n ν (not n² ν²)."""
    x, labels = pure_cosines()
    problem = LinearProblem.from_data(x, labels)
    st_ = problem.structure
    init = aligned_balanced_cnn_init(st_, num_trials=1, sigma=0.02, seed=0)
    lr, steps = 4e-4, 8000  # Keras λ = 4e-4 is τ = p/(2λ) = 5000 (≡ λ = 2e-4 for ½‖e‖²)
    run = train_linear_cnn(problem, init, lr, steps, sampling="full_batch", record_every=100)
    tau = tau_from_learning_rate(lr, 4)
    a_gd = np.stack([np.diag(a) for a in run.a_train[0]])
    nu = np.abs(st_.v_hat[:, 0, :]).max(axis=1)
    theory = cnn_sigmoid(run.t.astype(float), st_.S, a_gd[0], 16, nu, tau).T
    err = np.abs(a_gd - theory).max(axis=0)
    assert err[0] < 0.08 and (err[1:] < 0.01).all(), err
    wrong = sigmoid(run.t.astype(float), st_.S, a_gd[0], 16**2 * nu**2, tau).T  # the naive n²|v̂|² reading
    assert np.abs(a_gd - wrong).max() > 1.0
    # time to reach s/2 agrees with the half-time formula (to the discretisation error)
    for alpha in range(4):
        t_half = time_to_learn(st_.S[alpha], a_gd[0, alpha], st_.S[alpha] / 2, 16 * nu[alpha], tau)
        crossing = np.interp(st_.S[alpha] / 2, a_gd[:, alpha], run.t)
        assert abs(crossing - t_half) < 0.03 * t_half + 100


def test_fcnn_aligned_balanced_follows_saxe_sigmoid() -> None:
    """Spec §6.3 / §11 item 14: matched FCNN, τ ȧ = 2a(s − a) (GD and the Eqs. 19-20 ODE)."""
    x, labels = pure_cosines()
    problem = LinearProblem.from_data(x, labels)
    st_ = problem.structure
    cnn = aligned_balanced_cnn_init(st_, num_trials=1, sigma=0.02, seed=0)
    fin = matched_fcnn_init(st_, cnn)
    lr, steps = 4e-4 * 16, 8000
    run = train_linear_fcnn(problem, fin, lr, steps, sampling="full_batch", record_every=200)
    tau = tau_from_learning_rate(lr, 4)
    a_gd = np.stack([np.diag(a) for a in run.a_train[0]])
    theory = fcnn_sigmoid(run.t.astype(float), st_.S, a_gd[0], tau).T
    assert np.abs(a_gd - theory).max() < 0.08
    d = np.diag(st_.v_proj_sigma_xx)
    w = np.sqrt(a_gd[0] / d)
    ode = integrate_fcnn_transformed(np.diag(w), np.diag(w), st_.S, d, tau, run.t.astype(float))
    assert np.allclose(np.stack([np.diag(a) for a in ode["A"]]), theory, atol=1e-7)


def test_ode_from_aligned_init_is_exactly_eq22() -> None:
    x, labels = pure_cosines()
    st_ = DatasetStructure.from_data(x, labels)
    init = aligned_balanced_cnn_init(st_, num_trials=1, sigma=0.02, seed=1)
    n = 16
    q = fr.dft_matrix(n)
    khat = np.conj(q @ init.kernel[0, 0].numpy().reshape(-1))  # convolution-form kernel
    wbar = st_.U.T @ init.weight[0].numpy() @ q.conj()
    vhat = st_.v_hat[:, 0, :].T
    d = np.diag(st_.v_proj_sigma_xx)
    t = np.linspace(0, 8000, 17)
    sol = integrate_cnn_transformed(wbar, khat, st_.S, vhat, d, n, 5000.0, t)
    a = np.stack([np.diag(m) for m in sol["A"]])
    nu = np.abs(vhat).max(axis=0)
    assert np.allclose(a, cnn_sigmoid(t, st_.S, a[0], n, nu, 5000.0).T, atol=1e-8)
    assert np.abs(sol["A"][-1] - np.diag(st_.S)).max() < 1e-3 * st_.S[0]


def test_random_init_converges_to_s_and_balances() -> None:
    """Spec §11 item 15: from small random init, A -> S (|A−S|max < 1e-3) and the balance ratio -> 1."""
    x, labels = pure_cosines(n=8, freqs=((0, 0), (1, 2), (3, 1)), amplitudes=(1.0, 0.8, 0.5))
    problem = LinearProblem.from_data(x, labels)
    init = random_cnn_init(2, (1, 8, 8), 3, 0.02, 0.02, seed=3)
    run = train_linear_cnn(problem, init, 0.01, 6000, sampling="full_batch", record_every=3000)
    s = problem.structure.S
    assert np.abs(run.a_train[:, -1] - np.diag(s)[None]).max() < 1e-3 * s[0]
    supports = mode_supports(problem.structure).any(axis=0)
    assert run.balance is not None
    assert np.abs(run.balance[:, -1, 0, supports] - 1.0).max() < 0.1


def test_averaged_dynamics_is_the_expected_gradient() -> None:
    """Spec §4.2 for a general Σ_xx (several images per class, 2 channels): one full-batch GD step = rhs·1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 2, 4, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(9) % 3
    problem = LinearProblem.from_data(x, labels)
    st_ = problem.structure
    init = random_cnn_init(2, (2, 4, 4), 3, 0.1, 0.1, seed=1)
    lr = 0.02
    run = train_linear_cnn(problem, init, lr, 1, sampling="full_batch", record_every=1)
    xs = x.reshape(9, -1).numpy()
    y = np.eye(3)[labels.numpy()]
    dyn = AveragedCNNDynamics.from_moments(y.T @ xs / 9, xs.T @ xs / 9, (2, 4, 4), 1.0, st_.U, st_.V, 3 / (2 * lr))

    def hats(kernel: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return fr.vec2d_dft(weight.reshape(-1, 3, 4, 4)), np.conj(fr.vec2d_dft(kernel))  # ŵ = Q w, k̂ = conj(Q k)

    w0, k0 = hats(init.kernel.numpy(), init.weight.numpy())
    w1, k1 = hats(run.final["kernel"], run.final["weight"])
    dw, dk = dyn.rhs(w0, k0)
    assert np.allclose(w1 - w0, dw, atol=1e-12)
    assert np.allclose(k1 - k0, dk, atol=1e-12)
    a, loss = dyn.evaluate(w0, k0)
    assert np.allclose(a, run.a_train[:, 0], atol=1e-12)
    assert np.allclose(loss, run.loss_train[:, 0], rtol=1e-12)
    # integrating the flow over many steps stays O(λ) close to GD
    run_long = train_linear_cnn(problem, init, lr, 400, sampling="full_batch", record_every=100)
    sol = dyn.integrate(w0, k0, run_long.t.astype(float))
    assert np.abs(sol["A"] - run_long.a_train).max() < 0.05 * np.abs(run_long.a_train).max()
    assert sol["khat_abs"].shape == (2, len(run_long.t), 2, 16)


def test_minimal_norm_solution() -> None:
    """Spec §8.2: the solution satisfies A = S with balanced, phase-aligned weights; its norm is minimal."""
    x, labels = sums_of_cosines(n=8, freq_sets=(((0, 1), (2, 3)), ((1, 1), (3, 2))), amplitudes=((1, 0.5), (0.6, 0.6)))
    st_ = DatasetStructure.from_data(x, labels)
    vhat = st_.v_hat[:, 0, :]
    d = np.diag(st_.v_proj_sigma_xx)
    sol = minimal_norm_solution(st_.S, np.abs(vhat), d, 8)
    # rebuild an aligned, balanced state with these magnitudes: k̂ real positive, W̄ = k̂ e^{-iφ^v}
    khat = sol.khat_abs.astype(complex)
    wbar = sol.wbar_abs * np.exp(-1j * np.angle(vhat))
    a = cnn_effective_singular_values(wbar, khat, vhat.T, d, 8)
    assert np.allclose(a, np.diag(st_.S), atol=1e-12)
    assert (np.abs(wbar) ** 2).sum() + (np.abs(khat) ** 2).sum() == pytest.approx(sol.norm, rel=1e-12)
    # mode 1 has two tied maximisers (equal amplitudes): the kernel energy splits over both pairs
    assert np.count_nonzero(sol.khat_abs[np.abs(vhat[1]) > 1e-9]) == 4
    # moving mode 0's energy onto its weaker frequency (still A = S) costs more norm
    weak = (np.abs(vhat[0]) > 1e-9) & ~wta_winners(np.abs(vhat))[0]
    nu_weak = np.abs(vhat[0, weak]).max()
    alt_sq = st_.S[0] / (8 * d[0] * nu_weak) / weak.sum()
    alt_norm = sol.norm - 2 * st_.S[0] / (8 * d[0] * np.abs(vhat[0]).max()) + 2 * alt_sq * weak.sum()
    assert alt_norm > sol.norm * 1.01


def test_theory_input_validation() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        tau_from_learning_rate(0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        tau_from_learning_rate(-0.1, 4)
    with pytest.raises(ValueError, match="loss"):
        tau_from_learning_rate(0.1, 4, loss="l1")
    with pytest.raises(ValueError, match="a0, a_final < s"):
        time_to_learn(1.0, 0.5, 1.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="t must be a 1-D"):
        sigmoid(np.zeros((2, 2)), 1.0, 0.1, 1.0, 1.0)
    with pytest.raises(ValueError, match="disjoint"):
        x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        aligned_balanced_cnn_init(DatasetStructure.from_data(x, torch.arange(3)), 1, 0.1, 0)


@pytest.mark.parametrize("n_samples", [3, 40])
def test_averaged_fcnn_flow_matches_gradient_descent(n_samples: int) -> None:
    """Spec §5: the averaged FCNN flow = the expected gradient (one GD step), and its reduced integration
    (rank(Σ_xx) < D for one image per class) stays O(λ) close to full-batch GD."""
    g = torch.Generator().manual_seed(n_samples)
    x = torch.randn(n_samples, 1, 4, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(n_samples) % 3
    problem = LinearProblem.from_data(x, labels)
    st_ = problem.structure
    init = random_fcnn_init(2, 16, 6, 3, 0.3, seed=2)
    lr = 0.02
    xs = x.reshape(n_samples, -1).numpy()
    y = np.eye(3)[labels.numpy()]
    sigma_yx, sigma_xx = y.T @ xs / n_samples, xs.T @ xs / n_samples
    tau = tau_from_learning_rate(lr, 3)
    one = train_linear_fcnn(problem, init, lr, 1, sampling="full_batch", record_every=1)
    d1, d2 = averaged_fcnn_rhs(init.w1.numpy(), init.w2.numpy(), sigma_yx, sigma_xx, tau)
    assert np.allclose(one.final["w1"] - init.w1.numpy(), d1, atol=1e-13)
    assert np.allclose(one.final["w2"] - init.w2.numpy(), d2, atol=1e-13)
    run = train_linear_fcnn(problem, init, lr, 600, sampling="full_batch", record_every=100)
    y_sq = 1.0
    sol = integrate_averaged_fcnn(
        init.w1.numpy(), init.w2.numpy(), sigma_yx, sigma_xx, y_sq, st_.U, st_.V, tau, run.t.astype(float)
    )
    assert np.allclose(sol["A"][:, 0], run.a_train[:, 0], atol=1e-12)
    assert np.allclose(sol["loss"][:, 0], run.loss_train[:, 0], rtol=1e-10)
    assert np.abs(sol["A"] - run.a_train).max() < 0.03 * np.abs(run.a_train).max()
    assert np.abs(sol["loss"] - run.loss_train).max() < 0.03 * run.loss_train.max()


# ------------------------------------------------------------------ predict_dynamics (issue 15 item 3)
def _noisy_dataset() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """9 images (2 channels, n = 4) in 3 classes with within-class noise: Σ_xx is far from diagonal in V."""
    g = torch.Generator().manual_seed(5)
    means = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(9) % 3
    x = means[labels] + 0.7 * torch.randn(9, 2, 4, 4, generator=g, dtype=torch.float64)
    xs = x.reshape(9, -1).numpy()
    y = np.eye(3)[labels.numpy()]
    return x, labels, xs, y.T @ xs / 9, xs.T @ xs / 9


def _raw_flow_a(
    x: torch.Tensor,
    labels: torch.Tensor,
    params: list[torch.Tensor],
    forward: object,
    lr: float,
    t: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Independent route: integrate the raw parameter gradient flow ``dθ/dt = −λ ∇ E[(1/p)‖y − ŷ‖²]`` (torch
    autograd, float64, scipy DOP853) and project the predictions, ``A = Uᵀ Σ_ŷx V``; returns ``(A, loss)``."""
    y = torch.eye(3, dtype=torch.float64)[labels]
    sizes = [q.numel() for q in params]
    shapes = [q.shape for q in params]

    def unpack(vec: np.ndarray) -> list[torch.Tensor]:
        parts = np.split(vec, np.cumsum(sizes)[:-1])
        return [
            torch.from_numpy(np.ascontiguousarray(a)).reshape(sh).requires_grad_(True) for a, sh in zip(parts, shapes)
        ]

    def loss_of(ps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        yh = forward(x, *ps)  # type: ignore[operator]
        return ((y - yh) ** 2).sum(dim=1).mean() / 3, yh

    def rhs(_t: float, vec: np.ndarray) -> np.ndarray:
        ps = unpack(vec)
        loss, _ = loss_of(ps)
        grads = torch.autograd.grad(loss, ps)
        return -lr * np.concatenate([gr.detach().numpy().ravel() for gr in grads])

    y0 = np.concatenate([q.numpy().ravel() for q in params])
    sol = solve_ivp(rhs, (0.0, float(t[-1])), y0, method="DOP853", t_eval=t, rtol=1e-11, atol=1e-13)
    xs = x.reshape(len(x), -1).numpy()
    a_out, l_out = [], []
    for i in range(len(t)):
        loss, yh = loss_of(unpack(sol.y[:, i]))
        a_out.append(u.T @ (yh.detach().numpy().T @ xs / len(xs)) @ v)
        l_out.append(float(loss.detach()))
    return np.stack(a_out), np.asarray(l_out)


def _cnn_forward(x: torch.Tensor, kernel: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Linear CNN, channels summed: ``h = Σ_c k_c ⋆ x_c`` (circular correlation, spec §3.2), ``ŷ = W h``."""
    n = x.shape[-1]
    h = torch.zeros(x.shape[0], n, n, dtype=torch.float64)
    for a in range(n):
        for b in range(n):
            h = h + (kernel[None, :, a, b, None, None] * torch.roll(x, shifts=(-a, -b), dims=(-2, -1))).sum(dim=1)
    return h.reshape(len(x), -1) @ weight.T


def _fcnn_forward(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1) @ w1.T @ w2.T


@pytest.mark.parametrize("net", ["cnn", "fcnn"])
def test_predict_dynamics_matches_raw_parameter_flow_for_non_diagonal_sigma_xx(net: str) -> None:
    """predict_dynamics (spec §4.2 / §5 for any Σ_xx) = the raw gradient flow of the parameters, projected."""
    x, labels, _, sigma_yx, sigma_xx = _noisy_dataset()
    st_ = DatasetStructure.from_data(x, labels)
    vv = st_.V @ st_.V.T
    # Σ_xx ≠ V D Vᵀ: within-class noise puts a large part of it outside the modes' span (spec §8.1)
    assert np.linalg.norm(sigma_xx - vv @ sigma_xx @ vv) > 0.2 * np.linalg.norm(sigma_xx)
    lr = 0.02
    t = np.linspace(0.0, 300.0, 7)
    if net == "cnn":
        init = random_cnn_init(1, (2, 4, 4), 3, 0.3, 0.3, seed=3)
        pair = (init.kernel[0].numpy(), init.weight[0].numpy())
        forward: object = _cnn_forward
    else:
        fin = random_fcnn_init(1, 32, 6, 3, 0.3, seed=3)
        pair = (fin.w1[0].numpy(), fin.w2[0].numpy())
        forward = _fcnn_forward
    pred = predict_dynamics(
        sigma_yx, sigma_xx, (2, 4, 4), st_.U, st_.V, tau_from_learning_rate(lr, 3), t, pair, net=net,
        rtol=1e-11, atol=1e-13,
    )  # fmt: skip
    a_raw, loss_raw = _raw_flow_a(x, labels, [torch.from_numpy(q.copy()) for q in pair], forward, lr, t, st_.U, st_.V)
    assert np.abs(a_raw[-1] - a_raw[0]).max() > 0.3  # the flow moved
    assert np.abs(pred.A - a_raw).max() < 1e-7 * np.abs(a_raw).max()
    assert np.allclose(pred.loss, loss_raw, rtol=1e-7)
    assert np.allclose(pred.s, st_.S)
    assert (pred.rate_factors is None) == (net == "fcnn")


def test_pixel_route_is_the_fourier_route() -> None:
    """AveragedCNNDynamics.rhs_pixel is rhs (spec §4.2): G = Q(Σ_yx − M_e Σ_xx) = Σ_yx̂ − β M̂."""
    x, labels, _, sigma_yx, sigma_xx = _noisy_dataset()
    st_ = DatasetStructure.from_data(x, labels)
    dyn = AveragedCNNDynamics.from_moments(sigma_yx, sigma_xx, (2, 4, 4), 1.0, st_.U, st_.V, 10.0)
    init = random_cnn_init(2, (2, 4, 4), 3, 0.3, 0.3, seed=4)
    w = fr.vec2d_dft(init.weight.numpy().reshape(2, 3, 4, 4))
    k = np.conj(fr.vec2d_dft(init.kernel.numpy()))
    for a, b in zip(dyn.rhs(w, k), dyn.rhs_pixel(w, k)):
        assert np.abs(a - b).max() < 1e-13 * np.abs(a).max()
    with pytest.raises(ValueError, match="route"):
        dyn.integrate(w, k, np.array([0.0, 1.0]), route="dense")


def test_predict_dynamics_discovery_times_and_winners_known_answer() -> None:
    """Diagonal Σ_xx (pure cosines, aligned-balanced init): the predicted discovery time is the first recorded
    t after the closed form t* = τ/(2 g s) ln((s/2)(s − a0)/(a0 s/2)) (Eq. 22, g = n ν; FCNN g = 1), and the
    winner of every mode is its own cosine frequency (the WTA rule and the flow agree)."""
    n, lr = 16, 2e-4
    x, labels = pure_cosines(n)
    st_ = DatasetStructure.from_data(x, labels)
    p = st_.num_classes
    xs = x.reshape(p, -1).numpy()
    y = np.eye(p)
    sigma_yx, sigma_xx = y.T @ xs / p, xs.T @ xs / p
    tau = tau_from_learning_rate(lr, p)
    cnn = aligned_balanced_cnn_init(st_, 1, 1e-3, seed=0)
    fin = matched_fcnn_init(st_, cnn)
    supports = mode_supports(st_)
    vabs = np.abs(st_.v_hat[:, 0, :]) * supports
    a0 = aligned_balanced_a0(
        np.abs(np.conj(fr.vec2d_dft(cnn.kernel[0, 0].numpy()))), vabs, np.diag(st_.v_proj_sigma_xx), n
    )
    nu = vabs.max(axis=1)
    dt = 20.0
    t = np.arange(0.0, 12000.0 + dt, dt)
    tau_f = tau_from_learning_rate(n * lr, p)  # λ_FCNN = n λ_CNN (Fig. 3 convention) keeps both within t
    pc = predict_dynamics(
        sigma_yx, sigma_xx, (1, n, n), st_.U, st_.V, tau, t, (cnn.kernel[0].numpy(), cnn.weight[0].numpy()),
        net="cnn", rtol=1e-10, atol=1e-14,
    )  # fmt: skip
    pf = predict_dynamics(
        sigma_yx, sigma_xx, (1, n, n), st_.U, st_.V, tau_f, t, (fin.w1[0].numpy(), fin.w2[0].numpy()),
        net="fcnn", rtol=1e-10, atol=1e-14,
    )  # fmt: skip
    for pred, speed, tau_net in ((pc, n * nu, tau), (pf, np.ones(p), tau_f)):
        exact = np.array([time_to_learn(st_.S[a], a0[a], st_.S[a] / 2, speed[a], tau_net) for a in range(p)])
        assert exact[-1] < t[-1] and pred.half_times.shape == (p,)
        assert np.all(pred.half_times >= exact * (1 - 1e-6)) and np.all(pred.half_times < exact * (1 + 1e-6) + dt)
    own = np.argmax(vabs, axis=1)
    own = np.minimum(own, fr.conjugate_index(n)[own])
    assert pc.wta_winner is not None and pc.flow_winner is not None
    assert np.array_equal(pc.wta_winner, own) and np.array_equal(pc.flow_winner, own)
    assert pf.wta_winner is None and pf.flow_winner is None


def test_winner_helpers_and_one_half_time_definition() -> None:
    """mode_winner_index reports the lower index of {m, m̄}; channel rate factors are the channel norm of v̂;
    analysis re-uses the theory's half_times (one definition)."""
    from freqlens.analysis import linear_dynamics_metrics as metrics

    assert metrics.half_times is theory_ld.half_times
    n = 4
    conj = fr.conjugate_index(n)
    w = np.zeros((2, 16))
    w[0, conj[1]] = 2.0  # m̄ of m = 1 wins: reported as 1
    w[1, 5] = 1.0
    assert mode_winner_index(w, n).tolist() == [min(1, conj[1]), min(5, conj[5])]
    v = np.random.default_rng(0).standard_normal((2, 3, n, n))
    nu = mode_rate_factors(v)
    assert np.allclose(nu**2, (np.abs(fr.vec2d_dft(v)) ** 2).sum(axis=1))
    weights = mode_frequency_weights(np.ones((2, 16)), np.full((3, 16), 2.0), n)
    assert np.allclose(weights, n * np.sqrt(12.0))
    with pytest.raises(ValueError, match="net must be"):
        predict_dynamics(np.ones((1, 16)), np.eye(16), (1, 4, 4), np.ones((1, 1)), np.ones((16, 1)) / 4, 1.0,
                         np.array([0.0, 1.0]), (np.zeros((4, 16)), np.zeros((1, 4))), net="rnn")  # fmt: skip
    with pytest.raises(ValueError, match="init for net='cnn'"):
        predict_dynamics(np.ones((1, 16)), np.eye(16), (1, 4, 4), np.ones((1, 1)), np.ones((16, 1)) / 4, 1.0,
                         np.array([0.0, 1.0]), (np.zeros((4, 16)), np.zeros((1, 4))), net="cnn")  # fmt: skip
