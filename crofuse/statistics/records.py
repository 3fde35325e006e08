"""The record of one city-year (``statistics.json``): the row of the statistics tables, with a schema version.

A record written by an older crofuse (another :data:`SCHEMA_VERSION`, or none) is recomputed, never patched: each
version change below says what it added.

* 1 (no ``schema_version`` field): areas, change, reference figures.
* 2: ``common_valid_km2``, ``impervious_common_km2``, ``previous_impervious_common_km2``.
* 3: the AOI mask is the cube's ``in_aoi`` for every figure (commission/omission included); the ``consistent_*``
  figures of the temporally consistent series; the stratified estimates (``estimated_*``, accuracies) from an
  accuracy sample; ``sources`` (the input files and their modification times) decides whether a record is current.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from crofuse.errors import DataError
from crofuse.statistics.maps import RECORD_NAME, city_year_folder

SCHEMA_VERSION = 3

ESTIMATED_AREAS = ("impervious", "gain", "loss", "net")
ACCURACY_CLASSES = ("impervious", "pervious", "gain", "loss", "stable_impervious", "stable_pervious")
ESTIMATE_COLUMNS: tuple[str, ...] = (
    "sample_points",
    *(f"estimated_{a}_{s}km2" for a in ESTIMATED_AREAS for s in ("", "se_", "ci95_")),
    *(f"{kind}_accuracy_{c}{s}" for c in ACCURACY_CLASSES for kind in ("user", "producer") for s in ("", "_se")),
    "overall_accuracy",
    "overall_accuracy_se",
)
"""Columns filled from a labelled accuracy sample (NaN without one); see :mod:`crofuse.statistics.sample`."""


@dataclass
class CityYearStatistics:
    """One row of ``statistics.csv``: a mapped city-year and its change against the previous mapped year.

    Change fields are NaN (and ``previous_year`` is -1) for the first mapped year of a city. ``reference_*`` fields
    are NaN when no reference labels were available for the city-year (or its previous year, for change fields).

    ``impervious_km2`` counts every validly mapped pixel, so a year with more cloud-masked pixels shows less area with
    no change on the ground. The ``*_common_km2`` fields compare the two years on the pixels valid in both
    (``common_valid_km2``), where ``impervious_common_km2 − previous_impervious_common_km2`` equals ``net_km2`` (up
    to rounding).

    ``estimates`` holds the :data:`ESTIMATE_COLUMNS` computed from an accuracy sample (``estimate_source`` says which:
    a person's ``labelled.csv``, or reference rasters; ``estimate_notes`` warns where an interval may be too narrow,
    :func:`~crofuse.statistics.sample.interval_notes`); ``sources`` the input files the record was computed from,
    with their modification times (ns), relative to the city's folder.
    """

    city: str
    year: int
    impervious_km2: float
    valid_km2: float
    aoi_km2: float
    fraction_of_aoi: float
    fraction_of_valid: float
    naive_impervious_km2: float
    previous_year: int = -1
    gain_km2: float = math.nan
    loss_km2: float = math.nan
    net_km2: float = math.nan
    common_valid_km2: float = math.nan
    impervious_common_km2: float = math.nan
    previous_impervious_common_km2: float = math.nan
    reference_impervious_km2: float = math.nan
    commission_km2: float = math.nan
    omission_km2: float = math.nan
    reference_gain_km2: float = math.nan
    reference_loss_km2: float = math.nan
    gain_error_km2: float = math.nan
    gain_error_bound_km2: float = math.nan
    consistent_impervious_km2: float = math.nan
    consistent_gain_km2: float = math.nan
    consistent_loss_km2: float = math.nan
    estimate_source: str = ""
    estimate_notes: str = ""
    estimates: dict[str, float] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict, repr=False)
    schema_version: int = SCHEMA_VERSION

    @property
    def gain_within_model_error(self) -> bool | None:
        """``|gain − reference gain| ≤ disagreement of both years' maps`` (None without reference labels)."""
        if math.isnan(self.gain_error_km2) or math.isnan(self.gain_error_bound_km2):
            return None
        return abs(self.gain_error_km2) <= self.gain_error_bound_km2 + 1e-9

    def value(self, name: str) -> Any:
        """A table column of this record (a field, or one of :data:`ESTIMATE_COLUMNS`)."""
        if name in ESTIMATE_COLUMNS:
            return self.estimates.get(name, math.nan)
        return getattr(self, name)


_NOT_COLUMNS = ("city", "year", "estimates", "sources", "schema_version", "estimate_source", "estimate_notes")
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CityYearStatistics) if f.name not in _NOT_COLUMNS)
NUMERIC_FIELDS: tuple[str, ...] = (*RECORD_FIELDS, *ESTIMATE_COLUMNS)
"""Every numeric column of the tables, in order."""
TEXT_FIELDS: tuple[str, ...] = ("estimate_source", "estimate_notes")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


def record_to_json(record: CityYearStatistics) -> dict[str, Any]:
    """The JSON form of a record (NaN as null)."""
    return {k: _nan_to_none(v) for k, v in asdict(record).items()}


def record_from_json(data: dict[str, Any]) -> CityYearStatistics:
    """A record from its JSON form; fields it lacks keep their defaults, and a record without ``schema_version``
    reads as version 1 (so it is recomputed)."""
    known = {f.name for f in fields(CityYearStatistics)}
    kwargs = {k: v for k, v in data.items() if k in known}
    for k, v in list(kwargs.items()):
        if v is None:
            kwargs[k] = math.nan
    kwargs["estimates"] = {k: (math.nan if v is None else float(v)) for k, v in (data.get("estimates") or {}).items()}
    kwargs["sources"] = {str(k): int(v) for k, v in (data.get("sources") or {}).items()}
    kwargs["schema_version"] = int(data.get("schema_version") or 1)
    kwargs["estimate_source"] = str(data.get("estimate_source") or "")
    kwargs["estimate_notes"] = str(data.get("estimate_notes") or "")
    try:
        return CityYearStatistics(**kwargs)
    except TypeError as e:
        raise DataError(f"not a statistics record: {e}") from e


def write_record(output: Path | str, record: CityYearStatistics) -> Any:
    """Write a record to ``<output>/<city>/<year>/statistics.json`` atomically (a path or an ``s3://`` URL)."""
    path = city_year_folder(output, record.city, record.year) / RECORD_NAME
    path.write_text(json.dumps(record_to_json(record), indent=2, sort_keys=True))
    return path.path if path.is_local else path


def load_record(output: Path | str, city: str, year: int) -> CityYearStatistics | None:
    """The stored record of a city-year, or None when none was written (or it is unreadable)."""
    path = city_year_folder(output, city, year) / RECORD_NAME
    try:
        return record_from_json(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, DataError):
        return None


__all__ = [
    "ACCURACY_CLASSES",
    "ESTIMATED_AREAS",
    "ESTIMATE_COLUMNS",
    "NUMERIC_FIELDS",
    "RECORD_FIELDS",
    "SCHEMA_VERSION",
    "TEXT_FIELDS",
    "CityYearStatistics",
    "load_record",
    "record_from_json",
    "record_to_json",
    "write_record",
]
