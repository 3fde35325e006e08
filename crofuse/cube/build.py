"""``build_cube``: search -> load -> composite -> ``inputs.zarr`` for one city and year (the first half of map-city)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crofuse import OPTICAL_BANDS, SAR_BANDS
from crofuse.cube import assets as asset_checks
from crofuse.cube.aoi import target_geobox
from crofuse.cube.composite import (
    GAMMA0_DB_BOUNDS,
    REFLECTANCE_MAX,
    acquisition_keys,
    dn_offsets,
    flagged_count,
    impossible_windows,
    mosaic_acquisitions,
    optical_composite,
    optical_reflectance,
    sar_composite,
    sar_linear,
)
from crofuse.cube.loaders import load_window
from crofuse.cube.search import SeasonItems, search_season, swapped_axes_hit
from crofuse.cube.store import cube_path, discard, publish, read_attrs, write_cube
from crofuse.errors import (
    AOIError,
    AssetReadError,
    EmptySearchError,
    InsufficientDataError,
    MissingModalityError,
)
from crofuse.io.store import Location, check_writable, location, output_error

if TYPE_CHECKING:
    import xarray as xr
    from odc.geo.geobox import GeoBox

    from crofuse.cube.config import CubeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Coverage:
    """Fractions of AOI pixels with a clear optical observation, a SAR observation, and both (``valid``)."""

    optical: float
    sar: float
    valid: float


def _nan_layer(bands: tuple[str, ...], geobox: GeoBox, chunk: int) -> xr.DataArray:
    import dask.array as da
    import xarray as xr

    ny, nx = geobox.shape
    data = da.full((len(bands), int(ny), int(nx)), np.nan, dtype="float32", chunks=(len(bands), chunk, chunk))
    return xr.DataArray(data, dims=("band", "y", "x"))


def _zero_count(geobox: GeoBox, chunk: int) -> xr.DataArray:
    import dask.array as da
    import xarray as xr

    return xr.DataArray(da.zeros(tuple(int(v) for v in geobox.shape), dtype="uint16", chunks=(chunk, chunk)), dims=("y", "x"))


@dataclass(frozen=True)
class _Layers:
    """One modality's composite, observation count, per-pixel flags, where it has data (``present``) and per-item
    impossible-value windows."""

    data: xr.DataArray
    count: xr.DataArray
    flagged: xr.DataArray
    windows: xr.DataArray | None = None
    present: xr.DataArray | None = None


def _chunk_layers(data: xr.DataArray, count: xr.DataArray, impossible: xr.DataArray,
                  window: int) -> dict[str, np.ndarray]:
    """The in-memory arrays one chunk task returns: composite ``(band, y, x)``, count, flagged, ``present`` (count >
    0 and every band finite) and the chunk's impossible-value window ``(item, asset, 1, 1)``."""
    data = data.transpose("band", "y", "x")
    return {
        "data": np.asarray(data.values, dtype="float32"),
        "count": count.values,
        "flagged": flagged_count(impossible).values,
        "present": ((count > 0) & data.notnull().all("band")).values,
        "windows": impossible_windows(impossible, window).transpose("time", "band", "window_y", "window_x").values,
    }


def _optical_chunk(optical_items: list, config: CubeConfig, geobox: GeoBox,
                   roi: tuple[slice, slice]) -> dict[str, np.ndarray]:
    """Load every Sentinel-2 item's bands and SCL in the window ``roi`` and composite them (one task per chunk)."""
    prof = config.catalog_profile
    band_keys = list(prof.optical_assets.values())
    common = {"loader": config.loader, "chunk_size": config.chunk_size}
    dn = load_window(optical_items, band_keys, geobox, roi, dtype="uint16", nodata=0, resampling=config.resampling,
                     **common)
    scl = load_window(optical_items, [prof.scl_asset], geobox, roi, dtype="uint8", nodata=0, resampling="nearest",
                      **common)
    dn = dn.assign_coords(band=list(OPTICAL_BANDS))
    refl, impossible = optical_reflectance(
        dn, scl.isel(band=0, drop=True), offsets=dn_offsets(optical_items, prof), scl_mask=config.scl_mask
    )
    refl = mosaic_acquisitions(refl.drop_vars("item"), acquisition_keys(optical_items))
    optical, count = optical_composite(refl, reducer=config.optical_reducer)
    return _chunk_layers(optical, count, impossible, config.chunk_size)


