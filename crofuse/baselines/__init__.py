"""Comparison methods of the paper (IV-A2): RF and SVM per pixel, FCN, HRNet and DeepLabv3+ as deep baselines.

Importing this package registers the deep baselines in the model registry of :mod:`crofuse.model` under ``"fcn"``,
``"hrnet"`` and ``"deeplabv3plus"``. As in the paper, their input is the optical and SAR bands concatenated into one
6-band image ("the input of these comparison methods is multichannel data formed by directly concatenating optical and
SAR images"), so each registered module takes ``forward(optical, sar)`` through :class:`crofuse.model.ModalityInput`.
The early-fusion and single-modality UNets live in :mod:`crofuse.model` itself.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from crofuse.baselines.deeplab import DeepLabV3Plus
from crofuse.baselines.fcn import FCN8s
from crofuse.baselines.hrnet import HRNet
from crofuse.baselines.pixel import (
    FEATURE_NAMES,
    PixelClassifier,
    PixelClassifierConfig,
    iter_patches,
    list_patches,
    pixel_features,
    sample_training_pixels,
    train_pixel_classifier,
)
from crofuse.model import ModalityInput, register_model

__all__ = [
    "FEATURE_NAMES",
    "DeepLabV3Plus",
    "FCN8s",
    "HRNet",
    "PixelClassifier",
    "PixelClassifierConfig",
    "iter_patches",
    "list_patches",
    "pixel_features",
    "sample_training_pixels",
    "train_pixel_classifier",
]

_FUSED = ("optical", "sar")


@register_model("fcn")
def fcn(*, optical_channels: int, sar_channels: int, num_classes: int, **options: Any) -> nn.Module:
    """FCN-8s on a VGG-like encoder over the concatenated optical + SAR bands (options: :class:`FCN8s`)."""
    return ModalityInput(FCN8s(optical_channels + sar_channels, num_classes, **options), _FUSED)


@register_model("hrnet")
def hrnet(*, optical_channels: int, sar_channels: int, num_classes: int, **options: Any) -> nn.Module:
    """HRNetV2 (W18-like) over the concatenated optical + SAR bands (options: :class:`HRNet`)."""
    return ModalityInput(HRNet(optical_channels + sar_channels, num_classes, **options), _FUSED)


@register_model("deeplabv3plus")
def deeplabv3plus(*, optical_channels: int, sar_channels: int, num_classes: int, **options: Any) -> nn.Module:
    """DeepLabv3+ with a ResNet-style encoder over the concatenated optical + SAR bands (options: :class:`DeepLabV3Plus`)."""
    return ModalityInput(DeepLabV3Plus(optical_channels + sar_channels, num_classes, **options), _FUSED)
