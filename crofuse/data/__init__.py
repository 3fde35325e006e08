"""WHU-IS style patch dataset, normalisation statistics and augmentation (paper II-B, IV-A)."""

from __future__ import annotations

from crofuse.data.augment import Augmentation
from crofuse.data.patches import (
    SPLITS,
    PatchDataset,
    PatchFiles,
    PatchUnits,
    RawPatch,
    as_tensors,
    collate_patches,
    discover_split,
    read_patch,
)
from crofuse.data.stats import RunningBandStats, compute_normalization

__all__ = [
    "SPLITS",
    "Augmentation",
    "PatchDataset",
    "PatchFiles",
    "PatchUnits",
    "RawPatch",
    "RunningBandStats",
    "as_tensors",
    "collate_patches",
    "compute_normalization",
    "discover_split",
    "read_patch",
]
