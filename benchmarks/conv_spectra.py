"""Benchmark: per-frequency spectra of every conv layer of ResNet-18 (CIFAR, 32x32) and ResNet-50 (224x224),
against a reference implementation of the published method, and streaming activation spectra.

Goals (issue 4):
* ResNet-18 at 32x32, all conv layers, full spectra: ``weight_spectra`` at least 2x faster than the reference
  in the same run, agreeing to 1e-8 relative to each layer's largest singular value.
* ResNet-50 at 224x224 completes: time and peak memory.
* ``activation_spectra`` on 2000 CIFAR-10 test images through the ResNet-18: images/s, and peak memory flat
  in the number of images (500 vs 2000).

Reference (Sedghi, Gupta & Long 2019, "The singular values of convolutional layers"): NumPy FFT of every
kernel pair to the grid, then ``np.linalg.svd`` at every frequency. The published code handles stride 1 and
circular padding only; here it is applied to the same operators as freqlens (the padded grid for zero
padding; for strided layers the aliasing blocks are assembled with NumPy and decomposed at every output
frequency), so both compute the same numbers.

Each measurement runs in a fresh child process (peak RSS via ``/proc/self/status``; torch's CPU allocator
is invisible to tracemalloc). Timings on a shared machine are noisy: medians and in-process ratios.

Run: python benchmarks/conv_spectra.py [--repeats R] [--skip-resnet18] [--skip-resnet50] [--skip-activations]
(each part stays under ~15 min on a loaded 2-core machine; run them separately there).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from _common import data_root

# ------------------------------------------------------------------------------------------- models
# (plain definitions: no torchvision)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    """ResNet-18, CIFAR variant: 3x3 stem, no max-pool, stages 64/128/256/512 at 32/16/8/4."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(out.mean(dim=(-2, -1)))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = 4 * mid
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)  # stride on the 3x3 conv (v1.5)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.downsample(x))


class ResNet50(nn.Module):
    """ResNet-50 (ImageNet layout, 224x224): 7x7/2 stem, 3x3/2 max-pool, 3-4-6-3 bottleneck blocks."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            seq = [Bottleneck(cin, mid, stride)] + [Bottleneck(4 * mid, mid, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*seq))
            cin = 4 * mid
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(out.mean(dim=(-2, -1)))


# ------------------------------------------------------------------------------------------- reference
def reference_layer_sv(weight: np.ndarray, grid: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Sedghi et al.: ``np.fft.fft2`` of every kernel pair to the grid, then ``np.linalg.svd`` at every frequency
    (aliasing blocks assembled with NumPy for strided layers). ``weight (c_out, c_in, kh, kw)``."""
    transforms = np.fft.fft2(weight, s=grid).transpose(2, 3, 0, 1)  # (H, W, c_out, c_in)
    sh, sw = stride
    if (sh, sw) != (1, 1):
        h, w, co, ci = transforms.shape
        oh, ow = h // sh, w // sw
        blocks = transforms.reshape(sh, oh, sw, ow, co, ci).transpose(1, 3, 4, 0, 2, 5)
        transforms = blocks.reshape(oh, ow, co, sh * sw * ci) / np.sqrt(sh * sw)
    return np.linalg.svd(transforms, compute_uv=False)


def reference_model(layers: list[tuple[nn.Conv2d, tuple[int, int], tuple[int, int]]]) -> list[np.ndarray]:
    out = []
    for conv, grid, stride in layers:
        out.append(reference_layer_sv(conv.weight.detach().double().numpy(), grid, stride))
    return out


