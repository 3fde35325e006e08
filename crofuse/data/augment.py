"""Training-set augmentation of paper section II-B / IV-A: vertical flip, random rotation and Gaussian blur.

Geometric transforms move optical, SAR and label together; blur touches the inputs only. Every draw comes from the
``numpy.random.Generator`` passed in, so the dataset can seed it per ``(seed, epoch, index)``.
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
      blur; never applied to labels).
    """

    vflip: float = 0.5
    hflip: float = 0.0
    rotate90: bool = True
    max_angle: float = 0.0
    blur: float = 0.25
    blur_sigma: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
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
        return np.ascontiguousarray(optical), np.ascontiguousarray(sar), np.ascontiguousarray(label)


def _rotate(
    optical: np.ndarray, sar: np.ndarray, label: np.ndarray, angle: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.ndimage import rotate

    kw = {"angle": angle, "reshape": False, "mode": "constant"}
    optical = rotate(np.asarray(optical, dtype=np.float32), axes=(2, 1), order=1, cval=0.0, **kw)
    sar = rotate(np.asarray(sar, dtype=np.float32), axes=(2, 1), order=1, cval=0.0, **kw)
    label = rotate(np.asarray(label), axes=(1, 0), order=0, cval=NODATA_LABEL, **kw).astype(label.dtype)
    return optical, sar, label