def _sar_chunk(sar_items: list, config: CubeConfig, geobox: GeoBox,
               roi: tuple[slice, slice]) -> dict[str, np.ndarray]:
    """Load every Sentinel-1 item's VV/VH in the window ``roi`` and composite them (one task per chunk)."""
    prof = config.sar_source_profile
    lin = load_window(sar_items, list(prof.sar_assets.values()), geobox, roi, loader=config.loader,
                      chunk_size=config.chunk_size, dtype="float32", nodata=float("nan"),
                      resampling=config.resampling).assign_coords(band=list(SAR_BANDS))
    lin, impossible = sar_linear(lin, nodata=prof.sar_nodata)
    lin = mosaic_acquisitions(lin.drop_vars("item"), acquisition_keys(sar_items))
    sar, count = sar_composite(lin)
    return _chunk_layers(sar, count, impossible, config.chunk_size)


def _per_chunk_layers(chunk_fn: Any, items: list, assets: list[str], bands: tuple[str, ...], modality: str,
                      config: CubeConfig, geobox: GeoBox) -> _Layers:
    """One dask task per ``chunk_size`` block of ``geobox`` running ``chunk_fn`` (load every item's window, then
    the compositor on it in memory), and one ``getitem`` task per output and block: a small constant number of
    tasks per chunk, whatever the number of items, bands and compositing steps. A task holds one chunk of every
    item (what the temporal median needs at once anyway), never the whole cube."""
    import operator
    import uuid
    from functools import partial

    import dask.array as da
    import xarray as xr
    from dask.highlevelgraph import HighLevelGraph

    cs = config.chunk_size
    ny, nx = (int(v) for v in geobox.shape)
    ych = tuple(min(cs, ny - o) for o in range(0, ny, cs))
    xch = tuple(min(cs, nx - o) for o in range(0, nx, cs))
    token = uuid.uuid4().hex[:12]
    base = f"{modality}-load-composite-{token}"
    fn = partial(chunk_fn, items, config, geobox)
    tasks = {(base, i, j): (fn, (slice(i * cs, i * cs + ych[i]), slice(j * cs, j * cs + xch[j])))
             for i in range(len(ych)) for j in range(len(xch))}
    ones_y, ones_x = (1,) * len(ych), (1,) * len(xch)
    outputs = {  # name: (leading dims, their chunks, spatial chunks, dtype)
        "data": ((len(bands),), (ych, xch), "float32"),
        "count": ((), (ych, xch), "uint16"),
        "flagged": ((), (ych, xch), "uint16"),
        "present": ((), (ych, xch), "bool"),
        "windows": ((len(items), len(assets)), (ones_y, ones_x), "uint32"),
    }
    arrays = {}
    for out, (lead, spatial, dtype) in outputs.items():
        name = f"{modality}-{out}-{token}"
        zeros = (0,) * len(lead)
        layer = {(name, *zeros, i, j): (operator.getitem, (base, i, j), out) for (_, i, j) in tasks}
        graph = HighLevelGraph({base: tasks, name: layer}, {base: set(), name: {base}})
        arrays[out] = da.Array(graph, name, tuple((n,) for n in lead) + spatial, dtype=np.dtype(dtype))
    windows = xr.DataArray(
        arrays["windows"].rechunk(-1), dims=(f"{modality}_item", f"{modality}_asset", "window_y", "window_x"),
        coords={f"{modality}_item": np.array([it.id for it in items], dtype=object),
                f"{modality}_asset": np.array(assets, dtype=object)},
    )
    return _Layers(
        xr.DataArray(arrays["data"], dims=("band", "y", "x")),
        xr.DataArray(arrays["count"], dims=("y", "x")),
        xr.DataArray(arrays["flagged"], dims=("y", "x")),
        windows,
        xr.DataArray(arrays["present"], dims=("y", "x")),
    )


def _optical_layers(items: SeasonItems, config: CubeConfig, geobox: GeoBox) -> _Layers:
    prof = config.catalog_profile
    assets = [*prof.optical_assets.values(), prof.scl_asset]
    return _per_chunk_layers(_optical_chunk, list(items.optical), assets, OPTICAL_BANDS, "optical", config, geobox)


def _sar_layers(items: SeasonItems, config: CubeConfig, geobox: GeoBox) -> _Layers:
    assets = list(config.sar_source_profile.sar_assets.values())
    return _per_chunk_layers(_sar_chunk, list(items.sar), assets, SAR_BANDS, "sar", config, geobox)


