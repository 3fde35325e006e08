"""Equal-area impervious statistics, change maps and the statistics tables (crofuse.statistics)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from rasterio.transform import from_origin

from crofuse import statistics as st
from crofuse.errors import DataError

UTM50N = "EPSG:32650"  # Wuhan's zone; central meridian 117°E


def _k_utm(lon: float, lat: float, lon0: float = 117.0) -> float:
    """Point scale factor of UTM on the WGS84 ellipsoid, Snyder (1987) eq. (8-11), independent of pyproj."""
    e2 = 0.00669437999014  # WGS84 first eccentricity squared
    ep2 = e2 / (1 - e2)
    phi = math.radians(lat)
    t = math.tan(phi) ** 2
    c = ep2 * math.cos(phi) ** 2
    a = math.cos(phi) * math.radians(lon - lon0)
    return 0.9996 * (
        1 + (1 + c) * a**2 / 2 + (5 - 4 * t + 42 * c + 13 * c**2 - 28 * ep2) * a**4 / 24
        + (61 - 148 * t + 16 * t**2) * a**6 / 720
    )


def _utm_origin(lon: float, lat: float) -> tuple[float, float]:
    return pyproj.Transformer.from_crs("EPSG:4326", UTM50N, always_xy=True).transform(lon, lat)


@pytest.mark.parametrize("lon", [117.0, 114.3, 119.9])
def test_equal_area_differs_from_pixel_count_by_the_utm_scale_factor(lon: float) -> None:
    x0, y0 = _utm_origin(lon, 30.6)
    transform = from_origin(x0, y0, 10.0, 10.0)
    area = st.pixel_area(UTM50N, transform, (200, 300))
    naive = st.naive_pixel_area(transform, (200, 300))
    ratio = naive.sum() / area.sum()  # = k² at the block's centre
    k = _k_utm(lon + 0.0155, 30.6 - 0.009)  # centre of a 3 km × 2 km block
    assert ratio == pytest.approx(k * k, rel=2e-6)
    # on the central meridian pixels are bigger than they look, near the zone edge smaller
    assert (ratio < 1) if lon == 117.0 else (ratio > 1)


def test_pixel_area_matches_the_geodesic_area_of_the_footprint() -> None:
    x0, y0 = _utm_origin(114.3, 30.6)
    transform = from_origin(x0, y0, 10.0, 10.0)
    shape = (500, 400)
    total = st.pixel_area(UTM50N, transform, shape).sum()
    # the exact ellipsoidal area of the grid's outline, densified so its edges follow the projected straight lines
    to_ll = pyproj.Transformer.from_crs(UTM50N, "EPSG:4326", always_xy=True)
    w, h = shape[1] * 10.0, shape[0] * 10.0
    t = np.linspace(0, 1, 200)
    xs = np.concatenate([x0 + t * w, np.full_like(t, x0 + w), x0 + w - t * w, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 - t * h, np.full_like(t, y0 - h), y0 - h + t * h])
    lon, lat = to_ll.transform(xs, ys)
    geodesic, _ = pyproj.Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)
    assert total == pytest.approx(abs(geodesic), rel=1e-6)
    assert abs(total - w * h) / (w * h) > 5e-4  # the correction is not negligible here


def test_geographic_grid_area() -> None:
    transform = from_origin(114.0, 31.0, 0.01, 0.01)
    area = st.pixel_area("EPSG:4326", transform, (100, 100))
    t = np.linspace(0, 1, 101)  # edges along the parallels, densified
    lons = np.concatenate([114 + t, 115 - t])
    lats = np.concatenate([np.full_like(t, 31.0), np.full_like(t, 30.0)])
    geodesic, _ = pyproj.Geod(ellps="WGS84").polygon_area_perimeter(lons, lats)
    assert area.sum() == pytest.approx(abs(geodesic), rel=1e-7)
    assert area[0, 0] < area[-1, 0]  # cells shrink towards the pole


def test_impervious_area_and_fractions() -> None:
    imp = np.array([[1, 1, 0, 255], [0, 0, 1, 255]], dtype="uint8")
    area = np.full(imp.shape, 1e5)  # 0.1 km² per pixel
    stats = st.impervious_area(imp, area)
    assert stats.impervious_km2 == pytest.approx(0.3)
    assert stats.valid_km2 == pytest.approx(0.6)
    assert stats.aoi_km2 == pytest.approx(0.8)
    assert stats.fraction_of_aoi == pytest.approx(0.375)
    assert stats.fraction_of_valid == pytest.approx(0.5)
    inside = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool)
    assert st.impervious_area(imp, area, aoi_mask=inside).impervious_km2 == pytest.approx(0.2)


def test_probability_maps_are_refused() -> None:
    with pytest.raises(DataError, match="probability"):
        st.impervious_area(np.array([[0, 57, 100]], "uint8"), np.ones((1, 3)))


def test_change_codes_gain_loss_net() -> None:
    prev = np.array([[0, 0, 1, 1, 255, 0]], dtype="uint8")
    cur = np.array([[0, 1, 1, 0, 1, 255]], dtype="uint8")
    change = st.change_map(prev, cur)
    assert change.tolist() == [[st.NO_CHANGE, st.GAIN, st.NO_CHANGE, st.LOSS, 255, 255]]
    assert change.dtype == np.uint8
    area = np.array([[1e6, 2e6, 3e6, 5e5, 7e6, 1e6]])
    ch = st.change_area(change, area)
    assert (ch.gain_km2, ch.loss_km2, ch.net_km2) == pytest.approx((2.0, 0.5, 1.5))


def test_change_of_different_grids_is_refused() -> None:
    with pytest.raises(DataError, match="same grid"):
        st.change_map(np.zeros((2, 2), "uint8"), np.zeros((3, 2), "uint8"))


# --------------------------------------------------------------------------------------------------------------------
# Files: change.tif, statistics.zarr and statistics.csv
# --------------------------------------------------------------------------------------------------------------------
def _write_map(path: Path, values: np.ndarray, *, x0: float = 230_000.0, y0: float = 3_390_000.0) -> None:
    like = xr.DataArray(
        np.zeros(values.shape, "uint8"),
        coords={"y": y0 - 5 - 10 * np.arange(values.shape[0]), "x": x0 + 5 + 10 * np.arange(values.shape[1])},
        dims=("y", "x"),
    ).rio.write_crs(UTM50N)
    st.write_uint8_cog(values, like, path)


def _city(root: Path, city: str, maps: dict[int, np.ndarray], refs: dict[int, np.ndarray] | None = None) -> None:
    for year, values in maps.items():
        _write_map(root / city / str(year) / st.MAP_NAME, values)
    for year, values in (refs or {}).items():
        _write_map(root / city / str(year) / st.REFERENCE_NAME, values)


@pytest.fixture
def two_cities(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    a0 = (rng.random((64, 48)) < 0.3).astype("uint8")
    a1 = a0.copy()
    a1[10:20, 10:30] = 1  # growth
    a1[40:42, 0:5] = 0  # a little loss
    a1[0, :] = 255
    ref0 = a0.copy()
    ref1 = a1.copy()
    ref1[50:52, 20:40] = 1  # the map missed some growth
    _city(tmp_path, "wuhan", {2019: a0, 2021: a1}, {2019: ref0, 2021: ref1})
    _city(tmp_path, "lagos", {2021: (rng.random((32, 32)) < 0.5).astype("uint8")})
    return tmp_path


def test_update_statistics_writes_tables_and_change_maps(two_cities: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    ds = st.update_statistics(two_cities)
    assert set(ds.dims) == {"city", "year"} and ds.sizes == {"city": 2, "year": 2}

    opened = xr.open_zarr(two_cities / st.STATISTICS_ZARR)
    wuhan = opened.sel(city="wuhan", year=2021)
    a0 = st.read_map(two_cities / "wuhan/2019/impervious.tif").values
    a1 = st.read_map(two_cities / "wuhan/2021/impervious.tif").values
    change = st.read_map(two_cities / "wuhan/2021/change.tif")
    assert cog_validate(two_cities / "wuhan/2021/change.tif")[0]
    assert change.rio.crs.to_epsg() == 32650
    assert np.array_equal(change.values, st.change_map(a0, a1))
    area = st.pixel_area(UTM50N, change.rio.transform(), change.shape)
    gained = area[(a0 == 0) & (a1 == 1)].sum() / 1e6
    assert float(wuhan.gain_km2) == pytest.approx(gained, rel=1e-9)
    assert float(wuhan.net_km2) == pytest.approx(float(wuhan.gain_km2 - wuhan.loss_km2))
    assert int(wuhan.previous_year) == 2019
    # the first year of a city has no change and no change map
    assert math.isnan(float(opened.sel(city="wuhan", year=2019).gain_km2))
    assert not (two_cities / "wuhan/2019/change.tif").exists()
    # lagos was not mapped in 2019: a hole in the (city, year) cube, not a row
    assert not bool(opened.sel(city="lagos", year=2019).mapped)
    # reference labels: the missed growth is the gain error, and it lies within the maps' disagreement
    assert float(wuhan.reference_gain_km2) > float(wuhan.gain_km2)
    assert float(wuhan.gain_error_km2) == pytest.approx(float(wuhan.gain_km2 - wuhan.reference_gain_km2))
    assert abs(float(wuhan.gain_error_km2)) <= float(wuhan.gain_error_bound_km2) + 1e-12
    assert float(wuhan.omission_km2) > 0 and float(wuhan.commission_km2) == 0

    rows = st.read_statistics_csv(two_cities / st.STATISTICS_CSV)
    assert [(r["city"], r["year"]) for r in rows] == [("lagos", 2021), ("wuhan", 2019), ("wuhan", 2021)]
    for row in rows:
        sel = opened.sel(city=row["city"], year=row["year"])
        for name in ("impervious_km2", "fraction_of_aoi", "gain_km2", "net_km2", "reference_gain_km2"):
            expected = float(sel[name])
            assert (math.isnan(row[name]) and math.isnan(expected)) or row[name] == pytest.approx(expected, abs=2e-6)


def test_a_cloudier_year_is_compared_on_the_pixels_valid_in_both(tmp_path: Path) -> None:
    """No change on the ground, more cloud in 2021: the area drops, the common-pixel figures do not move."""
    rng = np.random.default_rng(1)
    ground = (rng.random((40, 40)) < 0.4).astype("uint8")
    cloudy = ground.copy()
    cloudy[5:25, 5:25] = 255
    _city(tmp_path, "wuhan", {2020: ground, 2021: cloudy})
    row = st.update_statistics(tmp_path).sel(city="wuhan", year=2021)
    first = st.load_record(tmp_path, "wuhan", 2020)
    area = st.pixel_area(UTM50N, from_origin(230_000.0, 3_390_000.0, 10.0, 10.0), ground.shape)
    clear = cloudy != 255
    assert float(row.impervious_km2) < first.impervious_km2  # the cloud hides impervious pixels
    assert float(row.common_valid_km2) == pytest.approx(area[clear].sum() / 1e6, rel=1e-9)
    assert float(row.impervious_common_km2) == pytest.approx(area[clear & (ground == 1)].sum() / 1e6, rel=1e-9)
    assert float(row.previous_impervious_common_km2) == pytest.approx(float(row.impervious_common_km2), rel=1e-12)
    assert float(row.net_km2) == 0.0 and float(row.gain_km2) == 0.0
    assert math.isnan(first.common_valid_km2), "the first year has nothing to compare with"


def test_records_of_an_older_schema_are_recomputed(two_cities: Path) -> None:
    """A record written by an older crofuse (no schema_version, fields missing) is recomputed, not patched."""
    st.update_statistics(two_cities)
    path = two_cities / "wuhan/2021" / st.RECORD_NAME
    old = json.loads(path.read_text())
    for name in ("schema_version", "common_valid_km2", "impervious_common_km2", "previous_impervious_common_km2"):
        del old[name]
    path.write_text(json.dumps(old))
    assert st.load_record(two_cities, "wuhan", 2021).schema_version == 1
    row = st.update_statistics(two_cities, cities=["wuhan"]).sel(city="wuhan", year=2021)
    assert float(row.impervious_common_km2) - float(row.previous_impervious_common_km2) == pytest.approx(
        float(row.net_km2), abs=1e-12
    )
    assert json.loads(path.read_text())["schema_version"] == st.SCHEMA_VERSION


def test_a_record_of_this_schema_is_reused_until_an_input_changes(two_cities: Path) -> None:
    st.update_statistics(two_cities)
    record = two_cities / "wuhan/2021" / st.RECORD_NAME
    before = record.stat().st_mtime_ns
    st.update_statistics(two_cities)
    assert record.stat().st_mtime_ns == before
    ref = two_cities / "wuhan/2019" / st.REFERENCE_NAME  # the previous year's labels are an input of 2021's change
    os.utime(ref, ns=(ref.stat().st_atime_ns, ref.stat().st_mtime_ns + 10**9))
    st.update_statistics(two_cities)
    assert record.stat().st_mtime_ns > before


def test_update_is_idempotent_and_follows_new_years(two_cities: Path) -> None:
    st.update_statistics(two_cities)
    change = two_cities / "wuhan/2021/change.tif"
    record = two_cities / "wuhan/2021/statistics.json"
    mtimes = (change.stat().st_mtime_ns, record.stat().st_mtime_ns)
    csv_before = (two_cities / st.STATISTICS_CSV).read_text()
    st.update_statistics(two_cities)
    assert (change.stat().st_mtime_ns, record.stat().st_mtime_ns) == mtimes  # nothing recomputed
    assert (two_cities / st.STATISTICS_CSV).read_text() == csv_before
    assert not list(two_cities.glob(".statistics.*"))  # no temporary leftovers

    # a new year in between becomes the previous year of 2021
    mid = st.read_map(two_cities / "wuhan/2019/impervious.tif").values.copy()
    mid[10:15, 10:30] = 1
    _write_map(two_cities / "wuhan/2020/impervious.tif", mid)
    ds = st.update_statistics(two_cities)
    assert int(ds.previous_year.sel(city="wuhan", year=2021)) == 2020
    assert int(ds.previous_year.sel(city="wuhan", year=2020)) == 2019
    assert json.loads(record.read_text())["previous_year"] == 2020


def _update_many(output: str, n: int) -> None:
    for _ in range(n):
        st.update_statistics(Path(output))


def test_concurrent_updates_neither_fail_nor_lose_rows(two_cities: Path) -> None:
    """Several processes rewriting the tables at once: none fails and no row is lost. (Races here are rare even
    without the lock; `test_a_table_update_waits_for_the_lock` is the test that the lock works.)"""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_update_many, args=(str(two_cities), 5)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0], "an update failed while others ran"
    rows = st.read_statistics_csv(two_cities / st.STATISTICS_CSV)
    assert [(r["city"], r["year"]) for r in rows] == [("lagos", 2021), ("wuhan", 2019), ("wuhan", 2021)]
    opened = xr.open_zarr(two_cities / st.STATISTICS_ZARR)
    assert int(opened["mapped"].sum()) == 3
    assert not list(two_cities.glob(".statistics.*")), "no temporary leftovers"


def test_a_table_update_waits_for_the_lock(two_cities: Path) -> None:
    """While one writer holds the statistics lock, another process's update blocks, then completes."""
    import multiprocessing as mp
    import time

    ctx = mp.get_context("fork")
    with st.statistics_lock(two_cities):
        proc = ctx.Process(target=_update_many, args=(str(two_cities), 1))
        proc.start()
        time.sleep(2.0)
        assert proc.is_alive() and not (two_cities / st.STATISTICS_CSV).exists(), "the update did not wait"
    proc.join(60)
    assert proc.exitcode == 0 and (two_cities / st.STATISTICS_CSV).exists()


