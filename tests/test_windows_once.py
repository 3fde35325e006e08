"""Each window of the global grid runs once (in the chunk that owns it), and the blend is unchanged.

The reference below is the plain whole-array sliding-window blend that tiled inference implemented before windows
were owned by chunks (every chunk ran all windows touching it): reflection-pad the scene, run every window of the
grid anchored at ``-pad``, accumulate ``w * p`` and ``w`` with the Hann weights, divide, crop. It lives only here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pytest

from tests.fixtures.tiling import make_cube, make_scene
from tiling import TilingConfig, plan_chunk
from tiling.inference import predict_scene_heads
from tiling.windows import (
    chunk_bounds,
    feeding_chunks,
    grid_size,
    plan_owned,
    planned_windows,
)

SCENE = (600, 700)


# ------------------------------------------------------------------------------------------ the reference blend
def _starts(length: int, window: int, stride: int, pad: int) -> list[int]:
    """Window origins along an axis: from ``-pad`` by ``stride``, the last shifted back to end at ``length + pad``."""
    lo, hi = -pad, length + pad
    if hi - lo <= window:
        return [lo]
    starts = list(range(lo, hi - window + 1, stride))
    if starts[-1] + window < hi:
        starts.append(hi - window)
    return starts


def _hann(window: int, floor: float) -> np.ndarray:
    taper = np.sin(np.pi * (np.arange(window) + 0.5) / window) ** 2
    return np.maximum(np.outer(taper, taper), floor).astype(np.float32)


def reference_blend(optical, sar, valid, predict_fn, config: TilingConfig):
    """``({head: (H, W)}, windows run)``: every window of the grid over the reflection-padded scene, blended."""
    w, pad = config.window, config.effective_halo
    h, wd = valid.shape
    assert pad < min(h, wd), "one reflection suffices for this reference"
    spec = ((0, 0), (pad, pad), (pad, pad))
    opt, sr = np.pad(optical, spec, mode="reflect"), np.pad(sar, spec, mode="reflect")
    ok = np.pad(valid, pad, mode="reflect")
    weights = _hann(w, config.floor)
    total: dict[str, np.ndarray] = {}
    weight_sum = np.zeros(ok.shape, dtype=np.float32)
    n = 0
    for rs in _starts(h, w, config.stride, pad):
        for cs in _starts(wd, w, config.stride, pad):
            r, c = rs + pad, cs + pad
            if not ok[r : r + w, c : c + w].any():
                continue
            out = predict_fn(opt[None, :, r : r + w, c : c + w], sr[None, :, r : r + w, c : c + w])
            heads = out if isinstance(out, Mapping) else {"shared": out}
            for name, p in heads.items():
                total.setdefault(name, np.zeros(ok.shape, dtype=np.float32))[r : r + w, c : c + w] += p[0] * weights
            weight_sum[r : r + w, c : c + w] += weights
            n += 1
    crop = (slice(pad, pad + h), slice(pad, pad + wd))
    blended = {}
    for name, t in total.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            b = (t / weight_sum)[crop]
        b[~valid | (weight_sum[crop] == 0)] = np.nan
        blended[name] = b
    return blended, n


# ------------------------------------------------------------------------------------------ planning (no model)
@pytest.mark.parametrize("shape", [(3000, 2500), (1000, 1000), (300, 400), (97, 1300)])
@pytest.mark.parametrize("chunk", [64, 256, 512, 1024, "whole"])
def test_every_window_is_owned_by_exactly_one_chunk(shape, chunk):
    config = TilingConfig()
    chunk = max(shape) if chunk == "whole" else chunk
    w, s, pad = config.window, config.stride, config.effective_halo
    grid = {(r, c) for r in _starts(shape[0], w, s, pad) for c in _starts(shape[1], w, s, pad)}
    assert grid_size(shape, window=w, stride=s, pad=pad) == len(grid)
    owned: Counter = Counter()
    for rows in chunk_bounds(shape[0], chunk):
        for cols in chunk_bounds(shape[1], chunk):
            plan = plan_owned(shape, rows, cols, window=w, stride=s, pad=pad, chunk=chunk)
            owned.update((r, c) for r in plan.row_starts for c in plan.col_starts)
            # the owned windows' footprints (in the scene) stay inside the chunk's block
            for r in plan.row_starts:
                assert plan.block_rows[0] <= max(r, 0) and min(r + w, shape[0]) <= plan.block_rows[1]
            for c in plan.col_starts:
                assert plan.block_cols[0] <= max(c, 0) and min(c + w, shape[1]) <= plan.block_cols[1]
            # every chunk owning a window that covers this chunk is one of its feeders
            feeders = set(feeding_chunks(shape, rows, cols, window=w, chunk=chunk))
            assert (rows, cols) in feeders
    assert set(owned) == grid and set(owned.values()) == {1}, "each window of the grid has exactly one owner"
    planned = planned_windows(shape, window=w, stride=s, pad=pad, chunk=chunk)
    assert sum(planned.values()) == len(grid), "the planned model work is the grid, each window once"


def test_feeders_cover_every_window_touching_a_chunk():
    shape, config = (1000, 900), TilingConfig()
    w, s, pad = config.window, config.stride, config.effective_halo
    for chunk in (64, 96, 256):
        owner = {}
        for rows in chunk_bounds(shape[0], chunk):
            for cols in chunk_bounds(shape[1], chunk):
                plan = plan_owned(shape, rows, cols, window=w, stride=s, pad=pad, chunk=chunk)
                owner.update({(r, c): (rows, cols) for r in plan.row_starts for c in plan.col_starts})
        for rows in chunk_bounds(shape[0], chunk):
            for cols in chunk_bounds(shape[1], chunk):
                touching = plan_chunk(shape, rows, cols, window=w, stride=s, pad=pad)
                needed = {owner[(r, c)] for r in touching.row_starts for c in touching.col_starts}
                assert needed <= set(feeding_chunks(shape, rows, cols, window=w, chunk=chunk)), (chunk, rows, cols)


def test_chunk_borders_no_longer_cost_model_work():
    """Before: a chunk ran every window touching it (plan_chunk); the sum over chunks exceeded the grid."""
    shape, config = (4096, 4096), TilingConfig()
    w, s, pad = config.window, config.stride, config.effective_halo
    grid = grid_size(shape, window=w, stride=s, pad=pad)
    for chunk, before_at_least in ((256, 1.8), (512, 1.3), (1024, 1.1), (4096, 1.0)):
        before = sum(plan_chunk(shape, r, c, window=w, stride=s, pad=pad).n_windows
                     for r in chunk_bounds(shape[0], chunk) for c in chunk_bounds(shape[1], chunk))
        after = sum(planned_windows(shape, window=w, stride=s, pad=pad, chunk=chunk).values())
        assert before / grid >= before_at_least
        assert after == grid


# ------------------------------------------------------------------------------------------ with the model
@pytest.fixture(scope="module")
def heads_fn(tiling_checkpoint):
    """CroFuseNet's heads, one window per forward and memoised by the window's bytes: each window's prediction is
    the same whichever batch it arrives in, so only the blending arithmetic differs between two tilings; ``runs``
    counts how often the tiling asked for each window."""
    from tiling.model import file_sha256, load_model

    model = load_model(tiling_checkpoint, file_sha256(tiling_checkpoint), config=TilingConfig(device="cpu"))
    memo: dict[bytes, dict[str, np.ndarray]] = {}
    runs: Counter = Counter()

    def fn(optical, sar):
        outs = []
        for o, s in zip(optical, sar, strict=True):
            key = o.tobytes() + s.tobytes()
            runs[key] += 1
            if key not in memo:
                memo[key] = {k: v[0] for k, v in model.predict_heads_fn(o[None], s[None]).items()}
            outs.append(memo[key])
        return {k: np.stack([o[k] for o in outs]) for k in outs[0]}

    fn.runs = runs  # type: ignore[attr-defined]
    return fn


@pytest.fixture(scope="module")
def scene():
    """The structured test scene plus a 230 px square of nodata at its top-left corner, so that some windows have
    no valid pixel (skipped, as before) and some chunks own no window that runs."""
    scene = make_scene(SCENE, seed=2)
    scene["optical"][:, :230, :230] = np.nan
    scene["valid"] = np.isfinite(scene["optical"]).all(axis=0) & np.isfinite(scene["sar"]).all(axis=0)
    return scene


@pytest.fixture(scope="module")
def reference(scene, heads_fn):
    blended, n = reference_blend(scene["optical"], scene["sar"], scene["valid"], heads_fn, TilingConfig(device="cpu"))
    heads_fn.runs.clear()
    return blended, n


@pytest.mark.parametrize("chunk", [64, 96, 256, 512, "whole"])
def test_blend_equals_the_whole_array_reference_at_every_chunk_size(scene, heads_fn, reference, chunk):
    expected, n_reference = reference
    config = TilingConfig(device="cpu", chunk_size=max(SCENE) if chunk == "whole" else chunk)
    heads_fn.runs.clear()
    got = predict_scene_heads(scene["optical"], scene["sar"], scene["valid"], heads_fn, config=config)
    assert set(got) == set(expected) == {"shared", "optical", "sar"}
    for name in expected:
        assert (np.isnan(got[name]) == ~scene["valid"]).all(), name
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-6, equal_nan=True, err_msg=name)
    assert np.nanstd(expected["shared"]) > 0.05, "the model output is not trivially constant"
    runs = heads_fn.runs
    assert sum(runs.values()) == n_reference, "the model ran exactly the grid's windows (with a valid pixel)"
    assert set(runs.values()) == {1}, "and each of them once"
    assert n_reference < grid_size(SCENE, window=128, stride=96, pad=16), "the scene's nodata skips some windows"


def test_one_chunk_on_its_own_equals_its_part_of_the_scene(scene, heads_fn, reference):
    """``predict_chunk_probability`` without stored sums accumulates the chunks feeding it itself (their windows
    run here): the same blend as the scene's, for a chunk whose pixels come from four owners."""
    from tiling.inference import predict_chunk_probability

    expected, _ = reference
    config = TilingConfig(device="cpu", chunk_size=256)
    rows, cols = (256, 512), (256, 512)

    def reader(r, c):
        return scene["optical"][:, r, c], scene["sar"][:, r, c], scene["valid"][r, c]

    heads_fn.runs.clear()
    result = predict_chunk_probability(reader, SCENE, rows, cols, heads_fn, config=config)
    assert len(feeding_chunks(SCENE, rows, cols, window=128, chunk=256)) == 4
    assert result.n_windows == sum(heads_fn.runs.values()) > 0
    for name, values in result.heads.items():
        np.testing.assert_allclose(values, expected[name][slice(*rows), slice(*cols)], rtol=0, atol=1e-6,
                                   equal_nan=True, err_msg=name)
    with pytest.raises(ValueError, match="predict_fn or partials"):
        predict_chunk_probability(reader, SCENE, rows, cols, config=config)