def _aoi_mask(config: CubeConfig, geobox: GeoBox) -> xr.DataArray:
    import xarray as xr
    from odc.geo.geom import Geometry
    from rasterio.features import geometry_mask

    geom = Geometry(config.area.geometry, crs="EPSG:4326").to_crs(geobox.crs)
    inside = geometry_mask([geom.json], out_shape=geobox.shape, transform=geobox.affine, invert=True)
    return xr.DataArray(inside, dims=("y", "x")).chunk({"y": config.chunk_size, "x": config.chunk_size})


def _empty_search_message(config: CubeConfig, items: SeasonItems) -> str:
    w, s, e, n = config.area.bbox
    hint = ""
    if all(abs(v) <= 90 for v in (w, e)):
        hint = (
            f" If the bbox was given as (south, west, north, east), i.e. latitude first, swap it: "
            f"--bbox {s} {w} {n} {e}."
        )
    return (
        f"no Sentinel-2 or Sentinel-1 items for {config.slug!r} {config.year}: searched {items.optical_query.url} "
        f"({items.optical_query.describe()}) and {items.sar_query.url} ({items.sar_query.describe()}). Check the "
        f"catalog URL, the profile ({config.catalog_profile.name!r}), the AOI and the season.{hint}"
    )


def _fmt(bbox: tuple[float, ...], *, sep: str = ", ") -> str:
    return sep.join(f"{v:.5f}" for v in bbox)


def _check_modalities(config: CubeConfig, items: SeasonItems) -> list[str]:
    """Raise on an empty or all-cloud search; return the missing modalities the policy lets through."""
    if not items.optical and not items.cloudy and not items.sar:
        swapped = swapped_axes_hit(config, items)
        if swapped is not None:
            raise AOIError(
                f"the AOI of {config.slug!r} looks like it has latitude and longitude swapped: the catalog has no "
                f"items at bbox [{_fmt(config.area.bbox)}] but has some at [{_fmt(swapped)}]. Give (west, south, "
                f"east, north) = (lon_min, lat_min, lon_max, lat_max), e.g. --bbox {_fmt(swapped, sep=' ')}"
            )
        raise EmptySearchError(_empty_search_message(config, items))
    if not items.optical and items.cloudy:
        raise InsufficientDataError(
            f"all {len(items.cloudy)} Sentinel-2 scenes of {config.slug!r} {config.season_window.label(config.year)} "
            f"are above max_cloud_cover={config.max_cloud_cover:g}% ({', '.join(items.cloudy[:5])}"
            f"{', ...' if len(items.cloudy) > 5 else ''}). Widen the season or raise max_cloud_cover"
        )
    missing = []
    if not items.optical:
        missing.append("optical")
    if not items.sar:
        missing.append("sar")
    if missing and config.missing_modality == "fail":
        what = {"optical": ("Sentinel-2", items.optical_query), "sar": ("Sentinel-1", items.sar_query)}
        name, q = what[missing[0]]
        raise MissingModalityError(
            f"the season {config.season_window.label(config.year)} has no {name} items for {config.slug!r} "
            f"({q.url}: {q.describe()}) but the other modality has data. Widen the season, or set "
            f"missing_modality='continue' (--missing-modality continue) to build a cube with {missing[0]} as NaN"
        )
    return missing


def _coverage(tmp: Location) -> Coverage:
    import xarray as xr

    ds = xr.open_zarr(tmp.zarr_store(read_only=True), consolidated=False, zarr_format=3)
    inside = ds["in_aoi"]
    n = float(inside.sum().compute())
    if n == 0:
        return Coverage(0.0, 0.0, 0.0)

    def frac(mask: xr.DataArray) -> float:
        return float((mask & inside).sum().compute()) / n

    return Coverage(
        optical=frac(ds["optical_count"] > 0), sar=frac(ds["sar_count"] > 0), valid=frac(ds["valid"])
    )


