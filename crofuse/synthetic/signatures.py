"""Surface materials and their Sentinel-2 reflectance and Sentinel-1 backscatter ranges.

Values follow ``/work/shared/notes/sentinel-signatures.md`` (typical S2 L2A surface reflectance and S1 IW RTC gamma0
over mid-latitude cities); deviations and additions are listed in ``docs/sample-data.md``. Each object (a roof, a
field, a lake) draws one position ``t`` in [0, 1] inside its material's range, the same ``t`` for every band, so an
object's spectrum keeps its shape while its brightness varies from object to object.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Material(IntEnum):
    """Materials of the 2.5 m ground truth. Values 0-6 are pervious, 7-13 impervious."""

    LAKE = 0
    RIVER = 1
    FOREST = 2
    GRASS = 3
    CROP = 4
    PADDY = 5
    BARE_SOIL = 6
    ASPHALT = 7
    CONCRETE = 8
    ROOF_CONCRETE = 9
    ROOF_METAL = 10
    ROOF_BLUE = 11
    ROOF_TILE = 12
    ROOF_DARK = 13


N_MATERIALS = len(Material)
IMPERVIOUS_MATERIALS = frozenset(m for m in Material if m >= Material.ASPHALT)
BUILDING_MATERIALS = frozenset(m for m in Material if m >= Material.ROOF_CONCRETE)


class LandCover(IntEnum):
    """Classes of the 10 m ``landcover`` raster (majority of the sub-pixel materials)."""

    NODATA = 0
    WATER = 1
    TREES = 2
    GRASS = 3
    CROPLAND = 4
    BARE_SOIL = 5
    PAVED = 6
    BUILDING = 7


MATERIAL_TO_LANDCOVER = np.array(
    [
        LandCover.WATER,  # LAKE
        LandCover.WATER,  # RIVER
        LandCover.TREES,  # FOREST
        LandCover.GRASS,  # GRASS
        LandCover.CROPLAND,  # CROP
        LandCover.CROPLAND,  # PADDY
        LandCover.BARE_SOIL,  # BARE_SOIL
        LandCover.PAVED,  # ASPHALT
        LandCover.PAVED,  # CONCRETE
        *([LandCover.BUILDING] * 5),  # roofs
    ],
    dtype=np.uint8,
)
IS_IMPERVIOUS = np.array([m in IMPERVIOUS_MATERIALS for m in Material], dtype=bool)
IS_BUILDING = np.array([m in BUILDING_MATERIALS for m in Material], dtype=bool)

# Surface reflectance (0-1) ranges, bands B02, B03, B04, B08: (low, high) per band.
_S2 = {
    Material.LAKE: ((0.04, 0.07), (0.04, 0.08), (0.02, 0.05), (0.005, 0.02)),
    Material.RIVER: ((0.06, 0.10), (0.08, 0.13), (0.07, 0.12), (0.03, 0.06)),  # turbid, sediment-laden
    Material.FOREST: ((0.02, 0.04), (0.04, 0.07), (0.02, 0.04), (0.30, 0.45)),
    Material.GRASS: ((0.03, 0.05), (0.06, 0.09), (0.04, 0.07), (0.25, 0.40)),
    Material.CROP: ((0.03, 0.05), (0.06, 0.09), (0.04, 0.07), (0.25, 0.40)),  # growing crops in June
    Material.PADDY: ((0.04, 0.06), (0.05, 0.08), (0.04, 0.06), (0.08, 0.16)),  # flooded, newly transplanted rice
    Material.BARE_SOIL: ((0.05, 0.14), (0.066, 0.17), (0.084, 0.24), (0.12, 0.30)),  # wet (x0.6) to dry
    Material.ASPHALT: ((0.07, 0.10), (0.08, 0.11), (0.09, 0.12), (0.11, 0.15)),
    Material.CONCRETE: ((0.15, 0.25), (0.17, 0.27), (0.18, 0.28), (0.20, 0.30)),
    Material.ROOF_CONCRETE: ((0.15, 0.25), (0.17, 0.27), (0.18, 0.28), (0.20, 0.30)),
    Material.ROOF_METAL: ((0.25, 0.40), (0.25, 0.40), (0.25, 0.40), (0.25, 0.40)),
    Material.ROOF_BLUE: ((0.15, 0.22), (0.13, 0.18), (0.08, 0.12), (0.12, 0.18)),
    Material.ROOF_TILE: ((0.06, 0.08), (0.08, 0.10), (0.14, 0.18), (0.20, 0.25)),
    Material.ROOF_DARK: ((0.06, 0.09), (0.07, 0.10), (0.08, 0.11), (0.10, 0.14)),  # asphalt shingle, tar roofs
}

# Sentinel-1 gamma0 ranges in dB: (VV low, VV high), (VH low, VH high). Buildings are handled by
# :func:`building_backscatter_db` (double bounce depends on facade orientation).
_S1_DB = {
    Material.LAKE: ((-25.0, -18.0), (-30.0, -24.0)),
    Material.RIVER: ((-22.0, -16.0), (-28.0, -22.0)),  # current and wind roughen large rivers
    Material.FOREST: ((-9.0, -6.0), (-15.0, -12.0)),
    Material.GRASS: ((-13.0, -9.0), (-21.0, -15.0)),
    Material.CROP: ((-13.0, -9.0), (-21.0, -15.0)),
    Material.PADDY: ((-20.0, -14.0), (-26.0, -20.0)),  # standing water under young rice: mostly specular
    Material.BARE_SOIL: ((-15.0, -10.0), (-24.0, -17.0)),
    Material.ASPHALT: ((-20.0, -14.0), (-28.0, -22.0)),  # smooth: dark like water
    Material.CONCRETE: ((-17.0, -11.0), (-25.0, -19.0)),  # plazas, pavements: a bit rougher than asphalt
}
BUILDING_VV_DB = (-2.0, 8.0)
BUILDING_VH_DB = (-13.0, -8.0)

S2_LOW = np.array([[b[0] for b in _S2[m]] for m in Material], dtype=np.float32)  # (material, band)
S2_HIGH = np.array([[b[1] for b in _S2[m]] for m in Material], dtype=np.float32)
S1_LOW_DB = np.full((N_MATERIALS, 2), np.nan, dtype=np.float32)
S1_HIGH_DB = np.full((N_MATERIALS, 2), np.nan, dtype=np.float32)
for _m, ((_vl, _vh), (_hl, _hh)) in _S1_DB.items():
    S1_LOW_DB[_m] = (_vl, _hl)
    S1_HIGH_DB[_m] = (_vh, _hh)

TRACK_HEADING_DEG = {"ascending": -12.0, "descending": 192.0}
"""Satellite ground-track heading (degrees clockwise from north) of Sentinel-1 at 30°N."""

DOUBLE_BOUNCE_WIDTH_DEG = 15.0
"""How fast double bounce fades as the facades turn away from the track direction."""


def reflectance(material: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Surface reflectance ``(4, ...)`` of materials at range positions ``t`` (same ``t`` for every band)."""
    out = np.empty((4, *material.shape), dtype=np.float32)
    for k in range(4):
        lo = S2_LOW[:, k][material]
        out[k] = lo + t * (S2_HIGH[:, k][material] - lo)
    return out


