"""Label items from a STAC API: the items of a label source over an AOI, for a year, and a city's extent.

Every request goes through the one STAC transport of the cube search (:mod:`crofuse.cube.stac_client`: retries on
429/5xx and connection errors with backoff and jitter, and one total deadline per lookup, shared by its requests). The year of an item is the year of its ``start_datetime`` (annual
products such as ESA WorldCover and IO LULC cover a calendar year), else of its ``datetime``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crofuse.errors import AOIError, LabelError

if TYPE_CHECKING:
    import pystac

    from crofuse.cube.aoi import AOI
    from crofuse.labels.sources import LabelSource

CITY_PROPERTY = "crofuse:city"
"""Property of the sample catalog's items naming the city (slug)."""

ALL_TIME = "1900-01-01T00:00:00Z/2100-12-31T23:59:59Z"
WORLD = (-180.0, -90.0, 180.0, 90.0)


@dataclass(frozen=True)
class LabelItems:
    """The items a label source has for one AOI and year, and the year they apply to."""

    items: tuple[pystac.Item, ...]
    year: int
    requested_year: int
    available_years: tuple[int, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(it.id for it in self.items)


def item_year(item: pystac.Item) -> int | None:
    """The calendar year an item applies to (``start_datetime``, else ``datetime``)."""
    when = item.common_metadata.start_datetime or item.datetime
    return when.year if isinstance(when, dt.datetime) else None


def collection_ids(url: str, *, timeout: float = 30.0, retries: int = 4, deadline: Any = None) -> set[str]:
    """The collection ids a STAC API serves."""
    from crofuse.cube.stac_client import list_collections

    return {c.id for c in list_collections(url, timeout=timeout, retries=retries, deadline=deadline)}


def search_label_items(
    url: str,
    collection: str,
    *,
    area: AOI | None = None,
    datetime: str = ALL_TIME,
    timeout: float = 30.0,
    retries: int = 4,
    max_items: int = 1000,
    deadline: Any = None,
) -> list[pystac.Item]:
    """Every item of ``collection`` intersecting ``area`` (all of them without one) in ``datetime``."""
    from crofuse.cube.search import resolve_local_hrefs
    from crofuse.cube.stac_client import search_items

    items = search_items(url, collections=[collection], intersects=area.geojson if area is not None else None,
                         datetime=datetime, max_items=max_items, timeout=timeout, retries=retries, deadline=deadline)
    seen = {it.id: it for it in items}
    items = sorted(seen.values(), key=lambda it: it.id)
    resolve_local_hrefs(items)
    return items


def find_label_items(
    url: str,
    source: LabelSource,
    area: AOI,
    year: int,
    *,
    nearest_year: bool = False,
    what: str = "",
    timeout: float = 30.0,
    retries: int = 4,
    deadline: float | None = None,
) -> LabelItems:
    """The items of a STAC label source over ``area`` for ``year``.

    Raises :class:`~crofuse.errors.LabelError` when the catalog has no such collection, when no item covers the
    AOI, or when none is of ``year`` (the message lists the years that exist; ``nearest_year=True`` then takes the
    nearest one, the earlier of two equally near).
    """
    from crofuse.cube.stac_client import Deadline

    label = what or f"{year}"
    budget = Deadline.of(deadline)  # one budget for the whole lookup
    if source.collection not in collection_ids(url, timeout=timeout, retries=retries, deadline=budget):
        raise LabelError(
            f"the catalog at {url} has no collection {source.collection!r} for the label source {source.name!r} "
            f"({label}). Choose a label source this catalog serves, or point --catalog at one that has it"
        )
    items = search_label_items(url, source.collection, area=area, timeout=timeout, retries=retries,  # type: ignore[arg-type]
                               deadline=budget)
    by_year: dict[int, list[pystac.Item]] = {}
    for it in items:
        y = item_year(it)
        if y is not None:
            by_year.setdefault(y, []).append(it)
    years = tuple(sorted(by_year))
    if not years:
        raise LabelError(
            f"label source {source.name!r} ({source.collection!r} at {url}) has no item over the AOI of {label} "
            f"(bbox {', '.join(f'{v:.4f}' for v in area.bbox)}): it does not cover this area. Use another label "
            "source, or labels of your own (--labels FILE.tif|FILE.gpkg)"
        )
    chosen = year
    if year not in by_year:
        if not nearest_year:
            raise LabelError(
                f"label source {source.name!r} has no labels for {year} over {label}; it has {list(years)}. "
                f"Pass nearest_year (--nearest-year) to use {_nearest(years, year)} for {year}, or build for a year "
                "it has"
            )
        chosen = _nearest(years, year)
    return LabelItems(items=tuple(sorted(by_year[chosen], key=lambda it: it.id)), year=chosen,
                      requested_year=year, available_years=years)


def _nearest(years: Sequence[int], year: int) -> int:
    return min(years, key=lambda y: (abs(y - year), y))


def city_extent(url: str, city: str, *, collection: str = "labels", timeout: float = 30.0,
                retries: int = 4, deadline: float | None = None) -> dict[str, Any]:
    """The GeoJSON geometry (lon/lat) of ``city``'s items in the sample catalog's ``labels`` collection.

    The sample cities have no AOI of their own; flows and training sets run without one take it from here.
    """
    from crofuse.cube.stac_client import Deadline

    budget = Deadline.of(deadline)
    has = collection in collection_ids(url, timeout=timeout, retries=retries, deadline=budget)
    items = search_label_items(url, collection, timeout=timeout, retries=retries, deadline=budget) if has else []
    mine = [it for it in items if it.properties.get(CITY_PROPERTY) == city]
    if not mine:
        raise AOIError(
            f"no AOI was given for {city!r} and the catalog at {url} has no {collection!r} item with "
            f"{CITY_PROPERTY}={city!r} to take it from: pass aoi=[west, south, east, north] (degrees) or a "
            "GeoJSON polygon"
        )
    return sorted(mine, key=lambda it: it.id)[0].geometry


__all__ = [
    "CITY_PROPERTY",
    "LabelItems",
    "city_extent",
    "collection_ids",
    "find_label_items",
    "item_year",
    "search_label_items",
]
