"""The global window grid, reflection indexing and the windows each output chunk needs.

The grid is anchored to the scene origin (not to a dask chunk), so the blended result does not depend on how the
scene is chunked. Each window of the grid is *owned* by exactly one output chunk, the one holding its origin (its
top-left pixel, clamped into the scene for the reflected halo windows): that chunk runs it, once, and accumulates its
weighted footprint into a block of ``chunk + window - 1`` px per axis (:func:`block_bounds`). The part of a block
beyond its chunk (the spill, at most ``window - 1`` px to the right and bottom) is added into the neighbouring
chunks before the division, as ``dask.array.overlap`` does for boundary accumulation (:func:`feeding_chunks`).
:func:`plan_chunk` still lists every window that *contributes* to a chunk (what a chunk used to run on its own).
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


def owned_starts(starts: tuple[int, ...], lo: int, hi: int, length: int) -> tuple[int, ...]:
    """The window origins in ``starts`` owned by the chunk ``[lo, hi)`` of an axis of ``length`` pixels: those whose
    origin, clamped into ``0..length-1`` (halo windows start left of the scene), lies in ``[lo, hi)``.

    The chunks of :func:`chunk_bounds` partition the axis, so every origin has exactly one owner.
    """
    return tuple(s for s in starts if lo <= min(max(s, 0), length - 1) < hi)


def block_bounds(bounds: tuple[int, int], length: int, *, window: int, chunk: int) -> tuple[int, int]:
    """Scene pixels ``[start, stop)`` along an axis that the windows owned by the chunk ``bounds`` can write to:
    the chunk plus up to ``window - 1`` px of spill to the right/bottom, clipped to the scene.

    Every block has the side ``block_side(length, window=window, chunk=chunk)`` except where the scene ends.
    """
    return bounds[0], min(bounds[0] + block_side(length, window=window, chunk=chunk), length)


def block_side(length: int, *, window: int, chunk: int) -> int:
    """The side of an accumulation block along an axis: ``chunk + window - 1``, or the axis if it is shorter."""
    return min(chunk + window - 1, length)


@dataclass(frozen=True)
class OwnedPlan(ChunkPlan):
    """The windows one output chunk owns (runs) and the input region they read (scene pixel indices, possibly
    outside the scene, read by reflection). ``row_starts``/``col_starts`` may be empty (a chunk narrower than the
    stride can own no origin along an axis); then it owns no window and reads nothing. ``block_rows``/``block_cols``:
    the accumulation block its windows' sums cover."""

    block_rows: tuple[int, int]
    block_cols: tuple[int, int]


def plan_owned(
    shape: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    window: int,
    stride: int,
    pad: int,
    chunk: int,
) -> OwnedPlan:
    """The global windows owned by the output chunk ``rows x cols`` (of side ``chunk``) of a scene of ``shape``."""
    height, width = shape
    row_starts = owned_starts(window_starts(height, window, stride, pad=pad), *rows, height)
    col_starts = owned_starts(window_starts(width, window, stride, pad=pad), *cols, width)
    return OwnedPlan(
        rows=rows, cols=cols, row_starts=row_starts, col_starts=col_starts, window=window,
        block_rows=block_bounds(rows, height, window=window, chunk=chunk),
        block_cols=block_bounds(cols, width, window=window, chunk=chunk),
    )


def planned_windows(
    shape: tuple[int, int], *, window: int, stride: int, pad: int, chunk: int
) -> dict[tuple[tuple[int, int], tuple[int, int]], int]:
    """``{(rows, cols): windows}``: how many windows each output chunk runs, before the windows with no valid pixel
    are skipped. The counts sum to the size of the global window grid (each window runs once)."""
    height, width = shape
    return {
        (rows, cols): plan_owned(shape, rows, cols, window=window, stride=stride, pad=pad, chunk=chunk).n_windows
        for rows in chunk_bounds(height, chunk)
        for cols in chunk_bounds(width, chunk)
    }


def grid_size(shape: tuple[int, int], *, window: int, stride: int, pad: int) -> int:
    """The number of windows in the global window grid of a scene of ``shape``."""
    return len(window_starts(shape[0], window, stride, pad=pad)) * len(window_starts(shape[1], window, stride, pad=pad))


def feeding_chunks(
    shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int], *, window: int, chunk: int
) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """The chunks whose accumulation blocks overlap the output chunk ``rows x cols``, in row-major order: itself and
    the chunks above and to the left whose spill reaches it (three neighbours when ``chunk >= window - 1``)."""
    height, width = shape

    def along(bounds: tuple[int, int], length: int) -> list[tuple[int, int]]:
        return [b for b in chunk_bounds(length, chunk)
                if b[0] < bounds[1] and block_bounds(b, length, window=window, chunk=chunk)[1] > bounds[0]]

    return tuple((r, c) for r in along(rows, height) for c in along(cols, width))
