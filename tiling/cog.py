"""Cloud-optimised GeoTIFFs from ``maps.zarr``: windowed writes to a tiled GTiff, then ``rio_cogeo``.

Writing a COG straight from dask through rioxarray's COG driver is known to lose the overviews and to hold the whole
raster in memory; going through a tiled GTiff written chunk by chunk keeps memory at one chunk.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from crofuse import NODATA_LABEL
from crofuse.errors import InferenceError

COG_BLOCK = 512


def overview_levels(shape: tuple[int, int], *, smallest: int = 256) -> int:
    """Number of 2x overview levels so that the smallest one is at most ``smallest`` pixels (at least one level)."""
    return max(1, math.ceil(math.log2(max(shape) / smallest))) if max(shape) > smallest else 1


def write_cog(
    store: Path,
    variable: str,
    dst: Path,
    *,
    crs,
    transform,
    resampling: str,
    tags: dict[str, str],
) -> Path:
    """Write ``store/variable`` to ``dst`` as a validated uint8 COG with nodata 255 and overviews.

    The COG is built under a temporary name and renamed at the end, so a half-written file never looks finished.
    """
    import rasterio
    import zarr
    from rasterio.windows import Window
    from rio_cogeo.cogeo import cog_translate, cog_validate
    from rio_cogeo.profiles import cog_profiles

    array = zarr.open_array(store / variable, mode="r")
    height, width = array.shape
    chunk_rows, chunk_cols = array.chunks
    tiled = dst.with_name(f".{dst.name}.tiled.tif")
    partial = dst.with_name(f".{dst.name}.partial.tif")
    profile = {
        "driver": "GTiff",
        "tiled": True,
        "blockxsize": COG_BLOCK,
        "blockysize": COG_BLOCK,
        "compress": "deflate",
        "dtype": "uint8",
        "count": 1,
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "nodata": NODATA_LABEL,
    }
    try:
        with rasterio.open(tiled, "w", **profile) as out:
            for r0 in range(0, height, chunk_rows):
                for c0 in range(0, width, chunk_cols):
                    block = array[r0 : r0 + chunk_rows, c0 : c0 + chunk_cols]
                    out.write(block, 1, window=Window(c0, r0, block.shape[1], block.shape[0]))
            out.update_tags(**tags)
        cog = cog_profiles.get("deflate")
        cog.update(blockxsize=COG_BLOCK, blockysize=COG_BLOCK, predictor=2)
        cog_translate(
            tiled,
            partial,
            cog,
            nodata=NODATA_LABEL,
            overview_level=overview_levels((height, width)),
            overview_resampling=resampling,
            in_memory=False,
            quiet=True,
            additional_cog_metadata=tags,
        )
        is_valid, errors, _warnings = cog_validate(partial, quiet=True)
        if not is_valid:
            raise InferenceError(f"{dst.name} failed COG validation: {errors}; the maps.zarr is intact, rerun to retry")
        os.replace(partial, dst)
    finally:
        tiled.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return dst


def cog_tag(path: Path, key: str) -> str | None:
    """A dataset tag of an existing GeoTIFF (None if the file or tag is missing)."""
    import rasterio

    if not path.is_file():
        return None
    with rasterio.open(path) as src:
        return src.tags().get(key)
