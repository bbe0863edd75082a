"""NumPy/SciPy's OpenBLAS, reached directly, and the CPU thread policy of the spectra (plumbing of
:mod:`freqlens.spectral.weights` and :mod:`freqlens.spectral.activations`).

Two things NumPy does not expose: the library's thread count (held during the decompositions, see
:func:`lapack_threads`) and a rank-k update ``herk``/``syrk`` that releases the GIL. SciPy's f2py wrapper
``scipy.linalg.blas.zherk`` holds the GIL for the whole call, so Grams formed on worker threads would run one
at a time; the same CBLAS routine called through :mod:`ctypes` (which releases the GIL around foreign calls)
runs in parallel. Both are found by scanning the libraries loaded in this process (``/proc/self/maps``,
Linux); anything not found falls back to SciPy's wrapper, and the direct route is checked against it once.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

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


def _rank_k_each(
    fn: Callable[..., None], blocks: np.ndarray, grams: np.ndarray, trans: int, n: int, k: int, beta: float
) -> None:
    """``grams[i] = op(B_i) op(B_i)ᴴ + beta · grams[i]`` (upper triangle, ``n×n``; ``op`` per ``trans``, inner
    size ``k``) for the row-major blocks ``B_i``: one GIL-free CBLAS call per block."""
    lda = blocks.shape[-1]
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
            lda,
            beta,
            base_out + i * stride_out,
            n,
        )


def _call(fn: Callable[..., None], blocks: np.ndarray, grams: np.ndarray) -> None:
    """The smaller Gram of each row-major block into ``grams`` (overwritten)."""
    rows, cols = blocks.shape[-2:]
    if rows <= cols:  # C = B Bᴴ, n = rows, k = cols
        _rank_k_each(fn, blocks, grams, _CBLAS_NO_TRANS, rows, cols, 0.0)
    else:  # C = Bᴴ B (Bᵀ B for real), n = cols, k = rows
        trans = _CBLAS_CONJ_TRANS if np.iscomplexobj(blocks) else _CBLAS_TRANS
        _rank_k_each(fn, blocks, grams, trans, cols, rows, 0.0)


def rank_k_is_direct() -> bool:
    """Whether the GIL-free CBLAS ``zherk`` was found (and agrees with SciPy's wrapper)."""
    return _rank_k_direct("z") is not None


def add_column_grams(blocks: np.ndarray, grams: np.ndarray) -> None:
    """``grams[f] += blocks[f]ᴴ blocks[f]`` in place, upper triangle (row-major), for C-contiguous complex128
    ``blocks (F, N, c)`` and ``grams (F, c, c)``: the ``c×c`` Gram of the columns whatever ``N`` is. One
    ``zherk`` per ``f`` (half a GEMM, GIL released) when the direct route is available, else NumPy."""
    if blocks.dtype != np.complex128 or grams.dtype != np.complex128:
        raise ValueError(f"blocks and grams must be complex128, got {blocks.dtype} and {grams.dtype}")
    if blocks.ndim != 3 or not blocks.flags.c_contiguous or not grams.flags.c_contiguous:
        raise ValueError("blocks (F, N, c) and grams (F, c, c) must be C-contiguous")
    f, n, c = blocks.shape
    if grams.shape != (f, c, c):
        raise ValueError(f"grams must have shape {(f, c, c)}, got {grams.shape}")
    fn = _rank_k_direct("z")
    if fn is None:
        grams += blocks.conj().transpose(0, 2, 1) @ blocks
        return
    _rank_k_each(fn, blocks, grams, _CBLAS_CONJ_TRANS, c, n, 1.0)


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


# ------------------------------------------------------------------ thread policy of the CPU decompositions
def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def lapack_threads(device: torch.device) -> Iterator[int]:
    """Thread policy of the decompositions (plumbing); yields the number of worker threads.

    On CPU: ``workers = min(torch.get_num_threads(), CPUs this process may run on)`` (a caller's
    ``torch.set_num_threads`` is respected, never raised). For the duration, torch and NumPy's OpenBLAS are
    held to one thread each and the chunks of blocks are split across ``workers`` Python threads (NumPy's
    ``gesdd``/``eigvalsh`` and torch release the GIL), so at most ``workers`` threads compute, and every block
    is decomposed by the same single-threaded calls whatever ``workers`` is: results are bitwise independent of
    the thread count. Measured: threaded OpenBLAS inside one small SVD is up to 3.4x *slower* than one thread
    on 2 cores; one block per thread scales. Other devices: one worker, nothing changed.
    """
    if device.type != "cpu":
        yield 1
        return
    libs = openblas_thread_controls()
    torch_before = torch.get_num_threads()
    workers = max(1, min(torch_before, _usable_cpus()))
    before = [get() for get, _ in libs]
    try:
        for _, set_threads in libs:
            set_threads(1)
        torch.set_num_threads(1)
        yield workers
    finally:
        torch.set_num_threads(torch_before)
        for (_, set_threads), n in zip(libs, before):
            set_threads(n)


_T = TypeVar("_T")
_R = TypeVar("_R")


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _forget_pools() -> None:  # a forked child inherits the executors but not their threads
    _POOLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def map_in_threads(workers: int, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``[fn(x) for x in items]``, in order, on ``workers`` threads when there is more than one item.

    The threads are kept between calls (one executor per worker count): no thread start per layer or batch."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS.setdefault(workers, ThreadPoolExecutor(workers, thread_name_prefix="freqlens-lapack"))
    return list(pool.map(fn, items))
