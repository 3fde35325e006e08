"""The one COG writer of crofuse: a validated Cloud-Optimised GeoTIFF from an array or region by region.

Every raster crofuse publishes (sample-catalog assets, ``impervious.tif``/``probability.tif``, change and
consistency maps, reference labels on the map grid) goes through here, so they share one set of rules:

* GDAL's COG driver builds the file (tiles, overviews, compression); ``overviews`` forces a number of levels
  (``OVERVIEW_COUNT``) where a pyramid is wanted even for small rasters (the published maps);
* the file is written in full in a private folder of worker-local temporary space
  (:func:`crofuse.io.store.scratch_dir`: ``$CROFUSE_TMPDIR``, else the system temporary folder; the next write on
  the host removes the folders of killed writers), checked with :func:`rio_cogeo.cogeo.cog_validate`, and only
  then published to its destination, a path or an ``s3://`` URL (:class:`crofuse.io.store.Location`): a rename on
  disk, **one PUT** on S3. A reader sees the old file, no file, or the new complete COG, never a partial one, and
  no temporary file is ever next to the outputs;
* a write that fails for lack of space or on a read-only output raises one
  :class:`~crofuse.errors.OutputWriteError` line naming the path and the cause ("no space left on /tmp writing
  .../impervious.tif (needs ~12 MB, 3 MB free)");
* :func:`write_cog_regions` writes a tiled GTiff region by region first (memory stays at one region) and turns it
  into the COG: use it for whole-city maps held in a zarr store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from crofuse.errors import DataError, OutputWriteError
from crofuse.io.store import TMPDIR_ENV, Location, location, output_error, scratch_dir

_COMPRESSIONS = ("deflate", "zstd", "lzw", "none")


def overview_levels(shape: tuple[int, int], *, smallest: int = 256) -> int:
    """Number of 2x overview levels so that the smallest one is at most ``smallest`` pixels (at least one level)."""
    return max(1, math.ceil(math.log2(max(shape) / smallest))) if max(shape) > smallest else 1


def _profile(
    *,
    shape: tuple[int, int],
    count: int,
    dtype: np.dtype,
    crs: Any,
    transform: Any,
    nodata: float | int | None,
    blocksize: int,
    compress: str,
    level: int | None,
    predictor: int | None,
    overview_resampling: str,
    overviews: int | None,
) -> dict[str, Any]:
    """Creation options of GDAL's COG driver shared by both writers."""
    compress = compress.lower()
    if compress not in _COMPRESSIONS:
        raise ValueError(f"compress={compress!r}: use one of {_COMPRESSIONS}")
    if blocksize < 16 or blocksize % 16:
        raise ValueError(f"blocksize={blocksize}: use a multiple of 16 (256 or 512 are usual)")
    profile: dict[str, Any] = {
        "driver": "COG",
        "height": int(shape[0]),
        "width": int(shape[1]),
        "count": int(count),
        "dtype": np.dtype(dtype).name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "blocksize": int(blocksize),
        "compress": compress.upper(),
        "overview_resampling": overview_resampling,
        "num_threads": 1,  # callers run many writers in parallel processes; GDAL threads would oversubscribe
    }
    if compress != "none":
        profile["predictor"] = predictor or (3 if np.issubdtype(np.dtype(dtype), np.floating) else 2)
    if level is not None:
        profile["level"] = int(level)
    if overviews is not None:  # else GDAL's rule: halve until the overview fits in one block
        if overviews < 1:
            raise ValueError(f"overviews={overviews}: give at least 1 level, or None for GDAL's rule")
        profile["overview_count"] = int(overviews)
    return profile


@contextmanager
def _scratch(dst: Location, needed: int) -> Iterator[Path]:
    """A private temporary folder for one write; a write error for lack of space or on a read-only file system
    there becomes one :class:`OutputWriteError` line (no traceback of GDAL internals)."""
    import rasterio.errors
    from rasterio._err import CPLE_BaseError

    with scratch_dir(f"cog-{dst.stem}") as folder:
        try:
            yield folder
        except (OSError, rasterio.errors.RasterioError, CPLE_BaseError) as e:
            if isinstance(e, OutputWriteError):
                raise
            err = output_error(e, dst, needed=needed, scratch=folder)
            if err is not None:
                raise err from None
            raise


def _needed_bytes(shape: tuple[int, ...], count: int, dtype: Any, *, copies: int) -> int:
    """Uncompressed size with overviews (x 4/3), times the copies held in temporary space at once."""
    return int(math.prod(shape[-2:]) * count * np.dtype(dtype).itemsize * 4 / 3 * copies)


