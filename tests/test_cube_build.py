"""Input cubes built from the served sample catalog (``stac_api``): values against the generator's truth and against
an independent rasterio+numpy reference, cloud masking, the baseline offset, dB, CRS round trip, both loaders,
idempotent and crash-safe writes, and the CLI."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crofuse.cube import CubeConfig, build_cube, cube_path, open_cube
from crofuse.errors import CubeError
from tests.fixtures.cube import catalog_items, inner_bbox, reference_optical, reference_sar, window_of

pytestmark = pytest.mark.timeout(600)


def _config(stac_api: str, out: Path, year: int, **kw) -> CubeConfig:
    from crofuse.synthetic import WUHAN

    from tests.fixtures.catalog import SMALL_CATALOG

    return CubeConfig(
        **({"city": "Wuhan", "year": year, "aoi": inner_bbox(WUHAN, SMALL_CATALOG.size_km, margin=0.25),
            "catalog": stac_api, "output": out, "chunk_size": 64} | kw)
    )


@pytest.fixture(scope="module")
def cubes(stac_api: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Cubes of 2021 (baseline 03.01) and 2022 (baseline 04.00) with odc-stac, and 2022 with stackstac."""
    out = tmp_path_factory.mktemp("cubes")
    return {
        "2021": build_cube(_config(stac_api, out / "odc", 2021), progress=False),
        "2022": build_cube(_config(stac_api, out / "odc", 2022), progress=False),
        "2022-stackstac": build_cube(_config(stac_api, out / "stackstac", 2022, loader="stackstac"), progress=False),
    }


@pytest.fixture(scope="module")
def truths():
    from crofuse.synthetic import ground_truth

    from tests.fixtures.catalog import SMALL_CATALOG

    return {y: ground_truth(SMALL_CATALOG, "wuhan", y) for y in (2021, 2022)}


def _expected_reflectance(truth) -> np.ndarray:
    """What a clear-sky composite estimates: the truth plus the city's persistent atmospheric bias (generator v2,
    ``crofuse.synthetic.optical.surface_bias``; zero in v1)."""
    from crofuse.synthetic.optical import surface_bias

    from tests.fixtures.catalog import SMALL_CATALOG

    d = SMALL_CATALOG.difficulty if SMALL_CATALOG.generator >= 2 else None
    return truth.reflectance + surface_bias(truth.city, seed=SMALL_CATALOG.seed, difficulty=d)[:, None, None]


# --------------------------------------------------------------------------------------------- layout/contract
def test_cube_follows_the_contract(cubes):
    path = cubes["2022"]
    assert path.parts[-3:] == ("wuhan", "2022", "inputs.zarr")
    ds = open_cube(path)
    assert ds["optical"].dims == ("band", "y", "x") and list(ds["band"].values) == ["B02", "B03", "B04", "B08"]
    assert ds["sar"].dims == ("sar_band", "y", "x") and list(ds["sar_band"].values) == ["VV", "VH"]
    assert ds["optical"].dtype == np.float32 and ds["sar"].dtype == np.float32 and ds["valid"].dtype == bool
    assert ds["optical"].chunks[1][0] == 64 and ds["optical"].chunks[0] == (4,)
    for key in ("city", "year", "catalog", "optical_items", "sar_items", "crofuse_version", "season", "crs"):
        assert key in ds.attrs, key
    assert ds.attrs["city"] == "wuhan" and ds.attrs["year"] == 2022 and ds.attrs["season"] == "2022-06-01/2022-06-30"
    assert ds.attrs["crs"] == "EPSG:32650" and ds.attrs["valid_fraction"] > 0.9
    assert all(i.endswith("_wuhan") for i in ds.attrs["optical_items"]) and len(ds.attrs["sar_items"]) >= 3


