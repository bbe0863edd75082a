"""Hand-built CNNs a new user arrives with (random weights, no downloads, no torchvision).

Each factory takes ``width`` (channel multiplier: 1.0 gives the published widths; tests use small ones) and
returns a model in eval mode with seeded weights. ``ZOO`` maps a name to ``(factory, input_shape)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _c(channels: int, width: float) -> int:
    return max(2, round(channels * width))


# ----------------------------------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18: ``stem="cifar"`` (3x3 conv, no max-pool) or ``stem="imagenet"`` (7x7 stride 2 + max-pool)."""

    def __init__(self, stem: str = "cifar", num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        w = [_c(c, width) for c in (64, 128, 256, 512)]
        if stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, padding=1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, w[0], 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(w[0]),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        layers: list[nn.Module] = []
        cin = w[0]
        for i, cout in enumerate(w):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(w[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ----------------------------------------------------------------------------------------------- VGG-11
def vgg11(width: float = 1.0, num_classes: int = 10) -> nn.Module:
    cfg: list[int | str] = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    layers: list[nn.Module] = []
    cin = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            cout = _c(int(item), width)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


# ----------------------------------------------------------------------------------------------- MobileNetV2
class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),  # depthwise
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


def mobilenet_v2(width: float = 1.0, num_classes: int = 10, full: bool = True) -> nn.Module:
    """MobileNetV2 (CIFAR stem: first stride 1). ``full=False`` keeps the first three stages only."""
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2)]
    settings += [(6, 320, 1, 1)]
    if not full:
        settings = settings[:3]
    cin = _c(32, width)
    layers: list[nn.Module] = [nn.Conv2d(3, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6()]
    for t, c, n, s in settings:
        cout = _c(c, width)
        for i in range(n):
            layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
            cin = cout
    last = _c(1280, width)
    layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes))


# ----------------------------------------------------------------------------------------------- others
def dilated_net(width: float = 1.0) -> nn.Module:
    """Context-module style: 3x3 convs with dilation 1, 2, 4, 8 ('same' size), one reflect-padded layer."""
    c = _c(32, width)
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=4, dilation=4, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=8, dilation=8),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect"),
        nn.ReLU(),
        nn.Conv2d(c, 3, 1),
    )


def dcgan_generator(width: float = 1.0, latent: int = 100) -> nn.Module:
    """DCGAN generator: latent (N, z, 1, 1) -> 64x64 image; the first layer is ``ConvTranspose2d(k4, s1, p0)``."""
    g = [_c(c, width) for c in (512, 256, 128, 64)]
    return nn.Sequential(
        nn.ConvTranspose2d(latent, g[0], 4, 1, 0, bias=False),
        nn.BatchNorm2d(g[0]),
        nn.ReLU(),
        nn.ConvTranspose2d(g[0], g[1], 4, 2, 1, bias=False),
        nn.BatchNorm2d(g[1]),
        nn.ReLU(),
        nn.ConvTranspose2d(g[1], g[2], 4, 2, 1, bias=False),
        nn.BatchNorm2d(g[2]),
        nn.ReLU(),
        nn.ConvTranspose2d(g[2], g[3], 4, 2, 1, bias=False),
        nn.BatchNorm2d(g[3]),
        nn.ReLU(),
        nn.ConvTranspose2d(g[3], 3, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


class UNetDecoder(nn.Module):
    """U-Net-style: two down stages, a bottleneck, two up stages (nearest upsample + conv, transposed conv)
    with skip connections; one functional ``F.conv2d`` smoothing inside ``forward``."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = _c(16, width), _c(32, width), _c(64, width)
        self.enc1 = nn.Conv2d(3, c1, 3, padding=1)
        self.enc2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = nn.Conv2d(c3 + c2, c2, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)
        self.dec2 = nn.Conv2d(2 * c1, 3, 3, padding=1)
        self.register_buffer("smooth", torch.full((3, 1, 3, 3), 1.0 / 9.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = F.relu(self.enc1(x))
        e2 = F.relu(self.enc2(e1))
        m = F.relu(self.mid(e2))
        d1 = F.relu(self.dec1(torch.cat([self.up1(m), e2], dim=1)))
        d2 = self.dec2(torch.cat([F.relu(self.up2(d1)), e1], dim=1))
        return F.conv2d(d2, self.smooth, padding=1, groups=3)  # functional: seen by the function mode


def conv1d_net(width: float = 1.0) -> nn.Module:
    c = _c(16, width)
    return nn.Sequential(
        nn.Conv1d(2, c, 5, padding=2), nn.ReLU(), nn.Conv1d(c, c, 3, stride=2, padding=1), nn.ReLU(), nn.Conv1d(c, 4, 1)
    )


def conv3d_net(width: float = 1.0) -> nn.Module:
    c = _c(8, width)
    return nn.Sequential(nn.Conv3d(1, c, 3, padding=1), nn.ReLU(), nn.Conv3d(c, c, 3, stride=2, padding=1))


def seeded(factory: Callable[..., nn.Module], seed: int = 0, **kwargs: object) -> nn.Module:
    """``factory(**kwargs)`` built under ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return factory(**kwargs).eval()


#: name -> (factory, small-test kwargs, input shape for tests (small), full input shape)
ZOO: dict[str, tuple[Callable[..., nn.Module], dict[str, object], tuple[int, ...], tuple[int, ...]]] = {
    "resnet18_cifar": (ResNet18, {"stem": "cifar", "width": 0.125}, (3, 16, 16), (3, 32, 32)),
    "resnet18_224": (ResNet18, {"stem": "imagenet", "width": 0.125}, (3, 32, 32), (3, 224, 224)),
    "vgg11": (vgg11, {"width": 0.125}, (3, 32, 32), (3, 32, 32)),
    "mobilenet_v2": (mobilenet_v2, {"width": 0.25, "full": False}, (3, 16, 16), (3, 32, 32)),
    "dilated": (dilated_net, {"width": 0.25}, (3, 20, 20), (3, 64, 64)),
    "dcgan": (dcgan_generator, {"width": 0.0625, "latent": 8}, (8, 1, 1), (100, 1, 1)),
    "unet": (UNetDecoder, {"width": 0.5}, (3, 16, 16), (3, 64, 64)),
    "conv1d": (conv1d_net, {"width": 0.5}, (2, 32), (2, 128)),
    "conv3d": (conv3d_net, {"width": 0.5}, (1, 8, 8, 8), (1, 16, 16, 16)),
}
