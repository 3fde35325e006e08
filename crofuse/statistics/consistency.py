"""A temporally consistent impervious series over a city's mapped years (``impervious_consistent.tif``).

Post-classification change of independently classified years is dominated by flicker: a pixel on a road edge or a
roof corner crosses the 50 % line one year and not the next, and every crossing shows up as gain or loss. Annual
impervious-surface products remove it with a temporal rule. GAIA (Gong, P., Li, X., Wang, J., et al. 2020, *Annual
maps of global artificial impervious area (GAIA) between 1985 and 2018*, Remote Sensing of Environment 236: 111510)
applies a temporal consistency check under the assumption that the change from pervious to impervious is
irreversible: once a pixel is impervious it stays impervious in every later year (the product's transition year is
monotone).

The rule here (:class:`ConsistencyRule`):

* a pixel is impervious in year ``t`` when its probability is at least ``threshold`` (the maps' own 50 %), or when it
  was impervious the year before (non-reverting);
* it returns to pervious only on strong and persistent evidence: a probability below ``reversal_below`` % in
  ``reversal_years`` consecutive mapped years (demolition, a re-greened site); it is then pervious from the first of
  those years on. The last ``reversal_years − 1`` years cannot show a confirmed reversal yet: adding a year re-runs
  the series and may confirm one;
* a year without an observation (nodata) carries an impervious pixel forward and is no evidence of reversal;
* ``non_reverting=False`` turns the rule off: the series is then the thresholded yearly maps.

The series is built over the years that have a map, never inside one year's flow (it needs the years after, too);
``remap-cities`` runs it at the end for every city it touched, and ``crofuse statistics consolidate CITY`` by hand.
The raw yearly maps stay as they are. A rerun with nothing new rewrites nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crofuse import NODATA_LABEL
from crofuse.errors import DataError
from crofuse.io.store import gdal_env, location
from crofuse.statistics.maps import (
    CONSISTENT_NAME,
    MAP_NAME,
    PROBABILITY_STORE,
    city_year_folder,
    mapped_years,
    read_map,
    same_grid,
    write_map,
)

log = logging.getLogger(__name__)

RULE_TAG = "CROFUSE_CONSISTENCY"
"""GeoTIFF tag of ``impervious_consistent.tif``: the rule and the years the series was built from (JSON)."""


class ConsistencyRule(BaseModel):
    """Parameters of the temporal consistency rule (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    non_reverting: bool = Field(True, description="impervious stays impervious unless the reversal is confirmed")
    threshold: int = Field(50, ge=1, le=100, description="probability (%) at or above which a year is impervious")
    reversal_below: int = Field(
        20, ge=0, le=99, description="probability (%) below which a year is evidence of reversal"
    )
    reversal_years: int = Field(2, ge=1, le=20, description="consecutive mapped years of evidence a reversal needs")

    @model_validator(mode="after")
    def _low_below_threshold(self) -> ConsistencyRule:
        if self.reversal_below >= self.threshold:
            raise ValueError(
                f"reversal_below={self.reversal_below} must be below threshold={self.threshold}: evidence of "
                "reversal has to be stronger than an ordinary pervious year"
            )
        return self


def consistent_series(probability: np.ndarray, rule: ConsistencyRule | None = None) -> np.ndarray:
    """Apply the rule to a ``(year, y, x)`` stack of probabilities (uint8 %, 255 nodata), years in order.

    Returns a ``(year, y, x)`` uint8 stack: 1 impervious, 0 pervious, 255 unknown (nodata and not carried).
    """
    rule = rule or ConsistencyRule()
    p = np.asarray(probability)
    if p.ndim != 3:
        raise ValueError(f"expected a (year, y, x) stack, got shape {p.shape}")
    observed = p != NODATA_LABEL
    raw = observed & (p >= rule.threshold)
    out = np.full(p.shape, NODATA_LABEL, dtype="uint8")
    if not rule.non_reverting:
        out[observed] = raw[observed]
        return out
    low = observed & (p < rule.reversal_below)
    years, k = p.shape[0], rule.reversal_years
    impervious = np.zeros(p.shape[1:], dtype=bool)
    for t in range(years):
        if t + k <= years:  # a reversal starting at t needs k observed low years t … t+k-1
            confirmed = np.logical_and.reduce(low[t : t + k], axis=0)
            impervious &= ~confirmed
        impervious |= raw[t]
        out[t] = np.where(impervious, 1, np.where(observed[t], 0, NODATA_LABEL))
    return out


@dataclass
class ConsolidationReport:
    """What :func:`consolidate_city` did."""

    city: str
    years: list[int]
    missing_years: list[int] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.city}: consistent series over {self.years}: {len(self.written)} written, "
                f"{len(self.unchanged)} unchanged")
        return "; ".join([text, *self.notes])