def test_aoi_geojson_restricts_the_figures(two_cities: Path) -> None:
    ds = st.update_statistics(two_cities)
    full = float(ds.aoi_km2.sel(city="lagos", year=2021))
    lagos = st.read_map(two_cities / "lagos/2021/impervious.tif")
    to_ll = pyproj.Transformer.from_crs(UTM50N, "EPSG:4326", always_xy=True)
    x = lagos.x.values
    y = lagos.y.values
    # the left half of the grid
    corners = [(x[0] - 5, y[0] + 5), (x[15] + 5, y[0] + 5), (x[15] + 5, y[-1] - 5), (x[0] - 5, y[-1] - 5)]
    ring = [list(to_ll.transform(cx, cy)) for cx, cy in corners]
    aoi = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    path = two_cities / "lagos/2021" / st.AOI_NAME
    path.write_text(json.dumps(aoi))
    os.utime(path, (path.stat().st_atime + 5, path.stat().st_mtime + 5))
    ds = st.update_statistics(two_cities)
    assert float(ds.aoi_km2.sel(city="lagos", year=2021)) == pytest.approx(full / 2, rel=1e-3)


def test_quicklooks_are_written(two_cities: Path) -> None:
    from PIL import Image

    from crofuse.quicklooks import change_plot, city_year_quicklook

    st.update_statistics(two_cities)
    look = city_year_quicklook(two_cities, "wuhan", 2021)  # no cube here: the input panels stay blank
    plot = change_plot(two_cities)
    assert look == two_cities / "wuhan/2021/quicklook.png" and plot == two_cities / "change.png"
    with Image.open(look) as img:
        assert img.size == (1000, 1000)
        pixels = np.asarray(img.convert("RGB"))
    assert (np.abs(pixels.astype(int) - [204, 25, 25]).sum(axis=-1) < 10).any()  # impervious red is drawn
    with Image.open(plot) as img:
        assert img.size == (1200, 450)


