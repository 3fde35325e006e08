"""Where patches go and which split each one belongs to: pure functions of grid shapes, settings and a seed.

Three splits (``docs/training-sets.md``):

- ``random``: the paper's (section IV, WHU-IS): 128×128 windows every 80 pixels (plus one flush with the far edge)
  over every city-year, and a seeded 8:1:1 permutation over all of them. Overlapping windows land in different
  splits, so most val/test pixels also lie inside some training patch; kept to reproduce the paper.
- ``blocked`` (default): the city is cut into square blocks of ``block_km`` on a grid anchored to the CRS origin,
  so a block is the same ground in every year; whole blocks go to one split (seeded, by the shares, city by city). Windows are
  tiled *inside* each block (stride 80, flush with the block's far edges) and never cross a block border, so no
  val or test pixel lies inside a training patch. In addition, training windows keep ``buffer_px`` (default one
  window) away from every val/test block: the buffer between splits that spatial cross-validation asks for
  (Roberts et al. 2017, Ecography 40: 913-929), so no training patch even touches a held-out block.
- ``by-city``: whole cities are held out (the transfer setting of paper V-C); windows as in ``random``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

SplitName = Literal["train", "val", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "val", "test")
SplitKind = Literal["blocked", "random", "by-city"]


@dataclass(frozen=True)
class Grid:
    """A city-year's pixel grid: ``shape`` (rows, cols) and its origin/pixel size in the CRS (north-up)."""

    city: str
    year: int
    shape: tuple[int, int]
    x0: float
    y0: float
    resolution: float
    crs: str


@dataclass(frozen=True)
class Window:
    """One patch: its city-year, pixel origin and size, and its split (None until assigned)."""

    city: str
    year: int
    row: int
    col: int
    size: int
    split: SplitName | None = None
    block: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        """``<city>_<year>_<row>_<col>`` (the WHU-IS-style file name)."""
        return f"{self.city}_{self.year}_{self.row:04d}_{self.col:04d}"

    def with_split(self, split: SplitName) -> Window:
        return Window(self.city, self.year, self.row, self.col, self.size, split, self.block)


def window_starts(n: int, size: int, stride: int) -> list[int]:
    """Window origins along one axis of length ``n``: every ``stride``, plus one flush with the far edge."""
    if n < size:
        return []
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


def grid_windows(grid: Grid, size: int, stride: int) -> list[Window]:
    """The paper's window grid over one city-year (row-major)."""
    return [Window(grid.city, grid.year, r, c, size)
            for r in window_starts(grid.shape[0], size, stride) for c in window_starts(grid.shape[1], size, stride)]


def allocate(n: int, shares: Sequence[float]) -> list[int]:
    """Split ``n`` items into ``len(shares)`` counts by largest remainder; every share > 0 gets at least one item
    when ``n`` allows it (a val or test split is never rounded away)."""
    raw = [n * s for s in shares]
    counts = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, s in enumerate(shares) if s > 0]
    if n >= len(wanted):
        for i in wanted:
            while counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def assign_shares(keys: Sequence[object], shares: Sequence[float], seed: int) -> dict[object, SplitName]:
    """A seeded permutation of ``keys`` cut into the splits by ``shares`` (see :func:`allocate`)."""
    order = np.random.default_rng(seed).permutation(len(keys))
    counts = allocate(len(keys), shares)
    out: dict[object, SplitName] = {}
    i = 0
    for split, count in zip(SPLITS, counts, strict=True):
        for j in order[i : i + count]:
            out[keys[int(j)]] = split
        i += count
    return out


def random_split(windows: Sequence[Window], shares: Sequence[float], seed: int) -> list[Window]:
    """The paper's split: a seeded permutation over every window (overlapping windows may land apart)."""
    which = assign_shares(list(range(len(windows))), shares, seed)
    return [w.with_split(which[i]) for i, w in enumerate(windows)]


def by_city_split(windows: Sequence[Window], holdout: Mapping[str, Sequence[str]]) -> list[Window]:
    """Whole cities in val or test (``holdout={"val": [...], "test": [...]}``), every other city in train."""
    city_split: dict[str, SplitName] = {}
    for split in ("val", "test"):
        for city in holdout.get(split, ()):
            city_split[city] = split  # type: ignore[assignment]
    return [w.with_split(city_split.get(w.city, "train")) for w in windows]


# ------------------------------------------------------------------------------------------------------- blocked
def block_of(grid: Grid, block_px: int, row: int, col: int) -> tuple[int, int]:
    """The CRS-anchored block (block row, block col) holding pixel (row, col) of ``grid``."""
    x = grid.x0 + (col + 0.5) * grid.resolution
    y = grid.y0 - (row + 0.5) * grid.resolution
    size = block_px * grid.resolution
    return (int(math.floor(-y / size)), int(math.floor(x / size)))


