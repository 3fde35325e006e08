"""The accuracy sample of a city-year: strata from the maps, the design on disk, labels read back or read off rasters.

A city-year with a previous mapped year is stratified by its change map: ``stable_pervious``, ``stable_impervious``,
``gain``, ``loss`` (where present), and a ``buffer`` stratum: the stable pixels within :data:`BUFFER_PIXELS` of
mapped gain or loss, where most of the change the map missed lies (Olofsson et al. 2020, :func:`buffer_strata`). The
first mapped year of a city is stratified by its map: ``pervious``, ``impervious``. Only pixels inside the AOI and
mapped in both years (the pixels the mapped figures count) form the population, so the estimated areas refer to
``common_valid_km2`` (``valid_km2`` for a first year). The reference labels are always the map classes; a point's
stratum and its map class differ only in the buffer.

Files, in ``<output>/<city>/<year>/sample/``::

    design.json       the design: strata, their areas, allocation, seed, grid, and every point (id, row, col)
    sample.csv        the points to label: point_id, x, y (map CRS), lon, lat (WGS 84), stratum, map_class,
                      reference (empty)
    sample.geojson    the same points as GeoJSON (lon/lat, RFC 7946)
    labelled.csv      a person's labels: sample.csv with the reference column filled (or labelled.geojson)
    reference-labels.csv  labels read automatically from reference rasters (e.g. the catalog's reference.tif)

``update_statistics`` estimates from ``labelled.csv``/``labelled.geojson`` when one exists, else (when the folder
has ``reference.tif`` for both years) from a sample it labels from those rasters. ``docs/labelling.md`` is the
how-to for a person labelling in a GIS.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crofuse import IMPERVIOUS, NODATA_LABEL, PERVIOUS
from crofuse.errors import DataError
from crofuse.io.store import Location, location
from crofuse.statistics.area import M2_PER_KM2
from crofuse.statistics.estimation import (
    Z95,
    StratifiedEstimate,
    allocate,
    draw_stratified,
    error_matrix,
    sample_size,
    stratified_combination,
    stratified_estimate,
    unit_counts,
)

SAMPLE_DIR = "sample"
DESIGN_NAME = "design.json"
SAMPLE_CSV = "sample.csv"
SAMPLE_GEOJSON = "sample.geojson"
LABELLED_NAMES = ("labelled.csv", "labelled.geojson")
REFERENCE_LABELS_NAME = "reference-labels.csv"
CSV_COLUMNS = ["point_id", "x", "y", "lon", "lat", "stratum", "map_class", "reference"]

CHANGE_CLASSES: tuple[str, ...] = ("stable_pervious", "stable_impervious", "gain", "loss")
YEAR_CLASSES: tuple[str, ...] = ("pervious", "impervious")
OUTSIDE = 255
"""Stratum code of pixels outside the population (nodata in either year, or outside the AOI)."""

BUFFER = "buffer"
"""Name of the buffer stratum: stable pixels next to mapped change (:func:`buffer_strata`)."""
BUFFER_PIXELS = 1
"""Default width of the buffer stratum in pixels (Chebyshev distance: the 8 neighbours of mapped change, a 3 × 3
window). Chosen from the sensors and the map grid, not from the estimates: at 10 m the omitted part of a new block
lies along its mapped edge, the pixels a block edge crosses are mixed (a pixel is impervious at ≥ 50 % cover), the
Sentinel-1 IW GRD resolution is about 20 m (a point's backscatter spreads into its neighbours) and Sentinel-2's
multi-temporal co-registration is specified to 0.3 pixel; all of this moves a mapped edge by about one pixel. A
wider ring dilutes the stratum: around the flicker of a post-classification change map every pixel of mapped change
adds up to 8 (1 px) or 24 (2 px) buffer pixels. Olofsson et al. 2020 (and the Open MRV sampling tutorial, section
4.2, with 2 Landsat pixels = 60 m) build the buffer from stable pixels adjacent to mapped change."""
BUFFER_AROUND: tuple[str, ...] = ("gain", "loss")
"""Map classes whose neighbourhood is the buffer (mapped change)."""
BUFFER_OF: tuple[str, ...] = ("stable_pervious", "stable_impervious")
"""Map classes the buffer takes its pixels from: a pixel of either stable class can be missed change (gain the map
missed is pervious-then-pervious in the map, or impervious in both years where the previous map erred)."""

EXPECTED_USER_ACCURACY: Mapping[str, float] = {
    "stable_pervious": 0.95, "stable_impervious": 0.90, "gain": 0.60, "loss": 0.60,
    "pervious": 0.90, "impervious": 0.90, BUFFER: 0.80,
}
"""Conjectured user's accuracies for eq. (13), after the paper's example (0.95 and 0.90 for the stable classes, 0.6–0.7
for change). Change strata of a post-classification comparison are mostly flicker, so 0.6 is, if anything, high. The
buffer (stable pixels next to mapped change) is where the stable strata's errors concentrate (Olofsson et al. 2020):
0.8, between the two."""

MIN_EXPECTED_OMISSION = 5
"""Fewest units of omitted gain the buffer's sample should be expected to hold: the normal approximation of a
proportion needs ``n p ≥ 5`` (the textbook rule), and a buffer whose sample holds only one or two units of the gain
it is there to catch gives a skewed estimate and too narrow an interval (Olofsson et al. 2020)."""
BUFFER_OMISSION_SHARE = 0.5
"""Conjectured share of the omitted gain that lies in the buffer, as in the Open MRV sampling tutorial (section 4.2:
"assume that half of the pixels of disturbance in the forest stratum will be captured by the buffer stratum")."""

STRATIFICATION_VERSION = f"buffer{BUFFER_PIXELS}"
"""The rules the default design stratifies by, part of :func:`strata_fingerprint`: designs that
``update_statistics`` drew by older rules are redrawn."""

MIN_LABELLED = 30
"""Fewest labelled points a stratum may have for an estimate (or all of its points, when it has fewer)."""

DRAWN_BY_UPDATE = "update_statistics"
"""``drawn_by`` of designs that :func:`~crofuse.statistics.update.update_statistics` drew itself (it redraws them
when the map changes); designs drawn by a person (``crofuse statistics sample design``) are never redrawn."""


class SampleError(DataError):
    """A sample file is unusable: wrong CRS, unknown labels, points outside the AOI, too few labels..."""


# --------------------------------------------------------------------------------------------------------------------
# Strata
# --------------------------------------------------------------------------------------------------------------------
def change_strata(previous: np.ndarray, current: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """Stratum codes (index into :data:`CHANGE_CLASSES`) of two binary maps; :data:`OUTSIDE` elsewhere."""
    previous, current = np.asarray(previous), np.asarray(current)
    out = np.full(current.shape, OUTSIDE, dtype="uint8")
    out[(previous == PERVIOUS) & (current == PERVIOUS)] = 0
    out[(previous == IMPERVIOUS) & (current == IMPERVIOUS)] = 1
    out[(previous == PERVIOUS) & (current == IMPERVIOUS)] = 2
    out[(previous == IMPERVIOUS) & (current == PERVIOUS)] = 3
    if inside is not None:
        out[~np.asarray(inside, bool)] = OUTSIDE
    return out


def year_strata(current: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """Stratum codes (index into :data:`YEAR_CLASSES`) of one binary map; :data:`OUTSIDE` elsewhere."""
    current = np.asarray(current)
    out = np.full(current.shape, OUTSIDE, dtype="uint8")
    out[current == PERVIOUS] = 0
    out[current == IMPERVIOUS] = 1
    if inside is not None:
        out[~np.asarray(inside, bool)] = OUTSIDE
    return out


def buffer_strata(
    strata: np.ndarray,
    classes: Sequence[str],
    *,
    width: int = BUFFER_PIXELS,
    around: Sequence[str] = BUFFER_AROUND,
    of: Sequence[str] = BUFFER_OF,
) -> np.ndarray:
    """The map classes with a buffer stratum: pixels of the ``of`` classes within ``width`` pixels (Chebyshev
    distance) of a pixel mapped as one of ``around`` get the code ``len(classes)`` (:data:`BUFFER`).

    Olofsson, P., Arévalo, P., Espejo, A. B., Green, C., Lindquist, E., McRoberts, R. E., Sanz, M. J. (2020).
    *Mitigating the effects of omission errors on area and area change estimates.* Remote Sensing of Environment
    236: 111492. Change a map misses (omission) lies mostly next to the change it found; left in the large stable
    strata it is rare there, its few sample units decide the estimate, and the interval is too narrow. A small
    stratum of stable pixels next to mapped change holds most of it, sampled as its own stratum.

    ``strata`` is a class raster (:func:`change_strata`); the result is ``strata`` itself when ``width`` is 0 or the
    classes have no ``around`` class (a first year).
    """
    strata = np.asarray(strata)
    src = [classes.index(c) for c in around if c in classes]
    dst = [classes.index(c) for c in of if c in classes]
    if width < 0:
        raise ValueError(f"the buffer width must be 0 or more pixels, got {width}")
    if width == 0 or not src or not dst:
        return strata
    from scipy.ndimage import binary_dilation

    near = binary_dilation(np.isin(strata, src), structure=np.ones((2 * width + 1,) * 2, bool))
    out = strata.copy()
    out[near & np.isin(strata, dst)] = len(classes)
    return out


def buffer_minimum(gain_km2: float, buffer_km2: float, expected_gain_user_accuracy: float) -> int:
    """Fewest points of the buffer stratum so that its sample is expected to hold :data:`MIN_EXPECTED_OMISSION`
    units of omitted gain, from the design's own conjectures.

    With the conjectured user's accuracy ``U`` of the gain stratum, and the producer's accuracy conjectured equal to
    it (the map neither over- nor under-states gain), the gain the map misses is ``(1 − U) A_gain``; a share
    :data:`BUFFER_OMISSION_SHARE` of it lies in the buffer, so the buffer's conjectured share of gain is
    ``q = 0.5 (1 − U) A_gain / A_buffer`` and it needs ``ceil(5 / q)`` points. Gain, not loss: impervious growth is
    what the estimates are for, and impervious surface rarely reverts (GAIA, Gong et al. 2020, treats it as
    irreversible), so a conjecture on loss would only inflate the sample.
    """
    if gain_km2 <= 0 or buffer_km2 <= 0:
        return 0
    q = min(1.0, BUFFER_OMISSION_SHARE * (1.0 - expected_gain_user_accuracy) * gain_km2 / buffer_km2)
    return int(math.ceil(MIN_EXPECTED_OMISSION / q - 1e-9)) if q > 0 else 0


def strata_fingerprint(strata: np.ndarray) -> str:
    """A short hash of a class raster and of the stratification rules (:data:`STRATIFICATION_VERSION`): a design
    drawn from another map, or by older rules, has another fingerprint."""
    h = hashlib.sha256(np.ascontiguousarray(strata, dtype="uint8").tobytes())
    h.update(STRATIFICATION_VERSION.encode())
    return h.hexdigest()[:16]


def design_seed(city: str, year: int) -> int:
    """The deterministic seed of the design ``update_statistics`` draws for a city-year."""
    return int.from_bytes(hashlib.sha256(f"crofuse-sample/{city}/{int(year)}".encode()).digest()[:4], "big")


# --------------------------------------------------------------------------------------------------------------------
# The design
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleDesign:
    """A stratified random sample of pixels of one city-year's map (what ``design.json`` holds).

    ``classes`` are the map classes (and the reference labels), ``strata`` the strata (the classes, plus
    :data:`BUFFER` for a change design); ``stratum_*`` and ``allocation`` are per stratum, ``stratum`` and
    ``map_class`` per point (indices into ``strata`` and ``classes``).
    """

    city: str
    year: int
    previous_year: int  # -1: a first year, stratified by the map alone
    classes: tuple[str, ...]
    stratum_area_km2: tuple[float, ...]
    stratum_pixels: tuple[int, ...]
    allocation: tuple[int, ...]
    seed: int
    crs: str  # WKT of the map CRS
    transform: tuple[float, ...]  # the map's affine transform (a, b, c, d, e, f)
    shape: tuple[int, int]
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)
    stratum: np.ndarray = field(repr=False)
    fingerprint: str = ""
    target_se: float = 0.01
    expected_user_accuracy: tuple[float, ...] = ()
    drawn_by: str = DRAWN_BY_UPDATE
    created: str = ""
    strata: tuple[str, ...] = ()  # () : the strata are the classes
    map_class: np.ndarray | None = field(default=None, repr=False)  # None: each point's stratum
    buffer_px: int = 0

    def __post_init__(self) -> None:
        if not self.strata:
            object.__setattr__(self, "strata", tuple(self.classes))
        if self.map_class is None:
            if self.strata != tuple(self.classes):
                raise ValueError("a design whose strata are not its classes needs the map class of every point")
            object.__setattr__(self, "map_class", np.asarray(self.stratum, dtype="int64").copy())
        if not (len(self.stratum_area_km2) == len(self.stratum_pixels) == len(self.allocation) == len(self.strata)):
            raise ValueError(f"strata {self.strata}: need one area, pixel count and allocation per stratum")

    @property
    def n(self) -> int:
        return int(len(self.rows))

    @property
    def point_ids(self) -> list[str]:
        return [f"p{i + 1:04d}" for i in range(self.n)]

    @property
    def geobox(self) -> Any:
        from affine import Affine
        from odc.geo.geobox import GeoBox

        return GeoBox(self.shape, Affine(*self.transform), self.crs)

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates of the points in the map CRS."""
        return self.geobox.pix2wld(self.cols + 0.5, self.rows + 0.5)

    def lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        import pyproj

        x, y = self.xy()
        return pyproj.Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True).transform(x, y)

    def crs_name(self) -> str:
        import pyproj

        crs = pyproj.CRS.from_user_input(self.crs)
        code = crs.to_epsg()
        return f"EPSG:{code}" if code else crs.name


