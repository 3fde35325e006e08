"""Tiled prediction: read with reflection, run batched windows, accumulate, blend (no dask in here).

Each window of the global grid runs once, in the chunk that owns it (:mod:`tiling.windows`): phase 1,
:func:`accumulate_chunk`, runs a chunk's own windows and returns the weighted sums of their whole footprint
(:class:`ChunkSums`, the chunk plus its spill); phase 2, :func:`predict_chunk_probability`, adds the sums of every
block that overlaps an output chunk (its own and its upper/left neighbours' spill) and only then divides
``sum(w p) / sum(w)``. The result is the blend of every global window covering each pixel, as if the scene were one
chunk, while the model runs each window once whatever the chunk size.

``predict_fn`` is any function ``(optical (N,4,H,W), sar (N,2,H,W)) -> (N,H,W)`` probability on numpy float32 arrays,
or one returning a mapping ``{head: (N,H,W)}`` of the probability of several heads with ``"shared"`` (the
prediction) among them; :func:`tiling.model.load_model` makes both from a checkpoint (``predict_fn`` and
``predict_heads_fn``). Every head is blended with the same weights; the blended heads are what the uncertainty
layers are computed from (so they are as chunk-independent as the probability). Inputs reach ``predict_fn`` as the
cube holds them, NaN included: the :class:`~crofuse.checkpoint.Predictor` applies the one fill-and-normalise rule
(:meth:`crofuse.normalization.Normalization.standardise`) that training uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from tiling.blend import BlendAccumulator, blend_weights
from tiling.config import TilingConfig
from tiling.windows import (
    ChunkPlan,
    OwnedPlan,
    block_bounds,
    chunk_bounds,
    feeding_chunks,
    plan_owned,
    reflect_index,
)

PredictFn = Callable[[np.ndarray, np.ndarray], "np.ndarray | Mapping[str, np.ndarray]"]
Reader = Callable[[slice, slice], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``reader(rows, cols) -> (optical (4,h,w), sar (2,h,w), valid (h,w))`` for a slice of scene pixels."""
Bounds = tuple[int, int]
Chunk = tuple[Bounds, Bounds]


class SumsPart(NamedTuple):
    """Part of one chunk's accumulated sums: layer names, ``total (layers, h, w)`` = sum of ``w * p``, and
    ``weight_sum (h, w)`` = sum of ``w``, for a rectangle of scene pixels."""

    names: tuple[str, ...]
    total: np.ndarray
    weight_sum: np.ndarray


Partials = Callable[[Chunk, Bounds, Bounds], "SumsPart | None"]
"""``partials(owner, rows, cols)``: the sums accumulated by the windows of chunk ``owner = (rows, cols)`` over the
scene pixels ``rows x cols`` (inside the owner's block), or ``None`` where the owner ran no window."""


def read_region(reader: Reader, shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]):
    """Read global rows/cols (possibly outside the scene) from ``reader``, mirroring at the scene edges.

    Reads only the bounding box of the pixels needed, then gathers; identical to reflection-padding the whole scene.
    """
    ridx = reflect_index(np.arange(*rows), shape[0])
    cidx = reflect_index(np.arange(*cols), shape[1])
    r0, r1 = int(ridx.min()), int(ridx.max()) + 1
    c0, c1 = int(cidx.min()), int(cidx.max()) + 1
    optical, sar, valid = reader(slice(r0, r1), slice(c0, c1))
    ix = np.ix_(ridx - r0, cidx - c0)
    return (
        np.ascontiguousarray(optical[(slice(None), *ix)], dtype=np.float32),
        np.ascontiguousarray(sar[(slice(None), *ix)], dtype=np.float32),
        np.asarray(valid[ix], dtype=bool),
    )


def _batches(plan: ChunkPlan | OwnedPlan, valid: np.ndarray, size: int) -> Iterator[list[tuple[int, int]]]:
    """Window origins relative to the region, row-major, in batches; windows with no valid pixel are skipped
    (every pixel they would write is nodata anyway)."""
    r0, c0 = plan.region_rows[0], plan.region_cols[0]
    w = plan.window
    batch: list[tuple[int, int]] = []
    for rs in plan.row_starts:
        for cs in plan.col_starts:
            r, c = rs - r0, cs - c0
            if not valid[r : r + w, c : c + w].any():
                continue
            batch.append((r, c))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class ChunkPrediction:
    """Blended probability of one chunk (NaN = nodata), how many windows the model ran for it in this call (0 when
    it was blended from sums accumulated earlier), and the blended probability of every head ``predict_fn``
    returned (``heads["shared"]`` is ``probability``; empty when no window covers a valid pixel of it)."""

    probability: np.ndarray
    n_windows: int
    heads: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkSums:
    """Phase 1 of one chunk: the weighted sums of the windows it owns over its block (scene pixels
    ``block_rows x block_cols``: the chunk plus the spill to the right/bottom). ``total``/``weight_sum`` are
    ``None`` and ``names`` empty when it ran no window; ``n_windows`` is how many windows the model ran."""

    rows: Bounds
    cols: Bounds
    block_rows: Bounds
    block_cols: Bounds
    names: tuple[str, ...]
    total: np.ndarray | None
    weight_sum: np.ndarray | None
    n_windows: int

    def part(self, rows: Bounds, cols: Bounds) -> SumsPart | None:
        """The sums over scene pixels ``rows x cols`` (inside the block), or ``None`` if no window ran."""
        if self.total is None or self.weight_sum is None:
            return None
        r = slice(rows[0] - self.block_rows[0], rows[1] - self.block_rows[0])
        c = slice(cols[0] - self.block_cols[0], cols[1] - self.block_cols[0])
        return SumsPart(self.names, self.total[:, r, c], self.weight_sum[r, c])


