"""The layout of an output root, owned here: every file name, the marker, the lease, staging and publication.

::

    <output>/                           a path, file:///path or s3://bucket/prefix (crofuse.io.store)
      statistics.zarr  statistics.csv  change.png  remap-report.json
      .statistics-lock                  the lease of the statistics tables (crofuse.io.lease)
      <city>/<year>/
        inputs.zarr                     the input cube (crofuse.cube)
        impervious.tif  probability.tif  uncertainty.tif  disagreement.tif  maps.zarr   the maps (tiling)
        reference.tif  aoi.geojson      reference labels on the map grid, the AOI polygon
        change.tif  impervious_consistent.tif  sample/  statistics.json  quicklook.png
        mapped.json                     the marker: the whole city-year is finished (written last)
        .lease                          who is working on this city-year now
        .staging/<run>/                 a remap's new products, built beside the old ones
        .published.json                 which run's products were moved into place (resume after a crash)

**The marker.** ``mapped.json`` holds ``state: "complete"`` with the checkpoint's SHA-256 and the mapping
parameters' hash. Before anything it vouches for changes it is rewritten to ``state: "publishing"``; readers
(statistics, quicklooks, the skip path of ``map-city``) trust a city-year's products when its marker is complete,
or when it has no marker at all (maps made elsewhere), never while it says publishing (:func:`trusted`).

**Publication** (:func:`publish`): a run builds its products in ``.staging/<run>/`` (resumable: the run key names
it), and only when all of them are complete: the marker is invalidated, each product is moved into place (a rename
on disk; for a zarr store on S3, the root ``zarr.json`` is deleted first and written last, every other object
copied server-side, so a reader sees the old store, no store, or the new one; a store's attributes that name a
product in staging, such as the ``cube`` of maps made from a cube rebuilt there, are first pointed at its
published place), the products of the old map that no longer apply are removed, and the caller writes the marker
last (:func:`write_marker`) once the statistics and quicklook are done. Only the holder of the city-year's lease (:meth:`CityYear.lease`) publishes or removes staging
and temporary stores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from crofuse.errors import ConfigError
from crofuse.io.store import (
    Location,
    canonical,
    clean_temp_siblings,
    location,
    rename_into_place,
)

log = logging.getLogger("crofuse.layout")

# ------------------------------------------------------------------------------------------------------ names
STATISTICS_ZARR = "statistics.zarr"
STATISTICS_CSV = "statistics.csv"
CHANGE_PLOT = "change.png"
REMAP_REPORT = "remap-report.json"
STATISTICS_LEASE = ".statistics-lock"

CUBE = "inputs.zarr"
IMPERVIOUS = "impervious.tif"
PROBABILITY = "probability.tif"
UNCERTAINTY = "uncertainty.tif"
DISAGREEMENT = "disagreement.tif"
MAPS = "maps.zarr"
MAPS_PROGRESS = ".maps.zarr.progress"
REFERENCE = "reference.tif"
AOI = "aoi.geojson"
CHANGE = "change.tif"
CONSISTENT = "impervious_consistent.tif"
SAMPLE_DIR = "sample"
RECORD = "statistics.json"
QUICKLOOK = "quicklook.png"
MARKER = "mapped.json"
LEASE = ".lease"
STAGING = ".staging"
PUBLISHED = ".published.json"
CUBE_TEMP_PREFIX = f".{CUBE}.tmp-"
CUBE_OLD_PREFIX = f".{CUBE}.old-"

MAP_PRODUCTS = (IMPERVIOUS, PROBABILITY, UNCERTAINTY, DISAGREEMENT, MAPS)
"""What a prediction writes (the optional layers only when the checkpoint has them)."""

DERIVED = (CHANGE, RECORD, QUICKLOOK)
"""What is computed from a city-year's map and removed when a new map is published (recomputed after)."""

COMPLETE = "complete"
PUBLISHING = "publishing"


