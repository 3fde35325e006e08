"""Impervious-surface area, change maps and the ``statistics.zarr`` / ``statistics.csv`` tables.

Everything here reads and writes local files only; the flows in :mod:`flows` call it after the maps are written.

Layout (see ``docs/architecture.md``)::

    <output>/<city>/<year>/impervious.tif    # written by tiling.predict_cube (1 impervious, 0 pervious, 255 nodata)
    <output>/<city>/<year>/reference.tif     # optional: ground-truth labels on the same grid (from the catalog)
    <output>/<city>/<year>/change.tif        # written here: 0 no change, 1 gain, 2 loss, 255 nodata
    <output>/<city>/<year>/statistics.json   # written here: one city-year record
    <output>/statistics.zarr                 # all records as an xarray Dataset indexed by (city, year)
    <output>/statistics.csv                  # the same table as CSV

Areas are true (ellipsoidal) areas, not pixel counts. A 10 m UTM pixel is 100 m² *on the map*, but UTM is conformal,
not equal-area: its point scale factor ``k`` is 0.9996 on the central meridian and grows to about 1.001 at the zone
edge, and areas scale by ``k²``. Counting UTM pixels therefore over-states areas near the zone edges and under-states
them near the central meridian by up to ~0.2 %, which is the same order as real year-to-year urban growth of a
mature city. :func:`pixel_area` divides every pixel's map area by the projection's areal scale at its centre
(``pyproj.Proj.get_factors().areal_scale``, evaluated on a coarse node grid and interpolated bilinearly, because it
varies smoothly), which gives the area on the WGS84 ellipsoid, the same number an equal-area reprojection would give
without resampling the map.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from crofuse import IMPERVIOUS, NODATA_LABEL, PERVIOUS
from crofuse.errors import DataError

NO_CHANGE, GAIN, LOSS = 0, 1, 2
"""Codes of ``change.tif``; 255 (:data:`crofuse.NODATA_LABEL`) is nodata."""

MAP_NAME = "impervious.tif"
REFERENCE_NAME = "reference.tif"
AOI_NAME = "aoi.geojson"
CHANGE_NAME = "change.tif"
RECORD_NAME = "statistics.json"
STATISTICS_ZARR = "statistics.zarr"
STATISTICS_CSV = "statistics.csv"

_M2_PER_KM2 = 1e6


# --------------------------------------------------------------------------------------------------------------------
# Pixel areas
# --------------------------------------------------------------------------------------------------------------------
def pixel_area(crs: Any, transform: Any, shape: tuple[int, int], *, max_nodes: int = 64) -> np.ndarray:
    """True area in m² of every pixel of a north-up grid, on the WGS84 ellipsoid.

    ``map area / areal scale`` at each pixel centre, where the areal scale of the projection comes from
    ``pyproj.Proj.get_factors`` (for UTM it is ``k²``, ``k`` the point scale factor). The scale is evaluated on at most
    ``max_nodes × max_nodes`` nodes spanning the grid and interpolated bilinearly to every pixel (it changes by less
    than 1e-6 across a 10 km block). Geographic CRSs (degrees) get the exact area of each row's cell on the
    ellipsoid instead.

    Args:
        crs: anything :class:`pyproj.CRS` accepts (``"EPSG:32650"``, a rasterio CRS, WKT).
        transform: the grid's affine transform (``rasterio``/``affine.Affine``), north-up (no rotation).
        shape: ``(height, width)`` in pixels.
        max_nodes: nodes per axis of the coarse scale grid.

    Returns:
        ``float64`` array of shape ``shape`` in m².
    """
    import pyproj

    crs = pyproj.CRS.from_user_input(crs)
    height, width = (int(s) for s in shape)
    if transform.b != 0 or transform.d != 0:
        raise DataError(f"pixel_area needs a north-up grid (no rotation); got transform {tuple(transform)[:6]}.")
    if height <= 0 or width <= 0:
        raise DataError(f"pixel_area needs a non-empty grid; got shape {shape}.")
    if crs.is_geographic:
        return _geographic_pixel_area(crs, transform, height, width)

    map_area = abs(transform.a * transform.e)  # m² per pixel in the projected plane
    rows = np.linspace(0.5, height - 0.5, min(height, max_nodes))
    cols = np.linspace(0.5, width - 0.5, min(width, max_nodes))
    cc, rr = np.meshgrid(cols, rows)
    x = transform.c + cc * transform.a
    y = transform.f + rr * transform.e
    to_lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_lonlat.transform(x, y)
    scale = np.asarray(pyproj.Proj(crs).get_factors(lon, lat).areal_scale, dtype="float64").reshape(cc.shape)
    if not np.all(np.isfinite(scale)):
        raise DataError(f"The projection {crs.to_string()} has no finite areal scale over this grid.")
    full = _bilinear(scale, rows, cols, height, width)
    return map_area / full


def _interp_weights(nodes: np.ndarray, n: int) -> np.ndarray:
    """``(n, len(nodes))`` matrix of linear-interpolation weights from node positions to pixel centres."""
    weights = np.zeros((n, len(nodes)))
    centres = np.arange(n) + 0.5
    if len(nodes) == 1:
        weights[:, 0] = 1.0
        return weights
    hi = np.clip(np.searchsorted(nodes, centres), 1, len(nodes) - 1)
    lo = hi - 1
    t = np.clip((centres - nodes[lo]) / (nodes[hi] - nodes[lo]), 0.0, 1.0)
    weights[np.arange(n), lo] = 1.0 - t
    weights[np.arange(n), hi] += t
    return weights


def _bilinear(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    """Separable linear interpolation of a node grid to every pixel centre."""
    return _interp_weights(rows, height) @ values @ _interp_weights(cols, width).T


def _geographic_pixel_area(crs: Any, transform: Any, height: int, width: int) -> np.ndarray:
    """Exact ellipsoidal area of lon/lat cells (all cells of a row have the same area)."""
    import pyproj

    geod = pyproj.Geod(ellps="WGS84") if crs.ellipsoid is None else pyproj.Geod(
        a=crs.ellipsoid.semi_major_metre, rf=crs.ellipsoid.inverse_flattening
    )
    row_area = np.empty(height)
    dx = abs(transform.a)
    for i in range(height):
        top = transform.f + i * transform.e
        bottom = top + transform.e
        lons = [0.0, dx, dx, 0.0]
        lats = [top, top, bottom, bottom]
        row_area[i] = abs(geod.polygon_area_perimeter(lons, lats)[0])
    return np.repeat(row_area[:, None], width, axis=1)


def naive_pixel_area(transform: Any, shape: tuple[int, int]) -> np.ndarray:
    """Map-plane pixel area in m² (``|a·e|`` for every pixel): what blind pixel counting assumes."""
    return np.full(tuple(int(s) for s in shape), abs(transform.a * transform.e), dtype="float64")


def grid_of(da: xr.DataArray) -> tuple[Any, Any, tuple[int, int]]:
    """``(crs, transform, (height, width))`` of a 2-D raster read with rioxarray."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    crs = da.rio.crs
    if crs is None:
        raise DataError("The raster has no CRS; impervious maps must carry their CRS (spatial_ref).")
    return crs, da.rio.transform(), (int(da.sizes["y"]), int(da.sizes["x"]))


