"""Sentinel-1 RTC simulation: gamma0 in linear power with multiplicative Gamma speckle.

Generator v2 (``difficulty`` given) adds the radiometric calibration offsets the mission specifies (a persistent one
per city and orbit, a smaller one per pass) and a per-orbit misregistration against Sentinel-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from crofuse.synthetic.landcover import GroundTruth
from crofuse.synthetic.noise import derive_seed
from crofuse.synthetic.schedule import Acquisition
from crofuse.synthetic.signatures import LandCover

if TYPE_CHECKING:
    from crofuse.synthetic.config import Difficulty


@dataclass(frozen=True)
class SarScene:
    """One simulated Sentinel-1 RTC acquisition: ``gamma0 (2, y, x)`` float32 linear power (VV, VH).

    ``mean`` is the speckle-free gamma0 of this pass (ground truth of its orbit plus this pass's wind on water).
    """

    acquisition: Acquisition
    gamma0: np.ndarray
    mean: np.ndarray
    enl: float


def orbit_offsets(city_key: int, orbit_state: str, seed: int, difficulty: Difficulty) -> tuple[float, float, float]:
    """(calibration offset dB, row shift px, column shift px) of one city and orbit (v2): persistent over passes."""
    rng = np.random.default_rng(derive_seed(seed, "s1-orbit", city_key, orbit_state))
    cal = rng.normal(0.0, difficulty.s1_calibration_db)
    dr, dc = rng.normal(0.0, difficulty.s1_misregistration_px, 2)
    return float(cal), float(dr), float(dc)


def simulate_sar(
    truth: GroundTruth, acquisition: Acquisition, *, seed: int = 0, enl: float = 4.5, temporal_variation: bool = True,
    difficulty: Difficulty | None = None,
) -> SarScene:
    """Simulate one pass: ``gamma0 = mean * Gamma(L, 1/L)`` per pixel and polarisation (fully developed speckle,
    L = ``enl`` looks, independent between pixels and passes). ``difficulty`` (generator v2) adds the calibration
    offsets and misregistration of :func:`orbit_offsets` and a per-pass stability offset."""
    s = derive_seed(seed, "s1", truth.city.key, acquisition.datetime.isoformat())
    rng = np.random.default_rng(s)
    mean = truth.backscatter[acquisition.orbit_state].copy()
    if difficulty is not None and temporal_variation:  # off: every pass sees the truth (tests rely on it)
        from scipy.ndimage import shift as nd_shift

        cal, dr, dc = orbit_offsets(truth.city.key, acquisition.orbit_state, seed, difficulty)
        if dr or dc:
            mean = np.stack([nd_shift(b, (dr, dc), order=1, mode="nearest") for b in mean]).astype(np.float32)
        cal += np.random.default_rng(derive_seed(s, "v2")).normal(0.0, difficulty.s1_stability_db)
        mean *= np.float32(10.0 ** (cal / 10.0))
    if temporal_variation:
        # wind roughening of water: +-1.5 dB from pass to pass on water pixels
        wind_db = rng.uniform(-1.5, 1.5)
        mean *= np.power(10.0, wind_db * truth.fractions[LandCover.WATER] / 10.0, dtype=np.float32)
    speckle = rng.standard_gamma(enl, size=mean.shape).astype(np.float32) / np.float32(enl)
    return SarScene(acquisition=acquisition, gamma0=(mean * speckle).astype(np.float32), mean=mean, enl=enl)
