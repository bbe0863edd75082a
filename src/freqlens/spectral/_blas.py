"""NumPy/SciPy's OpenBLAS, reached directly (plumbing of :mod:`freqlens.spectral.weights`).

Two things NumPy does not expose: the library's thread count (held during the decompositions, see
``weights._lapack_threads``) and a rank-k update ``herk``/``syrk`` that releases the GIL. SciPy's f2py wrapper
``scipy.linalg.blas.zherk`` holds the GIL for the whole call, so Grams formed on worker threads would run one
at a time; the same CBLAS routine called through :mod:`ctypes` (which releases the GIL around foreign calls)
runs in parallel. Both are found by scanning the libraries loaded in this process (``/proc/self/maps``,
Linux); anything not found falls back to SciPy's wrapper, and the direct route is checked against it once.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np

ThreadControl = tuple[Callable[[], int], Callable[[int], None]]

_CBLAS_ROW_MAJOR, _CBLAS_UPPER = 101, 121
_CBLAS_NO_TRANS, _CBLAS_TRANS, _CBLAS_CONJ_TRANS = 111, 112, 113

_LIBRARIES: list[ctypes.CDLL] | None = None
_CONTROLS: list[ThreadControl] | None = None
_RANK_K: dict[str, Callable[..., None] | None] = {}


def openblas_libraries() -> list[ctypes.CDLL]:
    """Every OpenBLAS loaded in this process (SciPy's BLAS module is imported first so that its copy is)."""
    global _LIBRARIES
    if _LIBRARIES is None:
        import scipy.linalg.blas  # noqa: F401  (loads SciPy's own OpenBLAS before the scan)

        try:
            with open("/proc/self/maps") as maps:
                paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
        except OSError:
            paths = []
        found = []
        for path in paths:
            try:
                found.append(ctypes.CDLL(path))
            except OSError:
                continue
        _LIBRARIES = found
    return _LIBRARIES


def openblas_thread_controls() -> list[ThreadControl]:
    """``(get, set)`` thread-count functions of every OpenBLAS loaded in this process (Linux; else none)."""
    global _CONTROLS
    if _CONTROLS is None:
        _CONTROLS = [c for c in map(_thread_functions, openblas_libraries()) if c is not None]
    return _CONTROLS


def _thread_functions(lib: ctypes.CDLL) -> ThreadControl | None:
    """``(get, set)`` of one OpenBLAS build: NumPy's wheels prefix the symbols with ``scipy_``."""
    for prefix in ("scipy_openblas_", "openblas_"):
        for suffix in ("64_", ""):
            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                setter = put

                def set_threads(n: int, setter: Any = setter) -> None:
                    setter(ctypes.c_int(n))

                return (lambda get=get: int(get())), set_threads
    return None


def _cblas_rank_k(kind: str) -> Callable[..., None] | None:
    """CBLAS ``zherk`` (``kind="z"``) or ``dsyrk`` (``"d"``) of a loaded OpenBLAS, or None.

    Only the symbol names of the scientific-Python wheels are accepted: ``scipy_cblas_?herk64_`` (ILP64,
    NumPy) and ``scipy_cblas_?herk`` (LP64, SciPy). Integers are passed as 64-bit values: on x86-64 and
    AArch64 an LP64 callee reads their low 32 bits from the same register or 8-byte stack slot.
    """
    name = "zherk" if kind == "z" else "dsyrk"
    for lib in openblas_libraries():
        for symbol in (f"scipy_cblas_{name}64_", f"scipy_cblas_{name}"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                i64, f64, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
                fn.argtypes = [i64, i64, i64, i64, i64, f64, ptr, i64, f64, ptr, i64]
                fn.restype = None
                return fn
    return None


def _scipy_rank_k(block: np.ndarray) -> np.ndarray:
    """The small Gram of one C-ordered block by SciPy's wrapper (holds the GIL): upper triangle valid.

    Read as a Fortran array the block is ``X = Bᵀ``; ``Xᴴ X = conj(B Bᴴ)`` and ``X Xᴴ = conj(Bᴴ B)``: the
    conjugate Gram, with the same eigenvalues (and its upper triangle is that of the Gram's conjugate).
    """
    from scipy.linalg import blas

    rows, cols = block.shape
    complex_block = np.iscomplexobj(block)
    rank_k = blas.zherk if complex_block else blas.dsyrk
    trans = (2 if complex_block else 1) if rows <= cols else 0
    return np.asarray(rank_k(1.0, block.T, trans=trans))


def _rank_k_direct(kind: str) -> Callable[..., None] | None:
    """The CBLAS route, checked once against SciPy's wrapper on a small block; None if absent or different."""
    if kind not in _RANK_K:
        fn = _cblas_rank_k(kind)
        if fn is not None:
            rng = np.random.default_rng(0)
            for shape in ((3, 5), (5, 3)):
                block = rng.standard_normal(shape)
                if kind == "z":
                    block = block + 1j * rng.standard_normal(shape)
                small = min(shape)
                gram = np.zeros((1, small, small), dtype=block.dtype)
                _call(fn, block[None], gram)
                want = np.linalg.eigvalsh(_scipy_rank_k(block), UPLO="U")
                if not np.allclose(np.linalg.eigvalsh(gram[0], UPLO="U"), want, rtol=1e-12, atol=1e-12):
                    fn = None
                    break
        _RANK_K[kind] = fn
    return _RANK_K[kind]


def _call(fn: Callable[..., None], blocks: np.ndarray, grams: np.ndarray) -> None:
    rows, cols = blocks.shape[-2:]
    complex_blocks = np.iscomplexobj(blocks)
    if rows <= cols:  # row-major B (rows x cols): C = B Bᴴ, n = rows, k = cols
        trans, n, k = _CBLAS_NO_TRANS, rows, cols
    else:  # C = Bᴴ B (Bᵀ B for real), n = cols, k = rows
        trans, n, k = (_CBLAS_CONJ_TRANS if complex_blocks else _CBLAS_TRANS), cols, rows
    stride_in, stride_out = blocks.strides[0], grams.strides[0]
    base_in, base_out = blocks.ctypes.data, grams.ctypes.data
    for i in range(blocks.shape[0]):
        fn(
            _CBLAS_ROW_MAJOR,
            _CBLAS_UPPER,
            trans,
            n,
            k,
            1.0,
            base_in + i * stride_in,
            cols,
            0.0,
            base_out + i * stride_out,
            n,
        )


def gram_upper(blocks: np.ndarray) -> np.ndarray:
    """The smaller Gram of each block of a C-contiguous batch ``(B, m, k)``, float64 or complex128:
    ``B Bᴴ`` (``m ≤ k``) or ``Bᴴ B``, up to conjugation; only the upper triangle (row-major) is set, which is
    what ``np.linalg.eigvalsh(..., UPLO="U")`` reads. Half the flops of a GEMM; GIL released when the direct
    CBLAS route is available (see the module docstring)."""
    if not blocks.flags.c_contiguous or blocks.ndim != 3:
        raise ValueError(f"blocks must be a C-contiguous (B, m, k) array, got shape {blocks.shape}")
    small = min(blocks.shape[1:])
    grams = np.zeros((blocks.shape[0], small, small), dtype=blocks.dtype)
    fn = _rank_k_direct("z" if np.iscomplexobj(blocks) else "d")
    if fn is not None:
        _call(fn, blocks, grams)
    else:
        for i in range(blocks.shape[0]):
            grams[i] = _scipy_rank_k(blocks[i])
    return grams