# --------------------------------------------------------------------------------------------------------------------
# Area and change of single maps (pure functions on arrays)
# --------------------------------------------------------------------------------------------------------------------
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


def _check_labels(values: np.ndarray, name: str) -> None:
    bad = ~np.isin(values, (IMPERVIOUS, PERVIOUS, NODATA_LABEL))
    if bad.any():
        raise DataError(
            f"{name} holds values other than {IMPERVIOUS} (impervious), {PERVIOUS} (pervious) and "
            f"{NODATA_LABEL} (nodata), e.g. {np.unique(values[bad])[:5].tolist()}; pass the binary impervious map, "
            "not the probability map."
        )


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
        area: per-pixel area in m² (:func:`pixel_area`), same shape.
        aoi_mask: optional bool mask, True inside the AOI; pixels outside are ignored. Default: the whole grid.
        naive_area: optional per-pixel map-plane area (:func:`naive_pixel_area`) for ``naive_impervious_km2``.
    """
    impervious = np.asarray(impervious)
    if impervious.shape != area.shape:
        raise DataError(f"Map shape {impervious.shape} and pixel-area shape {area.shape} differ.")
    _check_labels(impervious, "The impervious map")
    inside = np.ones(impervious.shape, bool) if aoi_mask is None else np.asarray(aoi_mask, bool)
    is_imp = (impervious == IMPERVIOUS) & inside
    valid = (impervious != NODATA_LABEL) & inside
    naive = area if naive_area is None else naive_area
    return AreaStatistics(
        impervious_km2=float(area[is_imp].sum() / _M2_PER_KM2),
        valid_km2=float(area[valid].sum() / _M2_PER_KM2),
        aoi_km2=float(area[inside].sum() / _M2_PER_KM2),
        naive_impervious_km2=float(naive[is_imp].sum() / _M2_PER_KM2),
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
    _check_labels(previous, "The previous year's map")
    _check_labels(current, "The current year's map")
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
    inside = np.ones(change.shape, bool) if aoi_mask is None else np.asarray(aoi_mask, bool)
    return ChangeStatistics(
        gain_km2=float(area[(change == GAIN) & inside].sum() / _M2_PER_KM2),
        loss_km2=float(area[(change == LOSS) & inside].sum() / _M2_PER_KM2),
    )


def disagreement_area(mapped: np.ndarray, reference: np.ndarray, area: np.ndarray) -> tuple[float, float]:
    """Commission and omission area (km²) of a map against reference labels, where both are valid.

    Commission: mapped impervious, reference pervious. Omission: the reverse. Their sum bounds how far any area or
    change figure computed from the map can be from the one computed from the reference.
    """
    both = (mapped != NODATA_LABEL) & (reference != NODATA_LABEL)
    commission = both & (mapped == IMPERVIOUS) & (reference == PERVIOUS)
    omission = both & (mapped == PERVIOUS) & (reference == IMPERVIOUS)
    return float(area[commission].sum() / _M2_PER_KM2), float(area[omission].sum() / _M2_PER_KM2)


# --------------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------------
def read_map(path: Path) -> xr.DataArray:
    """Read a single-band uint8 map (impervious, reference or change COG) as a 2-D DataArray."""
    import rioxarray

    path = Path(path)
    if not path.exists():
        raise DataError(f"Map {path} does not exist; run the prediction for this city-year first.")
    da = rioxarray.open_rasterio(path, masked=False)
    if da.sizes.get("band", 1) != 1:
        raise DataError(f"{path} has {da.sizes['band']} bands; expected one.")
    return da.squeeze("band", drop=True).load()


def _same_grid(a: xr.DataArray, b: xr.DataArray) -> bool:
    ca, ta, sa = grid_of(a)
    cb, tb, sb = grid_of(b)
    return ca == cb and sa == sb and np.allclose(tuple(ta)[:6], tuple(tb)[:6])


def write_uint8_cog(data: np.ndarray, like: xr.DataArray, path: Path) -> Path:
    """Write a uint8 COG (nodata 255) on the grid of ``like``, atomically (temp name + rename)."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    da = xr.DataArray(np.asarray(data, dtype="uint8"), coords={"y": like["y"], "x": like["x"]}, dims=("y", "x"))
    da = da.rio.write_crs(like.rio.crs).rio.write_transform(like.rio.transform()).rio.write_nodata(NODATA_LABEL)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.tif")
    try:
        da.rio.to_raster(tmp, driver="COG", compress="DEFLATE", blocksize=256, overview_resampling="nearest")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass
