"""Area and accuracy estimation from a stratified random sample (crofuse.statistics.estimation and .sample).

The arithmetic is checked on the numerical example of Olofsson et al. (2014), section 5; the statistics (coverage of
the confidence intervals, bias) by repeating the sample many times on a real map of the sample data against the
generator's truth; the sample files by every bad input a person can produce in a GIS.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from crofuse.statistics import estimation as est
from crofuse.statistics import sample as smp

# --------------------------------------------------------------------------------------------------------------------
# Olofsson et al. (2014), section 5: Table 8 (counts, mapped area), Table 9 (proportions), section 5.2 (estimates)
# --------------------------------------------------------------------------------------------------------------------
OLOFSSON_COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
"""Rows: map class (stratum) deforestation, forest gain, stable forest, stable non-forest; columns: reference."""
OLOFSSON_PIXELS = np.array([200_000, 150_000, 3_200_000, 6_450_000])  # 30 m pixels, 0.09 ha each
HA_PER_PIXEL = 0.09


@pytest.fixture(scope="module")
def olofsson() -> est.StratifiedEstimate:
    return est.stratified_estimate(OLOFSSON_COUNTS, OLOFSSON_PIXELS * HA_PER_PIXEL)


def test_olofsson_2014_areas_and_intervals(olofsson: est.StratifiedEstimate) -> None:
    """Section 5.2.2: error-adjusted areas and 95 % half-widths in ha, to the printed digits."""
    assert np.round(olofsson.area).tolist() == [21158, 11686, 285770, 581386]
    assert np.round(olofsson.area_ci).tolist() == [6158, 3756, 15510, 16282]
    # the mapped areas (Table 8) stay what they were; the estimate moves deforestation from 18,000 to 21,158 ha
    assert olofsson.mapped_area.tolist() == pytest.approx([18_000, 13_500, 288_000, 580_500])
    assert olofsson.area.sum() == pytest.approx(olofsson.total_area)
    # S(Â_1) in pixels: the paper prints 34,097 but its own next line (1.96 × S = 68,418) implies 34,907
    assert round(olofsson.area_se[0] / HA_PER_PIXEL) == 34907
    assert round(1.96 * olofsson.area_se[0] / HA_PER_PIXEL) == 68418


def test_olofsson_2014_proportions(olofsson: est.StratifiedEstimate) -> None:
    """Table 9: the estimated area proportions p̂_ij, to 4 decimals."""
    table9 = [[0.0176, 0, 0.0013, 0.0011], [0, 0.0110, 0.0016, 0.0024], [0.0019, 0, 0.2967, 0.0213],
              [0.0040, 0.0020, 0.0179, 0.6212]]
    assert np.round(olofsson.proportions, 4).tolist() == table9


def test_olofsson_2014_accuracies(olofsson: est.StratifiedEstimate) -> None:
    """Section 5.2.1: user's, producer's and overall accuracy ± 95 % half-widths, to the printed 2 decimals.

    Two printed producer's half-widths disagree with the paper's own eq. (7): forest gain (printed 0.23, eq. 7 gives
    0.254) and stable non-forest (printed 0.01, eq. 7 gives 0.018); independent implementations (R's mapaccuracy and
    mapac) give the equation's values, so those are asserted.
    """
    assert np.round(olofsson.user, 2).tolist() == [0.88, 0.73, 0.93, 0.96]
    assert np.round(1.96 * olofsson.user_se, 2).tolist() == [0.07, 0.10, 0.04, 0.02]
    assert np.round(olofsson.producer, 2).tolist() == [0.75, 0.85, 0.93, 0.96]
    assert np.round(1.96 * olofsson.producer_se, 2).tolist() == [0.21, 0.25, 0.03, 0.02]
    assert round(olofsson.overall, 3) == 0.947 and round(olofsson.overall, 2) == 0.95
    assert round(1.96 * olofsson.overall_se, 2) == 0.02


def test_olofsson_2014_sample_size_and_allocation() -> None:
    """Section 5.1: eq. (13) with S(Ô) = 0.01 and conjectured user's accuracies 0.7, 0.6, 0.9, 0.95 gives n = 641;
    proportional allocation (Table 5) 13, 10, 205, 413."""
    w = OLOFSSON_PIXELS / OLOFSSON_PIXELS.sum()
    assert est.sample_size(w, [0.70, 0.60, 0.90, 0.95], target_se=0.01) == 641
    assert est.proportional_allocation(w, 641).tolist() == [13, 10, 205, 413]
    # the rule of section 5.1.2 with 100 per rare stratum, the rest proportional to the stable strata (the paper's
    # Table 5 prints 149/292 for this column, which its stated rule does not reproduce)
    assert est.allocate(OLOFSSON_PIXELS, OLOFSSON_PIXELS, 641, min_rare=100).tolist() == [100, 100, 146, 295]
    # a stratum never gets more units than it has, and rare minimums win over the total
    assert est.allocate([10, 990], [7, 990], 100, min_rare=50).tolist() == [7, 93]


def test_the_combination_estimator(olofsson: est.StratifiedEstimate) -> None:
    """One class: eqs. (9)–(11) exactly; a difference of classes: the stratified estimator of a total, checked against
    the within-stratum sample variance of the unit values written out."""
    area = OLOFSSON_PIXELS * HA_PER_PIXEL
    for k in range(4):
        value, se = est.stratified_combination(OLOFSSON_COUNTS, area, np.eye(4)[k])
        assert value == pytest.approx(olofsson.area[k], rel=1e-12)
        assert se == pytest.approx(olofsson.area_se[k], rel=1e-12)
    c = np.array([1.0, -1.0, 0.0, 0.0])  # deforestation minus forest gain
    value, se = est.stratified_combination(OLOFSSON_COUNTS, area, c)
    w = area / area.sum()
    var = 0.0
    for i in range(4):
        y = np.repeat(c, OLOFSSON_COUNTS[i])  # the unit values of stratum i
        var += w[i] ** 2 * np.var(y, ddof=1) / len(y)
    assert value == pytest.approx(olofsson.area[0] - olofsson.area[1], rel=1e-12)
    assert se == pytest.approx(area.sum() * math.sqrt(var), rel=1e-12)


def test_estimator_input_errors() -> None:
    area = OLOFSSON_PIXELS * HA_PER_PIXEL
    one = OLOFSSON_COUNTS.copy()
    one[1] = [0, 1, 0, 0]
    with pytest.raises(est.EstimationError, match=r"strata \[1\] have mapped area but \[1\] sample units"):
        est.stratified_estimate(one, area)
    with pytest.raises(est.EstimationError, match="4×4"):
        est.stratified_estimate(OLOFSSON_COUNTS[:3], area)
    with pytest.raises(ValueError, match="sum to 1"):
        est.sample_size([0.5, 0.2], [0.9, 0.9])
    # a class nobody mapped (no stratum) can still be found: its area is estimated, its user's accuracy is not
    counts = np.array([[50, 0, 2], [3, 60, 1], [0, 0, 0]])
    e = est.stratified_estimate(counts, [400.0, 600.0, 0.0])
    assert e.area[2] > 0 and math.isnan(e.user[2]) and e.producer[2] == 0.0


def test_the_draw_is_stratified_and_seeded() -> None:
    rng = np.random.default_rng(3)
    strata = rng.integers(0, 3, size=(50, 60)).astype("uint8")
    strata[:5] = smp.OUTSIDE
    picked = est.draw_stratified(strata, [10, 20, 5], seed=1)
    flat = strata.ravel()
    assert [int(np.count_nonzero(flat[picked] == h)) for h in range(3)] == [10, 20, 5]
    assert len(set(picked.tolist())) == 35 and not np.any(flat[picked] == smp.OUTSIDE)
    assert np.array_equal(picked, est.draw_stratified(strata, [10, 20, 5], seed=1))
    assert not np.array_equal(picked, est.draw_stratified(strata, [10, 20, 5], seed=2))


# --------------------------------------------------------------------------------------------------------------------
# Strata other than the map classes: Stehman (2014), section 3 (40 units, 4 strata, map classes A–D)
# --------------------------------------------------------------------------------------------------------------------
def _stehman_2014_example() -> est.StratifiedEstimate:
    """The example of Stehman (2014, IJRS 35: 4923–4939), section 3, as R's mapaccuracy::stehman2014 documents it."""
    stratum = [0] * 10 + [1] * 10 + [2] * 10 + [3] * 10
    mapped = "A" * 7 + "B" * 3 + "A" + "B" * 11 + "C" * 6 + "B" * 2 + "D" * 10
    reference = "AAAAACBABC" "ABBBBBAABB" "CCCCCDDBBA" "DDDDDDDCCB"
    code = {c: i for i, c in enumerate("ABCD")}
    counts = est.unit_counts(stratum, [code[c] for c in mapped], [code[c] for c in reference], n_strata=4,
                             n_classes=4)
    return est.stratified_estimate(counts, [40_000, 30_000, 20_000, 10_000])


