"""CroFuseNet: cross fusion of optical and SAR features for impervious-surface segmentation.

Wu, Guo, Shao, Li, "CroFuseNet: A Semantic Segmentation Network for Urban Impervious Surface Extraction Based on
Cross Fusion of Optical and SAR Images", IEEE JSTARS 16, 2023, doi:10.1109/JSTARS.2023.3250461, Sec. III-A, Fig. 5.

Three branches (Sec. III-A):

- **optical** and **SAR specific-feature subnetworks**: each a full :class:`~crofuse.model.unet.UNet` with its own
  head (outputs ``S_optical``, ``S_SAR`` of eq. (11));
- **shared-feature subnetwork**: its encoder level ``i`` (i = 1..5) is a fusion module (the CFM,
  :class:`~crofuse.model.blocks.CrossFusionModule`) taking the optical and SAR encoder features of level ``i`` and
  the previous shared feature; its decoder is a UNet decoder whose skips are the five shared-encoder features, with
  an MFA (:class:`~crofuse.model.blocks.MultimodalFeatureAggregation`) after every up block that aggregates the
  optical and SAR decoder features of the same level; its head gives ``S_shared``, the model's prediction.

Decisions the paper leaves open (each documented in ``docs/model.md``):

1. **Previous feature of the shared encoder.** "The features (F_shared) of the previous layer of the shared
   features learning subnetwork encoder" is read as the previous level's CFM output, 2x2 max pooled to the current
   resolution (the shared encoder has no conv blocks of its own: "the features of the CFM output are propagated to
   the next layer of the shared features learning subnetwork"). Level 1 has no previous level. ``first_shared``
   chooses what it gets: ``"none"`` (default): nothing, the first CFM skips its last concat + conv and outputs the
   fused feature; ``"stem"``: a :class:`~crofuse.model.blocks.DoubleConv` on the stacked optical+SAR input (early
   fusion stem) is the previous feature of level 1.
2. **Upsampling** (``upsample``): ``"transpose"`` (default): 2x2 stride-2 transposed conv as in the original UNet;
   ``"bilinear"``: bilinear interpolation + 1x1 conv.
3. **ReLU on the logits** (``head_relu``): ``True`` (default) keeps the paper's "3x3 conv, BN, ReLU" last layer, so
   logits are >= 0 (a pixel whose two logits are both clipped to 0 gets probability 0.5); ``False`` uses a plain
   3x3 conv with bias. Both apply to all three heads. In a short measurement (``docs/model.md``) the ReLU head
   trained slower, ended lower and left ~11 % of pixels at exactly p = 0.5; ``False`` is recommended for maps.
4. **MFA placement**: one MFA after each of the four decoder up blocks (256, 128, 64, 32 channels at base 32), i.e.
   every level where the specific decoders have a feature of the same size.
5. **"CFM removed"** (``fusion="none"``, ablation cases 1 and 2): the shared encoder feature of level ``i`` is the
   elementwise sum ``F_opt_i + F_sar_i`` (:class:`~crofuse.model.blocks.SumFusion`, no parameters, no chain of
   previous shared features). **"CFM replaced by concatenation"** (``fusion="concat"``, case 4):
   :class:`~crofuse.model.blocks.ConcatFusion`, i.e. conv-BN-ReLU of ``concat(F_opt, F_sar)`` and the same
   previous-feature concat + conv as the CFM, so only the cross fusion itself (attention, product, maximum) differs.
6. **"MFA removed"** (``mfa=False``, cases 1 and 3): the shared decoder runs as a plain UNet decoder on the
   shared-encoder features; the specific decoders only feed their own heads (and the loss).
7. **SE reduction** ``r = 16`` (paper), with at least ``min(C, 8)`` hidden units: with C/16 the 32- and 64-channel
   levels would have 2 and 4 hidden ReLUs, which all die often enough to freeze the attention (seen in testing).
   Levels with >= 128 channels use exactly C/16.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from crofuse.model.blocks import (
    ConcatFusion,
    CrossFusionModule,
    DoubleConv,
    MultimodalFeatureAggregation,
    SegmentationHead,
    SumFusion,
)
from crofuse.model.unet import UNet, UNetDecoder, check_channels, check_spatial_size, encoder_channels

FUSION_MODES: tuple[str, ...] = ("cfm", "concat", "none")
FIRST_SHARED_MODES: tuple[str, ...] = ("none", "stem")


class CroFuseOutput(NamedTuple):
    """Logits ``(N, num_classes, H, W)`` of the three branches; ``shared`` is the model's prediction."""

    shared: Tensor
    optical: Tensor
    sar: Tensor


def main_logits(output: CroFuseOutput | Tensor) -> Tensor:
    """The logits to predict with: ``output.shared`` for CroFuseNet, the tensor itself for any other model."""
    if isinstance(output, CroFuseOutput):
        return output.shared
    if isinstance(output, Tensor):
        return output
    raise TypeError(f"expected a CroFuseOutput or a Tensor, got {type(output).__name__}")


