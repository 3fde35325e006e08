"""The paper's UNet (Sec. III-A-1; Ronneberger et al. 2015) and the :class:`ModalityInput` adapter.

The same :class:`UNet` is (a) each specific-feature branch of CroFuseNet and (b) the UNet baselines: early fusion
(optical and SAR stacked, 6 channels, paper Sec. IV-A-2), optical only and SAR only (Sec. V-B). The baselines get
CroFuseNet's ``forward(optical, sar)`` signature through :class:`ModalityInput`, so trainers, metrics and the
predictor treat every model alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from crofuse.model.blocks import DoubleConv, SegmentationHead, UpBlock

DEPTH = 5
"""Encoder blocks; the feature maps shrink by ``2**(DEPTH-1) = 16`` (128x128 -> 8x8)."""

SIZE_MULTIPLE = 2 ** (DEPTH - 1)
"""Input height and width must be multiples of this."""

MODALITIES: tuple[str, ...] = ("optical", "sar")


def encoder_channels(base_channels: int = 32) -> tuple[int, ...]:
    """Channels of the five encoder levels: ``(32, 64, 128, 256, 512)`` scaled by ``base_channels / 32``."""
    if base_channels < 1:
        raise ValueError(f"base_channels must be a positive integer, got {base_channels}")
    return tuple(base_channels * 2**i for i in range(DEPTH))


def check_spatial_size(x: Tensor, *, name: str = "input") -> None:
    """Raise ``ValueError`` unless ``x`` is ``(N, C, H, W)`` with ``H`` and ``W`` multiples of 16."""
    if x.ndim != 4:
        raise ValueError(f"{name} must be a 4-D tensor (N, C, H, W); got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h == 0 or w == 0:
        raise ValueError(
            f"{name} is {h}x{w} pixels, but height and width must be positive multiples of {SIZE_MULTIPLE} "
            f"(four 2x2 poolings); pad or crop the patch, e.g. to {_round_up(h)}x{_round_up(w)}"
        )


def _round_up(n: int) -> int:
    return max(SIZE_MULTIPLE, -(-n // SIZE_MULTIPLE) * SIZE_MULTIPLE)


def check_channels(x: Tensor, expected: int, *, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` has ``expected`` channels (dim 1)."""
    if x.ndim >= 2 and x.shape[1] != expected:
        raise ValueError(f"{name} has {x.shape[1]} channels but the model was built for {expected}")


class UNetEncoder(nn.Module):
    """Five :class:`DoubleConv` blocks with 2x2 max pooling between them; returns all five feature maps."""

    def __init__(self, in_channels: int, *, base_channels: int = 32) -> None:
        super().__init__()
        channels = encoder_channels(base_channels)
        self.channels = channels
        self.blocks = nn.ModuleList(
            DoubleConv(c_in, c_out) for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True)
        )
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            features.append(x)
        return features


class UNetDecoder(nn.Module):
    """Four :class:`UpBlock` steps from the deepest encoder feature back to ``base_channels`` channels.

    ``forward`` returns the output of every step, coarse to fine (256, 128, 64, 32 channels at base 32): CroFuseNet
    feeds these to its MFA modules.
    """

    def __init__(self, *, base_channels: int = 32, upsample: str = "transpose") -> None:
        super().__init__()
        channels = encoder_channels(base_channels)
        self.channels = tuple(reversed(channels[:-1]))
        self.ups = nn.ModuleList(
            UpBlock(c_in, c_skip, c_skip, upsample=upsample)
            for c_in, c_skip in zip(reversed(channels[1:]), reversed(channels[:-1]), strict=True)
        )

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        x = features[-1]
        outputs = []
        for up, skip in zip(self.ups, reversed(features[:-1]), strict=True):
            x = up(x, skip)
            outputs.append(x)
        return outputs


class UNet(nn.Module):
    """The paper's UNet (Sec. III-A-1): encoder of five blocks of two 3x3 conv + BN + ReLU (32..512 channels),
    2x2 max pooling, four up + conv decoder blocks with skip connections back to 32 channels, and a 3x3
    conv + BN (+ ReLU) head giving ``(N, num_classes, H, W)`` logits.

    Args:
        in_channels: input bands (4 optical, 2 SAR, 6 stacked).
        num_classes: output classes (2: pervious, impervious).
        base_channels: channels of the first level; 32 in the paper.
        upsample: ``"transpose"`` or ``"bilinear"``, see :class:`~crofuse.model.blocks.UpBlock`.
        head_relu: keep the paper's ReLU on the logits, see :class:`~crofuse.model.blocks.SegmentationHead`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int = 2,
        *,
        base_channels: int = 32,
        upsample: str = "transpose",
        head_relu: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.encoder = UNetEncoder(in_channels, base_channels=base_channels)
        self.decoder = UNetDecoder(base_channels=base_channels, upsample=upsample)
        self.head = SegmentationHead(base_channels, num_classes, relu=head_relu)

    def forward(self, x: Tensor) -> Tensor:
        check_spatial_size(x)
        check_channels(x, self.in_channels, name="input")
        return self.head(self.decoder(self.encoder(x))[-1])


class ModalityInput(nn.Module):
    """Give a single-input network CroFuseNet's ``forward(optical, sar)``.

    ``modalities=("optical", "sar")`` feeds ``cat([optical, sar], dim=1)`` (early fusion), ``("optical",)`` only
    the optical bands, ``("sar",)`` only the SAR bands. The wrapped network is ``self.net``.
    """

    def __init__(self, net: nn.Module, modalities: Sequence[str]) -> None:
        super().__init__()
        modalities = tuple(modalities)
        allowed = {("optical", "sar"), ("optical",), ("sar",)}
        if modalities not in allowed:
            raise ValueError(f"modalities={modalities!r} is not allowed; use one of {sorted(allowed)}")
        self.net = net
        self.modalities = modalities

    def forward(self, optical: Tensor | None, sar: Tensor | None) -> Tensor:
        inputs = {"optical": optical, "sar": sar}
        missing = [m for m in self.modalities if inputs[m] is None]
        if missing:
            raise ValueError(f"this model reads {self.modalities} but {missing} was None")
        if self.modalities == ("optical", "sar"):
            if optical.shape[-2:] != sar.shape[-2:] or optical.shape[0] != sar.shape[0]:
                raise ValueError(
                    f"optical {tuple(optical.shape)} and sar {tuple(sar.shape)} must share batch size and H, W"
                )
            return self.net(torch.cat([optical, sar], dim=1))
        return self.net(inputs[self.modalities[0]])


__all__ = [
    "DEPTH",
    "MODALITIES",
    "SIZE_MULTIPLE",
    "ModalityInput",
    "UNet",
    "UNetDecoder",
    "UNetEncoder",
    "check_channels",
    "check_spatial_size",
    "encoder_channels",
]