class CityYearStatistics:
    """One row of ``statistics.csv``: a mapped city-year and its change against the previous mapped year.

    Change fields are NaN (and ``previous_year`` is -1) for the first mapped year of a city. ``reference_*`` fields
    are NaN when no reference labels were available for the city-year (or its previous year, for change fields).

    ``impervious_km2`` counts every validly mapped pixel, so a year with more cloud-masked pixels shows less area with
    no change on the ground. The ``*_common_km2`` fields compare the two years on the pixels valid in both
    (``common_valid_km2``), where ``impervious_common_km2 − previous_impervious_common_km2`` equals ``net_km2`` (up
    to rounding).
    """

    city: str
    year: int
    impervious_km2: float
    valid_km2: float
    aoi_km2: float
    fraction_of_aoi: float
    fraction_of_valid: float
    naive_impervious_km2: float
    previous_year: int = -1
    gain_km2: float = math.nan
    loss_km2: float = math.nan
    net_km2: float = math.nan
    common_valid_km2: float = math.nan
    impervious_common_km2: float = math.nan
    previous_impervious_common_km2: float = math.nan
    reference_impervious_km2: float = math.nan
    commission_km2: float = math.nan
    omission_km2: float = math.nan
    reference_gain_km2: float = math.nan
    reference_loss_km2: float = math.nan
    gain_error_km2: float = math.nan
    gain_error_bound_km2: float = math.nan
    map_mtime: float = field(default=math.nan, repr=False)

    @property
    def gain_within_model_error(self) -> bool | None:
        """``|gain − reference gain| ≤ disagreement of both years' maps`` (None without reference labels)."""
        if math.isnan(self.gain_error_km2) or math.isnan(self.gain_error_bound_km2):
            return None
        return abs(self.gain_error_km2) <= self.gain_error_bound_km2 + 1e-9


