"""The STAC item of one finished city-year, built from its folder alone.

A city-year folder is finished when it holds the completeness marker (``mapped.json``, written last by
``map-city``) and the impervious map. Its item (``<output>/<city>/<year>/item.json``, next to its assets, hrefs
relative) carries

* the assets of :data:`crofuse.products.assets.ITEM_ASSETS` whose files exist, each with ``file:checksum``
  (SHA-256 multihash) and ``file:size`` (a zarr store, a folder, has neither);
* the projection extension (``proj:code`` or ``proj:wkt2``, ``proj:shape``, ``proj:transform``) of the map grid,
  the raster extension (``nodata``, ``data_type``, ``scale``) and the classification extension (class values and
  names, nodata flagged) on the raster assets;
* provenance under the ``crofuse:`` prefix: the checkpoint's SHA-256 and name, the hash of the mapping parameters,
  the scene catalog's URL, the collections and ids of the input Sentinel-2 and Sentinel-1 items (also as
  ``derived_from`` links to them), the season and the crofuse version; and a few figures of the statistics record.

Nothing in an item depends on when it is built: rebuilding from the same files gives the same JSON, and
:func:`write_item` then leaves the file alone.

STAC: Item spec 1.1.0; extensions projection v2.0.0, raster v1.1.0, classification v2.0.0, file v2.1.0
(https://github.com/stac-extensions).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from crofuse.errors import DataError
from crofuse.io.store import Location, gdal_env, location, native
from crofuse.products.assets import (
    COLLECTION_NAME,
    CUBE_NAME,
    ITEM_ASSETS,
    ITEM_NAME,
    JSON,
    MARKER_NAME,
    AssetSpec,
)

log = logging.getLogger(__name__)

PREFIX = "crofuse:"
"""Prefix of crofuse's own item fields (provenance and figures)."""

FIGURES = ("impervious_km2", "aoi_km2", "valid_km2", "fraction_of_aoi", "previous_year", "gain_km2", "loss_km2",
           "net_km2")
"""Fields of the statistics record copied into the item's properties (``crofuse:impervious_km2``...)."""

_BLOCK = 1 << 20


def is_finished(folder: Path | str | Location) -> bool:
    """Does ``folder`` hold a finished city-year (a complete marker, not one that says a new map is being
    published, and the impervious map)?"""
    from crofuse.layout import COMPLETE, marker_state

    folder = location(folder)
    required = [spec.name for spec in ITEM_ASSETS if spec.required]
    return (folder / MARKER_NAME).is_file() and marker_state(folder) == COMPLETE and all(
        (folder / name).exists() for name in required)


def item_id(city: str, year: int) -> str:
    """``wuhan-2022``."""
    return f"{city}-{int(year)}"


def sha256_multihash(path: Path | str | Location) -> str:
    """``file:checksum`` of a file or object: the SHA-256 digest as a hex multihash (``1220`` + 64 hex digits),
    read once, in blocks (an object on S3 is streamed)."""
    digest = hashlib.sha256()
    for block in location(path).iter_bytes(_BLOCK):
        digest.update(block)
    return "1220" + digest.hexdigest()


