"""Temperature scaling, ECE and reliability diagrams (Guo et al. 2017); the card's calibration; calibrated maps."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from crofuse.calibration import (
    Calibration,
    ReliabilityBins,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability,
    reliability_bins,
)
from crofuse.checkpoint import (
    CARD_KEY,
    ModelCard,
    Predictor,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from crofuse.errors import CheckpointError, ConfigError, DataError
from crofuse.model import ModelSpec, main_logits
from tests.fixtures.model import TEST_NORMALIZATION, make_checkpoint

N_PIXELS = 200_000


def calibrated_sample(n: int, classes: int, *, seed: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``z`` and labels drawn from ``softmax(z)``: a perfectly calibrated model by construction."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g, dtype=torch.float64) * scale
    y = torch.multinomial(torch.softmax(z, dim=1), 1, generator=g).squeeze(1)
    return z, y


def with_calibration(path: Path, source: Path, temperature: float, **fields: object) -> Path:
    """A copy of the checkpoint ``source`` whose card holds a calibration with ``temperature``."""
    loaded = load_checkpoint(source)
    calibration = Calibration(temperature=temperature, ece_before=0.1, ece_after=0.01, nll_before=0.5,
                              nll_after=0.4, pixels=1000, **fields)  # type: ignore[arg-type]
    return save_checkpoint(path, loaded.model, replace(loaded.card, calibration=calibration))


# ------------------------------------------------------------------------------------------------ fitting
@pytest.mark.parametrize(("true_t", "classes"), [(0.5, 2), (1.0, 2), (2.5, 2), (1.7, 3)])
def test_temperature_fit_recovers_a_known_temperature(true_t: float, classes: int) -> None:
    """Logits of a calibrated model multiplied by T (T > 1: over-confident): the fit divides by T again."""
    z, y = calibrated_sample(N_PIXELS, classes, seed=int(true_t * 10) + classes)
    fit = fit_temperature(z * true_t, y)
    # the MLE's standard error at n = 2e5 is well under 1 %; 3 % leaves room without hiding a wrong optimiser
    assert fit.temperature == pytest.approx(true_t, rel=0.03)
    assert fit.pixels == N_PIXELS
    assert fit.nll_after <= fit.nll_before + 1e-12
    assert fit.nll_after == pytest.approx(negative_log_likelihood(z * true_t, y, temperature=fit.temperature))
    if true_t != 1.0:
        assert fit.nll_after < fit.nll_before - 1e-3, "a miscalibrated model gains from scaling"


def test_temperature_fit_ignores_nodata_and_accepts_image_shapes() -> None:
    z, y = calibrated_sample(4 * 32 * 32, 2, seed=7)
    images = (z * 2.0).float().reshape(4, 32, 32, 2).permute(0, 3, 1, 2)  # (N, C, H, W)
    labels = y.reshape(4, 32, 32).clone()
    labels[:, :8] = 255  # a quarter nodata
    fit = fit_temperature(images, labels)
    assert fit.pixels == int((labels != 255).sum())
    flat = fit_temperature((z * 2.0)[labels.reshape(-1) != 255], y[labels.reshape(-1) != 255])
    assert fit.temperature == pytest.approx(flat.temperature, rel=1e-6)


def test_temperature_fit_refuses_what_it_cannot_fit() -> None:
    z, y = calibrated_sample(1000, 2, seed=1)
    with pytest.raises(DataError, match="no labelled pixel"):
        fit_temperature(z, torch.full_like(y, 255))
    sign = 2.0 * y.double() - 1.0
    separated = torch.stack([-5 * sign, 5 * sign], dim=1)  # every pixel right: the NLL falls as T -> 0
    with pytest.raises(DataError, match="bound"):
        fit_temperature(separated, y)
    with pytest.raises(DataError, match="labels outside"):
        fit_temperature(z, torch.full_like(y, 3))
    bad = z.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        fit_temperature(bad, y)


# ------------------------------------------------------------------------------------------------ ECE
def test_ece_by_hand() -> None:
    # four pixels with confidences 0.6, 0.6, 0.9, 0.7, of which the second is wrong
    probs = torch.tensor([[0.4, 0.6], [0.6, 0.4], [0.1, 0.9], [0.7, 0.3]], dtype=torch.float64)
    labels = torch.tensor([1, 1, 1, 0])  # right, wrong, right, right
    bins = reliability_bins(probs, labels, bins=2)
    assert bins.count.tolist() == [0, 4]
    # one bin: accuracy 3/4, mean confidence (0.6 + 0.6 + 0.9 + 0.7) / 4 = 0.7 -> ECE 0.05
    assert bins.ece == pytest.approx(0.05)
    bins10 = reliability_bins(probs, labels, bins=10)
    # bins (0.5,0.6]: 0.6 right, 0.6 wrong -> |1 - 1.2| ; (0.6,0.7]: 0.7 right -> |1 - 0.7| ; (0.8,0.9]: |1 - 0.9|
    assert bins10.count[5] == 2 and bins10.count[6] == 1 and bins10.count[8] == 1
    assert bins10.ece == pytest.approx((0.2 + 0.3 + 0.1) / 4)


def test_ece_is_near_zero_when_calibrated_and_large_when_over_confident() -> None:
    z, y = calibrated_sample(N_PIXELS, 2, seed=3)
    calibrated = expected_calibration_error(torch.softmax(z, dim=1), y)
    over = expected_calibration_error(torch.softmax(z * 4.0, dim=1), y)
    # binning noise of 15 bins at n = 2e5 is about 1e-3; logits 4x too large put ~9 % between confidence and accuracy
    assert calibrated < 0.01
    assert over > 0.05 and over > 10 * calibrated
    fit = fit_temperature(z * 4.0, y)
    after = expected_calibration_error(torch.softmax(z * 4.0 / fit.temperature, dim=1), y)
    assert after < 0.01, "temperature scaling repairs a uniformly over-confident model"


def test_reliability_bins_add_up_over_batches() -> None:
    z, y = calibrated_sample(10_000, 2, seed=4)
    p = torch.softmax(z * 2, dim=1)
    whole = reliability_bins(p, y)
    parts = reliability_bins(p[:3000], y[:3000]) + reliability_bins(p[3000:], y[3000:])
    assert (parts.count == whole.count).all() and parts.total == 10_000
    np.testing.assert_allclose(parts.confidence, whole.confidence)
    assert parts.ece == pytest.approx(whole.ece)
    assert math.isnan(ReliabilityBins.empty().ece)


def test_reliability_diagram_png_is_written(tmp_path: Path) -> None:
    z, y = calibrated_sample(20_000, 2, seed=5)
    over = z * 3
    fit = fit_temperature(over, y)
    before = reliability_bins(torch.softmax(over, dim=1), y)
    after = reliability_bins(torch.softmax(over / fit.temperature, dim=1), y)
    path = plot_reliability(before, after, tmp_path / "plots" / "reliability.png", temperature=fit.temperature)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["reliability.png"], "no temporary file left"


# ------------------------------------------------------------------------------------------------ the card
def test_card_round_trips_the_calibration(tmp_path: Path) -> None:
    calibration = Calibration(temperature=1.8, head_temperatures={"optical": 1.2, "sar": 0.9}, ece_before=0.08,
                              ece_after=0.01, nll_before=0.4, nll_after=0.3, pixels=12345, dataset="/data/ts",
                              test={"ece_before": 0.09, "ece_after": 0.02, "nll_before": 0.5, "nll_after": 0.4})
    card = ModelCard(model=ModelSpec("crofusenet", {"base_channels": 4}), normalization=TEST_NORMALIZATION,
                     calibration=calibration)
    assert ModelCard.from_json(card.to_json()) == card
    model = card.build_model()
    path = save_checkpoint(tmp_path / "c.safetensors", model, card)
    assert read_card(path).calibration == calibration
    assert json.loads((tmp_path / "c.card.json").read_text())["calibration"]["temperature"] == 1.8
    assert calibration.temperature_of("shared") == 1.8 and calibration.temperature_of("sar") == 0.9
    with pytest.raises(ConfigError, match="temperature"):
        Calibration(temperature=0.0)
    with pytest.raises(ConfigError, match="unknown head"):
        Calibration(temperature=1.0, head_temperatures={"lidar": 1.0})
    with pytest.raises(ConfigError, match="unknown calibration keys"):
        Calibration.from_dict({"temperature": 1.0, "alpha": 2})


def test_an_old_card_without_calibration_loads_and_predicts_with_t_1(tmp_path: Path) -> None:
    """A version-1 card exactly as crofuse wrote it before calibration existed (no ``calibration`` key)."""
    source = make_checkpoint(tmp_path / "new.safetensors")
    loaded = load_checkpoint(source)
    old = loaded.card.to_dict()
    assert "calibration" not in old, "an uncalibrated card is written without the key (older readers stay happy)"
    assert old["format_version"] == 1
    state = {k: v.contiguous() for k, v in loaded.model.state_dict().items()}
    path = tmp_path / "old.safetensors"
    save_file(state, path, metadata={CARD_KEY: json.dumps(old), "format": "pt"})
    predictor = Predictor.from_checkpoint(path)
    assert predictor.card.calibration is None and not predictor.calibrated and predictor.temperature == 1.0
    optical, sar = torch.rand(1, 4, 32, 32) * 0.3, torch.randn(1, 2, 32, 32) * 3 - 12
    o, s = TEST_NORMALIZATION.standardise(optical, sar)
    with torch.no_grad():
        raw = torch.softmax(main_logits(loaded.model(o, s)), dim=1)[:, 1]
    assert torch.equal(predictor(optical, sar), raw), "T = 1 is the plain softmax, bit for bit"
    with pytest.raises(CheckpointError, match="corrupt"):
        bad = tmp_path / "bad.safetensors"
        save_file(state, bad, metadata={CARD_KEY: json.dumps({**old, "calibration": {"temperature": -1}}),
                                        "format": "pt"})
        load_checkpoint(bad)


# ------------------------------------------------------------------------------------------------ Predictor
def test_predictor_applies_the_temperature_to_the_shared_head(tmp_path: Path) -> None:
    source = make_checkpoint(tmp_path / "m.safetensors")
    path = with_calibration(tmp_path / "cal.safetensors", source, 2.5, head_temperatures={"optical": 0.7,
                                                                                          "sar": 1.9})
    predictor = Predictor.from_checkpoint(path)
    assert predictor.calibrated and predictor.temperature == 2.5 and predictor.heads == ("shared", "optical", "sar")
    model = load_checkpoint(path).model
    g = torch.Generator().manual_seed(0)
    optical, sar = torch.rand(2, 4, 48, 48, generator=g) * 0.3, torch.randn(2, 2, 48, 48, generator=g) * 3 - 12
    o, s = TEST_NORMALIZATION.standardise(optical, sar)
    with torch.no_grad():
        out = model(o, s)
    expected = {"shared": torch.softmax(out.shared / 2.5, dim=1)[:, 1],
                "optical": torch.softmax(out.optical / 0.7, dim=1)[:, 1],
                "sar": torch.softmax(out.sar / 1.9, dim=1)[:, 1]}
    prob = predictor(optical, sar)
    torch.testing.assert_close(prob, expected["shared"], atol=1e-6, rtol=0)
    heads = predictor.predict_heads(optical, sar)
    assert set(heads) == {"shared", "optical", "sar"}
    for name, value in heads.items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0)
    assert torch.equal(heads["shared"], prob), "__call__ is the shared head of predict_heads"
    raw = Predictor.from_checkpoint(path, calibrated=False)
    assert not raw.calibrated
    raw_prob = raw(optical, sar)
    assert (prob - raw_prob).abs().max() > 0.01, "the temperature really changes the probabilities"
    # ... but never a class: for 2 classes p > 0.5 exactly when the impervious logit is the larger one
    assert torch.equal(prob > 0.5, raw_prob > 0.5)
    assert torch.equal((out.shared / 2.5).argmax(1), out.shared.argmax(1))
    numpy_heads = predictor.predict_heads(optical.numpy(), sar.numpy())
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in numpy_heads.values())


def test_single_head_models_have_only_the_shared_head(tmp_path: Path) -> None:
    source = make_checkpoint(tmp_path / "u.safetensors", ModelSpec("unet-fusion", {"base_channels": 4}))
    path = with_calibration(tmp_path / "ucal.safetensors", source, 1.5)
    predictor = Predictor.from_checkpoint(path)
    assert predictor.heads == ("shared",)
    optical, sar = torch.rand(1, 4, 16, 16), torch.randn(1, 2, 16, 16)
    heads = predictor.predict_heads(optical, sar)
    assert list(heads) == ["shared"] and torch.equal(heads["shared"], predictor(optical, sar))


# ------------------------------------------------------------------------------------------------ fitting a model
@pytest.fixture(scope="module")
def trained_simple(simple_patch_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """A briefly trained early-fusion UNet on the hand-made patch set (seconds); the trainer calibrates it."""
    from crofuse.training import TrainConfig, train

    config = TrainConfig(data_root=simple_patch_dataset, out_dir=tmp_path_factory.mktemp("simple-run"),
                         model="unet-fusion", model_options={"base_channels": 4, "head_relu": False}, lr=5e-3,
                         batch_size=8, max_epochs=3, patience=10, device="cpu", progress=False)
    return train(config)


def test_training_calibrates_the_best_checkpoint_on_val(trained_simple, simple_patch_dataset: Path) -> None:
    from crofuse.training.evaluate import evaluate_checkpoint

    card = read_card(trained_simple.best_checkpoint)
    calibration = card.calibration
    assert calibration is not None and calibration.fitted_on == "val" and calibration.bins == 15
    assert calibration.head_temperatures == {}, "a single-head model has only the shared temperature"
    assert calibration.pixels == 8 * 32 * 32, "every labelled val pixel (below the subsample cap)"
    assert calibration.nll_after <= calibration.nll_before
    assert calibration.dataset == str(simple_patch_dataset.resolve())
    assert set(calibration.test) == {"ece_before", "ece_after", "nll_before", "nll_after"}
    # the card's val and test figures are those an independent evaluation of the saved file measures
    val = evaluate_checkpoint(trained_simple.best_checkpoint, simple_patch_dataset, "val", device="cpu")
    assert val["temperature"] == calibration.temperature
    assert val["ece_before"] == pytest.approx(calibration.ece_before, abs=1e-9)
    assert val["ece_after"] == pytest.approx(calibration.ece_after, abs=1e-9)
    assert val["nll_after"] == pytest.approx(calibration.nll_after, rel=1e-6)
    test = evaluate_checkpoint(trained_simple.best_checkpoint, simple_patch_dataset, "test", device="cpu")
    assert test["ece_after"] == pytest.approx(calibration.test["ece_after"], abs=1e-9)
    assert test["miou"] == pytest.approx(card.metrics["test"]["miou"], abs=1e-12)


def test_calibrate_command_and_evaluate_report_ece(trained_simple, simple_patch_dataset: Path,
                                                   tmp_path: Path) -> None:
    """``crofuse calibrate`` on the trained checkpoint with its calibration removed: a new file whose card holds the
    same fit as the trainer's, the input untouched; ``crofuse evaluate`` reports ECE before/after with a diagram."""
    from typer.testing import CliRunner

    from crofuse.cli import app
    from crofuse.training.evaluate import calibrate_checkpoint, evaluate_checkpoint

    loaded = load_checkpoint(trained_simple.best_checkpoint)
    fitted = loaded.card.calibration
    source = save_checkpoint(tmp_path / "m.safetensors", loaded.model, replace(loaded.card, calibration=None))
    before = source.read_bytes()
    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", str(source), str(simple_patch_dataset), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    written = tmp_path / "m-calibrated.safetensors"
    assert source.read_bytes() == before, "the input checkpoint is left as it was"
    calibration = read_card(written).calibration
    assert calibration is not None
    assert calibration.temperature == pytest.approx(fitted.temperature, rel=1e-9), "the same fit as the trainer's"
    assert f"T = {calibration.temperature:.4f}" in res.output
    assert (tmp_path / "m-calibrated.reliability.png").is_file()
    plain = evaluate_checkpoint(source, simple_patch_dataset, "val", device="cpu")
    calibrated = evaluate_checkpoint(written, simple_patch_dataset, "val", device="cpu")
    assert calibrated["miou"] == plain["miou"], "the same weights, so the same classes"
    assert plain["temperature"] == 1.0 and plain["ece_before"] == plain["ece_after"]
    assert calibrated["ece_before"] == pytest.approx(plain["ece_before"], abs=1e-12)
    # calibrating a calibrated checkpoint starts from the raw logits again: the same temperature
    _, again = calibrate_checkpoint(written, simple_patch_dataset, out=tmp_path / "again.safetensors", device="cpu")
    assert again.temperature == pytest.approx(calibration.temperature, rel=1e-9)
    # in place: the same path, atomically replaced
    res = runner.invoke(app, ["calibrate", str(source), str(simple_patch_dataset), "--device", "cpu", "--in-place",
                              "--no-plot"])
    assert res.exit_code == 0, res.output
    assert read_card(source).calibration.temperature == pytest.approx(calibration.temperature, rel=1e-9)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file left"

    plot = tmp_path / "eval.png"
    res = runner.invoke(app, ["evaluate", str(written), str(simple_patch_dataset), "--split", "test", "--device",
                              "cpu", "--reliability-plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert "ECE" in res.output and f"T = {calibration.temperature:.4f}" in res.output and plot.is_file()
    res = runner.invoke(app, ["calibrate", str(source), str(simple_patch_dataset), "--in-place", "--out", "x"])
    assert res.exit_code != 0


def test_calibrate_refuses_an_uninformative_model(simple_patch_dataset: Path, tmp_path: Path) -> None:
    """An untrained network's logits carry no information about the labels: the NLL keeps falling as T grows, so
    no temperature is defined; the command says so and writes nothing."""
    from typer.testing import CliRunner

    from crofuse.cli import app

    source = make_checkpoint(tmp_path / "m.safetensors", ModelSpec("unet-fusion", {"base_channels": 4}))
    res = CliRunner().invoke(app, ["calibrate", str(source), str(simple_patch_dataset), "--device", "cpu"])
    assert res.exit_code == 1 and "bound" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.card.json", "m.safetensors"]


def test_calibrate_refuses_a_split_without_labels(tmp_path: Path) -> None:
    from crofuse.training.evaluate import calibrate_checkpoint
    from tests.fixtures.patches import make_patch, write_patch

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        optical, sar, label = make_patch(rng, 32)
        write_patch(tmp_path / "ts", split, "p0", optical, sar, np.full_like(label, 255) if split == "val" else label)
    source = make_checkpoint(tmp_path / "m.safetensors", ModelSpec("unet-fusion", {"base_channels": 4}))
    with pytest.raises(DataError, match="no labelled pixel"):
        calibrate_checkpoint(source, tmp_path / "ts", device="cpu")
    assert not (tmp_path / "m-calibrated.safetensors").exists(), "nothing written when the fit fails"


# ------------------------------------------------------------------------------------------------ maps
def test_probability_tif_of_a_calibrated_checkpoint_is_the_scaled_softmax(tiling_checkpoint: Path,
                                                                          tmp_path: Path) -> None:
    """probability.tif of a calibrated checkpoint = Hann blend of softmax(z / T) of the same windows, computed
    here from the model's raw logits; the uncalibrated run differs, and the attributes say which is which."""
    import rasterio
    import xarray as xr

    from tests.fixtures.tiling import make_cube
    from tiling import TilingConfig, encode_maps, predict_cube, predict_scene

    temperature = 2.5
    calibrated = with_calibration(tmp_path / "cal.safetensors", tiling_checkpoint, temperature)
    cube = make_cube(tmp_path / "c" / "inputs.zarr", (96, 128), seed=8, chunk=64)
    config = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)
    out = predict_cube(cube, calibrated, tmp_path / "cal", config=config, progress=False)
    raw = predict_cube(cube, tiling_checkpoint, tmp_path / "raw", config=config, progress=False)
    assert out.calibrated and out.temperature == temperature and not raw.calibrated

    loaded = load_checkpoint(tiling_checkpoint)

    def scaled_softmax(optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
        o, s = TEST_NORMALIZATION.standardise(torch.from_numpy(optical), torch.from_numpy(sar))
        with torch.no_grad():
            return torch.softmax(main_logits(loaded.model(o, s)) / temperature, dim=1)[:, 1].numpy()

    scene = xr.open_zarr(cube, consolidated=False)
    expected = predict_scene(scene["optical"].values, scene["sar"].values, scene["valid"].values, scaled_softmax,
                             config=config)
    _, expected_percent = encode_maps(expected, 0.5)
    with rasterio.open(out.probability) as src:
        got = src.read(1)
    diff = np.abs(got.astype(int) - expected_percent.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999, "float rounding may move a whole percent, nothing more"
    with rasterio.open(raw.probability) as src:
        uncalibrated = src.read(1)
    valid = got != 255
    assert np.abs(got[valid].astype(int) - uncalibrated[valid].astype(int)).max() > 5
    maps, raw_maps = xr.open_zarr(out.maps), xr.open_zarr(raw.maps)
    assert maps.attrs["calibrated"] is True and maps.attrs["temperature"] == temperature
    assert raw_maps.attrs["calibrated"] is False and raw_maps.attrs["temperature"] == 1.0
    assert json.loads(maps.attrs["calibration"])["temperature"] == temperature


def test_calibration_leaves_the_class_map_as_it_was(tiling_checkpoint: Path, tmp_path: Path) -> None:
    """T does not change a window's argmax (2 classes). The map's class is the blended probability above 0.5, and
    blending is a weighted mean of softmax(z / T) over overlapping windows, whose sign relative to 0.5 can move with
    T only where those windows disagree on the class: the test bounds that share."""
    import zarr

    from tests.fixtures.tiling import make_cube
    from tiling import TilingConfig, predict_cube

    calibrated = with_calibration(tmp_path / "cal.safetensors", tiling_checkpoint, 2.5)
    cube = make_cube(tmp_path / "c" / "inputs.zarr", (128, 160), seed=9, chunk=64)
    config = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)
    a = zarr.open_group(predict_cube(cube, calibrated, tmp_path / "a", config=config, progress=False).maps)
    b = zarr.open_group(predict_cube(cube, tiling_checkpoint, tmp_path / "b", config=config, progress=False).maps)
    imp_a, imp_b = a["impervious"][:], b["impervious"][:]
    valid = imp_b != 255
    assert (imp_a[~valid] == 255).all()
    changed = (imp_a != imp_b)[valid].mean()
    print(f"\nclass map pixels changed by T = 2.5: {changed:.4%}")
    assert changed < 0.002


def test_uncalibrated_checkpoint_is_logged_once(tiling_checkpoint: Path, tmp_path: Path, caplog) -> None:
    from tests.fixtures.tiling import make_cube
    from tiling import TilingConfig, predict_cube

    cube = make_cube(tmp_path / "c" / "inputs.zarr", (64, 130), seed=10, chunk=64)
    with caplog.at_level(logging.WARNING, logger="tiling.predict"):
        predict_cube(cube, tiling_checkpoint, tmp_path / "o", config=TilingConfig(chunk_size=64, device="cpu"),
                     progress=False)
    said = [r for r in caplog.records if "no calibration" in r.getMessage()]
    assert len(said) == 1, "one message per run, not one per chunk (3 chunks here)"
    assert "T = 1" in said[0].getMessage()