def design_sample(
    strata: np.ndarray,
    area: np.ndarray,
    geobox: Any,
    *,
    classes: Sequence[str],
    city: str,
    year: int,
    previous_year: int = -1,
    seed: int,
    n_total: int | None = None,
    target_se: float = 0.01,
    expected_user_accuracy: Mapping[str, float] | None = None,
    min_rare: int = 75,
    rare_share: float = 0.1,
    allocation: Sequence[int] | None = None,
    drawn_by: str = DRAWN_BY_UPDATE,
    buffer_px: int = BUFFER_PIXELS,
) -> SampleDesign:
    """Draw a stratified random sample of pixels (Olofsson et al. 2014, section 5.1; Olofsson et al. 2020).

    The strata are the map classes plus, for a change design, a buffer stratum (:func:`buffer_strata`: stable pixels
    within ``buffer_px`` pixels of mapped gain or loss; 0 for none). The total is eq. (13) for a standard error
    ``target_se`` of overall accuracy under the conjectured user's accuracies of the strata
    (``expected_user_accuracy``, default :data:`EXPECTED_USER_ACCURACY`), unless ``n_total`` is given; the allocation
    gives each rare stratum (area share below ``rare_share``, and the buffer whatever its share) the larger of
    ``min_rare`` points and its proportional share, and the rest proportionally
    (:func:`~crofuse.statistics.estimation.allocate`); then the buffer gets at least :func:`buffer_minimum` points
    (expected to hold 5 points of omitted gain), added to the total rather than taken from the stable strata, whose
    proportional share keeps the omitted gain left in them estimable. Strata with no pixel get no point.

    Args:
        strata: map class codes on the map grid (:func:`change_strata`, :func:`year_strata`).
        area: per-pixel area in m² (:func:`~crofuse.statistics.area.pixel_area`).
        geobox: the map's :class:`~odc.geo.geobox.GeoBox`.
        classes: the class name of each code.
        city, year, previous_year: what the design is of (``previous_year`` -1 for a first year).
        seed: the random seed; the same inputs and seed give the same points.
        allocation: points per stratum (the classes, then the buffer), instead of eq. (13) and the rare-stratum rule
            (capped at the stratum's pixels).
        buffer_px: width of the buffer stratum in pixels (:data:`BUFFER_PIXELS`); ignored without change classes.
    """
    classes_map = np.asarray(strata)
    if classes_map.shape != tuple(geobox.shape) or area.shape != classes_map.shape:
        raise DataError(f"strata {classes_map.shape}, pixel areas {area.shape} and grid {tuple(geobox.shape)} "
                        "differ")
    classes = tuple(classes)
    stratified = buffer_strata(classes_map, classes, width=buffer_px)
    if np.count_nonzero(stratified == len(classes)) < 2:  # a stratum needs 2 points for a variance: no buffer then
        stratified = classes_map
    has_buffer = stratified is not classes_map
    names = (*classes, BUFFER) if has_buffer else classes
    k = len(names)
    pixels = np.array([int(np.count_nonzero(stratified == h)) for h in range(k)], dtype="int64")
    stratum_area = np.array([float(area[stratified == h].sum()) / M2_PER_KM2 for h in range(k)])
    if pixels.sum() == 0:
        raise DataError(f"{city} {year}: no mapped pixel inside the AOI to sample")
    expected = {**EXPECTED_USER_ACCURACY, **(expected_user_accuracy or {})}
    u = np.array([expected.get(c, 0.75) for c in names])
    weights = stratum_area / stratum_area.sum()
    if allocation is not None:
        if len(allocation) != k:
            raise ValueError(f"allocation needs one size per stratum {list(names)}, got {len(allocation)}")
        allocation = np.minimum(np.asarray(allocation, dtype="int64"), pixels)
    else:
        total = sample_size(weights, u, target_se=target_se) if n_total is None else int(n_total)
        allocation = allocate(stratum_area, pixels, total, rare_share=rare_share, min_rare=min_rare,
                              rare=[c == BUFFER for c in names])
        if has_buffer and "gain" in names:  # on top of eq. (13)'s total: the stable strata keep their share
            g = names.index("gain")
            need = buffer_minimum(stratum_area[g], stratum_area[-1], float(u[g]))
            allocation[-1] = min(int(pixels[-1]), max(int(allocation[-1]), need))
    picked = draw_stratified(stratified, allocation, seed=seed)
    rows, cols = np.unravel_index(picked, classes_map.shape)
    return SampleDesign(
        city=city, year=int(year), previous_year=int(previous_year), classes=classes,
        stratum_area_km2=tuple(float(a) for a in stratum_area), stratum_pixels=tuple(int(p) for p in pixels),
        allocation=tuple(int(a) for a in allocation), seed=int(seed), crs=geobox.crs.to_wkt(),
        transform=tuple(float(v) for v in tuple(geobox.affine)[:6]), shape=tuple(int(s) for s in geobox.shape),
        rows=rows.astype("int64"), cols=cols.astype("int64"), stratum=stratified.ravel()[picked].astype("int64"),
        fingerprint=strata_fingerprint(classes_map), target_se=float(target_se),
        expected_user_accuracy=tuple(float(v) for v in u), drawn_by=drawn_by,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        strata=names, map_class=classes_map.ravel()[picked].astype("int64"),
        buffer_px=int(buffer_px) if has_buffer else 0,
    )


