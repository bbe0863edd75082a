"""Dense, loop-based references shared by several test modules (independent of freqlens's FFT routes)."""

from __future__ import annotations

import numpy as np


def circular_transposed_reference(x: np.ndarray, w: np.ndarray, r: int, p: int) -> np.ndarray:
    """Circular transposed conv of ``x (cin, n, m)`` with ``w (cin, cout, k, k)``, stride ``r``, padding ``p``:
    y(o) = Σ_i Σ_t x(i) W(t) [o ≡ r i + t − p (mod r n)], by explicit loops (independent route)."""
    cin, n, m = x.shape
    _, cout, k, _ = w.shape
    y = np.zeros((cout, r * n, r * m))
    for c in range(cin):
        for i in range(n):
            for j in range(m):
                for a in range(k):
                    for b in range(k):
                        y[:, (r * i + a - p) % (r * n), (r * j + b - p) % (r * m)] += x[c, i, j] * w[c, :, a, b]
    return y
