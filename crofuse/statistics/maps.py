"""The files of a city-year folder that the statistics read and write, on one grid.

Layout (see ``docs/architecture.md``)::

    <output>/<city>/<year>/impervious.tif             # tiling.predict_cube: 1 impervious, 0 pervious, 255 nodata
    <output>/<city>/<year>/maps.zarr                  # tiling.predict_cube: `probability` (uint8 %, 255 nodata)
    <output>/<city>/<year>/inputs.zarr                # the cube; its `in_aoi` is the AOI mask of every figure
    <output>/<city>/<year>/aoi.geojson                # the AOI polygon (lon/lat): the mask only where no cube is
    <output>/<city>/<year>/reference.tif              # optional: reference labels on the map grid
    <output>/<city>/<year>/change.tif                 # 0 no change, 1 gain, 2 loss, 255 nodata
    <output>/<city>/<year>/impervious_consistent.tif  # the temporally consistent series (consistency module)
    <output>/<city>/<year>/sample/                    # the accuracy sample (sample module)
    <output>/<city>/<year>/statistics.json            # one city-year record

The names are :mod:`crofuse.layout`'s; every function takes a path or an ``s3://`` URL
(:mod:`crofuse.io.store`). A city-year whose marker says a new map is being published (:func:`crofuse.layout.trusted`)
is not counted as mapped until the marker is complete again.

Grids are :class:`odc.geo.geobox.GeoBox` values (``da.odc.geobox``); two maps are comparable pixel by pixel when
their geoboxes are equal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from crofuse import NODATA_LABEL, layout
from crofuse.errors import CubeError, DataError
from crofuse.io.store import Location, gdal_env, location

MAP_NAME = layout.IMPERVIOUS
PROBABILITY_STORE = layout.MAPS
CUBE_NAME = layout.CUBE
REFERENCE_NAME = layout.REFERENCE
AOI_NAME = layout.AOI
CHANGE_NAME = layout.CHANGE
CONSISTENT_NAME = layout.CONSISTENT
RECORD_NAME = layout.RECORD


def city_year_folder(output: Path | str | Location, city: str, year: int) -> Location:
    return layout.folder_of(output, city, year)


def mapped_years(output: Path | str | Location, city: str) -> list[int]:
    """Years of ``city`` under ``output`` that have a finished impervious map (and no publication under way)."""
    root = location(output) / city
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir()
                  if p.name.isdigit() and (p / MAP_NAME).exists() and layout.trusted(p))


def mapped_cities(output: Path | str | Location) -> list[str]:
    """Cities under ``output`` with at least one finished impervious map."""
    output = location(output)
    if not output.is_dir():
        return []
    return sorted(p.name for p in output.iterdir()
                  if not p.name.startswith(".") and "." not in p.name and mapped_years(output, p.name))


def read_map(path: Path | str | Location) -> xr.DataArray:
    """Read a single-band uint8 map (impervious, reference or change COG) as a 2-D DataArray."""
    import rioxarray

    loc = location(path)
    if not loc.exists():
        raise DataError(f"Map {loc} does not exist; run the prediction for this city-year first.")
    from rasterio.errors import RasterioError

    try:
        with gdal_env():
            da = rioxarray.open_rasterio(loc.gdal_path, masked=False).load()
    except (RasterioError, OSError) as e:
        raise DataError(f"{loc} is not a readable GeoTIFF ({e}); rerun the city-year that wrote it") from e
    if da.sizes.get("band", 1) != 1:
        raise DataError(f"{loc} has {da.sizes['band']} bands; expected one.")
    return da.squeeze("band", drop=True)


def geobox_of(da: xr.DataArray) -> Any:
    """The :class:`~odc.geo.geobox.GeoBox` of a raster read with rioxarray (refuses one without a CRS)."""
    import odc.geo.xr  # noqa: F401  (registers the .odc accessor)

    if da.rio.crs is None:
        raise DataError("The raster has no CRS; impervious maps must carry their CRS (spatial_ref).")
    return da.odc.geobox


def same_grid(a: xr.DataArray, b: xr.DataArray) -> bool:
    """Are two rasters on the same grid (CRS, shape and transform)?"""
    ga, gb = geobox_of(a), geobox_of(b)
    return ga.crs == gb.crs and ga.shape == gb.shape and np.allclose(tuple(ga.affine)[:6], tuple(gb.affine)[:6])


def write_map(data: np.ndarray, like: xr.DataArray, path: Path | str | Location, *,
              tags: dict[str, str] | None = None) -> Any:
    """Write a uint8 label/change map (nodata 255) on the grid of ``like`` as a validated COG, atomically
    (:func:`crofuse.io.cog.write_cog`)."""
    from crofuse.io.cog import write_cog

    gbox = geobox_of(like)
    data = np.asarray(data, dtype="uint8")
    if data.shape != tuple(gbox.shape):
        raise DataError(f"Cannot write a {data.shape} array on the {tuple(gbox.shape)} grid of the map.")
    return write_cog(location(path), data, crs=like.rio.crs, transform=gbox.affine, nodata=NODATA_LABEL, tags=tags,
                     blocksize=256, compress="deflate", overview_resampling="nearest")


write_uint8_cog = write_map
"""The name flows and tests have used for :func:`write_map`."""


def read_reference(folder: Path | str | Location, like: xr.DataArray) -> np.ndarray | None:
    """The reference labels of a city-year on the map grid, or None when the folder has none."""
    folder = location(folder)
    path = folder / REFERENCE_NAME
    if not path.exists():
        return None
    ref = read_map(path)
    if not same_grid(ref, like):
        raise DataError(
            f"{path} is not on the grid of {folder / MAP_NAME}; write reference labels on the map grid."
        )
    return ref.values


# --------------------------------------------------------------------------------------------------------------------
# The AOI mask: the cube's in_aoi, or the polygon where a folder has no cube
# --------------------------------------------------------------------------------------------------------------------
def aoi_source(folder: Path | str | Location) -> Location | None:
    """The file the AOI mask of a city-year comes from: the cube (``inputs.zarr`` with ``in_aoi``), else
    ``aoi.geojson``, else None (the whole map grid is the AOI)."""
    folder = location(folder)
    cube = folder / CUBE_NAME
    if (cube / "zarr.json").exists() and (cube / "in_aoi" / "zarr.json").exists():
        return cube
    if (folder / AOI_NAME).exists():
        return folder / AOI_NAME
    return None


def aoi_mask(folder: Path | str | Location, like: xr.DataArray) -> np.ndarray | None:
    """True for the pixels of ``like``'s grid inside the city-year's AOI, the same mask for every figure.

    The mask is the cube's ``in_aoi`` (pixel centre inside the city polygon, computed once when the cube was built
    on this very grid). Only a folder without a cube (maps made elsewhere) falls back to rasterising
    ``aoi.geojson``; without either the whole grid is the AOI (None).
    """
    source = aoi_source(folder)
    if source is None:
        return None
    if source.name == CUBE_NAME:
        return _cube_aoi(source, like)
    return aoi_mask_for(source, like=like)


def _cube_aoi(cube: Location, like: xr.DataArray) -> np.ndarray:
    from crofuse.cube import open_cube

    try:
        ds = open_cube(cube)
    except CubeError as e:
        raise DataError(f"cannot read the AOI mask `in_aoi` of {cube}: {e}") from e
    inside = ds["in_aoi"]
    gbox = geobox_of(like)
    if tuple(inside.shape) != tuple(gbox.shape):
        raise DataError(
            f"the cube {cube} is on a {tuple(inside.shape)} grid but the map is {tuple(gbox.shape)}: the map was not "
            "made from this cube; rerun the city-year"
        )
    return np.asarray(inside.values, dtype=bool)


def aoi_mask_for(path: Path | str | Location, *, like: xr.DataArray | None = None, crs: Any = None, transform: Any = None,
                 shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """Rasterise the AOI GeoJSON at ``path`` (lon/lat) onto a grid: True for pixels whose centre is inside.

    The grid is ``like``'s, or ``crs``/``transform``/``shape``. Uses :func:`odc.geo.xr.rasterize`.
    """
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry
    from odc.geo.xr import rasterize

    path = location(path)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    geom = data.get("geometry", data) if data.get("type") == "Feature" else data
    gbox = geobox_of(like) if like is not None else GeoBox(tuple(shape), transform, crs)
    return np.asarray(rasterize(Geometry(geom, crs="EPSG:4326"), gbox).values, dtype=bool)


__all__ = [
    "AOI_NAME",
    "CHANGE_NAME",
    "CONSISTENT_NAME",
    "CUBE_NAME",
    "MAP_NAME",
    "PROBABILITY_STORE",
    "RECORD_NAME",
    "REFERENCE_NAME",
    "aoi_mask",
    "aoi_mask_for",
    "aoi_source",
    "city_year_folder",
    "geobox_of",
    "mapped_cities",
    "mapped_years",
    "read_map",
    "read_reference",
    "same_grid",
    "write_map",
    "write_uint8_cog",
]
