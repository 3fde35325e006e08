"""The generated data is physically plausible: class signatures, confusions, speckle, clouds and growth."""

from __future__ import annotations

import numpy as np
import pytest

from crofuse.errors import ConfigError
from crofuse.synthetic import (
    WUHAN,
    City,
    LandCover,
    SampleConfig,
    generate_landcover,
    generate_truths,
    sentinel1_schedule,
    sentinel2_schedule,
    simulate_optical,
    simulate_sar,
)
from crofuse.synthetic.optical import CIRRUS_FLAG, CLOUD_FLAG_OPACITY, SCL_MASKED, SHADOW_FLAG

CFG = SampleConfig(cities=(WUHAN,), years=(2021, 2022), size_km=3.0, seed=3)


@pytest.fixture(scope="module")
def truths():
    return generate_truths(WUHAN, CFG.years, size_km=CFG.size_km, seed=CFG.seed)


def _ndvi(r: np.ndarray) -> np.ndarray:
    return (r[3] - r[2]) / (r[3] + r[2])


def test_deterministic_in_city_year_seed(truths) -> None:
    again = generate_landcover(WUHAN, 2022, size_km=CFG.size_km, seed=CFG.seed)
    np.testing.assert_array_equal(again.reflectance, truths[2022].reflectance)
    np.testing.assert_array_equal(again.label, truths[2022].label)
    other = generate_landcover(WUHAN, 2022, size_km=CFG.size_km, seed=CFG.seed + 1)
    assert (other.label != truths[2022].label).mean() > 0.1


def test_all_classes_present_with_subpixel_mixing(truths) -> None:
    t = truths[2022]
    shares = np.bincount(t.landcover.ravel(), minlength=8) / t.label.size
    for cls in (LandCover.WATER, LandCover.TREES, LandCover.GRASS, LandCover.CROPLAND, LandCover.BARE_SOIL,
                LandCover.PAVED, LandCover.BUILDING):
        assert shares[cls] > 0.01, (cls, shares)
    assert 0.15 < t.label.mean() < 0.7
    mixed = (t.impervious_fraction > 0) & (t.impervious_fraction < 1)
    assert mixed.mean() > 0.05  # edges are mixed pixels, not hard class boundaries
    np.testing.assert_array_equal(t.label, (t.impervious_fraction >= 0.5).astype(np.uint8))


def test_optical_signatures(truths) -> None:
    t = truths[2022]
    r = t.reflectance
    ndvi = _ndvi(r)
    trees, water, bare = t.pure(LandCover.TREES), t.pure(LandCover.WATER), t.pure(LandCover.BARE_SOIL)
    paved, roofs = t.pure(LandCover.PAVED), t.pure(LandCover.BUILDING)
    for m in (trees, water, bare, paved, roofs):
        assert m.sum() > 20
    # vegetation: dark red, bright NIR; NDVI above bare soil and impervious
    assert np.median(ndvi[trees]) > 0.7
    assert np.median(ndvi[trees]) > np.median(ndvi[bare]) + 0.3
    assert np.median(ndvi[trees]) > np.median(ndvi[paved | roofs]) + 0.4
    assert 0.27 < np.median(r[3][trees]) < 0.48 and np.median(r[2][trees]) < 0.045
    # water: NIR below every land class
    land = ~t.pure(LandCover.WATER) & (t.fractions[LandCover.WATER] == 0)
    assert np.percentile(r[3][water], 95) < np.percentile(r[3][land], 5)
    # asphalt-like dark flat paved surfaces and bright flat concrete both exist among impervious pixels
    flat = np.abs(r[3] - r[0]) / r[0]
    assert (paved & (r[3] < 0.16) & (flat < 0.6)).sum() > 10
    assert (roofs & (r[0] > 0.2) & (flat < 0.3)).sum() > 10


