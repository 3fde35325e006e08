"""Weak labels: land-cover maps shaped like ESA WorldCover and Esri/Impact Observatory LULC, derived from the truth
*with the errors those products have*.

Real training and validation labels for impervious-surface mappers often come from global 10 m land-cover products
rather than from exact truth. Two are simulated here, each as a pure function of a
:class:`~crofuse.synthetic.landcover.GroundTruth` and the seed (deterministic in city, year and seed):

- :func:`worldcover_map`: ESA WorldCover 10 m (2020 v100, 2021 v200; Zanaga et al. 2021, 2022), legend 10-100,
  built-up = 50. Errors: roads narrower than about a pixel are omitted (they become the surrounding class), the
  remaining omission falls on low-density pixels at the urban edge, and the built-up user's/producer's accuracy are
  set to :data:`WORLDCOVER_BUILT` (omission-dominated); the other classes are confused towards grassland (Venter et
  al. 2022: "WC is biased towards over-estimating grass cover") until the overall accuracy is the one each version
  was validated at (74.4 % for v100, 76.7 % for v200).
- :func:`io_lulc_map`: Impact Observatory / Esri 10 m Annual LULC v02 (Karra et al. 2021), legend 0-11, built area =
  7. Errors: urban green inside dense built blocks becomes built area (over-inclusive built area), a 5 x 5 majority
  filter gives it the product's smooth, blocky look (coarser effective resolution), built-area accuracy set to
  :data:`IO_BUILT` (commission-dominated), other classes confused towards rangeland (Venter et al. 2022: "Esri
  towards shrub and scrub") until the overall accuracy is the assessed "over 75 %".

How much error there is comes from the products' validation figures; *where* it falls comes from the mechanisms
above (omission on narrow roads and sparse edge pixels; commission on mixed pixels next to buildings and on bare
soil). Every figure and its source is in ``docs/sample-data.md`` ("Weak labels"). None is tuned on model results.

The maps are computed on the truth's 10 m UTM grid; :func:`to_worldcover_grid` resamples the WorldCover one to the
real product's EPSG:4326 grid (1/12000 degree, nearest), which adds the disagreement any user of the real product
meets when resampling it back onto a UTM grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from crofuse.errors import ConfigError
from crofuse.synthetic.noise import derive_seed, fractal_noise, rank_normalise
from crofuse.synthetic.signatures import LandCover

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

    from crofuse.synthetic.landcover import GroundTruth


# The products' legends are owned by crofuse.labels (the label sources read them); the sample catalog writes them.
from crofuse.labels.legends import (  # noqa: E402, F401  (re-exported: the catalog writes them)
    IO_BUILT_AREA,
    IO_LULC_CLASSES,
    IO_NODATA,
    WORLDCOVER_BUILT_UP,
    WORLDCOVER_CLASSES,
    WORLDCOVER_NODATA,
)

# truth class (LandCover value; 6 and 7 = built) -> product code
_WC_CODE = {LandCover.WATER: 80, LandCover.TREES: 10, LandCover.GRASS: 30, LandCover.CROPLAND: 40,
            LandCover.BARE_SOIL: 60}
_IO_CODE = {LandCover.WATER: 1, LandCover.TREES: 2, LandCover.GRASS: 11, LandCover.CROPLAND: 5,
            LandCover.BARE_SOIL: 8}
# where a confused non-built pixel goes: towards the class each product over-estimates (Venter et al. 2022)
_WC_CONFUSED = {10: 30, 30: 40, 40: 30, 60: 30}
_IO_CONFUSED = {2: 11, 11: 5, 5: 11, 8: 11}


# ---------------------------------------------------------------------------------------- error budgets (sources)
@dataclass(frozen=True)
class Accuracy:
    """Target accuracy of a simulated product against the exact truth.

    built_ua, built_pa: user's and producer's accuracy of the built class against the impervious label.
    overall: overall (multi-class) accuracy against the truth's classes.
    """

    built_ua: float
    built_pa: float
    overall: float


WORLDCOVER_BUILT = (0.88, 0.78)
"""Built-up (user's, producer's) accuracy of the WorldCover-shaped map. Level: built area is mapped at 83 % accuracy
on average by the three global 10 m products (Venter et al. 2022, Remote Sensing 14, 4101, abstract); split so that
omission dominates (narrow roads and sparse edge settlement missed, as described for WorldCover). The split is ours:
the per-class table of the WorldCover PVR was not available to check (see docs/sample-data.md)."""
IO_BUILT = (0.78, 0.88)
"""Built-area (user's, producer's) accuracy of the IO-LULC-shaped map: same 83 % level (Venter et al. 2022), split
so that commission dominates (urban green inside built blocks mapped as built area). The split is ours."""

WORLDCOVER_PRODUCTS: dict[int, tuple[str, str, float]] = {
    2020: ("1.0.0", "v100", 0.744),  # Tsendbazar et al. 2021, WorldCover 2020 v100 PVR: overall accuracy 74.4 %
    2021: ("2.0.0", "v200", 0.767),  # WorldCover 2021 v200 PVR (2022): overall accuracy 76.7 %
}
"""Product year -> (``esa_worldcover:product_version``, file version tag, validated global overall accuracy)."""
IO_OVERALL = 0.75
"""Impact Observatory annual v02: "each of the maps has an assessed average accuracy of over 75 %" (Planetary
Computer collection description); Venter et al. 2022 measured 75 % for Esri's 2020 map (global, 250 m2 MMU)."""