def _validate(path: Path, dst: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    is_valid, errors, _warnings = cog_validate(str(path), quiet=True)
    if not is_valid:
        raise DataError(f"{dst.name} failed COG validation ({errors}); nothing was written to {dst}; rerun to retry")


def _publish(tmp: Path, dst: Location) -> Location:
    """Publish the finished file: a rename on disk (copy + rename across file systems), one PUT on S3."""
    return dst.upload(tmp)


def _as_bands(data: np.ndarray) -> np.ndarray:
    arr = np.asarray(data)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected a (y, x) or (band, y, x) array, got shape {arr.shape}")
    return arr


def _describe(dst: Any, band_names: Iterable[str] | None, tags: dict[str, str] | None) -> None:
    if band_names:
        for i, name in enumerate(band_names, start=1):
            dst.set_band_description(i, name)
    if tags:
        dst.update_tags(**tags)


def write_cog(
    path: Path | Location | str,
    data: np.ndarray,
    *,
    crs: Any,
    transform: Any,
    nodata: float | int | None,
    band_names: Iterable[str] | None = None,
    tags: dict[str, str] | None = None,
    blocksize: int = 256,
    compress: str = "deflate",
    level: int | None = None,
    predictor: int | None = None,
    overview_resampling: str = "nearest",
    overviews: int | None = None,
) -> Path:
    """Write an in-memory ``(y, x)`` or ``(band, y, x)`` array to ``path`` as a validated COG.

    Args:
        path: the final file name: a path or an ``s3://`` URL.
        data: the raster; its dtype is kept.
        crs, transform: the grid (anything rasterio accepts: ``"EPSG:32650"``, an ``affine.Affine``).
        nodata: the nodata value (``float("nan")`` for float rasters, None for none).
        band_names: band descriptions.
        tags: dataset tags (GDAL metadata).
        blocksize: tile size in pixels.
        compress: ``deflate`` (default), ``zstd``, ``lzw`` or ``none``; ``level`` its level.
        predictor: TIFF predictor; default 2 (horizontal) for integers, 3 for floats.
        overview_resampling: ``nearest`` (labels), ``mode`` (class maps), ``average`` (continuous values).
        overviews: number of 2x overview levels (:func:`overview_levels` gives one for any size); None: GDAL's rule,
            which makes none for a raster that fits in one block.
    """
    import rasterio

    path = location(path)
    arr = _as_bands(data)
    profile = _profile(
        shape=arr.shape[1:], count=arr.shape[0], dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata,
        blocksize=blocksize, compress=compress, level=level, predictor=predictor,
        overview_resampling=overview_resampling, overviews=overviews,
    )
    with _scratch(path, _needed_bytes(arr.shape, arr.shape[0], arr.dtype, copies=1)) as scratch:
        tmp = scratch / path.name
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr)
            _describe(dst, band_names, tags)
        _validate(tmp, path)
        return _result(_publish(tmp, path))


Region = tuple[slice, slice]
"""``(rows, cols)`` of a rectangular region of the raster."""


def regions_of(shape: tuple[int, int], chunks: tuple[int, int]) -> list[Region]:
    """Row-major regions of at most ``chunks`` pixels covering a raster of ``shape``."""
    height, width = shape
    step_r, step_c = chunks
    return [
        (slice(r, min(r + step_r, height)), slice(c, min(c + step_c, width)))
        for r in range(0, height, step_r)
        for c in range(0, width, step_c)
    ]


def write_cog_regions(
    path: Path | Location | str,
    read_region: Callable[[slice, slice], np.ndarray],
    *,
    shape: tuple[int, int],
    dtype: Any,
    chunks: tuple[int, int],
    crs: Any,
    transform: Any,
    nodata: float | int | None,
    count: int = 1,
    band_names: Iterable[str] | None = None,
    tags: dict[str, str] | None = None,
    blocksize: int = 512,
    compress: str = "deflate",
    level: int | None = None,
    predictor: int | None = None,
    overview_resampling: str = "nearest",
    overviews: int | None = None,
) -> Path:
    """Write a raster too big to hold in memory as a validated COG, one region at a time.

    ``read_region(rows, cols)`` returns the ``(y, x)`` (or ``(band, y, x)``) values of a region; it is called once
    per region of ``chunks`` pixels (align them with the source's chunks, e.g. a zarr array's). The regions go into
    a tiled GTiff in the temporary folder, which GDAL's COG driver then copies into the final layout, so memory stays
    at about one region whatever the raster's size. Other arguments as :func:`write_cog`.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    path = location(path)
    shape = (int(shape[0]), int(shape[1]))
    profile = _profile(
        shape=shape, count=count, dtype=np.dtype(dtype), crs=crs, transform=transform, nodata=nodata,
        blocksize=blocksize, compress=compress, level=level, predictor=predictor,
        overview_resampling=overview_resampling, overviews=overviews,
    )
    cog_options = {k: v for k, v in profile.items() if k not in ("driver", "height", "width", "count", "dtype", "crs",
                                                                  "transform", "nodata")}
    tiled_profile = {
        "driver": "GTiff", "tiled": True, "blockxsize": blocksize, "blockysize": blocksize, "compress": "deflate",
        "height": shape[0], "width": shape[1], "count": count, "dtype": np.dtype(dtype).name, "crs": crs,
        "transform": transform, "nodata": nodata, "bigtiff": "if_safer",
    }
    with _scratch(path, _needed_bytes(shape, count, dtype, copies=2)) as scratch:
        tiled = scratch / f"{path.stem}.tiled.tif"
        with rasterio.open(tiled, "w", **tiled_profile) as out:
            for rows, cols in regions_of(shape, chunks):
                block = _as_bands(read_region(rows, cols))
                expected = (count, rows.stop - rows.start, cols.stop - cols.start)
                if block.shape != expected:
                    raise DataError(f"read_region({rows}, {cols}) returned shape {block.shape}, expected {expected}")
                out.write(block, window=Window(cols.start, rows.start, expected[2], expected[1]))
            _describe(out, band_names, tags)
        tmp = scratch / path.name
        rasterio.shutil.copy(tiled, tmp, driver="COG", **cog_options)
        tiled.unlink()
        _validate(tmp, path)
        return _result(_publish(tmp, path))


def _result(dst: Location) -> Any:
    """What the writers return: a :class:`~pathlib.Path` for a local file (as callers always got), else the
    :class:`Location`."""
    return dst.path if dst.is_local else dst


__all__ = ["TMPDIR_ENV", "Region", "overview_levels", "regions_of", "write_cog", "write_cog_regions"]