def _probability(folder: Path, like_shape: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The year's probability (uint8 %, 255 nodata) and where it came from."""
    import zarr

    store = folder / PROBABILITY_STORE
    if (store / "zarr.json").exists():
        group = zarr.open_group(store.zarr_store(read_only=True), mode="r")
        if group.attrs.get("complete", True) and "probability" in group:
            values = np.asarray(group["probability"][:], dtype="uint8")
            if values.shape != like_shape:
                raise DataError(f"{store}/probability is {values.shape}, its map {like_shape}: rerun the city-year")
            return values, f"{PROBABILITY_STORE}:probability"
    if (folder / "probability.tif").exists():
        return np.asarray(read_map(folder / "probability.tif").values, dtype="uint8"), "probability.tif"
    imp = np.asarray(read_map(folder / MAP_NAME).values, dtype="uint8")  # maps made elsewhere: 1/0 as 100/0 %
    return np.where(imp == NODATA_LABEL, NODATA_LABEL, np.where(imp == 1, 100, 0)).astype("uint8"), MAP_NAME


def consolidate_city(output: Path, city: str, *, rule: ConsistencyRule | None = None) -> ConsolidationReport:
    """Write ``impervious_consistent.tif`` for every mapped year of ``city`` under ``output``.

    Idempotent: a year's file is rewritten only when its values or the rule/years it was built from changed. Years
    missing between the first and the last mapped year are reported (and logged); the series runs over the years
    that exist.
    """
    rule = rule or ConsistencyRule()
    output = location(output)
    years = mapped_years(output, city)
    if not years:
        raise DataError(f"{city} has no mapped year under {output}: map it first (map-city)")
    report = ConsolidationReport(city=city, years=years)
    report.missing_years = [y for y in range(years[0], years[-1] + 1) if y not in years]
    if report.missing_years:
        note = (f"no map for {report.missing_years}: the series runs over {years} (a missing year is no evidence; "
                "an impervious pixel carries across it); map those years and rerun to fill them in")
        report.notes.append(note)
        log.warning("%s: %s", city, note)
    like = read_map(city_year_folder(output, city, years[0]) / MAP_NAME)
    stack, origins = [], []
    for year in years:
        folder = city_year_folder(output, city, year)
        current = read_map(folder / MAP_NAME)
        if not same_grid(current, like):
            raise DataError(
                f"{city}: the {year} map is on another grid than {years[0]}'s; map every year of a city with the "
                "same AOI and resolution so the series can be built pixel by pixel"
            )
        values, origin = _probability(folder, tuple(current.shape))
        stack.append(values)
        origins.append(origin)
    if any(o == MAP_NAME for o in origins):
        report.notes.append("some years have no probability map: their binary map was used (reversal evidence "
                            "is then any pervious year)")
    series = consistent_series(np.stack(stack), rule)
    tag = json.dumps({"rule": rule.model_dump(), "years": years}, sort_keys=True)
    for t, year in enumerate(years):
        path = city_year_folder(output, city, year) / CONSISTENT_NAME
        if _unchanged(path, series[t], tag):
            report.unchanged.append(path.path if path.is_local else path)
            continue
        report.written.append(write_map(series[t], like, path, tags={RULE_TAG: tag}))
    log.info(report.summary())
    return report


def _unchanged(path: Path, values: np.ndarray, tag: str) -> bool:
    import rasterio

    if not path.exists():
        return False
    with gdal_env(), rasterio.open(path.gdal_path) as src:
        if src.tags().get(RULE_TAG) != tag or src.shape != values.shape:
            return False
        return bool(np.array_equal(src.read(1), values))


__all__ = ["CONSISTENT_NAME", "RULE_TAG", "ConsistencyRule", "ConsolidationReport", "consistent_series",
           "consolidate_city"]
