"""The global window grid, reflection indexing and the windows each output chunk needs.

The grid is anchored to the scene origin (not to a dask chunk), so the blended result does not depend on how the
scene is chunked: a chunk simply runs every global window that touches it and keeps its own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crofuse.errors import ConfigError


def window_starts(length: int, window: int, stride: int, *, pad: int = 0) -> tuple[int, ...]:
    """Origins of the windows along one axis of a scene of ``length`` pixels padded by ``pad`` on both sides.

    Windows start at ``-pad`` and step by ``stride``. The last window is shifted back so that it ends exactly at
    ``length + pad`` (the right/bottom edge is covered once or more, no window runs past it, and no window is
    dropped or padded twice). When the padded scene is shorter than one window, a single window starts at ``-pad``
    and the reflection padding supplies the rest.
    """
    if length < 1:
        raise ConfigError(f"cannot tile an axis of length {length}; the cube is empty")
    if window < 1 or not 0 < stride <= window:
        raise ConfigError(f"need window >= 1 and 0 < stride <= window, got window={window}, stride={stride}")
    if pad < 0:
        raise ConfigError(f"pad={pad} must be >= 0")
    lo, hi = -pad, length + pad
    if hi - lo <= window:
        return (lo,)
    starts = list(range(lo, hi - window + 1, stride))
    if starts[-1] + window < hi:
        starts.append(hi - window)
    return tuple(starts)


def reflect_index(index: np.ndarray, length: int) -> np.ndarray:
    """Map any integer pixel index onto ``0..length-1`` by mirror reflection without repeating the edge pixel.

    Same convention as ``numpy.pad(mode="reflect")``, applied as often as needed (so any padding width works).
    """
    index = np.asarray(index, dtype=np.int64)
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index >= length, period - index, index)


def windows_touching(starts: tuple[int, ...], window: int, lo: int, hi: int) -> tuple[int, ...]:
    """The window origins in ``starts`` whose span ``[s, s + window)`` intersects ``[lo, hi)``."""
    return tuple(s for s in starts if s < hi and s + window > lo)


@dataclass(frozen=True)
class ChunkPlan:
    """What one output chunk ``rows x cols`` needs: its windows and the input region (scene pixel indices).

    ``region_rows``/``region_cols`` are global, possibly outside the scene (then read by reflection);
    window origins are global too.
    """

    rows: tuple[int, int]
    cols: tuple[int, int]
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]
    window: int

    @property
    def region_rows(self) -> tuple[int, int]:
        return self.row_starts[0], self.row_starts[-1] + self.window

    @property
    def region_cols(self) -> tuple[int, int]:
        return self.col_starts[0], self.col_starts[-1] + self.window

    @property
    def n_windows(self) -> int:
        return len(self.row_starts) * len(self.col_starts)


def plan_chunk(
    shape: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    window: int,
    stride: int,
    pad: int,
) -> ChunkPlan:
    """The global windows that touch the output chunk ``rows x cols`` of a scene of ``shape`` (height, width)."""
    height, width = shape
    all_rows = window_starts(height, window, stride, pad=pad)
    all_cols = window_starts(width, window, stride, pad=pad)
    row_starts = windows_touching(all_rows, window, *rows)
    col_starts = windows_touching(all_cols, window, *cols)
    if not row_starts or not col_starts:  # pragma: no cover - the grid covers the whole scene by construction
        raise ConfigError(f"no window covers chunk rows={rows} cols={cols} of a {shape} scene")
    return ChunkPlan(rows=rows, cols=cols, row_starts=row_starts, col_starts=col_starts, window=window)


def chunk_bounds(length: int, chunk: int) -> tuple[tuple[int, int], ...]:
    """``[start, stop)`` of each chunk along an axis, the last one shorter when ``length % chunk``."""
    return tuple((s, min(s + chunk, length)) for s in range(0, length, chunk))
