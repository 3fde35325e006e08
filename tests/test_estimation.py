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
# Repeated samples on the sample data: a real map against the generator's truth
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_data_map():
    """Wuhan 2021 → 2022 of the session catalog's settings: the generator's truth and a map with real errors.

    The map is a threshold classifier (NDVI < 0.35 and VV > −10 dB) of the seasonal composite of the catalog's own
    passes (``crofuse.synthetic.seasonal_composite``: the clear-sky S2 mean and S1 dB of the linear mean that a cube
    of the catalog holds), about 87 % accurate per year; nodata where the composite has none.
    """
    from crofuse.statistics import pixel_area
    from crofuse.synthetic import ground_truth, seasonal_composite
    from tests.fixtures.catalog import SMALL_CATALOG

    truth = {y: ground_truth(SMALL_CATALOG, "wuhan", y) for y in (2021, 2022)}
    maps = {}
    for year, t in truth.items():
        c = seasonal_composite(t, SMALL_CATALOG)
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = (c.optical[3] - c.optical[2]) / (c.optical[3] + c.optical[2])
        m = ((ndvi < 0.35) & (c.sar[0] > -10.0)).astype("uint8")
        m[~(np.isfinite(c.optical).all(0) & np.isfinite(c.sar).all(0))] = 255
        maps[year] = m
    gbox = truth[2022].geobox
    area = pixel_area(gbox.crs.to_wkt(), gbox.affine, gbox.shape)
    strata = smp.change_strata(maps[2021], maps[2022])
    population = strata != smp.OUTSIDE
    true_gain = (truth[2021].label == 0) & (truth[2022].label == 1) & population
    return {
        "truth": truth, "maps": maps, "gbox": gbox, "area": area, "strata": strata,
        "true_gain_km2": float(area[true_gain].sum() / 1e6),
        "true_gain_per_stratum": np.array([int(np.count_nonzero(true_gain & (strata == h))) for h in range(4)]),
        "true_impervious_km2": float(area[(truth[2022].label == 1) & population].sum() / 1e6),
        "mapped_gain_km2": float(area[strata == 2].sum() / 1e6),
    }


def _repeat(data, seeds, **design_options) -> dict[str, np.ndarray]:
    """Draw, label from the truth and estimate once per seed; the map is made once."""
    out: dict[str, list[float]] = {k: [] for k in ("gain", "gain_se", "gain_ci", "imp", "imp_ci")}
    for seed in seeds:
        design = smp.design_sample(data["strata"], data["area"], data["gbox"], classes=smp.CHANGE_CLASSES,
                                   city="wuhan", year=2022, previous_year=2021, seed=seed, **design_options)
        labelled = smp.label_from_rasters(design, data["truth"][2022].label, data["truth"][2021].label)
        cols = smp.estimate_columns(labelled)
        out["gain"].append(cols["estimated_gain_km2"])
        out["gain_se"].append(cols["estimated_gain_se_km2"])
        out["gain_ci"].append(cols["estimated_gain_ci95_km2"])
        out["imp"].append(cols["estimated_impervious_km2"])
        out["imp_ci"].append(cols["estimated_impervious_ci95_km2"])
    return {k: np.array(v) for k, v in out.items()}


SEEDS = range(200)


