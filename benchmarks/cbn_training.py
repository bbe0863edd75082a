"""Benchmark: one training step of the full ``cbn-*`` networks (issue 12 item 1).

For each full config (the defaults of ``Fig1Config`` .. ``Fig4Config`` and ``DepthConfig``, deepest depth),
one step = forward + backward + ``torch.optim.Adam`` step on a random batch of the config's batch size and
input shape, squared-output loss. Three implementations of the same network, timed in the same process:

* ``today``: :meth:`CircularCNN.forward_layerwise`, i.e. ``CircularConv2d.forward`` as it was before the
  fused route (``torch.fft`` + complex einsum, or one dense matrix for small layers; autograd through it);
* ``new``: :meth:`CircularCNN.forward_fused` (spatial-major ``(H, W, C, N)`` activations, real DFT matrix
  products, one batched real block product per frequency, explicit adjoints: ``freqlens.models.circular_fft``);
* ``conv2d``: ``nn.Conv2d(padding_mode="circular")`` with the same full-size kernels (symmetric padding
  ``k // 2``, cropped to the grid: the same operator up to a circular shift), autograd. Direct convolution
  with full-size kernels is slow, so it runs on a reduced batch (``--conv2d-batch``) and its time is also
  shown scaled linearly to the full batch (marked ``~``).

The flop floor is ``Σ_ℓ passes_ℓ · 8 · (|P_in,ℓ|/2) · N · c_in · c_out`` (complex multiply-adds on half the
input frequencies, Hermitian symmetry; 3 passes: forward, input gradient, weight gradient; 2 for the first
layer), printed in GFLOP and in seconds at the sgemm rate measured in the same process. Medians of
``--repeats`` steps after one warm-up; threads pinned (``--threads``, default 1); load average printed. The
activation traffic (:func:`activation_traffic`, an estimate) is printed in seconds at the copy rate measured in
the same process: the step is memory-bound where that time is of the order of the step.
Float32 gradients of ``new`` and ``today`` are compared with ``today`` in float64 on 8 samples (largest
relative norm error over the parameters), plainly and kink-matched (:func:`gradient_errors`).

Run: python benchmarks/cbn_training.py [--configs fig1,fig4] [--batch N] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from freqlens.experiments.cbn_depth import DepthConfig
from freqlens.experiments.cbn_fig1 import Fig1Config
from freqlens.experiments.cbn_fig2 import Fig2Config
from freqlens.experiments.cbn_fig3 import Fig3Config
from freqlens.experiments.cbn_fig4 import Fig4Config
from freqlens.models.circular_cnn import CircularCNN


@dataclass(frozen=True)
class Network:
    """One full cbn network: what its experiment passes to ``build_cnn``."""

    name: str
    in_channels: int
    out_channels: int
    width: int
    depth: int
    grid: int
    batch: int
    downsample_at: tuple[int, ...] = ()
    head: str = "none"
    bias_multiplier: float = 1.0


def full_networks() -> list[Network]:
    f1, f2, f3, f4, dp = Fig1Config(), Fig2Config(), Fig3Config(), Fig4Config(), DepthConfig()
    return [
        Network(
            "fig1",
            1,
            10,
            f1.width,
            f1.depth,
            f1.input_size,
            f1.batch_size,
            f1.downsample_at,
            "gap_fc",
            f1.bias_multiplier,
        ),
        Network("fig2", 1, 1, f2.width, f2.depth, f2.size, f2.batch_size, bias_multiplier=f2.bias_multiplier),
        Network("fig3", 1, 1, f3.width, f3.depth, f3.n, f3.batch_size, bias_multiplier=f3.bias_multiplier),
        Network("fig4", 4, 4, f4.width, f4.depth, f4.n, f4.batch_size, bias_multiplier=f4.bias_multiplier),
        Network("depth", 1, 1, dp.width, max(dp.depths), dp.n, dp.batch_size, bias_multiplier=dp.bias_multiplier),
    ]


def build(net: Network) -> CircularCNN:
    return CircularCNN(
        net.in_channels,
        net.width,
        net.out_channels,
        net.depth,
        net.grid,
        downsample_at=net.downsample_at,
        head="gap_fc" if net.head == "gap_fc" else "none",
        bias_multiplier=net.bias_multiplier,
        generator=torch.Generator().manual_seed(0),
    )


class Conv2dNetwork(nn.Module):
    """The same layers as ``nn.Conv2d(padding_mode="circular")`` with full-size kernels (timing reference)."""

    def __init__(self, model: CircularCNN) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        self.grids = list(model.grids)
        for conv in model.conv_layers:
            k = conv.kernel_size
            layer = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                k,
                stride=conv.stride,
                padding=(k[0] // 2, k[1] // 2),
                padding_mode="circular",
            )
            with torch.no_grad():
                layer.weight.copy_(conv.weight)
            self.convs.append(layer)
        self.fc = None if model.fc is None else nn.Linear(model.fc.in_features, model.fc.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x
        for i, (conv, grid) in enumerate(zip(self.convs, self.grids, strict=True)):
            s = conv.stride
            a = conv(a if i == 0 else torch.relu(a))[..., : grid[0] // s[0], : grid[1] // s[1]]
        if self.fc is None:
            return a
        return self.fc(torch.relu(a).mean(dim=(-2, -1)))


def flop_floor(model: CircularCNN, batch: int) -> float:
    total = 0.0
    for i, (conv, (h, w)) in enumerate(zip(model.conv_layers, model.grids, strict=True)):
        passes = 2 if i == 0 else 3
        total += passes * 8 * (h * w / 2) * batch * conv.in_channels * conv.out_channels
    return total


def sgemm_rate() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 1024**3 / statistics.median(times)


def copy_rate() -> float:
    """Bytes per second of a 64 MB float32 copy (read + write), the memory bandwidth one thread sees."""
    a = torch.randn(16 * 1024 * 1024)
    a.clone()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a.clone()
        times.append(time.perf_counter() - t0)
    return 2 * a.numel() * a.element_size() / statistics.median(times)


def activation_traffic(model: CircularCNN, batch: int) -> float:
    """Bytes a step must move at least once per layer if activations do not stay in cache (an estimate, not a
    bound: small activations may fit in the last-level cache): forward reads the input and writes the output;
    backward reads the output gradient and the saved input (or its spectrum) and writes the input gradient."""
    total = 0.0
    for conv, (h, w) in zip(model.conv_layers, model.grids, strict=True):
        s_h, s_w = conv.stride
        size_in = 4 * batch * conv.in_channels * h * w
        size_out = 4 * batch * conv.out_channels * (h // s_h) * (w // s_w)
        total += 3 * size_in + 2 * size_out
    return total


def step_time(
    model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int
) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        forward(x).pow(2).mean().backward()
        opt.step()
        if i > 0:  # the first step warms up (allocations, DFT matrices)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def _relu_replaced(replacement: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Both routes call ``torch.relu`` (looked up at call time), so swapping it records or imposes masks."""
    original = torch.relu
    torch.relu = replacement  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.relu = original  # type: ignore[assignment]


