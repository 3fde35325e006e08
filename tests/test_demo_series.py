"""The demo's gain series (issue 12: mapped, consistent, estimated ± CI and true gain of every mapped city-year)."""

from __future__ import annotations

import math
from pathlib import Path

from tests.test_statistics import two_cities  # noqa: F401  (the fixture)


def test_gain_series_reports_the_table_four_ways(two_cities: Path) -> None:  # noqa: F811
    from crofuse.statistics import update_statistics
    from crofuse.statistics.consistency import consolidate_city
    from infra.demo import gain_series

    consolidate_city(two_cities, "wuhan")
    ds = update_statistics(two_cities)
    text = gain_series(ds)
    rows = [line.split() for line in text.splitlines()[2:]]
    assert [r[:2] for r in rows] == [["wuhan", "2021"]]  # lagos has one year, wuhan's first year has no change
    city, year = "wuhan", 2021
    cell = {k: float(ds[k].sel(city=city, year=year)) for k in
            ("gain_km2", "consistent_gain_km2", "estimated_gain_km2", "estimated_gain_ci95_km2", "reference_gain_km2")}
    mapped, consistent, est, _, ci, true, covered = rows[0][2:]
    assert float(mapped) == round(cell["gain_km2"], 3) and float(true) == round(cell["reference_gain_km2"], 3)
    assert float(consistent) == round(cell["consistent_gain_km2"], 3)
    assert float(est) == round(cell["estimated_gain_km2"], 3) and float(ci) == round(cell["estimated_gain_ci95_km2"], 3)
    assert not math.isnan(cell["estimated_gain_km2"])
    expected = abs(cell["estimated_gain_km2"] - cell["reference_gain_km2"]) <= cell["estimated_gain_ci95_km2"]
    assert covered == ("yes" if expected else "no")
