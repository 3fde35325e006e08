"""Blending weights and the weighted accumulation of overlapping window predictions."""

from __future__ import annotations

import numpy as np

from crofuse.errors import ConfigError


def blend_weights(window: int, *, kind: str = "hann", floor: float = 1e-3) -> np.ndarray:
    """The ``(window, window)`` float32 weight given to each pixel of a window's prediction.

    ``"hann"``: the separable cosine (Hann) taper ``sin^2(pi (i + 1/2) / window)`` per axis, largest at the window
    centre where the network sees the most context, clipped below at ``floor`` so that border pixels keep a non-zero
    weight (pixels covered only by window borders, e.g. where the scene is smaller than a window, still get a value).
    ``"none"``: all ones (a plain average of the overlapping windows).
    """
    if kind == "none":
        return np.ones((window, window), dtype=np.float32)
    if kind != "hann":
        raise ConfigError(f"blend={kind!r} is not allowed; use 'hann' or 'none'")
    i = np.arange(window, dtype=np.float64)
    taper = np.sin(np.pi * (i + 0.5) / window) ** 2
    return np.maximum(np.outer(taper, taper), floor).astype(np.float32)


class BlendAccumulator:
    """Sums ``weight * value`` and ``weight`` over windows placed in a region, then divides.

    Probabilities are blended before any threshold (class maps come from the blended probability). With
    ``layers=k`` it blends ``k`` co-located layers at once (e.g. the impervious probability of each of CroFuseNet's
    heads) with the same weights and one shared weight sum: ``add`` takes ``(k, window, window)`` values and
    ``result`` returns ``(k, H, W)``. Each layer's result is bit-identical to blending it alone. Memory: ``k + 1``
    float32 arrays of the region.
    """

    def __init__(self, shape: tuple[int, int], weights: np.ndarray, *, layers: int | None = None) -> None:
        if layers is not None and layers < 1:
            raise ConfigError(f"layers={layers} must be >= 1 (or None for a single 2-D layer)")
        self.weights = weights.astype(np.float32)
        self.layers = layers
        self.total = np.zeros(tuple(shape) if layers is None else (layers, *shape), dtype=np.float32)
        self.weight_sum = np.zeros(shape, dtype=np.float32)

    def add(self, probability: np.ndarray, row: int, col: int) -> None:
        """Add one window's ``(window, window)`` values (``(layers, window, window)`` with ``layers``) with its
        origin at ``(row, col)`` of the region."""
        h, w = self.weights.shape
        self.total[..., row : row + h, col : col + w] += probability * self.weights
        self.weight_sum[row : row + h, col : col + w] += self.weights

    def add_sums(self, total: np.ndarray, weight_sum: np.ndarray, row: int, col: int) -> None:
        """Add sums accumulated by another accumulator (``total`` shaped like this one's layers, ``weight_sum``
        2-D) with their origin at ``(row, col)`` of the region: how a chunk receives the spill of the windows its
        neighbours own. The division waits for :meth:`result`, so blending stays ``sum(w p) / sum(w)``."""
        h, w = weight_sum.shape
        self.total[..., row : row + h, col : col + w] += total
        self.weight_sum[row : row + h, col : col + w] += weight_sum

    def result(self) -> np.ndarray:
        """Blended values; NaN where no window contributed."""
        out = np.full(self.total.shape, np.nan, dtype=np.float32)
        where = np.broadcast_to(self.weight_sum > 0, self.total.shape)
        np.divide(self.total, np.broadcast_to(self.weight_sum, self.total.shape), out=out, where=where)
        return out
