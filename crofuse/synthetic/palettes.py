"""City palettes of generator v2: what makes one sample city look unlike another.

A palette is a city's material mix and climate in June: roof materials per land use, soil colour, the June state of
vegetation and fields (phenology), how much of the land is under greenhouses, sand or building sites, building
heights and street-grid orientation, the cloud climatology, and how strong its scene-level calibration offsets are.
The per-city *draws* (one grid angle, one atmospheric bias per band, one SAR offset per orbit) are deterministic in
(city, seed). Every value is listed with its source, or marked as ours, in ``docs/sample-data.md`` ("Cities").

v1 has no palette: every v1 city uses the v1 tables of :mod:`crofuse.synthetic.signatures` and
:mod:`crofuse.synthetic.landcover`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from crofuse.errors import ConfigError
from crofuse.synthetic.signatures import (
    S1_HIGH_DB,
    S1_LOW_DB,
    S2_HIGH,
    S2_LOW,
    Material,
)

# district land uses, as in crofuse.synthetic.landcover
RESIDENTIAL, COMMERCIAL, INDUSTRIAL, VILLAGE, NEW = 0, 1, 2, 3, 4

Range = tuple[float, float]


@dataclass(frozen=True)
class CloudClimate:
    """June cloud fraction per Sentinel-2 pass: overcast (85-100 %) with ``overcast``, nearly clear (0-5 %) with
    ``clear``, otherwise partly cloudy up to ``partly_max``."""

    overcast: float
    clear: float
    partly_max: float = 0.7

    def draw(self, rng: np.random.Generator) -> float:
        u = rng.uniform()
        if u < self.overcast:
            return float(rng.uniform(0.85, 1.0))
        if u < self.overcast + self.clear:
            return float(rng.uniform(0.0, 0.05))
        return float(rng.uniform(0.05, self.partly_max))


@dataclass(frozen=True)
class Palette:
    """One city type's materials and climate (June). See the module docstring.

    roofs: per land use, roof material weights. s2: reflectance range overrides ``material -> 4 x (low, high)``
    (soil colour, vegetation). dust: share of the local soil spectrum mixed into roofs and pavements (dust on
    surfaces of arid cities). green: multiplies the green share of urban blocks. trees: share of urban green that
    is tree canopy. dry_grass: share of grass objects senescent in June. fields: June shares of field states
    (growing, flooded paddy, bare, fallow grass, ripe cereal or stubble). greenhouses: share of fields near the city
    under plastic film. desert: share of rural fields that are bare desert or sand. construction: share of urban
    blocks that are building sites; dust_net: share of a site's soil under dust-proof netting. sports: share of
    residential and commercial blocks with a sports ground; turf: share of those pitches that are artificial turf.
    sand_bars: width (m) of sand bars along the river banks. heights: per land use, building height range (m).
    grid_aligned: share of districts on one common street grid. clouds: June cloud climatology. aerosol: multiplies
    the scene-level atmospheric residuals (haze, dust). clutter: largest share of a 5 m cell taken by the other
    class (trees over roofs and roads, paths in lawns, cars, sheds). lakes: share of the tile under lakes.
    uses: district land use, (commercial share near the core, residential and industrial shares outside it; the
    rest are villages). cirrus: chance that a pass has a cirrus veil. street_trees: share of the verges of
    residential and commercial streets under tree crowns (the street stays impervious under them). crowns: share
    of the clutter on sealed cells that is tree crowns (the ground stays impervious) rather than tree pits or
    planters (pervious).
    """

    name: str
    climate: str
    roofs: dict[int, dict[Material, float]]
    s2: dict[Material, tuple[Range, Range, Range, Range]] = field(default_factory=dict)
    dust: float = 0.0
    green: float = 1.0
    trees: float = 0.45
    dry_grass: float = 0.0
    fields: tuple[float, float, float, float, float] = (0.55, 0.15, 0.20, 0.10, 0.0)
    greenhouses: float = 0.0
    desert: float = 0.0
    construction: float = 0.08
    dust_net: float = 0.0
    sports: float = 0.05
    turf: float = 0.5
    sand_bars: float = 0.0
    heights: dict[int, Range] = field(default_factory=dict)
    grid_aligned: float = 0.4
    clouds: CloudClimate = CloudClimate(0.2, 0.25)
    aerosol: float = 1.0
    clutter: float = 0.3
    lakes: float = 0.06
    uses: tuple[float, float, float] = (0.55, 0.55, 0.30)
    cirrus: float = 0.35
    street_trees: float = 0.5
    crowns: float = 0.6

    def __post_init__(self) -> None:
        for use, w in self.roofs.items():
            if abs(sum(w.values()) - 1.0) > 1e-6 or len(w) > 5:
                raise ConfigError(f"palette {self.name!r}: roof weights of land use {use} must add up to 1 (<= 5)")
        if abs(sum(self.fields) - 1.0) > 1e-6:
            raise ConfigError(f"palette {self.name!r}: field state shares {self.fields} must add up to 1")

    def s2_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` reflectance tables ``(material, band)`` with this palette's overrides."""
        low, high = S2_LOW.copy(), S2_HIGH.copy()
        for m, bands in self.s2.items():
            low[m] = [b[0] for b in bands]
            high[m] = [b[1] for b in bands]
        return low, high

    def s1_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return S1_LOW_DB.copy(), S1_HIGH_DB.copy()

    def roof_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``(materials, cdf)`` per land use, the layout :func:`crofuse.synthetic.landcover._pick_roof` reads."""
        table = np.zeros((5, 5), dtype=np.uint8)
        cdf = np.ones((5, 5), dtype=np.float32)
        for use, w in self.roofs.items():
            mats = list(w)
            table[use, : len(mats)] = mats
            table[use, len(mats) :] = mats[-1]
            cdf[use, : len(mats)] = np.cumsum(list(w.values()))
        cdf[:, -1] = 1.0
        return table, cdf

    def height_ranges(self) -> np.ndarray:
        """``(5, 2)`` building height range (m) per land use."""
        out = np.array([[40.0, 40.0], [60.0, 60.0], [13.0, 13.0], [6.0, 6.0], [30.0, 30.0]], np.float32)
        for use, r in self.heights.items():
            out[use] = r
        return out


# ------------------------------------------------------------------------------------------------------ geometry
def sun_position(lat_deg: float, *, local_solar_hour: float = 10.5, day_of_year: int = 166) -> tuple[float, float]:
    """(zenith, azimuth) in degrees of the sun at the Sentinel-2 overpass (10:30 local solar time, mid-June).

    Standard solar geometry (declination from Cooper's formula); azimuth clockwise from north. At 30 deg N this
    gives a zenith of about 21 deg in the south-east; at 3 deg N the June sun stands north of the zenith."""
    decl = math.radians(23.44 * math.sin(math.radians(360.0 * (284 + day_of_year) / 365.0)))
    lat = math.radians(lat_deg)
    h = math.radians(15.0 * (local_solar_hour - 12.0))
    cos_z = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(h)
    z = math.acos(max(-1.0, min(1.0, cos_z)))
    # azimuth from north, clockwise
    sin_az = -math.cos(decl) * math.sin(h) / math.sin(z)
    cos_az = (math.sin(decl) - math.sin(lat) * cos_z) / (math.cos(lat) * math.sin(z))
    az = math.degrees(math.atan2(sin_az, cos_az)) % 360.0
    return math.degrees(z), az


# ------------------------------------------------------------------------------------------------------ palettes
C, M, B, T, D = (Material.ROOF_CONCRETE, Material.ROOF_METAL, Material.ROOF_BLUE, Material.ROOF_TILE,
                 Material.ROOF_DARK)

HUMID_SUBTROPICAL_CHINA = Palette(
    name="humid-subtropical-china",
    climate="Yangtze basin in the Meiyu (plum-rain) season: humid, cloudy June; rice and vegetables around the city",
    roofs={
        RESIDENTIAL: {C: 0.45, T: 0.15, D: 0.15, M: 0.15, B: 0.10},
        COMMERCIAL: {C: 0.45, M: 0.35, D: 0.20},
        INDUSTRIAL: {B: 0.45, M: 0.35, C: 0.20},
        VILLAGE: {T: 0.55, C: 0.30, D: 0.15},
        NEW: {C: 0.50, M: 0.25, B: 0.15, T: 0.10},
    },
    green=1.0, trees=0.55, dry_grass=0.05,
    fields=(0.50, 0.20, 0.18, 0.10, 0.02),
    greenhouses=0.12, construction=0.10, dust_net=0.35, sports=0.07, turf=0.7, sand_bars=60.0,
    heights={RESIDENTIAL: (25.0, 90.0), COMMERCIAL: (40.0, 150.0), INDUSTRIAL: (8.0, 16.0), VILLAGE: (6.0, 12.0),
             NEW: (30.0, 100.0)},
    grid_aligned=0.45, clouds=CloudClimate(0.25, 0.20), aerosol=1.2, clutter=0.3,
)

ARID_NILE = Palette(
    name="arid-nile",
    climate="hot desert with an irrigated river valley: bright bare soil and sand, dusty flat roofs, clear June sky",
    roofs={
        RESIDENTIAL: {C: 0.80, D: 0.08, M: 0.07, B: 0.05},
        COMMERCIAL: {C: 0.65, M: 0.25, D: 0.10},
        INDUSTRIAL: {M: 0.40, C: 0.40, B: 0.20},
        VILLAGE: {C: 0.75, D: 0.25},
        NEW: {C: 0.75, M: 0.15, B: 0.10},
    },
    s2={
        # calcareous desert soil: bright and flat, as bright as concrete (ours, after the notes' dry-soil range)
        Material.BARE_SOIL: ((0.10, 0.24), (0.13, 0.29), (0.16, 0.35), (0.20, 0.40)),
        Material.SAND: ((0.15, 0.26), (0.19, 0.31), (0.23, 0.37), (0.27, 0.41)),
    },
    dust=0.35, green=0.45, trees=0.35, dry_grass=0.55,
    fields=(0.45, 0.05, 0.30, 0.05, 0.15),
    greenhouses=0.06, desert=0.45, construction=0.10, dust_net=0.0, sports=0.04, turf=0.6, sand_bars=30.0,
    heights={RESIDENTIAL: (12.0, 35.0), COMMERCIAL: (20.0, 70.0), INDUSTRIAL: (6.0, 12.0), VILLAGE: (5.0, 12.0),
             NEW: (15.0, 45.0)},
    grid_aligned=0.35, clouds=CloudClimate(0.0, 0.85, 0.15), aerosol=1.6, clutter=0.25, lakes=0.01,
    uses=(0.45, 0.70, 0.15), cirrus=0.1, street_trees=0.3, crowns=0.3,
)

TROPICAL_HUMID = Palette(
    name="tropical-humid",
    climate="equatorial: dense tree canopy, red lateritic soil, metal and tile roofs, cloud on most passes",
    roofs={
        RESIDENTIAL: {T: 0.40, M: 0.30, C: 0.20, D: 0.10},
        COMMERCIAL: {C: 0.50, M: 0.35, D: 0.15},
        INDUSTRIAL: {M: 0.55, B: 0.25, C: 0.20},
        VILLAGE: {M: 0.55, T: 0.35, D: 0.10},
        NEW: {C: 0.40, T: 0.35, M: 0.25},
    },
    s2={
        # lateritic (iron-oxide) soil: dark blue, high red, close to clay tile (ours)
        Material.BARE_SOIL: ((0.04, 0.09), (0.06, 0.12), (0.10, 0.22), (0.16, 0.30)),
    },
    green=1.45, trees=0.7, dry_grass=0.0,
    fields=(0.70, 0.10, 0.10, 0.10, 0.0),
    greenhouses=0.02, construction=0.07, dust_net=0.0, sports=0.05, turf=0.4, sand_bars=0.0,
    heights={RESIDENTIAL: (8.0, 70.0), COMMERCIAL: (40.0, 200.0), INDUSTRIAL: (8.0, 14.0), VILLAGE: (4.0, 8.0),
             NEW: (20.0, 90.0)},
    grid_aligned=0.15, clouds=CloudClimate(0.35, 0.05, 0.8), aerosol=1.3, clutter=0.35,
    uses=(0.60, 0.60, 0.20), cirrus=0.5, street_trees=0.8, crowns=0.8,
)

TEMPERATE_EUROPE = Palette(
    name="temperate-europe",
    climate="Po valley: red clay-tile roofs, brown alluvial soil, green June with ripening wheat, some rice",
    roofs={
        RESIDENTIAL: {T: 0.65, C: 0.15, D: 0.10, M: 0.10},
        COMMERCIAL: {T: 0.50, C: 0.30, M: 0.10, D: 0.10},
        INDUSTRIAL: {M: 0.45, C: 0.30, B: 0.25},
        VILLAGE: {T: 0.85, C: 0.15},
        NEW: {T: 0.40, C: 0.35, M: 0.15, D: 0.10},
    },
    s2={
        # moist alluvial soil: browner and darker than the Yangtze loams (ours)
        Material.BARE_SOIL: ((0.04, 0.11), (0.055, 0.14), (0.07, 0.19), (0.12, 0.27)),
    },
    green=1.1, trees=0.5, dry_grass=0.1,
    fields=(0.45, 0.10, 0.12, 0.08, 0.25),
    greenhouses=0.03, construction=0.04, dust_net=0.0, sports=0.05, turf=0.4, sand_bars=20.0,
    heights={RESIDENTIAL: (12.0, 28.0), COMMERCIAL: (18.0, 60.0), INDUSTRIAL: (8.0, 14.0), VILLAGE: (6.0, 12.0),
             NEW: (12.0, 40.0)},
    grid_aligned=0.15, clouds=CloudClimate(0.12, 0.35), aerosol=0.9, clutter=0.3, lakes=0.03,
    uses=(0.50, 0.70, 0.20), cirrus=0.3,
)

PALETTES: dict[str, Palette] = {p.name: p for p in (HUMID_SUBTROPICAL_CHINA, ARID_NILE, TROPICAL_HUMID,
                                                   TEMPERATE_EUROPE)}
DEFAULT_PALETTE = HUMID_SUBTROPICAL_CHINA.name


def get_palette(name: str) -> Palette:
    """The palette called ``name``; the error lists the known ones."""
    try:
        return PALETTES[name]
    except KeyError:
        raise ConfigError(f"unknown palette {name!r}; known palettes: {', '.join(PALETTES)}") from None


__all__ = ["DEFAULT_PALETTE", "PALETTES", "CloudClimate", "Palette", "get_palette", "sun_position"]
