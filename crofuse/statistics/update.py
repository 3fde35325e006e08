"""Keep the city-year records and the tables up to date: what is current, the lock, ``update_statistics``.

A record is current when it was written by this :data:`~crofuse.statistics.records.SCHEMA_VERSION`, its previous
mapped year is still the same, and none of the files it was computed from (its ``sources``: maps, reference labels,
AOI, consistent maps, the accuracy sample) changed, appeared or disappeared since.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import xarray as xr

from crofuse import layout
from crofuse.errors import CrofuseError, DataError, LeaseHeldError
from crofuse.io.lease import Lease
from crofuse.io.store import Location, location
from crofuse.statistics import sample as smp
from crofuse.statistics.area import naive_pixel_area, pixel_area_of
from crofuse.statistics.change import (
    change_area,
    change_map,
    disagreement_area,
    impervious_area,
)
from crofuse.statistics.maps import (
    AOI_NAME,
    CHANGE_NAME,
    CONSISTENT_NAME,
    CUBE_NAME,
    MAP_NAME,
    REFERENCE_NAME,
    aoi_mask,
    aoi_source,
    city_year_folder,
    geobox_of,
    mapped_cities,
    mapped_years,
    read_map,
    read_reference,
    same_grid,
    write_map,
)
from crofuse.statistics.records import (
    SCHEMA_VERSION,
    CityYearStatistics,
    load_record,
    write_record,
)
from crofuse.statistics.tables import records_to_dataset, write_statistics

log = logging.getLogger("crofuse.statistics")

LOCK_NAME = layout.STATISTICS_LEASE
DEFAULT_LOCK_TIMEOUT = 600.0
"""Seconds :func:`statistics_lock` waits for another writer before it gives up (a full update of a city takes
seconds; ten minutes means the holder is stuck)."""


# --------------------------------------------------------------------------------------------------------------------
# Computing one record
# --------------------------------------------------------------------------------------------------------------------
def _previous_year(output: Path, city: str, year: int) -> int:
    earlier = [y for y in mapped_years(output, city) if y < int(year)]
    return earlier[-1] if earlier else -1


def sources_of(output: Path, city: str, year: int, previous_year: int) -> dict[str, int]:
    """The input files of a city-year's record that exist now, with their modification times (ns)."""
    folder = city_year_folder(output, city, year)
    names = [MAP_NAME, REFERENCE_NAME, CONSISTENT_NAME, f"{smp.SAMPLE_DIR}/{smp.DESIGN_NAME}",
             *(f"{smp.SAMPLE_DIR}/{n}" for n in smp.LABELLED_NAMES)]
    aoi = aoi_source(folder)
    if aoi is not None:
        names.append(f"{CUBE_NAME}/zarr.json" if aoi.name == CUBE_NAME else AOI_NAME)
    paths = {f"{year}/{n}": folder / n for n in names}
    if previous_year != -1:
        prev = city_year_folder(output, city, previous_year)
        paths.update({f"{previous_year}/{n}": prev / n for n in (MAP_NAME, REFERENCE_NAME, CONSISTENT_NAME)})
    found = {}
    for key, p in sorted(paths.items()):
        try:
            found[key] = p.stat().token
        except FileNotFoundError:
            continue
    return found


