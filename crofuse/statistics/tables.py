"""The statistics tables: ``statistics.zarr`` (an xarray Dataset indexed by ``(city, year)``) and ``statistics.csv``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from crofuse.io.store import Location, location
from crofuse.layout import STATISTICS_CSV, STATISTICS_ZARR
from crofuse.statistics.records import (
    ESTIMATE_COLUMNS,
    NUMERIC_FIELDS,
    TEXT_FIELDS,
    CityYearStatistics,
)

_LONG_NAMES = {
    "impervious_km2": "impervious area on the WGS84 ellipsoid (equal-area corrected)",
    "naive_impervious_km2": "impervious area from counting map pixels (not corrected)",
    "fraction_of_aoi": "impervious fraction of the AOI",
    "fraction_of_valid": "impervious fraction of the validly mapped area",
    "gain_km2": "mapped pervious to impervious since previous_year",
    "loss_km2": "mapped impervious to pervious since previous_year",
    "consistent_impervious_km2": "impervious area of the temporally consistent series",
    "estimated_impervious_km2": "impervious area estimated from the accuracy sample (Olofsson et al. 2014)",
    "estimated_gain_km2": "gain since previous_year estimated from the accuracy sample (Olofsson et al. 2014)",
    "estimated_loss_km2": "loss since previous_year estimated from the accuracy sample",
    "estimated_net_km2": "net change (gain - loss) estimated from the accuracy sample",
    "overall_accuracy": "overall accuracy of the map (or change map) from the accuracy sample",
    "estimate_source": "where the sample's reference labels came from (empty: no sample)",
    "estimate_notes": "warnings about the confidence intervals (e.g. too few omitted-change points)",
}


def records_to_dataset(records: Sequence[CityYearStatistics]) -> xr.Dataset:
    """Records → Dataset with dims ``(city, year)``; missing city-years are NaN (``previous_year`` -1)."""
    cities = sorted({r.city for r in records})
    years = sorted({r.year for r in records})
    shape = (len(cities), len(years))
    data = {name: np.full(shape, -1 if name == "previous_year" else np.nan, dtype="float64") for name in NUMERIC_FIELDS}
    text = {name: np.full(shape, "", dtype=object) for name in TEXT_FIELDS}
    mapped = np.zeros(shape, dtype=bool)
    for r in records:
        i, j = cities.index(r.city), years.index(r.year)
        mapped[i, j] = True
        for name in data:
            data[name][i, j] = r.value(name)
        for name in text:
            text[name][i, j] = str(getattr(r, name))
    ds = xr.Dataset(
        {name: (("city", "year"), values) for name, values in {**data, **text}.items()},
        coords={"city": np.array(cities, dtype=object), "year": np.array(years, dtype="int64")},
    )
    ds["previous_year"] = ds["previous_year"].astype("int64")
    ds["mapped"] = (("city", "year"), mapped)
    for name in NUMERIC_FIELDS:
        if "_km2" in name:
            ds[name].attrs["units"] = "km2"
    for name, long_name in _LONG_NAMES.items():
        ds[name].attrs["long_name"] = long_name
    for name in ESTIMATE_COLUMNS:
        if "ci95" in name:
            ds[name].attrs["long_name"] = "half-width of the 95 % confidence interval (1.96 standard errors)"
    ds.attrs["description"] = "crofuse impervious-surface statistics per city and year"
    return ds


def write_statistics(ds: xr.Dataset, output: Path | str | Location) -> tuple[Any, Any]:
    """Write ``statistics.zarr`` and ``statistics.csv`` under ``output`` (a path or an ``s3://`` URL), each
    replaced atomically: the store is written under a temporary name and moved into place
    (:func:`crofuse.layout.replace_store`), the CSV in one write."""
    import uuid

    from crofuse.layout import is_temp_store, replace_store

    output = location(output)
    output.mkdir()
    for stale in output.iterdir():  # left by a killed writer (the caller holds the statistics lock)
        if stale.name.startswith(f".{STATISTICS_ZARR}") and is_temp_store(stale.name):
            stale.rmtree()
    zarr_path = output / STATISTICS_ZARR
    tmp_zarr = output / f".{STATISTICS_ZARR}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        ds.to_zarr(tmp_zarr.zarr_store(), mode="w", zarr_format=3, consolidated=True)
        replace_store(tmp_zarr, zarr_path)
    finally:
        tmp_zarr.rmtree()
    buffer = io.StringIO(newline="")
    _write_csv(ds, buffer)
    (output / STATISTICS_CSV).write_text(buffer.getvalue())
    if output.is_local:
        return zarr_path.path, (output / STATISTICS_CSV).path
    return zarr_path, output / STATISTICS_CSV


def _write_csv(ds: xr.Dataset, fh: Any) -> None:
    columns = [n for n in (*NUMERIC_FIELDS, *TEXT_FIELDS) if n in ds]
    writer = csv.writer(fh)
    writer.writerow(["city", "year", *columns])
    for city in ds["city"].values:
        for year in ds["year"].values:
            if not bool(ds["mapped"].sel(city=city, year=year)):
                continue
            row: list[Any] = [str(city), int(year)]
            for name in columns:
                v = ds[name].sel(city=city, year=year).item()
                if name in TEXT_FIELDS:
                    row.append(str(v))
                elif name == "previous_year":
                    row.append(int(v))
                else:
                    row.append("" if math.isnan(v) else f"{v:.6f}")
            writer.writerow(row)


def read_statistics_csv(path: Path | str | Location) -> list[dict[str, Any]]:
    """Rows of ``statistics.csv`` with numbers parsed (empty cells → NaN)."""
    rows = []
    with io.StringIO(location(path).read_text(), newline="") as fh:
        for row in csv.DictReader(fh):
            parsed: dict[str, Any] = {"city": row.pop("city"), "year": int(row.pop("year"))}
            for k, v in row.items():
                if k in TEXT_FIELDS:
                    parsed[k] = v
                elif k == "previous_year":
                    parsed[k] = int(v)
                else:
                    parsed[k] = float(v) if v != "" else math.nan
            rows.append(parsed)
    return rows


def format_table(ds: xr.Dataset) -> str:
    """A plain-text table of the main figures, one line per mapped city-year.

    ``err``: mapped − reference gain; ``bound``: commission + omission of both years; ``est. gain ± CI`` and
    ``est. net ± CI``: estimated from the accuracy sample, with the half-width of the 95 % confidence interval (where
    a labelled sample exists); ``OA``: the change map's overall accuracy from the same sample.
    """
    header = (f"{'city':<14}{'year':>6}{'IS km2':>10}{'IS %AOI':>9}{'gain':>9}{'loss':>9}{'net':>9}"
              f"{'ref gain':>10}{'err':>8}{'bound':>8}{'est. gain ± CI':>18}{'est. net ± CI':>18}{'OA':>7}")
    lines = [header, "-" * len(header)]

    def num(sel: xr.Dataset, name: str) -> float:
        return float(sel[name]) if name in sel else math.nan

    def fmt(v: float, width: int, digits: int = 3) -> str:
        return f"{'-':>{width}}" if math.isnan(v) else f"{v:>{width}.{digits}f}"

    def pm(sel: xr.Dataset, name: str, width: int) -> str:
        v, ci = num(sel, f"estimated_{name}_km2"), num(sel, f"estimated_{name}_ci95_km2")
        text = "-" if math.isnan(v) else f"{v:.3f} ± {ci:.3f}"
        return f"{text:>{width}}"

    for city in ds["city"].values:
        for year in ds["year"].values:
            sel = ds.sel(city=city, year=year)
            if not bool(sel["mapped"]):
                continue
            lines.append(
                f"{str(city):<14}{int(year):>6}{fmt(num(sel, 'impervious_km2'), 10)}"
                f"{fmt(100 * num(sel, 'fraction_of_aoi'), 9, 1)}{fmt(num(sel, 'gain_km2'), 9)}"
                f"{fmt(num(sel, 'loss_km2'), 9)}{fmt(num(sel, 'net_km2'), 9)}"
                f"{fmt(num(sel, 'reference_gain_km2'), 10)}{fmt(num(sel, 'gain_error_km2'), 8)}"
                f"{fmt(num(sel, 'gain_error_bound_km2'), 8)}{pm(sel, 'gain', 18)}{pm(sel, 'net', 18)}"
                f"{fmt(num(sel, 'overall_accuracy'), 7)}"
            )
    return "\n".join(lines)


__all__ = [
    "STATISTICS_CSV",
    "STATISTICS_ZARR",
    "format_table",
    "read_statistics_csv",
    "records_to_dataset",
    "write_statistics",
]