NARROW_ROAD_SQUARE_PX = 2
"""A paved feature is "narrower than about a pixel" where no 2 x 2 block of impervious pixels contains it."""
SURROUNDING_WINDOW_PX = 5
"""Omitted built pixels take the dominant pervious cover within this window (50 m): the surrounding class."""
DENSITY_WINDOW_PX = 5
"""Local built density (share of impervious pixels) is measured over this window (50 m)."""
BLOCK_WINDOW_PX = 11
"""Block-scale built density (where omission and commission fall) is measured over this window (110 m, about a
city block of the sample cities)."""
IO_DENSE_BLOCK = 0.6
"""IO: pervious pixels whose 50 m neighbourhood is at least this share impervious become built area."""
IO_MAJORITY_WINDOW_PX = 5
"""IO: window (pixels) of the majority filter that makes the map smooth and blocky (see docs/sample-data.md)."""


def worldcover_years(base_year: int, years: tuple[int, ...] | list[int]) -> list[int]:
    """The WorldCover product years a catalog of ``years`` (drawn from ``base_year``) holds: 2020 and 2021 only,
    after ``base_year`` and not after the catalog's last year."""
    return [y for y in sorted(WORLDCOVER_PRODUCTS) if base_year < y <= max(years)]


def worldcover_item_id(city: str, year: int) -> str:
    """``ESA_WorldCover_10m_2021_v200_<city>`` (the real ids end with the 3 x 3 degree tile, e.g. ``N30E114``)."""
    return f"ESA_WorldCover_10m_{year}_{WORLDCOVER_PRODUCTS[year][1]}_{city}"


def worldcover_tile(lon: float, lat: float) -> str:
    """The name of the real product's 3 x 3 degree tile holding (lon, lat), e.g. ``N30E114``."""
    la, lo = int(np.floor(lat / 3) * 3), int(np.floor(lon / 3) * 3)
    return f"{'N' if la >= 0 else 'S'}{abs(la):02d}{'E' if lo >= 0 else 'W'}{abs(lo):03d}"


# ------------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class WeakLabel:
    """A simulated product map on the truth's 10 m grid and how it compares with the exact truth.

    classes: ``(y, x)`` uint8 product codes. built: ``(y, x)`` bool, the product's built class.
    narrow_roads: ``(y, x)`` bool, truth pixels on paved features narrower than about a pixel (WorldCover only).
    accuracy: measured built UA/PA and overall (multi-class) accuracy against the truth on this grid.
    target: the accuracy the map was built to.
    """

    classes: np.ndarray
    built: np.ndarray
    accuracy: Accuracy
    target: Accuracy
    narrow_roads: np.ndarray | None = None
    details: dict = field(default_factory=dict)