def compute_city_year(output: Path, city: str, year: int, *, label_from_reference: bool = True) -> CityYearStatistics:
    """Statistics of one mapped city-year; writes ``change.tif`` and ``statistics.json`` in its folder.

    The previous mapped year is the latest earlier year with a finished map under ``output``. Every figure is
    restricted to the AOI mask (:func:`~crofuse.statistics.maps.aoi_mask`: the cube's ``in_aoi``). A
    ``reference.tif`` next to a map (reference labels on the same grid) adds the reference figures and the model's
    error; ``impervious_consistent.tif`` (the consistent series) adds the ``consistent_*`` figures; an accuracy
    sample adds the stratified estimates (:func:`estimate_city_year`).

    Args:
        label_from_reference: without a person's labelled sample, label a sample from ``reference.tif`` (of both
            years, for change) when the folder has it, so the estimates are filled.
    """
    output = location(output)
    folder = city_year_folder(output, city, year)
    current = read_map(folder / MAP_NAME)
    area = pixel_area_of(current)
    gbox = geobox_of(current)
    inside = aoi_mask(folder, current)
    cur = current.values
    stats = impervious_area(cur, area, aoi_mask=inside, naive_area=naive_pixel_area(gbox.affine, gbox.shape))
    record = CityYearStatistics(
        city=city,
        year=int(year),
        impervious_km2=stats.impervious_km2,
        valid_km2=stats.valid_km2,
        aoi_km2=stats.aoi_km2,
        fraction_of_aoi=stats.fraction_of_aoi,
        fraction_of_valid=stats.fraction_of_valid,
        naive_impervious_km2=stats.naive_impervious_km2,
    )
    reference = read_reference(folder, current)
    if reference is not None:
        record.reference_impervious_km2 = impervious_area(reference, area, aoi_mask=inside).impervious_km2
        record.commission_km2, record.omission_km2 = disagreement_area(cur, reference, area, aoi_mask=inside)
    consistent = _read_consistent(folder, current)
    if consistent is not None:
        record.consistent_impervious_km2 = impervious_area(consistent, area, aoi_mask=inside).impervious_km2

    prev_year = _previous_year(output, city, year)
    change_path = folder / CHANGE_NAME
    previous = prev_reference = None
    if prev_year == -1:
        change_path.unlink(missing_ok=True)  # a stale change map from a since-deleted earlier year
    else:
        prev_folder = city_year_folder(output, city, prev_year)
        previous_da = read_map(prev_folder / MAP_NAME)
        if not same_grid(previous_da, current):
            raise DataError(
                f"{city}: the {prev_year} and {year} maps are on different grids; map every year of a city with the "
                "same AOI and resolution so change can be computed pixel by pixel."
            )
        previous = previous_da.values
        change = change_map(previous, cur)
        write_map(change, current, change_path)
        ch = change_area(change, area, aoi_mask=inside)
        record.previous_year = prev_year
        record.gain_km2, record.loss_km2, record.net_km2 = ch.gain_km2, ch.loss_km2, ch.net_km2
        common = change != 255 if inside is None else (change != 255) & inside
        now = impervious_area(cur, area, aoi_mask=common)
        record.common_valid_km2, record.impervious_common_km2 = now.valid_km2, now.impervious_km2
        record.previous_impervious_common_km2 = impervious_area(previous, area, aoi_mask=common).impervious_km2
        prev_reference = read_reference(prev_folder, current)
        if reference is not None and prev_reference is not None:
            ref_change = change_area(change_map(prev_reference, reference), area, aoi_mask=inside)
            record.reference_gain_km2 = ref_change.gain_km2
            record.reference_loss_km2 = ref_change.loss_km2
            record.gain_error_km2 = ch.gain_km2 - ref_change.gain_km2
            prev_comm, prev_om = disagreement_area(previous, prev_reference, area, aoi_mask=inside)
            record.gain_error_bound_km2 = prev_comm + prev_om + record.commission_km2 + record.omission_km2
        prev_consistent = _read_consistent(prev_folder, current)
        if consistent is not None and prev_consistent is not None:
            c_change = change_area(change_map(prev_consistent, consistent), area, aoi_mask=inside)
            record.consistent_gain_km2, record.consistent_loss_km2 = c_change.gain_km2, c_change.loss_km2

    record.estimate_source, record.estimates, record.estimate_notes = estimate_city_year(
        output, city, year, current=current, previous=previous, previous_year=prev_year, area=area, inside=inside,
        reference=reference, previous_reference=prev_reference, label_from_reference=label_from_reference,
    )
    record.sources = sources_of(output, city, year, prev_year)
    record.schema_version = SCHEMA_VERSION
    write_record(output, record)
    return record


def _read_consistent(folder: Path, like: xr.DataArray) -> np.ndarray | None:
    path = folder / CONSISTENT_NAME
    if not path.exists():
        return None
    da = read_map(path)
    if not same_grid(da, like):
        log.warning("%s is not on the grid of its map: ignored (run `crofuse statistics consolidate`)", path)
        return None
    return da.values