def test_quicklook_shows_probability_and_uncertainty_when_written(two_cities: Path) -> None:
    """With probability.tif and uncertainty.tif the quicklook gains a third row (1000x1500 px) drawn from them: a
    probability of 100 % shows viridis' yellow, an uncertainty of 100 % magma's pale yellow; without them, 2 rows."""
    from matplotlib import colormaps
    from PIL import Image

    from crofuse.quicklooks import city_year_quicklook

    folder = two_cities / "wuhan/2021"
    shape = st.read_map(folder / st.MAP_NAME).shape
    _write_map(folder / "probability.tif", np.full(shape, 100, "uint8"))
    _write_map(folder / "uncertainty.tif", np.full(shape, 100, "uint8"))
    look = city_year_quicklook(two_cities, "wuhan", 2021)
    with Image.open(look) as img:
        assert img.size == (1000, 1500)
        pixels = np.asarray(img.convert("RGB")).astype(int)
    for cmap in ("viridis", "magma"):
        top = np.array(colormaps[cmap](1.0)[:3]) * 255
        assert (np.abs(pixels[1000:] - top).sum(axis=-1) < 12).sum() > 1000, cmap
    (folder / "probability.tif").unlink()
    (folder / "uncertainty.tif").unlink()
    with Image.open(city_year_quicklook(two_cities, "wuhan", 2021)) as img:
        assert img.size == (1000, 1000)


