"""Writing patches in the WHU-IS layout (paper section II-B): ``ROOT/{split}/{optical,sar,label}/<name>.tif``.

Optical: 4 bands float32 surface reflectance (B02, B03, B04, B08), NaN where no clear observation. SAR: 2 bands
float32 gamma0 dB (VV, VH), NaN where none. Label: uint8 1 impervious, 0 pervious, 255 ignored (no label, or an
input missing). Every file is a georeferenced GeoTIFF written in worker-local temporary space
(:func:`crofuse.io.store.scratch_dir`) and then published in one step (a rename, or one PUT for an ``s3://`` root),
so an interrupted build never leaves a patch that looks complete, nor a temporary file in the training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crofuse import NODATA_LABEL, OPTICAL_BANDS, SAR_BANDS
from crofuse.io.store import Location, location, output_error, scratch_dir

MODALITIES = ("optical", "sar", "label")


def write_tif(path: Any, data: np.ndarray, *, crs: Any, transform: Any, nodata: float | int,
              names: Sequence[str]) -> None:
    """One deflate-compressed GeoTIFF, written in temporary space and published in one step."""
    import rasterio

    arr = data[None] if data.ndim == 2 else data
    dst_loc = location(path)
    with scratch_dir(f"patch-{dst_loc.stem}") as scratch:
        tmp = scratch / dst_loc.name
        try:
            with rasterio.open(
                tmp, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                dtype=arr.dtype.name, crs=crs, transform=transform, nodata=nodata, compress="deflate",
            ) as dst:
                dst.write(arr)
                for i, name in enumerate(names, start=1):
                    dst.set_band_description(i, name)
        except OSError as e:
            raise output_error(e, dst_loc, needed=arr.nbytes, scratch=scratch) or e
        dst_loc.upload(tmp)


def write_patch(root: Path | Location, split: str, name: str, *, optical: np.ndarray, sar: np.ndarray, label: np.ndarray,
                crs: Any, transform: Any) -> None:
    """The three co-registered files of one patch (label last: a patch without its label is not listed)."""
    root = location(root)
    write_tif(root / split / "optical" / f"{name}.tif", optical.astype(np.float32), crs=crs, transform=transform,
              nodata=float("nan"), names=OPTICAL_BANDS)
    write_tif(root / split / "sar" / f"{name}.tif", sar.astype(np.float32), crs=crs, transform=transform,
              nodata=float("nan"), names=SAR_BANDS)
    write_tif(root / split / "label" / f"{name}.tif", label.astype(np.uint8), crs=crs, transform=transform,
              nodata=NODATA_LABEL, names=("impervious",))


def remove_patch(root: Path | Location, split: str, name: str) -> None:
    for modality in MODALITIES:
        (location(root) / split / modality / f"{name}.tif").unlink(missing_ok=True)


__all__ = ["MODALITIES", "remove_patch", "write_patch", "write_tif"]