def _write_text_atomic(path: Any, text: str) -> None:
    location(path).write_text(text)  # atomic on disk and on S3 (crofuse.io.store)


def _out(loc: Location) -> Any:
    return loc.path if loc.is_local else loc


def write_design(design: SampleDesign, folder: Any) -> Any:
    """Write ``design.json``, ``sample.csv`` and ``sample.geojson`` into ``folder``; returns ``design.json``.

    ``design.json`` is written last, so a folder with one always has its point files.
    """
    folder = location(folder)
    folder.mkdir()
    ids, (x, y), (lon, lat) = design.point_ids, design.xy(), design.lonlat()
    strata = [design.strata[s] for s in design.stratum]
    mapped = [design.classes[m] for m in design.map_class]
    rows = [
        [pid, f"{x[i]:.2f}", f"{y[i]:.2f}", f"{lon[i]:.7f}", f"{lat[i]:.7f}", strata[i], mapped[i], ""]
        for i, pid in enumerate(ids)
    ]
    _write_text_atomic(folder / SAMPLE_CSV, _csv_text(CSV_COLUMNS, rows))
    features = [
        {
            "type": "Feature",
            "id": pid,
            "geometry": {"type": "Point", "coordinates": [round(float(lon[i]), 7), round(float(lat[i]), 7)]},
            "properties": {"point_id": pid, "stratum": strata[i], "map_class": mapped[i],
                           "x": round(float(x[i]), 2), "y": round(float(y[i]), 2), "reference": None},
        }
        for i, pid in enumerate(ids)
    ]
    collection = {
        "type": "FeatureCollection",
        "name": f"{design.city}-{design.year}-sample",
        "crofuse:map_crs": design.crs_name(),
        "crofuse:labels": list(design.classes),
        "features": features,
    }
    _write_text_atomic(folder / SAMPLE_GEOJSON, json.dumps(collection, indent=1))
    meta = {
        "city": design.city, "year": design.year, "previous_year": design.previous_year,
        "classes": list(design.classes), "strata": list(design.strata), "buffer_px": design.buffer_px,
        "stratum_area_km2": list(design.stratum_area_km2),
        "stratum_pixels": list(design.stratum_pixels), "allocation": list(design.allocation), "seed": design.seed,
        "crs": design.crs, "crs_name": design.crs_name(), "transform": list(design.transform),
        "shape": list(design.shape), "fingerprint": design.fingerprint, "target_se": design.target_se,
        "expected_user_accuracy": list(design.expected_user_accuracy), "drawn_by": design.drawn_by,
        "created": design.created,
        "points": [
            [pid, int(r), int(c), int(s), int(m)]
            for pid, r, c, s, m in zip(ids, design.rows, design.cols, design.stratum, design.map_class)
        ],
    }
    _write_text_atomic(folder / DESIGN_NAME, json.dumps(meta, indent=1))
    return _out(folder / DESIGN_NAME)


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def read_design(folder: Any) -> SampleDesign | None:
    """The design in ``folder/design.json``, or None when there is none."""
    path = location(folder) / DESIGN_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        d = json.loads(text)
        points = d["points"]
        return SampleDesign(
            city=d["city"], year=int(d["year"]), previous_year=int(d["previous_year"]), classes=tuple(d["classes"]),
            stratum_area_km2=tuple(d["stratum_area_km2"]), stratum_pixels=tuple(d["stratum_pixels"]),
            allocation=tuple(d["allocation"]), seed=int(d["seed"]), crs=d["crs"], transform=tuple(d["transform"]),
            shape=tuple(d["shape"]), rows=np.array([p[1] for p in points], dtype="int64"),
            cols=np.array([p[2] for p in points], dtype="int64"),
            stratum=np.array([p[3] for p in points], dtype="int64"), fingerprint=d.get("fingerprint", ""),
            strata=tuple(d.get("strata", d["classes"])), buffer_px=int(d.get("buffer_px", 0)),
            map_class=np.array([p[4] if len(p) > 4 else p[3] for p in points], dtype="int64"),
            target_se=float(d.get("target_se", math.nan)),
            expected_user_accuracy=tuple(d.get("expected_user_accuracy", ())),
            drawn_by=d.get("drawn_by", ""), created=d.get("created", ""),
        )
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise SampleError(f"{path} is not a crofuse sample design ({e}); draw it again with `crofuse statistics "
                          "sample design`") from e


