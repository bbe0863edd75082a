"""Helpers shared by the ``uses-*`` experiments (which frequencies a trained CIFAR-10 CNN uses): the small CNN,
its resumable training, CIFAR-10 subsets. Registers no experiment.

The CNN standardises its input inside the model (fixed per-channel mean/std buffers), so perturbations and
gradients are in ``[0, 1]`` pixel units as in Yin et al. 2019 and Godfrey et al. 2023.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..datasets import load_cifar10
from ..training.loop import EpochSampler, train
from .cbn_common import cpu_threads
from .registry import RunContext

__all__ = [
    "Standardize",
    "TrainedCNNConfig",
    "cifar_subset",
    "cnn_init_seed",
    "small_cifar_cnn",
    "top1_accuracy",
    "trained_cnn",
]


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel with fixed buffers (part of the model, so inputs stay in [0, 1])."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Keep ``mean`` and ``std`` as ``(1, C, 1, 1)`` buffers (plumbing)."""
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` (plumbing)."""
        return (x - self.mean) / self.std


def small_cifar_cnn(
    width: int = 16,
    first_kernel: int = 5,
    classes: int = 10,
    seed: int = 0,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> nn.Sequential:
    """Standardize, conv k×k (``width``), ReLU, max-pool 2, conv 3×3 (2 width), ReLU, max-pool 2, conv 3×3
    (4 width), ReLU, global average pool, linear (plumbing). Zero "same" padding; PyTorch's default
    initialisation drawn under ``torch.manual_seed(seed)`` in a forked RNG (the global RNG is untouched)."""
    m = torch.zeros(3) if mean is None else mean
    s = torch.ones(3) if std is None else std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return nn.Sequential(
            Standardize(m, s),
            nn.Conv2d(3, width, first_kernel, padding=first_kernel // 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, classes),
        )


@dataclass(frozen=True)
class TrainedCNNConfig:
    """Fields every ``uses-*`` config shares: the CNN and its training ([choice]: the companion papers train
    ResNets/WideResNets for hundreds of epochs; a small CNN keeps the CPU run to minutes)."""

    train_images: int = 50000
    test_images: int = 1000
    width: int = 32
    first_kernel: int = 5
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    cpu_threads: int = 1

    def validate(self) -> None:
        """Reject sizes outside CIFAR-10 and impossible network settings (plumbing)."""
        if not 1 <= self.train_images <= 50000 or not 1 <= self.test_images <= 10000:
            raise ValueError("train_images must lie in [1, 50000] and test_images in [1, 10000]")
        if self.epochs < 0 or self.width < 1 or self.first_kernel < 1 or self.first_kernel % 2 == 0:
            raise ValueError("epochs must be >= 0, width >= 1 and first_kernel a positive odd number")
        if not self.batch_size <= self.train_images:
            raise ValueError(f"batch_size must be <= train_images, got {self.batch_size} > {self.train_images}")


def cnn_init_seed(ctx: RunContext) -> int:
    """The seed of :func:`small_cifar_cnn`'s initial weights in a run: the legacy ``seed * 7 + 1`` (plumbing; the
    untrained and the trained CNN of one run start from the same weights, so they share this stream)."""
    return ctx.torch_seed("cnn_init", legacy_offset=1, legacy_multiplier=7)


def cifar_subset(ctx: RunContext, split: str, count: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` CIFAR-10 images of ``split`` in ``[0, 1]`` (float32) drawn with
    ``ctx.rng("cifar10_<split>_images", legacy_offset=offset)``."""
    x, y = load_cifar10(ctx.require_data("CIFAR-10"), split)
    idx = torch.from_numpy(
        np.sort(ctx.rng(f"cifar10_{split}_images", legacy_offset=offset).choice(x.shape[0], size=count, replace=False))
    )
    return x[idx], y[idx]


def top1_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in eval mode (plumbing)."""
    was = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was)
    return correct / max(1, x.shape[0])


def trained_cnn(
    ctx: RunContext, cfg: TrainedCNNConfig, x: torch.Tensor, y: torch.Tensor, key: str, noise_std: float = 0.0
) -> tuple[nn.Sequential, dict[str, np.ndarray]]:
    """Train :func:`small_cifar_cnn` with Adam on cross-entropy (optionally Gaussian data augmentation of std
    ``noise_std`` in pixel units, Yin et al. §4) as the resumable stage ``key``; returns the model (on
    ``ctx.device``, eval mode) and the stage's history (``step``, ``train_loss``). Weights are stored as plain
    arrays in the stage file and loaded back on a rerun."""
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    model = small_cifar_cnn(cfg.width, cfg.first_kernel, 10, seed=cnn_init_seed(ctx), mean=mean, std=std)
    model = model.to(ctx.device)

    def compute() -> dict[str, Any]:
        """Train on ``ctx.device`` and return the history and the weights as plain arrays (plumbing)."""
        xd, yd = x.to(ctx.device), y.to(ctx.device)
        sampler = EpochSampler(
            xd,
            yd,
            cfg.batch_size,
            seed=ctx.sampler_seed("cnn_batches", legacy_offset=3, legacy_multiplier=7919, epochs=cfg.epochs),
        )
        noise_gen = ctx.generator("augmentation_noise", legacy_offset=5, legacy_multiplier=31, device=ctx.device)

        def loss_fn(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            """Cross-entropy, on Gaussian-augmented inputs when ``noise_std > 0`` (Yin et al. §4)."""
            if noise_std > 0:
                xb = xb + noise_std * torch.randn(xb.shape, generator=noise_gen, device=xb.device, dtype=xb.dtype)
            return F.cross_entropy(net(xb), yb)

        steps = cfg.epochs * sampler.batches_per_epoch

        def progress(it: Iterable[int]) -> Iterable[int]:
            """The training progress bar (plumbing)."""
            return ctx.progress(it, total=steps, desc=f"train {key}")

        with cpu_threads(cfg.cpu_threads if ctx.device.type == "cpu" else 0):
            hist = train(
                model,
                loss_fn,
                sampler,
                torch.optim.Adam(model.parameters(), lr=cfg.lr),
                steps,
                record_every=max(1, sampler.batches_per_epoch),
                progress=progress,
            ).as_arrays()
        state = model.state_dict()
        out: dict[str, Any] = {"step": hist["step"], "train_loss": hist.get("train_loss", np.zeros(0))}
        out["state_names"] = np.array(list(state), dtype=str)
        for i, v in enumerate(state.values()):
            out[f"state_{i:03d}"] = v.detach().cpu().numpy()
        return out

    arrays = ctx.stage(key, compute)
    names = [str(n) for n in arrays["state_names"]]
    model.load_state_dict({n: torch.from_numpy(np.asarray(arrays[f"state_{i:03d}"])) for i, n in enumerate(names)})
    model.eval()
    return model, {k: v for k, v in arrays.items() if not k.startswith("state_")}
