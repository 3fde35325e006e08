"""The procedural city: a 2.5 m material map aggregated to the 10 m ground truth by linear mixing.

One plan per (city, size, seed) fixes the layout: urban density falling off from the centre with a fractal edge,
districts (Voronoi cells) with their own street-grid orientation, block size and land use (residential slabs,
commercial, industrial sheds, old villages), arterials and a ring road, a meandering turbid river, lakes, parks,
forest, cropland fields and villages. Years differ by (a) urban growth: fields in a ring just outside the city edge
are cleared to bare soil the year before they are built on, then get new roads and buildings; (b) the state of each
crop field (growing, flooded paddy, harvested bare, fallow grass). Everything is a deterministic function of
(city, year, seed): per-object values come from integer hashes, never from global random state.

Generator v2 (``SampleConfig.generator=2``, the default) draws each city with its palette
(:mod:`crofuse.synthetic.palettes`: roof mix, soil colour, June phenology, building heights, street-grid
orientation) and adds what makes real 10 m scenes hard pixel by pixel: building sites (bright compacted soil,
gravel, slabs, dust-proof netting), plastic greenhouses, sand bars and gravel yards, desert, senescent grass, sports
grounds (artificial turf inside a running track), sub-cell clutter (mixed pixels finer than the 5 m map),
height-dependent building shadows in the sun's direction, and a *reference* label drawn the way annotators draw
one: on finer imagery that is shifted by about a pixel against Sentinel-2 and not from the same month
(:attr:`GroundTruth.reference`). The exact label stays :attr:`GroundTruth.label`. v1 output is unchanged byte for
byte (``generator=1``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from crofuse.errors import ConfigError
from crofuse.synthetic.cities import PIXEL_SIZE_M, City, grid_pixels
from crofuse.synthetic.noise import derive_seed, fractal_noise, hash_uniform, rank_normalise
from crofuse.synthetic.palettes import Palette, get_palette, sun_position
from crofuse.synthetic.signatures import (
    IS_BUILDING,
    IS_IMPERVIOUS,
    MATERIAL_TO_LANDCOVER,
    LandCover,
    Material,
    backscatter_db,
    backscatter_db_v2,
    reflectance,
)

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

    from crofuse.synthetic.config import Difficulty, SampleConfig

ORBITS = ("ascending", "descending")

# District land uses
RESIDENTIAL, COMMERCIAL, INDUSTRIAL, VILLAGE, NEW = 0, 1, 2, 3, 4
# per land use: block side (m) range, street width range, building along/across size range, gaps, green share range
_USE = {
    RESIDENTIAL: dict(block=(150, 260), street=(8, 14), la=(40, 75), lb=(12, 18), ga=(10, 25), gb=(22, 40), green=(0.35, 0.7)),
    COMMERCIAL: dict(block=(110, 200), street=(12, 20), la=(30, 80), lb=(25, 60), ga=(12, 25), gb=(12, 25), green=(0.08, 0.3)),
    INDUSTRIAL: dict(block=(200, 340), street=(12, 18), la=(60, 140), lb=(30, 80), ga=(15, 35), gb=(15, 35), green=(0.05, 0.2)),
    VILLAGE: dict(block=(50, 100), street=(4, 7), la=(8, 14), lb=(8, 12), ga=(2, 5), gb=(2, 5), green=(0.15, 0.4)),
    NEW: dict(block=(0, 0), street=(8, 12), la=(20, 50), lb=(12, 20), ga=(12, 20), gb=(20, 30), green=(0.15, 0.4)),
}
# roof material weights per land use
_ROOFS = {
    RESIDENTIAL: {Material.ROOF_CONCRETE: 0.45, Material.ROOF_TILE: 0.15, Material.ROOF_DARK: 0.15, Material.ROOF_METAL: 0.15, Material.ROOF_BLUE: 0.10},
    COMMERCIAL: {Material.ROOF_CONCRETE: 0.45, Material.ROOF_METAL: 0.35, Material.ROOF_DARK: 0.20},
    INDUSTRIAL: {Material.ROOF_BLUE: 0.45, Material.ROOF_METAL: 0.35, Material.ROOF_CONCRETE: 0.20},
    VILLAGE: {Material.ROOF_TILE: 0.70, Material.ROOF_CONCRETE: 0.15, Material.ROOF_DARK: 0.15},
    NEW: {Material.ROOF_CONCRETE: 0.50, Material.ROOF_METAL: 0.25, Material.ROOF_BLUE: 0.15, Material.ROOF_TILE: 0.10},
}
_ROOF_TABLE = np.zeros((5, 5), dtype=np.uint8)
_ROOF_CDF = np.zeros((5, 5), dtype=np.float32)
for _u, _w in _ROOFS.items():
    _mats = list(_w)
    _cdf = np.cumsum(list(_w.values()))
    _ROOF_TABLE[_u, : len(_mats)] = _mats
    _ROOF_TABLE[_u, len(_mats) :] = _mats[-1]
    _ROOF_CDF[_u, : len(_mats)] = _cdf
    _ROOF_CDF[_u, len(_mats) :] = 1.0
_ROOF_CDF[:, -1] = 1.0

URBAN_THRESHOLD = float(np.exp(-1.0))
GROWTH_RING = 0.14
"""Fields whose urban density lies within this much below the urban threshold may be developed."""


@dataclass(frozen=True)
class GroundTruth:
    """The exact 10 m truth of one city and year (what every simulated acquisition is drawn from).

    reflectance: ``(4, y, x)`` float32 surface reflectance B02, B03, B04, B08, before per-acquisition effects.
    backscatter: orbit state -> ``(2, y, x)`` float32 gamma0 VV, VH in linear power, before speckle.
    impervious_fraction: ``(y, x)`` share of the 10 m pixel covered by impervious materials.
    label: ``(y, x)`` uint8, 1 where ``impervious_fraction >= 0.5`` else 0 (the exact label).
    landcover: ``(y, x)`` uint8 majority :class:`~crofuse.synthetic.signatures.LandCover` class.
    fractions: ``(8, y, x)`` float32 share of each LandCover class (index = class value; 0 unused).
    growth: ``(y, x)`` uint8, 1 where the label is 1 this year and was 0 the year before (urban growth).
    reference: ``(y, x)`` uint8, the reference label a dataset would give: generator v2 draws it like an annotator
        (co-registration error, time lag; see the module docstring); generator v1: the exact label.
    extra: ``building_shadow`` (share of open ground in building shadow); v2 also ``building_height`` (m, mean over
        the pixel's building area), ``material`` and ``material_share`` (majority :class:`Material` and its share),
        ``construction_site`` (share of the pixel on a building site), ``reference_fraction`` (the reference's
        impervious share before the shift), ``reference_shift_px`` ((rows, cols) of the co-registration error),
        ``reference_growth`` (1 where the reference is impervious this year and was not the year before), ``palette``
        and ``generator``.
    """

    city: City
    year: int
    geobox: GeoBox
    reflectance: np.ndarray
    backscatter: dict[str, np.ndarray]
    impervious_fraction: np.ndarray
    label: np.ndarray
    landcover: np.ndarray
    fractions: np.ndarray
    growth: np.ndarray
    seed: int = 0
    extra: dict = field(default_factory=dict)
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.reference is None:
            object.__setattr__(self, "reference", self.label)

    @property
    def shape(self) -> tuple[int, int]:
        return self.label.shape  # type: ignore[return-value]

    def pure(self, cls: LandCover) -> np.ndarray:
        """Mask of pixels made entirely of one land-cover class (homogeneous areas for statistics)."""
        return self.fractions[int(cls)] >= 0.999


@dataclass(frozen=True)
class _Plan:
    """Year-independent layout of one city: noise fields at 10 m and per-district parameters."""

    n: int
    sub: int
    seed: int
    size_m: float
    density: np.ndarray  # (n, n) urban density at 10 m pixel centres
    lakes: np.ndarray  # (n, n) rank noise; lake where > lake_q
    forest: np.ndarray  # (n, n) rank noise
    villages: np.ndarray  # (n, n) rank noise
    green: np.ndarray  # (n, n) rank noise: open space inside blocks is green where < block greenness
    district: np.ndarray  # (n, n) int district id
    d_theta: np.ndarray  # per district: street-grid orientation (deg, 0-90)
    d_use: np.ndarray  # per district land use
    d_block: np.ndarray  # per district block side (m)
    d_street: np.ndarray
    d_field_a: np.ndarray  # rural field length / width (m)
    d_field_b: np.ndarray
    d_offset: np.ndarray  # (k, 2) grid offsets
    d_core: np.ndarray  # per district: near the urban core (commercial or residential in v1)
    arterials: list[tuple[float, float, float, float]]  # (nx, ny, c, width): |nx*x + ny*y - c| < width/2
    ring_roads: list[tuple[float, float]]  # (radius, width)
    river: tuple[float, float, float, float, float, float]  # angle, offset, amplitude, wavelength, phase, width
    lake_q: float


def _plan(city: City, *, size_km: float, seed: int, subpixel: int) -> _Plan:
    from scipy.spatial import cKDTree

    n = grid_pixels(size_km)
    size_m = n * PIXEL_SIZE_M
    s = derive_seed(seed, "plan", city.key)
    rng = np.random.default_rng(s)
    half = size_m / 2
    c = (np.arange(n) + 0.5) * PIXEL_SIZE_M - half
    X, Y = np.meshgrid(c, -c)
    # urban density: Gaussian fall-off around a slightly off-centre core, fractal edge
    cx, cy = rng.uniform(-0.05, 0.05, 2) * size_m
    radius = 0.34 * size_m
    r2 = ((X - cx) ** 2 + (Y - cy) ** 2) / radius**2
    edge = fractal_noise((n, n), seed=derive_seed(s, "edge"), beta=3.2)
    density = (np.exp(-r2) * (1.0 + 0.22 * edge)).astype(np.float32)
    lakes = rank_normalise(fractal_noise((n, n), seed=derive_seed(s, "lakes"), beta=3.6, min_period=3))
    forest = rank_normalise(fractal_noise((n, n), seed=derive_seed(s, "forest"), beta=3.0))
    villages = rank_normalise(fractal_noise((n, n), seed=derive_seed(s, "villages"), beta=3.4))
    green = rank_normalise(fractal_noise((n, n), seed=derive_seed(s, "green"), beta=2.2, min_period=1.5))
    # districts
    k = max(4, int(round(size_m**2 / 1.2e6)))
    pts = rng.uniform(-half, half, (k, 2))
    district = cKDTree(pts).query(np.column_stack([X.ravel(), Y.ravel()]), workers=1)[1].reshape(n, n)
    dr = np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) / radius
    u = rng.uniform(size=k)
    use = np.where(
        dr < 0.45,
        np.where(u < 0.55, COMMERCIAL, RESIDENTIAL),
        np.where(u < 0.55, RESIDENTIAL, np.where(u < 0.85, INDUSTRIAL, VILLAGE)),
    ).astype(np.int8)
    theta = rng.uniform(0, 90, k)
    # about 40% of the districts share one near north-south street grid (the rest keep their own orientation);
    # the draws are in this order to keep the random stream (and so the cities) of earlier versions
    n_draw = int(np.sum(rng.uniform(size=k) < 0.4)) or 1
    grid_angle = rng.choice([0.0, 2.0, 88.0], size=n_draw)[0]
    aligned = rng.uniform(size=k) < 0.4
    theta[aligned] = grid_angle
    lo = np.array([_USE[int(v)]["block"][0] for v in use])
    hi = np.array([_USE[int(v)]["block"][1] for v in use])
    block = rng.uniform(lo, hi)
    slo = np.array([_USE[int(v)]["street"][0] for v in use])
    shi = np.array([_USE[int(v)]["street"][1] for v in use])
    street = rng.uniform(slo, shi)
    field_a = rng.uniform(70, 160, k)
    field_b = rng.uniform(30, 80, k)
    offset = rng.uniform(0, 400, (k, 2))
    # arterials through the core, a ring road
    n_art = max(3, int(round(size_m / 1500)))
    arterials = []
    for i in range(n_art):
        ang = np.deg2rad(rng.uniform(0, 180) if i >= 2 else (90.0 * i + rng.uniform(-8, 8)))
        nx, ny = np.cos(ang), np.sin(ang)
        px, py = cx + rng.uniform(-0.4, 0.4) * radius, cy + rng.uniform(-0.4, 0.4) * radius
        arterials.append((float(nx), float(ny), float(nx * px + ny * py), float(rng.uniform(20, 36))))
    ring_roads = [(float(0.6 * radius), 30.0)] if size_m >= 4000 else []
    river = (
        float(rng.uniform(0, np.pi)),
        float(rng.uniform(-0.25, 0.25) * size_m),
        float(0.04 * size_m),
        float(rng.uniform(0.5, 0.9) * size_m),
        float(rng.uniform(0, 2 * np.pi)),
        float(np.clip(0.05 * size_m, 60.0, 450.0)),
    )
    return _Plan(
        n=n, sub=subpixel, seed=s, size_m=size_m, density=density, lakes=lakes, forest=forest, villages=villages,
        green=green, district=district.astype(np.int32), d_theta=theta.astype(np.float32), d_use=use,
        d_block=block.astype(np.float32), d_street=street.astype(np.float32), d_field_a=field_a.astype(np.float32),
        d_field_b=field_b.astype(np.float32), d_offset=offset.astype(np.float32), d_core=dr < 0.45,
        arterials=arterials,
        ring_roads=ring_roads, river=river, lake_q=0.94,
    )


def _upsample_rows(f: np.ndarray, r0: int, r1: int, sub: int) -> np.ndarray:
    """Bilinear values of a 10 m field at the centres of fine rows ``r0:r1`` (all columns)."""
    n = f.shape[0]
    fr = (np.arange(r0, r1) + 0.5) / sub - 0.5
    i0 = np.clip(np.floor(fr).astype(int), 0, n - 1)
    i1 = np.clip(i0 + 1, 0, n - 1)
    wy = np.clip(fr - np.floor(fr), 0, 1).astype(np.float32)[:, None]
    rows = f[i0] * (1 - wy) + f[i1] * wy  # (h, n)
    fc = (np.arange(n * sub) + 0.5) / sub - 0.5
    j0 = np.clip(np.floor(fc).astype(int), 0, n - 1)
    j1 = np.clip(j0 + 1, 0, n - 1)
    wx = np.clip(fc - np.floor(fc), 0, 1).astype(np.float32)[None, :]
    return (rows[:, j0] * (1 - wx) + rows[:, j1] * wx).astype(np.float32)


def _pick_roof(use: np.ndarray, u: np.ndarray, table: np.ndarray = _ROOF_TABLE, cdf: np.ndarray = _ROOF_CDF
               ) -> np.ndarray:
    """Roof material drawn from the land use's weights (``u`` uniform in [0, 1))."""
    idx = np.zeros(u.shape, dtype=np.int64)
    for k in range(4):
        idx += u >= cdf[use, k]
    return table[use, idx]


@dataclass(frozen=True)
class _V2:
    """Generator-v2 settings of one city: its palette's tables, the per-city draws and the truth's difficulty."""

    palette: Palette
    roof_table: np.ndarray
    roof_cdf: np.ndarray
    heights: np.ndarray  # (5, 2) building height range per land use (m)
    s2_low: np.ndarray
    s2_high: np.ndarray
    s1_low: np.ndarray
    s1_high: np.ndarray
    sun_zenith: float
    sun_azimuth: float
    clutter: float
    time_lag: float
    bars: np.ndarray  # (n, n) rank noise modulating the sand bars


def _v2_settings(city: City, plan: _Plan, difficulty: Difficulty) -> _V2:
    pal = get_palette(city.palette)
    table, cdf = pal.roof_tables()
    low, high = pal.s2_tables()
    s1_low, s1_high = pal.s1_tables()
    zenith, azimuth = sun_position(city.lat)
    bars = rank_normalise(fractal_noise((plan.n, plan.n), seed=derive_seed(plan.seed, "bars"), beta=3.0))
    return _V2(palette=pal, roof_table=table, roof_cdf=cdf, heights=pal.height_ranges(), s2_low=low, s2_high=high,
               s1_low=s1_low, s1_high=s1_high, sun_zenith=zenith, sun_azimuth=azimuth,
               clutter=float(pal.clutter * difficulty.clutter), time_lag=float(difficulty.label_time_lag), bars=bars)


def _plan_v2(plan: _Plan, city: City) -> _Plan:
    """The palette's street-grid orientation: a share ``grid_aligned`` of the districts on one common grid."""
    from dataclasses import replace

    pal = get_palette(city.palette)
    k = plan.d_theta.size
    rng = np.random.default_rng(derive_seed(plan.seed, "grid-v2", city.key))
    theta = rng.uniform(0, 90, k).astype(np.float32)
    angle = np.float32(rng.uniform(0, 90) if rng.uniform() < 0.5 else rng.choice([0.0, 2.0, 88.0]))
    aligned = rng.uniform(size=k) < pal.grid_aligned
    theta[aligned] = angle
    # land use: the palette's shares, near the core (commercial or residential) and outside it
    u = rng.uniform(size=k)
    core = plan.d_core
    com, res, ind = pal.uses
    use = np.where(core, np.where(u < com, COMMERCIAL, RESIDENTIAL),
                   np.where(u < res, RESIDENTIAL, np.where(u < res + ind, INDUSTRIAL, VILLAGE))).astype(np.int8)
    block = np.array([rng.uniform(*_USE[int(v)]["block"]) for v in use], np.float32)
    street = np.array([rng.uniform(*_USE[int(v)]["street"]) for v in use], np.float32)
    return replace(plan, d_theta=theta, lake_q=1.0 - pal.lakes, d_use=use, d_block=block, d_street=street)


def _buildings(
    a: np.ndarray, b: np.ndarray, size_a: np.ndarray, size_b: np.ndarray, use: np.ndarray, key: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Buildings inside a block interior ``[0, size_a) x [0, size_b)``: returns (is_building, building id hash)."""
    la_lo = np.array([_USE[i]["la"][0] for i in range(5)], np.float32)[use]
    la_hi = np.array([_USE[i]["la"][1] for i in range(5)], np.float32)[use]
    lb_lo = np.array([_USE[i]["lb"][0] for i in range(5)], np.float32)[use]
    lb_hi = np.array([_USE[i]["lb"][1] for i in range(5)], np.float32)[use]
    ga_lo = np.array([_USE[i]["ga"][0] for i in range(5)], np.float32)[use]
    ga_hi = np.array([_USE[i]["ga"][1] for i in range(5)], np.float32)[use]
    gb_lo = np.array([_USE[i]["gb"][0] for i in range(5)], np.float32)[use]
    gb_hi = np.array([_USE[i]["gb"][1] for i in range(5)], np.float32)[use]
    la = la_lo + hash_uniform(seed, key, 1) * (la_hi - la_lo)
    lb = lb_lo + hash_uniform(seed, key, 2) * (lb_hi - lb_lo)
    pa = la + ga_lo + hash_uniform(seed, key, 3) * (ga_hi - ga_lo)
    pb = lb + gb_lo + hash_uniform(seed, key, 4) * (gb_hi - gb_lo)
    margin = np.where(use == VILLAGE, 1.0, 5.0).astype(np.float32)
    aa, bb = a - margin, b - margin
    ia, ib = np.floor(aa / pa), np.floor(bb / pb)
    inside = (aa >= 0) & (bb >= 0) & (a < size_a - margin) & (b < size_b - margin)
    bld = inside & (aa - ia * pa < la) & (bb - ib * pb < lb)
    bid = key * np.int64(4099) + ia.astype(np.int64) * 131 + ib.astype(np.int64)
    return bld, bid


def _fine_strip(
    plan: _Plan, r0: int, r1: int, years: list[int], full_years: set[int], *, growth_rate: float, base_year: int,
    v2: _V2 | None = None,
):
    """Materials, object positions ``t`` and facade orientations of fine rows ``r0:r1`` for each year.

    v1: ``{year: (material, t, facade)}``, and ``(impervious, None, None)`` for label-only years. v2 adds a fourth
    element, a dict of the building height, the clutter share and material, and the reference's impervious share;
    its label-only years carry the (clutter-weighted) impervious share as a float."""
    sub, n, s = plan.sub, plan.n, plan.seed
    rf = PIXEL_SIZE_M / sub
    half = plan.size_m / 2
    W = n * sub
    x = ((np.arange(W) + 0.5) * rf - half).astype(np.float32)[None, :]
    y = (half - (np.arange(r0, r1) + 0.5) * rf).astype(np.float32)[:, None]
    x = np.broadcast_to(x, (r1 - r0, W))
    y = np.broadcast_to(y, (r1 - r0, W))
    density = _upsample_rows(plan.density, r0, r1, sub)
    lakes = _upsample_rows(plan.lakes, r0, r1, sub)
    forest = _upsample_rows(plan.forest, r0, r1, sub)
    villages = _upsample_rows(plan.villages, r0, r1, sub)
    fine_r = np.arange(r0, r1, dtype=np.int64)[:, None]
    fine_c = np.arange(W, dtype=np.int64)[None, :]
    # open space: coherent gardens plus fine-grained trees and lawns at the sub-pixel scale
    green = 0.55 * _upsample_rows(plan.green, r0, r1, sub) + 0.45 * hash_uniform(s, fine_r // 2, fine_c // 2, 7)
    d = np.repeat(np.repeat(plan.district[r0 // sub : (r1 + sub - 1) // sub], sub, 0), sub, 1)
    d = d[r0 % sub : r0 % sub + (r1 - r0)]
    theta = plan.d_theta[d]
    rad = np.deg2rad(theta)
    cs, sn = np.cos(rad), np.sin(rad)
    u = x * cs + y * sn + plan.d_offset[d, 0]
    v = -x * sn + y * cs + plan.d_offset[d, 1]
    d64 = d.astype(np.int64)

    urban = density > URBAN_THRESHOLD
    ring = (density > URBAN_THRESHOLD - GROWTH_RING) & ~urban

    # ---- urban blocks
    use = plan.d_use[d]
    blk = plan.d_block[d]
    street = plan.d_street[d]
    bi, bj = np.floor(u / blk), np.floor(v / blk)
    a, b = u - bi * blk, v - bj * blk
    bkey = d64 * np.int64(1_000_003) + (bi.astype(np.int64) + 5000) * 10007 + (bj.astype(np.int64) + 5000)
    on_street = (a < street) | (b < street)
    inner = blk - street
    bld, bid = _buildings(a - street, b - street, inner, inner, use, bkey, s)
    kind = hash_uniform(s, bkey, 10)
    tblk = hash_uniform(s, bkey, 11)
    greenness_lo = np.array([_USE[i]["green"][0] for i in range(5)], np.float32)[use]
    greenness_hi = np.array([_USE[i]["green"][1] for i in range(5)], np.float32)[use]
    greenness = greenness_lo + tblk * (greenness_hi - greenness_lo)
    tree_q, roofs = 0.45, (_ROOF_TABLE, _ROOF_CDF)
    if v2 is not None:
        pal = v2.palette
        greenness = np.minimum(greenness * np.float32(pal.green), np.float32(0.92))
        tree_q, roofs = 1.0 - pal.trees, (v2.roof_table, v2.roof_cdf)
    roof_u = hash_uniform(s, bid, 20)
    mat_u = np.where(green < greenness, np.where(forest > tree_q, Material.FOREST, Material.GRASS),
                     np.where((use == VILLAGE) & (green > 0.8), Material.BARE_SOIL,
                              np.where(hash_uniform(s, bkey, 12) < 0.6, Material.CONCRETE, Material.ASPHALT))).astype(np.uint8)
    mat_u[bld] = _pick_roof(use[bld].astype(np.int64), roof_u[bld], *roofs)
    t_u = np.where(bld, hash_uniform(s, bid, 21), hash_uniform(s, bkey, 13))
    # whole-block uses: park, plaza, parking, construction site
    park = kind < 0.08
    plaza = (kind >= 0.08) & (kind < 0.11)
    parking = (kind >= 0.11) & (kind < 0.14)
    site = (kind >= 0.14) & (kind < 0.22) & (use != VILLAGE)
    mat_u = np.where(park, np.where(forest > 0.5, Material.FOREST, Material.GRASS), mat_u)
    mat_u = np.where(plaza, Material.CONCRETE, mat_u)
    mat_u = np.where(parking, Material.ASPHALT, mat_u)
    if v2 is None:
        mat_u = np.where(site, Material.BARE_SOIL, mat_u)
    else:
        site = (kind >= 0.14) & (kind < 0.14 + pal.construction) & (use != VILLAGE)
        mat_u, t_u, site = _blocks_v2(v2, s, mat_u, t_u, site, kind, use, bkey, a - street, b - street,
                                      blk - street)
    mat_u = np.where(on_street, Material.ASPHALT, mat_u)
    t_u = np.where(on_street, hash_uniform(s, d64, 14), t_u)
    # street trees: canopy over the outer 4 m of residential and commercial streets, in runs of about 8 m
    verge = on_street & (((a >= street - 4) & (a < street)) | ((b >= street - 4) & (b < street)))
    street_q = 0.5 if v2 is None else v2.palette.street_trees
    trees = verge & ((use == RESIDENTIAL) | (use == COMMERCIAL)) & (
        hash_uniform(s, bkey, np.floor(u / 8).astype(np.int64), np.floor(v / 8).astype(np.int64), 15) < street_q
    )
    mat_u = np.where(trees, Material.FOREST, mat_u)
    t_u = np.where(trees, hash_uniform(s, bkey, 16), t_u)

    # ---- rural fields (oriented per district), villages and woods
    fa, fb = plan.d_field_a[d], plan.d_field_b[d]
    fi, fj = np.floor(u / fa), np.floor(v / fb)
    fkey = d64 * np.int64(1_000_033) + (fi.astype(np.int64) + 20000) * 40009 + (fj.astype(np.int64) + 20000)
    ea, eb = u - fi * fa, v - fj * fb
    path = (ea < 2.5) | (eb < 2.5)
    woods = forest > (0.86 if v2 is None else 1.0 - 0.14 * v2.palette.green)
    vil = (villages > 0.93) & ~urban
    vil_use = np.full(use.shape, VILLAGE, dtype=use.dtype)
    vblk = np.float32(70.0)
    vi_, vj_ = np.floor(u / vblk), np.floor(v / vblk)
    va, vb = u - vi_ * vblk, v - vj_ * vblk
    vkey = bkey * 7 + 3 + (vi_.astype(np.int64) * 31 + vj_.astype(np.int64))
    vbld, vbid = _buildings(va - 5.0, vb - 5.0, vblk - 5.0, vblk - 5.0, vil_use, vkey, s)
    vlane = (va < 5.0) | (vb < 5.0)
    vmat = np.where(vlane, Material.CONCRETE, np.where(green < 0.4, Material.GRASS, Material.BARE_SOIL)).astype(np.uint8)
    vmat[vbld] = _pick_roof(np.full(int(vbld.sum()), VILLAGE), hash_uniform(s, vbid[vbld], 22), *roofs)
    vt = np.where(vbld, hash_uniform(s, vbid, 23), hash_uniform(s, vkey, 24))

    # ---- development of ring fields: year built, cleared the year before
    hz = hash_uniform(s, fkey, 30).astype(np.float64)
    if growth_rate > 0:
        years_after = np.floor(np.log1p(-hz) / np.log1p(-growth_rate)) if growth_rate < 1 else np.zeros_like(hz)
    else:
        years_after = np.full(hz.shape, 1e9)
    dev_year = base_year + 1 + years_after
    candidate = ring & ~woods & ~vil & (hash_uniform(s, fkey, 31) < 0.85)
    # new neighbourhood inside a developed field: boundary road, buildings
    new_use = np.full(use.shape, NEW, dtype=use.dtype)
    road_w = np.float32(10.0)
    nbld, nbid = _buildings(ea - road_w, eb - road_w, fa - road_w, fb - road_w, new_use, fkey, s)
    nroad = (ea < road_w) | (eb < road_w)
    mat_new = np.where(green < 0.25, Material.GRASS, Material.CONCRETE).astype(np.uint8)
    mat_new[nbld] = _pick_roof(np.full(int(nbld.sum()), NEW), hash_uniform(s, nbid[nbld], 32), *roofs)
    mat_new = np.where(nroad, Material.ASPHALT, mat_new)
    t_new = np.where(nbld, hash_uniform(s, nbid, 33), hash_uniform(s, fkey, 34))

    # ---- water and arterials
    ang, off, amp, wl, ph, width = plan.river
    along = x * np.cos(ang) + y * np.sin(ang)
    across = -x * np.sin(ang) + y * np.cos(ang)
    river = np.abs(across - off - amp * np.sin(2 * np.pi * along / wl + ph)) < width / 2
    lake = lakes > plan.lake_q
    art = np.zeros(x.shape, bool)
    for nx, ny, cc, w in plan.arterials:
        art |= np.abs(nx * x + ny * y - cc) < w / 2
    rr = np.hypot(x, y)
    for radius, w in plan.ring_roads:
        art |= np.abs(rr - radius) < w / 2
    art_key = np.int64(77)

    facade = np.where(urban | vil, theta, np.float32(0)).astype(np.float32)
    t_rural_field = hash_uniform(s, fkey, 40)
    if v2 is not None:
        ctx = dict(urban=urban, vil=vil, woods=woods, candidate=candidate, dev_year=dev_year, mat_u=mat_u, t_u=t_u,
                   vmat=vmat, vt=vt, mat_new=mat_new, t_new=t_new, path=path, fkey=fkey, eb=eb, lake=lake,
                   river=river, art=art, art_key=art_key, theta=theta, facade=facade, t_rural_field=t_rural_field,
                   density=density, x=x, y=y, use=use, bid=bid, vbid=vbid, nbid=nbid,
                   fine_r=fine_r, fine_c=fine_c, r0=r0, r1=r1, site=site & ~on_street & urban,
                   canopy=trees & urban)
        return _years_v2(plan, v2, years, full_years, ctx)
    out = {}
    for year in years:
        if year not in full_years:
            # only the impervious mask is needed (growth reference year)
            built = candidate & (dev_year <= year)
            imp = IS_IMPERVIOUS[np.where(vil, vmat, Material.GRASS)]
            imp = np.where(built, IS_IMPERVIOUS[mat_new], imp)
            imp = np.where(urban, IS_IMPERVIOUS[mat_u], imp)
            imp = np.where(lake | river, False, imp) | art
            out[year] = (imp, None, None)
            continue
        st = hash_uniform(s, fkey, 41, year)
        mat_field = np.where(st < 0.55, Material.CROP, np.where(st < 0.70, Material.PADDY,
                             np.where(st < 0.90, Material.BARE_SOIL, Material.GRASS)))
        mat_field = np.where(path, Material.GRASS, mat_field)
        t_field = hash_uniform(s, fkey, 42, year) * 0.5 + t_rural_field * 0.5
        mat = np.where(woods, Material.FOREST, mat_field)
        t = np.where(woods, t_rural_field, t_field)
        mat = np.where(vil, vmat, mat)
        t = np.where(vil, vt, t)
        built = candidate & (dev_year <= year)
        cleared = candidate & (dev_year == year + 1)
        mat = np.where(cleared, Material.BARE_SOIL, mat)
        mat = np.where(built, mat_new, mat)
        t = np.where(built, t_new, t)
        fac = np.where(built, theta, facade)
        mat = np.where(urban, mat_u, mat)
        t = np.where(urban, t_u, t)
        mat = np.where(lake | river, np.where(river, Material.RIVER, Material.LAKE), mat)
        t = np.where(lake | river, hash_uniform(s, np.where(river, 1, 2), 50), t)
        mat = np.where(art, Material.ASPHALT, mat)
        t = np.where(art, hash_uniform(s, art_key, 51), t)
        out[year] = (mat.astype(np.uint8), t.astype(np.float32), fac)
    return out


SITE_CELL_M = 12.0
"""Building sites are patchworks of cells about this size: slabs, huts, gravel, compacted or wet soil, netting."""
GREENHOUSE_PERIOD_M, GREENHOUSE_FILM_M = 12.0, 8.0
"""Greenhouse rows: film this wide, repeated at this period (paths and ditches between)."""
CLUTTER_PRESENCE = 0.5
"""Share of the 5 m cells of built-up land that hold some clutter (its share then uniform up to the palette's)."""
PERI_URBAN = 0.30
"""Fields whose urban density lies within this much below the urban threshold are near the city (greenhouses)."""


def _blocks_v2(v2: _V2, s: int, mat: np.ndarray, t: np.ndarray, site: np.ndarray, kind: np.ndarray,
               use: np.ndarray, bkey: np.ndarray, a: np.ndarray, b: np.ndarray, inner: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """v2 block contents: building sites, sports grounds, gravel yards and senescent grass (``a``, ``b``: position
    inside the block interior of side ``inner``). Returns (material, t, building-site mask)."""
    pal = v2.palette
    mat, t = mat.copy(), t.copy()
    # building sites: a patchwork of ~12 m cells
    ci, cj = np.floor(a / SITE_CELL_M).astype(np.int64), np.floor(b / SITE_CELL_M).astype(np.int64)
    ckey = bkey * np.int64(97) + (ci + 100) * 1009 + (cj + 100)
    u = hash_uniform(s, ckey, 80)
    net = hash_uniform(s, ckey, 81) < pal.dust_net
    site_mat = np.where(u < 0.15, Material.CONCRETE,  # slabs and foundations
               np.where(u < 0.20, Material.ROOF_BLUE,  # prefabricated site huts
               np.where(u < 0.35, Material.SAND,  # gravel and sand heaps
               np.where(net, Material.DUST_NET,
               np.where(hash_uniform(s, ckey, 83) < 0.7, Material.COMPACTED_SOIL, Material.BARE_SOIL)))))
    # compacted, graded soil is bright; fresh excavation dark and wet (lower end of the soil range)
    site_t = np.where(site_mat == Material.BARE_SOIL, 0.3 * hash_uniform(s, ckey, 84), hash_uniform(s, ckey, 82))
    mat = np.where(site, site_mat, mat)
    t = np.where(site, site_t, t)
    # sports grounds: a pitch (artificial turf or grass) inside a 9 m running track, centred in the block
    lo = 0.14 + pal.construction
    sports = (kind >= lo) & (kind < lo + pal.sports) & ((use == RESIDENTIAL) | (use == COMMERCIAL)) & (inner >= 100)
    half_a, half_b = np.minimum(52.0, 0.30 * inner), np.minimum(34.0, 0.20 * inner)
    da = np.maximum(np.abs(a - inner / 2) - half_a, 0.0)
    db = np.maximum(np.abs(b - inner / 2) - half_b, 0.0)
    dist = np.hypot(da, db)
    pitch = sports & (dist == 0)
    track = sports & (dist > 0) & (dist <= 9.0)
    turf = hash_uniform(s, bkey, 85) < pal.turf
    mat = np.where(pitch, np.where(turf, Material.TURF, Material.GRASS), mat)
    mat = np.where(track, Material.TRACK, mat)
    mat = np.where(sports & (dist > 9.0) & (dist <= 13.0), Material.CONCRETE, mat)
    t = np.where(sports & (dist <= 13.0), hash_uniform(s, bkey, 86), t)
    # gravel and aggregate yards of industrial districts (concrete plants, storage)
    yard = (kind >= lo) & (kind < lo + 0.12) & (use == INDUSTRIAL) & ~IS_BUILDING[mat]
    yu = hash_uniform(s, ckey, 87)
    mat = np.where(yard, np.where(yu < 0.6, Material.SAND, np.where(yu < 0.85, Material.CONCRETE,
                                                                     Material.BARE_SOIL)), mat)
    t = np.where(yard, hash_uniform(s, ckey, 88), t)
    # senescent grass: whole blocks (unwatered lots and lawns)
    dry = hash_uniform(s, bkey, 89) < pal.dry_grass
    mat = np.where((mat == Material.GRASS) & dry & ~pitch, Material.DRY_GRASS, mat)
    return mat.astype(np.uint8), t.astype(np.float32), site


def _years_v2(plan: _Plan, v2: _V2, years: list[int], full_years: set[int], c: dict) -> dict:
    """The per-year part of :func:`_fine_strip` for generator v2 (see there)."""
    s, pal = plan.seed, v2.palette
    urban, vil, candidate, dev_year = c["urban"], c["vil"], c["candidate"], c["dev_year"]
    x, y, fkey = c["x"], c["y"], c["fkey"]
    # water: the river zone (with its sand bars) and lakes
    ang, off, amp, wl, ph, width = plan.river
    along = x * np.cos(ang) + y * np.sin(ang)
    across = -x * np.sin(ang) + y * np.cos(ang)
    dist_c = np.abs(across - off - amp * np.sin(2 * np.pi * along / wl + ph))
    zone = c["lake"] | c["river"]
    bars = _upsample_rows(v2.bars, c["r0"], c["r1"], plan.sub)
    bar = c["river"] & (dist_c > width / 2 - pal.sand_bars * np.clip((bars - 0.45) / 0.35, 0.0, 1.0))
    art = c["art"]
    # rural: greenhouses near the city, desert away from the river (arid palettes)
    peri = (c["density"] > URBAN_THRESHOLD - PERI_URBAN) & ~urban
    gh_field = peri & ~c["woods"] & (hash_uniform(s, fkey, 43) < pal.greenhouses)
    film = (c["eb"] % GREENHOUSE_PERIOD_M) < GREENHOUSE_FILM_M
    far = np.clip(dist_c / (0.12 * plan.size_m), 0.0, 1.0)
    desert = ~c["woods"] & ~peri & (hash_uniform(s, fkey, 44) < pal.desert * far)
    # sub-cell clutter: the other class inside a 5 m cell (trees over roofs and roads, paths in lawns, cars, sheds)
    cu = hash_uniform(s, c["fine_r"], c["fine_c"], 70)
    present = hash_uniform(s, c["fine_r"], c["fine_c"], 73) < CLUTTER_PRESENCE
    clutter = np.where(present, np.float32(v2.clutter) * cu, np.float32(0.0)).astype(np.float32)
    cpick = hash_uniform(s, c["fine_r"], c["fine_c"], 71)
    crown = cpick < pal.crowns  # tree crowns over sealed ground; the rest tree pits, planters, soil (pervious)
    over_is = np.where(crown, Material.FOREST, Material.BARE_SOIL)
    over_pervious = np.where(cpick < 0.7, Material.CONCRETE, Material.ASPHALT)
    ct = hash_uniform(s, c["fine_r"], c["fine_c"], 72)
    # building heights: one per building, in its land use's range
    hr = v2.heights

    def height_of(use: np.ndarray, bid: np.ndarray) -> np.ndarray:
        return (hr[use, 0] + hash_uniform(s, bid, 25) * (hr[use, 1] - hr[use, 0])).astype(np.float32)

    h_u = height_of(c["use"].astype(np.int64), c["bid"])
    h_v = height_of(np.full(x.shape, VILLAGE), c["vbid"])
    h_n = height_of(np.full(x.shape, NEW), c["nbid"])

    def impervious(year: int) -> tuple[np.ndarray, np.ndarray]:
        """(impervious share of each fine cell with clutter, the clutter share) in ``year``."""
        built = candidate & (dev_year <= year)
        imp = IS_IMPERVIOUS[np.where(vil, c["vmat"], Material.GRASS)]
        imp = np.where(built, IS_IMPERVIOUS[c["mat_new"]], imp)
        # street trees stand on the sealed street: the ground under their crowns is impervious (v2)
        imp = np.where(urban, IS_IMPERVIOUS[c["mat_u"]] | c["canopy"], imp)
        imp = np.where(zone, False, imp) | art
        # clutter on built-up land; not on arterials through fields, so that a field built on never makes the road
        # beside it less impervious (the city only grows)
        cl = np.where((urban | vil | (built & ~art)) & ~zone, clutter, np.float32(0.0))
        # clutter: crowns over sealed ground leave it impervious; tree pits and planters are not; paths and sheds
        # in lawns are
        return np.where(imp, 1.0 - np.where(crown, np.float32(0.0), cl), cl).astype(np.float32), cl

    cache = {yy: impervious(yy) for yy in sorted({z for yy in years for z in (yy - 1, yy, yy + 1)})}

    def reference(year: int) -> np.ndarray:
        """The impervious share as the reference shows it: fields changing around ``year`` in the state of the
        finer imagery's date (cleared ones already built, just-built ones still bare), with ``time_lag`` odds."""
        lagged = candidate & (hash_uniform(s, fkey, 61, year) < v2.time_lag)
        return np.where(lagged & (dev_year == year + 1), cache[year + 1][0],
                        np.where(lagged & (dev_year == year), cache[year - 1][0], cache[year][0])).astype(np.float32)

    out = {}
    for year in years:
        imp_f, cl = cache[year]
        if year not in full_years:
            out[year] = (imp_f, None, None, {"reference": reference(year)})
            continue
        st = hash_uniform(s, fkey, 41, year)
        cum = np.cumsum(pal.fields)
        mat_field = np.select([st < cum[0], st < cum[1], st < cum[2], st < cum[3]],
                              [Material.CROP, Material.PADDY, Material.BARE_SOIL, Material.GRASS], Material.DRY_GRASS)
        mat_field = np.where(c["path"], Material.GRASS, mat_field)
        t_field = hash_uniform(s, fkey, 42, year) * 0.5 + c["t_rural_field"] * 0.5
        mat_field = np.where(gh_field, np.where(film, Material.GREENHOUSE, Material.BARE_SOIL), mat_field)
        mat_field = np.where(desert, np.where(hash_uniform(s, fkey, 45) < 0.5, Material.SAND, Material.BARE_SOIL),
                             mat_field)
        t_field = np.where(gh_field | desert, hash_uniform(s, fkey, 46), t_field)
        mat = np.where(c["woods"], Material.FOREST, mat_field)
        t = np.where(c["woods"], c["t_rural_field"], t_field)
        mat = np.where(vil, c["vmat"], mat)
        t = np.where(vil, c["vt"], t)
        built = candidate & (dev_year <= year)
        cleared = candidate & (dev_year == year + 1)
        mat = np.where(cleared, Material.BARE_SOIL, mat)
        mat = np.where(built, c["mat_new"], mat)
        t = np.where(built, c["t_new"], t)
        fac = np.where(built, c["theta"], c["facade"])
        mat = np.where(urban, c["mat_u"], mat)
        t = np.where(urban, c["t_u"], t)
        mat = np.where(zone, np.where(c["river"], np.where(bar, Material.SAND, Material.RIVER), Material.LAKE), mat)
        t = np.where(zone, hash_uniform(s, np.where(c["river"], 1, 2), 50), t)
        t = np.where(bar, hash_uniform(s, np.floor(along / 40.0).astype(np.int64), 52), t)
        mat = np.where(art, Material.ASPHALT, mat)
        t = np.where(art, hash_uniform(s, c["art_key"], 51), t)
        mat = mat.astype(np.uint8)
        height = np.where(urban, h_u, np.where(built, h_n, np.where(vil, h_v, np.float32(0.0))))
        height = np.where(IS_BUILDING[mat], height, np.float32(0.0)).astype(np.float32)
        cmat = np.where(IS_IMPERVIOUS[mat] | c["canopy"], over_is, over_pervious).astype(np.uint8)
        ref = reference(year)
        extra = {"height": height, "clutter": cl, "clutter_material": cmat, "clutter_t": ct, "impervious": imp_f,
                 "reference": ref.astype(np.float32), "site": c["site"] & ~art & ~zone}
        out[year] = (mat, t.astype(np.float32), fac.astype(np.float32), extra)
    return out


def directional_shadow(building: np.ndarray, height_m: np.ndarray, *, zenith_deg: float, azimuth_deg: float
                       ) -> np.ndarray:
    """Share of each 10 m pixel's open ground in the shadow of buildings (v2): each building pixel (its building
    share) casts its shadow away from the sun (``azimuth_deg`` clockwise from north) over ``height * tan(zenith)``,
    marched in half-pixel steps."""
    length = height_m * np.float32(np.tan(np.deg2rad(zenith_deg)))
    reach = float(length.max()) if length.size else 0.0
    away = np.deg2rad(azimuth_deg + 180.0)
    drow, dcol = -np.cos(away), np.sin(away)  # rows grow southwards
    n0, n1 = building.shape
    shadow = np.zeros_like(building)
    d = PIXEL_SIZE_M / 2
    while d <= reach + 1e-6:
        kr, kc = int(round(drow * d / PIXEL_SIZE_M)), int(round(dcol * d / PIXEL_SIZE_M))
        if kr or kc:  # shadow at p from the building at p - (kr, kc)
            dst = (slice(max(kr, 0), n0 + min(kr, 0)), slice(max(kc, 0), n1 + min(kc, 0)))
            src = (slice(max(-kr, 0), n0 + min(-kr, 0)), slice(max(-kc, 0), n1 + min(-kc, 0)))
            cast = building[src] * (length[src] >= d)
            shadow[dst] = np.maximum(shadow[dst], cast)
        d += PIXEL_SIZE_M / 2
    return (np.clip(shadow, 0.0, 1.0) * (1.0 - building)).astype(np.float32)


def _shift_field(field: np.ndarray, drow: np.ndarray | float, dcol: np.ndarray | float) -> np.ndarray:
    """``field`` displaced by ``(drow, dcol)`` pixels (bilinear; the edge value beyond the border)."""
    from scipy.ndimage import map_coordinates

    n0, n1 = field.shape
    rr, cc = np.meshgrid(np.arange(n0, dtype=np.float32), np.arange(n1, dtype=np.float32), indexing="ij")
    return map_coordinates(field, [rr - drow, cc - dcol], order=1, mode="nearest").astype(np.float32)


def reference_label(reference_fraction: np.ndarray, *, seed: int, city: City, shift_px: float,
                    warp_px: float) -> tuple[np.ndarray, tuple[float, float]]:
    """The reference label (v2): the reference's impervious share displaced like a polygon layer drawn on finer
    imagery and registered to Sentinel-2 with an error of ``shift_px`` in one direction plus a smooth warp of
    ``warp_px`` (standard deviation), then thresholded at 0.5. The error is the city's, shared by its years: each
    year's reference updates the same registered basemap where the land changed (so the references' change is the
    change, seen through the time lag). Returns the label and the mean shift ``(rows, cols)`` in pixels."""
    s = derive_seed(seed, "reference", city.key)
    rng = np.random.default_rng(s)
    ang = rng.uniform(0, 2 * np.pi)
    drow, dcol = shift_px * np.sin(ang), shift_px * np.cos(ang)
    n = reference_fraction.shape
    wr = wc = 0.0
    if warp_px > 0:
        wr = warp_px * fractal_noise(n, seed=derive_seed(s, "warp-r"), beta=4.0, min_period=8.0)
        wc = warp_px * fractal_noise(n, seed=derive_seed(s, "warp-c"), beta=4.0, min_period=8.0)
    shifted = _shift_field(reference_fraction, drow + wr, dcol + wc)
    return (shifted >= 0.5).astype(np.uint8), (float(drow), float(dcol))


# Building shadows at 10:30 in June (sun zenith ~25 deg, azimuth ~100 deg): cast west, length ~0.47 x height.
_SHADOW_LENGTH_M = np.array([19.0, 28.0, 6.0, 3.0, 14.0], np.float32)  # residential, commercial, industrial...
SHADOW_DARKENING = 0.65
"""Share of the light lost in a building's shadow (diffuse skylight keeps about a third)."""


def building_shadow(building: np.ndarray, length_m: np.ndarray) -> np.ndarray:
    """Share of each 10 m pixel's open ground in the shadow of buildings east of it (cast west, up to 3 pixels)."""
    n = building.shape[1]
    shadow = np.zeros_like(building)
    for k in range(1, 4):
        src = np.zeros_like(building)
        src[:, : n - k] = building[:, k:]
        reach = np.zeros_like(length_m)
        reach[:, : n - k] = length_m[:, k:]
        cover = np.clip((reach - (k - 1) * PIXEL_SIZE_M) / PIXEL_SIZE_M, 0.0, 1.0)
        shadow = np.maximum(shadow, src * cover)
    return (shadow * (1.0 - building)).astype(np.float32)


def _block_mean(a: np.ndarray, sub: int) -> np.ndarray:
    """Mean over ``sub x sub`` blocks of the last two axes."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // sub, sub, w // sub, sub).sum(axis=(-3, -1), dtype=np.float32) / np.float32(sub * sub)


OBJECT_BRIGHTNESS = 0.15
"""Each object's reflectance is scaled by a factor in [1 - this, 1 + this] on top of its range position."""
S2_PSF_SIGMA_PX = 0.5
S1_PSF_SIGMA_PX = 0.9


def generate_truths(
    city: City,
    years: Iterable[int],
    *,
    size_km: float = 10.0,
    seed: int = 0,
    subpixel: int = 2,
    growth_rate: float = 0.15,
    base_year: int = 2018,
    texture: float = 0.06,
    generator: int = 2,
    difficulty: Difficulty | None = None,
) -> dict[int, GroundTruth]:
    """Ground truth of one city for several years in one pass (cheaper than one call per year).

    ``generator`` 2 (default) draws the city with its palette and the reference label with annotation errors
    (``difficulty``, default :class:`~crofuse.synthetic.config.Difficulty`); 1 is the v1 generator, unchanged."""
    from scipy.ndimage import gaussian_filter

    years = sorted(set(int(y) for y in years))
    if not years:
        raise ConfigError("generate_truths needs at least one year")
    if min(years) <= base_year:
        raise ConfigError(f"years {years} must be after base_year={base_year}")
    if generator not in (1, 2):
        raise ConfigError(f"generator={generator}: use 1 or 2")
    plan = _plan(city, size_km=size_km, seed=seed, subpixel=subpixel)
    if generator == 2:
        from crofuse.synthetic.config import Difficulty

        return _generate_truths_v2(city, years, _plan_v2(plan, city), difficulty or Difficulty(), seed=seed,
                                   size_km=size_km, growth_rate=growth_rate, base_year=base_year, texture=texture)
    all_years = sorted(set(years) | {y - 1 for y in years})
    n, sub = plan.n, plan.sub
    refl = {y: np.empty((4, n, n), np.float32) for y in years}
    sar = {y: {o: np.empty((2, n, n), np.float32) for o in ORBITS} for y in years}
    isf = {y: np.empty((n, n), np.float32) for y in all_years}
    frac = {y: np.empty((8, n, n), np.float32) for y in years}
    rows10 = max(1, 65536 // (n * sub * sub)) * 4
    for i0 in range(0, n, rows10):
        i1 = min(n, i0 + rows10)
        strip = _fine_strip(
            plan, i0 * sub, i1 * sub, all_years, set(years), growth_rate=growth_rate, base_year=base_year
        )
        h = i1 - i0
        pix = (np.arange(h * sub)[:, None] // sub) * n + (np.arange(n * sub)[None, :] // sub)
        for y, (mat, t, fac) in strip.items():
            if t is None:  # label-only year: ``mat`` is the impervious mask
                isf[y][i0:i1] = _block_mean(mat.astype(np.float32), sub)
                continue
            # per-object brightness (ageing, dirt, moisture) independent of the range position t: derived from the
            # bits of t, which is unique per object
            bright = np.float32(1.0 - OBJECT_BRIGHTNESS) + np.float32(2 * OBJECT_BRIGHTNESS) * hash_uniform(
                plan.seed, t.view(np.int32), 99
            )
            refl[y][:, i0:i1] = _block_mean(reflectance(mat, t) * bright, sub)
            for o in ORBITS:
                db = backscatter_db(mat, t, fac, o)
                sar[y][o][:, i0:i1] = _block_mean(np.exp(db * np.float32(np.log(10) / 10)), sub)
            lc = MATERIAL_TO_LANDCOVER[mat]
            counts = np.bincount((pix * 8 + lc).ravel(), minlength=h * n * 8).reshape(h, n, 8)
            frac[y][:, i0:i1] = np.moveaxis(counts, -1, 0).astype(np.float32) / np.float32(sub * sub)
            isf[y][i0:i1] = frac[y][LandCover.PAVED, i0:i1] + frac[y][LandCover.BUILDING, i0:i1]
    # per-pixel texture: fixed for the place (not the year), shared by all bands plus a little per band
    rng = np.random.default_rng(derive_seed(plan.seed, "texture"))
    common = 1.0 + texture * rng.standard_normal((n, n)).astype(np.float32)
    per_band = 1.0 + (texture / 3) * rng.standard_normal((4, n, n)).astype(np.float32)
    gb = city.geobox(size_km)
    out = {}
    shadow_len = _SHADOW_LENGTH_M[plan.d_use[plan.district]]
    for y in years:
        shadow = building_shadow(frac[y][LandCover.BUILDING], shadow_len)
        r = refl[y] * (1.0 - SHADOW_DARKENING * shadow)
        r = np.clip(r * common * per_band, 0.001, 1.0)
        # what the sensors resolve: MSI point-spread function at 10 m, IW GRD resolution ~20 x 22 m
        r = gaussian_filter(r, sigma=(0, S2_PSF_SIGMA_PX, S2_PSF_SIGMA_PX), mode="nearest").astype(np.float32)
        for o in ORBITS:
            sar[y][o] = gaussian_filter(sar[y][o], sigma=(0, S1_PSF_SIGMA_PX, S1_PSF_SIGMA_PX), mode="nearest")
        label = (isf[y] >= 0.5).astype(np.uint8)
        prev = (isf[y - 1] >= 0.5).astype(np.uint8)
        growth = ((label == 1) & (prev == 0)).astype(np.uint8)
        lc = np.argmax(frac[y], axis=0).astype(np.uint8)
        out[y] = GroundTruth(
            city=city, year=y, geobox=gb, reflectance=r, backscatter=sar[y], impervious_fraction=isf[y],
            label=label, landcover=lc, fractions=frac[y], growth=growth, seed=seed,
            extra={"building_shadow": shadow},
        )
    return out


def _generate_truths_v2(
    city: City, years: list[int], plan: _Plan, difficulty: Difficulty, *, seed: int, size_km: float,
    growth_rate: float, base_year: int, texture: float,
) -> dict[int, GroundTruth]:
    """Generator v2 of :func:`generate_truths` (its module docstring says what is added)."""
    from scipy.ndimage import gaussian_filter

    v2 = _v2_settings(city, plan, difficulty)
    pal = v2.palette
    all_years = sorted(set(years) | {y - 1 for y in years})
    n, sub = plan.n, plan.sub
    refl = {y: np.empty((4, n, n), np.float32) for y in years}
    sar = {y: {o: np.empty((2, n, n), np.float32) for o in ORBITS} for y in years}
    isf = {y: np.empty((n, n), np.float32) for y in all_years}
    ref = {y: np.empty((n, n), np.float32) for y in all_years}
    frac = {y: np.empty((8, n, n), np.float32) for y in years}
    height = {y: np.empty((n, n), np.float32) for y in years}
    major = {y: np.empty((n, n), np.uint8) for y in years}
    major_share = {y: np.empty((n, n), np.float32) for y in years}
    site = {y: np.empty((n, n), np.float32) for y in years}
    soil = 0.5 * (v2.s2_low[Material.BARE_SOIL] + v2.s2_high[Material.BARE_SOIL])
    to_lin = np.float32(np.log(10) / 10)
    rows10 = max(1, 65536 // (n * sub * sub)) * 4
    for i0 in range(0, n, rows10):
        i1 = min(n, i0 + rows10)
        strip = _fine_strip(plan, i0 * sub, i1 * sub, all_years, set(years), growth_rate=growth_rate,
                            base_year=base_year, v2=v2)
        h = i1 - i0
        pix = (np.arange(h * sub)[:, None] // sub) * n + (np.arange(n * sub)[None, :] // sub)
        for y, (mat, t, fac, ex) in strip.items():
            ref[y][i0:i1] = _block_mean(ex["reference"], sub)
            if t is None:  # label-only year: ``mat`` is the impervious share
                isf[y][i0:i1] = _block_mean(mat, sub)
                continue
            bright = np.float32(1.0 - OBJECT_BRIGHTNESS) + np.float32(2 * OBJECT_BRIGHTNESS) * hash_uniform(
                plan.seed, t.view(np.int32), 99
            )
            r = reflectance(mat, t, v2.s2_low, v2.s2_high) * bright
            if pal.dust > 0:  # dust on roofs and pavements takes on the soil's colour
                dust = (pal.dust * (0.5 + hash_uniform(plan.seed, t.view(np.int32), 98)) * IS_IMPERVIOUS[mat])
                r = (1.0 - dust) * r + dust * soil[:, None, None]
            c = ex["clutter"]
            cmat, ct = ex["clutter_material"], ex["clutter_t"]
            r = (1.0 - c) * r + c * reflectance(cmat, ct, v2.s2_low, v2.s2_high)
            refl[y][:, i0:i1] = _block_mean(r, sub)
            zero = np.zeros_like(c)
            for o in ORBITS:
                db = backscatter_db_v2(mat, t, fac, o, ex["height"], v2.s1_low, v2.s1_high)
                dbc = backscatter_db_v2(cmat, ct, fac, o, zero, v2.s1_low, v2.s1_high)
                lin = (1.0 - c) * np.exp(db * to_lin) + c * np.exp(dbc * to_lin)
                sar[y][o][:, i0:i1] = _block_mean(lin, sub)
            w = (1.0 - c).ravel()
            cells = h * n * 8
            counts = np.bincount((pix * 8 + MATERIAL_TO_LANDCOVER[mat]).ravel(), weights=w, minlength=cells)
            counts += np.bincount((pix * 8 + MATERIAL_TO_LANDCOVER[cmat]).ravel(), weights=c.ravel(), minlength=cells)
            frac[y][:, i0:i1] = np.moveaxis(counts.reshape(h, n, 8), -1, 0).astype(np.float32) / np.float32(sub * sub)
            isf[y][i0:i1] = _block_mean(ex["impervious"], sub)
            nm = len(Material)
            mcount = np.bincount((pix * nm + mat).ravel(), weights=w, minlength=h * n * nm).reshape(h, n, nm)
            major[y][i0:i1] = np.argmax(mcount, axis=-1).astype(np.uint8)
            major_share[y][i0:i1] = mcount.max(axis=-1) / np.float32(sub * sub)
            site[y][i0:i1] = _block_mean(ex["site"].astype(np.float32), sub)
            bshare = _block_mean(IS_BUILDING[mat].astype(np.float32), sub)
            height[y][i0:i1] = _block_mean(ex["height"], sub) / np.maximum(bshare, np.float32(1e-6))
    rng = np.random.default_rng(derive_seed(plan.seed, "texture"))
    common = 1.0 + texture * rng.standard_normal((n, n)).astype(np.float32)
    per_band = 1.0 + (texture / 3) * rng.standard_normal((4, n, n)).astype(np.float32)
    gb = city.geobox(size_km)
    out = {}
    for y in years:
        shadow = directional_shadow(frac[y][LandCover.BUILDING], height[y], zenith_deg=v2.sun_zenith,
                                    azimuth_deg=v2.sun_azimuth)
        r = refl[y] * (1.0 - SHADOW_DARKENING * shadow)
        r = np.clip(r * common * per_band, 0.001, 1.0)
        r = gaussian_filter(r, sigma=(0, S2_PSF_SIGMA_PX, S2_PSF_SIGMA_PX), mode="nearest").astype(np.float32)
        for o in ORBITS:
            sar[y][o] = gaussian_filter(sar[y][o], sigma=(0, S1_PSF_SIGMA_PX, S1_PSF_SIGMA_PX), mode="nearest")
        label = (isf[y] >= 0.5).astype(np.uint8)
        prev = (isf[y - 1] >= 0.5).astype(np.uint8)
        growth = ((label == 1) & (prev == 0)).astype(np.uint8)
        lc = np.argmax(frac[y], axis=0).astype(np.uint8)
        reference, shift = reference_label(ref[y], seed=seed, city=city, shift_px=difficulty.label_shift_px,
                                           warp_px=difficulty.label_warp_px)
        before, _ = reference_label(ref[y - 1], seed=seed, city=city, shift_px=difficulty.label_shift_px,
                                    warp_px=difficulty.label_warp_px)
        out[y] = GroundTruth(
            city=city, year=y, geobox=gb, reflectance=r, backscatter=sar[y], impervious_fraction=isf[y],
            label=label, landcover=lc, fractions=frac[y], growth=growth, seed=seed,
            extra={"building_shadow": shadow, "building_height": height[y], "reference_fraction": ref[y],
                   "reference_shift_px": shift, "palette": pal.name, "generator": 2, "material": major[y],
                   "material_share": major_share[y], "construction_site": site[y],
                   "reference_growth": ((reference == 1) & (before == 0)).astype(np.uint8)},
            reference=reference,
        )
    return out


def generate_landcover(
    city: City,
    year: int,
    *,
    size_km: float = 10.0,
    seed: int = 0,
    subpixel: int = 2,
    growth_rate: float = 0.15,
    base_year: int = 2018,
    generator: int = 2,
    difficulty: Difficulty | None = None,
) -> GroundTruth:
    """The 10 m ground truth of ``city`` in ``year`` (deterministic in city, year, seed and the settings)."""
    return generate_truths(
        city, [year], size_km=size_km, seed=seed, subpixel=subpixel, growth_rate=growth_rate, base_year=base_year,
        generator=generator, difficulty=difficulty,
    )[year]


def ground_truth(config: SampleConfig, city: str | City, year: int) -> GroundTruth:
    """The exact ground truth behind a catalog built with ``config`` (same settings, same numbers)."""
    from crofuse.synthetic.cities import city_by_name

    c = city if isinstance(city, City) else city_by_name(city, config.cities)
    if year not in config.years:
        raise ConfigError(f"year {year} is not in the catalog's years {config.years}")
    return generate_truths(
        c, [year], size_km=config.size_for(c), seed=config.seed, subpixel=config.subpixel,
        growth_rate=config.growth_rate, base_year=config.base_year, generator=config.generator,
        difficulty=config.difficulty,
    )[year]