def test_a_quicklook_is_redrawn_when_its_change_map_is_rewritten(two_cities: Path) -> None:
    import os

    from crofuse.quicklooks import city_year_quicklook, refresh_stale_quicklooks

    st.update_statistics(two_cities)
    look = city_year_quicklook(two_cities, "wuhan", 2021)
    assert refresh_stale_quicklooks(two_cities, "wuhan") == [], "fresh pictures are left alone"
    old = look.stat().st_mtime_ns - 10**9
    os.utime(look, ns=(old, old))
    # an earlier year mapped after 2021: 2021's change map is rewritten against it
    mid = st.read_map(two_cities / "wuhan/2019/impervious.tif").values.copy()
    mid[10:15, 10:30] = 1
    _write_map(two_cities / "wuhan/2020/impervious.tif", mid)
    st.update_statistics(two_cities)
    assert (two_cities / "wuhan/2021/change.tif").stat().st_mtime_ns > old
    assert refresh_stale_quicklooks(two_cities, "wuhan") == [look]
    assert look.stat().st_mtime_ns > old


# --------------------------------------------------------------------------------------------------------------------
# The AOI mask: the cube's in_aoi, for every figure
# --------------------------------------------------------------------------------------------------------------------
def _write_cube(folder: Path, in_aoi: np.ndarray, *, x0: float = 230_000.0, y0: float = 3_390_000.0) -> Path:
    """A minimal finished cube (the contract's variables, tiny values) holding ``in_aoi`` on the map grid."""
    from crofuse.cube.store import COMPLETE_ATTR

    h, w = in_aoi.shape
    ds = xr.Dataset(
        {
            "optical": (("band", "y", "x"), np.zeros((4, h, w), "float32")),
            "sar": (("sar_band", "y", "x"), np.zeros((2, h, w), "float32")),
            "valid": (("y", "x"), np.ones((h, w), bool)),
            "optical_count": (("y", "x"), np.ones((h, w), "uint16")),
            "sar_count": (("y", "x"), np.ones((h, w), "uint16")),
            "in_aoi": (("y", "x"), in_aoi),
        },
        coords={"y": y0 - 5 - 10 * np.arange(h), "x": x0 + 5 + 10 * np.arange(w)},
        attrs={COMPLETE_ATTR: True},
    ).rio.write_crs(UTM50N)
    path = folder / "inputs.zarr"
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return path