def test_bare_soil_is_confused_with_impervious_in_optical_and_sar_helps(truths) -> None:
    """The paper's optical confusion: bare soil pixels are misread as impervious from the four bands more often than
    other pervious land, and adding VV/VH (double bounce) reduces that error."""
    from sklearn.ensemble import RandomForestClassifier

    t = truths[2022]
    rng = np.random.default_rng(0)
    idx = rng.permutation(t.label.size)[:8000]
    y = t.label.ravel()[idx]
    optical = t.reflectance.reshape(4, -1)[:, idx].T
    sar = 10 * np.log10(t.backscatter["ascending"].reshape(2, -1)[:, idx].T)
    bare = t.landcover.ravel()[idx] == LandCover.BARE_SOIL
    veg = (t.pure(LandCover.TREES) | t.pure(LandCover.GRASS)).ravel()[idx]
    test = np.arange(idx.size) >= 4000
    errors = {}
    for name, x in (("optical", optical), ("fused", np.c_[optical, sar])):
        clf = RandomForestClassifier(40, random_state=0, n_jobs=1).fit(x[~test], y[~test])
        wrong = clf.predict(x[test]) != y[test]
        errors[name] = (wrong[bare[test]].mean(), wrong[veg[test]].mean(), wrong.mean())
    bare_err, veg_err, _ = errors["optical"]
    assert bare_err > 0.04 and bare_err > 1.5 * veg_err, errors
    vv = 10 * np.log10(t.backscatter["ascending"][0])
    assert np.median(vv[t.pure(LandCover.BUILDING)]) > np.median(vv[t.pure(LandCover.BARE_SOIL)]) + 4


def _core(mask: np.ndarray, size: int = 5) -> np.ndarray:
    """Pixels whose whole ``size x size`` neighbourhood is in ``mask`` (away from the SAR resolution cell's reach)."""
    from scipy.ndimage import binary_erosion

    return binary_erosion(mask, structure=np.ones((size, size), bool))


def test_sar_signatures(truths) -> None:
    t = truths[2022]
    for orbit in ("ascending", "descending"):
        vv, vh = (10 * np.log10(b) for b in t.backscatter[orbit])
        water, paved = _core(t.pure(LandCover.WATER)), _core(t.pure(LandCover.PAVED), 3)
        trees, roofs = _core(t.pure(LandCover.TREES), 3), t.pure(LandCover.BUILDING)
        assert paved.sum() > 20 and trees.sum() > 20
        assert np.median(vv[water]) < -15 and np.median(vh[water]) < -21
        assert np.median(vv[roofs]) > np.median(vv[paved]) + 5  # double bounce vs smooth roads
        assert np.median(vv[paved]) < -10  # smooth asphalt is dark like water in SAR...
        assert np.median(t.reflectance[3][paved]) > np.median(t.reflectance[3][water]) + 0.08  # ...not in optical
        assert np.median((vh - vv)[trees]) > np.median((vh - vv)[t.pure(LandCover.BARE_SOIL)])  # volume scattering
        assert -9.5 < np.median(vv[trees]) < -5.5
    # double bounce depends on the facades' orientation relative to the track
    roofs = t.pure(LandCover.BUILDING)
    asc, desc = t.backscatter["ascending"][0][roofs], t.backscatter["descending"][0][roofs]
    assert np.abs(10 * np.log10(asc / desc)).max() > 1.0


def test_speckle_enl_matches_setting(truths) -> None:
    t = truths[2022]
    for enl in (4.5, 9.0):
        acq = sentinel1_schedule(WUHAN, 2022, (6,), orbits=("ascending",))[0]
        scene = simulate_sar(t, acq, seed=1, enl=enl)
        # a homogeneous area: pure water pixels with the same true backscatter (one lake object)
        water = t.pure(LandCover.WATER)
        values, counts = np.unique(scene.mean[0][water], return_counts=True)
        homog = water & (scene.mean[0] == values[np.argmax(counts)])
        assert homog.sum() > 1000
        measured = []
        for band in (0, 1):  # VV and VH speckle are independent: two estimates
            x = scene.gamma0[band][homog]
            measured.append(x.mean() ** 2 / x.var())
            # speckle is unbiased: the mean over the area equals the true backscatter
            assert abs(x.mean() / scene.mean[band][homog].mean() - 1) < 0.04
        assert abs(np.mean(measured) - enl) / enl < 0.10, (enl, measured)


