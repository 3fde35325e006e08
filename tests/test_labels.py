"""Label sources on a cube grid: rasters (any CRS, resolution, class mapping or fraction), polygons at >= 50 % cover,
STAC collections (the sample labels), and every bad-input case with its message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crofuse import NODATA_LABEL
from crofuse.errors import ConfigError, LabelError
from crofuse.labels import (
    SAMPLE,
    get_label_source,
    labels_on_grid,
    load_label_source,
    raster_source,
    vector_source,
)

CRS = "EPSG:32650"
X0, Y0 = 500_000.0, 3_400_000.0


def _geobox(shape=(40, 60), res=10.0):
    from odc.geo.geobox import GeoBox

    h, w = shape
    return GeoBox.from_bbox((X0, Y0 - h * res, X0 + w * res, Y0), CRS, resolution=res)


def _write_raster(path: Path, data: np.ndarray, *, crs: str | None = CRS, res: float = 10.0, x0: float = X0,
                  y0: float = Y0, nodata=None) -> Path:
    import rasterio
    from affine import Affine

    transform = Affine(res, 0, x0, 0, -res, y0)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def _write_polygons(path: Path, polygons, *, crs: str | None = CRS, layer: str = "impervious", append=False) -> Path:
    import pyogrio.raw
    import shapely

    pyogrio.raw.write(str(path), geometry=np.array(shapely.to_wkb(polygons), dtype=object), field_data=[],
                      fields=[], layer=layer, driver="GPKG", geometry_type="Polygon", crs=crs, append=append)
    return path


# ---------------------------------------------------------------------------------------------------------- rasters
def test_class_raster_maps_codes_and_keeps_nodata(tmp_path: Path) -> None:
    data = np.full((40, 60), 30, np.uint8)
    data[:, :20] = 50
    data[:5] = 0  # nodata
    src = get_label_source("esa-worldcover").model_copy(update={"kind": "raster", "path": str(
        _write_raster(tmp_path / "wc.tif", data, nodata=0))})
    out = labels_on_grid(src, _geobox(), year=2021, min_coverage=0.0)
    assert out.data[10:, :20].min() == 1 and out.data[10:, 20:].max() == 0
    assert (out.data[:5] == NODATA_LABEL).all()
    assert out.coverage == pytest.approx(35 / 40)


def test_unknown_class_codes_are_named(tmp_path: Path) -> None:
    data = np.full((40, 60), 50, np.uint8)
    data[0, 0] = 77
    src = raster_source(_write_raster(tmp_path / "x.tif", data), impervious=[50], classes={50: "built", 10: "tree"})
    with pytest.raises(LabelError, match=r"class codes \[77\].*not in its legend"):
        labels_on_grid(src, _geobox(), year=2021)


def test_finer_raster_in_another_crs_takes_the_majority(tmp_path: Path) -> None:
    """2 m labels in geographic coordinates: a 10 m pixel is impervious where most of its 2 m pixels are."""
    from pyproj import Transformer

    lon0, lat0 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(X0, Y0)
    res = 2.0 / 111_320.0
    data = np.zeros((400, 500), np.uint8)
    data[:, :150] = 1  # the western ~270 m (in longitude degrees at this latitude: further)
    src = raster_source(_write_raster(tmp_path / "geo.tif", data, crs="EPSG:4326", res=res, x0=lon0 - 10 * res,
                                      y0=lat0 + 10 * res))
    out = labels_on_grid(src, _geobox(), year=2021, min_coverage=0.0)
    assert set(np.unique(out.data)) <= {0, 1, NODATA_LABEL}
    ones = (out.data == 1).mean(axis=0)
    assert ones[0] == 1.0 and ones[-1] == 0.0 and np.all(np.diff(ones) <= 0), "one west-east transition"


def test_fraction_raster_is_averaged_then_thresholded(tmp_path: Path) -> None:
    frac = np.zeros((200, 300), np.float32)
    frac[:, :100] = 0.7  # in 2 m pixels: the first 20 columns of 10 m pixels are 70 % impervious
    frac[:, 100:105] = 0.2
    src = raster_source(_write_raster(tmp_path / "f.tif", frac, res=2.0), fraction_threshold=0.5)
    out = labels_on_grid(src, _geobox(), year=2021)
    assert (out.data[:, :20] == 1).all() and (out.data[:, 20:] == 0).all()


def test_raster_without_crs_and_outside_the_aoi(tmp_path: Path) -> None:
    data = np.ones((40, 60), np.uint8)
    with pytest.raises(LabelError, match="no CRS"):
        labels_on_grid(raster_source(_write_raster(tmp_path / "nocrs.tif", data, crs=None)), _geobox(), year=2021)
    far = raster_source(_write_raster(tmp_path / "far.tif", data, x0=X0 + 50_000))
    with pytest.raises(LabelError, match=r"labels only 0\.0% of the AOI.*does not cover"):
        labels_on_grid(far, _geobox(), year=2021)


def test_label_year_of_a_file(tmp_path: Path) -> None:
    src = raster_source(_write_raster(tmp_path / "y.tif", np.ones((40, 60), np.uint8)), year=2020)
    with pytest.raises(LabelError, match="apply to 2020, not 2022.*--nearest-year"):
        labels_on_grid(src, _geobox(), year=2022)
    out = labels_on_grid(src, _geobox(), year=2022, nearest_year=True)
    assert out.year == 2020 and any("2020" in n for n in out.notes)


# ---------------------------------------------------------------------------------------------------------- polygons
def test_polygons_are_impervious_at_half_cover(tmp_path: Path) -> None:
    import shapely

    gb = _geobox()
    polys = [
        shapely.box(X0, Y0 - 100, X0 + 100, Y0),  # 10 x 10 whole pixels
        shapely.box(X0 + 200, Y0 - 10, X0 + 206, Y0),  # 60 % of pixel (0, 20)
        shapely.box(X0 + 300, Y0 - 10, X0 + 304, Y0),  # 40 % of pixel (0, 30)
    ]
    path = _write_polygons(tmp_path / "roofs.gpkg", polys)
    _write_polygons(path, [shapely.box(X0, Y0 - 300, X0 + 500, Y0)], layer="coverage", append=True)
    out = labels_on_grid(vector_source(path), gb, year=2021, min_coverage=0.0)
    assert (out.data[:10, :10] == 1).all()
    assert out.data[0, 20] == 1 and out.data[0, 30] == 0
    assert (out.data[:30, 10:20] == 0).all() and (out.data[30:] == NODATA_LABEL).all()
    assert (out.data[:, 50:] == NODATA_LABEL).all(), "outside the coverage layer there is no label"


def test_polygons_without_crs_or_invalid_are_refused(tmp_path: Path) -> None:
    import shapely

    bowtie = shapely.Polygon([(X0, Y0), (X0 + 100, Y0 - 100), (X0 + 100, Y0), (X0, Y0 - 100)])
    with pytest.raises(LabelError, match=r"invalid geometries.*Self-intersection.*Fix geometries"):
        labels_on_grid(vector_source(_write_polygons(tmp_path / "bad.gpkg", [bowtie])), _geobox(), year=2021)
    no_crs = _write_polygons(tmp_path / "nocrs.gpkg", [shapely.box(X0, Y0 - 50, X0 + 50, Y0)], crs=None)
    with pytest.raises(LabelError, match="no CRS.*Set CRS"):
        labels_on_grid(vector_source(no_crs), _geobox(), year=2021)


# ---------------------------------------------------------------------------------------------------------- specs
def test_label_source_specs(tmp_path: Path) -> None:
    assert get_label_source("sample") is SAMPLE
    assert get_label_source("io-lulc").impervious == (7,) and 10 in get_label_source("io-lulc").ignore
    with pytest.raises(ConfigError, match="unknown label source 'nope'"):
        get_label_source("nope")
    with pytest.raises(ConfigError, match="apply to label files, not to the built-in"):
        get_label_source("sample", fraction_threshold=0.5)
    yaml_path = tmp_path / "mine.yaml"
    _write_raster(tmp_path / "lc.tif", np.ones((4, 4), np.uint8))
    yaml_path.write_text("kind: raster\npath: lc.tif\nclasses: {1: roof, 2: lawn}\nimpervious: [1]\n")
    src = load_label_source(yaml_path)
    assert src.name == "mine" and Path(src.path) == tmp_path / "lc.tif" and src.classes == {1: "roof", 2: "lawn"}
    yaml_path.write_text("kind: raster\npath: lc.tif\nclasses: {1: roof}\nimpervious: [3]\n")
    with pytest.raises(ConfigError, match=r"impervious/ignore codes \[3\] are not in the legend"):
        load_label_source(yaml_path)


# ---------------------------------------------------------------------------------------------------------- STAC
def test_sample_labels_from_the_stac_api_equal_the_truth(stac_api: str) -> None:
    """The sample catalog's labels collection through the STAC API, onto the cube grid, is the generator's reference
    label (generator v2: the annotated reference, ``GroundTruth.reference``; v1: the exact label)."""
    from crofuse.cube.aoi import parse_aoi
    from crofuse.labels import city_extent
    from crofuse.synthetic import ground_truth
    from tests.fixtures.catalog import SMALL_CATALOG

    truth = ground_truth(SMALL_CATALOG, "wuhan", 2022)
    area = parse_aoi(city_extent(stac_api, "wuhan"))
    out = labels_on_grid(SAMPLE, truth.geobox, year=2022, area=area, catalog=stac_api)
    np.testing.assert_array_equal(out.data, truth.reference)
    assert out.year == 2022 and out.inputs == ("labels_wuhan_2022",) and out.coverage == 1.0
    from crofuse.labels import SAMPLE_EXACT

    exact = labels_on_grid(SAMPLE_EXACT, truth.geobox, year=2022, area=area, catalog=stac_api)
    np.testing.assert_array_equal(exact.data, truth.label)
    assert 0.8 < float((exact.data == out.data).mean()) < 1.0, "the reference is the truth with annotation errors"
    with pytest.raises(LabelError, match=r"no labels for 2019.*it has \[2021, 2022\].*--nearest-year"):
        labels_on_grid(SAMPLE, truth.geobox, year=2019, area=area, catalog=stac_api)
    nearest = labels_on_grid(SAMPLE, truth.geobox, year=2019, area=area, catalog=stac_api, nearest_year=True)
    assert nearest.year == 2021
    elsewhere = parse_aoi((10.0, 45.0, 10.1, 45.1))
    with pytest.raises(LabelError, match="has no item over the AOI"):
        labels_on_grid(SAMPLE, truth.geobox, year=2022, area=elsewhere, catalog=stac_api)
    with pytest.raises(LabelError, match="has no collection 'esa-worldcover-v9'"):
        labels_on_grid(SAMPLE.model_copy(update={"collection": "esa-worldcover-v9"}), truth.geobox, year=2022,
                       area=area, catalog=stac_api)


@pytest.mark.parametrize("name, year", [("esa-worldcover", 2021), ("io-lulc", 2022)])
def test_weak_label_collections_from_the_stac_api(stac_api: str, name: str, year: int) -> None:
    """The WorldCover- and IO-LULC-shaped collections of the sample catalog, through STAC onto the truth grid: every
    pixel labelled, and the built-up class agrees with the exact truth as a weak product does (far from exact)."""
    from crofuse.cube.aoi import parse_aoi
    from crofuse.labels import city_extent
    from crofuse.synthetic import ground_truth
    from tests.fixtures.catalog import SMALL_CATALOG

    truth = ground_truth(SMALL_CATALOG, "wuhan", year)
    area = parse_aoi(city_extent(stac_api, "wuhan"))
    out = labels_on_grid(get_label_source(name), truth.geobox, year=year, area=area, catalog=stac_api)
    assert out.coverage == 1.0 and set(np.unique(out.data)) <= {0, 1}
    agreement = float((out.data == truth.label).mean())
    assert 0.8 < agreement < 0.99, agreement


def test_worldcover_has_no_2022_product_unless_the_nearest_year_is_asked(stac_api: str) -> None:
    from crofuse.cube.aoi import parse_aoi
    from crofuse.labels import ESA_WORLDCOVER, city_extent
    from crofuse.synthetic import ground_truth
    from tests.fixtures.catalog import SMALL_CATALOG

    truth = ground_truth(SMALL_CATALOG, "wuhan", 2022)
    area = parse_aoi(city_extent(stac_api, "wuhan"))
    with pytest.raises(LabelError, match=r"no labels for 2022 .*it has \[2020, 2021\].*use 2021 for 2022"):
        labels_on_grid(ESA_WORLDCOVER, truth.geobox, year=2022, area=area, catalog=stac_api)
    lagged = labels_on_grid(ESA_WORLDCOVER, truth.geobox, year=2022, area=area, catalog=stac_api, nearest_year=True)
    assert lagged.year == 2021 and "labels of 2021 used for 2022" in lagged.notes[0]