# ------------------------------------------------------------------------------------------------------ city-year
@dataclass(frozen=True)
class CityYear:
    """The folder of one city-year under an output root and the names in it."""

    root: Location
    city: str
    year: int

    @property
    def folder(self) -> Location:
        return self.root / self.city / str(self.year)

    def __truediv__(self, name: str) -> Location:
        return self.folder / name

    # the products, by name
    cube = property(lambda self: self / CUBE)
    impervious = property(lambda self: self / IMPERVIOUS)
    probability = property(lambda self: self / PROBABILITY)
    maps = property(lambda self: self / MAPS)
    reference = property(lambda self: self / REFERENCE)
    aoi = property(lambda self: self / AOI)
    change = property(lambda self: self / CHANGE)
    consistent = property(lambda self: self / CONSISTENT)
    sample = property(lambda self: self / SAMPLE_DIR)
    record = property(lambda self: self / RECORD)
    quicklook = property(lambda self: self / QUICKLOOK)
    marker = property(lambda self: self / MARKER)
    lease_path = property(lambda self: self / LEASE)

    def staging(self, run: str) -> Location:
        """Where a run's new products are built (``.staging/<run>``, the run's key shortened)."""
        return self.folder / STAGING / run[:16]

    def lease(self, *, purpose: str = "", wait: float | None = 0.0, **kwargs: Any):
        """The city-year's :class:`~crofuse.io.lease.Lease` (re-entrant within a process)."""
        from crofuse.io.lease import Lease

        return Lease(self.lease_path, purpose=purpose or f"{self.city} {self.year}", wait=wait, reentrant=True,
                     **kwargs)

    def clean(self, *, keep_run: str | None = None) -> list[str]:
        """Remove what interrupted runs left (call only while holding the lease): staging areas of other runs,
        temporary and set-aside stores (``.inputs.zarr.tmp-*``, ``.maps.zarr.old-*``) and temporary siblings of
        atomic writes whose process is gone. Returns what was removed."""
        removed = [str(p) for p in clean_temp_siblings(self.folder)]
        removed += [str(p) for p in clean_temp_stores(self.folder)]
        staging = self.folder / STAGING
        for area in staging.iterdir() if staging.is_dir() else []:
            if keep_run is None or area.name != keep_run[:16]:
                area.rmtree()
                removed.append(str(area))
        return removed


TEMP_STORE_MARKS = (".tmp-", ".old-")
"""Parts of the names of a store being written (``.NAME.tmp-*``) or set aside while replaced (``.NAME.old-*``)."""


def is_temp_store(name: str) -> bool:
    return name.startswith(".") and any(mark in name for mark in TEMP_STORE_MARKS)


def clean_temp_stores(folder: Location) -> list[Location]:
    """Remove the temporary and set-aside stores in ``folder`` (only the holder of its lease may call this)."""
    removed = []
    for p in folder.iterdir() if folder.is_dir() else []:
        if is_temp_store(p.name):
            p.rmtree()
            removed.append(p)
    return removed


def city_year(output: str | Location, city: str, year: int) -> CityYear:
    """The :class:`CityYear` of ``city`` (slugged: the folder never leaves ``output``) and ``year``."""
    from crofuse.cube.aoi import city_slug

    if not isinstance(year, int) or isinstance(year, bool):
        raise ConfigError(f"year={year!r} must be an integer")
    slug = city_slug(city)
    if not slug or "/" in slug or slug.startswith("."):
        raise ConfigError(f"city {city!r} would write outside the output root {output}")
    return CityYear(location(output), slug, int(year))


def folder_of(output: str | Location, city: str, year: int) -> Location:
    """``<output>/<city>/<year>`` for a city name already slugged (the statistics' folders)."""
    return location(output) / city / str(int(year))


