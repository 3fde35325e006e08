"""Comparison methods of the paper (IV-A2): RF and SVM per pixel, FCN, HRNet and DeepLabv3+ as deep baselines.

This package holds the networks and the per-pixel classifiers only; it does not import :mod:`crofuse.model`. The
model registry (:mod:`crofuse.model.registry`) registers the deep baselines explicitly under ``"fcn"``, ``"hrnet"``
and ``"deeplabv3plus"`` with typed factories. As in the paper, their input is the optical and SAR bands concatenated
into one 6-band image ("the input of these comparison methods is multichannel data formed by directly concatenating
optical and SAR images"), fed through :class:`crofuse.model.ModalityInput`. The early-fusion and single-modality
UNets live in :mod:`crofuse.model` itself.
"""

from __future__ import annotations

from crofuse.baselines.deeplab import DeepLabV3Plus, aspp_receptive_taps, scaled_aspp_rates
from crofuse.baselines.fcn import FCN8s
from crofuse.baselines.hrnet import HRNet
from crofuse.baselines.pixel import (
    FEATURE_NAMES,
    FEATURE_SETS,
    PixelClassifier,
    PixelClassifierConfig,
    iter_patches,
    list_patches,
    pixel_features,
    sample_training_pixels,
    train_pixel_classifier,
)

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SETS",
    "DeepLabV3Plus",
    "FCN8s",
    "HRNet",
    "PixelClassifier",
    "PixelClassifierConfig",
    "aspp_receptive_taps",
    "iter_patches",
    "list_patches",
    "pixel_features",
    "sample_training_pixels",
    "scaled_aspp_rates",
    "train_pixel_classifier",
]
