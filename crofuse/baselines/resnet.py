"""ResNet residual blocks (He et al., CVPR 2016), shared by the DeepLabv3+ encoder and the HRNet branches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "Bottleneck"]


class _Residual(nn.Module):
    """``relu(body(x) + shortcut(x))``; the shortcut is a 1×1 conv + BN where stride or channels change."""

    expansion = 1

    def __init__(self, body: nn.Sequential, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x), inplace=True)


class BasicBlock(_Residual):
    """Two 3×3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, *, stride: int = 1, dilation: int = 1) -> None:
        body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )
        super().__init__(body, in_channels, channels, stride)


class Bottleneck(_Residual):
    """1×1 reduce, 3×3, 1×1 expand ×4 (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, *, stride: int = 1, dilation: int = 1) -> None:
        out = channels * self.expansion
        body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        super().__init__(body, in_channels, out, stride)
