"""A compact DeepLabv3+ with a ResNet-style encoder, trained from scratch (paper IV-A2 comparison method [30]).

Follows Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation" (ECCV 2018):

- encoder: a ResNet (He et al. 2016) with output stride 16: a 7×7 stride-2 stem and max pooling (stride 4), four
  residual stages, the last one dilated (rate 2) instead of strided;
- ASPP (atrous spatial pyramid pooling, DeepLabv3): a 1×1 convolution, three 3×3 atrous convolutions with rates
  6, 12 and 18, and image-level pooling, concatenated and projected by a 1×1 convolution;
- decoder: the low-level stride-4 features (end of the first residual stage) reduced to 48 channels by a 1×1
  convolution, concatenated with the ×4 up-sampled ASPP output, refined by two 3×3 convolutions, classified, and
  up-sampled ×4 to the input size.

The encoder is ResNet-50 shaped by default (bottleneck blocks, ``layers=(3, 4, 6, 3)``, ``base_channels=64``); the
paper's authors used the reference implementation, which also offers ResNet-101 and Xception. ``block="basic"`` gives a
ResNet-18/34-style encoder, which the CPU profile uses at a small ``base_channels``. Deviations: no pretrained
weights, plain (not depthwise-separable) convolutions in ASPP and decoder, and no batch normalisation in the
image-pooling branch, so a training batch of one sample (a 1×1 pooled map) still works. Up-sampling interpolates to the
exact target size so any input size works.

**ASPP rates on small patches.** The rates 6, 12 and 18 were chosen for 513-pixel crops, i.e. 33×33 feature maps at
output stride 16 (Chen et al. 2017, DeepLabv3, Sec. 3.3). A 128-pixel patch gives an 8×8 map: a 3×3 kernel with
rate 12 or 18 then has only its centre weight inside the map at every position, so it *degenerates to a 1×1
convolution*, the very effect DeepLabv3 describes ("in the extreme case where the rate value is close to the feature
map size, the 3×3 filter ... degenerates to a simple 1×1 filter"); rate 6 keeps on average 2.25 of 9 weights.
:func:`aspp_receptive_taps` measures this. The class keeps the published default; :func:`scaled_aspp_rates` gives
the rates scaled to the map size (``(1, 3, 4)`` for 128-pixel patches), which the experiment profiles use (noted in
``docs/results.md``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from crofuse.baselines.resnet import BasicBlock, Bottleneck

__all__ = ["PUBLISHED_ASPP_RATES", "DeepLabV3Plus", "aspp_receptive_taps", "scaled_aspp_rates"]

PUBLISHED_ASPP_RATES: tuple[int, ...] = (6, 12, 18)
"""DeepLabv3/v3+ rates at output stride 16, chosen for 33×33 feature maps (513-pixel crops)."""
_PUBLISHED_MAP_SIDE = 33


def aspp_receptive_taps(map_side: int, rate: int) -> float:
    """Mean number of the 9 weights of a 3×3 kernel with dilation ``rate`` that fall inside a ``map_side`` square
    feature map (zero padding elsewhere), over all positions: 9 for an interior kernel, 1 for one that has
    degenerated to a 1×1 convolution."""
    if map_side < 1 or rate < 1:
        raise ValueError(f"map_side and rate must be >= 1, got {map_side}, {rate}")
    per_axis = sum(1 + (i - rate >= 0) + (i + rate < map_side) for i in range(map_side)) / map_side
    return per_axis * per_axis


def scaled_aspp_rates(patch_size: int, *, output_stride: int = 16,
                      rates: tuple[int, ...] = PUBLISHED_ASPP_RATES) -> tuple[int, ...]:
    """The published ASPP ``rates`` scaled by ``map side / 33`` for ``patch_size`` inputs (rounded, at least 1,
    strictly increasing): ``(1, 3, 4)`` for 128-pixel patches, the published ``(6, 12, 18)`` for 513."""
    side = -(-patch_size // output_stride)
    out: list[int] = []
    for r in rates:
        scaled = max(1, round(r * side / _PUBLISHED_MAP_SIDE))
        out.append(max(scaled, out[-1] + 1) if out else scaled)
    return tuple(out)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): 1×1, three atrous 3×3 and image pooling, projected by 1×1."""

    def __init__(self, in_channels: int, channels: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, channels, 1)] + [_conv_bn_relu(in_channels, channels, 3, r) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(_conv_bn_relu(channels * (len(rates) + 2), channels, 1), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        pooled = self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat(outs + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ (Chen et al. 2018); input ``(N, in_channels, H, W)``, logits ``(N, num_classes, H, W)``.

    Args:
        in_channels: number of stacked input bands (6 for optical + SAR).
        num_classes: output classes (2: pervious, impervious).
        base_channels: width of the stem and first residual stage (64 in ResNet); stages use ×1, ×2, ×4, ×8.
        block: ``"bottleneck"`` (ResNet-50/101) or ``"basic"`` (ResNet-18/34) residual blocks.
        layers: residual blocks per stage (ResNet-50: ``(3, 4, 6, 3)``).
        aspp_rates: atrous rates of ASPP at output stride 16 (``(6, 12, 18)``).
        aspp_channels: ASPP and decoder width (256 in the paper); default ``4 × base_channels``.
        low_level_channels: width the low-level features are reduced to (48 in the paper); default
            ``max(8, 3 × base_channels // 4)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        base_channels: int = 64,
        block: Literal["basic", "bottleneck"] = "bottleneck",
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        aspp_rates: tuple[int, ...] = (6, 12, 18),
        aspp_channels: int | None = None,
        low_level_channels: int | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"DeepLabV3Plus needs in_channels >= 1 and num_classes >= 1, got {in_channels}, {num_classes}"
            )
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"DeepLabV3Plus block must be 'basic' or 'bottleneck', got {block!r}")
        layers = tuple(layers)  # type: ignore[assignment]
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"DeepLabV3Plus layers must be four positive block counts, got {layers}")
        if base_channels < 1:
            raise ValueError(f"DeepLabV3Plus base_channels must be >= 1, got {base_channels}")
        block_cls: type[BasicBlock] | type[Bottleneck] = Bottleneck if block == "bottleneck" else BasicBlock
        aspp_channels = aspp_channels if aspp_channels is not None else 4 * base_channels
        low_level_channels = low_level_channels if low_level_channels is not None else max(8, 3 * base_channels // 4)

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(base_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        # output stride 16: strides 1, 2, 2 then a dilated (rate 2) last stage
        plan = ((1, 1), (2, 1), (2, 1), (1, 2))
        stages: list[nn.Sequential] = []
        c_in = base_channels
        for i, (n_blocks, (stride, dilation)) in enumerate(zip(layers, plan, strict=True)):
            channels = base_channels * (2**i)
            blocks: list[nn.Module] = []
            for k in range(n_blocks):
                blocks.append(block_cls(c_in, channels, stride=stride if k == 0 else 1, dilation=dilation))
                c_in = channels * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        low_level_in = base_channels * block_cls.expansion
        self.aspp = _ASPP(c_in, aspp_channels, tuple(aspp_rates))
        self.reduce = _conv_bn_relu(low_level_in, low_level_channels, 1)
        self.decoder = nn.Sequential(
            _conv_bn_relu(aspp_channels + low_level_channels, aspp_channels, 3),
            _conv_bn_relu(aspp_channels, aspp_channels, 3),
        )
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y = self.stem(x)
        low_level = None
        for i, stage in enumerate(self.stages):
            y = stage(y)
            if i == 0:
                low_level = y
        assert low_level is not None
        y = self.aspp(y)
        y = F.interpolate(y, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([y, self.reduce(low_level)], dim=1))
        return F.interpolate(self.classifier(y), size=size, mode="bilinear", align_corners=False)
