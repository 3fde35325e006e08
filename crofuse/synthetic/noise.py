"""Deterministic randomness: per-object hashes and spatially correlated (fractal) noise fields."""

from __future__ import annotations

import zlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (vectorised; uint64 arithmetic wraps as intended)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


_KEY_MULT = (
    np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9),
    np.uint64(0xD6E8FEB86659FD93), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53),
)


def hash_ints(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """A 64-bit hash of integer keys (broadcast together); the same keys always give the same value.

    The keys are folded into one word with distinct odd multipliers, then mixed once (splitmix64 finaliser): one
    mixing round per call keeps the per-pixel object lookups of the city generator cheap.
    """
    with np.errstate(over="ignore"):
        acc = _mix(np.asarray(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5851F42D4C957F2D)))
        for i, k in enumerate(keys):
            k = np.asarray(k)
            k = k.astype(np.int64).view(np.uint64) if k.dtype != np.uint64 else k
            acc = (acc ^ (k * _KEY_MULT[i % len(_KEY_MULT)])) * _GOLD + np.uint64(i + 1)
        return _mix(acc)


def hash_uniform(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform values in [0, 1) (float32-safe, never 1.0), one per broadcast key tuple."""
    h = hash_ints(seed, *keys)
    return ((h >> np.uint64(40)).astype(np.float64) / float(1 << 24)).astype(np.float32)


def derive_seed(*parts: int | str) -> int:
    """A seed for one purpose (e.g. ``(seed, 'clouds', city.key, date)``), stable across Python runs."""
    acc = 0x12345
    for p in parts:
        v = zlib.crc32(p.encode()) if isinstance(p, str) else int(p)
        acc = int(hash_ints(acc, np.int64(v & 0x7FFFFFFFFFFFFFFF)))
    return acc & 0x7FFFFFFFFFFFFFFF


def fractal_noise(shape: tuple[int, int], *, seed: int, beta: float = 3.0, min_period: float = 2.0) -> np.ndarray:
    """Spatially correlated noise with a ``1/f**beta`` power spectrum, normalised to mean 0, std 1 (float32).

    ``beta`` ~3 gives cloud- and coastline-like fields; periods shorter than ``min_period`` pixels are removed.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    white = rng.standard_normal((h, w)).astype(np.float32)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2)
    amp[f > 1.0 / min_period] = 0.0
    amp[0, 0] = 0.0
    field = np.fft.irfft2(np.fft.rfft2(white) * amp, s=(h, w)).astype(np.float32)
    field -= field.mean()
    sd = field.std()
    return field / sd if sd > 0 else field


def rank_normalise(field: np.ndarray) -> np.ndarray:
    """Map a standardised fractal field to [0, 1] through the normal CDF, its approximate quantiles (so that
    ``field > 1 - c`` covers about a fraction ``c``); O(n), unlike an exact rank transform."""
    from scipy.special import ndtr

    return ndtr(field).astype(np.float32)