def orientation_factor(facade_deg: np.ndarray, orbit_state: str) -> np.ndarray:
    """Double-bounce strength in [0, 1]: 1 when facades run parallel to the ground track, ~0 at 45°."""
    heading = TRACK_HEADING_DEG[orbit_state]
    d = np.abs((facade_deg - heading + 45.0) % 90.0 - 45.0)
    return np.exp(-((d / DOUBLE_BOUNCE_WIDTH_DEG) ** 2)).astype(np.float32)


def backscatter_db(material: np.ndarray, t: np.ndarray, facade_deg: np.ndarray, orbit_state: str) -> np.ndarray:
    """Gamma0 ``(2, ...)`` in dB (VV, VH). Buildings: VV from -2 dB (facades at 45° to the track) to +8 dB."""
    bld = IS_BUILDING[material]
    f = orientation_factor(facade_deg, orbit_state)
    out = np.empty((2, *material.shape), dtype=np.float32)
    for k, (blo, bhi, wf) in enumerate(((*BUILDING_VV_DB, 0.75), (*BUILDING_VH_DB, 0.5))):
        lo = S1_LOW_DB[:, k][material]
        flat = lo + t * (S1_HIGH_DB[:, k][material] - lo)
        building = blo + (bhi - blo) * (wf * f + (1 - wf) * t)
        out[k] = np.where(bld, building, flat)
    return out
