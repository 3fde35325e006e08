"""Input-cube configuration: AOI parsing and its error messages, city slugs and paths, seasons, profiles, the
completeness rules of the zarr store. No catalog needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crofuse.cube import CubeConfig, Season, city_slug, cube_path, get_profile, open_cube, parse_aoi, target_geobox
from crofuse.cube.aoi import utm_epsg
from crofuse.cube.composite import dn_offsets, parse_baseline
from crofuse.errors import AOIError, CatalogError, ConfigError, CubeError

WUHAN_BBOX = (114.20, 30.55, 114.30, 30.62)


# ------------------------------------------------------------------------------------------------------------ AOI
def test_bbox_parses_to_polygon_with_same_bounds():
    aoi = parse_aoi(WUHAN_BBOX)
    assert aoi.bbox == pytest.approx(WUHAN_BBOX)
    assert aoi.geometry.geom_type == "Polygon"


def test_bbox_with_latitude_first_is_detected_and_the_fix_is_printed():
    with pytest.raises(AOIError, match=r"latitude/longitude are swapped.*--bbox 114\.2 30\.55 114\.3 30\.62"):
        parse_aoi((30.55, 114.20, 30.62, 114.30))


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ((114.3, 30.55, 114.2, 30.62), "west .* must be less than east"),
        ((114.2, 30.62, 114.3, 30.55), "south .* must be less than north"),
        ((114.2, 30.55, 114.3), "must have 4 numbers"),
        ((114.2, float("nan"), 114.3, 30.6), "non-finite"),
        ((500000.0, 3300000.0, 510000.0, 3310000.0), "not in lon/lat degrees"),
        ((100.0, 20.0, 110.0, 30.0), "limit is 5.0 degrees"),
    ],
)
def test_malformed_bbox_is_refused_with_its_reason(bbox, message):
    with pytest.raises(AOIError, match=message):
        parse_aoi(bbox)


def test_self_intersecting_polygon_is_refused_with_the_location():
    bowtie = {"type": "Polygon", "coordinates": [[[114.2, 30.5], [114.3, 30.6], [114.3, 30.5], [114.2, 30.6], [114.2, 30.5]]]}
    with pytest.raises(AOIError, match="not a valid polygon.*Self-intersection"):
        parse_aoi(bowtie)


@pytest.mark.parametrize(
    ("geojson", "message"),
    [
        ({"type": "Point", "coordinates": [114.2, 30.5]}, "is a Point, not a Polygon"),
        ({"type": "FeatureCollection", "features": []}, "has no features"),
        ({"type": "Feature", "geometry": None, "properties": {}}, "has no geometry"),
        ({"type": "Polygon", "coordinates": "nonsense"}, "not a GeoJSON geometry"),
    ],
)
def test_non_polygon_geojson_is_refused(geojson, message):
    with pytest.raises(AOIError, match=message):
        parse_aoi(geojson)


def test_geojson_file_feature_collection_is_merged(tmp_path: Path):
    a = {"type": "Feature", "properties": {}, "geometry": parse_aoi((114.20, 30.55, 114.25, 30.60)).geojson}
    b = {"type": "Feature", "properties": {}, "geometry": parse_aoi((114.25, 30.55, 114.30, 30.60)).geojson}
    path = tmp_path / "city.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [a, b]}))
    aoi = parse_aoi(path)
    assert aoi.bbox == pytest.approx((114.20, 30.55, 114.30, 30.60))
    assert aoi.geometry.area == pytest.approx(0.1 * 0.05)


def test_missing_or_broken_aoi_file_is_named(tmp_path: Path):
    with pytest.raises(AOIError, match="does not exist"):
        parse_aoi(tmp_path / "nope.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(AOIError, match="bad.geojson is not GeoJSON"):
        parse_aoi(bad)


def test_target_grid_is_utm_of_centroid_snapped_to_10m_and_covers_the_aoi():
    aoi = parse_aoi(WUHAN_BBOX)
    gb = target_geobox(aoi)
    assert gb.crs.epsg == 32650 == utm_epsg(*aoi.centroid)
    assert gb.resolution.x == 10 and gb.resolution.y == -10
    assert gb.affine.c % 10 == 0 and gb.affine.f % 10 == 0
    from odc.geo.geom import Geometry

    footprint = Geometry(aoi.geometry, crs="EPSG:4326").to_crs(gb.crs)
    assert gb.extent.contains(footprint)


def test_aoi_across_two_utm_zones_lands_in_one_crs_and_says_which():
    aoi = parse_aoi((113.9, 30.5, 114.1, 30.6))  # zones 49 and 50
    assert aoi.utm_zones == (49, 50)
    assert target_geobox(aoi).crs.epsg == 32650  # centroid at 114.0 -> zone 50
    assert target_geobox(aoi, epsg=32649).crs.epsg == 32649


def test_southern_hemisphere_uses_327xx():
    assert utm_epsg(-46.6, -23.5) == 32723


# ------------------------------------------------------------------------------------------------- slug and path
@pytest.mark.parametrize(
    ("name", "slug"), [("Wuhan", "wuhan"), ("São Paulo", "sao-paulo"), ("../x", "x"), ("a/../../b", "a-b"), ("  New  York ", "new-york")]
)
def test_city_slug(name, slug):
    assert city_slug(name) == slug


def test_cube_path_never_escapes_the_output_root(tmp_path: Path):
    for name in ("../../etc", "/abs/path", "..", "x/../../y"):
        try:
            p = cube_path(tmp_path, name, 2021)
        except ConfigError:
            continue
        assert p.resolve().is_relative_to(tmp_path.resolve())
        assert p.name == "inputs.zarr" and p.parent.name == "2021"
    with pytest.raises(ConfigError, match="no letters or digits"):
        cube_path(tmp_path, "../..", 2021)


# ----------------------------------------------------------------------------------------------------- season
def test_default_season_is_june_and_wraps_years():
    assert Season().label(2021) == "2021-06-01/2021-06-30"
    assert Season.parse("12-01/02-29").label(2021) == "2021-12-01/2022-02-28"
    assert Season.parse("12-01/02-29").label(2023) == "2023-12-01/2024-02-29"
    with pytest.raises(ConfigError, match="MM-DD"):
        Season.parse("June")


# ------------------------------------------------------------------------------------------------------ config
def test_config_validates_and_fingerprints(tmp_path: Path):
    cfg = CubeConfig(city="Wuhan", year=2021, aoi=WUHAN_BBOX, catalog="http://127.0.0.1:1", output=tmp_path)
    assert cfg.slug == "wuhan" and cfg.catalog_profile.name == "sample"
    same = CubeConfig(city="wuhan", year=2021, aoi=list(WUHAN_BBOX), catalog="http://127.0.0.1:1", output=tmp_path)
    assert cfg.fingerprint() == same.fingerprint()
    other = CubeConfig(city="Wuhan", year=2021, aoi=WUHAN_BBOX, catalog="http://127.0.0.1:1", season="05-01/05-31")
    assert other.fingerprint() != cfg.fingerprint()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"catalog": None}, "no default catalog URL"),
        ({"year": 1999}, "year=1999"),
        ({"chunk_size": 7}, "chunk_size=7"),
        ({"loader": "gdal"}, "loader='gdal'"),
        ({"missing_modality": "maybe"}, "missing_modality"),
        ({"min_valid_fraction": 1.5}, "min_valid_fraction"),
        ({"scl_mask": (0, 12)}, "SCL classes are 0-11"),
        ({"profile": "copernicus"}, "unknown catalog profile 'copernicus'; known profiles: sample"),
        ({"profile": "earth-search"}, "no analysis-ready Sentinel-1"),
        ({"catalog_deadline": 0}, "catalog_deadline=0"),
        ({"catalog_deadline": 7200}, "0-3600"),
        ({"signing": "sas"}, "signing='sas'; use 'none' or 'planetary-computer'"),
        ({"profile_file": "/nonexistent/profile.yaml"}, "profile file /nonexistent/profile.yaml does not exist"),
    ],
)
def test_bad_config_values_are_refused(kwargs, message):
    base = {"city": "wuhan", "year": 2021, "aoi": WUHAN_BBOX, "catalog": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError, match=message):
        CubeConfig(**(base | kwargs))


# ---------------------------------------------------------------------------------------------------- profiles
def test_switching_catalogs_is_configuration():
    pc = CubeConfig(city="wuhan", year=2021, aoi=WUHAN_BBOX, profile="planetary-computer")
    assert pc.catalog == "https://planetarycomputer.microsoft.com/api/stac/v1"
    es = CubeConfig(city="wuhan", year=2021, aoi=WUHAN_BBOX, profile="earth-search", sar_profile="planetary-computer")
    assert es.catalog == "https://earth-search.aws.element84.com/v1"
    assert es.catalog_profile.optical_assets["B04"] == "red" and es.catalog_profile.scl_asset == "scl"
    assert es.sar_source_url == pc.catalog and es.sar_source_profile.sar_collection == "sentinel-1-rtc"
    assert get_profile("sample").optical_assets["B08"] == "B08"


def test_planetary_computer_signing_needs_its_extra():
    prof = get_profile("planetary-computer")
    try:
        import planetary_computer  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install 'crofuse\[planetary-computer\]'"):
            prof.item_modifier()
    else:  # pragma: no cover - only where the extra is installed
        assert callable(prof.item_modifier())
    assert get_profile("sample").item_modifier() is None


def test_signing_override_applies_to_both_profiles():
    cfg = CubeConfig(city="wuhan", year=2021, aoi=WUHAN_BBOX, profile="earth-search", sar_profile="planetary-computer",
                     signing="none")
    assert cfg.catalog_profile.signing == "none" and cfg.sar_source_profile.signing == "none"
    assert cfg.sar_source_profile.sar_nodata == -32768.0  # the rest of the profile is kept
    assert CubeConfig(city="wuhan", year=2021, aoi=WUHAN_BBOX, profile="planetary-computer").catalog_profile.signing \
        == "planetary-computer"
    assert CubeConfig(city="wuhan", year=2021, aoi=WUHAN_BBOX, catalog="http://x").catalog_deadline == 120


# -------------------------------------------------------------------------------------------------- profile files
def _profile(tmp_path: Path, text: str, name: str = "custom.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_profile_file_describes_a_catalog_as_data(tmp_path: Path):
    from crofuse.cube.profiles import load_profile_file

    path = _profile(tmp_path, """
