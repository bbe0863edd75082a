"""The bottleneck-paper metrics (freqlens.analysis.bottleneck_metrics) on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freqlens.analysis.bottleneck_metrics import (
    centroid_shift,
    circular_centroid,
    claimed_directions,
    expected_kept_frequencies,
    match_kept_frequencies,
    r1_jacobian_bound,
)


def test_r1_jacobian_bound_sums_the_top_logs() -> None:
    sv = np.array([1e-9, np.e, np.e**2])
    assert r1_jacobian_bound(sv, 2) == pytest.approx(2 * (2 + 1), rel=1e-14)
    assert r1_jacobian_bound(np.array([1.0, 0.0]), 2) == pytest.approx(2 * np.log(1e-300))  # clipped, finite


def test_expected_kept_set_and_its_directions() -> None:
    assert expected_kept_frequencies(1, (5, 5)) == [[0, 0], [0, 1], [1, 0], [5, 5]]
    fig3 = expected_kept_frequencies(2, (5, 5))
    assert len(fig3) == 1 + 6 + 1 and all([-k, -l] not in fig3 for k, l in fig3 if (k, l) != (0, 0))
    assert claimed_directions(fig3, 16) == 15  # (0,0) + 6 pairs + the (5,5) pair, spec §4.3
    assert claimed_directions([[0, 0], [2, 0], [2, 2], [1, 0]], 4) == 1 + 1 + 1 + 2  # 2ω ≡ 0 mod 4: self-conjugate


def test_match_kept_frequencies() -> None:
    found = [{"omega": [0, 0]}, {"omega": [1, 1]}]
    out = match_kept_frequencies(found, [[0, 0], [0, 1]])
    assert out == {"expected_found": [[0, 0]], "expected_missing": [[0, 1]], "unexpected": [[1, 1]]}


@settings(max_examples=50, deadline=None)
@given(r=st.integers(0, 8), c=st.integers(0, 8), dr=st.integers(-3, 3), dc=st.integers(-3, 3))
def test_centroid_of_one_pixel_and_its_shift(r: int, c: int, dr: int, dc: int) -> None:
    n = 9
    img = np.zeros((1, n, n))
    img[0, r, c] = 2.0
    img[0, (r + 4) % n, (c + 4) % n] = -5.0  # negative values carry no mass
    wrap = lambda v: (v + n / 2) % n - n / 2  # noqa: E731
    assert circular_centroid(img)[0] == pytest.approx([wrap(r), wrap(c)], abs=1e-9)
    moved = np.roll(img, (dr, dc), axis=(-2, -1))
    assert centroid_shift(img, moved) == pytest.approx([dr, dc], abs=1e-3)
