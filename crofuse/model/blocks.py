"""Building blocks of the paper's UNet and of CroFuseNet (Wu et al., IEEE JSTARS 16, 2023, Sec. III-A).

Everything here is a small ``nn.Module`` with one job; the wiring lives in :mod:`crofuse.model.unet` and
:mod:`crofuse.model.crofusenet`:

- :class:`ConvBNReLU`, :class:`DoubleConv`: the 3x3 convolution + BN + ReLU groups of the UNet encoder/decoder;
- :class:`UpBlock`: 2x upsampling, concatenation with the skip feature, two conv groups;
- :class:`SegmentationHead`: the last 3x3 conv + BN + ReLU layer (or a plain 3x3 conv);
- :class:`ChannelAttention`: the SE-style channel attention of Fig. 6(b), eqs. (7)-(10);
- :class:`CrossFusionModule`: the CFM of Fig. 6(a), eqs. (1)-(5) plus the two conv groups that follow;
- :class:`ConcatFusion`, :class:`SumFusion`: what replaces the CFM in the ablations (Sec. IV-C, cases 4 and 1/2);
- :class:`MultimodalFeatureAggregation`: the MFA of Fig. 6(c).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

UPSAMPLE_MODES: tuple[str, ...] = ("transpose", "bilinear")
"""Allowed ``upsample`` values: a learnt 2x2 stride-2 transposed conv, or bilinear interpolation + 1x1 conv."""


class ConvBNReLU(nn.Sequential):
    """``Conv(k x k, no bias) -> BatchNorm -> ReLU``; the "Conv_3x3, BN, ReLU" group of eqs. (3)-(4)."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvBNReLU` groups: one UNet encoder or decoder block (Sec. III-A-1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class UpBlock(nn.Module):
    """One UNet decoder block: upsample 2x to half the channels, concatenate the skip feature, :class:`DoubleConv`.

    ``upsample="transpose"`` uses a 2x2 stride-2 ``ConvTranspose2d`` (the original UNet's "up-convolution");
    ``"bilinear"`` uses bilinear interpolation followed by a 1x1 conv, which has no checkerboard artefacts and
    fewer parameters.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *, upsample: str = "transpose") -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample={upsample!r} is not allowed; use one of {UPSAMPLE_MODES}")
        half = in_channels // 2
        if upsample == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, half, kernel_size=1),
            )
        self.conv = DoubleConv(half + skip_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class SegmentationHead(nn.Module):
    """The last layer: per-pixel class logits of the same size as the input (Sec. III-A-1).

    ``relu=True`` is the paper's "3x3 convolution, BN and a ReLU layer", whose logits are non-negative.
    ``relu=False`` is a plain 3x3 convolution with bias (no BN, no ReLU), the usual segmentation head.
    """

    def __init__(self, in_channels: int, num_classes: int, *, relu: bool = True) -> None:
        super().__init__()
        self.relu = relu
        if relu:
            self.block: nn.Module = ConvBNReLU(in_channels, num_classes)
        else:
            self.block = nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class ChannelAttention(nn.Module):
    """SE channel attention, Fig. 6(b), eqs. (7)-(10) (Hu et al., squeeze-and-excitation).

    ``F_Sq = GAP(F)`` (7); ``F_Ex1 = ReLU(FC1(F_Sq))`` (8) with ``C -> C/r``; ``F_Ex = sigmoid(FC2(F_Ex1))`` (9)
    with ``C/r -> C``; ``F' = F * F_Ex`` (10). The paper uses ``r = 16``. The hidden width is
    ``max(C // r, min(C, min_hidden))`` with ``min_hidden = 8`` (timm's SE rounds to multiples of 8 the same way):
    with r = 16 the 32- and 64-channel levels would get 2 and 4 hidden units, which all die (ReLU <= 0 for the whole
    batch) often enough to freeze the attention at ``sigmoid(bias)``. From 128 channels on the paper's C/16 holds.
    """

    def __init__(self, channels: int, *, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        if reduction < 1 or min_hidden < 1:
            raise ValueError(f"reduction and min_hidden must be >= 1, got {reduction} and {min_hidden}")
        hidden = max(channels // reduction, min(channels, min_hidden))
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        squeeze = x.mean(dim=(2, 3))  # eq. (7)
        excite = torch.sigmoid(self.fc2(torch.relu(self.fc1(squeeze))))  # eqs. (8), (9)
        return x * excite[:, :, None, None]  # eq. (10)


class CrossFusionModule(nn.Module):
    """Cross fusion module (CFM), Fig. 6(a): fuses optical and SAR encoder features of one level.

    1. ``F_opt' = Attention(F_opt)``, ``F_sar' = Attention(F_sar)`` (eqs. (1), (2)), one attention per modality;
    2. ``A = ReLU(BN(Conv3x3(F_opt')))``, ``B = ReLU(BN(Conv3x3(F_sar')))``;
    3. ``F_mul = A * B`` (3), ``F_max = max(A, B)`` (4), ``F_fuse = concat(F_mul, F_max)`` (5);
    4. ``ReLU(BN(Conv3x3(F_fuse)))`` (2C -> C) "to capture the relationship" between the two fusions;
    5. concatenation with the previous shared-encoder feature ``F_shared`` and ``ReLU(BN(Conv3x3(.)))`` -> ``F_CrossFuse``.

    With ``previous_channels=None`` (the first level, where the shared encoder has no previous feature) step 5 is
    skipped and the output of step 4 is ``F_CrossFuse``.
    """

    def __init__(self, channels: int, *, previous_channels: int | None, reduction: int = 16) -> None:
        super().__init__()
        self.optical_attention = ChannelAttention(channels, reduction=reduction)
        self.sar_attention = ChannelAttention(channels, reduction=reduction)
        self.optical_conv = ConvBNReLU(channels, channels)
        self.sar_conv = ConvBNReLU(channels, channels)
        self.fuse_conv = ConvBNReLU(2 * channels, channels)
        self.previous_channels = previous_channels
        self.out_conv = ConvBNReLU(channels + previous_channels, channels) if previous_channels is not None else None

    def forward(self, optical: Tensor, sar: Tensor, previous: Tensor | None = None) -> Tensor:
        a = self.optical_conv(self.optical_attention(optical))  # eq. (1), first factor of (3)
        b = self.sar_conv(self.sar_attention(sar))  # eq. (2), second factor of (3)
        fused = self.fuse_conv(torch.cat([a * b, torch.maximum(a, b)], dim=1))  # eqs. (3)-(5) + conv
        return _with_previous(self.out_conv, fused, previous)


class ConcatFusion(nn.Module):
    """Ablation case 4: the CFM "replaced by concatenation operation" (Sec. IV-C).

    ``ReLU(BN(Conv3x3(concat(F_opt, F_sar))))`` (2C -> C), then the same concatenation with the previous shared
    feature and conv group as the CFM, so that only the cross fusion (attention, product and maximum) differs.
    """

    def __init__(self, channels: int, *, previous_channels: int | None) -> None:
        super().__init__()
        self.fuse_conv = ConvBNReLU(2 * channels, channels)
        self.previous_channels = previous_channels
        self.out_conv = ConvBNReLU(channels + previous_channels, channels) if previous_channels is not None else None

    def forward(self, optical: Tensor, sar: Tensor, previous: Tensor | None = None) -> Tensor:
        return _with_previous(self.out_conv, self.fuse_conv(torch.cat([optical, sar], dim=1)), previous)


class SumFusion(nn.Module):
    """Ablation cases 1 and 2 ("CFM removed"): the shared encoder feature is ``F_opt + F_sar``, nothing learnt.

    The previous shared feature is ignored: the chain of shared-encoder features is part of the CFM.
    """

    previous_channels = None

    def forward(self, optical: Tensor, sar: Tensor, previous: Tensor | None = None) -> Tensor:
        return optical + sar


class MultimodalFeatureAggregation(nn.Module):
    """Multimodal features aggregation (MFA), Fig. 6(c).

    ``ReLU(BN(Conv1x1(concat(F_shared_dec, F_opt_dec, F_sar_dec))))``, 3C -> C channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = ConvBNReLU(3 * channels, channels, kernel_size=1)

    def forward(self, shared: Tensor, optical: Tensor, sar: Tensor) -> Tensor:
        return self.block(torch.cat([shared, optical, sar], dim=1))


def _with_previous(out_conv: nn.Module | None, fused: Tensor, previous: Tensor | None) -> Tensor:
    """Step 5 of the CFM: concatenate the previous shared feature and convolve (or pass ``fused`` through)."""
    if out_conv is None:
        if previous is not None:
            raise ValueError("this fusion module was built without a previous shared feature but was given one")
        return fused
    if previous is None:
        raise ValueError("this fusion module needs the previous shared-encoder feature; got None")
    return out_conv(torch.cat([fused, previous], dim=1))


__all__ = [
    "UPSAMPLE_MODES",
    "ChannelAttention",
    "ConcatFusion",
    "ConvBNReLU",
    "CrossFusionModule",
    "DoubleConv",
    "MultimodalFeatureAggregation",
    "SegmentationHead",
    "SumFusion",
    "UpBlock",
]