def test_crs_and_transform_round_trip_into_rioxarray(cubes, tmp_path: Path):
    import rasterio
    import rioxarray  # noqa: F401
    import xarray as xr

    ds = open_cube(cubes["2022"])
    assert ds.rio.crs.to_epsg() == 32650
    t = ds.rio.transform()
    assert (t.a, t.e) == (10.0, -10.0) and t.c % 10 == 0 and t.f % 10 == 0
    assert float(ds.x[0]) == t.c + 5 and float(ds.y[0]) == t.f - 5  # pixel centres
    raw = xr.open_zarr(cubes["2022"], consolidated=False, decode_coords="all")  # plain xarray, no crofuse
    assert raw.rio.crs == ds.rio.crs and raw.rio.transform() == t
    tif = tmp_path / "b04.tif"
    ds["optical"].sel(band="B04").rio.to_raster(tif)
    with rasterio.open(tif) as src:
        assert src.crs.to_epsg() == 32650 and src.transform == t


# ------------------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("year", [2021, 2022])
def test_optical_equals_independent_reference_composite(cubes, sample_catalog, year):
    ds = open_cube(cubes[str(year)]).load()
    every = catalog_items(sample_catalog, "sentinel-2-l2a", city="wuhan", year=year)
    items = [d for d in every if d["properties"]["eo:cloud_cover"] <= 80]
    assert [d["id"] for d in items] == ds.attrs["optical_items"]
    assert ds.attrs["optical_items_too_cloudy"] == [d["id"] for d in every if d not in items]
    med, count, transform = reference_optical(items)
    rows, cols = window_of(ds, transform)
    assert rows.start >= 0 and cols.start >= 0, "the cube lies inside the simulated square"
    np.testing.assert_array_equal(ds["optical_count"].values, count[rows, cols])
    np.testing.assert_allclose(ds["optical"].values, med[:, rows, cols], rtol=0, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("year", [2021, 2022])
def test_optical_matches_true_reflectance_and_offset_follows_baseline(cubes, truths, sample_catalog, year):
    ds = open_cube(cubes[str(year)]).load()
    truth = truths[year]
    rows, cols = window_of(ds, truth.geobox.affine)
    ref = _expected_reflectance(truth)[:, rows, cols]
    ok = ds["optical_count"].values > 0
    err = ds["optical"].values[:, ok] - ref[:, ok]
    baselines = {d["properties"]["s2:processing_baseline"] for d in catalog_items(sample_catalog, "sentinel-2-l2a",
                                                                                 city="wuhan", year=year)}
    assert baselines == ({"03.01"} if year == 2021 else {"04.00"})
    # per-pass gain/offset (~2 %), residual sub-threshold haze: small; a missed 1000 DN offset would be +0.1
    assert abs(float(np.median(err))) < 0.005
    assert float(np.percentile(np.abs(err), 90)) < 0.03


def test_clouds_and_shadows_are_masked(stac_api, sample_catalog, truths, tmp_path: Path):
    """With every scene kept (max_cloud_cover=100), pixels cloudy in half the passes or more still show the ground;
    an unmasked median of the same scenes shows the clouds."""
    ds = open_cube(build_cube(_config(stac_api, tmp_path, 2022, max_cloud_cover=100), progress=False)).load()
    items = [d for d in catalog_items(sample_catalog, "sentinel-2-l2a", city="wuhan", year=2022)
             if d["id"] in ds.attrs["optical_items"]]
    assert len(items) == len(catalog_items(sample_catalog, "sentinel-2-l2a", city="wuhan", year=2022))
    assert max(d["properties"]["eo:cloud_cover"] for d in items) > 80, "the sample season should have clouds"
    unmasked, _, transform = reference_optical(items, scl_mask=(0,))
    rows, cols = window_of(ds, transform)
    assert rows.start >= 0 and cols.start >= 0, "the cube lies inside the simulated square"
    count = ds["optical_count"].values
    cloudy_often = (count > 0) & (count * 2 <= len(items))
    assert cloudy_often.sum() > 1000
    ref = _expected_reflectance(truths[2022])[:, rows, cols]  # what a clear-sky composite estimates
    cube_err = float(np.abs(ds["optical"].values - ref)[:, cloudy_often].mean())
    ground = truths[2022].reflectance[:, rows, cols]  # the unmasked median shows clouds, not the ground
    naive_err = float(np.abs(unmasked[:, rows, cols] - ground)[:, cloudy_often].mean())
    assert cube_err < 0.01 and naive_err > 0.1, (cube_err, naive_err)


def test_sar_is_db_of_mean_linear_power(cubes, sample_catalog, truths):
    ds = open_cube(cubes["2022"]).load()
    items = catalog_items(sample_catalog, "sentinel-1-rtc", city="wuhan", year=2022)
    assert [d["id"] for d in items] == ds.attrs["sar_items"]
    db, count, transform = reference_sar(items)
    rows, cols = window_of(ds, transform)
    assert rows.start >= 0 and cols.start >= 0, "the cube lies inside the simulated square"
    np.testing.assert_array_equal(ds["sar_count"].values, count[rows, cols])
    np.testing.assert_allclose(ds["sar"].values, db[:, rows, cols], rtol=0, atol=1e-4)
    # against the speckle-free truth: mean over passes of each orbit's gamma0, then dB
    truth = truths[2022]
    orbits = [d["properties"]["sat:orbit_state"] for d in items]
    expected = 10 * np.log10(np.mean([truth.backscatter[o][:, rows, cols] for o in orbits], axis=0))
    err = ds["sar"].values - expected
    looks = 4.5 * len(items)
    assert abs(float(np.median(err))) < 0.25  # the mean of Gamma speckle is unbiased in linear power
    assert float(np.std(err)) < 2.0 * 10 / np.log(10) / np.sqrt(looks)
    averaged_in_db = 10 * np.log10(np.stack([_lin(d) for d in items])[:, :, rows, cols]).mean(0)
    assert float(np.median(averaged_in_db - expected)) < -0.3  # averaging dB would be biased low; we do not


def _lin(item: dict) -> np.ndarray:
    import rasterio

    out = []
    for pol in ("vv", "vh"):
        with rasterio.open(item["assets"][pol]["href"]) as src:
            out.append(src.read(1))
    return np.stack(out)


def test_valid_mask_is_both_modalities(cubes):
    ds = open_cube(cubes["2022"]).load()
    both = (ds["optical_count"] > 0) & (ds["sar_count"] > 0)
    np.testing.assert_array_equal(ds["valid"].values, both.values)
    no_optical = ds["optical_count"].values == 0
    assert np.isnan(ds["optical"].values[:, no_optical]).all()
    assert np.isfinite(ds["optical"].values[:, ~no_optical]).all()
    assert np.isfinite(ds["sar"].values[:, ds["sar_count"].values > 0]).all()


def test_stackstac_and_odc_stac_agree(cubes):
    a = open_cube(cubes["2022"]).load()
    b = open_cube(cubes["2022-stackstac"]).load()
    assert a.attrs["loader"] == "odc-stac" and b.attrs["loader"] == "stackstac"
    for name in ("optical", "sar", "valid", "optical_count", "sar_count"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    np.testing.assert_array_equal(a.x.values, b.x.values)
    np.testing.assert_array_equal(a.y.values, b.y.values)


# ----------------------------------------------------------------------------------------- idempotent, crashes
def test_rebuild_is_idempotent_and_force_rewrites(stac_api, tmp_path: Path):
    cfg = _config(stac_api, tmp_path, 2022, aoi=(114.296, 30.586, 114.302, 30.592))
    path = build_cube(cfg, progress=False)
    stamp = (path / "zarr.json").stat().st_mtime_ns
    first = open_cube(path).load()
    assert build_cube(cfg, progress=False) == path
    assert (path / "zarr.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    build_cube(cfg, progress=False, force=True)
    assert (path / "zarr.json").stat().st_mtime_ns != stamp
    again = open_cube(path).load()
    for name in ("optical", "sar", "valid"):
        np.testing.assert_array_equal(first[name].values, again[name].values)
    assert not list(path.parent.glob(".inputs.zarr.*"))


def test_killed_build_leaves_nothing_that_looks_complete(stac_api, tmp_path: Path):
    """SIGKILL a real build while it writes chunks: no inputs.zarr appears, open_cube says why, a rerun recovers."""
    from crofuse.synthetic import WUHAN

    from tests.fixtures.catalog import SMALL_CATALOG

    aoi = inner_bbox(WUHAN, SMALL_CATALOG.size_km, margin=0.05)
    script = (
        "from crofuse.cube import CubeConfig, build_cube\n"
        f"build_cube(CubeConfig(city='wuhan', year=2022, aoi={aoi!r}, catalog={stac_api!r}, output={str(tmp_path)!r},"
        " chunk_size=64), progress=False)\n"
    )
    path = cube_path(tmp_path, "wuhan", 2022)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(path.parent.glob(".inputs.zarr.tmp-*/zarr.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the build ended before it was killed"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert list(path.parent.glob(".inputs.zarr.tmp-*")) and not path.exists()
    with pytest.raises(CubeError, match="interrupted build"):
        open_cube(path)
    build_cube(_config(stac_api, tmp_path, 2022, aoi=aoi), progress=False)
    assert open_cube(path).attrs["crofuse_complete"] is True
    assert not list(path.parent.glob(".inputs.zarr.tmp-*"))


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_builds_a_cube_and_reports_errors(stac_api, tmp_path: Path):
    from typer.testing import CliRunner

    from crofuse_cli import app

    runner = CliRunner()
    bbox = ["114.296", "30.586", "114.302", "30.592"]
    res = runner.invoke(app, ["cube", "Wuhan", "--year", "2022", "--catalog", stac_api, "--out", str(tmp_path),
                              "--bbox", *bbox, "--chunk-size", "64", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert str(cube_path(tmp_path, "wuhan", 2022)) in res.output and "valid" in res.output
    res = runner.invoke(app, ["cube", "Wuhan", "--year", "2022", "--catalog", stac_api, "--out", str(tmp_path),
                              "--bbox", "30.586", "114.296", "30.592", "114.302", "--no-progress"])
    assert res.exit_code == 1 and "swapped" in res.output
    res = runner.invoke(app, ["cube", "Wuhan", "--year", "2022", "--out", str(tmp_path), "--bbox", *bbox])
    assert res.exit_code == 2 and "no default catalog URL" in res.output


# ------------------------------------------------------------------------------------ dtypes, SAR gaps, UTM zones
@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_loaders_keep_native_dtypes_lazily(stac_api, tmp_path: Path, loader: str):
    """Sentinel-2 DN stay uint16 and SCL uint8, Sentinel-1 float32, as dask arrays, until compositing converts."""
    from crofuse.cube import target_geobox
    from crofuse.cube.loaders import load_assets
    from crofuse.cube.search import search_season

    cfg = _config(stac_api, tmp_path, 2022)
    items = search_season(cfg)
    gb = target_geobox(cfg.area)
    common = {"loader": loader, "chunk_size": 64}
    dn = load_assets(items.optical, ["B02", "B08"], gb, dtype="uint16", nodata=0, **common)
    scl = load_assets(items.optical, ["SCL"], gb, dtype="uint8", nodata=0, **common)
    sar = load_assets(items.sar, ["vv", "vh"], gb, dtype="float32", nodata=float("nan"), **common)
    assert (dn.dtype, scl.dtype, sar.dtype) == (np.dtype("uint16"), np.dtype("uint8"), np.dtype("float32"))
    assert all(a.chunks is not None for a in (dn, scl, sar)), "loaded lazily, chunk by chunk"
    assert dn.sizes["time"] == len(items.optical) and sar.sizes["time"] == len(items.sar)
    assert int(dn.max().compute()) > 1000  # DN, not reflectance


def _punch_nan(path: Path, rows: slice, cols: slice) -> None:
    import rasterio

    with rasterio.open(path) as src:
        profile, data = src.profile, src.read(1)
    data[rows, cols] = np.nan
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def test_partial_sar_coverage_is_nodata_and_not_valid(tmp_path_factory, tmp_path: Path):
    """A block no Sentinel-1 pass sees is NaN with count 0 and not valid; a block one pass misses keeps the others."""
    from crofuse.synthetic import WUHAN
    from tests.fixtures.cube import build_small_catalog, served_catalog

    root = build_small_catalog(tmp_path_factory.mktemp("sar-gaps"), size_km=1.0)
    sar_items = catalog_items(root, "sentinel-1-rtc", city="wuhan", year=2022)
    assert len(sar_items) >= 2
    unseen, once = (slice(10, 30), slice(10, 30)), (slice(60, 80), slice(60, 80))
    for i, item in enumerate(sar_items):
        for pol in ("vv", "vh"):
            _punch_nan(Path(item["assets"][pol]["href"]), *unseen)
            if i == 0:
                _punch_nan(Path(item["assets"][pol]["href"]), *once)
    with served_catalog(root) as url:
        cfg = CubeConfig(city="wuhan", year=2022, aoi=inner_bbox(WUHAN, 1.0, margin=0.05), catalog=url,
                         output=tmp_path, chunk_size=64, min_valid_fraction=0.0,
                         verify_checksums=False)  # the COGs were edited in place: file:checksum describes the old ones
        ds = open_cube(build_cube(cfg, progress=False)).load()
    import rasterio

    with rasterio.open(sar_items[0]["assets"]["vv"]["href"]) as src:
        rows, cols = window_of(ds, src.transform)
    assert rows.start >= 0 and cols.start >= 0, "the cube lies inside the simulated square"

    def on_cube(where: tuple[slice, slice], pad: int) -> tuple[slice, slice]:
        """A native-grid block on the cube grid, grown by ``pad`` pixels (shrunk when negative)."""
        r, c = where
        return (slice(r.start - rows.start - pad, r.stop - rows.start + pad),
                slice(c.start - cols.start - pad, c.stop - cols.start + pad))

    sar, count, valid = ds["sar"].values, ds["sar_count"].values, ds["valid"].values
    inner_unseen, inner_once = on_cube(unseen, -2), on_cube(once, -2)  # away from the PSF-blurred block edges
    assert np.isnan(sar[(..., *inner_unseen)]).all()
    assert (count[inner_unseen] == 0).all() and not valid[inner_unseen].any()
    assert (count[inner_once] == len(sar_items) - 1).all()
    assert np.isfinite(sar[(..., *inner_once)]).all()
    elsewhere = count.copy()
    elsewhere[on_cube(unseen, 3)] = elsewhere[on_cube(once, 3)] = len(sar_items)
    assert (elsewhere == len(sar_items)).all(), "the gaps stay where they are"


def test_aoi_across_two_utm_zones_is_built_in_one_recorded_crs(tmp_path_factory, tmp_path: Path):
    """A city on the 114 E meridian (UTM zones 49 | 50): one CRS, the zone of the AOI centroid, written to the cube."""
    import rioxarray  # noqa: F401

    from crofuse.synthetic import City
    from tests.fixtures.cube import build_small_catalog, served_catalog

    border = City("border", 114.002, 30.55, 32650)
    root = build_small_catalog(tmp_path_factory.mktemp("border"), cities=(border,), size_km=1.0)
    aoi = inner_bbox(border, 1.0, margin=0.2)
    assert aoi[0] < 114.0 < aoi[2]
    with served_catalog(root) as url:
        cfg = CubeConfig(city="border", year=2022, aoi=aoi, catalog=url, output=tmp_path, chunk_size=64)
        ds = open_cube(build_cube(cfg, progress=False))
        forced = open_cube(build_cube(dataclasses.replace(cfg, epsg=32649, output=tmp_path / "zone49"), progress=False))
    assert ds.attrs["aoi_utm_zones"] == [49, 50]
    assert ds.attrs["crs"] == "EPSG:32650" and "centroid" in ds.attrs["crs_choice"]
    assert ds.rio.crs.to_epsg() == 32650
    assert forced.rio.crs.to_epsg() == 32649 and forced.attrs["crs_choice"] == "EPSG:32649 given in the configuration"
    assert float(forced["valid"].mean()) > 0.5, "the other zone's grid is filled by reprojection"
