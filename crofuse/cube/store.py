"""Where cubes live and how they are written and read: ``<output>/<city-slug>/<year>/inputs.zarr`` (zarr v3).

The output may be a path or an ``s3://`` URL (:mod:`crofuse.io.store`). A cube is written under a hidden temporary
name next to its final place (``.inputs.zarr.tmp-*``, :mod:`crofuse.layout`), region by region by the dask tasks,
marked complete (root attribute ``crofuse_complete``) only after every chunk is written, and then moved into place
(:func:`crofuse.layout.replace_store`: a rename on disk; on S3 the root ``zarr.json`` is written last). A crash
mid-write therefore leaves a temporary store, never an ``inputs.zarr`` that looks finished; :func:`open_cube`
refuses stores without the marker. Temporary stores are removed only by the holder of the city-year's lease
(:func:`crofuse.cube.build.build_cube` takes it). Zarr chunks equal the dask chunks (no shards), so parallel tasks
never share a chunk.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crofuse.cube.aoi import city_slug
from crofuse.errors import ConfigError, CubeError
from crofuse.io.store import Location, location
from crofuse.layout import CUBE, CUBE_TEMP_PREFIX, replace_store

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)

CUBE_NAME = CUBE
COMPLETE_ATTR = "crofuse_complete"
CUBE_VARIABLES = ("optical", "sar", "valid", "optical_count", "sar_count")


def _as_result(loc: Location) -> Any:
    """A :class:`~pathlib.Path` for a local cube (what callers always got), the :class:`Location` of a URL."""
    return loc.path if loc.is_local else loc


def cube_path(output: str | Path | Location, city: str, year: int) -> Any:
    """``<output>/<city-slug>/<year>/inputs.zarr`` (a Path, or a Location for an ``s3://`` output); the city is
    slugged, so the path never leaves ``output``."""
    if not isinstance(year, int) or isinstance(year, bool):
        raise ConfigError(f"year={year!r} must be an integer")
    root_loc = location(output if isinstance(output, Location) else str(output))
    if not root_loc.is_local:
        from crofuse.layout import city_year

        return city_year(root_loc, city, year).cube
    root = Path(output).expanduser().resolve()
    path = root / city_slug(city) / str(year) / CUBE_NAME
    if not path.resolve().is_relative_to(root):  # defence in depth: slugs have no separators or dots
        raise ConfigError(f"city {city!r} would write outside the output root {root}")
    return path


def temp_stores(path: str | Path | Location) -> list[Location]:
    """Temporary stores of (interrupted or running) builds of the cube at ``path``."""
    loc = location(path if isinstance(path, Location) else str(path))
    return sorted((p for p in loc.parent.iterdir() if p.name.startswith(CUBE_TEMP_PREFIX)), key=lambda p: p.name)


def zarr_encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Zarr chunks = the dask chunks of every data variable (full band axis, ``chunk_size`` squares)."""
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        if var.chunks:
            enc[name] = {"chunks": tuple(c[0] for c in var.chunks)}
    return enc


def write_cube(ds: xr.Dataset, path: str | Path | Location, *, progress: bool = True) -> Location:
    """Compute ``ds`` into a fresh hidden temporary zarr v3 store next to ``path`` and return its location.

    The caller checks the written data and then calls :func:`publish` (marker + move) or :func:`discard`.
    Leftover temp stores of earlier, interrupted builds of the same cube are removed first: call it only while
    holding the city-year's lease (:func:`crofuse.cube.build.build_cube` does), so a build never removes the temp
    store of another one that is still running.
    """
    loc = location(path if isinstance(path, Location) else str(path))
    loc.parent.mkdir()
    for stale in temp_stores(loc):  # leftovers of an interrupted build of this very cube
        log.warning("removing interrupted cube build %s", stale)
        stale.rmtree()
    tmp = loc.parent / f"{CUBE_TEMP_PREFIX}{uuid.uuid4().hex[:8]}"
    try:
        _compute_to_zarr(ds, tmp, progress=progress)
    except BaseException:
        tmp.rmtree()
        raise
    return tmp


def _compute_to_zarr(ds: xr.Dataset, target: Location, *, progress: bool) -> None:
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
        ds.to_zarr(target.zarr_store(), mode="w-", zarr_format=3, consolidated=False, compute=True)


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


def publish(tmp: Location, path: str | Path | Location, *, attrs: dict[str, Any]) -> Any:
    """Write ``attrs`` plus the completeness marker into the finished temp store, consolidate its metadata (so
    ``xr.open_zarr`` reads it in one request, without zarr's fallback warning), then move it to ``path``.

    An existing cube is replaced by :func:`crofuse.layout.replace_store`, so a reader sees the old complete cube,
    no cube, or the new complete cube, never a mix.
    """
    import warnings

    import zarr

    tmp = location(tmp if isinstance(tmp, Location) else str(tmp))
    dst = location(path if isinstance(path, Location) else str(path))
    store = tmp.zarr_store()
    group = zarr.open_group(store, mode="r+", zarr_format=3)
    # build_id tells two builds with equal settings apart (readers are cached by it, crofuse.cube.reader)
    group.attrs.update({**attrs, "build_id": uuid.uuid4().hex, COMPLETE_ATTR: True})
    with warnings.catch_warnings():  # zarr 3 notes that consolidated metadata is not in the v3 spec yet
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(store, zarr_format=3)
    replace_store(tmp, dst)
    return _as_result(dst)


def discard(tmp: str | Path | Location) -> None:
    """Remove an unfinished temp store."""
    location(tmp if isinstance(tmp, Location) else str(tmp)).rmtree()


def read_attrs(path: str | Path | Location) -> dict[str, Any] | None:
    """The root attributes of a complete cube at ``path``, or ``None`` if there is none (or it is incomplete)."""
    import zarr

    loc = location(path if isinstance(path, Location) else str(path))
    if not (loc / "zarr.json").exists():
        return None
    try:
        attrs = dict(zarr.open_group(loc.zarr_store(read_only=True), mode="r").attrs)
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

    path = location(path if isinstance(path, Location) else str(path))
    if path.name != CUBE_NAME and (path / CUBE_NAME / "zarr.json").exists():
        path = path / CUBE_NAME
    if not (path / "zarr.json").exists() and not path.exists():
        tmp = temp_stores(path)
        hint = f" (an interrupted build left {tmp[0].name}; rerun build_cube)" if tmp else ""
        raise CubeError(f"no input cube at {path}{hint}; build it with `crofuse cube` or crofuse.cube.build_cube")
    store = path.zarr_store(read_only=True)
    try:
        group = zarr.open_group(store, mode="r")
        attrs = dict(group.attrs)
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError) as e:
        raise CubeError(f"{path} is not a zarr store ({e}); rebuild it with `crofuse cube`") from e
    consolidated = getattr(group.metadata, "consolidated_metadata", None) is not None
    if attrs.get(COMPLETE_ATTR) is not True:
        raise CubeError(
            f"{path} is incomplete (no '{COMPLETE_ATTR}' marker: the build was interrupted or is still running); "
            "rebuild it with `crofuse cube` (or build_cube) before using it"
        )
    ds = xr.open_zarr(store, consolidated=consolidated, zarr_format=3, decode_coords="all")
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


__all__ = ["COMPLETE_ATTR", "CUBE_NAME", "check_contract", "cube_path", "discard", "open_cube", "publish", "read_attrs",
           "temp_stores", "write_cube"]