# --------------------------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledSample:
    """The labelled points of a design: for each, its stratum (index into the design's strata), its map class and
    its reference class (indices into its classes)."""

    design: SampleDesign
    point_index: np.ndarray  # index into the design's points
    reference: np.ndarray  # reference class index of each labelled point
    source: str  # where the labels come from (a file name, or the rasters)

    @property
    def stratum(self) -> np.ndarray:
        return self.design.stratum[self.point_index]

    @property
    def map_class(self) -> np.ndarray:
        return self.design.map_class[self.point_index]

    @property
    def n(self) -> int:
        return int(len(self.point_index))

    def counts(self) -> np.ndarray:
        """Counts ``n_ij`` by stratum (rows, the design's strata) and reference class (columns)."""
        return error_matrix(self.stratum, self.reference, len(self.design.classes),
                            n_strata=len(self.design.strata))

    def unit_counts(self) -> np.ndarray:
        """Counts ``n_hmr`` by stratum, map class and reference class (Stehman 2014)."""
        return unit_counts(self.stratum, self.map_class, self.reference, n_strata=len(self.design.strata),
                           n_classes=len(self.design.classes))


def _normalise(label: str) -> str:
    return "_".join(str(label).strip().lower().replace("-", " ").split())


def _check_enough(design: SampleDesign, stratum: np.ndarray, source: str, min_labelled: int) -> None:
    problems = []
    for h, name in enumerate(design.strata):
        need = min(min_labelled, design.allocation[h])
        have = int(np.count_nonzero(stratum == h))
        if design.stratum_area_km2[h] > 0 and have < need:
            problems.append(
                f"stratum {name} has {have} labelled points, needs at least {need}: label {need - have} more"
            )
    if problems:
        allocated = dict(zip(design.strata, design.allocation))
        raise SampleError(f"{source}: " + "; ".join(problems) + f" (the design allocated {allocated})")


