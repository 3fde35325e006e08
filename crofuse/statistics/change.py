"""Mapped area and change of binary impervious maps (pure functions on arrays).

Every function takes the same optional ``aoi_mask`` (True inside the AOI) and ignores the pixels outside it, so all
figures of a city-year are computed on the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crofuse import IMPERVIOUS, NODATA_LABEL, PERVIOUS
from crofuse.errors import DataError
from crofuse.statistics.area import M2_PER_KM2

NO_CHANGE, GAIN, LOSS = 0, 1, 2
"""Codes of ``change.tif``; 255 (:data:`crofuse.NODATA_LABEL`) is nodata."""


@dataclass(frozen=True)
class AreaStatistics:
    """Impervious area of one map, in km² on the ellipsoid.

    ``aoi_km2`` is the area of all pixels inside the AOI (valid or not), ``valid_km2`` the part with a map value.
    """

    impervious_km2: float
    valid_km2: float
    aoi_km2: float
    naive_impervious_km2: float

    @property
    def fraction_of_aoi(self) -> float:
        return self.impervious_km2 / self.aoi_km2 if self.aoi_km2 > 0 else math.nan

    @property
    def fraction_of_valid(self) -> float:
        return self.impervious_km2 / self.valid_km2 if self.valid_km2 > 0 else math.nan


def check_labels(values: np.ndarray, name: str) -> None:
    """Refuse anything but a binary impervious map (1, 0, 255)."""
    bad = ~np.isin(values, (IMPERVIOUS, PERVIOUS, NODATA_LABEL))
    if bad.any():
        raise DataError(
            f"{name} holds values other than {IMPERVIOUS} (impervious), {PERVIOUS} (pervious) and "
            f"{NODATA_LABEL} (nodata), e.g. {np.unique(values[bad])[:5].tolist()}; pass the binary impervious map, "
            "not the probability map."
        )


def _inside(shape: tuple[int, ...], aoi_mask: np.ndarray | None) -> np.ndarray:
    if aoi_mask is None:
        return np.ones(shape, bool)
    aoi_mask = np.asarray(aoi_mask, bool)
    if aoi_mask.shape != shape:
        raise DataError(f"AOI mask shape {aoi_mask.shape} and map shape {shape} differ.")
    return aoi_mask


def impervious_area(
    impervious: np.ndarray,
    area: np.ndarray,
    *,
    aoi_mask: np.ndarray | None = None,
    naive_area: np.ndarray | None = None,
) -> AreaStatistics:
    """Impervious, valid and AOI area of a map.

    Args:
        impervious: uint8 map, 1 impervious, 0 pervious, 255 nodata.
        area: per-pixel area in m² (:func:`~crofuse.statistics.area.pixel_area`), same shape.
        aoi_mask: optional bool mask, True inside the AOI; pixels outside are ignored. Default: the whole grid.
        naive_area: optional per-pixel map-plane area (:func:`~crofuse.statistics.area.naive_pixel_area`) for
            ``naive_impervious_km2``.
    """
    impervious = np.asarray(impervious)
    if impervious.shape != area.shape:
        raise DataError(f"Map shape {impervious.shape} and pixel-area shape {area.shape} differ.")
    check_labels(impervious, "The impervious map")
    inside = _inside(impervious.shape, aoi_mask)
    is_imp = (impervious == IMPERVIOUS) & inside
    valid = (impervious != NODATA_LABEL) & inside
    naive = area if naive_area is None else naive_area
    return AreaStatistics(
        impervious_km2=float(area[is_imp].sum() / M2_PER_KM2),
        valid_km2=float(area[valid].sum() / M2_PER_KM2),
        aoi_km2=float(area[inside].sum() / M2_PER_KM2),
        naive_impervious_km2=float(naive[is_imp].sum() / M2_PER_KM2),
    )


def change_map(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Change codes between two binary maps on the same grid.

    0 no change, 1 gain (pervious → impervious), 2 loss (impervious → pervious), 255 where either map is nodata.
    """
    previous = np.asarray(previous)
    current = np.asarray(current)
    if previous.shape != current.shape:
        raise DataError(
            f"Cannot compare maps of shapes {previous.shape} and {current.shape}: map both years on the same grid "
            "(same AOI and resolution)."
        )
    check_labels(previous, "The previous year's map")
    check_labels(current, "The current year's map")
    out = np.full(current.shape, NO_CHANGE, dtype="uint8")
    out[(previous == PERVIOUS) & (current == IMPERVIOUS)] = GAIN
    out[(previous == IMPERVIOUS) & (current == PERVIOUS)] = LOSS
    out[(previous == NODATA_LABEL) | (current == NODATA_LABEL)] = NODATA_LABEL
    return out


@dataclass(frozen=True)
class ChangeStatistics:
    """Gain, loss and net change in km² on the ellipsoid."""

    gain_km2: float
    loss_km2: float

    @property
    def net_km2(self) -> float:
        return self.gain_km2 - self.loss_km2


def change_area(change: np.ndarray, area: np.ndarray, *, aoi_mask: np.ndarray | None = None) -> ChangeStatistics:
    """Gain and loss area of a change map (:func:`change_map`)."""
    change = np.asarray(change)
    inside = _inside(change.shape, aoi_mask)
    return ChangeStatistics(
        gain_km2=float(area[(change == GAIN) & inside].sum() / M2_PER_KM2),
        loss_km2=float(area[(change == LOSS) & inside].sum() / M2_PER_KM2),
    )


def disagreement_area(
    mapped: np.ndarray, reference: np.ndarray, area: np.ndarray, *, aoi_mask: np.ndarray | None = None
) -> tuple[float, float]:
    """Commission and omission area (km²) of a map against reference labels, inside the AOI where both are valid.

    Commission: mapped impervious, reference pervious. Omission: the reverse. Their sum bounds how far any area or
    change figure computed from the map can be from the one computed from the reference.
    """
    mapped, reference = np.asarray(mapped), np.asarray(reference)
    both = (mapped != NODATA_LABEL) & (reference != NODATA_LABEL) & _inside(mapped.shape, aoi_mask)
    commission = both & (mapped == IMPERVIOUS) & (reference == PERVIOUS)
    omission = both & (mapped == PERVIOUS) & (reference == IMPERVIOUS)
    return float(area[commission].sum() / M2_PER_KM2), float(area[omission].sum() / M2_PER_KM2)


__all__ = [
    "GAIN",
    "LOSS",
    "NO_CHANGE",
    "AreaStatistics",
    "ChangeStatistics",
    "change_area",
    "change_map",
    "check_labels",
    "disagreement_area",
    "impervious_area",
]
