"""Surface materials and their Sentinel-2 reflectance and Sentinel-1 backscatter ranges.

Values follow ``/work/shared/notes/sentinel-signatures.md`` (typical S2 L2A surface reflectance and S1 IW RTC gamma0
over mid-latitude cities); deviations and additions are listed in ``docs/sample-data.md``. Each object (a roof, a
field, a lake) draws one position ``t`` in [0, 1] inside its material's range, the same ``t`` for every band, so an
object's spectrum keeps its shape while its brightness varies from object to object.

Generator v2 adds materials whose spectra overlap the other class (greenhouse film, sand and gravel, senescent
grass, dust-proof netting, artificial turf, running tracks), per-city tables (:mod:`crofuse.synthetic.palettes`:
soil colour, phenology) and the height and orientation dependence of urban double bounce
(:func:`backscatter_db_v2`). The v1 materials keep their values and numbers, so v1 output is unchanged.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Material(IntEnum):
    """Materials of the sub-pixel ground truth. v1 uses 0-13 (0-6 pervious, 7-13 impervious); v2 adds 14-19
    (:data:`IMPERVIOUS_MATERIALS` says which are impervious)."""

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
    GREENHOUSE = 14  # plastic-film greenhouse (pervious: soil and crops under the film)
    SAND = 15  # sand and gravel: river bars, yards, quarries, desert (pervious)
    DRY_GRASS = 16  # senescent grass and stubble (pervious)
    DUST_NET = 17  # green dust-proof netting over bare soil on construction sites (pervious)
    TURF = 18  # artificial turf pitch (impervious: a sealed synthetic surface)
    TRACK = 19  # polyurethane running track (impervious)
    COMPACTED_SOIL = 20  # graded, compacted soil of building sites: brighter than loose soil (pervious)


N_MATERIALS = len(Material)
IMPERVIOUS_MATERIALS = frozenset(m for m in Material if Material.ASPHALT <= m <= Material.ROOF_DARK) | {
    Material.TURF, Material.TRACK}
BUILDING_MATERIALS = frozenset(m for m in Material if Material.ROOF_CONCRETE <= m <= Material.ROOF_DARK)


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
        LandCover.CROPLAND,  # GREENHOUSE
        LandCover.BARE_SOIL,  # SAND
        LandCover.GRASS,  # DRY_GRASS
        LandCover.BARE_SOIL,  # DUST_NET
        LandCover.PAVED,  # TURF
        LandCover.PAVED,  # TRACK
        LandCover.BARE_SOIL,  # COMPACTED_SOIL
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
    # v2 (docs/sample-data.md, "Generator v2": sources and what is ours)
    Material.GREENHOUSE: ((0.12, 0.24), (0.14, 0.26), (0.13, 0.26), (0.22, 0.38)),  # film over crops: bright, NIR up
    Material.SAND: ((0.12, 0.22), (0.16, 0.27), (0.19, 0.32), (0.23, 0.36)),  # bright, rising to the red
    Material.DRY_GRASS: ((0.05, 0.09), (0.07, 0.12), (0.09, 0.16), (0.17, 0.28)),  # senescent: red up, NIR down
    Material.DUST_NET: ((0.05, 0.08), (0.08, 0.12), (0.06, 0.09), (0.10, 0.18)),  # green HDPE: green peak, low NIR
    Material.TURF: ((0.04, 0.07), (0.07, 0.11), (0.05, 0.09), (0.14, 0.24)),  # green fibres: NDVI below grass
    Material.TRACK: ((0.06, 0.09), (0.07, 0.10), (0.12, 0.18), (0.16, 0.24)),  # red polyurethane, like clay tile
    Material.COMPACTED_SOIL: ((0.12, 0.21), (0.14, 0.24), (0.16, 0.28), (0.19, 0.32)),  # graded, dry, smooth
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
    # v2
    Material.GREENHOUSE: ((-9.0, -4.0), (-17.0, -12.0)),  # steel frames and arched film: brighter than fields
    Material.SAND: ((-22.0, -14.0), (-29.0, -21.0)),  # smooth dry sand is dark; gravel at the bright end
    Material.DRY_GRASS: ((-15.0, -11.0), (-23.0, -17.0)),  # less water, less volume than green grass
    Material.DUST_NET: ((-15.0, -10.0), (-24.0, -17.0)),  # the bare soil under it
    Material.TURF: ((-14.0, -10.0), (-22.0, -16.0)),  # fibres over rubber infill: rough like grass
    Material.TRACK: ((-19.0, -13.0), (-27.0, -21.0)),  # smooth like asphalt
    Material.COMPACTED_SOIL: ((-17.0, -11.0), (-25.0, -18.0)),  # smoother than loose soil: like concrete
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


def reflectance(
    material: np.ndarray, t: np.ndarray, low: np.ndarray = S2_LOW, high: np.ndarray = S2_HIGH
) -> np.ndarray:
    """Surface reflectance ``(4, ...)`` of materials at range positions ``t`` (same ``t`` for every band).

    ``low``/``high`` are ``(material, band)`` tables (default the v1 ones; a city's palette may replace rows)."""
    out = np.empty((4, *material.shape), dtype=np.float32)
    for k in range(4):
        lo = low[:, k][material]
        out[k] = lo + t * (high[:, k][material] - lo)
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


# ----------------------------------------------------------------------------------------------------------- v2
BUILDING_V2_VV_DB = (-10.0, 6.0)
"""v2 double bounce, VV: facades at 45 deg to the track (no dihedral towards the sensor) look like rough volume
scatterers, about -10 to -5 dB; facades parallel to it reach +6 dB (+ the height term). Ferro et al. 2011 (IEEE GRSL
8(4)): the double bounce "decreases significantly from 0 to 10 degrees aspect angle"; Thirion-Lefevre et al. 2020
(Remote Sensing 12, 1632): oriented urban areas are misclassified as vegetation. The end values are ours."""
BUILDING_V2_VH_DB = (-17.0, -9.0)
REFERENCE_HEIGHT_M = 20.0
"""Height at which the v2 double bounce takes its nominal value; the dihedral's area grows with the wall height."""


def backscatter_db_v2(
    material: np.ndarray,
    t: np.ndarray,
    facade_deg: np.ndarray,
    orbit_state: str,
    height_m: np.ndarray,
    low_db: np.ndarray = S1_LOW_DB,
    high_db: np.ndarray = S1_HIGH_DB,
) -> np.ndarray:
    """v2 gamma0 ``(2, ...)`` in dB (VV, VH): like :func:`backscatter_db`, but oblique buildings fall to the level of
    trees (:data:`BUILDING_V2_VV_DB`) and the double bounce grows with the wall height, ``10 log10(h / 20 m)``
    (half of it in VH), clipped to +-4 dB (the dihedral's area is proportional to the wall height)."""
    bld = IS_BUILDING[material]
    f = orientation_factor(facade_deg, orbit_state)
    gain = np.clip(10.0 * np.log10(np.maximum(height_m, 1.0) / REFERENCE_HEIGHT_M), -4.0, 4.0).astype(np.float32)
    out = np.empty((2, *material.shape), dtype=np.float32)
    for k, (blo, bhi, wf, wh) in enumerate(((*BUILDING_V2_VV_DB, 0.8, 1.0), (*BUILDING_V2_VH_DB, 0.5, 0.5))):
        lo = low_db[:, k][material]
        flat = lo + t * (high_db[:, k][material] - lo)
        building = blo + (bhi - blo) * (wf * f + (1 - wf) * t) + wh * gain * (0.3 + 0.7 * f)
        out[k] = np.where(bld, building, flat)
    return out