default_url: https://stac.example.org/v1
optical_collection: s2-l2a
optical_assets: {B04: red, B02: blue, B03: green, B08: nir}   # any order
scl_asset: scl
sar_collection: s1-rtc
sar_assets: {VV: vv, VH: vh}
sar_nodata: -9999
baseline_property: processing:baseline
signing: planetary-computer
""")
    prof = load_profile_file(path)
    assert prof.name == "custom" and prof.default_url == "https://stac.example.org/v1"
    assert tuple(prof.optical_assets.items()) == (("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir"))
    assert prof.scl_asset == "scl" and prof.sar_collection == "s1-rtc" and prof.sar_nodata == -9999.0
    assert prof.baseline_property == "processing:baseline" and prof.signing == "planetary-computer"
    cfg = CubeConfig(city="wuhan", year=2021, aoi=WUHAN_BBOX, profile_file=str(path))
    assert cfg.catalog_profile == prof and cfg.catalog == "https://stac.example.org/v1"
    assert cfg.fingerprint() != CubeConfig(city="wuhan", year=2021, aoi=WUHAN_BBOX, catalog=cfg.catalog).fingerprint()
    json_path = _profile(tmp_path, json.dumps({"base": "planetary-computer", "name": "pc-mirror", "signing": "none",
                                               "default_url": "http://mirror"}), "m.json")
    mirror = load_profile_file(json_path)
    pc = get_profile("planetary-computer")
    assert mirror.name == "pc-mirror" and mirror.signing == "none" and mirror.default_url == "http://mirror"
    assert mirror.sar_nodata == pc.sar_nodata and mirror.optical_assets == pc.optical_assets


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: sample\noptical_colection: x\n", r"optical_colection: unknown key\. Allowed keys: base, name"),
        ("base: sample\nsigning: sas\n", r"signing: Input should be 'none' or 'planetary-computer'"),
        ("base: copernicus\n", "unknown catalog profile 'copernicus'"),
        ("optical_collection: s2\nscl_asset: SCL\n", "lacks optical_assets, sar_assets: give them, or `base:"),
        ("base: sample\noptical_assets: {B02: a, B03: b, B04: c}\n", r"optical_assets must map exactly \('B02'"),
        ("base: sample\nsar_nodata: lots\n", "sar_nodata: Input should be a valid number"),
        ("- just\n- a list\n", "must hold a mapping of profile keys, got list"),
        ("base: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_profile_files_are_refused_with_the_key(tmp_path: Path, text: str, message: str):
    from crofuse.cube.profiles import load_profile_file

    path = _profile(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_profile_file(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------- baseline offset
class _Item:
    def __init__(self, iid: str, **props):
        self.id, self.properties = iid, props


@pytest.mark.parametrize(
    ("baseline", "offset"), [("02.14", 0), ("03.01", 0), ("04.00", 1000), ("04.01", 1000), ("05.11", 1000), ("5.0", 1000)]
)
def test_offset_follows_the_baseline_property_not_the_date(baseline, offset):
    # a 2021 date with baseline 04.00 (reprocessed) still gets the offset; a 2023 date with 03.01 does not
    item = _Item("x", datetime="2021-06-01", **{"s2:processing_baseline": baseline})
    assert dn_offsets([item], get_profile("sample"))[0] == offset


def test_missing_baseline_is_an_error_not_a_guess():
    with pytest.raises(CatalogError, match="no usable 's2:processing_baseline'"):
        dn_offsets([_Item("S2X")], get_profile("sample"))
    assert parse_baseline("04.00") == (4, 0)


def test_earth_search_offset_applied_flag_skips_the_offset():
    prof = get_profile("earth-search")
    items = [
        _Item("a", **{"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True}),
        _Item("b", **{"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": False}),
    ]
    assert list(dn_offsets(items, prof)) == [0, 1000]


# ------------------------------------------------------------------------------------------------ store marker
def test_open_cube_refuses_missing_incomplete_and_foreign_stores(tmp_path: Path):
    import xarray as xr

    path = cube_path(tmp_path, "wuhan", 2021)
    with pytest.raises(CubeError, match="no input cube"):
        open_cube(path)
    path.parent.mkdir(parents=True)
    (path.parent / ".inputs.zarr.tmp-deadbeef").mkdir()
    with pytest.raises(CubeError, match="interrupted build left .inputs.zarr.tmp-deadbeef"):
        open_cube(path)
    xr.Dataset({"optical": (("y", "x"), np.zeros((2, 2), "float32"))}).to_zarr(path, zarr_format=3, consolidated=False)
    with pytest.raises(CubeError, match="incomplete"):
        open_cube(path)
    import zarr

    zarr.open_group(str(path), mode="r+").attrs["crofuse_complete"] = True
    with pytest.raises(CubeError, match=r"lacks variables \['sar'"):
        open_cube(path)
