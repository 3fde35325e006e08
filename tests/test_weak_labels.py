"""Weak-label collections of the sample catalog (``esa-worldcover``, ``io-lulc-annual-v02``): served and searchable,
valid STAC, legends, the built class against the exact truth at the documented accuracy, narrow roads omitted by the
WorldCover-shaped map, WorldCover only for 2020/2021, valid COGs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from crofuse.synthetic import weak_labels as wl
from tests.fixtures.catalog import SMALL_CATALOG

WC, IO = "esa-worldcover", "io-lulc-annual-v02"


def _items(root: Path, collection: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / collection).glob("*/*.json"))]


def _read(href: str):
    import rasterio

    with rasterio.open(href) as src:
        return src.read(1), src


def _truth(year: int):
    """The exact truth of the session catalog's Wuhan for any year after its base year (2020 is not a catalog year)."""
    from crofuse.synthetic import generate_landcover

    c = SMALL_CATALOG
    return generate_landcover(c.cities[0], year, size_km=c.size_km, seed=c.seed, subpixel=c.subpixel,
                              growth_rate=c.growth_rate, base_year=c.base_year)


def _on_truth_grid(item: dict, key: str, truth) -> np.ndarray:
    """The item's class map resampled (nearest) onto the truth's 10 m UTM grid, as a label source would read it."""
    from odc.geo.geobox import GeoBox

    arr, src = _read(item["assets"][key]["href"])
    grid = GeoBox(arr.shape, src.transform, src.crs.to_wkt())
    return wl.reproject_classes(arr, grid, truth.geobox)


def _tolerance(p: float, n: float) -> float:
    """Four binomial standard errors of a proportion measured on ``n`` pixels, plus 1 % for grid resampling."""
    return 4.0 * np.sqrt(p * (1 - p) / max(n, 1.0)) + 0.01


# ----------------------------------------------------------------------------------------------------- served
def test_collections_are_served_and_searchable(stac_api: str) -> None:
    import pystac_client

    client = pystac_client.Client.open(stac_api)
    assert {WC, IO} <= {c.id for c in client.get_collections()}
    wc = list(client.search(collections=[WC]).items())
    assert sorted(i.id for i in wc) == ["ESA_WorldCover_10m_2020_v100_wuhan", "ESA_WorldCover_10m_2021_v200_wuhan"]
    assert {i.properties["esa_worldcover:product_version"] for i in wc} == {"1.0.0", "2.0.0"}
    # a user mapping 2022 finds no 2022 product and must ask for the nearest year (the real product's time lag)
    assert list(client.search(collections=[WC], datetime="2022-01-01/2022-12-31").items()) == []
    nearest = list(client.search(collections=[WC], datetime="2021-06-01/2021-06-30").items())
    assert [i.id for i in nearest] == ["ESA_WorldCover_10m_2021_v200_wuhan"]
    city = SMALL_CATALOG.cities[0]
    io = list(client.search(collections=[IO], bbox=[city.lon - 0.01, city.lat - 0.01, city.lon + 0.01,
                                                     city.lat + 0.01], datetime="2022").items())
    assert [i.id for i in io] == ["wuhan-2022"]
    assert {i.properties["crofuse:city"] for i in wc + io} == {"wuhan"}


def test_items_carry_the_contract(sample_catalog: Path) -> None:
    wc, io = _items(sample_catalog, WC), _items(sample_catalog, IO)
    assert len(wc) == 2 and len(io) == len(SMALL_CATALOG.years)
    for item in wc + io:
        p = item["properties"]
        year = int(p["crofuse:year"])
        assert p["start_datetime"] == f"{year}-01-01T00:00:00Z" and p["end_datetime"] == f"{year}-12-31T23:59:59Z"
        assert p["datetime"][:4] == str(year) and p["crofuse:city"] == "wuhan"
    for item in wc:
        year = int(item["properties"]["crofuse:year"])
        tag = {2020: "v100", 2021: "v200"}[year]
        assert item["id"] == f"ESA_WorldCover_10m_{year}_{tag}_wuhan"
        a = item["assets"]["map"]
        assert a["proj:code"] == "EPSG:4326" and item["properties"]["proj:code"] == "EPSG:4326"
        assert a["proj:transform"][0] == pytest.approx(1 / 12000) and a["proj:transform"][4] == pytest.approx(-1 / 12000)
        assert a["raster:bands"] == [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 10, "sampling": "area"}]
        assert {c["value"]: c["description"] for c in a["classification:classes"]} == {
            10: "Tree cover", 20: "Shrubland", 30: "Grassland", 40: "Cropland", 50: "Built-up",
            60: "Bare / sparse vegetation", 70: "Snow and ice", 80: "Permanent water bodies",
            90: "Herbaceous wetland", 95: "Mangroves", 100: "Moss and lichen"}
    for item in io:
        a = item["assets"]["data"]
        assert a["proj:code"] == "EPSG:32650" and a["proj:shape"] == [250, 250]
        assert a["raster:bands"][0]["nodata"] == 0 and a["raster:bands"][0]["spatial_resolution"] == 10
        assert {c["value"]: c["description"] for c in a["classification:classes"]} == {
            0: "No Data", 1: "Water", 2: "Trees", 4: "Flooded vegetation", 5: "Crops", 7: "Built area",
            8: "Bare ground", 9: "Snow/ice", 10: "Clouds", 11: "Rangeland"}


