"""STAC search: the season's Sentinel-2 and Sentinel-1 items over an AOI, from any catalog a profile describes.

Every request goes through the one transport of :mod:`crofuse.cube.stac_client`: HTTP 429/5xx answers, connection
errors and timeouts are retried with backoff and jitter, and one deadline (``CubeConfig.catalog_deadline``) bounds
all requests, retries, pages and signing of a season search. Every other failure becomes a
:class:`~crofuse.errors.CatalogError` naming the URL, the collection and the query, with the HTTP status as data.
Pages are followed until the search is exhausted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crofuse.cube.stac_client import PAGE_SIZE, RETRY_STATUS, Deadline, open_client, run_search
from crofuse.errors import CatalogError

if TYPE_CHECKING:
    import pystac
    import pystac_client

    from crofuse.cube.aoi import AOI
    from crofuse.cube.config import CubeConfig
    from crofuse.cube.profiles import CatalogProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    """One collection search, kept so error messages and the cube's attributes can say what was asked."""

    url: str
    collection: str
    bbox: tuple[float, float, float, float]
    datetime: str
    intersects: dict[str, Any] | None = field(default=None, compare=False)

    def describe(self) -> str:
        """``collection=... bbox=... datetime=...`` for messages."""
        box = ", ".join(f"{v:.5f}" for v in self.bbox)
        return f"collection={self.collection!r} bbox=[{box}] datetime={self.datetime}"


@dataclass(frozen=True)
class SeasonItems:
    """What a season search found.

    ``optical``/``sar`` are sorted by (datetime, id). ``cloudy`` are the Sentinel-2 ids dropped by the cloud-cover
    filter (kept to explain an empty optical result).
    """

    optical: tuple[pystac.Item, ...]
    sar: tuple[pystac.Item, ...]
    optical_query: Query
    sar_query: Query
    cloudy: tuple[str, ...] = ()


def open_catalog(
    url: str,
    *,
    profile: CatalogProfile,
    timeout: float = 30.0,
    retries: int = 4,
    deadline: float | Deadline | None = None,
) -> pystac_client.Client:
    """Open a STAC API root on the retrying transport, with the profile's item signing.

    ``timeout`` bounds one request, ``retries`` the retries of one request, ``deadline`` (seconds, or a shared
    :class:`~crofuse.cube.stac_client.Deadline`; default 120 s from now) everything done with the client.
    """
    return open_client(url, signing=profile.signing, timeout=timeout, retries=retries, deadline=deadline)


def search_collection(
    client: pystac_client.Client, query: Query, *, max_items: int, page_size: int = PAGE_SIZE
) -> list[pystac.Item]:
    """All items of one collection intersecting the AOI in the datetime window, following every page; sorted by
    (datetime, id), duplicates dropped. Runs within the deadline the client was opened with."""
    what = f"STAC search at {query.url} ({query.describe()})"
    items = run_search(
        client,
        what=what,
        max_items=max_items,
        collections=[query.collection],
        intersects=query.intersects,
        bbox=None if query.intersects else list(query.bbox),
        datetime=query.datetime,
        limit=page_size,
    )
    seen: dict[str, pystac.Item] = {}
    for it in items:
        seen.setdefault(it.id, it)
    return sorted(seen.values(), key=lambda it: (it.datetime or it.common_metadata.start_datetime, it.id))


def _check_assets(items: Sequence[pystac.Item], keys: Sequence[str], *, query: Query, profile: CatalogProfile) -> None:
    for it in items:
        missing = [k for k in keys if k not in it.assets]
        if missing:
            raise CatalogError(
                f"item {it.id!r} of {query.collection!r} at {query.url} has no asset(s) {missing} (it has "
                f"{sorted(it.assets)}); is profile {profile.name!r} the right one for this catalog?"
            )


def resolve_local_hrefs(items: Sequence[pystac.Item]) -> None:
    """Make asset hrefs readable by GDAL, in place.

    A local catalog served over HTTP (``rustac serve``) hands out hrefs such as ``/data/x/B04.tif``; by URL rules
    they would resolve against the API host, but they name files on this machine. Absolute paths (or
    ``file://`` URLs) that exist locally are kept as plain paths; everything else is left to pystac's resolution.
    """
    from pathlib import Path
    from urllib.parse import urlparse

    for it in items:
        local = False
        for asset in it.assets.values():
            href = asset.href
            parsed = urlparse(href)
            if parsed.scheme == "file":
                asset.href, local = parsed.path, True
            elif href.startswith("/") and Path(href).exists():
                local = True
            elif not parsed.scheme and not href.startswith("/"):
                absolute = asset.get_absolute_href()
                if absolute:
                    asset.href = absolute
        if local:
            # pystac would resolve "/path" against the API's URL; with no self link it stays a local path
            it.links = [link for link in it.links if link.rel != "self"]


