"""Loaders: STAC items -> a lazy ``(time, band, y, x)`` dask array of raw pixel values on the cube's grid.

Two interchangeable loaders, chosen by ``CubeConfig.loader``; both return the same pixels (tested):

- ``odc-stac`` (default): ``odc.stac.load(..., groupby="id")``, maintained by the Open Data Cube project.
- ``stackstac``: ``stackstac.stack(...)``. Its default ``errors_as_nodata`` turns HTTP 404s into silent nodata;
  crofuse passes ``errors_as_nodata=()`` so every unreadable asset raises and is reported.

Loaders never rescale: values stay in the asset's native dtype (uint16 DN, uint8 SCL, float32 linear power) until
:mod:`crofuse.cube.composite` converts them. One item is one time slice, in the order given.

:func:`load_assets` gives the lazy dask array of the whole grid (one task per item, band and chunk);
:func:`load_window` reads one chunk-aligned window of it into memory, all items at once, inside whatever task calls
it (the cube build's one task per chunk, :mod:`crofuse.cube.build`), with dask's synchronous scheduler. Both read
the same pixels as the whole-grid array: odc-stac fills each dask chunk by reading onto that tile's geobox, so the
window is loaded as a grid of its own, one tile; for stackstac (which warps onto the whole grid's extent) the window
is cut from the lazy whole-grid array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pystac
    import xarray as xr
    from odc.geo.geobox import GeoBox


def _stackstac_item_dict(item: pystac.Item) -> dict[str, Any]:
    """stackstac 0.5 reads the projection extension v1 (``proj:epsg``); add it from v2's ``proj:code``."""
    d = item.to_dict(transform_hrefs=False)
    props = d["properties"]
    code = props.get("proj:code")
    if "proj:epsg" not in props and isinstance(code, str) and code.upper().startswith("EPSG:"):
        props["proj:epsg"] = int(code.split(":")[1])
    for asset in d["assets"].values():
        acode = asset.get("proj:code")
        if "proj:epsg" not in asset and isinstance(acode, str) and acode.upper().startswith("EPSG:"):
            asset["proj:epsg"] = int(acode.split(":")[1])
    return d


def load_stackstac(
    items: Sequence[pystac.Item],
    assets: Sequence[str],
    geobox: GeoBox,
    *,
    chunk_size: int,
    dtype: str,
    nodata: float,
    resampling: str = "nearest",
) -> xr.DataArray:
    """Stack ``assets`` of ``items`` onto ``geobox`` with stackstac (pixel-centre coordinates, no rescaling)."""
    import stackstac
    from rasterio.enums import Resampling

    bounds = geobox.boundingbox
    res = abs(geobox.resolution.x)
    da = stackstac.stack(
        [_stackstac_item_dict(it) for it in items],
        assets=list(assets),
        epsg=int(geobox.crs.epsg),
        resolution=res,
        bounds=(bounds.left, bounds.bottom, bounds.right, bounds.top),
        snap_bounds=False,
        resampling=Resampling[resampling],
        chunksize=(1, 1, chunk_size, chunk_size),
        dtype=np.dtype(dtype),
        fill_value=np.dtype(dtype).type(nodata),  # a numpy scalar: numpy 2 refuses can_cast(int, uint16)
        rescale=False,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
        errors_as_nodata=(),
    )
    if da.shape[-2:] != tuple(geobox.shape):
        raise AssertionError(f"stackstac grid {da.shape[-2:]} != target {tuple(geobox.shape)}")
    return da.drop_vars([c for c in da.coords if c not in ("time", "band", "y", "x")])