class CroFuseNet(nn.Module):
    """CroFuseNet (Wu et al., IEEE JSTARS 2023, Fig. 5); see the module docstring for the open decisions.

    Args:
        optical_channels: optical bands (4: B02, B03, B04, B08).
        sar_channels: SAR bands (2: VV, VH).
        num_classes: classes (2: pervious 0, impervious 1).
        base_channels: channels of the first level (32 in the paper); levels are ``base * (1, 2, 4, 8, 16)``.
        fusion: ``"cfm"`` (paper), ``"concat"`` (ablation case 4) or ``"none"`` (cases 1, 2).
        mfa: use the MFA modules (paper) or not (cases 1, 3).
        upsample: ``"transpose"`` or ``"bilinear"``.
        head_relu: ReLU on the logits as in the paper, or a plain conv head.
        first_shared: what the first shared level gets as previous feature: ``"none"`` or ``"stem"``.
        reduction: SE reduction ratio ``r`` of the channel attention, eqs. (8)-(9).

    ``forward(optical, sar)`` returns a :class:`CroFuseOutput`; H and W must be multiples of 16.
    """

    def __init__(
        self,
        optical_channels: int = 4,
        sar_channels: int = 2,
        num_classes: int = 2,
        *,
        base_channels: int = 32,
        fusion: str = "cfm",
        mfa: bool = True,
        upsample: str = "transpose",
        head_relu: bool = True,
        first_shared: str = "none",
        reduction: int = 16,
    ) -> None:
        super().__init__()
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion={fusion!r} is not allowed; use one of {FUSION_MODES}")
        if first_shared not in FIRST_SHARED_MODES:
            raise ValueError(f"first_shared={first_shared!r} is not allowed; use one of {FIRST_SHARED_MODES}")
        if not isinstance(mfa, bool) or not isinstance(head_relu, bool):
            raise ValueError(f"mfa and head_relu must be booleans, got mfa={mfa!r}, head_relu={head_relu!r}")
        if fusion == "none" and first_shared != "none":
            raise ValueError("first_shared='stem' needs a fusion module that takes a previous feature; "
                             "with fusion='none' use first_shared='none'")
        self.optical_channels = optical_channels
        self.sar_channels = sar_channels
        self.num_classes = num_classes
        self.fusion_mode = fusion
        channels = encoder_channels(base_channels)

        self.optical = UNet(optical_channels, num_classes, base_channels=base_channels, upsample=upsample,
                            head_relu=head_relu)
        self.sar = UNet(sar_channels, num_classes, base_channels=base_channels, upsample=upsample,
                        head_relu=head_relu)

        self.shared_stem = DoubleConv(optical_channels + sar_channels, channels[0]) if first_shared == "stem" else None
        previous: list[int | None] = [channels[0] if first_shared == "stem" else None, *channels[:-1]]
        self.fusion = nn.ModuleList(
            _fusion_module(fusion, c, prev, reduction) for c, prev in zip(channels, previous, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.shared_decoder = UNetDecoder(base_channels=base_channels, upsample=upsample)
        self.mfa = (
            nn.ModuleList(MultimodalFeatureAggregation(c) for c in self.shared_decoder.channels) if mfa else None
        )
        self.shared_head = SegmentationHead(base_channels, num_classes, relu=head_relu)

    def forward(self, optical: Tensor, sar: Tensor) -> CroFuseOutput:
        check_spatial_size(optical, name="optical")
        check_spatial_size(sar, name="sar")
        check_channels(optical, self.optical_channels, name="optical")
        check_channels(sar, self.sar_channels, name="sar")
        if optical.shape[0] != sar.shape[0] or optical.shape[-2:] != sar.shape[-2:]:
            raise ValueError(
                f"optical {tuple(optical.shape)} and sar {tuple(sar.shape)} must share batch size and H, W"
            )
        optical_features = self.optical.encoder(optical)
        sar_features = self.sar.encoder(sar)

        # Shared encoder: one fusion module per level, fed the pooled previous output (decision 1).
        previous = self.shared_stem(torch.cat([optical, sar], dim=1)) if self.shared_stem is not None else None
        shared_features = []
        for i, (fuse, f_opt, f_sar) in enumerate(zip(self.fusion, optical_features, sar_features, strict=True)):
            if i > 0 and fuse.previous_channels is not None:
                previous = self.pool(shared_features[-1])
            shared_features.append(fuse(f_opt, f_sar, previous if fuse.previous_channels is not None else None))

        optical_decoded = self.optical.decoder(optical_features)
        sar_decoded = self.sar.decoder(sar_features)

        # Shared decoder: UNet up blocks on the shared skips, each followed by an MFA (decision 4).
        x = shared_features[-1]
        for j, (up, skip) in enumerate(zip(self.shared_decoder.ups, reversed(shared_features[:-1]), strict=True)):
            x = up(x, skip)
            if self.mfa is not None:
                x = self.mfa[j](x, optical_decoded[j], sar_decoded[j])

        return CroFuseOutput(
            shared=self.shared_head(x),
            optical=self.optical.head(optical_decoded[-1]),
            sar=self.sar.head(sar_decoded[-1]),
        )


def _fusion_module(mode: str, channels: int, previous: int | None, reduction: int) -> nn.Module:
    if mode == "cfm":
        return CrossFusionModule(channels, previous_channels=previous, reduction=reduction)
    if mode == "concat":
        return ConcatFusion(channels, previous_channels=previous)
    return SumFusion()


__all__ = ["FIRST_SHARED_MODES", "FUSION_MODES", "CroFuseNet", "CroFuseOutput", "main_logits"]