def _core_validator():
    """pystac's JSON-schema validator for the core STAC schemas (shipped with pystac). Extension schemas are not
    stored on this machine and there is no network, so extension fields are checked through pystac's extension
    classes instead."""
    from pystac.validation import JsonSchemaSTACValidator

    class CoreOnly(JsonSchemaSTACValidator):
        def validate_extension(self, *args, **kwargs):
            return None

    return CoreOnly()


def test_items_and_assets_validate_with_pystac(sample_catalog: Path) -> None:
    import pystac
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension
    from pystac.validation import validate_dict

    validator = _core_validator()
    for coll in (WC, IO):
        validate_dict(json.loads((sample_catalog / coll / "collection.json").read_text()), validator=validator)
        for d in _items(sample_catalog, coll):
            assert validate_dict(d, validator=validator)
            item = pystac.Item.from_dict(d)
            for key, asset in item.assets.items():
                proj = ProjectionExtension.ext(asset)
                assert proj.code and len(proj.shape) == 2 and len(proj.transform) == 6
                band = RasterExtension.ext(asset).bands[0]
                assert band.nodata == 0 and str(getattr(band.data_type, "value", band.data_type)) == "uint8" and band.spatial_resolution == 10
                classes = ClassificationExtension.ext(asset).classes
                assert classes and all(c.name and c.value is not None for c in classes)
                f = FileExtension.ext(asset)
                data = Path(asset.href).read_bytes()
                assert f.size == len(data) and f.checksum == "1220" + hashlib.sha256(data).hexdigest(), key