def read_labelled_sample(
    path: Path, design: SampleDesign, *, inside: np.ndarray | None = None, min_labelled: int = MIN_LABELLED
) -> LabelledSample:
    """Read a labelled copy of a design's points (CSV or GeoJSON) and check it.

    Each row/feature needs its ``point_id`` and a ``reference`` label (one of the design's classes; case, spaces and
    hyphens do not matter; an empty label means not labelled yet). The point's coordinates (GeoJSON geometry in
    WGS 84, or the CSV's ``lon``/``lat``, and ``x``/``y`` in the map CRS when present) must still be where the design
    put it.

    Raises:
        SampleError: with what is wrong and what to do, when the file is in another CRS, has labels that are not
        classes, has points outside the AOI or not in the design, or leaves a stratum with fewer than
        ``min_labelled`` labels (or fewer than all its points, for a smaller stratum).
    """
    path = location(path)
    if not path.exists():
        raise SampleError(f"{path} does not exist")
    records = _read_geojson(path, design) if path.suffix.lower() in (".geojson", ".json") else _read_csv(path, design)
    ids = {pid: i for i, pid in enumerate(design.point_ids)}
    gbox = design.geobox
    unknown_ids, outside, moved, bad_labels = [], [], [], {}
    index, reference = [], []
    allowed = {c: k for k, c in enumerate(design.classes)}
    for rec in records:
        pid = rec["point_id"]
        if pid not in ids:
            unknown_ids.append(pid)
            continue
        i = ids[pid]
        col, row = (np.floor(v) for v in gbox.wld2pix(rec["x"], rec["y"]))
        col, row = int(col), int(row)
        in_grid = 0 <= row < design.shape[0] and 0 <= col < design.shape[1]
        if not in_grid or (inside is not None and not bool(inside[row, col])):
            outside.append(f"{pid} ({rec['where']})")
            continue
        if (row, col) != (int(design.rows[i]), int(design.cols[i])):
            moved.append(pid)
            continue
        label = rec["label"]
        if label is None or str(label).strip() == "":
            continue
        name = _normalise(label)
        if name not in allowed:
            bad_labels.setdefault(str(label), []).append(pid)
            continue
        index.append(i)
        reference.append(allowed[name])
    if outside:
        raise SampleError(
            f"{path}: {len(outside)} points lie outside the AOI of {design.city} {design.year}: "
            f"{', '.join(outside[:10])}{' …' if len(outside) > 10 else ''}. The sample is drawn inside the AOI; "
            "do not move points (label the design's own points)"
        )
    if unknown_ids:
        raise SampleError(
            f"{path}: points {unknown_ids[:10]} are not in the design ({design.n} points p0001 … "
            f"p{design.n:04d}); an estimate needs the design's random points, not points added by hand: remove them"
        )
    if moved:
        raise SampleError(
            f"{path}: points {moved[:10]} are not where the design put them (another pixel); label the points "
            "without moving them, or copy their coordinates back from sample.csv"
        )
    if bad_labels:
        listed = "; ".join(f"{lab!r} at {pids[:5]}" for lab, pids in bad_labels.items())
        raise SampleError(
            f"{path}: unknown reference labels {listed}. Use one of {list(design.classes)} (an empty cell means "
            "not labelled yet)"
        )
    labelled = LabelledSample(design=design, point_index=np.array(index, dtype="int64"),
                              reference=np.array(reference, dtype="int64"), source=path.name)
    _check_enough(design, labelled.stratum, path.name, min_labelled)
    return labelled