def block_label_raster(grid: Grid, block_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Block row and block col of every pixel of ``grid`` (two int arrays of ``grid.shape``)."""
    size = block_px * grid.resolution
    ys = grid.y0 - (np.arange(grid.shape[0]) + 0.5) * grid.resolution
    xs = grid.x0 + (np.arange(grid.shape[1]) + 0.5) * grid.resolution
    brow = np.floor(-ys / size).astype(np.int64)
    bcol = np.floor(xs / size).astype(np.int64)
    return np.broadcast_to(brow[:, None], grid.shape), np.broadcast_to(bcol[None, :], grid.shape)


def grid_blocks(grid: Grid, block_px: int, size: int) -> list[tuple[int, int]]:
    """The blocks that can hold at least one ``size`` window of ``grid`` (the part of the block inside the grid
    is at least ``size`` on both axes); smaller edge pieces take part in no split."""
    brow, bcol = block_label_raster(grid, block_px)
    rows = [b for b, r0, r1 in _runs(brow[:, 0]) if r1 - r0 >= size]
    cols = [b for b, c0, c1 in _runs(bcol[0]) if c1 - c0 >= size]
    return [(r, c) for r in rows for c in cols]


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """``(value, start, stop)`` of the constant runs of a 1-D array."""
    out, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            out.append((int(labels[start]), start, i))
            start = i
    return out


def blocked_windows(
    grid: Grid,
    block_split: Mapping[tuple[str, int, int], SplitName],
    *,
    size: int,
    stride: int,
    buffer_px: int,
    block_px: int,
) -> list[Window]:
    """Windows of one city-year under a blocked split: tiled inside each block, never across a block border;
    training windows keep ``buffer_px`` away from every val/test block (Chebyshev distance, in pixels)."""
    from scipy.ndimage import maximum_filter

    brow, bcol = block_label_raster(grid, block_px)
    rows_runs = _runs(brow[:, 0])
    cols_runs = _runs(bcol[0])
    heldout = np.zeros(grid.shape, dtype=bool)  # pixels of val/test blocks
    for br, r0, r1 in rows_runs:
        for bc, c0, c1 in cols_runs:
            heldout[r0:r1, c0:c1] = block_split.get((grid.city, br, bc)) in ("val", "test")
    near_heldout = heldout
    if buffer_px > 0 and heldout.any():
        near_heldout = maximum_filter(heldout.astype(np.uint8), size=2 * buffer_px + 1, mode="constant") > 0
    out: list[Window] = []
    for br, r0, r1 in rows_runs:
        for bc, c0, c1 in cols_runs:
            split = block_split.get((grid.city, br, bc))
            if split is None:  # an edge piece too small for a window
                continue
            for r in window_starts(r1 - r0, size, stride):
                for c in window_starts(c1 - c0, size, stride):
                    rr, cc = r0 + r, c0 + c
                    if split == "train" and near_heldout[rr : rr + size, cc : cc + size].any():
                        continue
                    out.append(Window(grid.city, grid.year, rr, cc, size, split, (br, bc)))
    return out


def blocked_split(
    grids: Sequence[Grid],
    *,
    size: int,
    stride: int,
    block_px: int,
    buffer_px: int,
    shares: Sequence[float],
    seed: int,
) -> tuple[list[Window], dict[tuple[str, int, int], SplitName]]:
    """Blocks of every city (the union over its years) assigned to splits by ``shares`` city by city (so every city
    large enough has blocks in every split), and the windows."""
    import zlib

    assignment: dict[object, SplitName] = {}
    for city in sorted({g.city for g in grids}):
        keys = sorted({(g.city, *b) for g in grids if g.city == city for b in grid_blocks(g, block_px, size)})
        assignment.update(assign_shares(keys, shares, seed + zlib.crc32(city.encode())))  # type: ignore[arg-type]
    windows = [w for g in grids for w in blocked_windows(g, assignment, size=size, stride=stride,  # type: ignore[arg-type]
                                                        buffer_px=buffer_px, block_px=block_px)]
    return windows, assignment  # type: ignore[return-value]


def leaked_pixels(windows: Sequence[Window]) -> int:
    """How many val/test pixels lie inside some training window of the same city and place (any year): the
    leak the blocked split removes (0 for it; most of the test pixels for the paper's random split)."""
    leaked = 0
    by_city: dict[str, list[Window]] = {}
    for w in windows:
        by_city.setdefault(w.city, []).append(w)
    for city_windows in by_city.values():
        rows = max(w.row + w.size for w in city_windows)
        cols = max(w.col + w.size for w in city_windows)
        train = np.zeros((rows, cols), bool)
        held = np.zeros((rows, cols), bool)
        for w in city_windows:
            target = train if w.split == "train" else held
            target[w.row : w.row + w.size, w.col : w.col + w.size] = True
        leaked += int((train & held).sum())
    return leaked


__all__ = [
    "SPLITS",
    "Grid",
    "SplitKind",
    "SplitName",
    "Window",
    "allocate",
    "assign_shares",
    "block_of",
    "blocked_split",
    "blocked_windows",
    "by_city_split",
    "grid_blocks",
    "grid_windows",
    "leaked_pixels",
    "random_split",
    "window_starts",
]
