"""Bad input to the cube builder, each with its own error and message: empty searches, lat/lon swapped, a missing
modality, an all-cloud season, corrupt/unreachable COGs, unreachable catalogs, the wrong profile. Flaky and hung
catalogs (retries, deadline, signing) are in tests/reliability/test_catalog_faults.py."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crofuse.cube import CubeConfig, build_cube, open_cube
from crofuse.cube.search import Query, open_catalog, search_collection
from crofuse.errors import (
    AOIError,
    AssetReadError,
    CatalogError,
    EmptySearchError,
    InsufficientDataError,
    MissingModalityError,
)
from tests.fixtures.cube import build_small_catalog, catalog_items, inner_bbox, served_catalog

pytestmark = pytest.mark.timeout(600)

SMALL_AOI = (114.296, 30.586, 114.302, 30.592)  # ~0.6 km inside the session catalog's Wuhan square


def _cfg(url: str, out: Path, **kw) -> CubeConfig:
    return CubeConfig(**({"city": "wuhan", "year": 2022, "aoi": SMALL_AOI, "catalog": url, "output": out,
                          "chunk_size": 64} | kw))


# ------------------------------------------------------------------------------------------------ empty search
def test_empty_search_names_the_catalog_and_query(stac_api, tmp_path: Path):
    with pytest.raises(EmptySearchError) as info:
        build_cube(_cfg(stac_api, tmp_path, aoi=(10.0, 10.0, 10.01, 10.01)), progress=False)
    msg = str(info.value)
    assert stac_api in msg and "sentinel-2-l2a" in msg and "sentinel-1-rtc" in msg and "2022-06-01" in msg
    with pytest.raises(EmptySearchError, match="2023-06-01"):
        build_cube(_cfg(stac_api, tmp_path, year=2023), progress=False)
    assert not (tmp_path / "wuhan").exists() or not list((tmp_path / "wuhan").rglob("inputs.zarr"))


def test_lat_lon_swap_that_geometry_cannot_see_is_found_through_the_catalog(tmp_path_factory):
    """Berlin (13.4 E, 52.5 N): a bbox typed latitude-first is still a valid lon/lat box, in the Arctic sea near
    Svalbard; the catalog has nothing there but has items at the swapped box, and the error says so."""
    from crofuse.synthetic import City

    berlin = City("berlin", 13.40, 52.52, 32633)
    root = build_small_catalog(tmp_path_factory.mktemp("berlin"), cities=(berlin,), size_km=0.5)
    w, s, e, n = inner_bbox(berlin, 0.5)
    with served_catalog(root) as url:
        with pytest.raises(AOIError, match=r"latitude and longitude swapped.*--bbox 13\.397\d+ 52\.518\d+ 13\.40\d+ 52\.52\d+"):
            build_cube(_cfg(url, tmp_path_factory.mktemp("o"), city="berlin", aoi=(s, w, n, e)), progress=False)


# --------------------------------------------------------------------------------------------- missing modality
def test_season_with_optical_but_no_sar_fails_by_default(stac_api, tmp_path: Path):
    # 2022-06-19 has a clear Sentinel-2 pass; the Sentinel-1 passes are on the 14th and the 24th
    with pytest.raises(MissingModalityError, match="no Sentinel-1 items.*missing_modality='continue'"):
        build_cube(_cfg(stac_api, tmp_path, season="06-18/06-20"), progress=False)


def test_season_with_sar_but_no_optical_fails_by_default(stac_api, tmp_path: Path):
    with pytest.raises(MissingModalityError, match="no Sentinel-2 items"):
        build_cube(_cfg(stac_api, tmp_path, season="06-01/06-03"), progress=False)


def test_missing_modality_can_continue_as_nan_and_is_reported(stac_api, tmp_path: Path):
    cfg = _cfg(stac_api, tmp_path, season="06-18/06-20", missing_modality="continue", max_cloud_cover=100,
               min_valid_fraction=0.0)  # one Sentinel-2 pass: however cloudy, take what it shows
    ds = open_cube(build_cube(cfg, progress=False)).load()
    assert ds.attrs["missing_modalities"] == ["sar"] and ds.attrs["sar_items"] == []
    assert len(ds.attrs["optical_items"]) == 1
    assert np.isnan(ds["sar"].values).all() and int(ds["sar_count"].max()) == 0
    assert ds.attrs["sar_fraction"] == 0.0 and ds.attrs["optical_fraction"] > 0.0
    assert ds.attrs["valid_fraction"] == ds.attrs["optical_fraction"]
    np.testing.assert_array_equal(ds["valid"].values, ds["optical_count"].values > 0)


# ------------------------------------------------------------------------------------------------ all-cloud
@pytest.fixture(scope="module")
def overcast_api(tmp_path_factory) -> Iterator[str]:
    # cloud fraction = min(1, drawn fraction x cloud_scale): a huge scale makes every scene overcast
    root = build_small_catalog(tmp_path_factory.mktemp("overcast"), size_km=0.5, cloud_scale=1e6)
    with served_catalog(root) as url:
        yield url


def test_all_cloud_season_is_refused_with_the_cloud_figures(overcast_api, tmp_path: Path):
    from crofuse.synthetic import WUHAN

    aoi = inner_bbox(WUHAN, 0.5)
    with pytest.raises(InsufficientDataError, match=r"all \d+ Sentinel-2 scenes .* above max_cloud_cover=80%"):
        build_cube(_cfg(overcast_api, tmp_path, aoi=aoi), progress=False)
    with pytest.raises(InsufficientDataError, match=r"only \d+\.\d% of the AOI .* is valid \(clear optical: "):
        build_cube(_cfg(overcast_api, tmp_path, aoi=aoi, max_cloud_cover=100), progress=False)
    assert not (tmp_path / "wuhan" / "2022" / "inputs.zarr").exists()
    assert not list((tmp_path / "wuhan" / "2022").glob(".inputs.zarr.tmp-*"))  # the rejected write is removed
    # a lower threshold accepts it and the figure is kept in the cube
    ds = open_cube(build_cube(_cfg(overcast_api, tmp_path, aoi=aoi, max_cloud_cover=100, min_valid_fraction=0.0),
                              progress=False))
    assert ds.attrs["valid_fraction"] < 0.3 and ds.attrs["sar_fraction"] == 1.0
    ds = ds.load()
    cloudy = ds["optical_count"].values == 0
    assert cloudy.mean() > 0.7  # most pixels never clear ...
    assert np.isnan(ds["optical"].values[:, cloudy]).all()  # ... stay NaN, not cloud reflectance
    assert not ds["valid"].values[cloudy].any()
    assert np.isfinite(ds["optical"].values[:, ~cloudy]).all() and ds["valid"].values[~cloudy].all()


# ------------------------------------------------------------------------------------------- corrupt COGs
@pytest.fixture(scope="module")
def fragile(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A private 0.5 km catalog whose files the tests below damage and then restore."""
    root = build_small_catalog(tmp_path_factory.mktemp("fragile"), size_km=0.5)
    with served_catalog(root) as url:
        yield root, url


