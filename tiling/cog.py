"""Cloud-optimised GeoTIFFs of a ``maps.zarr`` variable, through the one COG writer (:mod:`crofuse.io.cog`).

Writing a COG straight from dask through rioxarray's COG driver is known to lose the overviews and to hold the whole
raster in memory; :func:`crofuse.io.cog.write_cog_regions` instead writes a tiled GTiff chunk by chunk (memory stays
at one zarr chunk) and lets GDAL's COG driver lay it out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crofuse import NODATA_LABEL
from crofuse.errors import DataError, InferenceError
from crofuse.io.cog import overview_levels, write_cog_regions
from crofuse.io.store import Location, gdal_env, location

COG_BLOCK = 512


def write_cog(
    store: Path | Location | str,
    variable: str,
    dst: Path | Location | str,
    *,
    crs,
    transform,
    resampling: str,
    tags: dict[str, str],
) -> Any:
    """Write ``store/variable`` to ``dst`` (a path or an ``s3://`` URL) as a validated uint8 COG with nodata 255 and
    overviews.

    The COG is built in worker-local temporary space and published at the end (a rename, or one PUT), so a
    half-written file never looks finished.
    """
    import zarr

    array = zarr.open_group(location(store).zarr_store(read_only=True), mode="r")[variable]
    try:
        return write_cog_regions(
            location(dst),
            lambda rows, cols: array[rows, cols],
            shape=array.shape,
            dtype="uint8",
            chunks=array.chunks,
            crs=crs,
            transform=transform,
            nodata=NODATA_LABEL,
            tags=tags,
            blocksize=COG_BLOCK,
            compress="deflate",
            overview_resampling=resampling,
            overviews=overview_levels(array.shape),
        )
    except DataError as e:
        raise InferenceError(f"{e} (the maps.zarr is intact)") from e


def cog_tag(path: Path | Location | str, key: str) -> str | None:
    """A dataset tag of an existing GeoTIFF (None if the file or tag is missing)."""
    import rasterio

    loc = location(path)
    if not loc.is_file():
        return None
    with gdal_env(), rasterio.open(loc.gdal_path) as src:
        return src.tags().get(key)


__all__ = ["COG_BLOCK", "cog_tag", "overview_levels", "write_cog"]