NUMERIC_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CityYearStatistics) if f.name not in ("city", "year"))


def mapped_years(output: Path, city: str) -> list[int]:
    """Years of ``city`` under ``output`` that have a finished impervious map."""
    root = Path(output) / city
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / MAP_NAME).exists())


def mapped_cities(output: Path) -> list[str]:
    """Cities under ``output`` with at least one finished impervious map."""
    output = Path(output)
    if not output.is_dir():
        return []
    return sorted(p.name for p in output.iterdir() if p.is_dir() and mapped_years(output, p.name))


def compute_city_year(output: Path, city: str, year: int) -> CityYearStatistics:
    """Statistics of one mapped city-year; writes ``change.tif`` and ``statistics.json`` in its folder.

    The previous mapped year is the latest earlier year with a finished map under ``output``. A ``reference.tif``
    next to a map (ground-truth labels on the same grid) adds the reference figures and the model's error. An
    ``aoi.geojson`` next to a map (the AOI polygon in lon/lat, written by the flow) restricts every figure to the
    pixels whose centre lies inside it; without it the whole map grid is the AOI.
    """
    folder = Path(output) / city / str(year)
    current = read_map(folder / MAP_NAME)
    crs, transform, shape = grid_of(current)
    area = pixel_area(crs, transform, shape)
    aoi_mask = aoi_mask_for(folder / AOI_NAME, crs=crs, transform=transform, shape=shape)
    cur = current.values
    stats = impervious_area(cur, area, aoi_mask=aoi_mask, naive_area=naive_pixel_area(transform, shape))
    record = CityYearStatistics(
        city=city,
        year=int(year),
        impervious_km2=stats.impervious_km2,
        valid_km2=stats.valid_km2,
        aoi_km2=stats.aoi_km2,
        fraction_of_aoi=stats.fraction_of_aoi,
        fraction_of_valid=stats.fraction_of_valid,
        naive_impervious_km2=stats.naive_impervious_km2,
        map_mtime=(folder / MAP_NAME).stat().st_mtime,
    )
    reference = _read_reference(folder, current)
    if reference is not None:
        ref_stats = impervious_area(reference, area, aoi_mask=aoi_mask)
        record.reference_impervious_km2 = ref_stats.impervious_km2
        record.commission_km2, record.omission_km2 = disagreement_area(cur, reference, area)

    earlier = [y for y in mapped_years(output, city) if y < int(year)]
    change_path = folder / CHANGE_NAME
    if not earlier:
        change_path.unlink(missing_ok=True)  # a stale change map from a since-deleted earlier year
    else:
        prev_year = earlier[-1]
        prev_folder = Path(output) / city / str(prev_year)
        previous = read_map(prev_folder / MAP_NAME)
        if not _same_grid(previous, current):
            raise DataError(
                f"{city}: the {prev_year} and {year} maps are on different grids; map every year of a city with the "
                "same AOI and resolution so change can be computed pixel by pixel."
            )
        change = change_map(previous.values, cur)
        write_uint8_cog(change, current, change_path)
        ch = change_area(change, area, aoi_mask=aoi_mask)
        record.previous_year = prev_year
        record.gain_km2, record.loss_km2, record.net_km2 = ch.gain_km2, ch.loss_km2, ch.net_km2
        common = (change != NODATA_LABEL) if aoi_mask is None else (change != NODATA_LABEL) & aoi_mask
        now = impervious_area(cur, area, aoi_mask=common)
        record.common_valid_km2, record.impervious_common_km2 = now.valid_km2, now.impervious_km2
        record.previous_impervious_common_km2 = impervious_area(previous.values, area, aoi_mask=common).impervious_km2
        prev_reference = _read_reference(prev_folder, current)
        if reference is not None and prev_reference is not None:
            ref_change = change_area(change_map(prev_reference, reference), area, aoi_mask=aoi_mask)
            record.reference_gain_km2 = ref_change.gain_km2
            record.reference_loss_km2 = ref_change.loss_km2
            record.gain_error_km2 = ch.gain_km2 - ref_change.gain_km2
            prev_comm, prev_om = disagreement_area(previous.values, prev_reference, area)
            record.gain_error_bound_km2 = prev_comm + prev_om + record.commission_km2 + record.omission_km2
    _write_json_atomic(folder / RECORD_NAME, _record_to_json(record))
    return record


