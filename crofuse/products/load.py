"""A city's series of product maps back from a STAC API, as one ``(time, y, x)`` cube loaded with odc-stac.

odc-stac reads each item's grid from its projection fields (``proj:code``, ``proj:shape``, ``proj:transform``) and
each band's data type and nodata from ``raster:bands``, so the series comes back on the maps' own grid with no
option given::

    items = search_series("http://127.0.0.1:8766", "wuhan")
    series = load_series(items, bands=["impervious", "probability"])   # Dataset, dims (time, y, x)
    series.impervious.sel(time="2022")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crofuse.errors import DataError
from crofuse.products.collection import DEFAULT_COLLECTION_ID
from crofuse.products.items import PREFIX

if TYPE_CHECKING:
    import pystac
    import xarray as xr


def search_series(
    url: str,
    city: str,
    *,
    collection: str = DEFAULT_COLLECTION_ID,
    datetime: str | None = None,
    timeout: float = 30.0,
    deadline: float | None = None,
) -> list[pystac.Item]:
    """Every product item of ``city`` (its slug) in ``collection`` at the STAC API ``url``, sorted by time.

    One search on the STAC transport of :mod:`crofuse.cube.stac_client` (retries, one deadline); the city is
    matched on the items' ``crofuse:city`` (the catalog's answer is filtered here, as every STAC API can)."""
    from crofuse.cube.stac_client import search_items

    items = search_items(url, collections=[collection], datetime=datetime, timeout=timeout, deadline=deadline)
    mine = [it for it in items if it.properties.get(f"{PREFIX}city") == city]
    if not mine:
        raise DataError(
            f"the STAC API at {url} has no {collection!r} item of {city!r}: map it first (map-city), then publish "
            "(`crofuse products build OUT`) and serve the folder again"
        )
    return sorted(mine, key=lambda it: (it.datetime, it.id))


def load_series(
    items: Sequence[pystac.Item], *, bands: Sequence[str] = ("impervious",), chunks: dict[str, int] | None = None,
    **odc_options: Any,
) -> xr.Dataset:
    """The ``bands`` (asset keys: ``impervious``, ``probability``, ``change``...) of ``items`` as one Dataset with
    dimensions ``(time, y, x)``, on the items' native grid (odc-stac; ``chunks`` makes it lazy with dask).

    Asset hrefs a local STAC API hands out as paths of this machine are read as files
    (:func:`crofuse.cube.search.resolve_local_hrefs`)."""
    import odc.stac

    from crofuse.cube.search import resolve_local_hrefs

    items = [it.clone() for it in items]
    if not items:
        raise DataError("no items to load: search_series found none")
    missing = sorted({b for it in items for b in bands if b not in it.assets})
    if missing:
        raise DataError(f"asset(s) {missing} are not in every item; the items have {sorted(items[0].assets)}")
    resolve_local_hrefs(items)
    return odc.stac.load(items, bands=list(bands), chunks=chunks, **odc_options)


__all__ = ["load_series", "search_series"]
