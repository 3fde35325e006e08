"""Labels on a cube's grid: read a label source's raster(s) or polygons and reproject them onto a 10 m grid.

Categorical products are mapped to ``{0, 1, 255}`` on their own grid first, then reprojected with a resampling that
suits categories: **mode** (the majority of the source pixels) when the source is finer than the target by more than
half a pixel size, else **nearest**. Fraction rasters are averaged onto the grid, then thresholded. Polygons are
rasterised on a grid ``supersample`` times finer and a pixel is impervious where they cover at least ``min_cover``
of it (the rule of the sample labels: >= 50 %). Only the window of a source that covers the target is read, so a
3°×3° WorldCover tile is never loaded whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crofuse import NODATA_LABEL
from crofuse.errors import LabelError

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

    from crofuse.cube.aoi import AOI
    from crofuse.labels.sources import LabelSource

DEFAULT_MIN_COVERAGE = 0.5
"""Least share of the AOI a label source must label; below it a training set refuses the city-year."""

_GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


@dataclass(frozen=True)
class LabelRaster:
    """Labels of one city-year on the cube grid: ``data`` uint8 ``(y, x)`` in ``{0, 1, 255}``."""

    data: np.ndarray
    source: LabelSource
    year: int | None
    requested_year: int
    inputs: tuple[str, ...]
    coverage: float
    available_years: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def provenance(self) -> dict[str, Any]:
        """What a training set's manifest records for these labels."""
        return {
            "source": self.source.name,
            "year": self.year,
            "requested_year": self.requested_year,
            "available_years": list(self.available_years),
            "inputs": list(self.inputs),
            "coverage": round(self.coverage, 6),
            "impervious_fraction": round(float((self.data == 1).sum() / max(1, (self.data != NODATA_LABEL).sum())), 6),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------------------- rasters
def _resampling(source: LabelSource, src_res: float, dst_res: float) -> Any:
    from rasterio.enums import Resampling

    finer = src_res < dst_res / 1.5
    if source.categorical:
        return Resampling.mode if finer else Resampling.nearest
    return Resampling.average if finer else Resampling.bilinear


def raster_on_grid(href: str, source: LabelSource, geobox: GeoBox, *, what: str = "") -> np.ndarray:
    """One label raster (file or URL) on ``geobox`` as uint8 ``{0, 1, 255}`` (255 outside the raster)."""
    import rasterio
    from rasterio.errors import RasterioError, WindowError
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import Window, from_bounds

    dst = np.full(tuple(geobox.shape), NODATA_LABEL, dtype=np.uint8)
    try:
        with rasterio.Env(**_GDAL_ENV), rasterio.open(href) as src:
            if src.crs is None:
                raise LabelError(f"label raster {href} ({what or source.name}) has no CRS; set one (gdal_edit.py "
                                 "-a_srs EPSG:...) and retry")
            bounds = transform_bounds(geobox.crs.to_wkt(), src.crs, *geobox.boundingbox, densify_pts=21)
            win = from_bounds(*bounds, transform=src.transform)
            # one source pixel of margin so that resampling at the edges sees real neighbours
            c0, r0 = math.floor(win.col_off) - 1, math.floor(win.row_off) - 1
            win = Window(c0, r0, math.ceil(win.col_off + win.width) + 1 - c0, math.ceil(win.row_off + win.height) + 1 - r0)
            try:
                win = win.intersection(Window(0, 0, src.width, src.height))
            except WindowError:  # the raster does not reach the grid
                return dst
            values = src.read(1, window=win)
            transform = src.window_transform(win)
            nodata = source.nodata if source.nodata is not None else src.nodata
            src_res = abs(src.res[0]) if src.crs.is_projected else abs(src.res[0]) * 111_320.0
            src_crs = src.crs
    except LabelError:
        raise
    except (RasterioError, OSError) as e:
        raise LabelError(f"cannot read the label raster {href} ({what or source.name}): {e}") from e
    if nodata is not None and source.nodata is None:
        source = source.model_copy(update={"nodata": float(nodata)})
    resampling = _resampling(source, src_res, float(abs(geobox.resolution.x)))
    if source.categorical:
        binary = source.to_binary(values, what=what or href)
        reproject(binary, dst, src_transform=transform, src_crs=src_crs, src_nodata=NODATA_LABEL,
                  dst_transform=geobox.affine, dst_crs=geobox.crs.to_wkt(), dst_nodata=NODATA_LABEL,
                  resampling=resampling)
        return dst
    fraction = values.astype("float32")
    if source.nodata is not None:
        fraction[values == source.nodata] = np.nan
    out = np.full(tuple(geobox.shape), np.nan, dtype="float32")
    reproject(fraction, out, src_transform=transform, src_crs=src_crs, src_nodata=np.nan,
              dst_transform=geobox.affine, dst_crs=geobox.crs.to_wkt(), dst_nodata=np.nan, resampling=resampling)
    return source.model_copy(update={"nodata": None}).to_binary(out)


def mosaic(layers: Sequence[np.ndarray]) -> np.ndarray:
    """First labelled value per pixel (items of several tiles of one product)."""
    out = np.full(layers[0].shape, NODATA_LABEL, dtype=np.uint8)
    for layer in layers:
        empty = out == NODATA_LABEL
        out[empty] = layer[empty]
    return out


# --------------------------------------------------------------------------------------------------------- vectors
def _read_vector(path: str, layer: str | None) -> tuple[list[Any], list[Any], Any]:
    """(geometries, feature ids, CRS) of one layer, with clear errors for no CRS and invalid geometries."""
    import pyogrio
    import shapely
    from pyogrio.errors import DataSourceError, DataLayerError

    try:
        meta, fids, wkb, _ = pyogrio.raw.read(path, layer=layer, return_fids=True, read_geometry=True,
                                              columns=[])
    except (DataSourceError, DataLayerError, OSError) as e:
        raise LabelError(f"cannot read the label polygons {path}{f' (layer {layer!r})' if layer else ''}: {e}") from e
    crs = meta.get("crs")
    if not crs:
        raise LabelError(
            f"the label polygons {path} have no CRS, so they cannot be placed on the map grid. Assign the CRS they "
            "were drawn in (in QGIS: Layer > Set CRS; or ogr2ogr -a_srs EPSG:XXXX out.gpkg in.gpkg) and retry"
        )
    geoms = [g for g in shapely.from_wkb(wkb)]
    bad = [(int(f), shapely.is_valid_reason(g)) for f, g in zip(fids, geoms, strict=True)
           if g is not None and not g.is_valid]
    if bad:
        listed = "; ".join(f"feature {f}: {why}" for f, why in bad[:5])
        raise LabelError(
            f"{len(bad)} invalid geometries in {path} ({listed}{'; ...' if len(bad) > 5 else ''}). Repair them (QGIS "
            "'Fix geometries', or shapely.make_valid) and retry"
        )
    kept = [(g, f) for g, f in zip(geoms, fids, strict=True) if g is not None and not g.is_empty
            and g.geom_type in ("Polygon", "MultiPolygon")]
    return [g for g, _ in kept], [int(f) for _, f in kept], crs


def _polygon_layer(path: str) -> str | None:
    """The layer of impervious polygons when none is named: the first that is not ``coverage``."""
    import pyogrio

    try:
        names = [name for name, _ in pyogrio.list_layers(path)]
    except Exception as e:  # pyogrio raises DataSourceError for unreadable files
        raise LabelError(f"cannot read the label polygons {path}: {e}") from e
    others = [n for n in names if n != "coverage"]
    return others[0] if others else None


def _coverage_geometry(path: str, geoms: list[Any], crs: Any) -> Any:
    import pyogrio
    import shapely

    layers = [name for name, _ in pyogrio.list_layers(path)]
    if "coverage" in layers:
        cover, _, cover_crs = _read_vector(path, "coverage")
        if cover:
            from odc.geo.geom import Geometry

            return Geometry(shapely.union_all(cover), crs=cover_crs).to_crs(crs).geom
    if not geoms:
        return None
    return shapely.box(*shapely.total_bounds(geoms))


def vector_on_grid(source: LabelSource, geobox: GeoBox, *, strip_rows: int = 256) -> tuple[np.ndarray, list[str]]:
    """Polygons of impervious surface on ``geobox``: 1 where they cover >= ``source.min_cover`` of a pixel, 0
    elsewhere inside the file's coverage, 255 outside it. Rasterised strip by strip (memory-flat)."""
    import shapely
    from odc.geo.geom import Geometry
    from rasterio.features import rasterize
    from rasterio.transform import Affine

    geoms, fids, crs = _read_vector(str(source.path), source.layer or _polygon_layer(str(source.path)))
    notes = [f"{len(geoms)} polygons from {Path(str(source.path)).name}"]
    target_crs = geobox.crs
    projected = [Geometry(g, crs=crs).to_crs(target_crs).geom for g in geoms]
    cover = _coverage_geometry(str(source.path), geoms, crs)
    out = np.full(tuple(geobox.shape), NODATA_LABEL, dtype=np.uint8)
    if cover is None:
        return out, [*notes, "no polygons and no coverage layer: nothing is labelled"]
    cover_t = Geometry(cover, crs=crs).to_crs(target_crs).geom
    s = source.supersample
    ny, nx = (int(v) for v in geobox.shape)
    a = geobox.affine
    tree = shapely.STRtree(projected) if projected else None
    for r0 in range(0, ny, strip_rows):
        r1 = min(ny, r0 + strip_rows)
        strip = a * Affine.translation(0, r0)
        fine = strip * Affine.scale(1.0 / s)
        x0, y0 = strip * (0, 0)
        x1, y1 = strip * (nx, r1 - r0)
        box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        inside = [projected[i] for i in tree.query(box)] if tree is not None else []
        shape_fine = ((r1 - r0) * s, nx * s)
        if inside:
            burned = rasterize(((g, 1) for g in inside), out_shape=shape_fine, transform=fine, fill=0, dtype="uint8")
            share = burned.reshape(r1 - r0, s, nx, s).mean(axis=(1, 3))
        else:
            share = np.zeros((r1 - r0, nx))
        covered = rasterize([(cover_t, 1)], out_shape=(r1 - r0, nx), transform=strip, fill=0, dtype="uint8")
        block = np.where(share >= source.min_cover - 1e-9, 1, 0).astype(np.uint8)
        block[covered == 0] = NODATA_LABEL
        out[r0:r1] = block
    return out, notes


# --------------------------------------------------------------------------------------------------------- facade
def labels_on_grid(
    source: LabelSource,
    geobox: GeoBox,
    *,
    year: int,
    area: AOI | None = None,
    catalog: str | None = None,
    aoi_mask: np.ndarray | None = None,
    nearest_year: bool = False,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    what: str = "",
    timeout: float = 30.0,
    retries: int = 4,
) -> LabelRaster:
    """The labels of ``source`` for ``year`` on ``geobox`` (a cube's grid), checked for coverage.

    ``area`` (lon/lat AOI) and ``catalog`` (STAC API URL) are needed for STAC sources. ``aoi_mask`` (the cube's
    ``in_aoi``) is where coverage is measured: below ``min_coverage`` a :class:`~crofuse.errors.LabelError` says by
    how much and what to do.
    """
    label = what or f"{year}"
    notes: list[str] = []
    available: tuple[int, ...] = ()
    if source.kind == "stac":
        if catalog is None or area is None:
            raise LabelError(f"label source {source.name!r} is a STAC collection: give the catalog URL and the AOI")
        from crofuse.labels.stac import find_label_items

        found = find_label_items(catalog, source, area, year, nearest_year=nearest_year, what=label,
                                 timeout=timeout, retries=retries)
        available = found.available_years
        used_year: int | None = found.year
        if found.year != year:
            notes.append(f"labels of {found.year} used for {year} (nearest year; available {list(available)})")
        layers, inputs = [], []
        for item in found.items:
            asset = item.assets.get(source.asset)  # type: ignore[arg-type]
            if asset is None:
                raise LabelError(f"label item {item.id} of {source.collection!r} has no asset {source.asset!r} "
                                 f"(it has {sorted(item.assets)}); is {source.name!r} the right label source?")
            href = asset.get_absolute_href() or asset.href
            layers.append(raster_on_grid(href, source, geobox, what=f"{label}, item {item.id}"))
            inputs.append(item.id)
        data = mosaic(layers)
    else:
        used_year = source.year
        if source.year is not None and source.year != year:
            if not nearest_year:
                raise LabelError(
                    f"the labels {source.path} apply to {source.year}, not {year} ({label}); pass nearest_year "
                    f"(--nearest-year) to use them for {year} anyway"
                )
            notes.append(f"labels of {source.year} used for {year}")
        if source.kind == "raster":
            data = raster_on_grid(str(source.path), source, geobox, what=label)
        else:
            data, more = vector_on_grid(source, geobox)
            notes += more
        inputs = [str(source.path)]
    mask = np.ones(data.shape, bool) if aoi_mask is None else np.asarray(aoi_mask, bool)
    n = int(mask.sum())
    coverage = float(((data != NODATA_LABEL) & mask).sum() / n) if n else 0.0
    if coverage < min_coverage:
        raise LabelError(
            f"label source {source.name!r} labels only {coverage:.1%} of the AOI of {label} (at least "
            f"{min_coverage:.0%} is required): it does not cover this area. Use a label source that covers it, "
            "shrink the AOI, or lower min_label_coverage (--min-label-coverage)"
        )
    return LabelRaster(data=data, source=source, year=used_year, requested_year=year, inputs=tuple(inputs),
                       coverage=coverage, available_years=available, notes=tuple(notes))


__all__ = ["DEFAULT_MIN_COVERAGE", "LabelRaster", "labels_on_grid", "mosaic", "raster_on_grid", "vector_on_grid"]
