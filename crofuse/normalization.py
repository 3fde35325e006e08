"""Per-band input normalisation ``(x - mean) / std`` for optical reflectance and SAR dB.

The statistics come from the training split (computed by :mod:`crofuse.data`) and travel in the checkpoint's model
card, so a map is always normalised the way its model was trained. Works on torch tensors and numpy arrays shaped
``(..., C, H, W)``.

:meth:`Normalization.standardise` is the one input rule of training, the Predictor and tiled inference. It has two
modes, recorded in the card (``normalization.mode``):

- ``"dataset"`` (default): every band with the training split's mean and std;
- ``"per-scene"``: every scene with its *own* per-band mean and std, so that a per-band gain and offset that a
  whole scene shares (another sensor calibration, atmosphere, a city's palette) is removed before the model sees
  it. A *scene* is one sample of the ``(..., C, H, W)`` input: a training patch, or one window of tiled inference
  (both 128 px by default, so training and prediction see the same statistic). Its std is floored at
  ``scene_min_std`` × the training split's std, so a nearly uniform scene (open water) is not blown up to unit
  variance; a scene with no finite value falls back to the training split's statistics. This is the simplest
  *representation matching* of domain adaptation for remote sensing (each image standardised on its own before
  a classifier shared by all images; Tuia, Persello and Bruzzone 2016, "Domain adaptation for the classification
  of remote sensing data: an overview of recent advances", IEEE GRSM 4(2): 41-57). The training split's
  statistics stay in the card for the floor and the fallback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from crofuse.errors import ConfigError

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)

StandardisationMode = Literal["dataset", "per-scene"]
MODES: tuple[str, ...] = ("dataset", "per-scene")
DEFAULT_SCENE_MIN_STD = 0.25
"""Floor of a scene's std in ``per-scene`` mode, as a fraction of the training split's std of the band."""
_KEYS = ("optical_mean", "optical_std", "sar_mean", "sar_std")


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
    """Per-band mean and standard deviation of the optical (B02, B03, B04, B08) and SAR (VV, VH) inputs, and the
    standardisation ``mode`` (``"dataset"`` or ``"per-scene"``, see the module docstring)."""

    optical_mean: tuple[float, ...]
    optical_std: tuple[float, ...]
    sar_mean: tuple[float, ...]
    sar_std: tuple[float, ...]
    mode: StandardisationMode = "dataset"
    scene_min_std: float = DEFAULT_SCENE_MIN_STD

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"normalisation mode must be one of {MODES}, got {self.mode!r}")
        if not (isinstance(self.scene_min_std, (int, float)) and 0.0 < float(self.scene_min_std) <= 1.0):
            raise ConfigError(f"scene_min_std must be in (0, 1] (a fraction of the dataset std), got {self.scene_min_std!r}")
        object.__setattr__(self, "scene_min_std", float(self.scene_min_std))
        for name in _KEYS:
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
        standardise per band (``"dataset"`` mode: :meth:`apply`; ``"per-scene"`` mode: every sample with its own
        per-band statistics, see the module docstring), then set every non-finite value (NaN: no clear observation
        in the composite; inf) to 0, i.e. to the band mean. Arrays ``(..., C, H, W)``, float32 out.
        """
        if self.mode == "per-scene":
            optical = _scene_standardise(optical, self.optical_mean, self.optical_std, self.scene_min_std, "optical")
            sar = _scene_standardise(sar, self.sar_mean, self.sar_std, self.scene_min_std, "sar")
        else:
            optical, sar = self.apply(optical, sar)
        return _zero_non_finite(optical), _zero_non_finite(sar)

    def with_mode(self, mode: str, *, scene_min_std: float | None = None) -> Normalization:
        """The same statistics with another standardisation ``mode`` (``"dataset"`` or ``"per-scene"``)."""
        from dataclasses import replace

        return replace(self, mode=mode,  # type: ignore[arg-type]
                       scene_min_std=self.scene_min_std if scene_min_std is None else scene_min_std)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; the mode keys are written only in ``per-scene`` mode, so a ``dataset`` card reads as before."""
        data: dict[str, Any] = {
            "optical_mean": list(self.optical_mean),
            "optical_std": list(self.optical_std),
            "sar_mean": list(self.sar_mean),
            "sar_std": list(self.sar_std),
        }
        if self.mode != "dataset":
            data["mode"] = self.mode
            data["scene_min_std"] = self.scene_min_std
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        keys = set(_KEYS)
        optional = {"mode", "scene_min_std"}
        if not isinstance(data, Mapping) or not keys <= set(data) or set(data) - keys - optional:
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f"a normalisation needs exactly the keys {sorted(keys)} (optionally {sorted(optional)}), "
                              f"got {got}")
        extra = {k: data[k] for k in optional if k in data}
        return cls(**{k: tuple(data[k]) for k in _KEYS}, **extra)


def _check_bands(x: Any, mean: tuple[float, ...], name: str) -> None:
    if x.ndim < 3 or x.shape[-3] != len(mean):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; expected (..., {len(mean)}, H, W) to match the normalisation's "
            f"{len(mean)} bands"
        )


def _normalise(x: ArrayT, mean: tuple[float, ...], std: tuple[float, ...], *, name: str) -> ArrayT:
    _check_bands(x, mean, name)
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


def _scene_standardise(x: ArrayT, mean: tuple[float, ...], std: tuple[float, ...], min_std: float, name: str) -> ArrayT:
    """``(x - mean_scene) / max(std_scene, min_std * std)`` per sample and band over the finite pixels of H, W;
    a sample-band without finite pixels uses the dataset ``mean``/``std``."""
    _check_bands(x, mean, name)
    if isinstance(x, torch.Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.float32
        x = x.to(dtype)
        m_ds = torch.tensor(mean, dtype=dtype, device=x.device)[:, None, None]
        s_ds = torch.tensor(std, dtype=dtype, device=x.device)[:, None, None]
        finite = torch.isfinite(x)
        n = finite.sum(dim=(-2, -1), keepdim=True)
        xz = torch.where(finite, x, torch.zeros((), dtype=dtype, device=x.device))
        m = xz.sum(dim=(-2, -1), keepdim=True) / n.clamp(min=1)
        var = (torch.where(finite, x - m, torch.zeros((), dtype=dtype, device=x.device)) ** 2).sum(
            dim=(-2, -1), keepdim=True) / n.clamp(min=1)
        empty = n == 0
        m = torch.where(empty, m_ds.expand_as(m), m)
        s = torch.where(empty, s_ds.expand_as(var), torch.maximum(var.sqrt(), min_std * s_ds))
        return (x - m) / s
    if isinstance(x, np.ndarray):
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        x = x.astype(dtype, copy=False)
        m_ds = np.asarray(mean, dtype=dtype)[:, None, None]
        s_ds = np.asarray(std, dtype=dtype)[:, None, None]
        finite = np.isfinite(x)
        n = finite.sum(axis=(-2, -1), keepdims=True)
        xz = np.where(finite, x, 0)
        m = xz.sum(axis=(-2, -1), keepdims=True) / np.maximum(n, 1)
        var = (np.where(finite, x - m, 0) ** 2).sum(axis=(-2, -1), keepdims=True) / np.maximum(n, 1)
        empty = n == 0
        m = np.where(empty, np.broadcast_to(m_ds, m.shape), m)
        s = np.where(empty, np.broadcast_to(s_ds, var.shape), np.maximum(np.sqrt(var), min_std * s_ds))
        return ((x - m) / s).astype(dtype, copy=False)
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _zero_non_finite(x: ArrayT) -> ArrayT:
    if isinstance(x, torch.Tensor):
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    x = np.asarray(x, dtype=np.float32)
    return np.where(np.isfinite(x), x, np.float32(0.0)).astype(np.float32, copy=False)


__all__ = ["DEFAULT_SCENE_MIN_STD", "MODES", "Normalization", "StandardisationMode"]