def test_cogs_validate_and_codes_are_in_the_legend(sample_catalog: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    for coll, key, legend in ((WC, "map", wl.WORLDCOVER_CLASSES), (IO, "data", wl.IO_LULC_CLASSES)):
        values = {c["value"] for c in legend} | {0}  # 0: the declared nodata (WorldCover: outside the UTM tile)
        for item in _items(sample_catalog, coll):
            href = item["assets"][key]["href"]
            valid, errors, _ = cog_validate(href, quiet=True)
            assert valid, (href, errors)
            arr, src = _read(href)
            assert src.crs.to_epsg() == (4326 if coll == WC else 32650) and list(arr.shape) == \
                item["assets"][key]["proj:shape"]
            codes = set(np.unique(arr).tolist())
            assert codes <= values, codes - values
            assert wl.WORLDCOVER_BUILT_UP in codes if coll == WC else wl.IO_BUILT_AREA in codes
    # the WorldCover grid covers the whole UTM tile: nodata (0) only outside it
    truth = _truth(2021)
    back = _on_truth_grid(_items(sample_catalog, WC)[1], "map", truth)
    assert (back != 0).all()


# ---------------------------------------------------------------------------------------- errors as documented
@pytest.mark.parametrize("coll", [WC, IO])
def test_built_class_agrees_with_truth_at_the_documented_accuracy(sample_catalog: Path, coll: str) -> None:
    target_ua, target_pa = wl.WORLDCOVER_BUILT if coll == WC else wl.IO_BUILT
    built_code = wl.WORLDCOVER_BUILT_UP if coll == WC else wl.IO_BUILT_AREA
    for item in _items(sample_catalog, coll):
        truth = _truth(int(item["properties"]["crofuse:year"]))
        built = _on_truth_grid(item, "map" if coll == WC else "data", truth) == built_code
        a = wl.built_accuracy(built, truth.label.astype(bool))
        assert abs(a["ua"] - target_ua) < _tolerance(target_ua, a["n_map"]), (item["id"], a)
        assert abs(a["pa"] - target_pa) < _tolerance(target_pa, a["n_truth"]), (item["id"], a)
        # the product's direction of error: WorldCover under-maps built-up, IO over-maps built area
        assert (a["n_map"] < a["n_truth"]) if coll == WC else (a["n_map"] > a["n_truth"])
        assert item["properties"]["crofuse:built_user_accuracy"] == pytest.approx(a["ua"], abs=1e-4)


def _narrow_roads_in_test(truth) -> np.ndarray:
    """Paved impervious pixels with pervious pixels on both sides along a row or a column: at most a pixel wide
    (defined here independently of the generator's morphological opening)."""
    from crofuse.synthetic import LandCover

    imp = truth.label.astype(bool)
    p = np.pad(~imp, 1, constant_values=False)
    across_x = p[1:-1, :-2] & p[1:-1, 2:]
    across_y = p[:-2, 1:-1] & p[2:, 1:-1]
    paved = truth.fractions[LandCover.PAVED] >= truth.fractions[LandCover.BUILDING]
    return imp & paved & (across_x | across_y)


def test_narrow_roads_are_mostly_omitted_by_worldcover(sample_catalog: Path) -> None:
    for item in _items(sample_catalog, WC):
        truth = _truth(int(item["properties"]["crofuse:year"]))
        roads = _narrow_roads_in_test(truth)
        assert roads.sum() > 50  # the tile has narrow roads to test on
        wc = _on_truth_grid(item, "map", truth)
        assert (wc[roads] != wl.WORLDCOVER_BUILT_UP).mean() > 0.8
        # ... and they take a natural class of their surroundings, never nodata
        assert set(np.unique(wc[roads]).tolist()) <= {10, 30, 40, 50, 60, 80}
        # wide roads and dense blocks are kept: most fully sealed pixels are mapped built-up
        sealed = truth.impervious_fraction >= 0.999
        assert (wc[sealed & ~roads] == wl.WORLDCOVER_BUILT_UP).mean() > 0.85


def test_io_lulc_is_blocky_and_over_inclusive_in_dense_blocks(sample_catalog: Path) -> None:
    """Green pixels inside dense built blocks are built area in the IO-shaped map, and its classes form larger
    patches than the truth's (coarser effective resolution)."""
    from scipy.ndimage import label as components

    item = _items(sample_catalog, IO)[-1]
    truth = _truth(int(item["properties"]["crofuse:year"]))
    io, _ = _read(item["assets"]["data"]["href"])
    imp = truth.label.astype(bool)
    dense_green = ~imp & (wl._density(imp) >= wl.IO_DENSE_BLOCK)
    water = np.argmax(truth.fractions[1:6], axis=0) == 0
    dense_green &= ~water
    assert dense_green.sum() > 20
    assert (io[dense_green] == wl.IO_BUILT_AREA).mean() > 0.6
    # fewer, larger built patches than the truth has
    assert components(io == wl.IO_BUILT_AREA)[1] < components(imp)[1]


def test_worldcover_only_for_2020_and_2021() -> None:
    assert wl.worldcover_years(2018, (2021, 2022)) == [2020, 2021]
    assert wl.worldcover_years(2018, (2022,)) == [2020, 2021]
    assert wl.worldcover_years(2018, (2020,)) == [2020]
    assert wl.worldcover_years(2020, (2021, 2022)) == [2021]
    assert wl.worldcover_years(2018, (2019,)) == []
    assert wl.worldcover_years(2021, (2023,)) == []
    from crofuse.errors import ConfigError

    with pytest.raises(ConfigError, match="2020, 2021"):
        wl.worldcover_map(_truth(2022), seed=0, product_year=2022)


def test_maps_are_deterministic_in_city_year_and_seed() -> None:
    truth = _truth(2021)
    a = wl.worldcover_map(truth, seed=0, product_year=2021).classes
    np.testing.assert_array_equal(a, wl.worldcover_map(truth, seed=0, product_year=2021).classes)
    assert (a != wl.worldcover_map(truth, seed=1, product_year=2021).classes).any()
    b = wl.io_lulc_map(truth, seed=0).classes
    np.testing.assert_array_equal(b, wl.io_lulc_map(truth, seed=0).classes)
    assert (b != wl.io_lulc_map(truth, seed=5).classes).any()