def test_stehman_2014_strata_different_from_map_classes() -> None:
    """Stehman (2014) pp. 4932–4936: area proportions of A and C, overall accuracy, user's and producer's accuracy of
    B, cell (B, C) of the error matrix, and their standard errors, against the values of R's
    mapaccuracy::stehman2014 on the paper's example (its documentation points each to the paper's page). mapaccuracy
    applies the finite-population correction, which the paper's estimators have and ours leave out (module
    docstring), so our SEs are larger by its size (< 0.03 % with 10 units in strata of 10,000+ pixels)."""
    e = _stehman_2014_example()
    total = 100_000
    assert e.area[0] / total == pytest.approx(0.35, abs=1e-12)
    assert e.area[2] / total == pytest.approx(0.20, abs=1e-12)
    assert e.overall == pytest.approx(0.63, abs=1e-12)
    assert e.user[1] == pytest.approx(0.5744681, abs=1e-7)  # 27/47
    assert e.producer[1] == pytest.approx(0.7941176, abs=1e-7)  # 27/34
    assert e.proportions[1, 2] == pytest.approx(0.08, abs=1e-12)
    r_mapaccuracy = {"SE area A": 0.0822478, "SE area C": 0.06427977, "SE OA": 0.08464219, "SE UA B": 0.1247822,
                     "SE PA B": 0.1165479}
    ours = {"SE area A": e.area_se[0] / total, "SE area C": e.area_se[2] / total, "SE OA": e.overall_se,
            "SE UA B": e.user_se[1], "SE PA B": e.producer_se[1]}
    for name, value in r_mapaccuracy.items():
        assert ours[name] == pytest.approx(value, rel=3e-4), name
        assert ours[name] >= value  # without the finite-population correction: never smaller
    assert np.round([ours[k] for k in r_mapaccuracy], 3).tolist() == [0.082, 0.064, 0.085, 0.125, 0.117]


