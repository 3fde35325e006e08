"""Training-set augmentation of paper section II-B / IV-A: vertical flip, random rotation and Gaussian blur; and,
off by default, radiometric and SAR-calibration jitter for transfer to other cities and sensors.

Geometric transforms move optical, SAR and label together; blur and the radiometric jitter touch the inputs only.
Every draw comes from the ``numpy.random.Generator`` passed in, so the dataset can seed it per
``(seed, epoch, index)``. With the radiometric settings at 0 (the default) no extra number is drawn, so the paper's
augmentation gives exactly the patches it gave before they existed.

**Units of the radiometric jitter.** :class:`~crofuse.data.patches.PatchDataset` augments *after* standardising
(:meth:`crofuse.normalization.Normalization.standardise`), so the jitter acts on standardised bands ``z``:
``z' = g·z + o`` per patch. A gain ``a`` and an offset ``b`` on the physical band ``x`` (reflectance, dB) give
``z' = a·z + ((a - 1)·mean + b) / std``, which is again of that form, so jittering ``z`` spans the same per-band
affine changes as jittering ``x``; the offsets are in units of the band's training std. What they stand for:
Sentinel-2 L2A surface reflectance differs between processing baselines, atmospheric corrections, seasons and
sites by per-band gains and offsets (the ``optical_*`` settings); Sentinel-1 gamma0 has an absolute radiometric
accuracy requirement of 1 dB (3 sigma), an error shared by both polarisations of a scene (``sar_offset``), plus
smaller per-polarisation differences (``sar_band_offset``). The standardised units make one setting fit any
training set; ``docs/results.md`` gives the values the transfer suite uses and what they are in reflectance and dB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crofuse import NODATA_LABEL
from crofuse.errors import ConfigError


@dataclass(frozen=True)
class Augmentation:
    """Random flips, rotations and blur, applied to ``(optical (C,H,W), sar (C,H,W), label (H,W))``.

    - ``vflip``: probability of a vertical (up-down) flip (paper: vertical flip);
    - ``hflip``: probability of a horizontal flip (off by default, not in the paper);
    - ``rotate90``: rotate by a random multiple of 90° (paper: random rotation; exact, no resampling);
    - ``max_angle``: additionally rotate by a uniform angle in ``[-max_angle, max_angle]`` degrees (bilinear for
      inputs, nearest for labels; pixels rotated in from outside get label 255 and input 0, the normalised mean);
    - ``blur``: probability of a Gaussian blur of the inputs with sigma drawn from ``blur_sigma`` (paper: Gaussian
      blur; never applied to labels);
    - ``optical_gain``: per optical band, multiply by a gain drawn from ``[1 - g, 1 + g]`` (not in the paper);
    - ``optical_offset``: per optical band, add an offset drawn from ``[-o, o]`` training std (not in the paper);
    - ``sar_offset``: add one offset drawn from ``[-s, s]`` to both SAR bands (a calibration error; not in the
      paper);
    - ``sar_band_offset``: per SAR band, add a further offset drawn from ``[-s, s]`` (not in the paper).

    The four radiometric settings act on standardised bands (see the module docstring) and are off (0) by default.
    """

    vflip: float = 0.5
    hflip: float = 0.0
    rotate90: bool = True
    max_angle: float = 0.0
    blur: float = 0.25
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    optical_gain: float = 0.0
    optical_offset: float = 0.0
    sar_offset: float = 0.0
    sar_band_offset: float = 0.0

    @property
    def radiometric(self) -> bool:
        """Whether any radiometric or SAR-calibration jitter is on."""
        return any(v > 0 for v in (self.optical_gain, self.optical_offset, self.sar_offset, self.sar_band_offset))

    def __post_init__(self) -> None:
        if not 0.0 <= self.optical_gain < 1.0:
            raise ConfigError(f"augmentation optical_gain must be in [0, 1) (gains 1 ± g), got {self.optical_gain}")
        for name in ("optical_offset", "sar_offset", "sar_band_offset"):
            v = getattr(self, name)
            if not 0.0 <= v <= 5.0:
                raise ConfigError(f"augmentation {name} is an offset in training std and must be in [0, 5], got {v}")
        for name in ("vflip", "hflip", "blur"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"augmentation {name} is a probability and must be in [0, 1], got {p}")
        if not 0.0 <= self.max_angle <= 180.0:
            raise ConfigError(f"augmentation max_angle must be in [0, 180] degrees, got {self.max_angle}")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ConfigError(f"augmentation blur_sigma must be (low, high) with 0 < low <= high, got {self.blur_sigma}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["blur_sigma"] = list(self.blur_sigma)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Augmentation:
        data = dict(data)
        if "blur_sigma" in data:
            data["blur_sigma"] = tuple(data["blur_sigma"])
        return cls(**data)

    def __call__(
        self, optical: np.ndarray, sar: np.ndarray, label: np.ndarray, *, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Augment one patch. The same geometric transform is applied to all three arrays."""
        if rng.random() < self.vflip:
            optical, sar, label = optical[:, ::-1, :], sar[:, ::-1, :], label[::-1, :]
        if rng.random() < self.hflip:
            optical, sar, label = optical[:, :, ::-1], sar[:, :, ::-1], label[:, ::-1]
        if self.rotate90:
            k = int(rng.integers(0, 4))
            if k:
                optical = np.rot90(optical, k, axes=(1, 2))
                sar = np.rot90(sar, k, axes=(1, 2))
                label = np.rot90(label, k, axes=(0, 1))
        if self.max_angle > 0:
            angle = float(rng.uniform(-self.max_angle, self.max_angle))
            optical, sar, label = _rotate(optical, sar, label, angle)
        if rng.random() < self.blur:
            from scipy.ndimage import gaussian_filter

            sigma = float(rng.uniform(*self.blur_sigma))
            optical = gaussian_filter(np.asarray(optical, dtype=np.float32), sigma=(0, sigma, sigma), mode="reflect")
            sar = gaussian_filter(np.asarray(sar, dtype=np.float32), sigma=(0, sigma, sigma), mode="reflect")
        if self.radiometric:
            optical, sar = self._radiometric(optical, sar, rng)
        return np.ascontiguousarray(optical), np.ascontiguousarray(sar), np.ascontiguousarray(label)

    def _radiometric(self, optical: np.ndarray, sar: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
        n_opt, n_sar = optical.shape[0], sar.shape[0]
        gain = rng.uniform(1.0 - self.optical_gain, 1.0 + self.optical_gain, n_opt).astype(np.float32)
        offset = rng.uniform(-self.optical_offset, self.optical_offset, n_opt).astype(np.float32)
        common = np.float32(rng.uniform(-self.sar_offset, self.sar_offset))
        per_band = rng.uniform(-self.sar_band_offset, self.sar_band_offset, n_sar).astype(np.float32)
        optical = np.asarray(optical, dtype=np.float32) * gain[:, None, None] + offset[:, None, None]
        sar = np.asarray(sar, dtype=np.float32) + (common + per_band)[:, None, None]
        return optical, sar


def _rotate(
    optical: np.ndarray, sar: np.ndarray, label: np.ndarray, angle: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.ndimage import rotate

    kw = {"angle": angle, "reshape": False, "mode": "constant"}
    optical = rotate(np.asarray(optical, dtype=np.float32), axes=(2, 1), order=1, cval=0.0, **kw)
    sar = rotate(np.asarray(sar, dtype=np.float32), axes=(2, 1), order=1, cval=0.0, **kw)
    label = rotate(np.asarray(label), axes=(1, 0), order=0, cval=NODATA_LABEL, **kw).astype(label.dtype)
    return optical, sar, label