def assemble(config: CubeConfig, items: SeasonItems, geobox: GeoBox, missing: list[str]) -> xr.Dataset:
    """The lazy cube Dataset (contract in docs/architecture.md), before writing."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    from crofuse import __version__

    cs = config.chunk_size
    if "optical" in missing:
        opt = _Layers(_nan_layer(OPTICAL_BANDS, geobox, cs), _zero_count(geobox, cs), _zero_count(geobox, cs))
    else:
        opt = _optical_layers(items, config, geobox)
    if "sar" in missing:
        sr = _Layers(_nan_layer(SAR_BANDS, geobox, cs), _zero_count(geobox, cs), _zero_count(geobox, cs))
    else:
        sr = _sar_layers(items, config, geobox)
    optical, optical_count, sar, sar_count = opt.data, opt.count, sr.data, sr.count

    present = [layers.present for name, layers in (("optical", opt), ("sar", sr)) if name not in missing]
    valid = present[0] if len(present) == 1 else present[0] & present[1]

    x = geobox.coords["x"].values.astype("float64")
    y = geobox.coords["y"].values.astype("float64")
    # One Dataset cannot hold two "band" dimensions of different lengths: SAR's band axis is "sar_band".
    coords = {
        "band": np.array(OPTICAL_BANDS, dtype=object),  # object (variable-length) strings: zarr v3 "string"
        "sar_band": np.array(SAR_BANDS, dtype=object),
        "y": y,
        "x": x,
    }
    ds = xr.Dataset(
        {
            "optical": optical.drop_vars(["band", "x", "y"], errors="ignore"),
            "sar": sar.rename(band="sar_band").drop_vars(["sar_band", "x", "y"], errors="ignore"),
            "valid": valid.drop_vars(["x", "y"], errors="ignore").astype(bool),
            "optical_count": optical_count.drop_vars(["x", "y"], errors="ignore"),
            "sar_count": sar_count.drop_vars(["x", "y"], errors="ignore"),
            "optical_flagged": opt.flagged.drop_vars(["x", "y"], errors="ignore"),
            "sar_flagged": sr.flagged.drop_vars(["x", "y"], errors="ignore"),
            "in_aoi": _aoi_mask(config, geobox),
        },
        coords=coords,
    )
    for name, layers in (("optical", opt), ("sar", sr)):
        if layers.windows is not None:  # small (item, asset, window) arrays, computed in the same graph
            ds[f"{name}_impossible"] = layers.windows
            coords[f"{name}_item"] = layers.windows[f"{name}_item"].values
            coords[f"{name}_asset"] = layers.windows[f"{name}_asset"].values
    ds = ds.drop_vars([c for c in ds.coords if c not in coords])
    for name in ("optical", "sar"):
        ds[name] = ds[name].astype("float32")
    for var in ds.variables.values():  # loaders leave their own (not always JSON-able) attributes
        var.attrs = {}
    ds = ds.chunk({"y": cs, "x": cs, "band": -1, "sar_band": -1})

    ds["optical"].attrs.update(units="1", long_name="surface reflectance (seasonal median of clear observations)")
    ds["sar"].attrs.update(units="dB", long_name="gamma0 backscatter (10 log10 of the seasonal mean linear power)")
    ds["valid"].attrs.update(long_name="every present modality has data at this pixel")
    ds["optical_count"].attrs.update(long_name="number of clear Sentinel-2 acquisitions")
    ds["sar_count"].attrs.update(long_name="number of Sentinel-1 acquisitions")
    ds["in_aoi"].attrs.update(long_name="pixel centre inside the city polygon")
    ds["optical_flagged"].attrs.update(
        long_name="number of Sentinel-2 acquisitions dropped here for a physically impossible value")
    ds["sar_flagged"].attrs.update(
        long_name="number of Sentinel-1 acquisitions dropped here for a physically impossible value")
    for name in ("optical_impossible", "sar_impossible"):
        if name in ds:
            ds[name].attrs.update(long_name=f"impossible values per item, asset and {cs} x {cs} px window")
    ds = ds.rio.write_crs(geobox.crs.to_wkt()).rio.write_transform(geobox.affine)
    ds = ds.rio.write_coordinate_system()

    sar_prof = config.sar_source_profile
    ds.attrs.update(
        city=config.slug,
        city_name=config.city,
        year=config.year,
        season=config.season_window.label(config.year),
        catalog=config.catalog,
        profile=config.catalog_profile.name,
        optical_collection=config.catalog_profile.optical_collection,
        sar_catalog=config.sar_source_url,
        sar_profile=sar_prof.name,
        sar_collection=sar_prof.sar_collection or "",
        optical_items=[it.id for it in items.optical],
        sar_items=[it.id for it in items.sar],
        optical_items_too_cloudy=list(items.cloudy),
        crofuse_version=__version__,
        crs=f"EPSG:{geobox.crs.epsg}" if geobox.crs.epsg else geobox.crs.to_wkt(),
        crs_choice=(
            f"UTM zone of the AOI centroid {config.area.centroid}"
            if config.epsg is None
            else f"EPSG:{config.epsg} given in the configuration"
        ),
        aoi_utm_zones=list(config.area.utm_zones),
        aoi=json.dumps(config.area.geojson),
        resolution=config.resolution,
        loader=config.loader,
        optical_reducer=config.optical_reducer,
        scl_mask=list(config.scl_mask),
        max_cloud_cover=config.max_cloud_cover,
        missing_modalities=list(missing),
        reflectance_max=REFLECTANCE_MAX,
        scl_classes="0-11",
        gamma0_db_bounds=list(GAMMA0_DB_BOUNDS),
        max_impossible_fraction=config.max_impossible_fraction,
        fingerprint=config.fingerprint(),
    )
    return ds


def _impossible_report(tmp: Location, refs: list[asset_checks.AssetRef], config: CubeConfig) -> dict[str, Any]:
    """Read the per-item impossible-value windows of the written store; raise :class:`AssetReadError` naming every
    (item, asset) whose worst window is above ``max_impossible_fraction``; else the attributes that report them."""
    import xarray as xr

    ds = xr.open_zarr(tmp.zarr_store(read_only=True), consolidated=False, zarr_format=3)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    cs = config.chunk_size
    wy = np.minimum(cs, ny - cs * np.arange(-(-ny // cs)))  # pixels per window row / column (edges are smaller)
    wx = np.minimum(cs, nx - cs * np.arange(-(-nx // cs)))
    area = np.outer(wy, wx).astype("float64")
    hrefs = {(r.item, r.key): r.href for r in refs}
    counts: dict[str, int] = {}
    totals = {"optical": 0, "sar": 0}
    bad = []
    for modality in ("optical", "sar"):
        name = f"{modality}_impossible"
        if name not in ds:
            continue
        w = ds[name].transpose(f"{modality}_item", f"{modality}_asset", "window_y", "window_x").values.astype("int64")
        for i, item in enumerate(ds[f"{modality}_item"].values):
            for j, key in enumerate(ds[f"{modality}_asset"].values):
                n = int(w[i, j].sum())
                if n == 0:
                    continue
                counts[f"{item}/{key}"] = n
                totals[modality] += n
                worst = float((w[i, j] / area).max())
                if worst > config.max_impossible_fraction:
                    bad.append((str(item), str(key), n, worst))
    if bad:
        lines = "\n".join(
            f"  - item {item!r} asset {key!r} ({hrefs.get((item, key), '?')}): {n} values outside the physical "
            f"bounds, {worst:.2%} of its worst {cs} x {cs} px window"
            for item, key, n, worst in bad[:5]
        )
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise AssetReadError(
            f"{len(bad)} raster asset(s) hold physically impossible values (reflectance above {REFLECTANCE_MAX}, "
            f"SCL outside 0-11, gamma0 outside {GAMMA0_DB_BOUNDS[0]:g}..{GAMMA0_DB_BOUNDS[1]:g} dB) above "
            f"max_impossible_fraction={config.max_impossible_fraction:g}:\n{lines}{more}\nThe file is most likely "
            "damaged (a corrupt tile that still decodes): re-download or regenerate it (for the sample catalog: "
            "`crofuse sample-catalog build`), or remove the item. Raising max_impossible_fraction builds the cube "
            "with those values as nodata, but values inside the bounds of a damaged tile would then pass."
        )
    return {
        "impossible_values": counts,
        "optical_impossible_values": totals["optical"],
        "sar_impossible_values": totals["sar"],
    }


def build_cube(config: CubeConfig, *, progress: bool = True, force: bool = False, items: SeasonItems | None = None,
               path: Any = None, lease_wait: float | None = 0.0) -> Any:
    """Build ``<output>/<city-slug>/<year>/inputs.zarr`` for ``config`` and return its path.

    ``items``: what :func:`~crofuse.cube.search.search_season` already found for ``config`` (a flow that searched
    once to report the scenes passes them on, so the catalog is not searched twice); None searches here.

    Reruns are idempotent: a complete cube built from the same settings (``fingerprint`` attribute) is returned as
    is unless ``force``; otherwise the new cube is written to a temporary name and moved over the old one only
    when complete. The output may be a path or an ``s3://`` URL (a Path is returned for a local cube, a
    :class:`~crofuse.io.store.Location` for a URL). Raises :class:`~crofuse.errors.EmptySearchError`,
    :class:`~crofuse.errors.MissingModalityError`, :class:`~crofuse.errors.InsufficientDataError`,
    :class:`~crofuse.errors.AssetReadError`, :class:`~crofuse.errors.CatalogError` or, when the output cannot be
    written (read-only, full), :class:`~crofuse.errors.OutputWriteError` with what went wrong and what to do.

    Args:
        path: build the cube there instead (``map-city`` builds a changed cube in the city-year's staging area,
            beside the old one); the lease is still the city-year's of ``config``.
        lease_wait: seconds to wait for another build or run holding the city-year's lease
            (:class:`~crofuse.errors.LeaseHeldError` after that; 0: at once). The lease is held for the build,
            and only its holder removes temporary stores of interrupted builds.
    """
    from crofuse.layout import city_year

    final = cube_path(config.output_root, config.city, config.year)
    target = final if path is None else path
    existing = read_attrs(target)
    if existing is not None and existing.get("fingerprint") == config.fingerprint() and not force:
        log.info("cube %s is up to date (fingerprint %s)", target, existing["fingerprint"])
        return target
    folder = location(final if isinstance(final, Location) else str(final)).parent
    check_writable(folder)  # a read-only output fails here, in one line, before any search or read
    cy = city_year(folder.parent.parent, config.city, config.year)
    with cy.lease(purpose=f"cube {config.slug} {config.year}", wait=lease_wait):
        return _build_cube(config, target, progress=progress, items=items)


def _build_cube(config: CubeConfig, path: Any, *, progress: bool, items: SeasonItems | None) -> Any:
    import rasterio.errors

    if items is None:
        items = search_season(config)
    missing = _check_modalities(config, items)
    geobox = target_geobox(config.area, resolution=config.resolution, epsg=config.epsg)
    if len(config.area.utm_zones) > 1:
        log.warning(
            "AOI of %s spans UTM zones %s; the cube is written in %s (the centroid's zone)",
            config.slug, config.area.utm_zones, geobox.crs,
        )
    refs = asset_checks.asset_refs(items.optical, [*config.catalog_profile.optical_assets.values(),
                                                   config.catalog_profile.scl_asset])
    refs += asset_checks.asset_refs(items.sar, list(config.sar_source_profile.sar_assets.values()))
    if config.check_assets:
        asset_checks.check_headers(refs)
    verified = asset_checks.verify_files(refs) if config.verify_checksums else 0

    ds = assemble(config, items, geobox, missing)
    try:
        tmp = write_cube(ds, path, progress=progress)
    except (RuntimeError, rasterio.errors.RasterioError, OSError, ValueError) as e:  # ValueError: undecodable tags
        written = output_error(e, path, needed=int(ds.nbytes))
        if written is not None:  # the output's fault (full, read-only): no re-read of the inputs
            raise written from None
        err = asset_checks.diagnose_read_failure(refs, e)
        if err is None:
            raise
        raise err from e

    try:
        report = _impossible_report(tmp, refs, config)
    except AssetReadError:
        discard(tmp)
        raise
    cov = _coverage(tmp)
    attrs: dict[str, Any] = {
        "optical_fraction": round(cov.optical, 6),
        "sar_fraction": round(cov.sar, 6),
        "valid_fraction": round(cov.valid, 6),
        "assets_verified": verified,
        **report,
    }
    label = f"{config.slug!r} {config.season_window.label(config.year)}"
    if cov.valid < config.min_valid_fraction:
        discard(tmp)
        raise InsufficientDataError(
            f"only {cov.valid:.1%} of the AOI of {label} is valid (clear optical: {cov.optical:.1%}, SAR: "
            f"{cov.sar:.1%}); at least min_valid_fraction={config.min_valid_fraction:.0%} is required. "
            f"{len(items.optical)} Sentinel-2 scenes were used"
            f"{f', {len(items.cloudy)} more skipped as too cloudy' if items.cloudy else ''}: widen the season, "
            "raise max_cloud_cover, or lower min_valid_fraction"
        )
    result = publish(tmp, path, attrs=attrs)
    log.info(
        "cube %s: %d x %d px, valid %.1f%% (optical %.1f%%, SAR %.1f%%)",
        path, geobox.shape[1], geobox.shape[0], 100 * cov.valid, 100 * cov.optical, 100 * cov.sar,
    )
    return result


__all__ = ["Coverage", "assemble", "build_cube"]
