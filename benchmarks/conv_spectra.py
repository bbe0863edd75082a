"""Benchmark: per-frequency singular values of every conv layer (``weight_spectra``) against the published
method, and streaming activation spectra.

Weight-spectra figures (issue 14):
* CIFAR ResNet-18 at 32x32, circular padding, all 20 convs, every singular value at every frequency:
  ``weight_spectra`` float64 >= 4x the reference in the same process, float32 >= 8x; float64 agrees with the
  reference to 1e-10 of each layer's largest singular value.
* ResNet-50 and ResNet-18 at 224x224 (zero padding: the padded-grid operator): all weight spectra in <= 12 s
  and <= 15 s (idle machine), with peak memory.

Reference (Sedghi, Gupta & Long 2019, "The singular values of convolutional layers"), exactly as published:
stride 1: ``np.fft.fft2`` of the kernels zero-padded to the grid, ``np.linalg.svd`` at every frequency;
stride ``s``: the polyphase split (kernel phases ``W_r(q) = W(s q + r)``, their ``fft2`` on the ``G/s`` grid
side by side) and ``np.linalg.svd`` at every output frequency. The grid is the one freqlens reports on
(input grid for circular padding, padded grid for zero padding), so both compute the same numbers.

Each model runs in a fresh child process (peak RSS via ``/proc/self/status``: torch's CPU allocator is
invisible to tracemalloc), threads pinned (torch and OpenBLAS) to ``--threads``; medians of ``--repeats`` runs
after one warm-up, ours and the reference interleaved; ``os.getloadavg()`` before and after each model.

Run: python benchmarks/conv_spectra.py [--quick] [--repeats R] [--threads T] [--skip-cifar] [--skip-224]
[--reference-224] [--skip-activations]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
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


class ResNet18(nn.Module):
    """ResNet-18: ``stem="cifar"`` (3x3 conv, no max-pool, stages at 32/16/8/4 for 32x32 input) or
    ``stem="imagenet"`` (7x7 stride 2 + 3x3/2 max-pool); channels ``width`` x 64/128/256/512."""

    def __init__(self, stem: str = "cifar", width: float = 1.0, num_classes: int = 10) -> None:
        super().__init__()
        chans = [max(2, round(c * width)) for c in (64, 128, 256, 512)]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, chans[0], 3, 1, 1, bias=False)
            self.pool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, chans[0], 7, 2, 3, bias=False)
            self.pool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(chans[0])
        layers, cin = [], chans[0]
        for cout, stride in zip(chans, (1, 2, 2, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(torch.relu(self.bn1(self.conv1(x))))
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
    """Sedghi et al. 2019 at the grid: ``weight (c_out, c_in, kh, kw)`` -> singular values ``(G_h/s_h, G_w/s_w, r)``.

    Stride 1: ``np.fft.fft2`` of the kernels zero-padded to ``grid``, ``np.linalg.svd`` at every frequency.
    Stride ``s``: polyphase blocks ``[fft2(W_r, s=G/s)(ω')]_r`` over the ``s_h s_w`` kernel phases
    ``W_r(q) = W(s q + r)`` (the strided conv is the sum of the stride-1 convs of input phase ``r`` with ``W_r``),
    then ``np.linalg.svd`` at every output frequency."""
    sh, sw = stride
    sub = (grid[0] // sh, grid[1] // sw)
    phases = [weight[:, :, rh::sh, rw::sw] for rh in range(sh) for rw in range(sw)]
    blocks = np.concatenate([np.fft.fft2(w_r, s=sub).transpose(2, 3, 0, 1) for w_r in phases], axis=-1)
    return np.linalg.svd(blocks, compute_uv=False)


def reference_model(layers: list[tuple[nn.Conv2d, tuple[int, int], tuple[int, int]]]) -> list[np.ndarray]:
    """The reference for every ``(conv, grid, stride)`` (plumbing)."""
    return [reference_layer_sv(conv.weight.detach().double().numpy(), grid, stride) for conv, grid, stride in layers]


def _reference_layers(model: nn.Module, spectra: Any) -> list[tuple[nn.Conv2d, tuple[int, int], tuple[int, int]]]:
    """``(conv, grid, stride)`` of every layer freqlens reported: input grid if circular, else the padded grid."""
    modules = dict(model.named_modules())
    layers = []
    for lay in spectra.layers:
        conv = modules[lay.name]
        assert isinstance(conv, nn.Conv2d) and isinstance(conv.padding, tuple)
        p = (0, 0) if conv.padding_mode == "circular" else (int(conv.padding[0]), int(conv.padding[1]))
        layers.append((conv, (lay.input_size[0] + 2 * p[0], lay.input_size[1] + 2 * p[1]), lay.stride))
    return layers


# ------------------------------------------------------------------------------------------- helpers
def _one_blas_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with every loaded OpenBLAS held to one thread (restored after)."""
    from freqlens.spectral._blas import openblas_thread_controls

    controls = openblas_thread_controls()
    before = [get() for get, _ in controls]
    try:
        for _, set_threads in controls:
            set_threads(1)
        return fn(*args)
    finally:
        for (_, set_threads), n in zip(controls, before):
            set_threads(n)


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


MODELS = {
    # name: (description, input shape, goal line)
    "cifar-resnet18": ("CIFAR ResNet-18, 32x32, circular padding", (3, 32, 32)),
    "resnet18-224": ("ResNet-18, 224x224, zero padding", (3, 224, 224)),
    "resnet50-224": ("ResNet-50, 224x224, zero padding", (3, 224, 224)),
    "quick": ("CIFAR ResNet-18 width 1/8, 32x32, circular padding (smoke test)", (3, 32, 32)),
}


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "resnet50-224":
        return ResNet50().eval()
    if name == "resnet18-224":
        return ResNet18(stem="imagenet").eval()
    model = ResNet18(width=0.125 if name == "quick" else 1.0).eval()
    if name == "resnet18":  # the activation benchmark's network: zero padding, as before
        return model
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.padding_mode = "circular"
    return model


def _spectra_job(name: str, repeats: int, threads: int, with_reference: bool) -> dict[str, Any]:
    from freqlens.spectral.weights import weight_spectra

    torch.set_num_threads(threads)
    model = _model(name)
    shape = MODELS[name][1]
    base = _current_rss_mib()
    _reset_peak_rss()
    load_before = os.getloadavg()
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "load_before": load_before}
    times: dict[str, list[float]] = {"float64": [], "float32": [], "reference": [], "reference_1thread": []}
    spectra: dict[str, Any] = {}
    ref_layers: list[Any] = []
    ref: list[np.ndarray] = []
    runs: list[tuple[str, Callable[[], Any]]] = [
        ("float64", lambda: weight_spectra(model, shape)),
        ("float32", lambda: weight_spectra(model, shape, dtype=torch.float32)),
    ]
    if with_reference:
        ref_layers = _reference_layers(model, weight_spectra(model, shape, layers=None))
        runs.append(("reference", lambda: reference_model(ref_layers)))
        if threads > 1:  # the reference also at its own best thread count: threaded OpenBLAS can be slower
            runs.append(("reference_1thread", lambda: _one_blas_thread(reference_model, ref_layers)))
    for _key, fn in runs:
        fn()  # warm-up
    for _ in range(repeats):  # interleaved, so machine-load drift hits every variant alike
        for key, fn in runs:
            t0 = time.perf_counter()
            out = fn()
            times[key].append(time.perf_counter() - t0)
            spectra[key] = out
    result["peak_rss_mib"] = _peak_rss_mib()
    result["base_rss_mib"] = base
    result["load_after"] = os.getloadavg()
    result["times"] = times
    ours = spectra["float64"]
    result["layers"] = len(ours.layers)
    result["values"] = int(sum(lay.singular_values.size for lay in ours.layers))
    baseline = [lay.singular_values for lay in ours.layers]
    if with_reference:
        ref = spectra["reference"]
        baseline = ref
    result["baseline"] = "reference" if with_reference else "freqlens float64"
    for key in ("float64", "float32") if with_reference else ("float32",):
        worst = 0.0
        for lay, r in zip(spectra[key].layers, baseline):
            worst = max(worst, float(np.abs(lay.singular_values - r).max()) / float(r.max()))
        result[f"max_rel_diff_{key}"] = worst
    return result


def _activation_job(n_images: int, batch_size: int) -> dict[str, Any]:
    from freqlens.datasets import load_cifar10
    from freqlens.spectral.activations import activation_spectra

    root = data_root()
    assert root is not None
    x, _ = load_cifar10(root, "test", subtract_mean=False)
    x = x[:n_images].contiguous()
    model = _model("resnet18")
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


GOALS = {"cifar-resnet18": None, "resnet18-224": 15.0, "resnet50-224": 12.0, "quick": None}


def _report(name: str, r: dict[str, Any]) -> None:
    t = r["times"]
    med = {k: statistics.median(v) for k, v in t.items() if v}
    print(f"{MODELS[name][0]}: {r['layers']} conv layers, {r['values']} singular values, torch threads {r['threads']}")
    print(
        f"  load average before {tuple(round(x, 2) for x in r['load_before'])}, after "
        f"{tuple(round(x, 2) for x in r['load_after'])} (1/5/15 min, {os.cpu_count()} CPUs)"
    )
    for key in ("float64", "float32", "reference", "reference_1thread"):
        if key in med:
            label = {"reference": "reference (NumPy)", "reference_1thread": "reference, 1 BLAS thread"}.get(
                key, f"weight_spectra {key}"
            )
            print(f"  {label:26s}: median {med[key]:7.2f} s  (runs {[round(x, 2) for x in t[key]]})")
    print(f"  peak RSS {r['peak_rss_mib']:.0f} MiB (model and interpreter alone {r['base_rss_mib']:.0f} MiB)")
    for key in ("float64", "float32"):
        if f"max_rel_diff_{key}" in r:
            print(f"  {key}: max |diff| / layer max vs {r['baseline']} = {r[f'max_rel_diff_{key}']:.1e}")
    if "reference" in med:
        best = min((k for k in ("reference", "reference_1thread") if k in med), key=med.__getitem__)
        which = "" if best == "reference" else " (reference at 1 BLAS thread, its faster setting)"
        for key, goal in (("float64", 4), ("float32", 8)):
            print(
                f"RATIO {name} {key}: reference / weight_spectra = {med[best] / med[key]:.2f}x (goal >= {goal}x)"
                f"{which}"
            )
    goal = GOALS[name]
    if goal is not None:
        print(
            f"RATIO {name} float64: weight_spectra / goal = {med['float64']:.1f} s / {goal:.0f} s = "
            f"{med['float64'] / goal:.2f} (goal <= 1 on an idle machine)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: a narrow CIFAR ResNet-18, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenBLAS threads")
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--skip-224", action="store_true", help="skip ResNet-18 and ResNet-50 at 224x224")
    parser.add_argument("--reference-224", action="store_true", help="also time the reference at 224x224 (slow)")
    parser.add_argument("--skip-activations", action="store_true")
    args = parser.parse_args()
    # children inherit it: OpenBLAS (NumPy's LAPACK, used by the reference and by freqlens) is pinned too
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    if args.quick:
        _report("quick", _in_child(_spectra_job, "quick", 1, args.threads, True))
        return
    if not args.skip_cifar:
        _report("cifar-resnet18", _in_child(_spectra_job, "cifar-resnet18", args.repeats, args.threads, True))
    if not args.skip_224:
        for name in ("resnet18-224", "resnet50-224"):
            _report(name, _in_child(_spectra_job, name, args.repeats, args.threads, args.reference_224))
    if not args.skip_activations:
        _activations()


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