def estimate_city_year(
    output: Path,
    city: str,
    year: int,
    *,
    current: xr.DataArray,
    previous: np.ndarray | None,
    previous_year: int,
    area: np.ndarray,
    inside: np.ndarray | None,
    reference: np.ndarray | None,
    previous_reference: np.ndarray | None,
    label_from_reference: bool = True,
) -> tuple[str, dict[str, float], str]:
    """``(estimate_source, estimate columns, notes)`` of a city-year from its accuracy sample, or ``("", {}, "")``.

    Looks in ``<city>/<year>/sample/``: a person's ``labelled.csv`` (or ``labelled.geojson``) on the folder's
    ``design.json`` comes first. Without one, and with ``label_from_reference``, the design's points are labelled
    from ``reference.tif`` (both years' for change), drawing the design first when there is none (or when a design
    this function drew is of another map). A bad labelled sample does not fail the update: it is logged, and the
    source column says what is wrong (``crofuse statistics sample estimate`` shows the same error).
    """
    folder = city_year_folder(output, city, year) / smp.SAMPLE_DIR
    change = previous is not None
    strata = smp.change_strata(previous, current.values, inside) if change else smp.year_strata(current.values, inside)
    classes = smp.CHANGE_CLASSES if change else smp.YEAR_CLASSES
    try:
        design = smp.read_design(folder)
        labelled_file = smp.find_labelled(folder)
        if labelled_file is not None:
            if design is None:
                raise smp.SampleError(f"{labelled_file} has no design.json next to it: keep the folder as "
                                      "`crofuse statistics sample design` wrote it")
            if design.previous_year != previous_year:
                raise smp.SampleError(
                    f"the sample in {folder} is of {design.year} against {design.previous_year}, but the previous "
                    f"mapped year is now {previous_year}: draw and label a new sample"
                )
            _warn_if_redrawn_map(design, strata)
            labelled = smp.read_labelled_sample(labelled_file, design, inside=inside)
            return f"labelled sample ({labelled_file.name})", *_estimates(labelled, city, year)
        have_reference = reference is not None and (not change or previous_reference is not None)
        if not (label_from_reference and have_reference):
            return "", {}, ""
        stale = design is None or (design.drawn_by == smp.DRAWN_BY_UPDATE and (
            design.fingerprint != smp.strata_fingerprint(strata) or design.previous_year != previous_year))
        if stale:
            design = smp.design_sample(
                strata, area, geobox_of(current), classes=classes, city=city, year=year, previous_year=previous_year,
                seed=smp.design_seed(city, year),
            )
            smp.write_design(design, folder)
        elif design.previous_year != previous_year:
            raise smp.SampleError(f"the design in {folder} (drawn by a person) is of change since "
                                  f"{design.previous_year}, not {previous_year}: draw a new one")
        else:
            _warn_if_redrawn_map(design, strata)
        labelled = smp.label_from_rasters(design, reference, previous_reference if change else None,
                                          source=REFERENCE_NAME)
        smp.write_labels_csv(labelled, folder / smp.REFERENCE_LABELS_NAME)
        return f"reference rasters ({REFERENCE_NAME})", *_estimates(labelled, city, year)
    except CrofuseError as e:
        log.warning("%s %s: no stratified estimate: %s", city, year, e)
        return f"error: {e}", {}, ""


def _warn_if_redrawn_map(design: smp.SampleDesign, strata: np.ndarray) -> None:
    if design.fingerprint != smp.strata_fingerprint(strata):
        log.warning("%s %s: the map changed since the sample was drawn; the estimated areas stay valid (the design's "
                    "stratum areas are used), the accuracies describe the map it was drawn from",
                    design.city, design.year)


def _estimates(labelled: smp.LabelledSample, city: str, year: int) -> tuple[dict[str, float], str]:
    notes = smp.interval_notes(labelled)
    for note in notes:
        log.info("%s %s: %s", city, year, note)
    return smp.estimate_columns(labelled), "; ".join(notes)


def is_current(output: Path, record: CityYearStatistics | None) -> bool:
    """Is a stored record still what :func:`compute_city_year` would write?"""
    if record is None or record.schema_version != SCHEMA_VERSION:
        return False
    prev_year = _previous_year(output, record.city, record.year)
    if prev_year != record.previous_year:
        return False
    return record.sources == sources_of(output, record.city, record.year, prev_year)


_is_current = is_current


