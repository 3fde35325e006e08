"""Per-band normalisation statistics of the training split, computed in one streaming pass.

Each patch contributes its per-band count, mean and sum of squared deviations, merged with Chan et al.'s parallel
update, so memory stays constant and the result matches ``numpy.nanmean/nanstd`` over all train pixels. Missing
pixels (NaN, or a file's nodata value) are excluded. The statistics end up in the checkpoint's model card
(``docs/architecture.md``: normalisation lives in the card, not in the data).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crofuse.errors import PatchDatasetError

if TYPE_CHECKING:
    from crofuse.data.patches import PatchDataset, PatchUnits
    from crofuse.normalization import Normalization


@dataclass
class RunningBandStats:
    """Streaming per-band mean and variance (Chan et al. 1979 pairwise merge), excluding NaN."""

    bands: int
    count: np.ndarray = field(init=False)
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.count = np.zeros(self.bands, dtype=np.float64)
        self.mean = np.zeros(self.bands, dtype=np.float64)
        self.m2 = np.zeros(self.bands, dtype=np.float64)

    def update(self, data: np.ndarray) -> None:
        """Add a ``(bands, ...)`` array; NaN values are skipped."""
        flat = np.asarray(data, dtype=np.float64).reshape(self.bands, -1)
        finite = np.isfinite(flat)
        n_b = finite.sum(axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = np.where(finite, flat, 0.0).sum(axis=1) / np.maximum(n_b, 1)
            m2_b = (np.where(finite, flat - mean_b[:, None], 0.0) ** 2).sum(axis=1)
        total = self.count + n_b
        delta = mean_b - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(total > 0, n_b / np.maximum(total, 1), 0.0)
            self.m2 = self.m2 + m2_b + delta**2 * self.count * frac
        self.mean = self.mean + delta * frac
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0)."""
        return np.sqrt(self.m2 / np.maximum(self.count, 1))


def compute_normalization(
    dataset: PatchDataset | str | Path,
    *,
    units: PatchUnits | None = None,
    max_patches: int | None = None,
    min_std: float = 1e-6,
    progress: bool = False,
) -> Normalization:
    """Per-band mean/std of the train split of a patch dataset (or of the given dataset's split).

    Pass a dataset root to use its ``train`` split. Raises :class:`PatchDatasetError` when a band has no valid
    pixel at all or is constant (its std would divide by zero), naming the band.
    """
    from crofuse import OPTICAL_BANDS, SAR_BANDS
    from crofuse.data.patches import PatchDataset, PatchUnits
    from crofuse.normalization import Normalization

    if not isinstance(dataset, PatchDataset):
        dataset = PatchDataset(dataset, "train", units=units or PatchUnits(), max_patches=max_patches)
    optical = RunningBandStats(len(OPTICAL_BANDS))
    sar = RunningBandStats(len(SAR_BANDS))
    indices: Iterable[int] = range(len(dataset) if max_patches is None else min(max_patches, len(dataset)))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="normalisation statistics", unit="patch")
    for i in indices:
        patch = dataset.read(i)
        optical.update(patch.optical)
        sar.update(patch.sar)
    where = f"{dataset.root / dataset.split}"
    for name, stats, bands in (("optical", optical, OPTICAL_BANDS), ("sar", sar, SAR_BANDS)):
        for b, band in enumerate(bands):
            if stats.count[b] == 0:
                raise PatchDatasetError(f"{name} band {band} has no valid pixel in {where}; every value is NaN/nodata")
            if stats.std[b] < min_std:
                raise PatchDatasetError(
                    f"{name} band {band} is constant ({stats.mean[b]:g}) across {where}; it cannot be standardised"
                )
    return Normalization(
        optical_mean=[float(v) for v in optical.mean],
        optical_std=[float(v) for v in optical.std],
        sar_mean=[float(v) for v in sar.mean],
        sar_std=[float(v) for v in sar.std],
    )
