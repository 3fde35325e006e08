"""Typed configuration of tiled inference (:func:`tiling.predict_cube`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from crofuse.errors import ConfigError

Blend = Literal["hann", "none"]
Autocast = Literal["auto", "bf16", "fp16", "off"]


@dataclass(frozen=True)
class TilingConfig:
    """How a cube is cut into windows, blended, chunked over dask and thresholded.

    Attributes:
        window: side of the square window fed to the model, in pixels (a multiple of ``model_multiple``).
        stride: step between window origins; ``window - stride`` is the overlap of neighbouring windows.
        halo: reflection padding around the scene, so that scene-edge pixels sit inside windows, as interior
            pixels do, instead of on a window border. ``None`` means ``(window - stride) // 2``.
        batch_size: windows per model forward (one forward over many windows, never one call per window).
        chunk_size: side of the output dask chunk (and of the ``maps.zarr`` chunks). Worker memory depends on this
            and ``batch_size``, never on the size of the city.
        blend: ``"hann"`` weights each window by a cosine (Hann) taper with a small ``floor``; ``"none"`` averages.
        floor: smallest blending weight, so that pixels on a window border still count.
        threshold: probability above which a pixel is impervious, applied to the blended, calibrated probability
            of the shared head (the one ``probability.tif`` stores). At 0.5 a single window's class is the argmax of
            its logits whatever the calibration temperature; after blending, a temperature can move a pixel's class
            only where overlapping windows disagree on it (``docs/inference.md``).
        device: ``"auto"`` (CUDA when the worker sees a GPU, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        autocast: mixed precision on GPU: ``"auto"`` (bf16 where supported, else fp16), ``"bf16"``, ``"fp16"``,
            ``"off"``. Ignored on CPU.
        channels_last: NHWC memory format on GPU (faster convolutions on tensor cores). Ignored on CPU.
        torch_threads: intra-op threads per task on CPU; ``None`` splits the host's cores between its dask worker
            threads so that workers x threads never oversubscribes the cores.
        model_multiple: the window must be divisible by this (the network's total downsampling factor).
    """

    window: int = 128
    stride: int = 96
    halo: int | None = None
    batch_size: int = 16
    chunk_size: int = 1024
    blend: Blend = "hann"
    floor: float = 1e-3
    threshold: float = 0.5
    device: str = "auto"
    autocast: Autocast = "auto"
    channels_last: bool = True
    torch_threads: int | None = None
    model_multiple: int = 16

    def __post_init__(self) -> None:
        if self.window <= 0 or self.window % self.model_multiple:
            raise ConfigError(
                f"window={self.window} must be a positive multiple of {self.model_multiple} (the network downsamples "
                f"by that factor); try 128 or 256"
            )
        if not 0 < self.stride <= self.window:
            raise ConfigError(f"stride={self.stride} must be in 1..window ({self.window}); the default is 96")
        if self.halo is not None and self.halo < 0:
            raise ConfigError(f"halo={self.halo} must be >= 0 (or None for (window - stride) // 2)")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size={self.chunk_size} must be >= 1; 1024 or 2048 suit most machines")
        if self.blend not in ("hann", "none"):
            raise ConfigError(f"blend={self.blend!r} is not allowed; use 'hann' or 'none'")
        if not 0.0 < self.floor <= 1.0:
            raise ConfigError(f"floor={self.floor} must be in (0, 1]")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold={self.threshold} must be strictly between 0 and 1")
        if self.autocast not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(f"autocast={self.autocast!r} is not allowed; use 'auto', 'bf16', 'fp16' or 'off'")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device={self.device!r} is not allowed; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"torch_threads={self.torch_threads} must be >= 1 or None")

    @property
    def effective_halo(self) -> int:
        """Reflection padding around the scene in pixels."""
        return (self.window - self.stride) // 2 if self.halo is None else self.halo

    def replace(self, **changes: object) -> TilingConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def output_fields(self) -> dict[str, object]:
        """The fields that change the bytes of the maps (used to decide whether a run can be resumed)."""
        return {
            "window": self.window,
            "stride": self.stride,
            "halo": self.effective_halo,
            "batch_size": self.batch_size,
            "chunk_size": self.chunk_size,
            "blend": self.blend,
            "floor": self.floor,
            "threshold": self.threshold,
        }
