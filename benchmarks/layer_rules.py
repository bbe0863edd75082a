"""Benchmark: the cost of verifying subclassed layers in the rule registry (issue 10).

``weight_spectra`` of a CircularCNN (its ``CircularConv2d`` overrides ``forward``, so each layer is checked
once on a float64 probe against the rule's circular operator) is timed in one process:
* cold: the verification cache cleared before every call (deep copy + two probe forwards per layer);
* warm: the cache filled (the state of every call after the first with unchanged weights): the reference.
Prints the medians, their ratio, the thread count and ``os.getloadavg()``.

Run: python benchmarks/layer_rules.py
"""

from __future__ import annotations

import os

import torch

from _common import timed
from freqlens.models.circular_cnn import CircularCNN
from freqlens.spectral import rules, weight_spectra


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = CircularCNN(3, 10, 32, 8, 16, kernel_size=3).double()
    shape = (3, 16, 16)
    weight_spectra(model, shape)  # warm-up (and fills the cache)
    warm_s, warm = timed(lambda: weight_spectra(model, shape), repeats=5)

    def cold() -> object:
        rules._VERIFIED.clear()
        return weight_spectra(model, shape)

    cold_s, cold_result = timed(cold, repeats=5)
    assert all(a.exact for a in warm.layers) and not warm.skipped
    same = all((a.singular_values == b.singular_values).all() for a, b in zip(warm.layers, cold_result.layers))
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    print(f"weight_spectra CircularCNN (7 convs, 32 ch, 16x16), median of 5: warm (cached) {warm_s:.3f} s")
    print(f"                                                     cold (verify every layer) {cold_s:.3f} s")
    print(f"ratio cold / warm: {cold_s / warm_s:.2f} (identical numbers: {same})")


if __name__ == "__main__":
    main()