def load_odc(
    items: Sequence[pystac.Item],
    assets: Sequence[str],
    geobox: GeoBox,
    *,
    chunk_size: int,
    dtype: str,
    nodata: float,
    resampling: str = "nearest",
) -> xr.DataArray:
    """Load ``assets`` of ``items`` onto ``geobox`` with odc-stac, one time slice per item (``groupby="id"``)."""
    import odc.stac

    ds = odc.stac.load(
        list(items),
        bands=list(assets),
        geobox=geobox,
        groupby="id",
        preserve_original_order=True,
        chunks={"time": 1, "y": chunk_size, "x": chunk_size},
        dtype=dtype,
        resampling=resampling,
        fail_on_error=True,
    )
    da = ds[list(assets)].to_dataarray("band").transpose("time", "band", "y", "x")
    # odc-stac fills with the asset's nodata; make it the requested one so both loaders agree exactly.
    src_nodata = {ds[a].attrs.get("nodata") for a in assets}
    for v in src_nodata:
        if v is not None and not (isinstance(v, float) and np.isnan(v)) and v != nodata:
            da = da.where(da != v, np.array(nodata, dtype=dtype))
    return da.drop_vars([c for c in da.coords if c not in ("time", "band", "y", "x")])


LoaderFn = Callable[..., "xr.DataArray"]
LOADER_FUNCTIONS: dict[str, LoaderFn] = {"odc-stac": load_odc, "stackstac": load_stackstac}


def _with_item_coords(da: xr.DataArray, items: Sequence[pystac.Item], assets: Sequence[str],
                      geobox: GeoBox) -> xr.DataArray:
    """``da`` with the coordinates both loaders' results share: ``item`` ids in input order, bands named by asset
    key, and ``geobox``'s pixel-centre ``x``/``y`` as float64."""
    x, y = geobox.coords["x"].values, geobox.coords["y"].values
    return da.assign_coords(
        item=("time", [it.id for it in items]), band=list(assets), x=x.astype("float64"), y=y.astype("float64")
    )


def load_assets(
    items: Sequence[pystac.Item],
    assets: Sequence[str],
    geobox: GeoBox,
    *,
    loader: str,
    chunk_size: int,
    dtype: str,
    nodata: float,
    resampling: str = "nearest",
) -> xr.DataArray:
    """``(time, band, y, x)`` raw values of ``assets`` (bands named by asset key), one slice per item, with an
    ``item`` coordinate holding the item ids in input order."""
    fn = LOADER_FUNCTIONS[loader]
    da = fn(items, assets, geobox, chunk_size=chunk_size, dtype=dtype, nodata=nodata, resampling=resampling)
    if da.sizes["time"] != len(items):
        raise AssertionError(f"{loader} returned {da.sizes['time']} slices for {len(items)} items")
    return _with_item_coords(da, items, assets, geobox)


def load_window(
    items: Sequence[pystac.Item],
    assets: Sequence[str],
    geobox: GeoBox,
    roi: tuple[slice, slice],
    *,
    loader: str,
    chunk_size: int,
    dtype: str,
    nodata: float,
    resampling: str = "nearest",
) -> xr.DataArray:
    """The ``(time, band, y, x)`` values of :func:`load_assets` in the window ``roi`` (``(y slice, x slice)`` of one
    ``chunk_size`` block of ``geobox``), read into memory now, every item at once, with dask's synchronous
    scheduler (this runs inside a task). Same coordinates as :func:`load_assets`, cut to the window."""
    ys, xs = roi
    if ys.start % chunk_size or xs.start % chunk_size:
        raise ValueError(f"window {roi} does not start on a {chunk_size} px chunk boundary")
    sub = geobox[ys, xs]
    common = {"chunk_size": chunk_size, "dtype": dtype, "nodata": nodata, "resampling": resampling}
    if loader == "odc-stac":  # the window's geobox is one chunk_size tile: the very read of the whole-grid chunk
        lazy = load_odc(items, assets, sub, **common)
    elif loader in LOADER_FUNCTIONS:  # stackstac warps onto the whole grid's extent: cut the chunk out of it
        lazy = LOADER_FUNCTIONS[loader](items, assets, geobox, **common).isel(y=ys, x=xs)
    else:
        raise ValueError(f"unknown loader {loader!r}; one of {sorted(LOADER_FUNCTIONS)}")
    da = lazy.compute(scheduler="synchronous")
    if da.sizes["time"] != len(items) or tuple(da.shape[-2:]) != tuple(sub.shape):
        raise AssertionError(f"{loader} returned {dict(da.sizes)} for {len(items)} items on {tuple(sub.shape)} px")
    return _with_item_coords(da, items, assets, sub)


__all__ = ["LOADER_FUNCTIONS", "load_assets", "load_odc", "load_stackstac", "load_window"]
