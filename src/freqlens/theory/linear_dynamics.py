"""Learning dynamics of two-layer linear CNNs and FCNNs (spec ``linear_cnn_dynamics.md`` §4-§8).

Float64 NumPy/SciPy only (this module never uses torch; DFT conventions come from
:mod:`freqlens.fourier`). Time ``t`` counts samples (single-sample updates) and ``τ`` is the time
constant of the averaged gradient flow: ``τ = p/(2λ)`` for the paper's Keras MSE ``(1/p)‖y − ŷ‖²``,
``τ = 1/λ`` for ``½‖y − ŷ‖²`` (spec §4.2). Kernels are in the paper's **convolution** form
(``h = circ(k) x``, ``k̂ = Q k``); a PyTorch/Keras correlation kernel ``k`` corresponds to the
index-negated kernel, whose ``k̂`` is ``conj(Q k)`` (spec §3.2): magnitudes, ``A`` and losses agree.

Contents:

* closed forms: the sigmoids of Eq. 22 (CNN, rate ``n ν_α``) and of the FCNN, time to learn (§6.3-§6.4);
* the transformed CNN system (Eqs. 15-16) and FCNN system (Eqs. 19-20), and their integration;
* the general averaged dynamics (§4.2) for any ``Σ_xx`` (e.g. CIFAR-4, colour, shared frequencies);
* the soft winner-takes-all system (Eqs. 23-24): continuous, its exact discrete (GD) counterpart, the
  closed form through the mode clock ``Θ_α(t)``, and the predicted winning frequencies;
* the minimal-norm solution (§8.2) and the conservation law (§4.4);
* discovery times (``a_α ≥ s_α/2``, the one definition, re-used by :mod:`freqlens.analysis`) and
  :func:`predict_dynamics`: ``A(t)``, loss, discovery times and winning frequencies of either network on
  any dataset's moments (e.g. CIFAR-4, where ``Σ_xx`` is not diagonal in ``V``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from ..fourier import conjugate_index, vec2d_dft, vec2d_idft

__all__ = [
    "AveragedCNNDynamics",
    "DynamicsPrediction",
    "MinimalNormSolution",
    "aligned_balanced_a0",
    "averaged_fcnn_rhs",
    "cnn_balance_invariant",
    "cnn_effective_singular_values",
    "cnn_rate_factors",
    "cnn_sigmoid",
    "cnn_transformed_rhs",
    "fcnn_sigmoid",
    "fcnn_transformed_rhs",
    "half_times",
    "integrate_averaged_fcnn",
    "integrate_cnn_transformed",
    "integrate_fcnn_transformed",
    "minimal_norm_solution",
    "mode_frequency_weights",
    "mode_rate_factors",
    "mode_winner_index",
    "predict_dynamics",
    "sigmoid",
    "tau_from_learning_rate",
    "time_to_learn",
    "wta_closed_form",
    "wta_discrete",
    "wta_effective_singular_values",
    "wta_rhs",
    "wta_winners",
]


# ------------------------------------------------------------------------------ small checks
def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name} must be a number > 0, got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _array(name: str, value: object, ndim: int | None = None, dtype: type = np.float64) -> np.ndarray:
    arr: np.ndarray = np.asarray(value, dtype=dtype)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


# ------------------------------------------------------------------------------ §6.3-§6.4 closed forms
def tau_from_learning_rate(learning_rate: float, num_classes: int | None = None, loss: str = "keras_mse") -> float:
    """Time constant of the averaged flow for single-sample SGD with rate ``λ`` (spec §4.2).

    ``loss="keras_mse"`` (``(1/p)‖y − ŷ‖²``, the paper's implementation): ``τ = p/(2λ)``;
    ``loss="half_sse"`` (``½‖y − ŷ‖²``): ``τ = 1/λ``.
    """
    lr = _positive("learning_rate", learning_rate)
    if loss == "half_sse":
        return 1.0 / lr
    if loss != "keras_mse":
        raise ValueError(f"loss must be 'keras_mse' or 'half_sse', got {loss!r}")
    if num_classes is None:
        raise ValueError("num_classes (p) is required for loss='keras_mse' (τ = p/(2λ))")
    return float(num_classes) / (2.0 * lr)


def sigmoid(t: np.ndarray, s: np.ndarray, a0: np.ndarray, speed: np.ndarray, tau: float) -> np.ndarray:
    """``a(t) = s e^{2 g s t/τ} / (e^{2 g s t/τ} − 1 + s/a0)``: solution of ``τ ȧ = 2 g a (s − a)`` (Eq. 22).

    ``t (R,)``; ``s``, ``a0``, ``speed = g`` broadcast against each other (e.g. ``(p,)`` or ``(T, p)``);
    returns ``(..., R)`` with the time axis last. ``a0`` must lie in ``(0, s]`` or be negative-free;
    ``a0 = 0`` stays 0.
    """
    tau = _positive("tau", tau)
    t = _array("t", t, ndim=1)
    s, a0, g = np.broadcast_arrays(_array("s", s), _array("a0", a0), _array("speed", speed))
    if np.any(a0 < 0) or np.any(s <= 0):
        raise ValueError("sigmoid needs s > 0 and a0 >= 0")
    x = 2.0 * g[..., None] * s[..., None] * t / tau
    # a = s / (1 + (s/a0 - 1) e^{-x}), written stably for large x.
    with np.errstate(divide="ignore", over="ignore"):
        ratio = np.where(a0 > 0, s / np.where(a0 > 0, a0, 1.0) - 1.0, np.inf)[..., None]
        out = s[..., None] / (1.0 + ratio * np.exp(-x))
    return np.where(a0[..., None] > 0, out, 0.0)


def cnn_sigmoid(t: np.ndarray, s: np.ndarray, a0: np.ndarray, n: int, nu: np.ndarray, tau: float) -> np.ndarray:
    """CNN effective singular values from aligned-balanced init (Eq. 22): rate ``n ν_α`` (spec §6.3-§6.4)."""
    return sigmoid(t, s, a0, float(n) * np.asarray(nu, dtype=np.float64), tau)


def fcnn_sigmoid(t: np.ndarray, s: np.ndarray, a0: np.ndarray, tau: float) -> np.ndarray:
    """FCNN effective singular values from aligned-balanced init, ``τ ȧ = 2 a (s − a)`` (spec §6.3)."""
    return sigmoid(t, s, a0, np.ones_like(np.asarray(s, dtype=np.float64)), tau)


def time_to_learn(s: float, a0: float, a_final: float, speed: float, tau: float) -> float:
    """Samples to go from ``a0`` to ``a_final`` (``0 < a0, a_final < s``) on the sigmoid with rate ``speed``:
    ``t = τ/(2 g s) ln(a_f (s − a0) / (a0 (s − a_f)))`` (spec §6.3; ``g = n ν`` for the CNN, 1 for the FCNN)."""
    s, a0, a_final = _positive("s", s), _positive("a0", a0), _positive("a_final", a_final)
    if not a0 < s or not a_final < s:
        raise ValueError(f"need 0 < a0, a_final < s, got a0={a0}, a_final={a_final}, s={s}")
    g = _positive("speed", speed)
    return tau / (2.0 * g * s) * float(np.log(a_final * (s - a0) / (a0 * (s - a_final))))


def cnn_rate_factors(v_hat: np.ndarray, supports: np.ndarray | None = None) -> np.ndarray:
    """``ν_α = max_m |v̂_mα|`` for each mode (``v_hat (p, n²)``, spec §6.1; pure cosines: 1 or 1/√2)."""
    mag = np.abs(np.asarray(v_hat))
    if supports is not None:
        mag = mag * supports
    return mag.max(axis=1)


# ------------------------------------------------------------------------------ §4.4 transformed CNN system
def cnn_effective_singular_values(
    wbar: np.ndarray, khat: np.ndarray, v_hat: np.ndarray, d: np.ndarray, n: int
) -> np.ndarray:
    """``A = n W̄ diag(k̂) V̂ D`` (Eq. 14): ``wbar (p, M)``, ``khat (M,)``, ``v_hat (M, p)``, ``d (p,)`` -> ``(p, p)``."""
    return n * ((wbar * khat[None, :]) @ v_hat) * d[None, :]


def cnn_transformed_rhs(
    wbar: np.ndarray, khat: np.ndarray, s: np.ndarray, v_hat: np.ndarray, d: np.ndarray, n: int, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Right-hand side of Eqs. 15-16 (spec §4.4):

    ``τ dW̄/dt = n (S − A) V̂ᴴ diag(k̂*)``, ``τ dk̂/dt = n diagvec[W̄ᴴ (S − A) V̂ᴴ]``, ``A = n W̄ diag(k̂) V̂ D``.
    Shapes: ``wbar (p, M)``, ``khat (M,)``, ``s (p,)``, ``v_hat (M, p)`` (= ``QV``), ``d (p,)``.
    """
    a = cnn_effective_singular_values(wbar, khat, v_hat, d, n)
    err = np.diag(s) - a  # (p, p)
    ev = err @ v_hat.conj().T  # (p, M)
    dw = n * ev * khat.conj()[None, :] / tau
    dk = n * (wbar.conj() * ev).sum(axis=0) / tau
    return dw, dk


def cnn_balance_invariant(wbar: np.ndarray, khat: np.ndarray) -> np.ndarray:
    """``|k̂_m|² − ‖W̄_{:,m}‖²`` per frequency: constant under the flow (15)-(16) (spec §4.4). Works batched."""
    return np.abs(khat) ** 2 - (np.abs(wbar) ** 2).sum(axis=-2)


def _c2r(z: np.ndarray) -> np.ndarray:
    return np.concatenate([z.real.ravel(), z.imag.ravel()])


def _r2c(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    return (v[:size] + 1j * v[size:]).reshape(shape)


def integrate_cnn_transformed(
    wbar0: np.ndarray,
    khat0: np.ndarray,
    s: np.ndarray,
    v_hat: np.ndarray,
    d: np.ndarray,
    n: int,
    tau: float,
    t_eval: np.ndarray,
    rtol: float = 1e-10,
    atol: float = 1e-13,
) -> dict[str, np.ndarray]:
    """Integrate Eqs. 15-16 (DOP853) from any ``(W̄(0), k̂(0))``; returns ``t``, ``wbar (R, p, M)``,
    ``khat (R, M)`` and ``A (R, p, p)`` (its real part: ``A`` is real for real networks) at ``t_eval``."""
    tau = _positive("tau", tau)
    t_eval = _array("t_eval", t_eval, ndim=1)
    p, m = wbar0.shape
    if khat0.shape != (m,) or v_hat.shape != (m, p) or np.shape(s) != (p,) or np.shape(d) != (p,):
        raise ValueError(
            f"shapes must be wbar0 (p, M), khat0 (M,), v_hat (M, p), s (p,), d (p,); got {wbar0.shape}, "
            f"{khat0.shape}, {v_hat.shape}, {np.shape(s)}, {np.shape(d)}"
        )

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        z = _r2c(y, (p * m + m,))
        dw, dk = cnn_transformed_rhs(z[: p * m].reshape(p, m), z[p * m :], s, v_hat, d, n, tau)
        return _c2r(np.concatenate([dw.ravel(), dk]))

    y0 = _c2r(np.concatenate([np.asarray(wbar0, complex).ravel(), np.asarray(khat0, complex)]))
    sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), y0, method="DOP853", t_eval=t_eval, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"integration of Eqs. 15-16 failed: {sol.message}")
    z = np.stack([_r2c(sol.y[:, i], (p * m + m,)) for i in range(sol.y.shape[1])])
    wbar = z[:, : p * m].reshape(-1, p, m)
    khat = z[:, p * m :]
    a = np.stack([cnn_effective_singular_values(wbar[i], khat[i], v_hat, d, n) for i in range(len(t_eval))])
    # A is real for states of real networks (conjugate-symmetric W̄, k̂, V̂); drop the rounding residue.
    return {"t": t_eval, "wbar": wbar, "khat": khat, "A": a.real}


