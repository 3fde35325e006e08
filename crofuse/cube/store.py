"""Where cubes live and how they are written and read: ``<output>/<city-slug>/<year>/inputs.zarr`` (zarr v3).

A cube is written under a hidden temporary name next to its final place, marked complete (root attribute
``crofuse_complete``) only after every chunk is on disk, and then renamed into place. A crash mid-write therefore
leaves a ``.inputs.zarr.tmp-*`` folder, never an ``inputs.zarr`` that looks finished; :func:`open_cube` refuses
stores without the marker. Zarr chunks equal the dask chunks (no shards), so parallel tasks never share a chunk.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crofuse.cube.aoi import city_slug
from crofuse.errors import ConfigError, CubeError

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)

CUBE_NAME = "inputs.zarr"
COMPLETE_ATTR = "crofuse_complete"
CUBE_VARIABLES = ("optical", "sar", "valid", "optical_count", "sar_count")


def cube_path(output: str | Path, city: str, year: int) -> Path:
    """``<output>/<city-slug>/<year>/inputs.zarr``; the city is slugged, so the path never leaves ``output``."""
    if not isinstance(year, int) or isinstance(year, bool):
        raise ConfigError(f"year={year!r} must be an integer")
    root = Path(output).expanduser().resolve()
    path = root / city_slug(city) / str(year) / CUBE_NAME
    if not path.resolve().is_relative_to(root):  # defence in depth: slugs have no separators or dots
        raise ConfigError(f"city {city!r} would write outside the output root {root}")
    return path


def _temp_siblings(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


def zarr_encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Zarr chunks = the dask chunks of every data variable (full band axis, ``chunk_size`` squares)."""
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        if var.chunks:
            enc[name] = {"chunks": tuple(c[0] for c in var.chunks)}
    return enc


