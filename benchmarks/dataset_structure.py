"""Benchmark: DatasetStructure.from_data on CIFAR-4 (20000 x 3 x 32 x 32, mean subtracted).

Goal (issue 2): under 10 s on a 2-core CPU, peak memory reported. In the same process it times a
straightforward reference (float64 design matrix, full SVD of Σ_yx, dense Σ_xx = XᵀX/N, then VᵀΣ_xxV)
and checks that both give the same singular values and VᵀΣ_xxV.

Run: python benchmarks/dataset_structure.py
"""

from __future__ import annotations

import numpy as np
import torch

from _common import max_rss_mib, require_data, timed, traced_peak_mib
from freqlens import DatasetStructure
from freqlens.datasets import load_cifar10


def reference(x: torch.Tensor, labels: torch.Tensor, p: int) -> tuple[np.ndarray, np.ndarray]:
    xs = x.reshape(x.shape[0], -1).numpy().astype(np.float64)
    y = np.eye(p)[labels.numpy()]
    sigma_yx = y.T @ xs / xs.shape[0]
    _, s, vt = np.linalg.svd(sigma_yx, full_matrices=True)
    sigma_xx = xs.T @ xs / xs.shape[0]
    v = vt[:p].T
    return s, v.T @ sigma_xx @ v


def main() -> None:
    root = require_data("cifar10")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    load_s, (x, labels) = timed(
        lambda: load_cifar10(root, "train", classes=(0, 1, 2, 3), subtract_mean=True), repeats=1
    )
    print(f"CIFAR-4 train loaded: {tuple(x.shape)} {x.dtype} in {load_s:.2f} s (tar.gz decompress + unpickle)")

    ours_s, st = timed(lambda: DatasetStructure.from_data(x, labels), repeats=5)
    peak_mib, _ = traced_peak_mib(lambda: DatasetStructure.from_data(x, labels))
    ref_s, (s_ref, proj_ref) = timed(lambda: reference(x, labels, 4), repeats=1)

    assert np.allclose(st.S, s_ref, rtol=1e-8, atol=1e-12), (st.S, s_ref)
    scale = float(np.abs(proj_ref).max())
    err = float(np.abs(np.abs(st.v_proj_sigma_xx) - np.abs(proj_ref))[:3, :3].max()) / scale
    print(f"singular values: {np.array2string(st.S, precision=5)}  (rank {st.rank()})")
    print(f"agreement with reference: |VtSxxV| rel. max diff on the 3 live modes = {err:.2e}")
    print(f"DatasetStructure.from_data: median {ours_s:.3f} s over 5 runs (goal < 10 s)")
    print(f"  peak extra heap during from_data (tracemalloc): {peak_mib:.1f} MiB")
    print(f"reference (dense Σ_xx, full SVD): {ref_s:.3f} s  -> speed ratio {ref_s / ours_s:.1f}x")
    print(f"process peak RSS: {max_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