def test_confidence_intervals_cover_the_true_gain_and_the_estimator_is_unbiased(sample_data_map) -> None:
    """Over 200 stratified samples the 95 % CI of the estimated gain covers the true gain in 90–99 % of them, and the
    mean estimate is within 3 standard errors of the mean of the true gain.

    The design gives each stratum enough points for the normal interval to hold: at least 5 expected points of true
    gain (np ≥ 5, the textbook condition for a normal approximation of a proportion), and never fewer than the
    default allocation. The default design (eq. 13, ~600 points) is tested below: it stays unbiased, but its interval
    covers less often (omitted gain is rare in the big stable strata; Olofsson et al. 2020).
    """
    data = sample_data_map
    default = smp.design_sample(data["strata"], data["area"], data["gbox"], classes=smp.CHANGE_CLASSES,
                                city="wuhan", year=2022, previous_year=2021, seed=0)
    pixels = np.array(default.stratum_pixels)
    rate = data["true_gain_per_stratum"] / pixels
    enough = np.where(rate > 0, np.ceil(5 / np.where(rate > 0, rate, 1)), 0)
    allocation = np.minimum(pixels, np.maximum(default.allocation, enough)).astype(int)
    r = _repeat(data, SEEDS, allocation=allocation.tolist())
    truth = data["true_gain_km2"]
    covered = np.abs(r["gain"] - truth) <= r["gain_ci"]
    coverage = covered.mean()
    se_of_mean = r["gain"].std(ddof=1) / math.sqrt(len(r["gain"]))
    print(f"\ngain: true {truth:.4f} km2, mapped {data['mapped_gain_km2']:.4f} km2; {allocation.sum()} points "
          f"{allocation.tolist()}: coverage {coverage:.3f}, mean estimate {r['gain'].mean():.4f} ± {se_of_mean:.4f}")
    assert 0.90 <= coverage <= 0.99
    assert abs(r["gain"].mean() - truth) < 3 * se_of_mean
    imp_coverage = (np.abs(r["imp"] - data["true_impervious_km2"]) <= r["imp_ci"]).mean()
    assert 0.90 <= imp_coverage <= 0.99


def test_the_default_design_is_unbiased_and_its_standard_error_calibrated(sample_data_map) -> None:
    """The design update_statistics draws (eq. 13, 75 points per rare stratum): over 200 samples the mean estimate is
    within 3 SE of the true gain, and the mean of the estimated standard errors matches the spread of the estimates
    (within 15 %, the sampling error of a standard deviation from 200 values being ~5 %)."""
    data = sample_data_map
    r = _repeat(data, SEEDS)
    truth = data["true_gain_km2"]
    spread = r["gain"].std(ddof=1)
    coverage = (np.abs(r["gain"] - truth) <= r["gain_ci"]).mean()
    print(f"\ndefault design: coverage {coverage:.3f}, mean {r['gain'].mean():.4f} vs true {truth:.4f}, "
          f"sd {spread:.4f}, mean SE {r['gain_se'].mean():.4f}")
    assert abs(r["gain"].mean() - truth) < 3 * spread / math.sqrt(len(r["gain"]))
    assert r["gain_se"].mean() == pytest.approx(spread, rel=0.15)


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
        r["reference"] = r["stratum"]
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
    strata = smp.change_strata(a0, a1)
    for r, f, row, col in zip(rows, features, design.rows, design.cols):
        assert r["stratum"] == f["properties"]["stratum"] == smp.CHANGE_CLASSES[strata[row, col]]
        assert r["reference"] == "" and f["properties"]["reference"] is None
    assert change is None or change.shape == a1.shape
    # every gain pixel had the same chance: the sampled gain points are all gain pixels, spread over the block
    gain_rows = design.rows[design.stratum == 2]
    assert gain_rows.min() >= 10 and gain_rows.max() < 30


def test_a_labelled_geojson_round_trip(city_year) -> None:
    """A GIS saves the layer with its (legacy) crs member in CRS84: read back, the estimate uses every point."""
    output, design, folder = city_year
    data = json.loads((folder / smp.SAMPLE_GEOJSON).read_text())
    data["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    for f in data["features"]:
        f["properties"]["reference"] = f["properties"]["stratum"]
    path = folder / "labelled.geojson"
    path.write_text(json.dumps(data))
    labelled = smp.read_labelled_sample(path, design)
    assert labelled.n == design.n and np.array_equal(labelled.reference, design.stratum)
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


def test_labels_from_rasters_need_the_design_grid(city_year) -> None:
    from crofuse.statistics import read_map

    output, design, folder = city_year
    ref = read_map(output / "wuhan/2021/reference.tif")
    prev = read_map(output / "wuhan/2020/reference.tif")
    labelled = smp.label_from_rasters(design, ref, prev)
    assert labelled.n == design.n and np.array_equal(labelled.reference, design.stratum)  # labels = map here
    with pytest.raises(smp.SampleError, match="both years"):
        smp.label_from_rasters(design, ref)
    shifted = ref.assign_coords(x=ref.x + 10.0)
    with pytest.raises(smp.SampleError, match="not on the grid of the design"):
        smp.label_from_rasters(design, shifted, prev)


def test_the_cli_draws_labels_and_estimates(city_year) -> None:
    from typer.testing import CliRunner

    from crofuse.cli import app

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