def aoi_mask_for(path: Path, *, crs: Any, transform: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """Rasterise the AOI GeoJSON at ``path`` (lon/lat) onto a grid: True for pixels whose centre is inside."""
    path = Path(path)
    if not path.exists():
        return None
    import pyproj
    import shapely
    import shapely.geometry
    from rasterio.features import geometry_mask

    data = json.loads(path.read_text())
    geom = data.get("geometry", data) if data.get("type") == "Feature" else data
    shape_ll = shapely.geometry.shape(geom)
    to_map = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    shape_map = shapely.transform(shape_ll, lambda xy: np.column_stack(to_map.transform(xy[:, 0], xy[:, 1])))
    return geometry_mask([shape_map], out_shape=tuple(shape), transform=transform, invert=True)


def _read_reference(folder: Path, like: xr.DataArray) -> np.ndarray | None:
    path = folder / REFERENCE_NAME
    if not path.exists():
        return None
    ref = read_map(path)
    if not _same_grid(ref, like):
        raise DataError(f"{path} is not on the grid of {folder / MAP_NAME}; write reference labels on the map grid.")
    return ref.values


def _record_to_json(record: CityYearStatistics) -> dict[str, Any]:
    out = asdict(record)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def _record_from_json(data: dict[str, Any]) -> CityYearStatistics:
    kwargs = {f.name: data.get(f.name) for f in fields(CityYearStatistics) if f.name in data}
    for k, v in list(kwargs.items()):
        if v is None:
            kwargs[k] = math.nan
    return CityYearStatistics(**kwargs)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def load_record(output: Path, city: str, year: int) -> CityYearStatistics | None:
    """The stored record of a city-year, or None when none was written."""
    path = Path(output) / city / str(year) / RECORD_NAME
    if not path.exists():
        return None
    return _record_from_json(json.loads(path.read_text()))


def _is_current(output: Path, record: CityYearStatistics | None) -> bool:
    """A stored record is current when its map has not changed and its previous mapped year is still the same."""
    if record is None:
        return False
    folder = Path(output) / record.city / str(record.year)
    if (folder / MAP_NAME).stat().st_mtime != record.map_mtime:
        return False
    earlier = [y for y in mapped_years(output, record.city) if y < record.year]
    expected_prev = earlier[-1] if earlier else -1
    if expected_prev != record.previous_year:
        return False
    if expected_prev != -1:
        if math.isnan(record.common_valid_km2):  # written before the common-pixel figures existed
            return False
        prev = load_record(output, record.city, expected_prev)
        if prev is None or prev.map_mtime != (Path(output) / record.city / str(expected_prev) / MAP_NAME).stat().st_mtime:
            return False
    written = (folder / RECORD_NAME).stat().st_mtime
    for extra in (AOI_NAME, REFERENCE_NAME):
        if (folder / extra).exists() and (folder / extra).stat().st_mtime > written:
            return False
    return (folder / REFERENCE_NAME).exists() == (not math.isnan(record.reference_impervious_km2))


def update_statistics(output: Path, *, cities: Iterable[str] | None = None) -> xr.Dataset:
    """Refresh every city-year record under ``output`` and rewrite ``statistics.zarr`` and ``statistics.csv``.

    Records whose map, previous year or reference changed are recomputed (:func:`compute_city_year`); the others
    are reused. Both table files are written under temporary names and renamed into place, so a half-written table
    is never visible. Running it twice gives the same tables.

    Args:
        output: the output root holding ``<city>/<year>/impervious.tif``.
        cities: restrict the refresh to these cities; the tables always hold every mapped city.
    """
    output = Path(output)
    refresh = set(cities) if cities is not None else None
    with statistics_lock(output):  # flow runs of several city-years may finish at the same time
        records: list[CityYearStatistics] = []
        for city in mapped_cities(output):
            for year in mapped_years(output, city):
                record = load_record(output, city, year)
                if (refresh is None or city in refresh) and not _is_current(output, record):
                    record = compute_city_year(output, city, year)
                if record is None:
                    raise DataError(
                        f"{city} {year} has a map but no statistics; run update_statistics without a city filter."
                    )
                records.append(record)
        ds = records_to_dataset(records)
        write_statistics(ds, output)
    return ds


LOCK_NAME = ".statistics-lock"


@contextlib.contextmanager
def statistics_lock(output: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<output>/.statistics-lock``: one writer of the tables at a time.

    Concurrent flow runs (a process worker runs several at once) would otherwise race on the rename of
    ``statistics.zarr`` or drop each other's rows. The lock is released when the process exits, even on a crash.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def records_to_dataset(records: Sequence[CityYearStatistics]) -> xr.Dataset:
    """Records → Dataset with dims ``(city, year)``; missing city-years are NaN (``previous_year`` -1)."""
    cities = sorted({r.city for r in records})
    years = sorted({r.year for r in records})
    data = {
        name: np.full((len(cities), len(years)), -1 if name == "previous_year" else np.nan, dtype="float64")
        for name in NUMERIC_FIELDS
        if name != "map_mtime"
    }
    mapped = np.zeros((len(cities), len(years)), dtype=bool)
    for r in records:
        i, j = cities.index(r.city), years.index(r.year)
        mapped[i, j] = True
        for name in data:
            data[name][i, j] = getattr(r, name)
    ds = xr.Dataset(
        {name: (("city", "year"), values) for name, values in data.items()},
        coords={"city": np.array(cities, dtype=object), "year": np.array(years, dtype="int64")},
    )
    ds["previous_year"] = ds["previous_year"].astype("int64")
    ds["mapped"] = (("city", "year"), mapped)
    units = {n: "km2" for n in NUMERIC_FIELDS if n.endswith("_km2")}
    for name, unit in units.items():
        if name in ds:
            ds[name].attrs["units"] = unit
    ds["impervious_km2"].attrs["long_name"] = "impervious area on the WGS84 ellipsoid (equal-area corrected)"
    ds["naive_impervious_km2"].attrs["long_name"] = "impervious area from counting map pixels (not corrected)"
    ds["fraction_of_aoi"].attrs["long_name"] = "impervious fraction of the AOI"
    ds["fraction_of_valid"].attrs["long_name"] = "impervious fraction of the validly mapped area"
    ds["gain_km2"].attrs["long_name"] = "pervious to impervious since previous_year"
    ds["loss_km2"].attrs["long_name"] = "impervious to pervious since previous_year"
    ds.attrs["description"] = "crofuse impervious-surface statistics per city and year"
    return ds


def write_statistics(ds: xr.Dataset, output: Path) -> tuple[Path, Path]:
    """Write ``statistics.zarr`` and ``statistics.csv`` under ``output``, each replaced atomically."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    zarr_path = output / STATISTICS_ZARR
    tmp_dir = Path(tempfile.mkdtemp(prefix=".statistics.", dir=output))
    try:
        tmp_zarr = tmp_dir / STATISTICS_ZARR
        ds.to_zarr(tmp_zarr, mode="w", zarr_format=3, consolidated=True)
        old = None
        if zarr_path.exists():
            old = tmp_dir / "old.zarr"
            os.replace(zarr_path, old)
        os.replace(tmp_zarr, zarr_path)
        csv_tmp = tmp_dir / STATISTICS_CSV
        _write_csv(ds, csv_tmp)
        os.replace(csv_tmp, output / STATISTICS_CSV)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return zarr_path, output / STATISTICS_CSV


def _write_csv(ds: xr.Dataset, path: Path) -> None:
    columns = [n for n in NUMERIC_FIELDS if n in ds]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["city", "year", *columns])
        for city in ds["city"].values:
            for year in ds["year"].values:
                if not bool(ds["mapped"].sel(city=city, year=year)):
                    continue
                row = [str(city), int(year)]
                for name in columns:
                    v = ds[name].sel(city=city, year=year).item()
                    row.append(int(v) if name == "previous_year" else ("" if math.isnan(v) else f"{v:.6f}"))
                writer.writerow(row)


def read_statistics_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of ``statistics.csv`` with numbers parsed (empty cells → NaN)."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            parsed: dict[str, Any] = {"city": row.pop("city"), "year": int(row.pop("year"))}
            for k, v in row.items():
                parsed[k] = int(v) if k == "previous_year" else (float(v) if v != "" else math.nan)
            rows.append(parsed)
    return rows


def format_table(ds: xr.Dataset) -> str:
    """A plain-text table of the main figures, one line per mapped city-year."""
    header = f"{'city':<14}{'year':>6}{'IS km2':>10}{'IS %AOI':>9}{'gain':>9}{'loss':>9}{'net':>9}{'ref gain':>10}{'err':>8}{'bound':>8}"
    lines = [header, "-" * len(header)]

    def fmt(v: float, width: int, digits: int = 3) -> str:
        return f"{'-':>{width}}" if math.isnan(v) else f"{v:>{width}.{digits}f}"

    for city in ds["city"].values:
        for year in ds["year"].values:
            sel = ds.sel(city=city, year=year)
            if not bool(sel["mapped"]):
                continue
            lines.append(
                f"{str(city):<14}{int(year):>6}{fmt(float(sel.impervious_km2), 10)}"
                f"{fmt(100 * float(sel.fraction_of_aoi), 9, 1)}{fmt(float(sel.gain_km2), 9)}"
                f"{fmt(float(sel.loss_km2), 9)}{fmt(float(sel.net_km2), 9)}"
                f"{fmt(float(sel.reference_gain_km2), 10)}{fmt(float(sel.gain_error_km2), 8)}"
                f"{fmt(float(sel.gain_error_bound_km2), 8)}"
            )
    return "\n".join(lines)


__all__ = [
    "CHANGE_NAME",
    "GAIN",
    "LOSS",
    "MAP_NAME",
    "NO_CHANGE",
    "REFERENCE_NAME",
    "STATISTICS_CSV",
    "STATISTICS_ZARR",
    "AOI_NAME",
    "AreaStatistics",
    "ChangeStatistics",
    "CityYearStatistics",
    "aoi_mask_for",
    "change_area",
    "change_map",
    "compute_city_year",
    "disagreement_area",
    "format_table",
    "impervious_area",
    "load_record",
    "mapped_cities",
    "mapped_years",
    "naive_pixel_area",
    "pixel_area",
    "read_map",
    "read_statistics_csv",
    "records_to_dataset",
    "update_statistics",
    "write_statistics",
    "write_uint8_cog",
]
