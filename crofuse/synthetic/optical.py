"""Sentinel-2 L2A simulation: clouds, their shadows, cirrus, swath edges, atmosphere residuals, DN and SCL.

Generator v2 (``difficulty`` given) also draws each city's June cloud climatology from its palette, a persistent
atmospheric bias per city (the regional aerosol model's residual), larger per-acquisition residuals, and a small
per-acquisition misregistration (multi-temporal co-registration), with the sources in ``docs/sample-data.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from crofuse.synthetic.landcover import GroundTruth
from crofuse.synthetic.noise import derive_seed, fractal_noise, rank_normalise
from crofuse.synthetic.schedule import Acquisition, boa_offset, processing_baseline
from crofuse.synthetic.signatures import LandCover

if TYPE_CHECKING:
    from crofuse.synthetic.config import Difficulty

# Scene classification codes (Sen2Cor)
SCL_NODATA, SCL_SATURATED, SCL_DARK, SCL_SHADOW, SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER = 0, 1, 2, 3, 4, 5, 6
SCL_UNCLASSIFIED, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SNOW = 7, 8, 9, 10, 11
SCL_MASKED = (0, 1, 3, 8, 9, 10)
"""SCL codes that are usually masked before compositing."""

CLOUD_FLAG_OPACITY = 0.05
"""Cloud opacity from which a pixel is flagged as cloud (8); 0.6 and above is high probability (9)."""
SHADOW_FLAG = 0.03
"""Darkening (share of light removed by a cloud shadow) from which SCL says cloud shadow (3)."""
CIRRUS_FLAG = 0.01
"""Cirrus reflectance (added to every band) from which SCL says thin cirrus (10)."""
SCL_RESOLUTION_M = 20.0


@dataclass(frozen=True)
class OpticalScene:
    """One simulated Sentinel-2 L2A acquisition on the 10 m grid.

    reflectance: ``(4, y, x)`` float32 observed surface reflectance (NaN outside the swath).
    dn: ``(4, y, x)`` uint16 digital numbers as stored (0 = nodata, offset +1000 from baseline 04.00).
    scl: ``(y/2, x/2)`` uint8 scene classification at 20 m, like the real product.
    scl10: ``(y, x)`` uint8 the same classification at 10 m before aggregation.
    cloud, shadow, cirrus: ``(y, x)`` float32 cloud opacity, shadow darkening (share of light removed) and cirrus
        reflectance.
    """

    acquisition: Acquisition
    baseline: str
    reflectance: np.ndarray
    dn: np.ndarray
    scl: np.ndarray
    scl10: np.ndarray
    cloud: np.ndarray
    shadow: np.ndarray
    cirrus: np.ndarray
    valid: np.ndarray

    @property
    def cloud_cover(self) -> float:
        """Percentage of valid 20 m pixels classified as cloud (8, 9) or cirrus (10): ``eo:cloud_cover``."""
        valid = self.scl != SCL_NODATA
        if not valid.any():
            return 100.0
        return float(100.0 * np.isin(self.scl[valid], (8, 9, 10)).mean())


def _cloud_fraction(rng: np.random.Generator, scale: float) -> float:
    """June over central China: many scenes mostly cloudy, some clear."""
    u = rng.uniform()
    if u < 0.2:
        c = rng.uniform(0.85, 1.0)
    elif u < 0.45:
        c = rng.uniform(0.0, 0.05)
    else:
        c = rng.uniform(0.05, 0.7)
    return float(np.clip(c * scale, 0.0, 1.0))


BAND_SHARE = np.array([1.0, 0.8, 0.6, 0.5], np.float32)
"""How the atmospheric residuals scale from blue to NIR (aerosol scattering falls with wavelength; v2)."""


def city_bias(city_key: int, seed: int, sigma: float) -> np.ndarray:
    """The persistent atmospheric bias ``(4,)`` of one city (v2): blue ``N(0, sigma)``, the other bands scaled by
    :data:`BAND_SHARE`; the same for every acquisition and year of the city."""
    rng = np.random.default_rng(derive_seed(seed, "s2-city-bias", city_key))
    return (rng.normal(0.0, 1.0) * sigma * BAND_SHARE).astype(np.float32)


def surface_bias(city, *, seed: int, difficulty: Difficulty | None) -> np.ndarray:
    """The persistent ``(4,)`` surface-reflectance bias every acquisition of ``city`` carries (v2: the city's
    atmospheric bias, :func:`city_bias` times its palette's ``aerosol``; v1, ``difficulty=None``: zeros). A clear-sky
    composite of the catalog estimates ``GroundTruth.reflectance`` plus this."""
    if difficulty is None:
        return np.zeros(4, np.float32)
    from crofuse.synthetic.palettes import get_palette

    return city_bias(city.key, seed, difficulty.s2_city_bias * get_palette(city.palette).aerosol)


def _shift_bands(x: np.ndarray, drow: float, dcol: float) -> np.ndarray:
    from scipy.ndimage import shift as nd_shift

    return np.stack([nd_shift(b, (drow, dcol), order=1, mode="nearest") for b in x]).astype(np.float32)


def _aggregate_scl(scl10: np.ndarray) -> np.ndarray:
    """10 m SCL -> 20 m: nodata, cloud, shadow, cirrus win if present in any sub-pixel; otherwise the majority."""
    h, w = scl10.shape
    blocks = scl10.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    out = np.zeros((h // 2, w // 2), dtype=np.uint8)
    counts = np.stack([(blocks == c).sum(-1) for c in (SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER)], axis=0)
    out[:] = np.array([SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER], np.uint8)[np.argmax(counts, axis=0)]
    for code in (SCL_CIRRUS, SCL_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_NODATA):  # ascending priority
        out[(blocks == code).any(-1)] = code
    return out


def simulate_optical(
    truth: GroundTruth,
    acquisition: Acquisition,
    *,
    seed: int = 0,
    cloud_scale: float = 1.0,
    partial_swath_probability: float = 0.15,
    temporal_variation: bool = True,
    overcast: bool = False,
    difficulty: Difficulty | None = None,
) -> OpticalScene:
    """Simulate one Sentinel-2 L2A acquisition over ``truth`` (deterministic in seed, city and date).

    ``difficulty`` (generator v2) adds the city's cloud climatology and atmospheric bias, the v2 per-acquisition
    residuals and misregistration; ``None`` is the v1 simulation, unchanged."""
    n = truth.shape[0]
    s = derive_seed(seed, "s2", truth.city.key, acquisition.datetime.isoformat())
    rng = np.random.default_rng(s)
    surf = truth.reflectance.copy()
    g_sd, o_sd = (0.02, 0.003) if difficulty is None else (difficulty.s2_scene_gain, difficulty.s2_scene_offset)
    if temporal_variation:
        gain = rng.normal(1.0, g_sd, 4).astype(np.float32)[:, None, None]
        offset = rng.normal(0.0, o_sd, 4).astype(np.float32)[:, None, None]
        if difficulty is not None:
            offset = offset * BAND_SHARE[:, None, None]
        veg = truth.fractions[LandCover.TREES] + truth.fractions[LandCover.GRASS] + truth.fractions[LandCover.CROPLAND]
        surf[3] *= 1.0 + rng.normal(0.0, 0.04) * veg  # phenology: NIR of vegetation moves from pass to pass
        surf = surf * gain + offset
    palette = None
    if difficulty is not None:
        from crofuse.synthetic.palettes import get_palette

        palette = get_palette(truth.city.palette)
        if temporal_variation:  # off: every clear observation equals the truth (tests rely on it)
            surf = surf + surface_bias(truth.city, seed=seed, difficulty=difficulty)[:, None, None]
            if difficulty.s2_misregistration_px > 0:
                dr, dc = np.random.default_rng(derive_seed(s, "v2")).normal(0.0, difficulty.s2_misregistration_px, 2)
                surf = _shift_bands(surf, float(dr), float(dc))
    # clouds: thresholded fractal noise on a grid padded to the south-east, so that shadows of clouds outside the
    # tile reach in; shadows fall to the north-west (sun in the south-east at 10:30 in June, clouds 1-3 km high)
    if palette is None:
        c = _cloud_fraction(rng, cloud_scale)
    else:
        c = float(np.clip(palette.clouds.draw(rng) * cloud_scale, 0.0, 1.0))
    if overcast:
        c = 1.0
    dy, dx = int(rng.uniform(30, 110) * n / 1000) + 1, int(rng.uniform(20, 80) * n / 1000) + 1
    field = rank_normalise(fractal_noise((n + dy, n + dx), seed=derive_seed(s, "cloud"), beta=3.3))
    edge = 0.04
    if c >= 0.999:
        opacity = np.ones_like(field)
    elif c > 0:
        opacity = np.clip((field - (1.0 - c)) / edge, 0.0, 1.0)
    else:
        opacity = np.zeros_like(field)
    cloud = opacity[:n, :n]
    shadow = opacity[dy : dy + n, dx : dx + n]
    shadow = shadow * rng.uniform(0.5, 0.8)  # share of the light a shadow removes (x0.2-0.5 of the surface)
    thick = 0.3 + 0.45 * np.clip((field[:n, :n] - (1.0 - c)) / max(c, 1e-3), 0, 1)
    cloud_refl = np.stack([thick * 1.08, thick * 1.04, thick, thick * 0.97]).astype(np.float32)
    # cirrus: a thin veil over part of the scene on about a third of the days
    cirrus = np.zeros((n, n), np.float32)
    p_cirrus = 0.35 if palette is None else palette.cirrus
    if rng.uniform() < p_cirrus * min(cloud_scale, 1.0 / p_cirrus):
        cf = rank_normalise(fractal_noise((n, n), seed=derive_seed(s, "cirrus"), beta=3.8))
        cirrus = (rng.uniform(0.02, 0.08) * np.clip((cf - 0.5) / 0.3, 0, 1)).astype(np.float32)
    obs = surf * (1.0 - shadow * (cloud < CLOUD_FLAG_OPACITY))
    obs = obs + cirrus * np.array([1.3, 1.1, 1.0, 0.9], np.float32)[:, None, None]
    obs = (1.0 - cloud) * obs + cloud * cloud_refl
    # swath edge: part of the scene outside the imaged strip
    valid = np.ones((n, n), bool)
    if rng.uniform() < partial_swath_probability:
        ang = np.deg2rad(rng.uniform(-20, 20) + 90)  # swath edges run roughly north-south
        yy, xx = np.mgrid[0:n, 0:n]
        proj = (xx - n / 2) * np.sin(ang) + (yy - n / 2) * np.cos(ang)
        cut = rng.uniform(-0.3, 0.3) * n
        valid = proj * (1 if rng.uniform() < 0.5 else -1) < cut
    # scene classification from what the sensor sees
    b03, b04, b08 = obs[1], obs[2], obs[3]
    ndvi = (b08 - b04) / np.maximum(b08 + b04, 1e-6)
    ndwi = (b03 - b08) / np.maximum(b03 + b08, 1e-6)
    scl10 = np.full((n, n), SCL_NOT_VEGETATED, np.uint8)
    scl10[ndvi > 0.35] = SCL_VEGETATION
    scl10[(ndwi > 0.0) & (b08 < 0.08)] = SCL_WATER
    scl10[cirrus >= CIRRUS_FLAG] = SCL_CIRRUS
    scl10[(shadow >= SHADOW_FLAG) & (cloud < CLOUD_FLAG_OPACITY)] = SCL_SHADOW
    scl10[cloud >= CLOUD_FLAG_OPACITY] = SCL_CLOUD_MEDIUM
    scl10[cloud >= 0.6] = SCL_CLOUD_HIGH
    scl10[~valid] = SCL_NODATA
    baseline = processing_baseline(acquisition.date)
    dn = np.clip(np.rint(obs * 10000.0) + boa_offset(baseline), 1, 65535).astype(np.uint16)
    dn[:, ~valid] = 0
    obs = obs.astype(np.float32)
    obs[:, ~valid] = np.nan
    return OpticalScene(
        acquisition=acquisition, baseline=baseline, reflectance=obs, dn=dn, scl=_aggregate_scl(scl10), scl10=scl10,
        cloud=cloud.astype(np.float32), shadow=shadow.astype(np.float32), cirrus=cirrus, valid=valid,
    )
