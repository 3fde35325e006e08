"""Impervious-surface area, change, temporal consistency, accuracy samples and the statistics tables.

Everything here reads and writes local files only; the flows in :mod:`flows` call it after the maps are written.
One job per module:

* :mod:`~crofuse.statistics.area`: true (ellipsoidal) pixel areas;
* :mod:`~crofuse.statistics.change`: mapped area, change codes, gain/loss, disagreement with reference labels;
* :mod:`~crofuse.statistics.maps`: the files of a city-year folder (names, reading, writing, the AOI mask);
* :mod:`~crofuse.statistics.consistency`: the temporally consistent series (``impervious_consistent.tif``);
* :mod:`~crofuse.statistics.estimation`: stratified sampling and the estimator of Olofsson et al. (2014);
* :mod:`~crofuse.statistics.sample`: the accuracy sample on disk (design, labels, labels read off rasters);
* :mod:`~crofuse.statistics.records`: the record of one city-year (``statistics.json``, schema-versioned);
* :mod:`~crofuse.statistics.tables`: ``statistics.zarr``, ``statistics.csv``, the printed table;
* :mod:`~crofuse.statistics.update`: what is current, the lock, :func:`update_statistics`;
* :mod:`~crofuse.statistics.cli`: ``crofuse statistics consolidate|sample ...``.

``docs/flows.md`` (Statistics) describes the columns and the workflow, ``docs/labelling.md`` how to label a sample.
"""

from __future__ import annotations

from crofuse.statistics.area import grid_of, naive_pixel_area, pixel_area, pixel_area_of
from crofuse.statistics.change import (
    GAIN,
    LOSS,
    NO_CHANGE,
    AreaStatistics,
    ChangeStatistics,
    change_area,
    change_map,
    disagreement_area,
    impervious_area,
)
from crofuse.statistics.consistency import ConsistencyRule, ConsolidationReport, consistent_series, consolidate_city
from crofuse.statistics.maps import (
    AOI_NAME,
    CHANGE_NAME,
    CONSISTENT_NAME,
    MAP_NAME,
    RECORD_NAME,
    REFERENCE_NAME,
    aoi_mask,
    aoi_mask_for,
    mapped_cities,
    mapped_years,
    read_map,
    write_map,
    write_uint8_cog,
)
from crofuse.statistics.records import (
    ESTIMATE_COLUMNS,
    NUMERIC_FIELDS,
    SCHEMA_VERSION,
    CityYearStatistics,
    load_record,
)
from crofuse.statistics.tables import (
    STATISTICS_CSV,
    STATISTICS_ZARR,
    format_table,
    read_statistics_csv,
    records_to_dataset,
    write_statistics,
)
from crofuse.statistics.update import (
    DEFAULT_LOCK_TIMEOUT,
    LOCK_NAME,
    StatisticsLockTimeout,
    compute_city_year,
    is_current,
    statistics_lock,
    update_statistics,
)

__all__ = [
    "AOI_NAME",
    "CHANGE_NAME",
    "CONSISTENT_NAME",
    "DEFAULT_LOCK_TIMEOUT",
    "ESTIMATE_COLUMNS",
    "GAIN",
    "LOCK_NAME",
    "LOSS",
    "MAP_NAME",
    "NO_CHANGE",
    "NUMERIC_FIELDS",
    "RECORD_NAME",
    "REFERENCE_NAME",
    "SCHEMA_VERSION",
    "STATISTICS_CSV",
    "STATISTICS_ZARR",
    "AreaStatistics",
    "ChangeStatistics",
    "CityYearStatistics",
    "ConsistencyRule",
    "ConsolidationReport",
    "StatisticsLockTimeout",
    "aoi_mask",
    "aoi_mask_for",
    "change_area",
    "change_map",
    "compute_city_year",
    "consistent_series",
    "consolidate_city",
    "disagreement_area",
    "format_table",
    "grid_of",
    "impervious_area",
    "is_current",
    "load_record",
    "mapped_cities",
    "mapped_years",
    "naive_pixel_area",
    "pixel_area",
    "pixel_area_of",
    "read_map",
    "read_statistics_csv",
    "records_to_dataset",
    "statistics_lock",
    "update_statistics",
    "write_map",
    "write_statistics",
    "write_uint8_cog",
]