def _used_asset(root: Path, key: str) -> Path:
    items = [d for d in catalog_items(root, "sentinel-2-l2a", city="wuhan", year=2022)
             if d["properties"]["eo:cloud_cover"] <= 80]
    return Path(items[0]["assets"][key]["href"])


class _Damage:
    def __init__(self, path: Path, how: str):
        self.path, self.how, self.backup = path, how, path.read_bytes()

    def __enter__(self) -> Path:
        if self.how == "truncate":  # header and IFDs intact, pixel tiles cut off
            self.path.write_bytes(self.backup[: len(self.backup) // 2])
        elif self.how == "garbage":
            self.path.write_bytes(b"this is not a tiff" + bytes(len(self.backup)))
        else:
            self.path.unlink()
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.write_bytes(self.backup)


@pytest.mark.parametrize("loader", ["odc-stac", "stackstac"])
def test_truncated_cog_is_named_not_turned_into_nodata(fragile, tmp_path: Path, loader: str):
    from crofuse.synthetic import WUHAN

    root, url = fragile
    with _Damage(_used_asset(root, "B04"), "truncate") as bad:
        with pytest.raises(AssetReadError) as info:  # checksums off: the loader's failed read itself is named
            build_cube(_cfg(url, tmp_path, aoi=inner_bbox(WUHAN, 0.5, margin=0.02), loader=loader,
                            verify_checksums=False), progress=False)
    assert str(bad) in str(info.value) and "'B04'" in str(info.value)
    assert not (tmp_path / "wuhan" / "2022" / "inputs.zarr").exists()


@pytest.mark.parametrize(("check_assets", "verify_checksums", "stage"), [
    (True, True, "could not be opened"),  # the header check runs first
    (False, True, "not the files their catalog describes"),  # then file:size/file:checksum
    (False, False, "reading raster data"),  # with both off, the failed read is still named
])
def test_garbage_cog_is_named(fragile, tmp_path: Path, check_assets: bool, verify_checksums: bool, stage: str):
    from crofuse.synthetic import WUHAN

    root, url = fragile
    with _Damage(_used_asset(root, "SCL"), "garbage") as bad:
        with pytest.raises(AssetReadError, match=stage) as info:
            build_cube(_cfg(url, tmp_path, aoi=inner_bbox(WUHAN, 0.5), check_assets=check_assets,
                            verify_checksums=verify_checksums), progress=False)
    assert str(bad) in str(info.value) and "'SCL'" in str(info.value)


def test_missing_cog_is_named(fragile, tmp_path: Path):
    from crofuse.synthetic import WUHAN

    root, url = fragile
    with _Damage(_used_asset(root, "B02"), "delete") as bad:
        with pytest.raises(AssetReadError, match="No such file") as info:
            build_cube(_cfg(url, tmp_path, aoi=inner_bbox(WUHAN, 0.5)), progress=False)
    assert str(bad) in str(info.value)



def test_unreachable_cog_is_named(tmp_path_factory, tmp_path: Path):
    """An item whose asset lives on a host that does not answer (here: a closed loopback port)."""
    from crofuse.synthetic import WUHAN

    root = build_small_catalog(tmp_path_factory.mktemp("unreachable"), size_km=0.5)
    used = _used_asset(root, "B03")
    href = f"http://127.0.0.1:{_closed_port()}/sentinel-2/{used.name}"
    for p in (root / "sentinel-2-l2a").glob("*/*.json"):
        d = json.loads(p.read_text())
        if d["assets"]["B03"]["href"] == str(used):
            d["assets"]["B03"]["href"] = href
            p.write_text(json.dumps(d))
    with served_catalog(root) as url:
        with pytest.raises(AssetReadError) as info:
            build_cube(_cfg(url, tmp_path, aoi=inner_bbox(WUHAN, 0.5)), progress=False)
    assert href in str(info.value)
    assert not (tmp_path / "wuhan" / "2022" / "inputs.zarr").exists()

# ------------------------------------------------------------------------------------------ catalog failures
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_catalog_is_a_catalog_error(tmp_path: Path):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(CatalogError, match=f"cannot open the STAC catalog at {url}") as info:
        build_cube(_cfg(url, tmp_path, http_retries=1, http_timeout=2), progress=False)
    assert "connection refused" in str(info.value) and "crofuse sample-catalog serve" in str(info.value)
    assert info.value.status is None and info.value.transient is True and info.value.url == url


def test_wrong_profile_is_explained(stac_api, tmp_path: Path):
    cfg = _cfg(stac_api, tmp_path, profile="earth-search", sar_profile="sample", sar_catalog=stac_api)
    with pytest.raises(CatalogError, match=r"has no asset\(s\) \['blue', 'green', 'red', 'nir', 'scl'\].*'earth-search'"):
        build_cube(cfg, progress=False)


def test_search_follows_every_page(stac_api):
    from crofuse.cube import get_profile

    client = open_catalog(stac_api, profile=get_profile("sample"))
    q = Query(stac_api, "sentinel-1-rtc", SMALL_AOI, "2021-01-01T00:00:00Z/2022-12-31T23:59:59Z")
    one_page = search_collection(client, q, max_items=100)
    paged = search_collection(client, q, max_items=100, page_size=2)
    assert len(one_page) > 4 and [i.id for i in paged] == [i.id for i in one_page]
    with pytest.raises(CatalogError, match="more than max_items=3"):
        search_collection(client, q, max_items=3, page_size=2)


def test_invalid_aoi_file_is_refused_by_the_cli(tmp_path: Path, stac_api):
    from typer.testing import CliRunner

    from crofuse_cli import app

    bad = tmp_path / "bowtie.geojson"
    bad.write_text(json.dumps({"type": "Polygon", "coordinates": [[[114.29, 30.58], [114.30, 30.59], [114.30, 30.58],
                                                                   [114.29, 30.59], [114.29, 30.58]]]}))
    res = CliRunner().invoke(app, ["cube", "wuhan", "--year", "2022", "--catalog", stac_api, "--out",
                                   str(tmp_path), "--aoi", str(bad), "--no-progress"])
    assert res.exit_code == 1 and "not a valid polygon" in res.output
    shutil.rmtree(tmp_path / "wuhan", ignore_errors=True)


def test_cli_takes_a_profile_file_and_switches_signing_off(tmp_path: Path, stac_api):
    """A custom profile as data (here the sample layout, asking for Planetary Computer signing) and ``--signing
    none``: the cube is built from it and records its name."""
    from typer.testing import CliRunner

    from crofuse_cli import app

    prof = tmp_path / "mirror.yaml"
    prof.write_text(
        "name: sample-mirror\noptical_collection: sentinel-2-l2a\n"
        "optical_assets: {B08: B08, B04: B04, B03: B03, B02: B02}\nscl_asset: SCL\n"
        "sar_collection: sentinel-1-rtc\nsar_assets: {VV: vv, VH: vh}\nsigning: planetary-computer\n"
    )
    base = ["cube", "wuhan", "--year", "2022", "--catalog", stac_api, "--out", str(tmp_path / "out"), "--bbox",
            *map(str, SMALL_AOI), "--no-progress", "--chunk-size", "64", "--profile-file", str(prof)]
    res = CliRunner().invoke(app, [*base, "--signing", "none"])
    assert res.exit_code == 0, res.output
    ds = open_cube(tmp_path / "out" / "wuhan" / "2022" / "inputs.zarr")
    assert ds.attrs["profile"] == "sample-mirror" and len(ds.attrs["optical_items"]) > 0
    res = CliRunner().invoke(app, [*base, "--signing", "sas"])
    assert res.exit_code == 2 and "signing='sas'; use 'none' or 'planetary-computer'" in res.output
    res = CliRunner().invoke(app, [*base, "--profile", "earth-search"])
    assert res.exit_code == 2 and "give either profile='earth-search' or profile_file=" in res.output