def _as_heads(output: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(output, Mapping):
        if "shared" not in output:
            raise ValueError(f"predict_fn returned heads {sorted(output)}; the 'shared' head (the prediction) is "
                             "required")
        return {k: np.asarray(v, dtype=np.float32) for k, v in output.items()}
    return {"shared": np.asarray(output, dtype=np.float32)}


def _intersect(a: Bounds, b: Bounds) -> Bounds:
    return max(a[0], b[0]), min(a[1], b[1])


def accumulate_chunk(
    reader: Reader,
    shape: tuple[int, int],
    rows: Bounds,
    cols: Bounds,
    predict_fn: PredictFn,
    *,
    config: TilingConfig,
    names: tuple[str, ...] | None = None,
) -> ChunkSums:
    """Phase 1: run the windows the chunk ``rows x cols`` owns (one forward per ``batch_size`` windows) and
    accumulate ``w * p`` and ``w`` with the configured blending weights over their footprint, clipped to the scene.

    Reads only the owned windows' region (chunk + one window). ``names``, when given, are the layers expected
    (``"shared"`` first, then the other heads sorted), as a store of sums laid out in advance needs them.
    """
    plan = plan_owned(shape, rows, cols, window=config.window, stride=config.stride, pad=config.effective_halo,
                      chunk=config.chunk_size)
    empty = ChunkSums(rows, cols, plan.block_rows, plan.block_cols, (), None, None, 0)
    if plan.n_windows == 0:
        return empty
    optical, sar, valid = read_region(reader, shape, plan.region_rows, plan.region_cols)
    w = config.window
    weights = blend_weights(w, kind=config.blend, floor=config.floor)
    acc: BlendAccumulator | None = None
    n = 0
    for batch in _batches(plan, valid, config.batch_size):
        opt = np.stack([optical[:, r : r + w, c : c + w] for r, c in batch])
        sr = np.stack([sar[:, r : r + w, c : c + w] for r, c in batch])
        heads = _as_heads(predict_fn(opt, sr))
        if acc is None:
            found = ("shared", *sorted(k for k in heads if k != "shared"))
            if names is not None and found != tuple(names):
                raise ValueError(f"predict_fn returned heads {sorted(heads)}, expected {sorted(names)}")
            names = found
            acc = BlendAccumulator(valid.shape, weights, layers=len(names))
        if set(heads) != set(names):
            raise ValueError(f"predict_fn returned heads {sorted(heads)}, earlier {sorted(names)}")
        for name in names:
            if heads[name].shape != (len(batch), w, w):
                raise ValueError(f"predict_fn returned shape {heads[name].shape} for {name!r}, expected "
                                 f"{(len(batch), w, w)}")
        stacked = np.stack([heads[name] for name in names], axis=1)  # (batch, heads, w, w)
        for (r, c), p in zip(batch, stacked, strict=True):
            acc.add(p, r, c)
        n += len(batch)
    if acc is None or names is None:  # no owned window has a valid pixel
        return empty
    # keep the footprint inside the scene (the reflected halo is never output) and inside the block
    br, bc = plan.block_rows, plan.block_cols
    rr = _intersect(plan.region_rows, br)
    cc = _intersect(plan.region_cols, bc)
    total = np.zeros((len(names), br[1] - br[0], bc[1] - bc[0]), dtype=np.float32)
    weight_sum = np.zeros((br[1] - br[0], bc[1] - bc[0]), dtype=np.float32)
    src = (slice(rr[0] - plan.region_rows[0], rr[1] - plan.region_rows[0]),
           slice(cc[0] - plan.region_cols[0], cc[1] - plan.region_cols[0]))
    dst = (slice(rr[0] - br[0], rr[1] - br[0]), slice(cc[0] - bc[0], cc[1] - bc[0]))
    total[(slice(None), *dst)] = acc.total[(slice(None), *src)]
    weight_sum[dst] = acc.weight_sum[src]
    return ChunkSums(rows, cols, br, bc, tuple(names), total, weight_sum, n)


def predict_chunk_probability(
    reader: Reader,
    shape: tuple[int, int],
    rows: Bounds,
    cols: Bounds,
    predict_fn: PredictFn | None = None,
    *,
    config: TilingConfig,
    partials: Partials | None = None,
) -> ChunkPrediction:
    """Blended impervious probability for output pixels ``rows x cols`` of a scene of ``shape`` (phase 2).

    Adds, in row-major order of the owners, the sums of every chunk (of side ``config.chunk_size``) whose block
    overlaps ``rows x cols`` (:func:`tiling.windows.feeding_chunks`), divides, and sets pixels invalid in the cube
    (or covered by no window) to NaN. Every head is blended the same way (``len(heads) + 1`` float32 arrays of the
    chunk). ``partials`` gives the sums accumulated in phase 1 (e.g. read back from a store: then no model runs
    here); without it the feeding chunks are accumulated here with ``predict_fn``, which runs the windows of the
    neighbours too; :func:`predict_scene_heads` and :func:`tiling.predict_cube` run each window once.
    """
    chunk = config.chunk_size
    if partials is None:
        if predict_fn is None:
            raise ValueError("predict_chunk_probability needs predict_fn or partials (the sums of phase 1)")
        fn = predict_fn
        cache: dict[Chunk, ChunkSums] = {}

        def partials(owner: Chunk, r: Bounds, c: Bounds) -> SumsPart | None:
            if owner not in cache:
                cache[owner] = accumulate_chunk(reader, shape, *owner, fn, config=config)
            return cache[owner].part(r, c)
    else:
        cache = {}
    h, w = rows[1] - rows[0], cols[1] - cols[0]
    acc: BlendAccumulator | None = None
    names: tuple[str, ...] = ()
    for owner in feeding_chunks(shape, rows, cols, window=config.window, chunk=chunk):
        r = _intersect(block_bounds(owner[0], shape[0], window=config.window, chunk=chunk), rows)
        c = _intersect(block_bounds(owner[1], shape[1], window=config.window, chunk=chunk), cols)
        part = partials(owner, r, c)
        if part is None:
            continue
        if acc is None:
            names = tuple(part.names)
            acc = BlendAccumulator((h, w), np.ones((1, 1), dtype=np.float32), layers=len(names))
        elif tuple(part.names) != names:
            raise ValueError(f"chunk {owner} accumulated heads {list(part.names)}, another {list(names)}")
        acc.add_sums(part.total, part.weight_sum, r[0] - rows[0], c[0] - cols[0])
    n_windows = sum(s.n_windows for s in cache.values())
    if acc is None:  # no window with a valid pixel: everything is nodata
        probability = np.full((h, w), np.nan, dtype=np.float32)
        return ChunkPrediction(probability=probability, n_windows=n_windows, heads={})
    valid = np.asarray(reader(slice(*rows), slice(*cols))[2], dtype=bool)
    blended = acc.result()
    blended[:, ~valid] = np.nan
    layers = {name: blended[i] for i, name in enumerate(names)}
    return ChunkPrediction(probability=layers["shared"], n_windows=n_windows, heads=layers)


def predict_scene(
    optical: np.ndarray,
    sar: np.ndarray,
    valid: np.ndarray,
    predict_fn: PredictFn,
    *,
    config: TilingConfig = TilingConfig(),
) -> np.ndarray:
    """Tiled probability of an in-memory scene, chunk by chunk (same code path as the dask workers use).

    Returns ``(H, W)`` float32 with NaN where ``valid`` is False (the shared head when ``predict_fn`` returns
    several heads; :func:`predict_scene_heads` returns them all).
    """
    return predict_scene_heads(optical, sar, valid, predict_fn, config=config)["shared"]


def predict_scene_heads(
    optical: np.ndarray,
    sar: np.ndarray,
    valid: np.ndarray,
    predict_fn: PredictFn,
    *,
    config: TilingConfig = TilingConfig(),
) -> dict[str, np.ndarray]:
    """Tiled, blended probability of every head ``predict_fn`` returns over an in-memory scene, chunk by chunk:
    ``{head: (H, W) float32}``, NaN where ``valid`` is False.

    Each window runs once (in the chunk that owns it); a chunk's sums are kept only until the last chunk they
    feed is blended (about two rows of chunks).
    """
    shape = valid.shape

    def reader(r: slice, c: slice):
        return optical[:, r, c], sar[:, r, c], valid[r, c]

    sums: dict[Chunk, ChunkSums] = {}

    def partials(owner: Chunk, r: Bounds, c: Bounds) -> SumsPart | None:
        if owner not in sums:
            sums[owner] = accumulate_chunk(reader, shape, *owner, predict_fn, config=config)
        return sums[owner].part(r, c)

    out: dict[str, np.ndarray] = {}
    row_chunks = chunk_bounds(shape[0], config.chunk_size)
    for i, rows in enumerate(row_chunks):
        for cols in chunk_bounds(shape[1], config.chunk_size):
            result = predict_chunk_probability(reader, shape, rows, cols, config=config, partials=partials)
            layers = result.heads or {"shared": result.probability}
            for name, values in layers.items():
                if name not in out:
                    out[name] = np.full(shape, np.nan, dtype=np.float32)
                out[name][rows[0] : rows[1], cols[0] : cols[1]] = values
        if i + 1 < len(row_chunks):  # drop the sums no later chunk needs
            for owner in [o for o, s in sums.items() if s.block_rows[1] <= row_chunks[i + 1][0]]:
                del sums[owner]
    return out