def built_accuracy(built: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """User's and producer's accuracy of a built mask against a truth mask, and their binary agreement (OA)."""
    b, t = np.asarray(built, bool), np.asarray(truth, bool)
    if valid is not None:
        b, t = b[valid], t[valid]
    tp = float(np.sum(b & t))
    return {
        "ua": tp / max(float(b.sum()), 1.0),
        "pa": tp / max(float(t.sum()), 1.0),
        "oa": float(np.mean(b == t)) if b.size else float("nan"),
        "n_map": float(b.sum()),
        "n_truth": float(t.sum()),
    }


# ------------------------------------------------------------------------------------------------ the building blocks
def _truth_classes(truth: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """(built = impervious label, dominant pervious LandCover class of each pixel)."""
    built = truth.label.astype(bool)
    pervious = np.argmax(truth.fractions[1:6], axis=0).astype(np.uint8) + 1  # 1 water .. 5 bare soil
    return built, pervious


def _surrounding_class(truth: GroundTruth, window: int = SURROUNDING_WINDOW_PX) -> np.ndarray:
    """Dominant pervious LandCover class within ``window`` pixels (what a missed built pixel is mapped as)."""
    from scipy.ndimage import uniform_filter

    frac = uniform_filter(truth.fractions[1:6], size=(1, window, window), mode="nearest")
    return (np.argmax(frac, axis=0) + 1).astype(np.uint8)


def narrow_paved(truth: GroundTruth, square: int = NARROW_ROAD_SQUARE_PX) -> np.ndarray:
    """Impervious pixels of linear paved features narrower than about a pixel: paved-dominant pixels of the label
    that no ``square x square`` block of impervious pixels contains (a morphological opening removes them)."""
    from scipy.ndimage import binary_opening

    label = truth.label.astype(bool)
    opened = binary_opening(label, structure=np.ones((square, square), bool), border_value=1)
    paved = truth.fractions[LandCover.PAVED] >= truth.fractions[LandCover.BUILDING]
    return label & ~opened & paved


def _density(built: np.ndarray, window: int = DENSITY_WINDOW_PX) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(built.astype(np.float32), size=window, mode="nearest")


def _noise(shape: tuple[int, int], seed: int, *keys: int | str) -> np.ndarray:
    """Spatially correlated uniform noise in [0, 1) (blobs of a few pixels) for one purpose."""
    return rank_normalise(fractal_noise(shape, seed=derive_seed(seed, *keys), beta=2.6, min_period=2.0))


def _take(mask: np.ndarray, score: np.ndarray, n: int, *, lowest: bool) -> np.ndarray:
    """The ``n`` pixels of ``mask`` with the lowest (or highest) ``score`` (stable order: deterministic)."""
    out = np.zeros(mask.shape, bool)
    idx = np.flatnonzero(mask)
    n = int(min(max(n, 0), idx.size))
    if n == 0:
        return out
    s = score.ravel()[idx]
    order = np.argsort(s if lowest else -s, kind="stable")[:n]
    out.ravel()[idx[order]] = True
    return out


def calibrate_built(
    built: np.ndarray,
    truth_built: np.ndarray,
    *,
    ua: float,
    pa: float,
    omit_score: np.ndarray,
    commit_score: np.ndarray,
    never_restore: np.ndarray | None = None,
    never_commit: np.ndarray | None = None,
) -> np.ndarray:
    """Adjust a built mask so that its user's/producer's accuracy against ``truth_built`` are ``ua``/``pa``.

    Omission is moved on the truth pixels of lowest ``omit_score`` (removed first / restored last), commission on
    the non-truth pixels of highest ``commit_score``. ``never_restore`` (e.g. omitted narrow roads) stays omitted,
    ``never_commit`` (e.g. water) is never made built. Where the mechanisms already omit more than ``1 - pa``
    allows and nothing may be restored, the producer's accuracy stays lower.
    """
    if not (0 < ua <= 1 and 0 < pa <= 1):
        raise ConfigError(f"built accuracy targets must be in (0, 1]; got ua={ua}, pa={pa}")
    built = built.copy()
    t = truth_built.astype(bool)
    tp_target = int(round(pa * t.sum()))
    tp = built & t
    if tp.sum() > tp_target:
        built &= ~_take(tp, omit_score, int(tp.sum()) - tp_target, lowest=True)
    elif tp.sum() < tp_target:
        pool = t & ~built & (~never_restore if never_restore is not None else True)
        built |= _take(pool, omit_score, tp_target - int(tp.sum()), lowest=False)
    tp_now = int((built & t).sum())
    fp_target = int(round(tp_now * (1 - ua) / ua))
    fp = built & ~t
    if fp.sum() > fp_target:
        built &= ~_take(fp, commit_score, int(fp.sum()) - fp_target, lowest=True)
    elif fp.sum() < fp_target:
        pool = ~t & ~built & (~never_commit if never_commit is not None else True)
        built |= _take(pool, commit_score, fp_target - int(fp.sum()), lowest=False)
    return built


def _confuse(classes: np.ndarray, truth_codes: np.ndarray, *, overall: float, partners: dict[int, int],
             eligible: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Relabel coherent patches of correctly mapped ``eligible`` pixels to their partner class until the overall
    agreement with ``truth_codes`` is ``overall`` (no change if the map is already below it)."""
    n_err = int(np.sum(classes != truth_codes))
    extra = int(round((1 - overall) * classes.size)) - n_err
    if extra <= 0:
        return classes
    mapped = np.zeros(256, np.uint8)
    has = np.zeros(256, bool)
    for src, dst in partners.items():
        mapped[src], has[src] = dst, True
    pool = eligible & (classes == truth_codes) & has[classes]
    pick = _take(pool, noise, extra, lowest=True)
    out = classes.copy()
    out[pick] = mapped[classes[pick]]
    return out


def _codes(lc: np.ndarray, table: dict[int, int]) -> np.ndarray:
    lut = np.zeros(8, np.uint8)
    for k, v in table.items():
        lut[int(k)] = v
    return lut[lc]


def _majority(classes: np.ndarray, window: int) -> np.ndarray:
    """Majority (mode) filter over ``window x window`` pixels; ties keep the pixel's own class."""
    from scipy.ndimage import uniform_filter

    values = np.unique(classes)
    best = np.full(classes.shape, -1.0, np.float32)
    out = classes.copy()
    for v in values:
        share = uniform_filter((classes == v).astype(np.float32), size=window, mode="nearest")
        share += (classes == v) * np.float32(0.5 / window**2)  # tie-break towards the own class
        better = share > best
        out[better] = v
        best = np.maximum(best, share)
    return out


def _scores(truth: GroundTruth, t_built: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(omission score, commission score) per pixel for :func:`calibrate_built`.

    Omission falls first on truth pixels with a low impervious share (mixed pixels), among them first on those of
    low block-scale built density (:data:`BLOCK_WINDOW_PX`): partly built pixels of sparse settlement at the urban
    edge and the edges of roads through open land; last on fully sealed pixels inside dense blocks. Commission falls first on pervious pixels inside
    dense blocks with a high impervious share (mixed pixels next to buildings), a little more on bare soil.
    Coherent noise keeps the errors in patches of a few pixels rather than on a sharp density contour.
    """
    block = _density(t_built, BLOCK_WINDOW_PX)
    isf = truth.impervious_fraction
    shape = t_built.shape
    omit = block + 2.0 * isf + 0.3 * _noise(shape, seed, "omit")
    commit = block + 0.5 * isf + 0.1 * truth.fractions[LandCover.BARE_SOIL] + 0.2 * _noise(shape, seed, "commit")
    return omit, commit


def _accuracy(built: np.ndarray, truth_built: np.ndarray, classes: np.ndarray, truth_codes: np.ndarray) -> Accuracy:
    a = built_accuracy(built, truth_built)
    return Accuracy(built_ua=a["ua"], built_pa=a["pa"], overall=float(np.mean(classes == truth_codes)))


# ---------------------------------------------------------------------------------------------------- the products
def worldcover_map(truth: GroundTruth, *, seed: int, product_year: int) -> WeakLabel:
    """The ESA-WorldCover-shaped map of ``truth`` (which should be the truth of ``product_year``), on its 10 m grid.

    1. Narrow roads: paved features narrower than about a pixel (:func:`narrow_paved`) are omitted and take the
       surrounding class (WorldCover does not resolve roads much narrower than its 10 m pixel).
    2. Built-up under-estimated at the urban edge: further omission, up to the producer's accuracy of
       :data:`WORLDCOVER_BUILT`, falls on the truth pixels of lowest local built density (plus coherent noise).
    3. Commission up to the user's accuracy on mixed pixels next to buildings and on bare soil.
    4. The other classes are confused towards grassland until the overall accuracy of the product version.
    """
    if product_year not in WORLDCOVER_PRODUCTS:
        raise ConfigError(f"WorldCover exists for {sorted(WORLDCOVER_PRODUCTS)} only, not {product_year}")
    s = derive_seed(seed, "worldcover", truth.city.key, product_year)
    ua, pa = WORLDCOVER_BUILT
    overall = WORLDCOVER_PRODUCTS[product_year][2]
    t_built, pervious = _truth_classes(truth)
    surround = _surrounding_class(truth)
    roads = narrow_paved(truth)
    shape = t_built.shape
    omit_score, commit_score = _scores(truth, t_built, s)
    water = (pervious == LandCover.WATER) & ~t_built
    built = calibrate_built(t_built & ~roads, t_built, ua=ua, pa=pa, omit_score=omit_score,
                            commit_score=commit_score, never_restore=roads, never_commit=water)
    truth_codes = np.where(t_built, WORLDCOVER_BUILT_UP, _codes(pervious, _WC_CODE)).astype(np.uint8)
    natural = np.where(t_built, _codes(surround, _WC_CODE), _codes(pervious, _WC_CODE))
    classes = np.where(built, WORLDCOVER_BUILT_UP, natural).astype(np.uint8)
    classes = _confuse(classes, truth_codes, overall=overall, partners=_WC_CONFUSED, eligible=~built & ~t_built,
                       noise=_noise(shape, s, "confuse"))
    return WeakLabel(
        classes=classes, built=classes == WORLDCOVER_BUILT_UP, narrow_roads=roads,
        accuracy=_accuracy(classes == WORLDCOVER_BUILT_UP, t_built, classes, truth_codes),
        target=Accuracy(ua, pa, overall),
        details={"narrow_road_pixels": int(roads.sum()), "truth_built_pixels": int(t_built.sum())},
    )


def io_lulc_map(truth: GroundTruth, *, seed: int) -> WeakLabel:
    """The IO-LULC-shaped (Esri 10 m Annual LULC v02) map of ``truth``, on its 10 m grid.

    1. Over-inclusive built area: pervious pixels (urban green, yards) whose 50 m neighbourhood is at least
       :data:`IO_DENSE_BLOCK` impervious become built area (Venter et al. 2022).
    2. Coarser effective resolution: a :data:`IO_MAJORITY_WINDOW_PX` majority filter (smooth, blocky classes;
       narrow roads and small parks disappear into their surroundings).
    3. Built-area user's/producer's accuracy set to :data:`IO_BUILT`; other classes confused towards rangeland until
       the assessed overall accuracy (:data:`IO_OVERALL`).
    """
    s = derive_seed(seed, "io-lulc", truth.city.key, truth.year)
    ua, pa = IO_BUILT
    t_built, pervious = _truth_classes(truth)
    dens = _density(t_built)
    truth_codes = np.where(t_built, IO_BUILT_AREA, _codes(pervious, _IO_CODE)).astype(np.uint8)
    water = (pervious == LandCover.WATER) & ~t_built
    dense_green = ~t_built & ~water & (dens >= IO_DENSE_BLOCK)
    classes = np.where(dense_green, IO_BUILT_AREA, truth_codes).astype(np.uint8)
    classes = _majority(classes, IO_MAJORITY_WINDOW_PX)
    shape = t_built.shape
    omit_score, commit_score = _scores(truth, t_built, s)
    built = calibrate_built(classes == IO_BUILT_AREA, t_built, ua=ua, pa=pa, omit_score=omit_score,
                            commit_score=commit_score, never_commit=water)
    # pixels that stop being built take the majority natural class around them
    natural = _majority(np.where(t_built, _codes(_surrounding_class(truth), _IO_CODE), truth_codes),
                        IO_MAJORITY_WINDOW_PX)
    classes = np.where(built, IO_BUILT_AREA, np.where(classes == IO_BUILT_AREA, natural, classes)).astype(np.uint8)
    classes = _confuse(classes, truth_codes, overall=IO_OVERALL, partners=_IO_CONFUSED, eligible=~built & ~t_built,
                       noise=_noise(shape, s, "confuse"))
    return WeakLabel(
        classes=classes, built=classes == IO_BUILT_AREA,
        accuracy=_accuracy(classes == IO_BUILT_AREA, t_built, classes, truth_codes),
        target=Accuracy(ua, pa, IO_OVERALL),
        details={"dense_green_pixels": int(dense_green.sum()), "truth_built_pixels": int(t_built.sum())},
    )


# -------------------------------------------------------------------------------------------- the WorldCover grid
WORLDCOVER_RESOLUTION_DEG = 1.0 / 12000.0
"""The real product's pixel: 1/12000 degree (0.3 arc-second, ~10 m at the equator), EPSG:4326."""


def worldcover_geobox(geobox: GeoBox) -> GeoBox:
    """The EPSG:4326 grid at 1/12000 degree covering ``geobox``, with edges on the product's global grid."""
    from affine import Affine
    from odc.geo.geobox import GeoBox as _GeoBox

    r = WORLDCOVER_RESOLUTION_DEG
    b = geobox.extent.to_crs("EPSG:4326").boundingbox
    i0, i1 = int(np.floor(b.left / r + 1e-9)), int(np.ceil(b.right / r - 1e-9))
    j0, j1 = int(np.floor(b.bottom / r + 1e-9)), int(np.ceil(b.top / r - 1e-9))
    return _GeoBox((j1 - j0, i1 - i0), Affine(r, 0.0, i0 * r, 0.0, -r, j1 * r), "EPSG:4326")


def reproject_classes(classes: np.ndarray, src: GeoBox, dst: GeoBox, *, nodata: int = 0) -> np.ndarray:
    """Nearest-neighbour resampling of a class map between grids (``nodata`` where ``dst`` is outside ``src``)."""
    from rasterio.warp import Resampling, reproject

    out = np.full(tuple(dst.shape), nodata, dtype=classes.dtype)
    reproject(
        classes, out, src_transform=src.affine, src_crs=src.crs.to_wkt(), dst_transform=dst.affine,
        dst_crs=dst.crs.to_wkt(), resampling=Resampling.nearest, src_nodata=nodata, dst_nodata=nodata,
    )
    return out


def to_worldcover_grid(classes: np.ndarray, geobox: GeoBox) -> tuple[np.ndarray, GeoBox]:
    """A WorldCover-shaped map on the product's own grid: EPSG:4326, 1/12000 degree, nodata 0 outside the tile."""
    dst = worldcover_geobox(geobox)
    return reproject_classes(classes, geobox, dst, nodata=WORLDCOVER_NODATA), dst


__all__ = [
    "IO_BUILT",
    "IO_BUILT_AREA",
    "IO_LULC_CLASSES",
    "IO_OVERALL",
    "WORLDCOVER_BUILT",
    "WORLDCOVER_BUILT_UP",
    "WORLDCOVER_CLASSES",
    "WORLDCOVER_PRODUCTS",
    "Accuracy",
    "WeakLabel",
    "built_accuracy",
    "calibrate_built",
    "io_lulc_map",
    "narrow_paved",
    "reproject_classes",
    "to_worldcover_grid",
    "worldcover_geobox",
    "worldcover_item_id",
    "worldcover_map",
    "worldcover_tile",
    "worldcover_years",
]
