"""Per-band input normalisation ``(x - mean) / std`` for optical reflectance and SAR dB.

The statistics come from the training split (computed by :mod:`crofuse.data`) and travel in the checkpoint's model
card, so a map is always normalised the way its model was trained. Works on torch tensors and numpy arrays shaped
``(..., C, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from crofuse.errors import ConfigError

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def _floats(name: str, values: Sequence[float]) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a sequence of numbers, got {values!r}") from exc
    if not out or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{name} must be a non-empty sequence of finite numbers, got {values!r}")
    return out


@dataclass(frozen=True)
class Normalization:
    """Per-band mean and standard deviation of the optical (B02, B03, B04, B08) and SAR (VV, VH) inputs."""

    optical_mean: tuple[float, ...]
    optical_std: tuple[float, ...]
    sar_mean: tuple[float, ...]
    sar_std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("optical_mean", "optical_std", "sar_mean", "sar_std"):
            object.__setattr__(self, name, _floats(name, getattr(self, name)))
        if len(self.optical_mean) != len(self.optical_std) or len(self.sar_mean) != len(self.sar_std):
            raise ConfigError(
                f"mean and std lengths differ: optical {len(self.optical_mean)} vs {len(self.optical_std)}, "
                f"sar {len(self.sar_mean)} vs {len(self.sar_std)}"
            )
        if min(self.optical_std + self.sar_std) <= 0:
            raise ConfigError(
                f"standard deviations must be > 0 (a constant band cannot be normalised); got optical "
                f"{self.optical_std}, sar {self.sar_std}"
            )

    @classmethod
    def identity(cls, optical_channels: int = 4, sar_channels: int = 2) -> Normalization:
        """Mean 0, std 1: leaves the inputs unchanged."""
        return cls((0.0,) * optical_channels, (1.0,) * optical_channels, (0.0,) * sar_channels, (1.0,) * sar_channels)

    @property
    def optical_channels(self) -> int:
        return len(self.optical_mean)

    @property
    def sar_channels(self) -> int:
        return len(self.sar_mean)

    def apply(self, optical: ArrayT, sar: ArrayT) -> tuple[ArrayT, ArrayT]:
        """``((optical - mean) / std, (sar - mean) / std)`` per band; arrays shaped ``(..., C, H, W)``."""
        return (
            _normalise(optical, self.optical_mean, self.optical_std, name="optical"),
            _normalise(sar, self.sar_mean, self.sar_std, name="sar"),
        )

    def standardise(self, optical: ArrayT, sar: ArrayT) -> tuple[ArrayT, ArrayT]:
        """The one input rule of training, the :class:`~crofuse.checkpoint.Predictor` and tiled inference:
        standardise per band (:meth:`apply`), then set every non-finite value (NaN: no clear observation in the
        composite; inf) to 0, i.e. to the band mean of the training split. Arrays ``(..., C, H, W)``, float32 out.
        """
        optical, sar = self.apply(optical, sar)
        return _zero_non_finite(optical), _zero_non_finite(sar)

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "optical_mean": list(self.optical_mean),
            "optical_std": list(self.optical_std),
            "sar_mean": list(self.sar_mean),
            "sar_std": list(self.sar_std),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        keys = {"optical_mean", "optical_std", "sar_mean", "sar_std"}
        if not isinstance(data, Mapping) or set(data) != keys:
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f"a normalisation needs exactly the keys {sorted(keys)}, got {got}")
        return cls(**{k: tuple(data[k]) for k in keys})


def _normalise(x: ArrayT, mean: tuple[float, ...], std: tuple[float, ...], *, name: str) -> ArrayT:
    if x.ndim < 3 or x.shape[-3] != len(mean):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; expected (..., {len(mean)}, H, W) to match the normalisation's "
            f"{len(mean)} bands"
        )
    if isinstance(x, torch.Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.float32
        m = torch.tensor(mean, dtype=dtype, device=x.device)[:, None, None]
        s = torch.tensor(std, dtype=dtype, device=x.device)[:, None, None]
        return (x.to(dtype) - m) / s
    if isinstance(x, np.ndarray):
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        m = np.asarray(mean, dtype=dtype)[:, None, None]
        s = np.asarray(std, dtype=dtype)[:, None, None]
        return (x.astype(dtype, copy=False) - m) / s
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _zero_non_finite(x: ArrayT) -> ArrayT:
    if isinstance(x, torch.Tensor):
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    x = np.asarray(x, dtype=np.float32)
    return np.where(np.isfinite(x), x, np.float32(0.0)).astype(np.float32, copy=False)


__all__ = ["Normalization"]