# ------------------------------------------------------------------------------------------------------ the marker
def read_marker(folder: Location | str) -> dict[str, Any] | None:
    """The marker of a city-year folder (None if it has none or it is unreadable)."""
    try:
        data = json.loads((location(folder) / MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def marker_state(folder: Location | str) -> str | None:
    """``"complete"``, ``"publishing"``, or None (no marker: maps made elsewhere, or never finished)."""
    data = read_marker(folder)
    if data is None:
        return PUBLISHING if (location(folder) / MARKER).exists() else None
    return str(data.get("state", COMPLETE))


_PUBLISHING_HERE: set[Location] = set()


@contextlib.contextmanager
def publishing_here(folder: Location | str) -> Iterator[None]:
    """While the publisher of a city-year computes what comes before its marker (statistics, quicklook), its own
    readers in this process trust the new products (:func:`trusted`)."""
    loc = location(folder)
    _PUBLISHING_HERE.add(loc)
    try:
        yield
    finally:
        _PUBLISHING_HERE.discard(loc)


def trusted(folder: Location | str) -> bool:
    """May readers use this city-year's products? Not while a new map is being published into it (except the
    publisher itself, :func:`publishing_here`)."""
    loc = location(folder)
    return loc in _PUBLISHING_HERE or marker_state(loc) != PUBLISHING


def invalidate_marker(folder: Location | str, *, run: str = "", reason: str = "") -> None:
    """Mark the city-year as being changed (before anything the marker vouches for changes)."""
    loc = location(folder) / MARKER
    if not loc.exists() and not (location(folder) / IMPERVIOUS).exists():
        return  # nothing published yet: nothing to vouch for
    loc.write_text(json.dumps({"state": PUBLISHING, "run": run, "reason": reason,
                               "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))


def write_marker(folder: Location | str, data: dict[str, Any]) -> None:
    """Write the complete marker (the last thing a city-year run writes)."""
    (location(folder) / MARKER).write_text(json.dumps(
        {**data, "state": COMPLETE, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        indent=2, sort_keys=True, default=str))


# ------------------------------------------------------------------------------------------------------ publication
def _is_zarr(loc: Location) -> bool:
    return (loc / "zarr.json").exists()


def replace_store(src: Location, dst: Location) -> None:
    """Move a finished zarr store (or any folder) ``src`` to ``dst``, replacing what is there.

    On disk: the old store is renamed aside, the new one renamed in, the old one deleted (a reader sees the old
    complete store, none, or the new one). On S3: the old root ``zarr.json`` is deleted first (the store is gone for
    readers), the old objects deleted, the new objects copied server-side, and the new root ``zarr.json`` written
    last; then ``src`` is deleted."""
    import uuid

    if src.is_local and dst.is_local:
        dst.parent.mkdir()
        old = None
        if dst.exists():
            old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
            rename_into_place(dst.path, old.path)
        rename_into_place(src.path, dst.path)
        if old is not None:
            old.rmtree()
        return
    (dst / "zarr.json").unlink(missing_ok=True)
    dst.rmtree()
    files = src.walk_files()
    root_meta = src / "zarr.json"
    for f in files:
        if f != root_meta:
            f.copy_to(dst / f.relative_to(src))
    if root_meta in files:
        root_meta.copy_to(dst / "zarr.json")
    src.rmtree()


def replace_file(src: Location, dst: Location) -> None:
    """Move a finished file to ``dst`` (a rename on disk, a server-side copy + delete on S3)."""
    if src.is_local and dst.is_local:
        dst.parent.mkdir()
        rename_into_place(src.path, dst.path)
        return
    src.copy_to(dst)
    src.unlink()


def repoint_staging_paths(store: Location, staging: Location, folder: Location, names: Iterable[str]) -> dict[str, str]:
    """Point the root attributes of the zarr ``store`` that name a product in ``staging`` at its published place
    in ``folder`` (maps made from a cube rebuilt in staging record that cube's path, ``maps.zarr``'s ``cube``
    attribute); called on the staging copy before it is moved, so the published store never names staging.
    Returns the attributes changed."""
    meta = store / "zarr.json"
    try:
        data = json.loads(meta.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        return {}
    targets = {staging / name: folder / name for name in names}
    changed: dict[str, str] = {}
    for key, value in attrs.items():
        if not isinstance(value, str) or not value or "\n" in value:
            continue
        try:
            where = location(value)
        except Exception:  # noqa: BLE001, S112 - an attribute that names no path (another URL scheme, ...)
            continue
        if where in targets:
            changed[key] = canonical(targets[where])
    if changed:
        data["attributes"] = {**attrs, **changed}
        meta.write_text(json.dumps(data, indent=2))
    return changed


def publish(cy: CityYear, staging: Location, *, run: str, names: Iterable[str] | None = None,
            remove: Iterable[str] = DERIVED, lease=None) -> list[str]:
    """Move the finished products in ``staging`` into the city-year's folder (see the module docstring).

    Args:
        cy: the city-year.
        staging: its staging area holding the new products (files and zarr stores).
        run: the run's key, recorded in ``.published.json`` so a rerun after a crash resumes after publication.
        names: what to move (default: every product found in ``staging``).
        remove: products of the old map to delete (recomputed from the new one before the marker is written).
        lease: the city-year's lease; checked before anything is touched.

    Returns the names moved. The marker is left saying "publishing": write it with :func:`write_marker`.
    """
    if lease is not None:
        lease.check()
    found = [p.name for p in staging.iterdir() if not p.name.startswith(".")] if names is None else list(names)
    for name in found:  # paths into staging recorded in a store (maps.zarr's "cube") name the published products
        if _is_zarr(staging / name):
            repoint_staging_paths(staging / name, staging, cy.folder, found)
    invalidate_marker(cy.folder, run=run, reason="publishing a new map")
    for name in found:
        src, dst = staging / name, cy / name
        if not src.exists():
            continue
        if src.is_dir() or _is_zarr(src):
            replace_store(src, dst)
        else:
            replace_file(src, dst)
    for name in remove:
        if name not in found:
            (cy / name).rmtree() if name.endswith(".zarr") else (cy / name).unlink(missing_ok=True)
    (cy / PUBLISHED).write_text(json.dumps({"run": run, "products": found}))
    staging.rmtree()
    log.info("published %s into %s", ", ".join(found), cy.folder)
    return found


def published_run(cy: CityYear) -> str | None:
    """The run whose products were last moved into place (None if none was through :func:`publish`)."""
    try:
        return json.loads((cy / PUBLISHED).read_text()).get("run")
    except (FileNotFoundError, ValueError):
        return None


__all__ = [
    "AOI",
    "CHANGE",
    "CHANGE_PLOT",
    "COMPLETE",
    "CONSISTENT",
    "CUBE",
    "CUBE_OLD_PREFIX",
    "CUBE_TEMP_PREFIX",
    "DERIVED",
    "DISAGREEMENT",
    "IMPERVIOUS",
    "LEASE",
    "MAPS",
    "MAPS_PROGRESS",
    "MAP_PRODUCTS",
    "MARKER",
    "PROBABILITY",
    "PUBLISHED",
    "PUBLISHING",
    "QUICKLOOK",
    "RECORD",
    "REFERENCE",
    "REMAP_REPORT",
    "SAMPLE_DIR",
    "STAGING",
    "STATISTICS_CSV",
    "STATISTICS_LEASE",
    "STATISTICS_ZARR",
    "TEMP_STORE_MARKS",
    "UNCERTAINTY",
    "CityYear",
    "city_year",
    "clean_temp_stores",
    "folder_of",
    "invalidate_marker",
    "is_temp_store",
    "marker_state",
    "publish",
    "published_run",
    "publishing_here",
    "read_marker",
    "replace_file",
    "replace_store",
    "repoint_staging_paths",
    "trusted",
    "write_marker",
]
