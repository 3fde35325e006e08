"""FCN-8s on a small VGG-like encoder, trained from scratch (paper IV-A2 comparison method [28]).

Follows Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation" (CVPR 2015), FCN-8s:

- a VGG-16 encoder: five stages of 3×3 convolutions (2, 2, 3, 3, 3 convolutions) each followed by 2×2 max pooling,
  so the stages end at strides 2, 4, 8, 16 and 32;
- ``fc6``/``fc7`` turned into convolutions (7×7 then 1×1 in the paper) on the stride-32 features;
- class score layers (1×1 convolutions) on ``fc7``, ``pool4`` and ``pool3``;
- a learned ×2 up-sampling of the ``fc7`` scores added to the ``pool4`` scores, a second learned ×2 up-sampling added to
  the ``pool3`` scores, and a final ×8 up-sampling to the input size. Up-sampling layers are transposed convolutions
  initialised to bilinear interpolation, as in the original.

Deviations, all for training from scratch on 6 stacked bands with no pretrained weights: channel widths scale with
``base_channels`` (VGG-16 is ``base_channels=64`` with ``fc_channels=4096``), every convolution is followed by batch
normalisation, ``fc6`` is a 3×3 convolution (the paper's 7×7 was sized for ImageNet weights), and the 100-pixel input
padding plus crop of the original is replaced by same-padding and an interpolation that aligns any input size, so
patches whose sides are not multiples of 32 (e.g. 96×160) work.

Dropout after ``fc6`` and ``fc7`` is element-wise with p = 0.5, as in the original (Caffe ``Dropout`` layers of the
VGG fc layers, which FCN keeps when it convolutionises them). ``dropout_mode="channel"`` drops whole feature maps
(``nn.Dropout2d``, what crofuse used before) for a sensitivity check.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FCN8s"]

_VGG16_STAGES: tuple[int, ...] = (2, 2, 3, 3, 3)
"""Number of 3×3 convolutions in each VGG-16 stage."""


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a ``ConvTranspose2d`` do bilinear up-sampling (FCN's initialisation)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    for c in range(channels):
        weight[c, c] = filt
    return weight


class _Upsample(nn.Module):
    """Learned ×``scale`` up-sampling initialised to bilinear; output aligned to a reference size."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        kernel_size = 2 * scale
        self.deconv = nn.ConvTranspose2d(
            channels, channels, kernel_size, stride=scale, padding=scale // 2, bias=False
        )
        with torch.no_grad():
            self.deconv.weight.copy_(_bilinear_kernel(channels, kernel_size))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = self.deconv(x)
        if y.shape[-2:] != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y


class FCN8s(nn.Module):
    """FCN-8s (Long et al. 2015) on a VGG-like encoder; input ``(N, in_channels, H, W)``, logits ``(N, C, H, W)``.

    Args:
        in_channels: number of stacked input bands (6 for optical + SAR).
        num_classes: output classes (2: pervious, impervious).
        base_channels: width of the first VGG stage; stages use ×1, ×2, ×4, ×8, ×8 of it (VGG-16: 64).
        fc_channels: width of the convolutionised ``fc6``/``fc7`` (VGG-16: 4096); default ``16 × base_channels``.
        dropout: dropout after ``fc6`` and ``fc7`` (0.5 in the original).
        dropout_mode: ``"element"`` (the original's element-wise dropout) or ``"channel"`` (whole feature maps).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        base_channels: int = 64,
        fc_channels: int | None = None,
        dropout: float = 0.5,
        dropout_mode: Literal["element", "channel"] = "element",
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"FCN8s needs in_channels >= 1 and num_classes >= 1, got {in_channels}, {num_classes}")
        if base_channels < 1:
            raise ValueError(f"FCN8s base_channels must be >= 1, got {base_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FCN8s dropout must be in [0, 1), got {dropout}")
        if dropout_mode not in ("element", "channel"):
            raise ValueError(f"FCN8s dropout_mode must be 'element' or 'channel', got {dropout_mode!r}")
        drop: type[nn.Module] = nn.Dropout if dropout_mode == "element" else nn.Dropout2d
        fc_channels = fc_channels if fc_channels is not None else 16 * base_channels
        widths = [base_channels * m for m in (1, 2, 4, 8, 8)]
        stages: list[nn.Module] = []
        c_in = in_channels
        for n_convs, width in zip(_VGG16_STAGES, widths, strict=True):
            layers: list[nn.Module] = []
            for _ in range(n_convs):
                layers.append(_conv_bn_relu(c_in, width))
                c_in = width
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Sequential(
            _conv_bn_relu(widths[-1], fc_channels, 3),  # fc6
            drop(dropout),
            _conv_bn_relu(fc_channels, fc_channels, 1),  # fc7
            drop(dropout),
        )
        self.score_fc = nn.Conv2d(fc_channels, num_classes, 1)
        self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
        self.up2_fc = _Upsample(num_classes, 2)
        self.up2_pool4 = _Upsample(num_classes, 2)
        self.up8 = _Upsample(num_classes, 8)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        pool3, pool4, pool5 = feats[2], feats[3], feats[4]
        score = self.score_fc(self.fc(pool5))
        score = self.up2_fc(score, pool4.shape[-2:]) + self.score_pool4(pool4)
        score = self.up2_pool4(score, pool3.shape[-2:]) + self.score_pool3(pool3)
        return self.up8(score, size)