# ------------------------------------------------------------------------------------------- helpers
def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _current_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _in_child(fn: Callable[..., Any], *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def _model(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    torch.manual_seed(0)
    if name == "resnet18":
        return ResNet18Cifar().eval(), (3, 32, 32)
    return ResNet50().eval(), (3, 224, 224)


def _spectra_job(name: str, repeats: int, with_reference: bool) -> dict[str, Any]:
    from freqlens.spectral.weights import weight_spectra

    model, shape = _model(name)
    base = _current_rss_mib()
    _reset_peak_rss()
    ours_times, ref_times = [], []
    ours = ref = None
    for _ in range(repeats):  # interleaved, so machine-load drift hits both alike
        t0 = time.perf_counter()
        ours = weight_spectra(model, shape)
        ours_times.append(time.perf_counter() - t0)
        if with_reference:
            modules = dict(model.named_modules())
            layers = []
            for lay in ours.layers:
                conv = modules[lay.name]
                assert isinstance(conv, nn.Conv2d)
                p = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
                grid = (
                    lay.input_size
                    if conv.padding_mode == "circular"
                    else (
                        lay.input_size[0] + 2 * int(p[0]),
                        lay.input_size[1] + 2 * int(p[1]),
                    )
                )
                layers.append((conv, grid, lay.stride))
            t0 = time.perf_counter()
            ref = reference_model(layers)
            ref_times.append(time.perf_counter() - t0)
    peak = _peak_rss_mib()
    assert ours is not None
    result: dict[str, Any] = {
        "layers": len(ours.layers),
        "values": int(sum(lay.singular_values.size for lay in ours.layers)),
        "ours_s": ours_times,
        "ref_s": ref_times,
        "peak_rss_mib": peak,
        "base_rss_mib": base,
        "threads": torch.get_num_threads(),
    }
    if ref is not None:
        worst = 0.0
        for lay, r in zip(ours.layers, ref):
            top = float(r.max())
            worst = max(worst, float(np.abs(lay.singular_values - r).max()) / top)
        result["max_rel_diff"] = worst
    return result


def _activation_job(n_images: int, batch_size: int) -> dict[str, Any]:
    from freqlens.datasets import load_cifar10
    from freqlens.spectral.activations import activation_spectra

    root = data_root()
    assert root is not None
    x, _ = load_cifar10(root, "test", subtract_mean=False)
    x = x[:n_images].contiguous()
    model, _ = _model("resnet18")
    with torch.no_grad():
        model(x[:8])  # warm-up
    base = _current_rss_mib()
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    spectra = activation_spectra(model, x, batch_size=batch_size)
    elapsed = time.perf_counter() - t0
    peak = _peak_rss_mib()
    parseval = max(lay.parseval_rel_error for lay in spectra.layers)
    gram_mib = sum(lay.grid[0] * (lay.grid[1] // 2 + 1) * lay.channels**2 * 16 / 2**20 for lay in spectra.layers)
    return {
        "images": n_images,
        "seconds": elapsed,
        "images_per_s": n_images / elapsed,
        "peak_rss_mib": peak,
        "base_rss_mib": base,
        "peak_increase_mib": peak - base if reset else float("nan"),
        "peak_reset": reset,
        "layers": len(spectra.layers),
        "max_parseval_rel_error": parseval,
        "gram_storage_mib_upper": gram_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of ResNet-18 (ours, reference)")
    parser.add_argument("--skip-resnet18", action="store_true")
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--resnet50-reference", action="store_true", help="also run the reference on ResNet-50")
    parser.add_argument("--skip-activations", action="store_true")
    args = parser.parse_args()
    if not args.skip_resnet18:
        _resnet18(args.repeats)
    if not args.skip_resnet50:
        r50 = _in_child(_spectra_job, "resnet50", 1, args.resnet50_reference)
        print(f"ResNet-50 (224x224): {r50['layers']} conv layers, {r50['values']} singular values")
        print(
            f"  weight_spectra: {r50['ours_s'][0]:.1f} s, peak RSS {r50['peak_rss_mib']:.0f} MiB "
            f"(model alone {r50['base_rss_mib']:.0f} MiB)"
        )
        if r50["ref_s"]:
            print(f"  reference: {r50['ref_s'][0]:.1f} s; max |diff| / layer max = {r50['max_rel_diff']:.1e}")
    if not args.skip_activations:
        _activations()


def _resnet18(repeats: int) -> None:
    r18 = _in_child(_spectra_job, "resnet18", repeats, True)
    ours, ref = statistics.median(r18["ours_s"]), statistics.median(r18["ref_s"])
    print(
        f"ResNet-18 (CIFAR, 32x32): {r18['layers']} conv layers, {r18['values']} singular values, "
        f"torch threads {r18['threads']}"
    )
    print(f"  weight_spectra   : median {ours:.2f} s  (runs {[round(t, 2) for t in r18['ours_s']]})")
    print(f"  reference (NumPy): median {ref:.2f} s  (runs {[round(t, 2) for t in r18['ref_s']]})")
    print(f"  speed-up {ref / ours:.2f}x (goal >= 2x); max |diff| / layer max = {r18['max_rel_diff']:.1e} (goal 1e-8)")
    print(f"  peak RSS {r18['peak_rss_mib']:.0f} MiB")


def _activations() -> None:
    root = data_root()
    if root is None or not (root / "cifar10").exists():
        print("SKIP activation spectra: CIFAR-10 not found (set FREQLENS_DATA or place ../shared/data)")
        return
    for n in (500, 2000):
        act = _in_child(_activation_job, n, 100)
        print(
            f"activation_spectra, ResNet-18, {n} CIFAR-10 images, {act['layers']} conv outputs, batch 100: "
            f"{act['seconds']:.1f} s = {act['images_per_s']:.1f} images/s; peak RSS {act['peak_rss_mib']:.0f} MiB, "
            f"increase during the call {act['peak_increase_mib']:.0f} MiB (Gram storage "
            f"{act['gram_storage_mib_upper']:.0f} MiB); Parseval rel. error {act['max_parseval_rel_error']:.1e}"
        )


if __name__ == "__main__":
    main()