def _gradients(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    relu: Callable[[torch.Tensor], torch.Tensor],
) -> list[torch.Tensor]:
    with _relu_replaced(relu):
        return list(torch.autograd.grad(forward(x).pow(2).mean(), list(model.parameters())))


def _recording(masks: list[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ReLU that appends its mask ``a > 0`` to ``masks``."""

    def relu(a: torch.Tensor) -> torch.Tensor:
        masks.append(a > 0)
        return a.clamp_min(0)

    return relu


def _worst_error(grads: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Largest relative norm error over the parameters."""
    return max(
        float((a.double() - b).norm() / b.norm().clamp_min(1e-30)) for a, b in zip(grads, reference, strict=True)
    )


def gradient_errors(model: CircularCNN, x: torch.Tensor) -> dict[str, tuple[float, float, int]]:
    """Per route (new, today): the largest relative norm error over the parameters of its float32 gradients
    against today's route in float64, plainly and **kink-matched**, and the number of ReLU inputs whose sign
    float32 rounding flipped. Kink-matched: the float64 reference with each ReLU replaced by the float32 route's
    own mask, so a pre-activation that rounding moved across zero (a different function's gradient, not an
    error of the route) does not count."""
    ref = copy.deepcopy(model).double()
    ref_masks: list[torch.Tensor] = []
    g_ref = _gradients(ref, ref.forward_layerwise, x.double(), _recording(ref_masks))
    out = {}
    for name, forward, to_nchw in (
        ("new", model.forward_fused, lambda m: m.permute(3, 2, 0, 1) if m.dim() == 4 else m.T),
        ("today", model.forward_layerwise, lambda m: m),
    ):
        masks: list[torch.Tensor] = []
        grads = _gradients(model, forward, x, _recording(masks))
        nchw = [to_nchw(m) for m in masks]
        flips = sum(int((a != b).sum()) for a, b in zip(nchw, ref_masks, strict=True))
        queue = iter(nchw)
        g_matched = _gradients(
            ref, ref.forward_layerwise, x.double(), lambda a, queue=queue: a * next(queue).to(a.dtype)
        )
        out[name] = (_worst_error(grads, g_matched), _worst_error(grads, g_ref), flips)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="fig1,fig2,fig3,fig4,depth")
    ap.add_argument("--batch", type=int, default=0, help="override every config's batch size (0 = the config's)")
    ap.add_argument("--conv2d-batch", type=int, default=4, help="batch of the nn.Conv2d reference (0 = skip it)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    known = {net.name: net for net in full_networks()}
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}, expected names from {sorted(known)}")
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    rate, bandwidth = sgemm_rate(), copy_rate()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, sgemm {rate / 1e9:.1f} GFLOP/s, "
        f"copy {bandwidth / 1e9:.1f} GB/s, load average {os.getloadavg()}"
    )
    for name in wanted:
        net = known[name]
        batch = args.batch or net.batch
        model = build(net)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(batch, net.in_channels, net.grid, net.grid, generator=gen)
        errors = gradient_errors(model, x[: min(batch, 8)])
        t_today = step_time(model, model.forward_layerwise, x, args.repeats)
        t_new = step_time(model, model.forward_fused, x, args.repeats)
        conv2d = "conv2d skipped"
        if args.conv2d_batch > 0:
            small = min(batch, args.conv2d_batch)
            ref = Conv2dNetwork(model)
            t_conv = step_time(ref, ref, x[:small], args.repeats)
            conv2d = f"conv2d {t_conv:.3f}s at batch {small} (~{t_conv * batch / small:.2f}s at {batch})"
        floor, traffic = flop_floor(model, batch), activation_traffic(model, batch)
        grads = ", ".join(f"{route} {m:.1e} ({p:.1e}; {c})" for route, (m, p, c) in errors.items())
        print(
            f"{name}: batch {batch} | floor {floor / 1e9:.1f} GFLOP = {floor / rate:.3f}s | today {t_today:.3f}s | "
            f"new {t_new:.3f}s ({floor / rate / t_new:.0%} of floor rate) | {conv2d} | "
            f"activation traffic {traffic / 1e6:.0f} MB = {traffic / bandwidth:.3f}s at the copy rate | "
            f"float32 grad rel err vs float64, kink-matched (plain; ReLU kinks crossed): {grads} | "
            f"load {os.getloadavg()[0]:.1f} | speed-up {t_today / t_new:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