# ------------------------------------------------------------------------------ §5 FCNN system
def fcnn_transformed_rhs(
    w1bar: np.ndarray, w2bar: np.ndarray, s: np.ndarray, d: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. 19-20: ``τ dW̄1/dt = W̄2ᵀ (S − W̄2 W̄1 D)``, ``τ dW̄2/dt = (S − W̄2 W̄1 D) W̄1ᵀ``.

    ``w1bar (H, p)`` (the columns beyond ``p`` never move since ``d_α = 0`` there), ``w2bar (p, H)``.
    """
    err = np.diag(s) - (w2bar @ w1bar) * d[None, :]
    return w2bar.T @ err / tau, err @ w1bar.T / tau


def integrate_fcnn_transformed(
    w1bar0: np.ndarray,
    w2bar0: np.ndarray,
    s: np.ndarray,
    d: np.ndarray,
    tau: float,
    t_eval: np.ndarray,
    rtol: float = 1e-10,
    atol: float = 1e-13,
) -> dict[str, np.ndarray]:
    """Integrate Eqs. 19-20; returns ``t``, ``A (R, p, p)`` with ``A = W̄2 W̄1 D``."""
    tau = _positive("tau", tau)
    t_eval = _array("t_eval", t_eval, ndim=1)
    h, p = w1bar0.shape

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        g1, g2 = fcnn_transformed_rhs(y[: h * p].reshape(h, p), y[h * p :].reshape(p, h), s, d, tau)
        return np.concatenate([g1.ravel(), g2.ravel()])

    y0 = np.concatenate([np.asarray(w1bar0, float).ravel(), np.asarray(w2bar0, float).ravel()])
    sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), y0, method="DOP853", t_eval=t_eval, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"integration of Eqs. 19-20 failed: {sol.message}")
    w1 = sol.y[: h * p].T.reshape(-1, h, p)
    w2 = sol.y[h * p :].T.reshape(-1, p, h)
    return {"t": t_eval, "A": (w2 @ w1) * d[None, None, :]}


# ------------------------------------------------------------------------------ §4.2 general averaged dynamics
@dataclass(frozen=True)
class AveragedCNNDynamics:
    """The averaged gradient flow of the linear CNN for **any** ``Σ_xx`` (spec §4.2), in Fourier form.

    Model (sum over ``C`` channels, convolution form): ``ŷ = W Σ_c circ(k_c) x_c``. With ``ŵ_i = Q w_i``,
    ``k̂_c = Q k_c`` and ``x̂_c = Q x_c``: ``ŷ_i = Σ_{c,m} β_icm x̂_cm``, ``β_icm = n conj(ŵ_im) k̂_cm``. Then
    ``G = E[e x̂ᵀ] = Σ_yx̂ − β M`` with ``M = E[x̂ x̂ᵀ]`` (complex symmetric) and

        ``τ dŵ_i/dt = n Σ_c k̂_c ⊙ G_ic``,  ``τ dk̂_c/dt = n Σ_i ŵ_i ⊙ conj(G_ic)``

    (the average of the single-sample gradients of spec §4.1). When ``Σ_xx = V D Vᵀ`` this is Eqs. 15-16
    in other coordinates. Build with :meth:`from_moments`; state arrays carry any leading batch shape.
    """

    n: int
    channels: int
    sigma_yxhat: np.ndarray  # (p, C n²)  E[y x̂ᵀ]
    m_hat: np.ndarray  # (C n², C n²)  E[x̂ x̂ᵀ]
    sigma_yx: np.ndarray  # (p, C n²) pixel-space, for A and the loss
    sigma_xx: np.ndarray  # (C n², C n²)
    y_sq: float
    U: np.ndarray
    V: np.ndarray
    tau: float

    @classmethod
    def from_moments(
        cls,
        sigma_yx: np.ndarray,
        sigma_xx: np.ndarray,
        image_shape: tuple[int, int, int],
        y_sq: float,
        U: np.ndarray,
        V: np.ndarray,
        tau: float,
    ) -> AveragedCNNDynamics:
        """``sigma_yx (p, D)``, ``sigma_xx (D, D)`` in pixel space (row-major ``(C, n, n)``), ``y_sq = E‖y‖²``,
        the SVD bases ``U (p, p)``, ``V (D, p)`` (for ``A``) and ``τ``."""
        c, n, _ = image_shape
        d = c * n * n
        sigma_yx = _array("sigma_yx", sigma_yx, ndim=2)
        sigma_xx = _array("sigma_xx", sigma_xx, ndim=2)
        if sigma_yx.shape[1] != d or sigma_xx.shape != (d, d):
            raise ValueError(
                f"sigma_yx must be (p, {d}) and sigma_xx ({d}, {d}), got {sigma_yx.shape}, {sigma_xx.shape}"
            )
        syx = vec2d_dft(sigma_yx.reshape(-1, c, n, n)).reshape(-1, d)
        half = vec2d_dft(sigma_xx.reshape(d, c, n, n)).reshape(d, d)  # Σ Qᵀ  (rows transformed)
        m_hat = vec2d_dft(half.T.reshape(d, c, n, n)).reshape(d, d)  # Q Σ Qᵀ (Q symmetric)
        return cls(
            n, c, syx, m_hat, sigma_yx, sigma_xx, float(y_sq), np.asarray(U), np.asarray(V), _positive("tau", tau)
        )

    def end_to_end_hat(self, w_hat: np.ndarray, k_hat: np.ndarray) -> np.ndarray:
        """``β (..., p, C n²)`` from ``w_hat (..., p, n²)`` and ``k_hat (..., C, n²)``."""
        beta = self.n * w_hat.conj()[..., :, None, :] * k_hat[..., None, :, :]
        return beta.reshape(*beta.shape[:-2], -1)

    def rhs(self, w_hat: np.ndarray, k_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(dŵ/dt, dk̂/dt)`` for ``w_hat (..., p, n²)``, ``k_hat (..., C, n²)``."""
        beta = self.end_to_end_hat(w_hat, k_hat)
        g = (self.sigma_yxhat - beta @ self.m_hat).reshape(*beta.shape[:-1], self.channels, -1)  # (..., p, C, n²)
        return self._flow(g, w_hat, k_hat)

    def rhs_pixel(self, w_hat: np.ndarray, k_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`rhs` with ``G`` formed in pixel space: ``β M̂ = (M_e Σ_xx) Q`` row-wise (``M̂ = Q Σ_xx Q``,
        ``Q`` symmetric; ``M_e = Q β`` real), so ``G = Q(Σ_yx − M_e Σ_xx)`` per row. One real ``(p, D) × (D, D)``
        product instead of a complex one: about 4x fewer flops for large ``D`` (CIFAR: ``D = 3072``)."""
        me = self.end_to_end(w_hat, k_hat)  # (..., p, C n²)
        err = self.sigma_yx - me @ self.sigma_xx
        c, n = self.channels, self.n
        g = vec2d_dft(err.reshape(*err.shape[:-1], c, n, n))  # (..., p, C, n²)
        return self._flow(g, w_hat, k_hat)

    def _flow(self, g: np.ndarray, w_hat: np.ndarray, k_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``τ dŵ_i/dt = n Σ_c k̂_c ⊙ G_ic``, ``τ dk̂_c/dt = n Σ_i ŵ_i ⊙ conj(G_ic)`` (class docstring)."""
        dw = self.n * (k_hat[..., None, :, :] * g).sum(axis=-2) / self.tau
        dk = self.n * (w_hat[..., :, None, :] * g.conj()).sum(axis=-3) / self.tau
        return dw, dk

    def end_to_end(self, w_hat: np.ndarray, k_hat: np.ndarray) -> np.ndarray:
        """Pixel-space map ``W circ(k) (..., p, C n²)``: row ``Q β_ic`` (real up to rounding)."""
        beta = self.end_to_end_hat(w_hat, k_hat)
        c, n = self.channels, self.n
        rows = vec2d_dft(beta.reshape(*beta.shape[:-1], c, n, n))
        return rows.real.reshape(beta.shape)

    def evaluate(self, w_hat: np.ndarray, k_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``A = Uᵀ M_e Σ_xx V (..., p, p)`` and the Keras-MSE loss ``(...)`` of the state."""
        me = self.end_to_end(w_hat, k_hat)
        p = me.shape[-2]
        mx = me @ self.sigma_xx
        a = self.U.T @ mx @ self.V
        loss = (self.y_sq - 2.0 * (me * self.sigma_yx).sum(axis=(-2, -1)) + (mx * me).sum(axis=(-2, -1))) / p
        return a, loss

    def integrate(
        self,
        w_hat0: np.ndarray,
        k_hat0: np.ndarray,
        t_eval: np.ndarray,
        rtol: float = 1e-6,
        atol: float = 1e-10,
        progress: Callable[[float], None] | None = None,
        route: str = "fourier",
    ) -> dict[str, np.ndarray]:
        """Integrate from ``(ŵ(0), k̂(0))`` (any leading batch shape, e.g. trials); returns ``t``,
        ``A (..., R, p, p)``, ``loss (..., R)``, ``khat_abs (..., R, C, n²)`` and
        ``wbar_abs (..., R, p, n²)`` (``|W̄_αm| = |Σ_i U_iα ŵ_im|``, spec Eq. 12).

        The state is integrated in pixel space (real ``w = Q*ŵ``, ``k = Q*k̂``): the derivatives are
        mapped back with the inverse DFT and projected on real values, so rounding can never push the
        spectra off conjugate symmetry (off that subspace the complex flow is not stable).
        ``route``: ``"fourier"`` (:meth:`rhs`) or ``"pixel"`` (:meth:`rhs_pixel`, the same flow, cheaper for
        large ``D``).
        """
        if route not in ("fourier", "pixel"):
            raise ValueError(f"route must be 'fourier' or 'pixel', got {route!r}")
        field_rhs = self.rhs if route == "fourier" else self.rhs_pixel
        t_eval = _array("t_eval", t_eval, ndim=1)
        n = self.n
        w0 = self._pixels(np.asarray(w_hat0, dtype=complex))
        k0 = self._pixels(np.asarray(k_hat0, dtype=complex))
        nw = w0.size

        def split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            w = vec2d_dft(y[:nw].reshape(*w0.shape[:-1], n, n))
            k = vec2d_dft(y[nw:].reshape(*k0.shape[:-1], n, n))
            return w, k

        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            if progress is not None:
                progress(t)
            dw, dk = field_rhs(*split(y))
            return np.concatenate([self._pixels(dw).ravel(), self._pixels(dk).ravel()])

        y0 = np.concatenate([w0.ravel(), k0.ravel()])
        sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), y0, method="RK45", t_eval=t_eval, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"integration of the averaged CNN dynamics failed: {sol.message}")
        a_list, loss_list, k_list, w_list = [], [], [], []
        for i in range(sol.y.shape[1]):
            w, k = split(sol.y[:, i])
            a, loss = self.evaluate(w, k)
            a_list.append(a)
            loss_list.append(loss)
            k_list.append(np.abs(k))
            w_list.append(np.abs(np.einsum("ia,...im->...am", self.U, w)))
        return {
            "t": t_eval,
            "A": np.moveaxis(np.stack(a_list), 0, -3),
            "loss": np.moveaxis(np.stack(loss_list), 0, -1),
            "khat_abs": np.moveaxis(np.stack(k_list), 0, -3),
            "wbar_abs": np.moveaxis(np.stack(w_list), 0, -3),
        }

    def _pixels(self, z_hat: np.ndarray) -> np.ndarray:
        """Real pixel values ``Re(Q* ẑ)`` of spectra ``(..., n²)``."""
        n = self.n
        return vec2d_idft(z_hat, (n, n)).real.reshape(*z_hat.shape[:-1], n * n)


def averaged_fcnn_rhs(
    w1: np.ndarray, w2: np.ndarray, sigma_yx: np.ndarray, sigma_xx: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Averaged FCNN flow for any ``Σ_xx`` (Saxe et al.; spec §5): ``τ Ẇ1 = W2ᵀ (Σ_yx − W2 W1 Σ_xx)``,
    ``τ Ẇ2 = (Σ_yx − W2 W1 Σ_xx) W1ᵀ``; batched over leading axes."""
    err = sigma_yx - w2 @ w1 @ sigma_xx
    return np.swapaxes(w2, -1, -2) @ err / tau, err @ np.swapaxes(w1, -1, -2) / tau


def integrate_averaged_fcnn(
    w1: np.ndarray,
    w2: np.ndarray,
    sigma_yx: np.ndarray,
    sigma_xx: np.ndarray,
    y_sq: float,
    U: np.ndarray,
    V: np.ndarray,
    tau: float,
    t_eval: np.ndarray,
    rtol: float = 1e-6,
    atol: float = 1e-10,
    rank_rtol: float = 1e-10,
) -> dict[str, np.ndarray]:
    """Integrate :func:`averaged_fcnn_rhs` from ``w1 (..., H, D)``, ``w2 (..., p, H)``; returns ``t``,
    ``A (..., R, p, p) = Uᵀ W2 W1 Σ_xx V`` and the Keras-MSE ``loss (..., R)``.

    Exact reduction: with ``Σ_xx = E Λ Eᵀ`` (``E`` the ``r`` eigenvectors above ``rank_rtol``), the part
    of ``W1`` orthogonal to ``E`` never moves (its gradient is zero, and ``Σ_yx`` has rows in ``range(E)``),
    so only ``Z = W1 E (H, r)`` and ``W2`` are integrated: ``τ Ż = W2ᵀ (Σ_yx E − W2 Z Λ)``,
    ``τ Ẇ2 = (Σ_yx E − W2 Z Λ) Zᵀ``. For one image per class ``r ≤ p``.
    """
    tau = _positive("tau", tau)
    t_eval = _array("t_eval", t_eval, ndim=1)
    w1 = np.asarray(w1, dtype=np.float64)
    w2 = np.asarray(w2, dtype=np.float64)
    evals, evecs = np.linalg.eigh(np.asarray(sigma_xx, dtype=np.float64))
    keep = evals > rank_rtol * max(float(evals.max()), 1e-300)
    lam, e = evals[keep], evecs[:, keep]  # (r,), (D, r)
    s_ye = sigma_yx @ e  # (p, r)
    z0 = w1 @ e  # (..., H, r)
    nz = z0.size

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        z = y[:nz].reshape(z0.shape)
        b = y[nz:].reshape(w2.shape)
        err = s_ye - (b @ z) * lam
        return np.concatenate(
            [(np.swapaxes(b, -1, -2) @ err / tau).ravel(), (err @ np.swapaxes(z, -1, -2) / tau).ravel()]
        )

    y0 = np.concatenate([z0.ravel(), w2.ravel()])
    sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), y0, method="RK45", t_eval=t_eval, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"integration of the averaged FCNN dynamics failed: {sol.message}")
    a_list, loss_list = [], []
    p = w2.shape[-2]
    ev = e.T @ V  # (r, p)
    for i in range(sol.y.shape[1]):
        bz = sol.y[nz:, i].reshape(w2.shape) @ sol.y[:nz, i].reshape(z0.shape)  # W2 Z (..., p, r)
        a_list.append(U.T @ (bz * lam) @ ev)
        quad = ((bz * lam) * bz).sum(axis=(-2, -1))
        loss_list.append((y_sq - 2.0 * (bz * s_ye).sum(axis=(-2, -1)) + quad) / p)
    return {"t": t_eval, "A": np.moveaxis(np.stack(a_list), 0, -3), "loss": np.moveaxis(np.stack(loss_list), 0, -1)}


# ------------------------------------------------------------------------------ §7 soft winner-takes-all
def _wta_inputs(r0: np.ndarray, nu: np.ndarray, mode_of: np.ndarray, s: np.ndarray, d: np.ndarray) -> None:
    if r0.shape[-1] != nu.shape[0] or nu.shape != mode_of.shape:
        raise ValueError(
            f"r0 (..., K), nu (K,) and mode_of (K,) must agree, got {r0.shape}, {nu.shape}, {mode_of.shape}"
        )
    if mode_of.min() < 0 or mode_of.max() >= len(s) or len(s) != len(d):
        raise ValueError(f"mode_of must index the {len(s)} modes of s and d")


def wta_effective_singular_values(
    r: np.ndarray, nu: np.ndarray, mode_of: np.ndarray, d: np.ndarray, n: int
) -> np.ndarray:
    """``a_α = n d_α Σ_{m∈M̄_α} ν_mα r_m²`` (Eq. 24) for ``r (..., K)`` over the ``K`` tracked frequencies."""
    contrib = n * d[mode_of] * nu * r**2
    out = np.zeros((*r.shape[:-1], len(d)))
    for alpha in range(len(d)):
        out[..., alpha] = contrib[..., mode_of == alpha].sum(axis=-1)
    return out


def wta_rhs(
    r: np.ndarray, nu: np.ndarray, mode_of: np.ndarray, s: np.ndarray, d: np.ndarray, n: int, tau: float
) -> np.ndarray:
    """Eq. 23: ``τ ṙ_m = n s_α ν_m r_m − n² d_α ν_m² r_m³ − n² d_α ν_m r_m Σ_{m'≠m} ν_m' r_m'²``
    (= ``n ν_m r_m (s_α − a_α)``, Eq. 24), ``m ∈ M̄_α``."""
    a = wta_effective_singular_values(r, nu, mode_of, d, n)
    dal = d[mode_of]
    self_term = n**2 * dal * nu**2 * r**3
    lateral = n**2 * dal * nu * r * (a[..., mode_of] / (n * dal) - nu * r**2)
    return (n * s[mode_of] * nu * r - self_term - lateral) / tau


def wta_discrete(
    r0: np.ndarray,
    nu: np.ndarray,
    mode_of: np.ndarray,
    s: np.ndarray,
    d: np.ndarray,
    n: int,
    tau: float,
    steps: int,
    record_every: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact gradient-descent counterpart of Eq. 24: ``r_m ← r_m (1 + n ν_m (s_α − a_α)/τ)`` per step.

    From aligned-balanced init, full-batch GD keeps alignment and balance exactly and every ``|k̂_m|``
    follows this map (spec §7.2, §11 item 16). Returns ``(t, r (len(t), ..., K))``.
    """
    _wta_inputs(np.asarray(r0), nu, mode_of, s, d)
    r = np.array(r0, dtype=np.float64)
    ts, out = [0], [r.copy()]
    for step in range(1, steps + 1):
        a = wta_effective_singular_values(r, nu, mode_of, d, n)
        r = r * (1.0 + n * nu * (s[mode_of] - a[..., mode_of]) / tau)
        if step % record_every == 0 or step == steps:
            ts.append(step)
            out.append(r.copy())
    return np.asarray(ts), np.stack(out)


def wta_closed_form(
    t: np.ndarray, r0: np.ndarray, nu: np.ndarray, mode_of: np.ndarray, s: np.ndarray, d: np.ndarray, n: int, tau: float
) -> dict[str, np.ndarray]:
    """Closed form of Eqs. 23-24 (spec §7.2): ``r_m(t) = r_m(0) e^{n ν_m Θ_α(t)}`` with the mode clock
    ``Θ_α(t) = ∫_0^t (s_α − a_α)/τ``, where ``a_α(Θ) = n d_α Σ_m ν_m r_m(0)² e^{2 n ν_m Θ}`` and
    ``t(Θ) = τ ∫_0^Θ dθ / (s_α − a_α(θ))`` is inverted numerically (monotone, one scalar per mode).
    Returns ``theta (p, R)`` and ``r (R, K)`` for ``r0 (K,)``."""
    t = _array("t", t, ndim=1)
    r0 = _array("r0", r0, ndim=1)
    _wta_inputs(r0, nu, mode_of, s, d)
    theta = np.zeros((len(s), len(t)))
    for alpha in range(len(s)):
        sel = mode_of == alpha
        if not sel.any():
            continue
        w = n * d[alpha] * nu[sel] * r0[sel] ** 2
        g = 2.0 * n * nu[sel]

        def clock(_t: float, th: np.ndarray, w: np.ndarray = w, g: np.ndarray = g, sa: float = s[alpha]) -> np.ndarray:
            return np.array([(sa - float((w * np.exp(g * th[0])).sum())) / tau])

        sol = solve_ivp(clock, (0.0, float(t[-1])), [0.0], method="DOP853", t_eval=t, rtol=1e-12, atol=1e-14)
        if not sol.success:
            raise RuntimeError(f"mode clock integration failed: {sol.message}")
        theta[alpha] = sol.y[0]
    r = r0[None, :] * np.exp(n * nu[None, :] * theta[mode_of].T)
    return {"theta": theta, "r": r}


def wta_winners(v_hat_abs: np.ndarray, supports: np.ndarray | None = None, rtol: float = 1e-9) -> np.ndarray:
    """Frequencies that win the competition (spec §7.2, §8.2): ``argmax_m ν_mα`` per mode, ties within
    ``rtol`` included (always both ``m`` and ``m̄``). ``v_hat_abs (p, n²)`` -> boolean ``(p, n²)``."""
    mag = np.abs(np.asarray(v_hat_abs, dtype=np.float64))
    if supports is not None:
        mag = mag * supports
    top = mag.max(axis=1, keepdims=True)
    return (mag >= top * (1.0 - rtol)) & (top > 0)


# ------------------------------------------------------------------------------ §8.2 minimal norm
@dataclass(frozen=True)
class MinimalNormSolution:
    """Global minimum of ``‖W‖_F² + ‖k‖²`` subject to ``A = S`` for disjoint frequency sets (spec §8.2).

    ``khat_abs (n²,)``: ``|k̂_m|`` (spread equally over the tied maximisers of ``ν_mα``);
    ``wbar_abs (p, n²)``: ``|W̄_αm| = |k̂_m|`` on those frequencies (balance); ``norm``: the minimum,
    ``2 Σ_α s_α / (n d_α ν_α^max)``.
    """

    khat_abs: np.ndarray
    wbar_abs: np.ndarray
    norm: float


def minimal_norm_solution(
    s: np.ndarray, v_hat_abs: np.ndarray, d: np.ndarray, n: int, rtol: float = 1e-9
) -> MinimalNormSolution:
    """See :class:`MinimalNormSolution`; ``v_hat_abs (p, n²)`` with disjoint supports, ``d (p,)``."""
    s = _array("s", s, ndim=1)
    d = _array("d", d, ndim=1)
    mag = _array("v_hat_abs", v_hat_abs, ndim=2)
    win = wta_winners(mag, rtol=rtol)
    if (win.sum(axis=0) > 1).any():
        raise ValueError("minimal_norm_solution needs modes whose winning frequencies are disjoint")
    nu_max = mag.max(axis=1)
    khat_sq = np.zeros(mag.shape[1])
    wbar = np.zeros_like(mag)
    for alpha in range(len(s)):
        if s[alpha] <= 0:
            continue
        total = s[alpha] / (n * d[alpha] * nu_max[alpha])  # Σ_{winners} |k̂_m|²
        share = total / win[alpha].sum()
        khat_sq[win[alpha]] = share
        wbar[alpha, win[alpha]] = np.sqrt(share)
    keep = s > 0
    norm = float(2.0 * np.sum(s[keep] / (n * d[keep] * nu_max[keep])))
    return MinimalNormSolution(khat_abs=np.sqrt(khat_sq), wbar_abs=wbar, norm=norm)


def aligned_balanced_a0(khat_abs: np.ndarray, v_hat_abs: np.ndarray, d: np.ndarray, n: int) -> np.ndarray:
    """Predicted ``a_α(0) = n d_α Σ_{m∈M̄_α} ν_mα |k̂_m|²`` of the aligned-balanced init (spec §6.2, S.142-S.145).

    ``khat_abs (..., n²)``, ``v_hat_abs (p, n²)`` (zero off the supports), ``d (p,)`` -> ``(..., p)``."""
    return n * d * np.einsum("am,...m->...a", np.asarray(v_hat_abs), np.asarray(khat_abs) ** 2)


# ------------------------------------------------------------------------------ discovery times, predictions
def half_times(
    t: np.ndarray, a: np.ndarray, s: np.ndarray, interpolate: bool = False, never: float = np.inf
) -> np.ndarray:
    """Discovery time of every mode: the first ``t`` with ``a_α(t) ≥ s_α / 2`` (spec §6.3, §9 I.3, App. K).

    ``a``: ``(..., T, p)`` effective singular values (the diagonal ``A_αα`` of ``A = Uᵀ Σ_ŷx V``, spec Eq. 5) at
    the recorded times ``t (T,)``; ``s``: ``(p,)``. Returns ``(..., p)``. ``interpolate=False``: the first
    recorded time; ``interpolate=True``: the crossing of ``s_α / 2`` interpolated linearly between the two
    records around it (``t[0]`` if already reached at the start). ``never``: the value where ``s_α / 2`` is
    never reached (``inf``; ``nan`` for a mean curve).
    """
    t = np.asarray(t)
    a = np.asarray(a)
    s = np.asarray(s)
    if a.ndim < 2 or a.shape[-2] != t.shape[0] or a.shape[-1] != s.shape[0]:
        raise ValueError(f"a must have shape (..., T={t.shape[0]}, p={s.shape[0]}), got {a.shape}")
    out = np.full((*a.shape[:-2], a.shape[-1]), never, dtype=np.float64)
    for lead in np.ndindex(*a.shape[:-2]):
        for alpha in range(a.shape[-1]):
            curve = a[lead][:, alpha]
            hit = np.flatnonzero(curve >= s[alpha] / 2)
            if not len(hit):
                continue
            i = int(hit[0])
            where = (*lead, alpha)
            if interpolate and i > 0:
                out[where] = np.interp(s[alpha] / 2, [curve[i - 1], curve[i]], [t[i - 1], t[i]])
            else:
                out[where] = t[i]
    return out


def mode_rate_factors(v_images: np.ndarray) -> np.ndarray:
    """``ν_mα = ‖v̂_{:,m,α}‖`` over colour channels for ``v_images (p, C, n, n)`` -> ``(p, n²)`` (spec §6.1, §7.2).

    With summed channels (one kernel per channel, one hidden map) the aligned kernel at ``m`` points along
    the channel vector ``v̂_{:,m,α}``, so its rate is that vector's norm; for one channel ``ν_mα = |v̂_mα|``."""
    v = _array("v_images", v_images, ndim=4)
    return np.sqrt((np.abs(vec2d_dft(v)) ** 2).sum(axis=1))


def mode_frequency_weights(wbar_abs: np.ndarray, khat_abs: np.ndarray, n: int) -> np.ndarray:
    """How much frequency ``m`` carries mode ``α`` in the end-to-end map: ``n |W̄_αm| ‖k̂_{:,m}‖``, the norm
    over channels of row ``α`` of ``Uᵀ W circ(k)`` in Fourier form (spec Eqs. 12-14).

    ``wbar_abs (..., p, n²)``, ``khat_abs (..., C, n²)`` -> ``(..., p, n²)``."""
    knorm = np.sqrt((np.asarray(khat_abs, dtype=np.float64) ** 2).sum(axis=-2))
    return float(n) * np.asarray(wbar_abs, dtype=np.float64) * knorm[..., None, :]


def mode_winner_index(weights: np.ndarray, n: int) -> np.ndarray:
    """The winning frequency per mode: ``argmax_m`` of ``weights (..., p, n²)``, reported as the lower index of
    its conjugate pair ``{m, m̄}`` (equal weights for real networks), so that two routes can be compared
    with ``==`` (spec §7.2: the WTA winner of ``ν_mα`` or of a trained kernel). Returns int ``(..., p)``."""
    idx = np.argmax(np.asarray(weights), axis=-1)
    return np.minimum(idx, conjugate_index(n)[idx])


@dataclass(frozen=True)
class DynamicsPrediction:
    """What :func:`predict_dynamics` returns (spec §4.2, §5, §7.2).

    ``t (R,)``; ``s (r,)``: ``diag(Uᵀ Σ_yx V)``; ``A (..., R, r, r)``; ``loss (..., R)`` (Keras MSE);
    ``half_times (..., r)``: first ``t`` with ``a_α ≥ s_α/2`` (:func:`half_times`, ``inf`` if never).
    CNN only (``None`` for the FCNN): ``rate_factors (r, n²)`` (:func:`mode_rate_factors`), ``wta_winner
    (r,)``: the winner ``argmax_m ν_mα`` of the reduced WTA system (Eqs. 23-24, exact when ``Σ_xx = V D Vᵀ``);
    ``flow_winner (..., r)``: the winner of the integrated flow at ``t[-1]`` (:func:`mode_winner_index` of
    :func:`mode_frequency_weights`); ``khat_abs (..., R, C, n²)`` and ``wbar_abs (..., R, r, n²)``.
    """

    net: str
    t: np.ndarray
    s: np.ndarray
    A: np.ndarray
    loss: np.ndarray
    half_times: np.ndarray
    rate_factors: np.ndarray | None = None
    wta_winner: np.ndarray | None = None
    flow_winner: np.ndarray | None = None
    khat_abs: np.ndarray | None = None
    wbar_abs: np.ndarray | None = None


def predict_dynamics(
    sigma_yx: np.ndarray,
    sigma_xx: np.ndarray,
    image_shape: tuple[int, int, int],
    U: np.ndarray,
    V: np.ndarray,
    tau: float,
    t_eval: np.ndarray,
    init: tuple[np.ndarray, np.ndarray],
    net: str = "cnn",
    y_sq: float = 1.0,
    rtol: float = 1e-6,
    atol: float = 1e-10,
) -> DynamicsPrediction:
    """The averaged gradient flow of either network on any dataset's moments, with its discovery times and
    (CNN) winning frequencies (spec §4.2 for the CNN, §5 for the FCNN; ``Σ_xx`` need not be diagonal in ``V``).

    ``sigma_yx (p, D)``, ``sigma_xx (D, D)`` pixel-space moments of the training set (row-major
    ``image_shape = (C, n, n)``, e.g. mean-subtracted CIFAR-4); ``U (p, r)``, ``V (D, r)``: the ``r`` modes
    to report (e.g. the non-zero ones); ``τ`` from :func:`tau_from_learning_rate`; ``init``: the models' own
    layout with any leading batch shape (e.g. trials): ``net="cnn"``: ``(kernel (..., C, n, n)`` in
    correlation form, ``weight (..., p, n²))`` (channels summed into one hidden map); ``net="fcnn"``:
    ``(w1 (..., H, D), w2 (..., p, H))``.

    Cost: the CNN is integrated exactly through :meth:`AveragedCNNDynamics.integrate` with the pixel route
    (state ``(p + C) n²`` per init, one ``(p, D) × (D, D)`` product per evaluation). The FCNN is integrated
    exactly through :func:`integrate_averaged_fcnn` (state ``H·rank(Σ_xx)`` per init, all inits at once:
    about ``8·7·H·rank`` bytes each for the solver's stages), no end-to-end approximation.
    """
    c, n, _ = image_shape
    d = c * n * n
    u = _array("U", U, ndim=2)
    v = _array("V", V, ndim=2)
    sigma_yx = _array("sigma_yx", sigma_yx, ndim=2)
    if v.shape[0] != d or u.shape[1] != v.shape[1] or u.shape[0] != sigma_yx.shape[0]:
        raise ValueError(
            f"U must be (p, r) and V ({d}, r) with p = {sigma_yx.shape[0]} rows of sigma_yx, got {u.shape}, {v.shape}"
        )
    s = np.diagonal(u.T @ sigma_yx @ v).copy()
    if np.any(s <= 0):
        raise ValueError(f"U and V must carry modes with diag(Uᵀ Σ_yx V) > 0, got {s.tolist()}")
    t_eval = _array("t_eval", t_eval, ndim=1)
    first, second = (np.asarray(a, dtype=np.float64) for a in init)
    if net == "cnn":
        if first.shape[-3:] != (c, n, n) or second.shape[-1] != n * n or second.shape[:-2] != first.shape[:-3]:
            raise ValueError(
                f"init for net='cnn' must be (kernel (..., {c}, {n}, {n}), weight (..., p, {n * n})) with the same "
                f"leading shape, got {first.shape}, {second.shape}"
            )
        dyn = AveragedCNNDynamics.from_moments(sigma_yx, sigma_xx, image_shape, y_sq, u, v, tau)
        w_hat = vec2d_dft(second.reshape(*second.shape[:-1], n, n))
        k_hat = np.conj(vec2d_dft(first))  # convolution form of the correlation kernel (spec §3.2)
        sol = dyn.integrate(w_hat, k_hat, t_eval, rtol=rtol, atol=atol, route="pixel")
        nu = mode_rate_factors(v.T.reshape(-1, c, n, n))
        final = mode_frequency_weights(sol["wbar_abs"][..., -1, :, :], sol["khat_abs"][..., -1, :, :], n)
        return DynamicsPrediction(
            net, t_eval, s, sol["A"], sol["loss"], half_times(t_eval, np.diagonal(sol["A"], axis1=-2, axis2=-1), s),
            rate_factors=nu, wta_winner=mode_winner_index(nu, n), flow_winner=mode_winner_index(final, n),
            khat_abs=sol["khat_abs"], wbar_abs=sol["wbar_abs"],
        )  # fmt: skip
    if net != "fcnn":
        raise ValueError(f"net must be 'cnn' or 'fcnn', got {net!r}")
    if first.shape[-1] != d or second.shape[-1] != first.shape[-2] or second.shape[:-2] != first.shape[:-2]:
        raise ValueError(
            f"init for net='fcnn' must be (w1 (..., H, {d}), w2 (..., p, H)) with the same leading shape, "
            f"got {first.shape}, {second.shape}"
        )
    fsol = integrate_averaged_fcnn(first, second, sigma_yx, sigma_xx, y_sq, u, v, tau, t_eval, rtol=rtol, atol=atol)
    half = half_times(t_eval, np.diagonal(fsol["A"], axis1=-2, axis2=-1), s)
    return DynamicsPrediction(net, t_eval, s, fsol["A"], fsol["loss"], half)
