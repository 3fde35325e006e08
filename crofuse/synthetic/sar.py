"""Sentinel-1 RTC simulation: gamma0 in linear power with multiplicative Gamma speckle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crofuse.synthetic.landcover import GroundTruth
from crofuse.synthetic.noise import derive_seed
from crofuse.synthetic.schedule import Acquisition
from crofuse.synthetic.signatures import LandCover


@dataclass(frozen=True)
class SarScene:
    """One simulated Sentinel-1 RTC acquisition: ``gamma0 (2, y, x)`` float32 linear power (VV, VH).

    ``mean`` is the speckle-free gamma0 of this pass (ground truth of its orbit plus this pass's wind on water).
    """

    acquisition: Acquisition
    gamma0: np.ndarray
    mean: np.ndarray
    enl: float


def simulate_sar(
    truth: GroundTruth, acquisition: Acquisition, *, seed: int = 0, enl: float = 4.5, temporal_variation: bool = True
) -> SarScene:
    """Simulate one pass: ``gamma0 = mean * Gamma(L, 1/L)`` per pixel and polarisation (fully developed speckle,
    L = ``enl`` looks, independent between pixels and passes)."""
    s = derive_seed(seed, "s1", truth.city.key, acquisition.datetime.isoformat())
    rng = np.random.default_rng(s)
    mean = truth.backscatter[acquisition.orbit_state].copy()
    if temporal_variation:
        # wind roughening of water: +-1.5 dB from pass to pass on water pixels
        wind_db = rng.uniform(-1.5, 1.5)
        mean *= np.power(10.0, wind_db * truth.fractions[LandCover.WATER] / 10.0, dtype=np.float32)
    speckle = rng.standard_gamma(enl, size=mean.shape).astype(np.float32) / np.float32(enl)
    return SarScene(acquisition=acquisition, gamma0=(mean * speckle).astype(np.float32), mean=mean, enl=enl)