def write_cube(ds: xr.Dataset, path: Path, *, progress: bool = True) -> Path:
    """Compute ``ds`` into a fresh hidden temporary zarr v3 store next to ``path`` and return the temp path.

    The caller checks the written data and then calls :func:`publish` (marker + rename) or :func:`discard`.
    Leftover temp stores of earlier, interrupted builds of the same cube are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _temp_siblings(path):  # leftovers of an interrupted build of this very cube
        log.warning("removing interrupted cube build %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        _compute_to_zarr(ds, tmp, progress=progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _compute_to_zarr(ds: xr.Dataset, target: Path, *, progress: bool) -> None:
    from contextlib import nullcontext

    cb: Any = nullcontext()
    if progress and not _distributed_client_active():
        from tqdm.dask import TqdmCallback

        cb = TqdmCallback(desc=f"cube {target.parent.parent.name}/{target.parent.name}", unit="task")
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with cb, warnings.catch_warnings():
        # odc-stac reprojects 20 m SCL through in-memory arrays that rasterio flags as not georeferenced
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        # chunks go into each variable's encoding (an ``encoding=`` argument would replace it and drop the
        # ``grid_mapping`` that points rioxarray at ``spatial_ref``)
        for name, enc in zarr_encoding(ds).items():
            ds[name].encoding.update(enc)
        ds.to_zarr(target, mode="w-", zarr_format=3, consolidated=False, compute=True)


def _distributed_client_active() -> bool:
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover
        return False
    try:
        default_client()
    except ValueError:
        return False
    return True


def publish(tmp: Path, path: Path, *, attrs: dict[str, Any]) -> Path:
    """Write ``attrs`` plus the completeness marker into the finished temp store, consolidate its metadata (so
    ``xr.open_zarr`` reads it in one request, without zarr's fallback warning), then move it to ``path``.

    An existing cube is moved aside first and deleted after the rename, so a reader sees the old complete cube, no
    cube, or the new complete cube, never a mix.
    """
    import warnings

    import zarr

    group = zarr.open_group(str(tmp), mode="r+", zarr_format=3)
    # build_id tells two builds with equal settings apart (readers are cached by it, crofuse.cube.reader)
    group.attrs.update({**attrs, "build_id": uuid.uuid4().hex, COMPLETE_ATTR: True})
    with warnings.catch_warnings():  # zarr 3 notes that consolidated metadata is not in the v3 spec yet
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(str(tmp), zarr_format=3)
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def discard(tmp: Path) -> None:
    """Remove an unfinished temp store."""
    shutil.rmtree(tmp, ignore_errors=True)


def read_attrs(path: Path) -> dict[str, Any] | None:
    """The root attributes of a complete cube at ``path``, or ``None`` if there is none (or it is incomplete)."""
    import zarr

    if not path.is_dir():
        return None
    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError):
        return None
    return attrs if attrs.get(COMPLETE_ATTR) is True else None


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a finished input cube lazily (dask arrays, chunked as written) with its CRS readable by rioxarray.

    Raises :class:`~crofuse.errors.CubeError` when ``path`` is missing, not a zarr store, incomplete (interrupted
    build), or lacks the contract's variables.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor for callers)
    import xarray as xr
    import zarr

    path = Path(path)
    if path.name != CUBE_NAME and (path / CUBE_NAME).is_dir():
        path = path / CUBE_NAME
    if not path.exists():
        tmp = _temp_siblings(path)
        hint = f" (an interrupted build left {tmp[0].name}; rerun build_cube)" if tmp else ""
        raise CubeError(f"no input cube at {path}{hint}; build it with `crofuse cube` or crofuse.cube.build_cube")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError) as e:
        raise CubeError(f"{path} is not a zarr store ({e}); rebuild it with `crofuse cube`") from e
    consolidated = getattr(group.metadata, "consolidated_metadata", None) is not None
    if attrs.get(COMPLETE_ATTR) is not True:
        raise CubeError(
            f"{path} is incomplete (no '{COMPLETE_ATTR}' marker: the build was interrupted or is still running); "
            "rebuild it with `crofuse cube` (or build_cube) before using it"
        )
    ds = xr.open_zarr(path, consolidated=consolidated, zarr_format=3, decode_coords="all")
    if "spatial_ref" in ds.data_vars:  # written without grid_mapping attributes: still the cube's CRS variable
        ds = ds.set_coords("spatial_ref")
    check_contract(ds, path)
    return ds


def check_contract(ds: xr.Dataset, path: str | Path) -> None:
    """Refuse a cube that does not follow the contract (docs/architecture.md), saying what is missing."""
    from crofuse import OPTICAL_BANDS, SAR_BANDS

    missing = [v for v in CUBE_VARIABLES if v not in ds]
    if missing:
        raise CubeError(f"{path} lacks variables {missing}; it was not written by crofuse.cube (rebuild it)")
    for name, bands in (("optical", OPTICAL_BANDS), ("sar", SAR_BANDS)):
        var = ds[name]
        if var.ndim != 3 or var.dims[1:] != ("y", "x"):
            raise CubeError(f"cube {path}: {name} has dims {var.dims}, expected (band, 'y', 'x')")
        band_dim = var.dims[0]
        if band_dim in var.coords:
            have = [str(b) for b in var[band_dim].values]
            if not set(bands) <= set(have):
                raise CubeError(f"cube {path}: {name} bands {have} do not include {list(bands)}")
        elif var.sizes[band_dim] != len(bands):
            raise CubeError(f"cube {path}: {name} has {var.sizes[band_dim]} bands, expected {len(bands)} {bands}")
    if ds["valid"].dims != ("y", "x"):
        raise CubeError(f"cube {path}: valid has dims {ds['valid'].dims}, expected ('y', 'x')")
    if ds.rio.crs is None:
        raise CubeError(f"cube {path} has no CRS (spatial_ref); rebuild it with `crofuse cube`")


__all__ = ["COMPLETE_ATTR", "CUBE_NAME", "check_contract", "cube_path", "discard", "open_cube", "publish", "read_attrs", "write_cube"]