def test_predict_cube_runs_each_window_once(tiling_checkpoint, tmp_path):
    """Through predict_cube (phase 1 on the stored sums, phase 2 blending): the run reports the grid's windows with
    a valid pixel, once each, at 64-px chunks (smaller than a window: spill crosses two chunks), and its
    probability matches the reference to the stored percent."""
    import zarr

    from tiling import predict_cube
    from tiling.model import file_sha256, load_model

    shape = (192, 256)
    cube = make_cube(tmp_path / "c" / "inputs.zarr", shape, seed=3, chunk=64)
    scene = make_scene(shape, seed=3)
    model = load_model(tiling_checkpoint, file_sha256(tiling_checkpoint), config=TilingConfig(device="cpu"))
    config = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)
    expected, n_reference = reference_blend(scene["optical"], scene["sar"], scene["valid"], model.predict_fn, config)
    out = predict_cube(cube, tiling_checkpoint, tmp_path / "o", config=config, progress=False)
    assert out.grid_windows == grid_size(shape, window=128, stride=96, pad=16)
    assert out.windows == n_reference <= out.grid_windows
    assert out.chunks_computed == out.chunks_total == 12
    stored = zarr.open_group(out.maps, mode="r")["probability"][:].astype(int)
    p = expected["shared"]
    want = np.where(np.isfinite(p), np.rint(np.nan_to_num(p) * 100), 255).astype(int)
    assert (stored == 255).sum() == (~scene["valid"]).sum()
    diff = np.abs(stored - want)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999, "only a percent rounding step may differ"
    again = predict_cube(cube, tiling_checkpoint, tmp_path / "o", config=config, progress=False)
    assert again.windows == 0 and again.chunks_computed == 0, "a finished run reruns no window"
