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

Physically impossible values (a damaged tile that still decodes, a broken product) are never averaged in: they
become nodata and are reported per item and asset (:func:`impossible_windows`, written with the cube in the same
dask graph, no extra pass over the data):

- Sentinel-2 surface reflectance above :data:`REFLECTANCE_MAX` on a pixel the SCL calls clear. L2A reflectance of
  natural surfaces lies within 0-1; values above 1 come from specular reflection, sun-facing slopes and bright
  targets (clouds, snow) and Sen2Cor clips its output at DN 32767 (ESA STEP forum, Sen2Cor team, "Sentinel-2 L2A
  saturation", 2024); DN 0 is nodata, 65535 saturated (product specification). The lower end needs no check: the
  encoding cannot go below -0.1 (DN 1 with the +1000 offset), and dark targets legitimately reach it.
- SCL codes outside 0-11 (the Sen2Cor legend has 12 classes).
- Sentinel-1 gamma0 that is negative, infinite, or outside :data:`GAMMA0_DB_BOUNDS`. Power cannot be negative; the
  instrument's noise floor is -22 dB (NESZ, ESA Sentinel-1 SAR performance specification), so -60 dB is far below
  anything measured; +40 dB is ~30 dB above the brightest urban double bounce (+8 dB typical). NaN, 0 and the
  catalog's nodata value stay non-observations, as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from crofuse.errors import CatalogError

if TYPE_CHECKING:
    import pystac
    import xarray as xr

    from crofuse.cube.profiles import CatalogProfile

DN_SCALE = 10000.0
REFLECTANCE_MAX = 1.5
"""Upper bound of physically possible L2A surface reflectance on clear pixels: 1 plus a 50 % margin for specular and
bright targets (see the module docstring for sources)."""
SCL_CLASSES = tuple(range(12))
"""The Sen2Cor scene classification legend: 0 no data ... 11 snow."""
GAMMA0_DB_BOUNDS = (-60.0, 40.0)
"""Physically possible gamma0 (dB): 38 dB below the Sentinel-1 NESZ (-22 dB) to 40 dB."""
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
) -> tuple[xr.DataArray, xr.DataArray]:
    """Surface reflectance from DN ``(time, band, y, x)`` and SCL ``(time, y, x)``, and what was impossible.

    Returns ``(reflectance, impossible)``: reflectance is float32, NaN where not clear and wherever any band of the
    observation was impossible; ``impossible`` is a bool ``(time, band, y, x)`` whose band axis is the DN bands
    plus ``"SCL"``: reflectance above :data:`REFLECTANCE_MAX` on clear pixels, SCL codes outside 0-11.
    """
    import xarray as xr

    has_data = (dn != 0).all("band")
    scl_bad = scl > max(SCL_CLASSES)
    clear = ~scl.isin(list(scl_mask)) & ~scl_bad & has_data
    off = xr.DataArray(offsets.astype("float32"), dims="time", coords={"time": dn["time"]})
    raw = (dn.astype("float32") - off) / np.float32(DN_SCALE)
    too_bright = clear & (raw > np.float32(REFLECTANCE_MAX))
    refl = raw.clip(min=0).where(clear & ~too_bright.any("band")).astype("float32").transpose(*dn.dims)
    impossible = xr.concat([too_bright.transpose(*dn.dims), scl_bad.expand_dims(band=["SCL"]).transpose(*dn.dims)],
                           dim="band")
    return refl, impossible


def sar_linear(lin: xr.DataArray, *, nodata: float | None = None) -> tuple[xr.DataArray, xr.DataArray]:
    """Linear gamma0 with non-observations and impossible values set to NaN, and where values were impossible.

    Returns ``(gamma0, impossible)``. Non-observations (NaN, 0, the catalog's nodata value) are NaN and not counted;
    impossible values (negative, infinite, outside :data:`GAMMA0_DB_BOUNDS`) are NaN and flagged in the bool
    ``impossible (time, band, y, x)``. An observation is dropped in both polarisations if either is missing or bad.
    """
    lo, hi = (np.float32(10.0 ** (b / 10.0)) for b in GAMMA0_DB_BOUNDS)
    missing = np.isnan(lin) | (lin == 0)
    if nodata is not None:
        missing = missing | (lin == nodata)
    impossible = ~missing & ~((lin >= lo) & (lin <= hi))  # also catches -inf, +inf and negative values
    ok = (~missing & ~impossible).all("band")
    return lin.where(ok).astype("float32"), impossible


def flagged_count(impossible: xr.DataArray) -> xr.DataArray:
    """Per pixel: how many acquisitions (items) had an impossible value in any band (``uint16``)."""
    return impossible.any("band").sum("time").astype("uint16")


def impossible_windows(impossible: xr.DataArray, window: int) -> xr.DataArray:
    """Impossible values per item, band and ``window x window`` block of the grid (``uint32``, dims ``time, band,
    window_y, window_x``): a handful of values spread over a scene is told apart from one damaged tile."""
    counts = impossible.transpose("time", "band", "y", "x").astype("uint8")
    counts = counts.coarsen(y=window, x=window, boundary="pad").sum()
    counts = counts.rename(y="window_y", x="window_x").drop_vars(["y", "x"], errors="ignore").astype("uint32")
    return counts.chunk(-1) if counts.chunks else counts


def _nanreduce(x: np.ndarray, *, reducer: str, axis: int) -> np.ndarray:
    """NaN-skipping median/mean along ``axis`` without warnings: all-NaN pixels are filled before the reduction
    and set back to NaN after it (``warnings.catch_warnings`` is not thread-safe, so it cannot be used under the
    threaded dask scheduler)."""
    empty = np.isnan(x).all(axis=axis)
    if empty.any():
        x = np.where(np.expand_dims(empty, axis), np.float32(0), x)
    fn = np.nanmedian if reducer == "median" else np.nanmean
    out = fn(x, axis=axis).astype("float32")
    out[empty] = np.nan
    return out


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
    "GAMMA0_DB_BOUNDS",
    "REFLECTANCE_MAX",
    "SCL_CLASSES",
    "acquisition_keys",
    "dn_offsets",
    "flagged_count",
    "impossible_windows",
    "mosaic_acquisitions",
    "observation_count",
    "optical_composite",
    "optical_reflectance",
    "parse_baseline",
    "sar_composite",
    "sar_linear",
]