def test_the_cubes_in_aoi_restricts_every_figure_even_the_disagreement(two_cities: Path) -> None:
    """The mask is the cube's in_aoi (not aoi.geojson), applied to area, change, reference and disagreement."""
    full = st.update_statistics(two_cities).sel(city="wuhan", year=2021)
    top = np.zeros((64, 48), bool)
    top[:32] = True  # the fixture's map errors (missed growth in rows 50-51) lie outside it
    for year in (2019, 2021):
        _write_cube(two_cities / "wuhan" / str(year), top)
    # an aoi.geojson that says otherwise (the whole grid) is ignored where there is a cube
    bounds = {"type": "Polygon", "coordinates": [[[100, 20], [130, 20], [130, 40], [100, 40], [100, 20]]]}
    (two_cities / "wuhan/2021" / st.AOI_NAME).write_text(json.dumps(bounds))
    row = st.update_statistics(two_cities).sel(city="wuhan", year=2021)
    a0 = st.read_map(two_cities / "wuhan/2019/impervious.tif")
    area = st.pixel_area(UTM50N, a0.rio.transform(), a0.shape)
    assert float(row.aoi_km2) == pytest.approx(area[top].sum() / 1e6, rel=1e-9)
    assert float(row.aoi_km2) < float(full.aoi_km2)
    assert float(full.omission_km2) > 0, "the fixture's map misses growth outside the mask"
    assert float(row.omission_km2) == 0.0 and float(row.gain_error_bound_km2) == 0.0
    assert float(row.reference_gain_km2) == pytest.approx(float(row.gain_km2), rel=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# Reliability: one city cannot break another; the lock says who holds it and gives up
# --------------------------------------------------------------------------------------------------------------------
def test_updating_one_city_repairs_another_city_without_statistics(two_cities: Path, caplog) -> None:
    st.update_statistics(two_cities)
    (two_cities / "lagos/2021" / st.RECORD_NAME).unlink()  # "map but no statistics"
    with caplog.at_level("WARNING", logger="crofuse.statistics"):
        ds = st.update_statistics(two_cities, cities=["wuhan"])
    assert bool(ds.mapped.sel(city="lagos", year=2021))
    assert (two_cities / "lagos/2021" / st.RECORD_NAME).exists(), "lagos 2021 was repaired"
    assert "lagos 2021" in caplog.text


def test_updating_one_city_skips_another_city_that_cannot_be_repaired(two_cities: Path, caplog) -> None:
    st.update_statistics(two_cities)
    (two_cities / "lagos/2021" / st.RECORD_NAME).unlink()
    (two_cities / "lagos/2021" / st.MAP_NAME).write_bytes(b"not a tiff")  # a corrupt map
    with caplog.at_level("WARNING", logger="crofuse.statistics"):
        ds = st.update_statistics(two_cities, cities=["wuhan"])
    assert list(ds.city.values) == ["wuhan"] and int(ds.mapped.sum()) == 2
    assert "lagos 2021" in caplog.text and "left out" in caplog.text
    with pytest.raises(DataError, match="not a readable GeoTIFF"):  # updating lagos itself shows its own error
        st.update_statistics(two_cities, cities=["lagos"])


def test_a_held_lock_is_logged_with_its_holder_and_times_out(two_cities: Path, caplog) -> None:
    """The lock is a lease (a conditional write), so a second writer in this process waits like another process."""
    with st.statistics_lock(two_cities):
        with caplog.at_level("WARNING", logger="crofuse.statistics"):
            with pytest.raises(st.StatisticsLockTimeout, match=rf"pid {os.getpid()} on .* since "):
                st.update_statistics(two_cities, lock_timeout=0.6)
    assert "waiting for the statistics lock" in caplog.text and str(os.getpid()) in caplog.text
    assert not (two_cities / st.STATISTICS_CSV).exists(), "nothing was written without the lock"
    st.update_statistics(two_cities, lock_timeout=0.6)  # released: the next update goes through at once
    assert not (two_cities / st.LOCK_NAME).exists(), "the holder's lease is deleted on release"


# --------------------------------------------------------------------------------------------------------------------
# COGs: validated before they are visible, no temporary files next to the outputs
# --------------------------------------------------------------------------------------------------------------------
def test_a_cog_that_fails_validation_is_never_published(tmp_path: Path, monkeypatch) -> None:
    import rio_cogeo.cogeo

    from crofuse.errors import DataError as Error

    path = tmp_path / "wuhan/2021" / st.MAP_NAME
    _write_map(path, np.zeros((20, 20), "uint8"))
    before = path.read_bytes()
    monkeypatch.setattr(rio_cogeo.cogeo, "cog_validate", lambda *a, **k: (False, ["broken on purpose"], []))
    with pytest.raises(Error, match="broken on purpose"):
        _write_map(path, np.ones((20, 20), "uint8"))
    assert path.read_bytes() == before, "the old file is untouched"
    assert sorted(p.name for p in path.parent.iterdir()) == [st.MAP_NAME], "no temporary file in the output folder"


def test_the_three_cog_writers_are_one(tmp_path: Path) -> None:
    """tiling's, the sample catalog's and the statistics' COGs all come from crofuse.io.cog, validated."""
    import inspect

    import rasterio
    from odc.geo.geobox import GeoBox
    from rio_cogeo.cogeo import cog_validate

    import crofuse.synthetic.cog as synthetic_cog
    import tiling.cog as tiling_cog

    assert "crofuse.io.cog" in inspect.getsource(tiling_cog) and "crofuse.io" in inspect.getsource(synthetic_cog)
    gbox = GeoBox.from_bbox((230_000, 3_380_000, 236_000, 3_386_000), "EPSG:32650", resolution=10)
    data = np.arange(600 * 600, dtype="uint16").reshape(600, 600)
    out = synthetic_cog.write_cog(tmp_path / "b02.tif", data, gbox, nodata=0, band_names=("B02",))
    assert cog_validate(out, quiet=True)[0]
    with rasterio.open(out) as src:
        assert src.descriptions == ("B02",) and src.overviews(1) and (src.read(1) == data).all()
        assert src.compression.name.lower() == "zstd"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b02.tif"]


# --------------------------------------------------------------------------------------------------------------------
# Stratified estimates in the tables
# --------------------------------------------------------------------------------------------------------------------
def test_estimates_from_the_reference_rasters_fill_the_tables(two_cities: Path) -> None:
    """With reference.tif for both years, a sample is drawn, labelled from them and estimated; the table's figures
    are what the estimator gives on the written labels."""
    from crofuse.statistics import sample as smp
    from crofuse.statistics.estimation import stratified_combination

    ds = st.update_statistics(two_cities)
    row = ds.sel(city="wuhan", year=2021)
    assert str(row.estimate_source.item()).startswith("reference rasters")
    folder = two_cities / "wuhan/2021" / smp.SAMPLE_DIR
    design = smp.read_design(folder)
    assert design.previous_year == 2019 and design.classes == smp.CHANGE_CLASSES
    with open(folder / "reference-labels.csv") as fh:
        labels = {r["point_id"]: r["reference"] for r in csv.DictReader(fh)}
    ref = [smp.CHANGE_CLASSES.index(labels[p]) for p in design.point_ids if labels[p]]
    strata = [int(s) for p, s in zip(design.point_ids, design.stratum) if labels[p]]
    counts = np.zeros((len(design.strata), 4), int)  # strata: the four classes and the buffer
    np.add.at(counts, (strata, ref), 1)
    gain, se = stratified_combination(counts, design.stratum_area_km2, [0, 0, 1, 0])
    assert float(row.estimated_gain_km2) == pytest.approx(gain, rel=1e-12)
    assert float(row.estimated_gain_ci95_km2) == pytest.approx(1.96 * se, rel=1e-12)
    assert float(row.sample_points) == len(ref)
    assert 0 < float(row.overall_accuracy) <= 1 and 0 <= float(row.user_accuracy_gain) <= 1
    first = ds.sel(city="wuhan", year=2019)  # a first year: stratified by the map, impervious area estimated
    assert np.isfinite(float(first.estimated_impervious_km2)) and np.isnan(float(first.estimated_gain_km2))
    assert np.isnan(float(ds.sel(city="lagos", year=2021).estimated_impervious_km2)), "lagos has no labels"
    rows = {(r["city"], r["year"]): r for r in st.read_statistics_csv(two_cities / st.STATISTICS_CSV)}
    assert rows[("wuhan", 2021)]["estimated_gain_km2"] == pytest.approx(gain, abs=2e-6)
    assert rows[("wuhan", 2021)]["estimate_source"].startswith("reference rasters")
    # a rerun reuses the design (same points) and rewrites nothing
    mtime = (folder / smp.DESIGN_NAME).stat().st_mtime_ns
    st.update_statistics(two_cities)
    assert (folder / smp.DESIGN_NAME).stat().st_mtime_ns == mtime


def test_a_persons_labelled_sample_comes_first(two_cities: Path) -> None:
    """labelled.csv (a person's labels) is used instead of the reference rasters. Labels equal to the strata (a
    perfect map) give the mapped areas back, user's and overall accuracy 1."""
    from crofuse.statistics import sample as smp

    st.update_statistics(two_cities)
    folder = two_cities / "wuhan/2021" / smp.SAMPLE_DIR
    with open(folder / smp.SAMPLE_CSV) as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["reference"] = r["map_class"].replace("_", " ").upper()  # case and spaces do not matter
    with open(folder / "labelled.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    row = st.update_statistics(two_cities).sel(city="wuhan", year=2021)
    design = smp.read_design(folder)
    assert row.estimate_source.item() == "labelled sample (labelled.csv)"
    assert float(row.estimated_gain_km2) == pytest.approx(design.stratum_area_km2[2], rel=1e-12)
    assert float(row.estimated_gain_se_km2) == 0.0
    assert float(row.overall_accuracy) == pytest.approx(1.0) and float(row.user_accuracy_gain) == 1.0


def test_a_bad_labelled_sample_does_not_fail_the_update(two_cities: Path, caplog) -> None:
    from crofuse.statistics import sample as smp

    st.update_statistics(two_cities)
    folder = two_cities / "wuhan/2021" / smp.SAMPLE_DIR
    text = (folder / smp.SAMPLE_CSV).read_text().replace(",\n", ",forest\n")
    (folder / "labelled.csv").write_text(text)
    with caplog.at_level("WARNING", logger="crofuse.statistics"):
        row = st.update_statistics(two_cities).sel(city="wuhan", year=2021)
    assert "unknown reference labels" in str(row.estimate_source.item()) and "forest" in caplog.text
    assert np.isnan(float(row.estimated_gain_km2)) and np.isfinite(float(row.gain_km2))


def test_the_change_plot_draws_the_confidence_intervals(two_cities: Path) -> None:
    from crofuse.quicklooks import change_figure

    ds = st.update_statistics(two_cities)
    fig = change_figure(ds)
    ax_net = fig.axes[1]
    bars = [c for c in ax_net.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 1  # wuhan 2021 has an estimate of net change
    segments = bars[0].lines[2][0].get_segments()
    (low, high) = segments[0][:, 1]
    row = ds.sel(city="wuhan", year=2021)
    est, ci = float(row.estimated_net_km2), float(row.estimated_net_ci95_km2)
    assert (low, high) == pytest.approx((est - ci, est + ci), rel=1e-9)
