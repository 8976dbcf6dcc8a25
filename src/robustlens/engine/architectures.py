"""Published architectures, written from their papers' descriptions, with the parameter names the
publishers' checkpoints use, so their state_dicts load as they are.

- ``CifarResNet``: the CIFAR-10 ResNet of He et al. 2016 (Sec. 4.2): a 3×3 convolution with 16
  filters, then three stages of n BasicBlocks (two 3×3 convolutions, each with batch norm) with 16,
  32 and 64 filters on 32×32, 16×16 and 8×8 maps, global average pooling and a linear layer; depth
  6n + 2 (20: n = 3, 110: n = 18). The shortcut that changes shape is a 1×1 convolution with stride 2
  and batch norm (``downsample.0`` / ``downsample.1``, "option B"), as the key names of Cohen et al.'s
  checkpoints (``1.layer2.0.downsample.0.weight``) say.
- ``resnet50``: torchvision's ImageNet ResNet-50 (He et al. 2016, Table 1), which Cohen et al. and
  Madry et al.'s ``robustness`` library both train.

``CifarResNet`` also takes grayscale input (``in_channels=1``): ``fmnist-resnet`` is the depth-8 one on
28×28 Fashion-MNIST (28×28, 14×14 and 7×7 maps), the residual, batch-normalised standard model of the
Ilyas et al. ablation beside the small plain CNN.

These modules know nothing of robustlens' metadata; ``models.py`` puts a normaliser in front.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or projection) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth 6n + 2; ``features`` is the 64-d pooled representation."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (8, 14, 20, 32, 44, 56, 110), not {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # 8×8 maps on 32×32 input: the paper's global pooling
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():  # He et al. 2015's initialisation, as the paper trains it
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(inplanes, planes, stride),
                             *[BasicBlock(planes, planes) for _ in range(blocks - 1)])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet under the same names (``conv1``, ``layer1`` … ``fc``) with ``features``."""

    def __init__(self, depth: int = 50, num_classes: int = 1000):
        super().__init__()
        from .tv import torchvision

        net = getattr(torchvision().models, f"resnet{depth}")(weights=None, num_classes=num_classes)
        for name, child in net.named_children():
            self.add_module(name, child)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class NetClassifier(nn.Module):
    """normalize -> a published network. ``representation`` is the network's pooled features (the
    penultimate layer, what representation inversion matches); ``net`` holds the publisher's keys."""

    def __init__(self, normalize: nn.Module, net: nn.Module, meta):
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.meta = meta

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def imagenet_classes() -> tuple[str, ...]:
    """ImageNet's 1000 class names, as torchvision lists them (no download)."""
    from .tv import torchvision

    return tuple(torchvision().models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