def test_scl_matches_cloud_shadow_and_cirrus_masks(truths) -> None:
    t = truths[2022]
    seen = set()
    for acq in sentinel2_schedule(WUHAN, 2021, (4, 5, 6, 7, 8, 9)):
        sc = simulate_optical(t, acq, seed=2)
        cloud = sc.cloud >= CLOUD_FLAG_OPACITY
        assert np.isin(sc.scl10[cloud & sc.valid], (8, 9)).all()
        assert (sc.scl10[(sc.cloud >= 0.6) & sc.valid] == 9).all()
        assert not np.isin(sc.scl10[~cloud & sc.valid], (8, 9)).any()
        assert (sc.scl10[~sc.valid] == 0).all() and (sc.dn[:, ~sc.valid] == 0).all()
        assert (sc.dn[:, sc.valid] > 0).all()
        # 20 m SCL: any flagged 10 m sub-pixel flags the 20 m pixel
        n = sc.scl10.shape[0]
        cloud20 = cloud.reshape(n // 2, 2, n // 2, 2).any(axis=(1, 3))
        valid20 = sc.valid.reshape(n // 2, 2, n // 2, 2).all(axis=(1, 3))
        assert np.isin(sc.scl[cloud20 & valid20], (8, 9)).all()
        clear = ~np.isin(sc.scl10, SCL_MASKED)
        if clear.any():
            # a clear pixel sees the surface: within atmosphere residual + undetected thin cloud/cirrus
            err = np.abs(sc.reflectance[:, clear] - t.reflectance[:, clear])
            assert np.percentile(err, 99) < 0.06
        shadow = (sc.shadow >= SHADOW_FLAG) & (sc.cloud < CLOUD_FLAG_OPACITY) & sc.valid
        assert (sc.scl10[shadow] == 3).all()
        assert (sc.scl10[(sc.cirrus >= CIRRUS_FLAG) & ~shadow & ~cloud & sc.valid] == 10).all()
        assert not np.isin(sc.scl10[~shadow & ~cloud & (sc.cirrus < CIRRUS_FLAG)], (3, 8, 9, 10)).any()
        deep = (sc.scl10 == 3) & (sc.shadow > 0.45)
        if deep.sum() > 100:
            seen.add("shadow")
            ratio = sc.reflectance[3][deep] / t.reflectance[3][deep]
            assert np.median(ratio) < 0.6
        cirrus = sc.scl10 == 10
        if cirrus.sum() > 100:
            seen.add("cirrus")
            assert np.median(sc.reflectance[0][cirrus] - t.reflectance[0][cirrus]) > 0.005
        cc = sc.cloud_cover
        seen.add("overcast" if cc > 80 else "clear" if cc < 10 else "partly")
    assert {"shadow", "cirrus", "overcast", "clear", "partly"} <= seen, seen


def test_growth_between_years_is_exact(truths) -> None:
    a, b = truths[2021], truths[2022]
    gained = (b.label == 1) & (a.label == 0)
    np.testing.assert_array_equal(b.growth, gained.astype(np.uint8))
    assert gained.sum() > 20
    assert ((a.label == 1) & (b.label == 0)).sum() == 0  # the city only grows
    # the new impervious land was bare soil (cleared) or cropland the year before
    prev = a.landcover[gained]
    assert np.isin(prev, (LandCover.BARE_SOIL, LandCover.CROPLAND, LandCover.GRASS)).mean() > 0.9
    assert (prev == LandCover.BARE_SOIL).mean() > 0.5
    # growth happens at the city edge, not in the core
    n = b.shape[0]
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    assert np.median(r[gained]) > np.median(r[b.label == 1])


def test_no_temporal_variation_means_clear_pixels_equal_truth(truths) -> None:
    t = truths[2022]
    acq = sentinel2_schedule(WUHAN, 2022, (6,))[0]
    sc = simulate_optical(t, acq, seed=5, cloud_scale=0.0, partial_swath_probability=0.0, temporal_variation=False)
    assert sc.cloud_cover == 0.0 or sc.cloud_cover < 60  # only cirrus can remain
    clear = ~np.isin(sc.scl10, SCL_MASKED)
    refl = (sc.dn[:, clear].astype(np.float64) - 1000) / 10000
    np.testing.assert_allclose(refl, t.reflectance[:, clear], atol=0.011)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="UTM"):
        City("wuhan", 114.3, 30.59, 32649)
    with pytest.raises(ConfigError, match="slug"):
        City("Wu Han", 114.3, 30.59, 32650)
    with pytest.raises(ConfigError, match="size_km"):
        SampleConfig(size_km=0.1)
    with pytest.raises(ConfigError, match="base_year"):
        SampleConfig(years=(2018,))
    with pytest.raises(ConfigError, match="s1_orbits"):
        SampleConfig(s1_orbits=("sideways",))
