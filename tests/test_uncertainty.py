"""Per-pixel uncertainty: entropy and head disagreement, their map layers, and error rising with uncertainty."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from crofuse.uncertainty import (
    binary_entropy,
    bootstrap_top_minus_bottom,
    decile_groups,
    error_by_decile,
    format_decile_table,
    head_disagreement,
)


# ------------------------------------------------------------------------------------------------ the measures
def test_binary_entropy_is_maximal_at_one_half() -> None:
    p = np.linspace(0.0, 1.0, 2001)
    h = binary_entropy(p)
    assert h.dtype == np.float32
    assert h[1000] == pytest.approx(1.0) and p[np.argmax(h)] == pytest.approx(0.5)
    assert h[0] == 0.0 and h[-1] == 0.0, "0 log 0 = 0: a certain pixel has no entropy"
    np.testing.assert_allclose(h, h[::-1], atol=1e-6)  # symmetric in p and 1 - p
    assert (np.diff(h[:1001]) > 0).all(), "rises strictly from p = 0 to 0.5"
    assert binary_entropy(np.array([0.11]))[0] == pytest.approx(0.4999, abs=1e-3)  # H(0.11) = 1/2 bit
    assert np.isnan(binary_entropy(np.array([np.nan, 0.3])))[0]


def test_head_disagreement_is_the_range_of_the_heads() -> None:
    shared = np.array([0.9, 0.5, 0.2, np.nan], dtype=np.float32)
    optical = np.array([0.8, 0.5, 0.9, 0.1], dtype=np.float32)
    sar = np.array([0.1, 0.5, 0.3, 0.1], dtype=np.float32)
    d = head_disagreement([shared, optical, sar])
    np.testing.assert_allclose(d[:3], [0.8, 0.0, 0.7], atol=1e-6)
    assert np.isnan(d[3]), "nodata in any head is nodata"
    with pytest.raises(ValueError, match="two heads"):
        head_disagreement([shared])


# ------------------------------------------------------------------------------------------------ the table
def test_error_by_decile_mechanics() -> None:
    rng = np.random.default_rng(0)
    u = rng.uniform(size=10_003)
    u[:2000] = 0.0  # many ties: still ten groups of (almost) equal count
    error = rng.uniform(size=u.size) < u  # the error rate equals the uncertainty
    rows = error_by_decile(u, error)
    assert [r.group for r in rows] == list(range(1, 11))
    sizes = [r.pixels for r in rows]
    assert sum(sizes) == u.size and max(sizes) - min(sizes) <= 1
    assert all(a.high <= b.low for a, b in pairwise(rows)), "groups follow the ranking"
    assert rows[0].error_rate == 0.0 and rows[-1].error_rate > 0.85
    rates = [r.error_rate for r in rows]
    assert rates == sorted(rates)
    assert decile_groups(np.array([3.0, 1.0, 2.0, 0.0]), 2).tolist() == [1, 0, 1, 0]
    table = format_decile_table({"entropy": rows, "disagreement": rows})
    assert table.count("\n| ") == 10 and "entropy error rate" in table
    # non-finite uncertainty (nodata) is left out, not ranked
    u2 = np.concatenate([u, [np.nan] * 7])
    assert sum(r.pixels for r in error_by_decile(u2, np.concatenate([error, [True] * 7]))) == u.size
    with pytest.raises(ValueError, match="differ"):
        error_by_decile(u, error[:-1])


def test_bootstrap_tells_a_real_trend_from_none() -> None:
    rng = np.random.default_rng(1)
    patch = np.repeat(np.arange(40), 250)
    u = rng.uniform(size=patch.size)
    trend = bootstrap_top_minus_bottom(u, rng.uniform(size=u.size) < 0.1 + 0.5 * u, patch, resamples=200)
    flat = bootstrap_top_minus_bottom(u, rng.uniform(size=u.size) < 0.3, patch, resamples=200)
    assert (trend > 0).mean() == 1.0 and trend.mean() == pytest.approx(0.45, abs=0.05)
    assert (flat <= 0).mean() > 0.01, "a flat error rate is not called a significant rise"


# ------------------------------------------------------------------------------------------------ the map layers
@pytest.fixture(scope="module")
def calibrated_run(tiling_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """predict_cube of the tiling fixture CroFuseNet with a fitted-looking calibration (T = 1.6)."""
    from crofuse.calibration import Calibration
    from crofuse.checkpoint import load_checkpoint, save_checkpoint
    from tests.fixtures.tiling import make_cube
    from tiling import TilingConfig, predict_cube

    root = tmp_path_factory.mktemp("uncertainty")
    loaded = load_checkpoint(tiling_checkpoint)
    calibration = Calibration(temperature=1.6, head_temperatures={"optical": 1.2, "sar": 2.0})
    checkpoint = save_checkpoint(root / "cal.safetensors", loaded.model, replace(loaded.card, calibration=calibration))
    cube = make_cube(root / "testville" / "2024" / "inputs.zarr", (160, 192), seed=11, chunk=64)
    config = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)
    return predict_cube(cube, checkpoint, cube.parent, config=config, progress=False), cube, checkpoint, config


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        assert src.dtypes == ("uint8",) and src.nodata == 255
        return src.read(1)


def test_uncertainty_layers_are_valid_cogs_with_the_probability_s_nodata(calibrated_run) -> None:
    import xarray as xr
    from rio_cogeo.cogeo import cog_validate

    out, cube, _, _ = calibrated_run
    for path in (out.uncertainty, out.disagreement):
        ok, errors, _ = cog_validate(path, quiet=True)
        assert ok, errors
    probability, uncertainty, disagreement = _read(out.probability), _read(out.uncertainty), _read(out.disagreement)
    nodata = probability == 255
    assert nodata.any() and (~nodata).any()
    assert ((uncertainty == 255) == nodata).all() and ((disagreement == 255) == nodata).all()
    valid = ~nodata
    assert uncertainty[valid].max() <= 100 and disagreement[valid].max() <= 100
    assert (xr.open_zarr(cube, consolidated=False)["valid"].values == valid).all()
    maps = xr.open_zarr(out.maps)
    assert (maps["uncertainty"].values == uncertainty).all() and (maps["disagreement"].values == disagreement).all()
    assert maps["uncertainty"].attrs["units"] == "percent of 1 bit" and maps["uncertainty"].attrs["nodata"] == 255
    assert maps.attrs["heads"] == ["shared", "optical", "sar"]
    assert json.loads(maps.attrs["head_temperatures"]) == {"shared": 1.6, "optical": 1.2, "sar": 2.0}


def test_uncertainty_is_the_entropy_of_the_calibrated_probability(calibrated_run) -> None:
    out, *_ = calibrated_run
    probability, uncertainty = _read(out.probability).astype(int), _read(out.uncertainty).astype(int)
    valid = probability != 255
    assert (uncertainty[valid & (probability == 50)] == 100).all(), "p = 0.5 is the maximum, 1 bit"
    # entropy of the rounded percent: away from 0 and 1 (where H is steep) rounding moves it by at most ~3 percent
    middle = valid & (probability >= 5) & (probability <= 95)
    assert middle.sum() > 100
    expected = 100 * binary_entropy(probability[middle] / 100)
    assert np.abs(uncertainty[middle] - expected).max() <= 3
    # ranking: the most uncertain pixels are the ones closest to 50 %
    top = valid & (uncertainty >= np.percentile(uncertainty[valid], 99))
    assert np.abs(probability[top] - 50).max() <= np.abs(probability[valid] - 50).mean()


def test_uncertainty_layers_do_not_depend_on_the_chunking(calibrated_run, tmp_path: Path) -> None:
    from tiling import predict_cube

    out, cube, checkpoint, config = calibrated_run
    other = predict_cube(cube, checkpoint, tmp_path / "o", config=config.replace(chunk_size=96), progress=False)
    assert other.chunks_total != out.chunks_total
    for name in ("uncertainty", "disagreement"):
        a = _read(getattr(out, name)).astype(int)
        b = _read(getattr(other, name)).astype(int)
        diff = np.abs(a - b)
        assert diff.max() <= 1, f"{name}: chunking moved a value by {diff.max()} percent"
        assert (diff == 0).mean() > 0.999, f"{name}: {(diff != 0).sum()} pixels differ"


def test_single_head_models_have_no_disagreement_layer(tmp_path: Path) -> None:
    import xarray as xr

    from crofuse.model import ModelSpec
    from tests.fixtures.model import make_checkpoint
    from tests.fixtures.tiling import make_cube
    from tiling import TilingConfig, predict_cube

    checkpoint = make_checkpoint(tmp_path / "unet.safetensors", ModelSpec("unet-fusion", {"base_channels": 4}))
    cube = make_cube(tmp_path / "c" / "inputs.zarr", (64, 80), seed=12, chunk=64)
    out = predict_cube(cube, checkpoint, tmp_path / "o", config=TilingConfig(chunk_size=64, device="cpu"),
                       progress=False)
    assert out.disagreement is None and not (tmp_path / "o" / "disagreement.tif").exists()
    assert out.uncertainty.is_file()
    maps = xr.open_zarr(out.maps)
    assert "disagreement" not in maps and "uncertainty" in maps
    assert maps.attrs["disagreement"].startswith("not available") and maps.attrs["heads"] == ["shared"]
    assert maps.attrs["calibrated"] is False


# ------------------------------------------------------------------------------------------------ error vs uncertainty
@pytest.fixture(scope="module")
def small_trained(patch_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """A reduced-width CroFuseNet trained briefly (8 epochs, ~7 s on one core) on the STAC-built session training
    set, and calibrated on val by the trainer."""
    from crofuse.training import TrainConfig, train

    config = TrainConfig(data_root=patch_dataset, out_dir=tmp_path_factory.mktemp("uncertainty-run"),
                         model="crofusenet", model_options={"base_channels": 4, "head_relu": False}, lr=5e-3,
                         batch_size=8, max_epochs=8, patience=100, device="cpu", progress=False)
    return train(config)


def test_error_rises_with_uncertainty_on_a_trained_model(small_trained, patch_dataset: Path) -> None:
    """On the held-out patches (val and test: never trained on) of a small trained CroFuseNet, the most uncertain
    decile of pixels is wrong more often than the least uncertain one, for both measures. Significance by a cluster
    bootstrap over patches (pixels of a patch are correlated), one-sided at 1 %. The session set's test split alone
    has 4 patches, too few for a cluster bootstrap; the entropy ranking does not depend on the temperature fitted on
    val (entropy is monotone in |z| / T)."""
    from crofuse.checkpoint import Predictor
    from crofuse.data import PatchDataset
    from crofuse.uncertainty import PixelUncertainty, patch_uncertainty

    predictor = Predictor.from_checkpoint(small_trained.best_checkpoint)
    assert predictor.calibrated, "the trainer calibrated the best checkpoint"
    pixels = PixelUncertainty.concat([patch_uncertainty(predictor, PatchDataset(patch_dataset, split))
                                      for split in ("val", "test")])
    assert pixels.disagreement is not None and len(pixels.error) > 5000
    assert len(np.unique(pixels.patch)) >= 10
    assert 0.01 < pixels.error.mean() < 0.5, "a trained model that still makes errors"
    tables = {name: error_by_decile(u, pixels.error) for name, u in pixels.measures().items()}
    print("\n" + format_decile_table(tables))
    for name, u in pixels.measures().items():
        rows = tables[name]
        assert rows[-1].error_rate > rows[0].error_rate, name
        diffs = bootstrap_top_minus_bottom(u, pixels.error, pixels.patch, resamples=300)
        assert (diffs <= 0).mean() < 0.01, f"{name}: top - bottom decile error not significant ({diffs.mean():.3f})"
