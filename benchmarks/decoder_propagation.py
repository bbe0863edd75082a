"""Benchmark: exact spectrum propagation and ``decoder_report`` on a transposed-conv auto-encoder.

Times, on 64 random 3×32×32 images in float64:
* the model's forward pass alone (reference);
* ``propagate`` of the decoder part (exact rules, layer by layer, next to the measured spectra);
* ``decoder_report`` of the whole auto-encoder (hooks, one-layer predictions, p_low, replicas);
and checks that every exact prediction matches the measurement to 1e-10 relative.

Run: python benchmarks/decoder_propagation.py
"""

from __future__ import annotations

import torch

from _common import max_rss_mib, timed
from freqlens.analysis.decoder_report import decoder_report
from freqlens.models.decoders import conv_autoencoder
from freqlens.spectral.propagation import propagate


def main() -> None:
    torch.manual_seed(0)
    model = conv_autoencoder(3, (32, 64, 128)).double().eval()
    x = torch.randn(64, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        code = model.encoder(x)
    fwd_s, _ = timed(lambda: model(x), repeats=3)
    prop_s, result = timed(lambda: propagate(model.decoder, code), repeats=3)
    worst = max(s.relative_error() for s in result.steps if s.predicted is not None)
    assert worst < 1e-10, worst
    rep_s, report = timed(lambda: decoder_report(model, x, batch_size=32), repeats=1)
    worst_rep = max(layer.max_relative_error for layer in report.layers)
    assert worst_rep < 1e-10, worst_rep
    print(f"forward pass (64 images, float64): {fwd_s:.3f} s")
    print(f"propagate(decoder): {prop_s:.3f} s, {len(result.steps)} layers, max relative error {worst:.1e}")
    print(f"decoder_report(auto-encoder): {rep_s:.3f} s, {len(report.layers)} layers, max rel. err {worst_rep:.1e}")
    print(f"process peak RSS: {max_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
