"""The temporally consistent impervious series (crofuse.statistics.consistency, `crofuse statistics consolidate`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crofuse import statistics as st
from crofuse.statistics.consistency import RULE_TAG, ConsistencyRule, consistent_series, consolidate_city

ND = 255


def _series(*pixels: list[int], rule: ConsistencyRule | None = None) -> np.ndarray:
    """Run the rule on pixels given as probability time series; returns ``(pixel, year)``."""
    stack = np.array(pixels, dtype="uint8").T[:, None, :]  # (year, 1, pixel)
    return consistent_series(stack, rule)[:, 0, :].T


def test_flicker_is_made_monotone() -> None:
    """A road-edge pixel that crosses 50 % back and forth becomes impervious once and stays; its change map then
    has one gain and no loss."""
    out = _series([30, 60, 40, 70, 45, 55], [10, 20, 35, 45, 30, 20])
    assert out.tolist() == [[0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]]
    raw = (np.array([30, 60, 40, 70, 45, 55]) >= 50).astype("uint8")
    assert np.count_nonzero(np.diff(raw) != 0) == 5  # five flips in the raw maps, one in the series
    losses = [st.change_map(out[:, t], out[:, t + 1]) for t in range(5)]
    assert not any((c == st.LOSS).any() for c in losses)


def test_a_strong_persistent_reversal_is_kept() -> None:
    """Probability under 20 % in 2 consecutive years (demolition) reverts the pixel from the first of them."""
    out = _series([80, 90, 10, 5, 8], [80, 90, 10, 60, 8], [80, 90, 35, 30, 25], [80, 90, 85, 10, ND])
    assert out[0].tolist() == [1, 1, 0, 0, 0]  # confirmed reversal
    assert out[1].tolist() == [1, 1, 1, 1, 1]  # one low year is not enough
    assert out[2].tolist() == [1, 1, 1, 1, 1]  # pervious but not strongly so: no evidence of reversal
    assert out[3].tolist() == [1, 1, 1, 1, 1]  # the last low year cannot be confirmed yet (and nodata carries)
    three = ConsistencyRule(reversal_years=3)
    assert _series([80, 90, 10, 5, 8], rule=three)[0].tolist() == [1, 1, 0, 0, 0]
    assert _series([80, 90, 10, 5, 60], rule=three)[0].tolist() == [1, 1, 1, 1, 1]


def test_nodata_years() -> None:
    """An unobserved year carries an impervious pixel forward; a pervious one stays unknown."""
    out = _series([60, ND, 40], [20, ND, 20], [ND, 70, 10])
    assert out.tolist() == [[1, 1, 1], [0, ND, 0], [ND, 1, 1]]


def test_the_switch_turns_the_rule_off() -> None:
    p = [[30, 60, 40, 70], [80, 10, 5, ND]]
    off = _series(*p, rule=ConsistencyRule(non_reverting=False))
    assert off.tolist() == [[0, 1, 0, 1], [1, 0, 0, ND]]


def test_rule_parameters_are_checked() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="reversal_below=50 must be below threshold=50"):
        ConsistencyRule(reversal_below=50)
    with pytest.raises(ValidationError):
        ConsistencyRule(reversal_years=0)


# --------------------------------------------------------------------------------------------------------------------
# On files: consolidate_city and the CLI
# --------------------------------------------------------------------------------------------------------------------
def _write_year(root: Path, city: str, year: int, probability: np.ndarray) -> None:
    """impervious.tif (thresholded) and a finished maps.zarr holding ``probability`` (uint8 %, 255 nodata)."""
    import zarr

    from tests.test_statistics import _write_map

    folder = root / city / str(year)
    imp = np.where(probability == ND, ND, probability >= 50).astype("uint8")
    _write_map(folder / st.MAP_NAME, imp)
    group = zarr.open_group(str(folder / "maps.zarr"), mode="w", zarr_format=3)
    group.create_array("probability", data=probability.astype("uint8"))
    group.attrs["complete"] = True


@pytest.fixture
def flickering_city(tmp_path: Path) -> Path:
    """Three years of a 30×30 city: a block built in 2020, an edge strip that flickers, a site demolished in 2020."""
    base = np.full((30, 30), 10, "uint8")
    years = {2019: base.copy(), 2020: base.copy(), 2021: base.copy()}
    for p in years.values():
        p[:10, :10] = 90  # old town
    years[2020][15:20, 15:25] = 80  # built in 2020
    years[2021][15:20, 15:25] = 85
    for y, v in zip(years, (60, 40, 65)):
        years[y][25, :] = v  # the flickering edge
    years[2019][:3, :3] = 90
    years[2020][:3, :3] = 5  # demolished and re-greened
    years[2021][:3, :3] = 8
    for y, p in years.items():
        _write_year(tmp_path, "wuhan", y, p)
    return tmp_path


def test_consolidate_writes_a_monotone_series_and_keeps_the_raw_maps(flickering_city: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    raw_before = {y: (flickering_city / f"wuhan/{y}" / st.MAP_NAME).read_bytes() for y in (2019, 2020, 2021)}
    report = consolidate_city(flickering_city, "wuhan")
    assert report.years == [2019, 2020, 2021] and len(report.written) == 3 and not report.missing_years
    series = {y: st.read_map(flickering_city / f"wuhan/{y}" / st.CONSISTENT_NAME).values for y in report.years}
    assert cog_validate(flickering_city / "wuhan/2020" / st.CONSISTENT_NAME)[0]
    assert (series[2020][25] == 1).all() and (series[2021][25] == 1).all(), "the edge stays impervious"
    assert (series[2020][:3, :3] == 0).all() and (series[2021][:3, :3] == 0).all(), "the demolition is kept"
    loss = st.change_map(series[2020], series[2021]) == st.LOSS
    assert not loss.any()
    for y in report.years:  # the yearly maps are as they were
        assert (flickering_city / f"wuhan/{y}" / st.MAP_NAME).read_bytes() == raw_before[y]
    import rasterio

    with rasterio.open(flickering_city / "wuhan/2021" / st.CONSISTENT_NAME) as src:
        tag = json.loads(src.tags()[RULE_TAG])
    assert tag == {"rule": ConsistencyRule().model_dump(), "years": [2019, 2020, 2021]}


def test_consolidate_is_idempotent_and_follows_a_new_year(flickering_city: Path) -> None:
    consolidate_city(flickering_city, "wuhan")
    paths = {y: flickering_city / f"wuhan/{y}" / st.CONSISTENT_NAME for y in (2019, 2020, 2021)}
    mtimes = {y: p.stat().st_mtime_ns for y, p in paths.items()}
    again = consolidate_city(flickering_city, "wuhan")
    assert again.written == [] and len(again.unchanged) == 3
    assert {y: p.stat().st_mtime_ns for y, p in paths.items()} == mtimes, "a rerun with nothing new rewrites nothing"
    # 2022 arrives with the edge at 10 %: one low year, not yet a confirmed reversal
    p2022 = np.full((30, 30), 10, "uint8")
    p2022[:10, :10] = 90
    p2022[15:20, 15:25] = 90
    _write_year(flickering_city, "wuhan", 2022, p2022)
    later = consolidate_city(flickering_city, "wuhan")
    assert later.years == [2019, 2020, 2021, 2022] and len(later.written) == 4  # the years the series used changed
    assert (st.read_map(paths[2021]).values[25] == 1).all()
    assert (st.read_map(flickering_city / "wuhan/2022" / st.CONSISTENT_NAME).values[25] == 1).all()
    # 2023 confirms it: the edge reverts from 2022 on, an earlier year's file is rewritten, 2021 keeps it
    _write_year(flickering_city, "wuhan", 2023, p2022)
    consolidate_city(flickering_city, "wuhan")
    assert (st.read_map(flickering_city / "wuhan/2022" / st.CONSISTENT_NAME).values[25] == 0).all()
    assert (st.read_map(paths[2021]).values[25] == 1).all()


def test_a_missing_year_is_reported_and_skipped(flickering_city: Path, caplog) -> None:
    import shutil

    shutil.rmtree(flickering_city / "wuhan/2020")
    with caplog.at_level("WARNING", logger="crofuse.statistics.consistency"):
        report = consolidate_city(flickering_city, "wuhan")
    assert report.years == [2019, 2021] and report.missing_years == [2020]
    assert "no map for [2020]" in caplog.text and "no map for [2020]" in report.summary()
    assert not (flickering_city / "wuhan/2020").exists()
    assert (st.read_map(flickering_city / "wuhan/2021" / st.CONSISTENT_NAME).values[:3, :3] == 1).all(), \
        "2021 alone (8 %) is one low year: not a confirmed reversal"


def test_the_statistics_report_the_consistent_series(flickering_city: Path) -> None:
    """2020: the raw maps lose the flickering edge and the demolished site; the consistent series only the site.
    2021: the raw maps gain the edge back; the consistent series gains nothing."""
    raw = st.update_statistics(flickering_city)
    assert np.isnan(float(raw.consistent_gain_km2.sel(city="wuhan", year=2021)))
    consolidate_city(flickering_city, "wuhan")
    ds = st.update_statistics(flickering_city)  # the new files make the records stale
    like = st.read_map(flickering_city / "wuhan/2020" / st.MAP_NAME)
    px = st.pixel_area(like.rio.crs, like.rio.transform(), like.shape)[0, 0] / 1e6  # km² of one pixel here
    y2020, y2021 = ds.sel(city="wuhan", year=2020), ds.sel(city="wuhan", year=2021)
    assert float(y2020.loss_km2) == pytest.approx((9 + 30) * px, rel=1e-4)  # site + edge row
    assert float(y2020.consistent_loss_km2) == pytest.approx(9 * px, rel=1e-4)  # the site only
    assert float(y2021.gain_km2) == pytest.approx(30 * px, rel=1e-4)  # the edge is back
    assert float(y2021.consistent_gain_km2) == 0.0 and float(y2021.consistent_loss_km2) == 0.0
    assert float(y2021.loss_km2) == float(raw.loss_km2.sel(city="wuhan", year=2021)), "the raw figures stay"


def test_the_cli(flickering_city: Path) -> None:
    from typer.testing import CliRunner

    from crofuse_cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["statistics", "consolidate", "wuhan", "--output", str(flickering_city), "--no-rule"])
    assert res.exit_code == 0, res.output
    assert "3 written" in res.output
    edge = st.read_map(flickering_city / "wuhan/2020" / st.CONSISTENT_NAME).values[25]
    assert (edge == 0).all(), "without the rule the 40 % year stays pervious"
    res = runner.invoke(app, ["statistics", "consolidate", "wuhan", "--output", str(flickering_city),
                              "--reversal-below", "60"])
    assert res.exit_code == 2 and "must be below threshold" in res.output  # a configuration value: exit 2
    res = runner.invoke(app, ["statistics", "consolidate", "nowhere", "--output", str(flickering_city)])
    assert res.exit_code == 1 and "no mapped year" in res.output
