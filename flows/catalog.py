"""What the flows ask a STAC catalog besides the Sentinel scenes: a city's extent and its reference labels.

The sample catalog (``crofuse sample-catalog``) has a ``labels`` collection with one item per city and year, tagged
``crofuse:city``, whose ``impervious`` asset is the generator's ground truth. Real catalogs have no such collection:
then the AOI must be given and no reference figures are reported.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from crofuse import NODATA_LABEL
from crofuse.errors import AOIError, CatalogError, DataError

LABELS_COLLECTION = "labels"
CITY_PROPERTY = "crofuse:city"
LABEL_ASSET = "impervious"


def _open(url: str):
    import pystac_client
    from pystac_client.exceptions import APIError

    try:
        return pystac_client.Client.open(url, timeout=30)
    except (APIError, OSError) as e:
        raise CatalogError(f"could not open the STAC API at {url}: {e}. Is the catalog server running?") from e


def label_items(url: str, city: str, *, year: int | None = None) -> list[Any]:
    """The ``labels`` items of ``city`` (optionally only ``year``); empty when the catalog has no labels."""
    from pystac_client.exceptions import APIError

    client = _open(url)
    try:
        collections = {c.id for c in client.get_collections()}
    except (APIError, OSError) as e:
        raise CatalogError(f"could not list the collections of {url}: {e}") from e
    if LABELS_COLLECTION not in collections:
        return []
    kwargs: dict[str, Any] = {"collections": [LABELS_COLLECTION], "max_items": 10_000}
    if year is not None:
        kwargs["datetime"] = f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z"
    try:
        items = list(client.search(**kwargs).items())
    except (APIError, OSError) as e:
        raise CatalogError(f"searching {LABELS_COLLECTION!r} in {url} failed: {e}") from e
    return [it for it in items if it.properties.get(CITY_PROPERTY) == city]


def city_extent(url: str, city: str) -> dict[str, Any]:
    """The GeoJSON geometry of ``city``'s label items (lon/lat), for flows run without an AOI."""
    items = label_items(url, city)
    if not items:
        raise AOIError(
            f"no AOI was given for {city!r} and the catalog at {url} has no {LABELS_COLLECTION!r} item with "
            f"{CITY_PROPERTY}={city!r} to take it from: pass aoi=[west, south, east, north] (degrees) or a "
            "GeoJSON polygon"
        )
    return items[0].geometry


def write_reference(url: str, city: str, year: int, like: Any, path: Path) -> Path | None:
    """Write the catalog's ground-truth label of ``city``/``year`` on the grid of ``like`` (a map) to ``path``.

    Returns None (and writes nothing) when the catalog has no label item for the city-year.
    """
    import rioxarray
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError

    from crofuse.statistics import write_uint8_cog

    items = [it for it in label_items(url, city, year=year) if _year_of(it) == year]
    if not items:
        return None
    item = items[0]
    if LABEL_ASSET not in item.assets:
        raise DataError(f"label item {item.id} has no {LABEL_ASSET!r} asset (it has {sorted(item.assets)})")
    href = item.assets[LABEL_ASSET].get_absolute_href() or item.assets[LABEL_ASSET].href
    try:
        label = rioxarray.open_rasterio(href, masked=False).squeeze("band", drop=True)
    except (OSError, RasterioError) as e:
        raise CatalogError(f"could not read the label asset {href} of {item.id}: {e}") from e
    label = label.rio.write_nodata(NODATA_LABEL)
    aligned = label.rio.reproject_match(like, resampling=Resampling.nearest, nodata=NODATA_LABEL)
    write_uint8_cog(np.asarray(aligned.values, dtype="uint8"), like, path)
    return path


def _year_of(item: Any) -> int | None:
    when = item.datetime or item.common_metadata.start_datetime
    return when.year if isinstance(when, dt.datetime) else None


__all__ = ["CITY_PROPERTY", "LABELS_COLLECTION", "LABEL_ASSET", "city_extent", "label_items", "write_reference"]
