"""Tiled inference: window grid, blending, seamless chunking, agreement with a whole-scene forward, outputs, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crofuse.errors import ConfigError, CubeError
from tests.fixtures.tiling import make_cube, make_scene
from tiling import (
    TilingConfig,
    blend_weights,
    chunk_bounds,
    encode_maps,
    plan_chunk,
    predict_cube,
    predict_scene,
    reflect_index,
    window_starts,
)
from tiling.model import load_model
from tiling.store import PROGRESS_DIR

SHAPE = (300, 400)


# ------------------------------------------------------------------------------------------------ pure functions
@pytest.mark.parametrize("length", [1, 50, 96, 128, 129, 192, 200, 288, 300, 384, 400, 401, 1000])
@pytest.mark.parametrize(("window", "stride", "pad"), [(128, 96, 16), (128, 128, 0), (64, 48, 8), (128, 64, 0)])
def test_window_grid_covers_edges_without_running_past(length, window, stride, pad):
    starts = window_starts(length, window, stride, pad=pad)
    lo, hi = -pad, length + pad
    assert starts[0] == lo
    assert list(starts) == sorted(set(starts)), "origins must be unique and increasing"
    covered = np.zeros(hi - lo, dtype=int)
    for s in starts:
        covered[s - lo : min(s + window, hi) - lo] += 1
    assert covered.min() >= 1, "every pixel (right/bottom edge included) is covered"
    if hi - lo >= window:
        assert all(s + window <= hi for s in starts), "no window runs past the padded edge"
        assert starts[-1] + window == hi, "the last window is shifted back to end exactly at the edge"
        steps = np.diff(starts)
        assert (steps[:-1] == stride).all() and (steps[-1:] <= stride).all() and (steps > 0).all()
    else:
        assert starts == (lo,)


def test_window_grid_multiple_of_stride_adds_no_extra_window():
    # 128 + 2 * 96 = 320: the regular grid ends exactly at the edge, so nothing is appended
    assert window_starts(320, 128, 96) == (0, 96, 192)
    assert window_starts(321, 128, 96) == (0, 96, 192, 193)


def test_window_grid_rejects_bad_arguments():
    with pytest.raises(ConfigError):
        window_starts(0, 128, 96)
    with pytest.raises(ConfigError):
        window_starts(100, 128, 200)


def test_reflect_index_matches_numpy_reflect_padding():
    for n in (1, 2, 5, 17):
        a = np.arange(n)
        for pad in (0, 1, 3, 40):
            expected = np.pad(a, pad, mode="reflect") if n > 1 else np.zeros(n + 2 * pad, dtype=int)
            assert (reflect_index(np.arange(-pad, n + pad), n) == expected).all()


def test_hann_weights_peak_in_the_centre_and_keep_a_floor():
    w = blend_weights(128, kind="hann", floor=1e-3)
    assert w.shape == (128, 128) and w.dtype == np.float32
    assert w.min() >= 1e-3 and w[0, 0] == pytest.approx(1e-3)
    assert w[63:65, 63:65].min() > 0.99
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    assert (blend_weights(64, kind="none") == 1).all()
    with pytest.raises(ConfigError):
        blend_weights(64, kind="gaussian")


def test_chunk_plan_reads_only_windows_touching_the_chunk():
    plan = plan_chunk((1000, 1000), (256, 512), (0, 256), window=128, stride=96, pad=16)
    assert all(s < 512 and s + 128 > 256 for s in plan.row_starts)
    assert plan.region_rows[1] - plan.region_rows[0] <= 256 + 2 * 128
    assert plan.region_cols[0] == -16  # left scene edge: the reflected halo
    assert chunk_bounds(300, 128) == ((0, 128), (128, 256), (256, 300))


def test_config_rejects_bad_values_with_a_hint():
    with pytest.raises(ConfigError, match="multiple of 16"):
        TilingConfig(window=100)
    with pytest.raises(ConfigError, match="stride"):
        TilingConfig(stride=200)
    with pytest.raises(ConfigError, match="blend"):
        TilingConfig(blend="max")  # type: ignore[arg-type]
    assert TilingConfig().effective_halo == 16


def test_encode_maps_thresholds_after_blending_and_keeps_nodata():
    p = np.array([[0.0, 0.499, 0.5, 0.501, 1.0, np.nan]], dtype=np.float32)
    imp, pct = encode_maps(p, 0.5)
    assert imp.tolist() == [[0, 0, 0, 1, 1, 255]]  # a tie (0.5) is pervious, like argmax of equal logits
    assert pct.tolist() == [[0, 50, 50, 50, 100, 255]]


# ------------------------------------------------------------------------------------------------ with the model
@pytest.fixture(scope="module")
def model(tiling_checkpoint):
    from tiling.model import file_sha256

    return load_model(tiling_checkpoint, file_sha256(tiling_checkpoint), config=TilingConfig(device="cpu"))


@pytest.fixture(scope="module")
def scene():
    return make_scene(SHAPE)


def test_chunking_leaves_no_seams(model, scene):
    """The window grid is global, so one chunk and many chunks give the same probabilities, the same blended
    probability of every head, and so the same uncertainty layers (entropy, head disagreement)."""
    from crofuse.uncertainty import binary_entropy, head_disagreement
    from tiling.inference import predict_scene_heads

    config = TilingConfig(device="cpu")
    calls: list[int] = []

    def counting(o, s):
        calls.append(len(o))
        return model.predict_fn(o, s)

    one = predict_scene(scene["optical"], scene["sar"], scene["valid"], counting, config=config.replace(chunk_size=400))
    assert max(calls) > 1, "windows run in batches, not one forward per window"
    many = predict_scene(scene["optical"], scene["sar"], scene["valid"], model.predict_fn, config=config.replace(chunk_size=160))
    assert np.isnan(one).sum() == (~scene["valid"]).sum(), "invalid pixels (and only those) are nodata"
    np.testing.assert_allclose(many, one, atol=2e-5, equal_nan=True)
    assert np.nanstd(one) > 0.05, "the model output is not trivially constant"

    heads_one = predict_scene_heads(scene["optical"], scene["sar"], scene["valid"], model.predict_heads_fn,
                                    config=config.replace(chunk_size=400))
    heads_many = predict_scene_heads(scene["optical"], scene["sar"], scene["valid"], model.predict_heads_fn,
                                     config=config.replace(chunk_size=160))
    assert set(heads_one) == set(heads_many) == {"shared", "optical", "sar"}
    assert np.array_equal(heads_one["shared"], one, equal_nan=True), "the shared head is the probability, bit for bit"
    for name in heads_one:
        np.testing.assert_allclose(heads_many[name], heads_one[name], atol=2e-5, equal_nan=True)
        assert (np.isnan(heads_one[name]) == ~scene["valid"]).all(), name
    layers = {}
    for name, heads in (("one", heads_one), ("many", heads_many)):
        layers[name] = (binary_entropy(heads["shared"]),
                        head_disagreement([heads["shared"], heads["optical"], heads["sar"]]))
    for a, b in zip(layers["one"], layers["many"], strict=True):
        # entropy's slope is log2((1-p)/p): at most ~14 bits per unit of p for p >= 1e-4, so 2e-5 -> < 3e-4
        np.testing.assert_allclose(b, a, atol=5e-4, equal_nan=True)
        assert np.nanstd(a) > 0.01, "the uncertainty layers are not trivially constant"


def _agreement(checkpoint, scene, configs: dict[str, TilingConfig]) -> tuple[dict[str, float], float]:
    from crofuse.checkpoint import Predictor
    from tiling.model import file_sha256

    model = load_model(checkpoint, file_sha256(checkpoint), config=TilingConfig(device="cpu"))
    whole = Predictor.from_checkpoint(checkpoint)(scene["optical"][None], scene["sar"][None])[0]
    interior = np.zeros(SHAPE, dtype=bool)
    interior[32:-32, 32:-32] = True
    interior &= scene["valid"]
    agreement = {}
    for name, config in configs.items():
        tiled = predict_scene(scene["optical"], scene["sar"], scene["valid"], model.predict_fn, config=config)
        agreement[name] = float(((tiled > 0.5) == (whole > 0.5))[interior].mean())
    return agreement, float((whole > 0.5)[interior].mean())


def test_tiled_agrees_with_a_whole_scene_forward(tmp_path, scene):
    """A fully convolutional CroFuseNet (CFM replaced by concatenation, ablation case 4: no global pooling)."""
    from tests.fixtures.tiling import make_tiling_checkpoint

    checkpoint = make_tiling_checkpoint(tmp_path / "concat.safetensors", fusion="concat")
    base = TilingConfig(device="cpu", stride=64, chunk_size=400)
    agreement, impervious = _agreement(checkpoint, scene, {"hann": base, "none": base.replace(blend="none")})
    print(f"\nfully convolutional CroFuseNet, window 128 stride 64: class agreement with a whole-scene forward "
          f"(interior, valid pixels): hann {agreement['hann']:.4%}, no blending {agreement['none']:.4%} "
          f"(impervious fraction {impervious:.3f})")
    assert 0.05 < impervious < 0.95, "both classes present, so agreement is not trivial"
    assert agreement["hann"] >= 0.99
    assert agreement["hann"] >= agreement["none"], "blending must not lower the agreement"


def test_cfm_crofusenet_tiled_vs_whole_scene(tiling_checkpoint, scene):
    """The paper's CroFuseNet: its CFM channel attention pools globally (eq. 7), so a window and the whole scene see
    different statistics by design; tiling at the training patch size is what the model was trained for. Reported,
    and blending must still help."""
    base = TilingConfig(device="cpu", chunk_size=400)
    agreement, _ = _agreement(tiling_checkpoint, scene, {"hann": base, "none": base.replace(blend="none")})
    print(f"\nCroFuseNet (CFM), window 128 stride 96: class agreement with a whole-scene forward: "
          f"hann {agreement['hann']:.4%}, no blending {agreement['none']:.4%}")
    assert agreement["hann"] >= agreement["none"]
    assert agreement["hann"] >= 0.95


# ------------------------------------------------------------------------------------------------ predict_cube
SMALL = (192, 256)
LAYERS = ("impervious", "probability", "uncertainty", "disagreement")
# torch_threads pinned: a convolution summed over another number of threads differs in the last float bits, which
# can move a rounded percent by one; with the same settings a resumed run must give the very same bytes.
SMALL_CONFIG = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)


@pytest.fixture(scope="module")
def small_cube(tmp_path_factory):
    return make_cube(tmp_path_factory.mktemp("small") / "testville" / "2024" / "inputs.zarr", SMALL, seed=3, chunk=64)


@pytest.fixture(scope="module")
def reference_run(small_cube, tiling_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "testville" / "2024"
    return predict_cube(small_cube, tiling_checkpoint, out, config=SMALL_CONFIG, progress=False)


def read_maps(outputs) -> dict[str, np.ndarray]:
    import rasterio
    import zarr

    group = zarr.open_group(outputs.maps, mode="r")
    maps = {f"zarr/{v}": group[v][:] for v in LAYERS if v in group}
    for name, path in (("cog/impervious", outputs.impervious), ("cog/probability", outputs.probability),
                       ("cog/uncertainty", outputs.uncertainty), ("cog/disagreement", outputs.disagreement)):
        if path is not None:
            with rasterio.open(path) as src:
                maps[name] = src.read(1)
    return maps


def test_outputs_are_valid_cogs_and_a_georeferenced_zarr(reference_run, small_cube):
    import rasterio
    import rioxarray  # noqa: F401
    import xarray as xr
    from rio_cogeo.cogeo import cog_validate

    out = reference_run
    assert out.chunks_total == 12 and out.chunks_computed == 12 and out.chunks_skipped == 0
    assert out.impervious == out.out_dir / "impervious.tif" and out.maps == out.out_dir / "maps.zarr"
    cube = xr.open_zarr(small_cube, decode_coords="all", consolidated=False)
    valid = cube["valid"].values
    assert out.uncertainty == out.out_dir / "uncertainty.tif" and out.disagreement == out.out_dir / "disagreement.tif"
    for path in (out.impervious, out.probability, out.uncertainty, out.disagreement):
        is_valid, errors, _ = cog_validate(path, quiet=True)
        assert is_valid, errors
        with rasterio.open(path) as src:
            assert src.dtypes == ("uint8",) and src.nodata == 255
            assert src.overviews(1), "COG has overviews"
            assert src.crs.to_epsg() == 32633
            assert src.transform == cube.rio.transform()
            band = src.read(1)
            assert (band[~valid] == 255).all() and (band[valid] != 255).all()
    maps = xr.open_zarr(out.maps)
    assert maps.rio.crs.to_epsg() == 32633
    assert maps["impervious"].rio.nodata == 255
    assert maps.attrs["checkpoint_sha256"] == out.checkpoint_sha256
    assert maps.attrs["city"] == "testville" and maps.attrs["sar_items"] == ["S1A_TEST_1"]
    assert maps.attrs["complete"] is True
    imp = maps["impervious"].values
    assert set(np.unique(imp[valid])) == {0, 1}
    assert (imp[~valid] == 255).all()
    assert (maps["probability"].values[valid] <= 100).all()
    cogs = read_maps(out)
    assert set(cogs) == {f"{k}/{v}" for k in ("zarr", "cog") for v in LAYERS}
    for v in LAYERS:
        assert (cogs[f"cog/{v}"] == cogs[f"zarr/{v}"]).all(), v
    assert not (out.out_dir / PROGRESS_DIR).exists()


def test_rerun_after_completion_is_idempotent(reference_run, small_cube, tiling_checkpoint):
    before = read_maps(reference_run)
    again = predict_cube(small_cube, tiling_checkpoint, reference_run.out_dir, config=SMALL_CONFIG, progress=False)
    assert again.chunks_computed == 0 and again.chunks_skipped == 12
    after = read_maps(again)
    assert all((before[k] == after[k]).all() for k in before)


def test_dask_chunk_size_leaves_no_trace_in_the_outputs(reference_run, small_cube, tiling_checkpoint, tmp_path):
    """The same cube through predict_cube with 64-px and 96-px output chunks (12 vs 6 dask tasks, chunk borders in
    different places): the written maps agree, up to a one-percent rounding step of the stored probability."""
    out = tmp_path / "testville" / "2024"
    other = predict_cube(small_cube, tiling_checkpoint, out, config=SMALL_CONFIG.replace(chunk_size=96), progress=False)
    assert other.chunks_total == 6 and reference_run.chunks_total == 12
    a, b = read_maps(reference_run), read_maps(other)
    for key in ("zarr/probability", "cog/probability", "zarr/uncertainty", "cog/uncertainty", "zarr/disagreement",
                "cog/disagreement"):
        diff = np.abs(a[key].astype(int) - b[key].astype(int))
        assert diff.max() <= 1, f"{key}: chunking changed a probability by {diff.max()} percent"
        assert (diff == 0).mean() > 0.999, f"{key}: {(diff != 0).sum()} pixels differ"
    p = a["zarr/probability"]
    undecided = (p == 50) | (b["zarr/probability"] == 50)  # a rounding step can only flip a pixel at p ~ 0.5
    for key in ("zarr/impervious", "cog/impervious"):
        assert (a[key] == b[key])[~undecided].all(), key


# Chunks are slowed (0.25 s each) so the kill after the third cannot lose a race to a fast machine finishing all twelve.
_RUN_SCRIPT = """
import sys
from tests.fixtures.tiling import slow_down_chunks
from tiling import TilingConfig, predict_cube
slow_down_chunks(0.25)
config = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)
predict_cube(sys.argv[1], sys.argv[2], sys.argv[3], config=config, progress=False)
"""


def test_killed_run_resumes_to_the_same_bytes(reference_run, small_cube, tiling_checkpoint, tmp_path):
    out = tmp_path / "testville" / "2024"
    progress = out / PROGRESS_DIR
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN_SCRIPT, str(small_cube), str(tiling_checkpoint), str(out)], env=env
    )
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list(progress.glob("*.done"))) if progress.exists() else 0
        if done >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(progress.glob("*.done")))
    assert 3 <= written < 12
    assert not (out / "impervious.tif").exists(), "no COG before the run completes"
    assert json.loads((out / "maps.zarr" / "zarr.json").read_text())["attributes"]["complete"] is False
    resumed = predict_cube(small_cube, tiling_checkpoint, out, config=SMALL_CONFIG, progress=False)
    assert resumed.chunks_skipped == written and resumed.chunks_computed == 12 - written
    expected, got = read_maps(reference_run), read_maps(resumed)
    for key in expected:
        assert (expected[key] == got[key]).all(), key


def test_another_checkpoint_starts_over(tiling_checkpoint, tmp_path):
    import xarray as xr

    from tests.fixtures.tiling import make_tiling_checkpoint

    cube = make_cube(tmp_path / "tiny" / "inputs.zarr", (64, 80), seed=4, chunk=64)
    out = tmp_path / "out"
    config = TilingConfig(chunk_size=64, device="cpu")
    first = predict_cube(cube, tiling_checkpoint, out, config=config, progress=False)
    other = make_tiling_checkpoint(tmp_path / "other.safetensors", seed=5)
    second = predict_cube(cube, other, out, config=config, progress=False)
    assert first.chunks_computed == second.chunks_computed == 2, "a different checkpoint does not resume"
    assert xr.open_zarr(second.maps).attrs["checkpoint_sha256"] == second.checkpoint_sha256 != first.checkpoint_sha256
    third = predict_cube(cube, other, out, config=config.replace(threshold=0.6), progress=False)
    assert third.chunks_computed == 2, "a different threshold changes the bytes, so it starts over too"


def test_bad_inputs_fail_clearly(tmp_path, tiling_checkpoint, small_cube):
    with pytest.raises(CubeError, match="does not exist|no input cube"):
        predict_cube(tmp_path / "nope.zarr", tiling_checkpoint, tmp_path / "out", progress=False)
    from crofuse.errors import InferenceError

    with pytest.raises(InferenceError, match="checkpoint"):
        predict_cube(small_cube, tmp_path / "missing.safetensors", tmp_path / "out", progress=False)


def test_cli_predict_writes_the_maps(tiling_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from crofuse.cli import app

    cube = make_cube(tmp_path / "cli" / "inputs.zarr", (64, 80), seed=6, chunk=64)
    result = CliRunner().invoke(
        app, ["predict", str(cube), "--checkpoint", str(tiling_checkpoint), "--no-cluster", "--chunk-size", "64"]
    )
    assert result.exit_code == 0, result.output
    assert (cube.parent / "impervious.tif").is_file() and (cube.parent / "maps.zarr" / "zarr.json").is_file()
    bad = CliRunner().invoke(app, ["predict", str(cube), "--checkpoint", str(tiling_checkpoint), "--window", "100"])
    assert bad.exit_code == 2 and "multiple of 16" in bad.output