def _to_map(design: SampleDesign, lon: float, lat: float) -> tuple[float, float]:
    import pyproj

    return pyproj.Transformer.from_crs("EPSG:4326", design.crs, always_xy=True).transform(lon, lat)


def _same_crs(a: Any, b: Any) -> bool:
    import pyproj

    try:
        return pyproj.CRS.from_user_input(a).equals(pyproj.CRS.from_user_input(b), ignore_axis_order=True)
    except pyproj.exceptions.CRSError:
        return False


def _read_geojson(path: Location, design: SampleDesign) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise SampleError(f"{path} is not JSON ({e}); save the layer as GeoJSON") from e
    if data.get("type") != "FeatureCollection" or not isinstance(data.get("features"), list):
        raise SampleError(f"{path} is not a GeoJSON FeatureCollection of points")
    declared = ((data.get("crs") or {}).get("properties") or {}).get("name")
    in_map_crs = False
    if declared is not None and not _same_crs(declared, "OGC:CRS84") and not _same_crs(declared, "EPSG:4326"):
        if _same_crs(declared, design.crs):
            in_map_crs = True
        else:
            raise SampleError(
                f"{path} is in {declared}, not in WGS 84 (EPSG:4326) or the map CRS ({design.crs_name()}): export "
                "the layer again as GeoJSON in EPSG:4326"
            )
    out = []
    for feat in data["features"]:
        props = feat.get("properties") or {}
        geom = feat.get("geometry") or {}
        if geom.get("type") != "Point":
            raise SampleError(f"{path}: feature {props.get('point_id')} is a {geom.get('type')}, not a Point")
        cx, cy = (float(v) for v in geom["coordinates"][:2])
        if in_map_crs:
            x, y = cx, cy
        else:
            if not (-180 <= cx <= 180 and -90 <= cy <= 90):
                raise SampleError(
                    f"{path}: point {props.get('point_id')} has coordinates ({cx}, {cy}), which are not longitude/"
                    f"latitude: the file is in another CRS without saying so; export it again in EPSG:4326 (WGS 84)"
                )
            x, y = _to_map(design, cx, cy)
        out.append({"point_id": str(props.get("point_id", feat.get("id"))), "x": x, "y": y,
                    "label": props.get("reference"), "where": f"{cx:.6f}, {cy:.6f}"})
    return out


def _read_csv(path: Location, design: SampleDesign) -> list[dict[str, Any]]:
    import io

    with io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        rows = [{k.strip().lower(): v for k, v in row.items() if k is not None} for row in reader]
    missing = [c for c in ("point_id", "reference") if c not in fields]
    if missing:
        raise SampleError(f"{path} has no column {missing} (it has {fields}); keep the columns of sample.csv")
    has_ll = "lon" in fields and "lat" in fields
    has_xy = "x" in fields and "y" in fields
    if not (has_ll or has_xy):
        raise SampleError(f"{path} has neither lon/lat nor x/y columns; keep the columns of sample.csv")
    tol = 1.5 * max(abs(design.transform[0]), abs(design.transform[4]))
    out = []
    for row in rows:
        pid = (row.get("point_id") or "").strip()
        try:
            lon, lat = (float(row["lon"]), float(row["lat"])) if has_ll else (math.nan, math.nan)
            x, y = (float(row["x"]), float(row["y"])) if has_xy else (math.nan, math.nan)
        except (TypeError, ValueError) as e:
            raise SampleError(f"{path}: point {pid} has unreadable coordinates ({e})") from e
        if has_ll:
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise SampleError(f"{path}: point {pid} has lon/lat ({lon}, {lat}) outside WGS 84's range: the "
                                  "lon/lat columns must be in EPSG:4326")
            mx, my = _to_map(design, lon, lat)
            if has_xy and math.hypot(mx - x, my - y) > tol:
                raise SampleError(
                    f"{path}: point {pid}: x/y ({x:.1f}, {y:.1f}) are {math.hypot(mx - x, my - y):.0f} m from its "
                    f"lon/lat ({lon}, {lat}): x/y must be in the map CRS ({design.crs_name()}) and lon/lat in WGS 84 "
                    "(EPSG:4326); were they reprojected?"
                )
            x, y = mx, my
        out.append({"point_id": pid, "x": x, "y": y, "label": row.get("reference"),
                    "where": f"{lon:.6f}, {lat:.6f}" if has_ll else f"{x:.1f}, {y:.1f}"})
    return out


