"""The products collection: every finished city-year of an output root as one STAC collection.

Layout (static STAC, self-contained, relative hrefs; docs/products.md)::

    <output>/collection.json          # the collection (id crofuse-impervious by default): extent, summaries,
                                      #   links to every item, the statistics table as collection-level assets
    <output>/<city>/<year>/item.json  # one item per finished city-year, next to its assets (crofuse.products.items)

:func:`publish` writes the items of some cities (or of all) and rewrites the collection from what is on disk. It
is idempotent: files whose content would not change are not rewritten. It holds the output root's lock
(:func:`crofuse.statistics.statistics_lock`, the one that serialises the writers of the shared tables), so flow
runs that finish together do not lose each other's items. ``map-city`` calls it for its city after the marker is
written (its later years' change maps may have changed too), ``remap-cities`` at its end, and
``crofuse products build OUT`` for a whole folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crofuse.errors import DataError
from crofuse.io.store import Location, location, native
from crofuse.products.assets import COLLECTION_ASSETS, COLLECTION_NAME, ITEM_NAME
from crofuse.products.items import (
    PREFIX,
    add_file_fields,
    is_finished,
    write_item,
    write_text_if_changed,
)

log = logging.getLogger(__name__)

DEFAULT_COLLECTION_ID = "crofuse-impervious"


@dataclass(frozen=True)
class ProductsConfig:
    """What the collection says about itself.

    ``license``: an SPDX identifier, or ``"other"`` (the default: the maps derive from Copernicus Sentinel data,
    whose terms of use apply; set your own)."""

    collection_id: str = DEFAULT_COLLECTION_ID
    title: str = "crofuse urban impervious surface"
    description: str = (
        "Annual 10 m urban impervious-surface maps from Sentinel-2 (B02, B03, B04, B08) fused with Sentinel-1 "
        "(VV, VH) by CroFuseNet (Wu et al., IEEE JSTARS 16, 2023): impervious/pervious map, probability, change "
        "since the previous mapped year, and the statistics table of every city-year."
    )
    license: str = "other"
    keywords: tuple[str, ...] = ("impervious surface", "urban", "Sentinel-1", "Sentinel-2", "CroFuseNet")

    def __post_init__(self) -> None:
        import re

        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.collection_id):
            raise DataError(
                f"collection id {self.collection_id!r}: use lowercase letters, digits, '.', '_' and '-' "
                f"(e.g. {DEFAULT_COLLECTION_ID!r})"
            )


@dataclass
class PublishReport:
    """What :func:`publish` did."""

    collection: Path | Location
    items: list[Path | Location] = field(default_factory=list)
    written: list[Path | Location] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{len(self.items)} items in {self.collection} ({len(self.written)} written"
                f"{f', {len(self.skipped)} skipped' if self.skipped else ''})")


def city_year_folders(output: Path | str | Location, cities: Iterable[str] | None = None) -> list[Path | Location]:
    """``<output>/<city>/<year>`` folders that hold a finished city-year, sorted by city and year (Paths on disk,
    :class:`~crofuse.io.store.Location` on object storage)."""
    output = location(output)
    wanted = None if cities is None else set(cities)
    found = []
    for city in output.iterdir() if output.is_dir() else []:
        if city.name.startswith(".") or "." in city.name or (wanted is not None and city.name not in wanted):
            continue  # hidden names, and the tables and files at the root (statistics.zarr, collection.json)
        if not city.is_dir():
            continue
        found += [native(y) for y in city.iterdir() if y.name.isdigit() and is_finished(y)]
    return found


def _read_item(path: Path | Location) -> dict[str, Any] | None:
    try:
        return json.loads(location(path).read_text())
    except (OSError, ValueError):
        return None


def build_collection(output: Path | str | Location, items: list[tuple[Path | Location, dict[str, Any]]],
                     config: ProductsConfig) -> Any:
    """The :class:`pystac.Collection` of ``items`` (``(item.json path, item dict)``) at ``output``."""
    import pystac

    output = location(output)
    if not items:
        raise DataError(f"{output} holds no finished city-year: run map-city first (nothing to publish)")
    boxes = [d["bbox"] for _, d in items]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    starts = sorted(pystac.utils.str_to_datetime(d["properties"]["start_datetime"]) for _, d in items)
    ends = sorted(pystac.utils.str_to_datetime(d["properties"]["end_datetime"]) for _, d in items)
    cities = sorted({d["properties"][f"{PREFIX}city"] for _, d in items})
    years = sorted({int(d["properties"][f"{PREFIX}year"]) for _, d in items})
    collection = pystac.Collection(
        id=config.collection_id, title=config.title, description=config.description, license=config.license,
        keywords=list(config.keywords),
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[starts[0], ends[-1]]])),
        summaries=pystac.Summaries({f"{PREFIX}city": cities, f"{PREFIX}year": years}),
    )
    for spec in COLLECTION_ASSETS:
        path = output / spec.name
        if not path.exists():
            continue
        asset = pystac.Asset(href=f"./{spec.name}", title=spec.title, description=spec.description or None,
                             media_type=spec.media_type, roles=list(spec.roles))
        collection.add_asset(spec.key, asset)
        add_file_fields(asset, path)
    collection.links = [pystac.Link("root", f"./{COLLECTION_NAME}", media_type=pystac.MediaType.JSON,
                                    title=config.title)]
    for path, d in items:
        href = "./" + Path(location(path).relative_to(output)).as_posix()
        collection.links.append(pystac.Link("item", href, media_type=pystac.MediaType.GEOJSON, title=d["id"]))
    return collection


def collection_json(collection: Any) -> str:
    """The collection as written to disk (relative hrefs, no self link)."""
    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def publish(
    output: Path | str | Location,
    *,
    cities: Iterable[str] | None = None,
    config: ProductsConfig = ProductsConfig(),
    lock_timeout: float | None = None,
) -> PublishReport:
    """(Re)write the items of the finished city-years of ``cities`` (None: every city) and the collection.

    Items of other cities are taken from disk (built when missing). A city-year that cannot be built (an
    unreadable map) is left out of the collection with a warning, so one broken folder never stops the others;
    :class:`PublishReport` says which and why. ``lock_timeout``: seconds to wait for the output root's lock
    (None: the statistics lock's default).
    """
    from crofuse.statistics.update import DEFAULT_LOCK_TIMEOUT, statistics_lock

    output = location(output)
    report = PublishReport(collection=native(output / COLLECTION_NAME))
    rebuild = None if cities is None else set(cities)
    with statistics_lock(output, timeout=DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout):
        items: list[tuple[Path | Location, dict[str, Any]]] = []
        for folder in city_year_folders(output):
            path = native(location(folder) / ITEM_NAME)
            data = None
            if rebuild is not None and folder.parent.name not in rebuild:
                data = _read_item(path)
                if data is not None and data.get("collection") != config.collection_id:
                    data = None
            if data is None:
                try:
                    path, written = write_item(folder, collection_id=config.collection_id)
                except DataError as e:
                    log.warning("%s: no product item: %s", folder, e)
                    report.skipped[Path(location(folder).relative_to(output)).as_posix()] = str(e)
                    continue
                if written:
                    report.written.append(path)
                data = _read_item(path)
            items.append((path, data))  # type: ignore[arg-type]
            report.items.append(path)
        collection = build_collection(output, items, config)
        if write_text_if_changed(report.collection, collection_json(collection)):
            report.written.append(report.collection)
    log.info(report.summary())
    return report


def _resolve(base: Location, href: str) -> Location:
    """``href`` (relative) against the folder ``base``: a resolved path on disk, the object's URL on S3."""
    if base.is_local:
        return location(Path(base.key, href).resolve())
    return base / href


def _absolute(href: str, base: Location, output: Location, href_base: str | None) -> str:
    if "://" in href or href.startswith("/"):
        return href
    target = _resolve(base, href)
    if href_base is None:
        return target.url
    root = location(Path(output.key).resolve()) if output.is_local else output
    return href_base.rstrip("/") + "/" + Path(target.relative_to(root)).as_posix()


def export_collection(output: Path | str | Location, dest: Path, *, href_base: str | None = None) -> Path:
    """Copy the collection of ``output`` and its items into the local folder ``dest`` with absolute hrefs; returns
    the copy's ``collection.json``.

    Asset hrefs become absolute paths of the files under ``output`` (``s3://`` URLs for an output on object
    storage), or ``href_base`` + their path relative to ``output`` (e.g. the bucket or web server the folder is
    published to); the links between collection and items point at the copies in ``dest``. A STAC API that hands
    hrefs out as they are (``rustac serve``) then points clients at the real files, where the relative hrefs of
    ``output`` would resolve against the API's URL."""
    output, dest = location(output), Path(dest)
    source = output / COLLECTION_NAME
    if not source.is_file():
        raise DataError(f"{output} has no {COLLECTION_NAME}: build it first with `crofuse products build {output}`")
    collection = json.loads(source.read_text())
    dest.mkdir(parents=True, exist_ok=True)
    target = (dest / COLLECTION_NAME).resolve()
    links = []
    for link in collection.get("links", []):
        if link.get("rel") != "item":
            links.append({**link, "href": str(target)} if link.get("rel") in ("root", "self") else link)
            continue
        item_path = _resolve(output, link["href"])
        item = json.loads(item_path.read_text())
        for asset in item.get("assets", {}).values():
            asset["href"] = _absolute(asset["href"], item_path.parent, output, href_base)
        item["links"] = [{**lk, "href": str(target)} if lk.get("rel") in ("root", "parent", "collection") else lk
                         for lk in item.get("links", [])]
        copy = dest / "items" / f"{item['id']}.json"
        copy.parent.mkdir(exist_ok=True)
        write_text_if_changed(copy, json.dumps(item, indent=2, ensure_ascii=False) + "\n")
        links.append({**link, "href": str(copy.resolve())})
    collection["links"] = links
    for asset in collection.get("assets", {}).values():
        asset["href"] = _absolute(asset["href"], output, output, href_base)
    write_text_if_changed(target, json.dumps(collection, indent=2, ensure_ascii=False) + "\n")
    return target


__all__ = [
    "DEFAULT_COLLECTION_ID",
    "ProductsConfig",
    "PublishReport",
    "build_collection",
    "city_year_folders",
    "collection_json",
    "export_collection",
    "publish",
]