def _read_json(path: Path | Location) -> dict[str, Any]:
    try:
        return json.loads(location(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not readable JSON ({e}); rerun the city-year that wrote it") from e


def _zarr_attrs(store: Location) -> dict[str, Any]:
    """The root attributes of a zarr v3 store (its ``zarr.json``), or {} when there is no store."""
    meta = store / "zarr.json"
    return dict(_read_json(meta).get("attributes") or {}) if meta.is_file() else {}


def _grid(path: Location) -> tuple[Any, Any, tuple[int, int]]:
    import rasterio

    try:
        with gdal_env(), rasterio.open(path.gdal_path) as src:
            return src.crs, src.transform, (int(src.height), int(src.width))
    except rasterio.errors.RasterioError as e:
        raise DataError(f"{path} is not a readable GeoTIFF ({e}); rerun the city-year that wrote it") from e


def _season(text: str, year: int) -> tuple[dt.datetime, dt.datetime]:
    """``"2021-06-01/2021-06-30"`` -> the first and the last second of the season (UTC)."""
    try:
        start, end = (dt.date.fromisoformat(p.strip()) for p in text.split("/"))
    except ValueError:
        raise DataError(f"season {text!r} of the {year} maps is not 'YYYY-MM-DD/YYYY-MM-DD'") from None
    utc = dt.UTC
    return (dt.datetime(start.year, start.month, start.day, tzinfo=utc),
            dt.datetime(end.year, end.month, end.day, 23, 59, 59, tzinfo=utc))


def _figure(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _derived_from(catalog: str, collection: str, ids: list[str]) -> list[dict[str, str]]:
    base = catalog.rstrip("/")
    return [{"rel": "derived_from", "href": f"{base}/collections/{quote(collection)}/items/{quote(i)}",
             "type": "application/geo+json", "title": f"{collection} {i}"} for i in ids]


def _raster_asset(asset: Any, spec: AssetSpec, resolution: float) -> None:
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    band = RasterBand.create(nodata=spec.nodata, data_type=DataType.UINT8, spatial_resolution=resolution,
                             sampling="area", scale=spec.scale, offset=0.0 if spec.scale is not None else None,
                             unit=spec.unit)
    RasterExtension.ext(asset, add_if_missing=True).apply([band])
    if spec.classes:
        classes = [Classification.create(value=v, name=name, description=text) for v, name, text in spec.classes]
        classes.append(Classification.create(value=spec.nodata, name="nodata", description="Not mapped",
                                             nodata=True))
        ClassificationExtension.ext(asset, add_if_missing=True).apply(classes=classes)


def add_file_fields(asset: Any, path: Path | Location) -> None:
    """``file:checksum`` and ``file:size`` of a file asset (a folder, e.g. a zarr store, gets neither)."""
    from pystac.extensions.file import FileExtension

    path = location(path)
    if path.is_file():
        ext = FileExtension.ext(asset, add_if_missing=True)
        ext.checksum = sha256_multihash(path)
        ext.size = path.stat().size


def build_item(folder: Path | str | Location, *, collection_id: str) -> Any:
    """The :class:`pystac.Item` of the finished city-year in ``folder`` (``<output>/<city>/<year>``).

    Reads the marker, the maps' and the cube's attributes (for the provenance), the impervious map's grid and the
    statistics record; hashes every asset file. Raises :class:`~crofuse.errors.DataError` when the folder is not a
    finished city-year.
    """
    import pystac
    from odc.geo.geobox import GeoBox
    from pystac.extensions.projection import ProjectionExtension

    from crofuse import __version__

    folder = location(folder)
    if not is_finished(folder):
        raise DataError(
            f"{folder} is not a finished city-year (no {MARKER_NAME} or no impervious map): run map-city for it, "
            "then build its item"
        )
    marker = _read_json(folder / MARKER_NAME)
    by_key = {spec.key: spec for spec in ITEM_ASSETS}
    maps_attrs = _zarr_attrs(folder / by_key["maps"].name)
    cube_attrs = _zarr_attrs(folder / CUBE_NAME)
    city = str(marker.get("city") or maps_attrs.get("city") or folder.parent.name)
    year = int(marker.get("year") or maps_attrs.get("year") or folder.name)
    provenance: Mapping[str, Any] = {**maps_attrs, **cube_attrs}

    crs, transform, shape = _grid(folder / by_key["impervious"].name)
    geobox = GeoBox(shape, transform, crs)
    footprint = geobox.footprint("EPSG:4326", npoints=3)
    left, bottom, right, top = footprint.boundingbox
    geometry = json.loads(json.dumps(footprint.json))  # tuples -> lists
    season = str(provenance.get("season") or f"{year}-06-01/{year}-06-30")
    start, end = _season(season, year)

    record_path = folder / by_key["statistics"].name
    record = _read_json(record_path) if record_path.is_file() else {}
    properties: dict[str, Any] = {
        "start_datetime": pystac.utils.datetime_to_str(start),
        "end_datetime": pystac.utils.datetime_to_str(end),
        "gsd": abs(float(transform.a)),
        f"{PREFIX}city": city,
        f"{PREFIX}year": year,
        f"{PREFIX}season": season,
        f"{PREFIX}checkpoint": Path(str(marker.get("checkpoint") or maps_attrs.get("checkpoint") or "")).name,
        f"{PREFIX}checkpoint_sha256": marker.get("checkpoint_sha256") or maps_attrs.get("checkpoint_sha256"),
        f"{PREFIX}parameters_sha256": marker.get("parameters_sha256"),
        f"{PREFIX}catalog": provenance.get("catalog") or marker.get("catalog"),
        f"{PREFIX}optical_collection": provenance.get("optical_collection"),
        f"{PREFIX}optical_items": list(provenance.get("optical_items") or []),
        f"{PREFIX}sar_catalog": provenance.get("sar_catalog") or provenance.get("catalog") or marker.get("catalog"),
        f"{PREFIX}sar_collection": provenance.get("sar_collection"),
        f"{PREFIX}sar_items": list(provenance.get("sar_items") or []),
        f"{PREFIX}version": provenance.get("crofuse_version") or __version__,
    }
    if marker.get("finished_at"):
        properties["created"] = str(marker["finished_at"])
    properties.update({f"{PREFIX}{name}": _figure(record[name]) for name in FIGURES if name in record})
    properties = {k: v for k, v in properties.items() if v is not None}

    item = pystac.Item(
        id=item_id(city, year), geometry=geometry, bbox=[left, bottom, right, top], datetime=start,
        properties=properties, collection=collection_id,
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg()
    proj.apply(code=f"EPSG:{epsg}" if epsg else None, wkt2=None if epsg else crs.to_wkt(),
               shape=list(shape), transform=list(transform)[:6])

    for spec in ITEM_ASSETS:
        path = folder / spec.name
        if not path.exists():
            continue
        asset = pystac.Asset(href=f"./{spec.name}", title=spec.title, description=spec.description or None,
                             media_type=spec.media_type, roles=list(spec.roles))
        item.add_asset(spec.key, asset)
        if spec.raster:
            _raster_asset(asset, spec, abs(float(transform.a)))
        add_file_fields(asset, path)

    parent = f"../../{COLLECTION_NAME}"
    item.links = []
    item_dict_links = [{"rel": rel, "href": parent, "type": JSON} for rel in ("root", "parent", "collection")]
    for modality in ("optical", "sar"):
        catalog = properties.get(f"{PREFIX}{'catalog' if modality == 'optical' else 'sar_catalog'}")
        collection = properties.get(f"{PREFIX}{modality}_collection")
        if catalog and collection:
            item_dict_links += _derived_from(str(catalog), str(collection), properties[f"{PREFIX}{modality}_items"])
    item.links = [pystac.Link.from_dict(d) for d in item_dict_links]
    return item


def item_json(item: Any) -> str:
    """The item as the JSON text written to disk (hrefs as built: relative, no self link)."""
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_text_if_changed(path: Path | str | Location, text: str) -> bool:
    """Write ``text`` to ``path`` atomically (:meth:`crofuse.io.store.Location.write_text`: temporary name +
    rename on disk, one PUT on S3) unless it already holds it; True if written."""
    loc = location(path)
    try:
        if loc.read_text() == text:
            return False
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        pass
    loc.write_text(text)
    return True


def write_item(folder: Path | str | Location, *, collection_id: str) -> tuple[Path | Location, bool]:
    """Build the item of the finished city-year in ``folder`` and write ``<folder>/item.json`` when it changed.

    Returns the path (a :class:`~crofuse.io.store.Location` on object storage) and whether it was (re)written."""
    item = build_item(folder, collection_id=collection_id)
    path = location(folder) / ITEM_NAME
    return native(path), write_text_if_changed(path, item_json(item))


__all__ = [
    "FIGURES",
    "PREFIX",
    "add_file_fields",
    "build_item",
    "is_finished",
    "item_id",
    "item_json",
    "sha256_multihash",
    "write_item",
    "write_text_if_changed",
]
