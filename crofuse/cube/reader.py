"""The one region reader of input cubes: ``reader(rows, cols) -> (optical, sar, valid)`` in model band order.

Training sets cut their patches with it and tiled inference reads its chunks with it, so the two see the same
numbers. A reader opens the store without dask (plain lazily indexed zarr arrays: a task on a dask worker reads its
region synchronously and never submits a nested graph). Readers are cached per process, keyed by the cube's path
**and** its identity (``fingerprint`` plus the ``build_id`` that :func:`crofuse.cube.store.publish` writes), so a
cube rebuilt at the same path is never read stale. Read failures raise :class:`~crofuse.errors.CubeError`, the same
type whether the reader runs in this process or on a dask worker.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from crofuse import OPTICAL_BANDS, SAR_BANDS
from crofuse.errors import CubeError

_CACHE: dict[tuple[str, str], CubeRegionReader] = {}
_LOCK = threading.Lock()
_MAX_CACHED = 8


def cube_identity(attrs: Mapping[str, Any]) -> str:
    """What tells two builds of a cube apart: ``fingerprint`` + ``build_id`` (either may be missing)."""
    return f"{attrs.get('fingerprint', '')}/{attrs.get('build_id', '')}"


def in_band_order(var: Any, bands: tuple[str, ...]) -> Any:
    """Select ``bands`` in model order along the variable's first (band) dimension, whatever its name."""
    band_dim = var.dims[0]
    if band_dim in var.coords:
        return var.sel({band_dim: list(bands)})
    return var


class CubeRegionReader:
    """Reads windows of one cube: ``reader(rows, cols)`` with ``rows``/``cols`` slices of scene pixels."""

    def __init__(self, path: str | Path, identity: str = "") -> None:
        import xarray as xr

        self.path = str(path)
        self.identity = identity
        try:
            from crofuse.io.store import location

            cube = xr.open_zarr(location(self.path).zarr_store(read_only=True), chunks=None, decode_coords="all",
                                consolidated=False, zarr_format=3)
        except (OSError, KeyError, ValueError) as e:
            raise CubeError(f"cannot open the input cube {self.path} ({type(e).__name__}: {e}); rebuild it") from e
        found = cube_identity(cube.attrs)
        if identity and found != identity:
            raise CubeError(
                f"the input cube {self.path} changed since the run started (expected build {identity}, found "
                f"{found}): it was rebuilt or replaced. Rerun to map the current cube"
            )
        self.identity = found
        self.shape = (int(cube.sizes["y"]), int(cube.sizes["x"]))
        self._optical = in_band_order(cube["optical"], OPTICAL_BANDS)
        self._sar = in_band_order(cube["sar"], SAR_BANDS)
        self._valid = cube["valid"]

    def __call__(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        try:
            return (
                np.asarray(self._optical.isel(y=rows, x=cols).values, dtype=np.float32),
                np.asarray(self._sar.isel(y=rows, x=cols).values, dtype=np.float32),
                np.asarray(self._valid.isel(y=rows, x=cols).values, dtype=bool),
            )
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            raise CubeError(
                f"reading rows {rows.start}:{rows.stop}, cols {cols.start}:{cols.stop} of the input cube {self.path} "
                f"failed ({type(e).__name__}: {e}); the cube was removed or is damaged: rebuild it"
            ) from e


def current_identity(path: str | Path) -> str:
    """The identity of the cube now at ``path`` (one small JSON read), or ``""`` when there is none."""
    import zarr

    try:
        from crofuse.io.store import location

        return cube_identity(zarr.open_group(location(str(path)).zarr_store(read_only=True), mode="r").attrs)
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError):
        return ""


def cube_reader(path: str | Path, identity: str | None = None) -> CubeRegionReader:
    """A per-process cached :class:`CubeRegionReader` for ``path`` and cube ``identity`` (see module docstring).

    Without ``identity`` the cube now at ``path`` is read (its attributes are checked on every call, so a rebuilt
    cube gets a fresh reader); with one, a cube of another identity at ``path`` is a :class:`CubeError`.
    """
    if identity is None:
        identity = current_identity(path)
    key = (str(path), identity)
    with _LOCK:
        reader = _CACHE.get(key)
        if reader is None:
            reader = CubeRegionReader(path, identity)
            for stale in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[stale]
            while len(_CACHE) >= _MAX_CACHED:
                del _CACHE[next(iter(_CACHE))]
            _CACHE[key] = reader
        return reader


__all__ = ["CubeRegionReader", "cube_identity", "cube_reader", "current_identity", "in_band_order"]