def test_strata_are_just_strata(olofsson: est.StratifiedEstimate) -> None:
    """The paper's counts given by stratum × map class × reference give the same estimate; a class split into two
    strata whose sample sizes follow their areas (the same inclusion probability) gives the same point estimates."""
    units = np.zeros((4, 4, 4), int)
    units[np.arange(4), np.arange(4)] = OLOFSSON_COUNTS
    area = OLOFSSON_PIXELS * HA_PER_PIXEL
    again = est.stratified_estimate(units, area)
    for name in ("area", "area_se", "user", "user_se", "producer", "producer_se", "proportions", "mapped_area"):
        np.testing.assert_allclose(getattr(again, name), getattr(olofsson, name), rtol=1e-12, err_msg=name)
    assert again.overall_se == pytest.approx(olofsson.overall_se, rel=1e-12)
    # stable non-forest (325 units) as two strata of 125 and 200 units with areas 125:200 (a "buffer" of that class)
    first, second = np.zeros(4, int), OLOFSSON_COUNTS[3].copy()
    for k, take in ((0, 1), (1, 0), (2, 4), (3, 120)):  # 125 of its units, a mix of the reference classes
        first[k], second[k] = take, second[k] - take
    split = np.zeros((5, 4, 4), int)
    split[np.arange(3), np.arange(3)] = OLOFSSON_COUNTS[:3]
    split[3, 3], split[4, 3] = first, second
    e = est.stratified_estimate(split, [*area[:3], area[3] * 125 / 325, area[3] * 200 / 325])
    for name in ("area", "user", "producer", "proportions", "mapped_area"):
        np.testing.assert_allclose(getattr(e, name), getattr(olofsson, name), rtol=1e-12, err_msg=name)
    assert e.overall == pytest.approx(olofsson.overall, rel=1e-12)
    assert est.stratified_combination(split, e.stratum_area, [1, 0, 0, 0])[0] == pytest.approx(olofsson.area[0])


