"""Tiled prediction of one region: read with reflection, run batched windows, blend, crop (no dask in here).

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

import numpy as np

from tiling.blend import BlendAccumulator, blend_weights
from tiling.config import TilingConfig
from tiling.windows import ChunkPlan, chunk_bounds, plan_chunk, reflect_index

PredictFn = Callable[[np.ndarray, np.ndarray], "np.ndarray | Mapping[str, np.ndarray]"]
Reader = Callable[[slice, slice], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``reader(rows, cols) -> (optical (4,h,w), sar (2,h,w), valid (h,w))`` for a slice of scene pixels."""


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


def _batches(plan: ChunkPlan, valid: np.ndarray, size: int) -> Iterator[list[tuple[int, int]]]:
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
    """Blended probability of one chunk (NaN = nodata), how many windows ran, and the blended probability of every
    head ``predict_fn`` returned (``heads["shared"]`` is ``probability``; empty when no window ran)."""

    probability: np.ndarray
    n_windows: int
    heads: Mapping[str, np.ndarray] = field(default_factory=dict)


def _as_heads(output: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(output, Mapping):
        if "shared" not in output:
            raise ValueError(f"predict_fn returned heads {sorted(output)}; the 'shared' head (the prediction) is "
                             "required")
        return {k: np.asarray(v, dtype=np.float32) for k, v in output.items()}
    return {"shared": np.asarray(output, dtype=np.float32)}


def predict_chunk_probability(
    reader: Reader,
    shape: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    predict_fn: PredictFn,
    *,
    config: TilingConfig,
) -> ChunkPrediction:
    """Blended impervious probability for output pixels ``rows x cols`` of a scene of ``shape``.

    Runs every window of the global grid that touches the chunk (one forward per ``batch_size`` windows), blends
    with the configured weights, crops to the chunk, and sets pixels invalid in the cube to NaN. When ``predict_fn``
    returns several heads, each is blended the same way (one accumulator, ``len(heads) + 1`` float32 arrays of the
    region).
    """
    plan = plan_chunk(
        shape, rows, cols, window=config.window, stride=config.stride, pad=config.effective_halo
    )
    optical, sar, valid = read_region(reader, shape, plan.region_rows, plan.region_cols)
    w = config.window
    weights = blend_weights(w, kind=config.blend, floor=config.floor)
    acc: BlendAccumulator | None = None
    names: tuple[str, ...] = ()
    n = 0
    for batch in _batches(plan, valid, config.batch_size):
        opt = np.stack([optical[:, r : r + w, c : c + w] for r, c in batch])
        sr = np.stack([sar[:, r : r + w, c : c + w] for r, c in batch])
        heads = _as_heads(predict_fn(opt, sr))
        if acc is None:
            names = ("shared", *sorted(k for k in heads if k != "shared"))
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
    dr, dc = rows[0] - plan.region_rows[0], cols[0] - plan.region_cols[0]
    crop = (slice(dr, dr + rows[1] - rows[0]), slice(dc, dc + cols[1] - cols[0]))
    if acc is None:  # no window with a valid pixel: everything is nodata
        probability = np.full((rows[1] - rows[0], cols[1] - cols[0]), np.nan, dtype=np.float32)
        return ChunkPrediction(probability=probability, n_windows=0, heads={})
    blended = acc.result()[(slice(None), *crop)]
    blended[:, ~valid[crop]] = np.nan
    layers = {name: blended[i] for i, name in enumerate(names)}
    return ChunkPrediction(probability=layers["shared"], n_windows=n, heads=layers)


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
    ``{head: (H, W) float32}``, NaN where ``valid`` is False."""
    shape = valid.shape

    def reader(r: slice, c: slice):
        return optical[:, r, c], sar[:, r, c], valid[r, c]

    out: dict[str, np.ndarray] = {}
    for rows in chunk_bounds(shape[0], config.chunk_size):
        for cols in chunk_bounds(shape[1], config.chunk_size):
            result = predict_chunk_probability(reader, shape, rows, cols, predict_fn, config=config)
            layers = result.heads or {"shared": result.probability}
            for name, values in layers.items():
                if name not in out:
                    out[name] = np.full(shape, np.nan, dtype=np.float32)
                out[name][rows[0] : rows[1], cols[0] : cols[1]] = values
    return out
