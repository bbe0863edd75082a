"""spectral._blas: the GIL-free rank-k Gram against NumPy's dense product (float64, complex128)."""

from __future__ import annotations

import numpy as np
import pytest

from freqlens.spectral import _blas


def _dense_gram(block: np.ndarray) -> np.ndarray:
    return block @ block.conj().T if block.shape[0] <= block.shape[1] else block.conj().T @ block


@pytest.mark.parametrize("complex_blocks", [False, True])
@pytest.mark.parametrize("shape", [(4, 7), (7, 4), (5, 5), (1, 3)])
def test_gram_upper_is_the_small_gram_up_to_conjugation(shape, complex_blocks):
    rng = np.random.default_rng(3)
    blocks = rng.standard_normal((6, *shape))
    if complex_blocks:
        blocks = blocks + 1j * rng.standard_normal((6, *shape))
    grams = _blas.gram_upper(blocks)
    upper = np.triu_indices(min(shape))
    for block, gram in zip(blocks, grams):
        want = _dense_gram(block)
        got = gram[upper]
        # the direct CBLAS route gives the Gram, SciPy's wrapper its conjugate: both have its eigenvalues
        assert np.allclose(got, want[upper], rtol=0, atol=1e-13) or np.allclose(got, want.conj()[upper], atol=1e-13)
        assert np.allclose(np.linalg.eigvalsh(gram, UPLO="U"), np.linalg.eigvalsh(want), rtol=0, atol=1e-12)


def test_the_direct_cblas_route_is_found_and_the_fallback_agrees(monkeypatch):
    assert _blas._rank_k_direct("z") is not None, "no GIL-free zherk: worker threads would form Grams in turn"
    assert _blas._rank_k_direct("d") is not None, "no GIL-free dsyrk: worker threads would form Grams in turn"
    rng = np.random.default_rng(4)
    blocks = rng.standard_normal((3, 5, 9)) + 1j * rng.standard_normal((3, 5, 9))
    direct = np.linalg.eigvalsh(_blas.gram_upper(blocks), UPLO="U")
    monkeypatch.setitem(_blas._RANK_K, "z", None)
    fallback = np.linalg.eigvalsh(_blas.gram_upper(blocks), UPLO="U")
    assert np.allclose(direct, fallback, rtol=0, atol=1e-12)


def test_gram_upper_rejects_a_non_contiguous_batch():
    with pytest.raises(ValueError, match="C-contiguous"):
        _blas.gram_upper(np.ones((2, 4, 6)).transpose(0, 2, 1))


@pytest.mark.parametrize("rows", [2, 9])  # fewer and more rows than columns: always the c x c column Gram
def test_add_column_grams_accumulates_the_column_gram_and_the_fallback_agrees(rows, monkeypatch):
    rng = np.random.default_rng(5)
    blocks = rng.standard_normal((3, rows, 5)) + 1j * rng.standard_normal((3, rows, 5))
    start = rng.standard_normal((3, 5, 5)) + 0j
    start = start + start.transpose(0, 2, 1)  # a Hermitian running sum
    want = start + blocks.conj().transpose(0, 2, 1) @ blocks
    upper = np.triu_indices(5)
    for direct in (True, False):
        if not direct:
            monkeypatch.setitem(_blas._RANK_K, "z", None)
        grams = start.copy()
        _blas.add_column_grams(blocks, grams)
        assert all(np.allclose(g[upper], x[upper], rtol=0, atol=1e-13) for g, x in zip(grams, want))


def test_add_column_grams_rejects_mismatched_arrays():
    blocks = np.zeros((2, 3, 4), dtype=np.complex128)
    with pytest.raises(ValueError, match="grams must have shape"):
        _blas.add_column_grams(blocks, np.zeros((2, 3, 3), dtype=np.complex128))
    with pytest.raises(ValueError, match="complex128"):
        _blas.add_column_grams(blocks.real.copy(), np.zeros((2, 4, 4)))