def cloud_cover(item: pystac.Item, prop: str) -> float | None:
    """The item's cloud percentage, or ``None`` when the catalog does not say."""
    v = item.properties.get(prop)
    return None if v is None else float(v)


def search_season(config: CubeConfig) -> SeasonItems:
    """Search both collections for the config's AOI and season, then drop scenes above ``max_cloud_cover``.

    Everything (opening both catalogs, every page, signing) runs within one ``config.catalog_deadline``.

    The cloud filter runs on the client (every STAC API supports it that way, and the dropped ids explain an
    all-cloud season); assets the profile needs are checked on every item.
    """
    aoi: AOI = config.area
    when = config.season_window.datetime_range(config.year)
    opt_prof = config.catalog_profile
    sar_prof = config.sar_source_profile
    opt_q = Query(config.catalog, opt_prof.optical_collection, aoi.bbox, when, aoi.geojson)  # type: ignore[arg-type]
    sar_q = Query(config.sar_source_url, sar_prof.sar_collection or "", aoi.bbox, when, aoi.geojson)

    deadline = Deadline(config.catalog_deadline)  # one budget for both catalogs, every page and the signing
    http = {"timeout": config.http_timeout, "retries": config.http_retries, "deadline": deadline}
    client = open_catalog(opt_q.url, profile=opt_prof, **http)
    optical = search_collection(client, opt_q, max_items=config.max_items)
    resolve_local_hrefs(optical)
    _check_assets(optical, [*opt_prof.optical_assets.values(), opt_prof.scl_asset], query=opt_q, profile=opt_prof)
    kept, cloudy = [], []
    for it in optical:
        cc = cloud_cover(it, opt_prof.cloud_cover_property)
        (cloudy if cc is not None and cc > config.max_cloud_cover else kept).append(it)

    sar: list[pystac.Item] = []
    if sar_prof.sar_collection is not None:
        if sar_q.url != opt_q.url or sar_prof is not opt_prof:
            client = open_catalog(sar_q.url, profile=sar_prof, **http)
        sar = search_collection(client, sar_q, max_items=config.max_items)
        resolve_local_hrefs(sar)
        _check_assets(sar, list(sar_prof.sar_assets.values()), query=sar_q, profile=sar_prof)
    log.info(
        "found %d Sentinel-2 items (%d above %.0f%% cloud) and %d Sentinel-1 items for %s %d",
        len(optical), len(cloudy), config.max_cloud_cover, len(sar), config.slug, config.year,
    )
    return SeasonItems(tuple(kept), tuple(sar), opt_q, sar_q, tuple(it.id for it in cloudy))


def swapped_axes_hit(config: CubeConfig, items: SeasonItems) -> tuple[float, float, float, float] | None:
    """After an empty search: the AOI bbox with lon/lat swapped, if the catalog has items there (else ``None``).

    A bbox typed as (south, west, north, east) is still a valid lon/lat box whenever every value is within
    +-90, so geometry alone cannot tell; the catalog can.
    """
    w, s, e, n = config.area.bbox
    if not all(abs(v) <= 90 for v in (w, s, e, n)):
        return None
    swapped = (s, w, n, e)
    deadline = Deadline(config.catalog_deadline)
    for q, prof in ((items.optical_query, config.catalog_profile), (items.sar_query, config.sar_source_profile)):
        if not q.collection:
            continue
        probe = Query(q.url, q.collection, swapped, q.datetime, None)
        client = open_catalog(probe.url, profile=prof, timeout=config.http_timeout, retries=config.http_retries,
                              deadline=deadline)
        if search_collection(client, probe, max_items=config.max_items):
            return swapped
    return None


__all__ = [
    "PAGE_SIZE",
    "RETRY_STATUS",
    "Query",
    "SeasonItems",
    "cloud_cover",
    "open_catalog",
    "search_collection",
    "search_season",
    "swapped_axes_hit",
]