def label_from_rasters(
    design: SampleDesign,
    current: Any,
    previous: Any = None,
    *,
    source: str = "reference rasters",
    min_labelled: int = MIN_LABELLED,
) -> LabelledSample:
    """Label a design's points from reference rasters on the map grid (1 impervious, 0 pervious, 255 nodata).

    Any raster on the design's grid works: the catalog's ``reference.tif``, or labels made later by other means.
    A change design (with a previous year) needs the previous year's raster too; a point is labelled with the change
    class of its two reference values. Points where a reference is nodata stay unlabelled.

    Args:
        current, previous: a path to a single-band raster, a DataArray on the grid, or a 2-D array of the grid's shape.
    """
    change = design.previous_year != -1
    if change and previous is None:
        raise SampleError(f"the design of {design.city} {design.year} is of change since {design.previous_year}: "
                          "label it from the reference rasters of both years")
    cur = _raster_values(current, design, "current")
    values_cur = cur[design.rows, design.cols]
    if change:
        prev = _raster_values(previous, design, "previous")
        codes = change_strata(prev[design.rows, design.cols], values_cur).astype("int64")
    else:
        codes = year_strata(values_cur).astype("int64")
    ok = codes != OUTSIDE
    labelled = LabelledSample(design=design, point_index=np.flatnonzero(ok), reference=codes[ok], source=source)
    _check_enough(design, labelled.stratum, source, min_labelled)
    return labelled


def _raster_values(raster: Any, design: SampleDesign, which: str) -> np.ndarray:
    import xarray as xr

    from crofuse.statistics.maps import geobox_of, read_map

    if isinstance(raster, (str, Path, Location)):
        raster = read_map(raster)
    if isinstance(raster, xr.DataArray):
        gbox = geobox_of(raster)
        same = gbox.shape == tuple(design.shape) and np.allclose(tuple(gbox.affine)[:6], design.transform) and \
            _same_crs(gbox.crs.to_wkt(), design.crs)
        if not same:
            raise SampleError(f"the {which} reference raster is not on the grid of the design of {design.city} "
                              f"{design.year}; resample it onto the map grid first")
        raster = raster.values
    values = np.asarray(raster)
    if values.shape != tuple(design.shape):
        raise SampleError(f"the {which} reference raster is {values.shape}, the design's grid {tuple(design.shape)}")
    bad = ~np.isin(values[design.rows, design.cols], (IMPERVIOUS, PERVIOUS, NODATA_LABEL))
    if bad.any():
        raise SampleError(f"the {which} reference raster holds values other than 1/0/255 at the sample points; "
                          "pass binary impervious labels")
    return values


def write_labels_csv(labelled: LabelledSample, path: Any) -> Any:
    """Write the design's points with the labels of ``labelled`` (empty where unlabelled) as CSV."""
    design = labelled.design
    labels = [""] * design.n
    for i, r in zip(labelled.point_index, labelled.reference):
        labels[int(i)] = design.classes[int(r)]
    (x, y), (lon, lat) = design.xy(), design.lonlat()
    rows = [
        [pid, f"{x[i]:.2f}", f"{y[i]:.2f}", f"{lon[i]:.7f}", f"{lat[i]:.7f}", design.strata[design.stratum[i]],
         design.classes[design.map_class[i]], labels[i]]
        for i, pid in enumerate(design.point_ids)
    ]
    path = location(path)
    path.parent.mkdir()
    _write_text_atomic(path, _csv_text(CSV_COLUMNS, rows))
    return _out(path)


def find_labelled(folder: Any) -> Any:
    """A person's labelled sample in ``folder`` (``labelled.csv`` first, then ``labelled.geojson``), or None."""
    for name in LABELLED_NAMES:
        if (location(folder) / name).exists():
            return _out(location(folder) / name)
    return None


# --------------------------------------------------------------------------------------------------------------------
# A city-year folder
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CityYearStrata:
    """The strata of a city-year as its maps define them (what a design is drawn from)."""

    city: str
    year: int
    previous_year: int
    classes: tuple[str, ...]
    strata: np.ndarray
    area: np.ndarray  # m² per pixel
    inside: np.ndarray | None
    like: Any  # the map as a DataArray (its grid)


def city_year_strata(output: Path, city: str, year: int) -> CityYearStrata:
    """The strata of ``<output>/<city>/<year>``: by change since the previous mapped year, else by the map."""
    from crofuse.statistics.area import pixel_area_of
    from crofuse.statistics.maps import (
        MAP_NAME,
        aoi_mask,
        city_year_folder,
        mapped_years,
        read_map,
        same_grid,
    )

    folder = city_year_folder(output, city, year)
    current = read_map(folder / MAP_NAME)
    inside = aoi_mask(folder, current)
    earlier = [y for y in mapped_years(output, city) if y < int(year)]
    if earlier:
        previous = read_map(city_year_folder(output, city, earlier[-1]) / MAP_NAME)
        if not same_grid(previous, current):
            raise DataError(f"{city}: the {earlier[-1]} and {year} maps are on different grids")
        strata, classes, prev_year = change_strata(previous.values, current.values, inside), CHANGE_CLASSES, earlier[-1]
    else:
        strata, classes, prev_year = year_strata(current.values, inside), YEAR_CLASSES, -1
    return CityYearStrata(city=city, year=int(year), previous_year=prev_year, classes=classes, strata=strata,
                          area=pixel_area_of(current), inside=inside, like=current)


def draw_city_year_design(
    output: Path, city: str, year: int, *, seed: int | None = None, drawn_by: str = "crofuse statistics sample design",
    **options: Any,
) -> tuple[SampleDesign, Path]:
    """Draw a design for a city-year from its maps and write it to its ``sample/`` folder.

    Refuses to replace a design that already has a person's labels (delete ``labelled.*`` first, or keep it).
    ``options`` go to :func:`design_sample` (``n_total``, ``target_se``, ``min_rare``, ``rare_share``, ``buffer_px``,
    ``expected_user_accuracy``).
    """
    from crofuse.statistics.maps import city_year_folder, geobox_of

    s = city_year_strata(output, city, year)
    folder = city_year_folder(output, city, year) / SAMPLE_DIR
    labelled = find_labelled(folder)
    if labelled is not None:
        raise SampleError(f"{labelled} holds labels of the current design: move it away before drawing a new "
                          "design (the new points would not match those labels)")
    design = design_sample(s.strata, s.area, geobox_of(s.like), classes=s.classes, city=city, year=year,
                           previous_year=s.previous_year, seed=design_seed(city, year) if seed is None else seed,
                           drawn_by=drawn_by, **options)
    return design, write_design(design, folder)