def test_the_buffer_stratum_and_its_allocation() -> None:
    """Stable pixels within 1 pixel (8-neighbours) of mapped gain or loss form the buffer; a first year has none;
    the buffer is allocated as a rare stratum and at least the points expected to hold 5 of omitted gain."""
    classes = smp.CHANGE_CLASSES
    strata = np.zeros((9, 9), "uint8")  # stable pervious ...
    strata[:, 6:] = 1  # ... and stable impervious on the right
    strata[4, 4] = 2  # one pixel mapped as gain
    strata[0, 0] = 3  # one mapped as loss, at the corner
    strata[8, 8] = smp.OUTSIDE
    b = smp.buffer_strata(strata, classes)
    buffer = len(classes)
    assert sorted(zip(*np.nonzero(b == buffer))) == sorted(
        [(r, c) for r in (3, 4, 5) for c in (3, 4, 5) if (r, c) != (4, 4)] + [(0, 1), (1, 0), (1, 1)])
    assert b[4, 4] == 2 and b[0, 0] == 3 and b[8, 8] == smp.OUTSIDE and b[4, 5] == buffer  # 5 is pervious
    wider = smp.buffer_strata(strata, classes, width=2)
    assert wider[4, 6] == buffer and wider[4, 6] != b[4, 6] == 1  # 2 px reach the stable impervious column
    assert smp.buffer_strata(strata, classes, width=0) is strata
    year = np.array([[0, 1], [1, 0]], "uint8")
    assert smp.buffer_strata(year, smp.YEAR_CLASSES) is year
    # allocation: the buffer is rare whatever its share (here 30 %), gets max(min_rare, proportional)
    # (the two small strata are rare by share; the third is capped at its 20 units)
    assert est.allocate([600, 300, 20, 80], [600, 300, 20, 80], 200, rare=[False, True, False, False]).tolist() == \
        [30, 75, 20, 75]
    assert est.allocate([300, 600, 20, 80], [300, 600, 20, 80], 400, rare=[False, True, False, False]).tolist() == \
        [65, 240, 20, 75]
    # in a design: a buffer of one pixel (a change pixel in a corner, with nodata around) is no stratum
    from affine import Affine
    from odc.geo.geobox import GeoBox

    tiny = np.full((9, 9), smp.OUTSIDE, "uint8")
    tiny[:, 3:] = 0
    tiny[0, 1], tiny[0, 2] = 2, 0
    gbox = GeoBox(tiny.shape, Affine(10, 0, 500_000, 0, -10, 3_400_000), "EPSG:32650")
    d = smp.design_sample(tiny, np.full(tiny.shape, 100.0), gbox, classes=classes, city="x", year=2021,
                          previous_year=2020, seed=0, n_total=60, min_rare=1)
    assert d.strata == classes and d.buffer_px == 0
    # conjectured gain share of the buffer: 0.5 (half the omission) × (1 − 0.6) × 1 km² / 5 km² = 0.04 → 125 points
    assert smp.buffer_minimum(1.0, 5.0, 0.6) == 125
    assert smp.buffer_minimum(0.0, 5.0, 0.6) == 0 and smp.buffer_minimum(1.0, 0.0, 0.6) == 0


