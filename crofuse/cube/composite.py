"""Seasonal composites: masked Sentinel-2 reflectance median and Sentinel-1 mean backscatter in dB.

The paper (section II-A) averages all June acquisitions in Google Earth Engine to suppress noise, Sentinel-1 speckle
above all, and uses Sentinel-1 in dB. Here:

- Sentinel-2: pixels whose SCL class is in the mask (default no data, saturated, cloud shadow, cloud medium/high,
  thin cirrus) or whose DN is 0 (no data) are dropped; ``reflectance = (DN - offset) / 10000`` where
  ``offset = 1000`` for items with ``s2:processing_baseline >= 04.00`` (read per item, never guessed from the
  date); the per-pixel median (or mean) over clear acquisitions is the composite and their number ``optical_count``.
- Sentinel-1: the mean of linear gamma0 over all acquisitions, then ``10 log10`` (averaging in dB would bias it
  low); ``sar_count`` is the number of acquisitions.

Slices of the same acquisition (adjacent tiles or frames of one pass on one solar day) are mosaicked first, so an
overlap is counted once.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from crofuse.errors import CatalogError

if TYPE_CHECKING:
    import pystac
    import xarray as xr

    from crofuse.cube.profiles import CatalogProfile

DN_SCALE = 10000.0
BASELINE_OFFSET_DN = 1000
OFFSET_BASELINE = (4, 0)
"""Processing baseline from which Sentinel-2 L2A DN carry BOA_ADD_OFFSET = -1000 (products from 2022-01-25 on)."""


def parse_baseline(value: object) -> tuple[int, int]:
    """``"04.00" -> (4, 0)``; ``"05.11" -> (5, 11)``. Raises ``ValueError`` on anything else."""
    text = str(value).strip()
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def dn_offsets(items: Sequence[pystac.Item], profile: CatalogProfile) -> np.ndarray:
    """Per-item DN offset to subtract: 1000 where the processing baseline is >= 04.00, else 0.

    Items whose catalog says it already removed the offset (``profile.offset_applied_property`` true) get 0. A
    missing or unreadable baseline is an error: guessing from the date is what mixes harmonised and raw scenes.
    """
    out = np.zeros(len(items), dtype="int32")
    for i, it in enumerate(items):
        if profile.offset_applied_property and it.properties.get(profile.offset_applied_property) is True:
            continue
        raw = it.properties.get(profile.baseline_property)
        try:
            baseline = parse_baseline(raw)
        except (TypeError, ValueError):
            raise CatalogError(
                f"Sentinel-2 item {it.id!r} has no usable {profile.baseline_property!r} (got {raw!r}); the +1000 DN "
                "offset of baseline 04.00+ cannot be removed without it. Fix the catalog or drop the item"
            ) from None
        if baseline >= OFFSET_BASELINE:
            out[i] = BASELINE_OFFSET_DN
    return out


def acquisition_keys(items: Sequence[pystac.Item]) -> list[str]:
    """``solar-day/platform/orbit-state`` per item: slices with equal keys are one acquisition."""
    keys = []
    for it in items:
        when = it.datetime or it.common_metadata.start_datetime
        if when is None:
            raise CatalogError(f"item {it.id!r} has no datetime")
        lon = (it.bbox[0] + it.bbox[2]) / 2 if it.bbox else 0.0
        solar = (when + dt.timedelta(hours=lon / 15.0)).date().isoformat()
        platform = str(it.properties.get("platform", ""))
        orbit = str(it.properties.get("sat:orbit_state", ""))
        rel = str(it.properties.get("sat:relative_orbit", ""))
        keys.append(f"{solar}/{platform}/{orbit}/{rel}")
    return keys


def mosaic_acquisitions(da: xr.DataArray, keys: Sequence[str]) -> xr.DataArray:
    """First valid (non-NaN) value per pixel among slices of the same acquisition; dim ``time`` is kept."""
    if len(set(keys)) == len(keys):
        return da
    grouped = da.assign_coords(acquisition=("time", list(keys))).groupby("acquisition").first(skipna=True)
    return grouped.rename(acquisition="time")


def optical_reflectance(
    dn: xr.DataArray, scl: xr.DataArray, *, offsets: np.ndarray, scl_mask: Sequence[int]
) -> xr.DataArray:
    """Surface reflectance (float32, NaN where not clear) from DN ``(time, band, y, x)`` and SCL ``(time, y, x)``."""
    import xarray as xr

    clear = ~scl.isin(list(scl_mask)) & (dn != 0).all("band")
    off = xr.DataArray(offsets.astype("float32"), dims="time", coords={"time": dn["time"]})
    refl = ((dn.astype("float32") - off) / np.float32(DN_SCALE)).clip(min=0)
    return refl.where(clear).astype("float32")


def sar_linear(lin: xr.DataArray, *, nodata: float | None = None) -> xr.DataArray:
    """Linear gamma0 with every non-observation (NaN, <= 0, the catalog's nodata value) set to NaN."""
    ok = np.isfinite(lin) & (lin > 0)
    if nodata is not None:
        ok = ok & (lin != nodata)
    return lin.where(ok.all("band")).astype("float32")


def _nanreduce(x: np.ndarray, *, reducer: str, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        fn = np.nanmedian if reducer == "median" else np.nanmean
        return fn(x, axis=axis).astype("float32")


def temporal_reduce(da: xr.DataArray, *, reducer: str) -> xr.DataArray:
    """NaN-skipping median or mean over ``time``; the time axis is brought into one dask chunk first."""
    import xarray as xr

    da = da.chunk({"time": -1}) if da.chunks else da
    return xr.apply_ufunc(
        _nanreduce,
        da,
        input_core_dims=[["time"]],
        kwargs={"reducer": reducer, "axis": -1},
        dask="parallelized",
        output_dtypes=[np.float32],
    )


def observation_count(da: xr.DataArray) -> xr.DataArray:
    """Number of slices with data at each pixel (``uint16``)."""
    return da.notnull().all("band").sum("time").astype("uint16")


def optical_composite(refl: xr.DataArray, *, reducer: str = "median") -> tuple[xr.DataArray, xr.DataArray]:
    """``(optical(band, y, x) float32, optical_count(y, x))`` from clear reflectance ``(time, band, y, x)``."""
    return temporal_reduce(refl, reducer=reducer), observation_count(refl)


def sar_composite(lin: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """``(sar(band, y, x) float32 dB, sar_count(y, x))``: mean linear power over the season, then 10 log10."""
    mean = temporal_reduce(lin, reducer="mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        db = (10.0 * np.log10(mean)).astype("float32")
    return db, observation_count(lin)


__all__ = [
    "acquisition_keys",
    "dn_offsets",
    "mosaic_acquisitions",
    "observation_count",
    "optical_composite",
    "optical_reflectance",
    "parse_baseline",
    "sar_composite",
    "sar_linear",
]