# --------------------------------------------------------------------------------------------------------------------
# Estimates for the statistics tables
# --------------------------------------------------------------------------------------------------------------------
def estimate(labelled: LabelledSample) -> StratifiedEstimate:
    """The stratified estimate (:func:`~crofuse.statistics.estimation.stratified_estimate`) of a labelled sample, in
    km², with the stratum areas recorded in its design (Stehman 2014 for the accuracies when it has a buffer)."""
    return stratified_estimate(labelled.unit_counts(), labelled.design.stratum_area_km2)


RELIABLE_COUNT = 5
"""Fewest sample units of a change class a large stratum should hold for the normal 95 % interval of its area."""


def interval_notes(labelled: LabelledSample, *, rare_share: float = 0.1) -> list[str]:
    """Warnings about the normal confidence intervals of the change areas of a labelled sample.

    Gain or loss the map missed (omission) that lies in the big stable strata is rare there. When a large stratum
    (area share at least ``rare_share``) holds only a few sample units of that change, the estimate's sampling
    distribution is skewed and the ``± 1.96 SE`` interval covers the true area less often than 95 % (Olofsson, P.,
    Arévalo, P., Espejo, A. B., et al. 2020, *Mitigating the effects of omission errors on area and area change
    estimates*, Remote Sensing of Environment 236: 111492). Without a buffer stratum, a design of about 600 points
    covered the true gain of the sample data 87 % of the time (docs/flows.md). A buffer stratum
    (:func:`buffer_strata`) takes most of the omitted change out of the stable strata: with one, a stable stratum
    without a point of that change is what is expected and only one with 1 … 4 such points is noted (omission lies
    outside the buffer too); without one, none counts as few. More points in those strata cure it; the note says
    where.
    """
    design = labelled.design
    counts = labelled.counts()
    total = sum(design.stratum_area_km2)
    buffered = BUFFER in design.strata
    notes = []
    for name in ("gain", "loss"):
        if name not in design.classes:
            continue
        k = design.classes.index(name)
        if counts[:, k].sum() == 0:
            continue
        for h, stratum in enumerate(design.strata):
            share = design.stratum_area_km2[h] / total if total > 0 else 0.0
            if stratum in (name, BUFFER) or share < rare_share or counts[h].sum() == 0:
                continue
            found = int(counts[h, k])
            if found < RELIABLE_COUNT and (found > 0 or not buffered):
                notes.append(
                    f"{stratum} ({100 * share:.0f} % of the area) holds {found} of {int(counts[h].sum())} points "
                    f"labelled {name}: the 95 % interval of estimated {name} may be too narrow (omitted {name} is "
                    f"rare there); label more {stratum} points"
                )
    return notes


def estimate_columns(labelled: LabelledSample) -> dict[str, float]:
    """The ``estimated_*``, ``*_accuracy_*`` and ``sample_points`` columns of the statistics tables."""
    design = labelled.design
    est = estimate(labelled)
    counts, areas = labelled.counts(), design.stratum_area_km2
    classes = design.classes
    out: dict[str, float] = {"sample_points": float(labelled.n)}

    def put(name: str, value: float, se: float) -> None:
        out[f"estimated_{name}_km2"] = value
        out[f"estimated_{name}_se_km2"] = se
        out[f"estimated_{name}_ci95_km2"] = Z95 * se

    def combo(weights: Mapping[str, float]) -> tuple[float, float]:
        return stratified_combination(counts, areas, [weights.get(c, 0.0) for c in classes])

    if design.previous_year != -1:
        put("gain", *combo({"gain": 1.0}))
        put("loss", *combo({"loss": 1.0}))
        put("net", *combo({"gain": 1.0, "loss": -1.0}))
        put("impervious", *combo({"stable_impervious": 1.0, "gain": 1.0}))
    else:
        put("impervious", *combo({"impervious": 1.0}))
    for k, name in enumerate(classes):
        out[f"user_accuracy_{name}"] = float(est.user[k])
        out[f"user_accuracy_{name}_se"] = float(est.user_se[k])
        out[f"producer_accuracy_{name}"] = float(est.producer[k])
        out[f"producer_accuracy_{name}_se"] = float(est.producer_se[k])
    out["overall_accuracy"] = est.overall
    out["overall_accuracy_se"] = est.overall_se
    return out


__all__ = [
    "CHANGE_CLASSES",
    "CityYearStrata",
    "city_year_strata",
    "draw_city_year_design",
    "BUFFER",
    "BUFFER_AROUND",
    "BUFFER_OF",
    "BUFFER_OMISSION_SHARE",
    "BUFFER_PIXELS",
    "MIN_EXPECTED_OMISSION",
    "DESIGN_NAME",
    "EXPECTED_USER_ACCURACY",
    "LABELLED_NAMES",
    "MIN_LABELLED",
    "REFERENCE_LABELS_NAME",
    "SAMPLE_CSV",
    "SAMPLE_DIR",
    "SAMPLE_GEOJSON",
    "STRATIFICATION_VERSION",
    "YEAR_CLASSES",
    "LabelledSample",
    "SampleDesign",
    "SampleError",
    "buffer_minimum",
    "buffer_strata",
    "change_strata",
    "design_sample",
    "design_seed",
    "estimate",
    "estimate_columns",
    "interval_notes",
    "find_labelled",
    "label_from_rasters",
    "read_design",
    "read_labelled_sample",
    "strata_fingerprint",
    "write_design",
    "write_labels_csv",
    "year_strata",
]
