"""A compact HRNet-W18-like segmentation network (HRNetV2 head), trained from scratch (paper IV-A2 method [29]).

Follows Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition" (TPAMI 2020), HRNetV2:

- stem: two 3×3 stride-2 convolutions (to 1/4 resolution), then stage 1 of bottleneck residual blocks;
- stages 2, 3 and 4 keep 2, 3 and 4 **parallel branches** at 1/4, 1/8, 1/16 and 1/32 resolution with widths
  ``C, 2C, 4C, 8C`` (``C = width``, 18 for HRNet-W18); each stage adds one lower-resolution branch through a strided
  3×3 convolution (the transition layers);
- each high-resolution module runs basic residual blocks on every branch, then **fuses** all branches into every
  branch: lower-resolution inputs through a 1×1 convolution and up-sampling, higher-resolution inputs through
  repeated strided 3×3 convolutions, summed and passed through ReLU;
- the HRNetV2 segmentation head up-samples all four branches to 1/4, concatenates them, mixes them with a 1×1
  convolution and classifies, then up-samples to the input size.

Smaller than W18 when asked: ``num_blocks`` (4 in W18) residual blocks per branch and ``num_modules`` (1, 4, 3 in W18)
modules per stage can be reduced, and ``width`` scaled; the multi-resolution branches and the fusion stay. Up-sampling
interpolates to the exact target size so inputs whose sides are not multiples of 32 work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crofuse.baselines.resnet import BasicBlock, Bottleneck

__all__ = ["HRNet"]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


class _HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks followed by the all-to-all multi-resolution fusion."""

    def __init__(self, widths: list[int], num_blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(w, w) for _ in range(num_blocks)]) for w in widths
        )
        n = len(widths)
        fuse: list[nn.ModuleList] = []
        for i in range(n):
            row: list[nn.Module] = []
            for j in range(n):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:  # lower resolution -> 1x1 conv, then upsample in forward
                    row.append(nn.Sequential(nn.Conv2d(widths[j], widths[i], 1, bias=False), _bn(widths[i])))
                else:  # higher resolution -> (i - j) strided 3x3 convs
                    convs: list[nn.Module] = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out = widths[i] if last else widths[j]
                        convs += [nn.Conv2d(widths[j], out, 3, stride=2, padding=1, bias=False), _bn(out)]
                        if not last:
                            convs.append(nn.ReLU(inplace=True))
                    row.append(nn.Sequential(*convs))
            fuse.append(nn.ModuleList(row))
        self.fuse = nn.ModuleList(fuse)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, row in enumerate(self.fuse):
            size = xs[i].shape[-2:]
            acc = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                y = layer(xs[j])
                if y.shape[-2:] != size:
                    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
                acc = acc + y
            out.append(F.relu(acc))
        return out


class HRNet(nn.Module):
    """HRNetV2 for segmentation; input ``(N, in_channels, H, W)``, logits ``(N, num_classes, H, W)``.

    Args:
        in_channels: number of stacked input bands (6 for optical + SAR).
        num_classes: output classes (2: pervious, impervious).
        width: width ``C`` of the highest-resolution branch (18 for HRNet-W18); branches use ``C, 2C, 4C, 8C``.
        stem_channels: width of the stem and stage 1 (64 in HRNet).
        num_blocks: residual blocks per branch in each module (4 in HRNet), also the stage-1 bottleneck count.
        num_modules: high-resolution modules in stages 2, 3 and 4 (``(1, 4, 3)`` in HRNet).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        width: int = 18,
        stem_channels: int = 64,
        num_blocks: int = 4,
        num_modules: tuple[int, int, int] = (1, 4, 3),
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"HRNet needs in_channels >= 1 and num_classes >= 1, got {in_channels}, {num_classes}")
        if width < 1 or stem_channels < 1 or num_blocks < 1:
            raise ValueError(
                f"HRNet width, stem_channels and num_blocks must be >= 1, got {width}, {stem_channels}, {num_blocks}"
            )
        num_modules = tuple(num_modules)  # type: ignore[assignment]
        if len(num_modules) != 3 or min(num_modules) < 1:
            raise ValueError(f"HRNet num_modules must be three positive counts (stages 2-4), got {num_modules}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, stride=2, padding=1, bias=False),
            _bn(stem_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_channels, stem_channels, 3, stride=2, padding=1, bias=False),
            _bn(stem_channels),
            nn.ReLU(inplace=True),
        )
        stage1_out = stem_channels * Bottleneck.expansion
        self.stage1 = nn.Sequential(
            Bottleneck(stem_channels, stem_channels),
            *[Bottleneck(stage1_out, stem_channels) for _ in range(num_blocks - 1)],
        )
        widths_all = [width * m for m in (1, 2, 4, 8)]
        transitions: list[nn.ModuleList] = []
        stages: list[nn.ModuleList] = []
        prev = [stage1_out]
        for stage_index, n_modules in enumerate(num_modules):
            widths = widths_all[: stage_index + 2]
            transition: list[nn.Module] = []
            for b, w in enumerate(widths):
                if b < len(prev):
                    transition.append(
                        nn.Identity()
                        if prev[b] == w
                        else nn.Sequential(nn.Conv2d(prev[b], w, 3, padding=1, bias=False), _bn(w), nn.ReLU(True))
                    )
                else:  # new lower-resolution branch from the lowest existing one
                    transition.append(
                        nn.Sequential(
                            nn.Conv2d(prev[-1], w, 3, stride=2, padding=1, bias=False), _bn(w), nn.ReLU(True)
                        )
                    )
            transitions.append(nn.ModuleList(transition))
            stages.append(nn.ModuleList(_HighResolutionModule(widths, num_blocks) for _ in range(n_modules)))
            prev = widths
        self.transitions = nn.ModuleList(transitions)
        self.stages = nn.ModuleList(stages)
        total = sum(widths_all)
        self.head = nn.Sequential(
            nn.Conv2d(total, total, 1, bias=False),
            _bn(total),
            nn.ReLU(inplace=True),
            nn.Conv2d(total, num_classes, 1),
        )
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y = self.stage1(self.stem(x))
        xs = [y]
        for transition, modules in zip(self.transitions, self.stages, strict=True):
            xs = [t(xs[b] if b < len(xs) else xs[-1]) for b, t in enumerate(transition)]
            for module in modules:
                xs = module(xs)
        hr = xs[0].shape[-2:]
        feats = [xs[0]] + [F.interpolate(t, size=hr, mode="bilinear", align_corners=False) for t in xs[1:]]
        logits = self.head(torch.cat(feats, dim=1))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