# --------------------------------------------------------------------------------------------------------------------
# Repeated samples on the sample data: a real map against the generator's truth
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coverage_cases(stac_api: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Wuhan 2021 → 2022 of the session catalog: the generator's truth and threshold maps with real errors.

    The map (``benchmarks/estimation_coverage.py``) thresholds the input cubes that ``crofuse.cube.build_cube`` makes
    from the served catalog: NDVI < 0.35 and VV > −10 dB, about 87 % accurate per year (the test's case), and a
    stricter NDVI < 0.25 (84 %, more omitted impervious) so the design is not judged on one map.
    """
    from benchmarks.estimation_coverage import case_from_cubes, inner_bbox
    from crofuse.cube import CubeConfig, build_cube, open_cube
    from crofuse.synthetic import WUHAN, ground_truth
    from tests.fixtures.catalog import SMALL_CATALOG

    out = tmp_path_factory.mktemp("coverage-cubes")
    cubes = {
        y: open_cube(build_cube(CubeConfig(city="wuhan", year=y, aoi=inner_bbox(WUHAN, SMALL_CATALOG.size_km),
                                           catalog=stac_api, output=out, chunk_size=256), progress=False)).load()
        for y in (2021, 2022)
    }
    truths = {y: ground_truth(SMALL_CATALOG, "wuhan", y) for y in (2021, 2022)}
    return {
        "ndvi<0.35": case_from_cubes("wuhan", cubes, truths),
        "ndvi<0.25": case_from_cubes("wuhan", cubes, truths, ndvi_max=0.25),
    }


SEEDS = range(200)


@pytest.mark.parametrize("which", ["ndvi<0.35", "ndvi<0.25"])
def test_the_default_design_covers_the_true_gain_and_is_unbiased(coverage_cases, which: str) -> None:
    """The design ``update_statistics`` draws (eq. 13, 75 points per rare stratum, the 1 px buffer with at least the
    points expected to hold 5 of omitted gain): over 200 samples the 95 % CI of the estimated gain covers the true
    gain in 90–99 % of them, the mean estimate is within 3 standard errors of the mean of the true gain, the mean
    estimated SE matches the spread of the estimates (within 15 %, the sampling error of a standard deviation from
    200 values being ~5 %), and the interval of the impervious area covers 90–99 % too."""
    from benchmarks.estimation_coverage import describe, repeat

    case = coverage_cases[which]
    r = repeat(case, SEEDS)
    design = r["design"]
    print(f"\n{which}: true gain {case.true_gain_km2:.4f} km², mapped {case.mapped_gain_km2:.4f} km²; {describe(case, r)}")
    assert design.strata == (*smp.CHANGE_CLASSES, smp.BUFFER) and design.buffer_px == smp.BUFFER_PIXELS
    assert design.allocation[-1] >= 75 and design.n < 1000  # a design a person can label
    assert 0.90 <= r["coverage"] <= 0.99
    assert abs(r["bias_z"]) < 3
    assert r["se_ratio"] == pytest.approx(1.0, abs=0.15)
    assert 0.90 <= r["imp_coverage"] <= 0.99


# --------------------------------------------------------------------------------------------------------------------
# The sample files: design, labels, every bad input
# --------------------------------------------------------------------------------------------------------------------
UTM50N = "EPSG:32650"


@pytest.fixture
def city_year(tmp_path: Path):
    """A wuhan 2020/2021 folder pair with a map that gains a block, and its change design."""
    from tests.test_statistics import _city

    rng = np.random.default_rng(5)
    a0 = (rng.random((80, 80)) < 0.3).astype("uint8")
    a1 = a0.copy()
    a1[10:30, 10:40] = 1
    a1[60:64, 60:70] = 0
    _city(tmp_path, "wuhan", {2020: a0, 2021: a1}, {2020: a0, 2021: a1})
    design, path = smp.draw_city_year_design(tmp_path, "wuhan", 2021, seed=11)
    return tmp_path, design, path.parent


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / smp.SAMPLE_CSV) as fh:
        return list(csv.DictReader(fh))


def _write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _truthful(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    for r in rows:
        r["reference"] = r["map_class"]  # labels equal to the map
    return rows


def test_the_design_files_describe_the_same_points(city_year) -> None:
    from crofuse.statistics import read_map

    output, design, folder = city_year
    assert design.classes == smp.CHANGE_CLASSES and design.previous_year == 2020
    assert sorted(p.name for p in folder.iterdir()) == [smp.DESIGN_NAME, smp.SAMPLE_CSV, smp.SAMPLE_GEOJSON]
    rows = _rows(folder)
    features = json.loads((folder / smp.SAMPLE_GEOJSON).read_text())["features"]
    assert len(rows) == len(features) == design.n == sum(design.allocation)
    again = smp.read_design(folder)
    assert np.array_equal(again.rows, design.rows) and again.allocation == design.allocation
    change = read_map(output / "wuhan/2021/change.tif") if (output / "wuhan/2021/change.tif").exists() else None
    a0 = read_map(output / "wuhan/2020/impervious.tif").values
    a1 = read_map(output / "wuhan/2021/impervious.tif").values
    classes = smp.change_strata(a0, a1)
    strata = smp.buffer_strata(classes, smp.CHANGE_CLASSES)
    assert design.strata == (*smp.CHANGE_CLASSES, smp.BUFFER) and again.strata == design.strata
    assert np.array_equal(again.map_class, design.map_class) and again.buffer_px == design.buffer_px == 1
    names = design.strata
    for r, f, row, col in zip(rows, features, design.rows, design.cols):
        assert r["stratum"] == f["properties"]["stratum"] == names[strata[row, col]]
        assert r["map_class"] == f["properties"]["map_class"] == smp.CHANGE_CLASSES[classes[row, col]]
        assert r["reference"] == "" and f["properties"]["reference"] is None
    assert change is None or change.shape == a1.shape
    # every gain pixel had the same chance: the sampled gain points are all gain pixels, spread over the block
    gain_rows = design.rows[design.stratum == 2]
    assert gain_rows.min() >= 10 and gain_rows.max() < 30
    # the buffer: stable pixels next to mapped change, here around the new block and the lost strip
    in_buffer = design.stratum == names.index(smp.BUFFER)
    assert in_buffer.sum() == design.allocation[-1] >= 75
    assert set(design.map_class[in_buffer].tolist()) <= {0, 1}
    assert {r["stratum"] for r in rows} == set(names)
    # a design.json of before the buffer (strata = classes, 4 numbers per point) still reads
    old = json.loads((folder / smp.DESIGN_NAME).read_text())
    keep = ~in_buffer
    old.update(classes=list(smp.CHANGE_CLASSES), allocation=old["allocation"][:4],
               stratum_area_km2=old["stratum_area_km2"][:4], stratum_pixels=old["stratum_pixels"][:4],
               points=[p[:4] for p, k in zip(old["points"], keep) if k])
    for key in ("strata", "buffer_px"):
        del old[key]
    (tmp := folder.parent / "old-sample").mkdir()
    (tmp / smp.DESIGN_NAME).write_text(json.dumps(old))
    legacy = smp.read_design(tmp)
    assert legacy.strata == smp.CHANGE_CLASSES and legacy.buffer_px == 0
    assert np.array_equal(legacy.map_class, legacy.stratum)


def test_a_labelled_geojson_round_trip(city_year) -> None:
    """A GIS saves the layer with its (legacy) crs member in CRS84: read back, the estimate uses every point."""
    output, design, folder = city_year
    data = json.loads((folder / smp.SAMPLE_GEOJSON).read_text())
    data["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    for f in data["features"]:
        f["properties"]["reference"] = f["properties"]["map_class"]
    path = folder / "labelled.geojson"
    path.write_text(json.dumps(data))
    labelled = smp.read_labelled_sample(path, design)
    assert labelled.n == design.n and np.array_equal(labelled.reference, design.map_class)
    # saved in the map's own CRS (the crs member says so): read as x/y
    data["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32650"}}
    for f in data["features"]:
        f["geometry"]["coordinates"] = [f["properties"]["x"], f["properties"]["y"]]
    path.write_text(json.dumps(data))
    assert smp.read_labelled_sample(path, design).n == design.n


def test_a_sample_in_another_crs_is_refused(city_year) -> None:
    output, design, folder = city_year
    data = json.loads((folder / smp.SAMPLE_GEOJSON).read_text())
    data["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    (folder / "a.geojson").write_text(json.dumps(data))
    with pytest.raises(smp.SampleError, match=r"in urn:ogc:def:crs:EPSG::3857, not in WGS 84 .*EPSG:4326"):
        smp.read_labelled_sample(folder / "a.geojson", design)
    # projected coordinates without saying so
    del data["crs"]
    for f, r in zip(data["features"], _rows(folder)):
        f["geometry"]["coordinates"] = [float(r["x"]), float(r["y"])]
    (folder / "b.geojson").write_text(json.dumps(data))
    with pytest.raises(smp.SampleError, match="not longitude/latitude"):
        smp.read_labelled_sample(folder / "b.geojson", design)
    # a CSV whose x/y were reprojected (here: to EPSG:3857) while lon/lat stayed
    import pyproj

    to_web = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    rows = _truthful(_rows(folder))
    for r in rows:
        r["x"], r["y"] = (f"{v:.2f}" for v in to_web.transform(float(r["lon"]), float(r["lat"])))
    with pytest.raises(smp.SampleError, match=r"x/y must be in the map CRS \(EPSG:32650\)"):
        smp.read_labelled_sample(_write_rows(folder / "c.csv", rows), design)


def test_unknown_labels_are_refused_with_the_allowed_ones(city_year) -> None:
    output, design, folder = city_year
    rows = _truthful(_rows(folder))
    rows[3]["reference"] = "urban"
    rows[7]["reference"] = "Gain?"
    with pytest.raises(smp.SampleError, match=r"unknown reference labels 'urban' at \['p0004'\]; 'Gain\?' at "
                                              r"\['p0008'\]\. Use one of \['stable_pervious'"):
        smp.read_labelled_sample(_write_rows(folder / "labelled.csv", rows), design)


def test_points_outside_the_aoi_are_refused(city_year) -> None:
    output, design, folder = city_year
    taken = set(zip(design.rows.tolist(), design.cols.tolist()))
    row, col = next((r, c) for r in range(design.shape[0]) for c in range(design.shape[1]) if (r, c) not in taken)
    inside = np.ones(design.shape, bool)
    inside[row, col] = False  # a pixel outside the AOI (a hole in the city polygon, say)
    rows = _truthful(_rows(folder))
    x, y = design.geobox.pix2wld(col + 0.5, row + 0.5)  # someone dragged p0001 over there
    import pyproj

    lon, lat = pyproj.Transformer.from_crs(UTM50N, "EPSG:4326", always_xy=True).transform(x, y)
    rows[0].update(x=f"{x:.2f}", y=f"{y:.2f}", lon=f"{lon:.7f}", lat=f"{lat:.7f}")
    with pytest.raises(smp.SampleError, match=r"1 points lie outside the AOI of wuhan 2021: p0001 \("):
        smp.read_labelled_sample(_write_rows(folder / "labelled.csv", rows), design, inside=inside)
    # a point moved inside the AOI, or one that was never drawn, is refused too
    with pytest.raises(smp.SampleError, match=r"\['p0001'\] are not where the design put them"):
        smp.read_labelled_sample(folder / "labelled.csv", design)
    rows = _truthful(_rows(folder))
    rows[0]["point_id"] = "p9999"
    with pytest.raises(smp.SampleError, match=r"\['p9999'\] are not in the design"):
        smp.read_labelled_sample(_write_rows(folder / "labelled.csv", rows), design)


def test_a_stratum_with_too_few_labels_says_how_many_more(city_year) -> None:
    output, design, folder = city_year
    rows = _truthful(_rows(folder))
    gain = [r for r in rows if r["stratum"] == "gain"]
    assert len(gain) >= 30
    for r in gain[12:]:
        r["reference"] = ""  # not labelled yet
    with pytest.raises(smp.SampleError, match="stratum gain has 12 labelled points, needs at least 30: label 18 more"):
        smp.read_labelled_sample(_write_rows(folder / "labelled.csv", rows), design)


def test_interval_notes_name_a_big_stratum_with_a_few_points_of_missed_gain(city_year) -> None:
    """With a buffer, a stable stratum without a point of gain is what is expected (no note); one with 1–4 such
    points is noted, as without a buffer a stratum with none is."""
    output, design, folder = city_year
    rows = _truthful(_rows(folder))
    path = _write_rows(folder / "labelled.csv", rows)
    assert smp.interval_notes(smp.read_labelled_sample(path, design)) == []
    for r in [r for r in rows if r["stratum"] == "stable_pervious"][:2]:
        r["reference"] = "gain"  # two points of gain the map missed, far from mapped change
    notes = smp.interval_notes(smp.read_labelled_sample(_write_rows(path, rows), design))
    assert len(notes) == 1 and notes[0].startswith("stable_pervious (") and "holds 2 of" in notes[0]
    unbuffered = smp.design_sample(*_strata_and_grid(output), classes=smp.CHANGE_CLASSES, city="wuhan", year=2021,
                                   previous_year=2020, seed=3, buffer_px=0)
    truthful = smp.LabelledSample(unbuffered, np.arange(unbuffered.n), unbuffered.map_class, "map")
    assert any("holds 0 of" in n for n in smp.interval_notes(truthful))


def _strata_and_grid(output: Path):
    from crofuse.statistics import pixel_area_of, read_map
    from crofuse.statistics.maps import geobox_of

    a0, a1 = (read_map(output / f"wuhan/{y}/impervious.tif") for y in (2020, 2021))
    return smp.change_strata(a0.values, a1.values), pixel_area_of(a1), geobox_of(a1)


def test_labels_from_rasters_need_the_design_grid(city_year) -> None:
    from crofuse.statistics import read_map

    output, design, folder = city_year
    ref = read_map(output / "wuhan/2021/reference.tif")
    prev = read_map(output / "wuhan/2020/reference.tif")
    labelled = smp.label_from_rasters(design, ref, prev)
    assert labelled.n == design.n and np.array_equal(labelled.reference, design.map_class)  # labels = map here
    with pytest.raises(smp.SampleError, match="both years"):
        smp.label_from_rasters(design, ref)
    shifted = ref.assign_coords(x=ref.x + 10.0)
    with pytest.raises(smp.SampleError, match="not on the grid of the design"):
        smp.label_from_rasters(design, shifted, prev)


def test_the_cli_draws_labels_and_estimates(city_year) -> None:
    from typer.testing import CliRunner

    from crofuse_cli import app

    output, design, folder = city_year
    runner = CliRunner()
    res = runner.invoke(app, ["statistics", "sample", "estimate", "wuhan", "2021", "--output", str(output)])
    assert res.exit_code == 1 and "has no labelled sample" in res.output and "labelled.csv" in res.output
    res = runner.invoke(app, ["statistics", "sample", "label", "wuhan", "2021", "--output", str(output),
                              "--reference", str(output / "wuhan/2021/reference.tif"),
                              "--previous-reference", str(output / "wuhan/2020/reference.tif")])
    assert res.exit_code == 0, res.output
    assert (folder / "labelled.csv").exists()
    res = runner.invoke(app, ["statistics", "sample", "estimate", "wuhan", "2021", "--output", str(output)])
    assert res.exit_code == 0, res.output
    gain_km2 = design.stratum_area_km2[2]  # the labels equal the map: the estimate is the mapped gain, exactly
    assert f"gain        {gain_km2:9.4f} km2 ± 0.0000" in res.output
    assert "overall accuracy 100.0 %" in res.output
    # a new design over labelled points is refused (the labels would no longer match)
    res = runner.invoke(app, ["statistics", "sample", "design", "wuhan", "2021", "--output", str(output)])
    assert res.exit_code == 1 and "move it away" in res.output
    # moved away: a new design, with the buffer (the default) or without it
    (folder / "labelled.csv").rename(output / "labelled-before.csv")
    res = runner.invoke(app, ["statistics", "sample", "design", "wuhan", "2021", "--output", str(output)])
    assert res.exit_code == 0 and ", buffer " in res.output and smp.read_design(folder).buffer_px == 1
    res = runner.invoke(app, ["statistics", "sample", "design", "wuhan", "2021", "--output", str(output),
                              "--buffer-px", "0"])
    assert res.exit_code == 0 and "buffer" not in res.output
    assert smp.read_design(folder).strata == smp.CHANGE_CLASSES
    res = runner.invoke(app, ["statistics", "sample", "design", "wuhan", "2021", "--output", str(output),
                              "--buffer-px", "-1"])
    assert res.exit_code == 2 and "--buffer-px -1" in res.output


def test_the_cli_labels_a_design_from_a_label_source(tmp_path: Path) -> None:
    """``sample label --labels FILE``: a user's label raster on another grid (5 m, nodata 255) is reprojected onto
    the map grid and labels the points: each labelled point gets the truth under it, nodata points stay unlabelled."""
    import rasterio
    from rasterio.transform import from_origin
    from typer.testing import CliRunner

    from crofuse_cli import app
    from tests.test_statistics import UTM50N, _city

    rng = np.random.default_rng(8)
    mapped = (rng.random((60, 60)) < 0.3).astype("uint8")
    truth = mapped.copy()
    truth[5:25, 30:50] = 1 - truth[5:25, 30:50]  # the map is wrong here: the labels must follow the truth
    truth[50:60, 0:10] = 255  # the labels have a hole
    _city(tmp_path, "lagos", {2021: mapped})
    design, _ = smp.draw_city_year_design(tmp_path, "lagos", 2021, seed=4, n_total=200, min_rare=20)
    labels = tmp_path / "labels-5m.tif"
    fine = truth.repeat(2, axis=0).repeat(2, axis=1)  # the same truth at 5 m
    with rasterio.open(labels, "w", driver="GTiff", width=120, height=120, count=1, dtype="uint8", crs=UTM50N,
                       transform=from_origin(230_000.0, 3_390_000.0, 5.0, 5.0), nodata=255) as dst:
        dst.write(fine, 1)

    runner = CliRunner()
    out = ["--output", str(tmp_path)]
    res = runner.invoke(app, ["statistics", "sample", "label", "lagos", "2021", *out])
    assert res.exit_code == 2 and "--labels SOURCE" in res.output
    res = runner.invoke(app, ["statistics", "sample", "label", "lagos", "2021", *out, "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    labelled = smp.read_labelled_sample(tmp_path / "lagos/2021/sample/labelled.csv", design)
    expected = truth[design.rows, design.cols]
    inside = expected != 255
    assert labelled.n == int(inside.sum()) < design.n
    assert np.array_equal(labelled.point_index, np.flatnonzero(inside))
    assert np.array_equal(labelled.reference, smp.year_strata(expected[inside]))
    assert (labelled.reference != design.map_class[inside]).any()  # not the map's classes