# --------------------------------------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------------------------------------
class StatisticsLockTimeout(LeaseHeldError, TimeoutError):
    """Another process held the statistics lock for longer than the timeout."""


LEASE_TIMEOUT = 120.0
"""Seconds without a heartbeat after which the statistics lock of a dead writer is taken over (a writer on this
host whose process is gone is taken over at once)."""


@contextlib.contextmanager
def statistics_lock(
    output: Path | str | Location, *, timeout: float | None = DEFAULT_LOCK_TIMEOUT, poll: float = 0.2,
    log_every: float = 30.0,
) -> Iterator[None]:
    """One writer of the tables at a time: the lease ``<output>/.statistics-lock`` (:mod:`crofuse.io.lease`).

    Concurrent flow runs would otherwise race on the replacement of ``statistics.zarr`` or drop each other's rows.
    The lock is a conditional write (put-if-absent, heartbeats by put-if-match), not ``fcntl``, so it works on object
    storage and on disks shared between machines. The holder records who it is (pid, host, since when, command); a
    waiter logs who holds it when it starts waiting and every ``log_every`` seconds, and gives up after ``timeout``
    seconds (None: wait for ever) with :class:`StatisticsLockTimeout`. A holder that died is taken over after
    :data:`LEASE_TIMEOUT` seconds without a heartbeat (at once when it was a process of this host).
    """
    output = location(output)
    output.mkdir()
    path = output / LOCK_NAME
    lease = Lease(path, purpose="statistics update", timeout=LEASE_TIMEOUT, wait=timeout, poll=poll,
                  log_every=log_every, logger=log, what="the statistics lock")
    try:
        lease.acquire()
    except LeaseHeldError as e:
        raise StatisticsLockTimeout(f"gave up waiting for the statistics lock: {e}. If that process is stuck, stop "
                                    "it (kill its pid) and rerun; if it is busy with a big update, rerun later or "
                                    "pass a longer lock timeout") from None
    try:
        yield
    finally:
        lease.release()


# --------------------------------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------------------------------
def update_statistics(
    output: Path,
    *,
    cities: Iterable[str] | None = None,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    label_from_reference: bool = True,
) -> xr.Dataset:
    """Refresh the city-year records under ``output`` and rewrite ``statistics.zarr`` and ``statistics.csv``.

    Records of the refreshed cities (all, or ``cities``) that are not current (:func:`is_current`) are recomputed
    (:func:`compute_city_year`); the others are reused. A city-year of another city that has a map but no readable
    record is repaired (computed); if that fails it is left out of the tables with a warning, so updating one city
    never fails because of another. Both table files are written under temporary names and renamed into place, so a
    half-written table is never visible. Running it twice gives the same tables.

    Args:
        output: the output root holding ``<city>/<year>/impervious.tif``.
        cities: restrict the refresh to these cities; the tables always hold every mapped city.
        lock_timeout: seconds to wait for another writer (:func:`statistics_lock`).
        label_from_reference: see :func:`compute_city_year`.
    """
    output = location(output)
    refresh = set(cities) if cities is not None else None
    with statistics_lock(output, timeout=lock_timeout):  # flow runs of several city-years may finish at once
        records: list[CityYearStatistics] = []
        for city in mapped_cities(output):
            for year in mapped_years(output, city):
                record = load_record(output, city, year)
                if refresh is None or city in refresh:
                    if not is_current(output, record):
                        record = compute_city_year(output, city, year, label_from_reference=label_from_reference)
                elif record is None:
                    try:
                        record = compute_city_year(output, city, year, label_from_reference=label_from_reference)
                        log.warning("%s %s had a map but no statistics record: recomputed it", city, year)
                    except (CrofuseError, OSError, ValueError) as e:
                        log.warning("%s %s has a map but no statistics record, and computing one failed (%s): left "
                                    "out of the tables; run update_statistics for %s to see the error", city, year,
                                    e, city)
                        continue
                records.append(record)
        ds = records_to_dataset(records)
        write_statistics(ds, output)
    return ds


__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "LOCK_NAME",
    "StatisticsLockTimeout",
    "compute_city_year",
    "estimate_city_year",
    "is_current",
    "sources_of",
    "statistics_lock",
    "update_statistics",
]
