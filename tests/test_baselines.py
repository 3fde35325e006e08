"""Baselines of paper IV-A2: RF/SVM per pixel; FCN-8s, HRNet and DeepLabv3+ through the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from crofuse.baselines import (
    FEATURE_NAMES,
    DeepLabV3Plus,
    FCN8s,
    HRNet,
    PixelClassifier,
    PixelClassifierConfig,
    iter_patches,
    pixel_features,
    sample_training_pixels,
    train_pixel_classifier,
)
from crofuse.errors import ConfigError, PatchDatasetError
from crofuse.losses import CroFuseLoss
from crofuse.model import MODELS, ModalityInput, ModelSpec
from tests.fixtures.model import ModelTester, seeded_inputs
from tests.fixtures.patches import write_patch_set





SMALL = {
    "fcn": {"base_channels": 4},
    "hrnet": {"width": 4, "stem_channels": 8, "num_blocks": 1, "num_modules": [1, 1, 1]},
    "deeplabv3plus": {"base_channels": 4, "block": "basic", "layers": [1, 1, 1, 1]},
}


class _BaselineTester(ModelTester):
    """The shared model checks; these nets align any size, so odd sizes must work instead of being refused."""

    def test_bad_sizes_rejected(self) -> None:  # replaces the UNet-family check
        model = self.build().eval()
        for h, w in ((100, 128), (67, 45)):
            optical, sar = seeded_inputs(1, h, w)
            with torch.no_grad():
                assert model(optical, sar).shape == (1, self.num_classes, h, w)

    def test_one_training_step_changes_weights_and_lowers_loss(self) -> None:
        model = self.build().train()
        optical, sar = seeded_inputs(2, 64, 64)
        target = (optical[:, 3] > optical[:, 2]).long()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        before = [p.detach().clone() for p in model.parameters()]
        losses = []
        for _ in range(5):
            torch.manual_seed(0)  # the same dropout masks every step
            loss = CroFuseLoss()(model(optical, sar), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
        assert losses[-1] < losses[0]


class TestFCN(_BaselineTester):
    spec: ClassVar[ModelSpec] = ModelSpec("fcn", SMALL["fcn"])


class TestHRNet(_BaselineTester):
    spec: ClassVar[ModelSpec] = ModelSpec("hrnet", SMALL["hrnet"])


class TestDeepLabV3Plus(_BaselineTester):
    spec: ClassVar[ModelSpec] = ModelSpec("deeplabv3plus", SMALL["deeplabv3plus"])
    batch_size: ClassVar[int] = 1  # the image-pooling branch has no BN, so a batch of one trains


def test_registry_wraps_the_concatenated_bands() -> None:
    for name in ("fcn", "hrnet", "deeplabv3plus"):
        model = ModelSpec(name, SMALL[name]).build()
        assert name in MODELS
        assert isinstance(model, ModalityInput)
        assert model.modalities == ("optical", "sar")
    assert isinstance(ModelSpec("fcn", SMALL["fcn"]).build().net, FCN8s)
    assert isinstance(ModelSpec("hrnet", SMALL["hrnet"]).build().net, HRNet)
    assert isinstance(ModelSpec("deeplabv3plus", SMALL["deeplabv3plus"]).build().net, DeepLabV3Plus)


def test_full_width_structures_match_the_papers() -> None:
    # HRNetV2-W18 has about 9.6 M parameters; its 4 branches at 1/4..1/32 have widths 18, 36, 72, 144.
    hrnet = HRNet(6, 2)
    n = sum(p.numel() for p in hrnet.parameters())
    assert 8.5e6 < n < 10.5e6, n
    assert [m.branches[i][0].body[0].in_channels for m in [hrnet.stages[2][0]] for i in range(4)] == [18, 36, 72, 144]
    # FCN-8s: VGG-16 stage layout (2, 2, 3, 3, 3 convs) and scores from pool3, pool4 and fc7.
    fcn = FCN8s(6, 2)
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in stage.modules()) for stage in fcn.stages]
    assert convs == [2, 2, 3, 3, 3]
    assert fcn.score_pool3.in_channels == 256 and fcn.score_pool4.in_channels == 512
    # DeepLabv3+: ASPP with rates 6/12/18 at output stride 16, 48-channel low-level projection.
    dl = DeepLabV3Plus(6, 2)
    rates = [b[0].dilation[0] for b in dl.aspp.branches[1:]]
    assert rates == [6, 12, 18]
    assert dl.reduce[0].out_channels == 48 and dl.aspp.branches[0][0].out_channels == 256
    feats = dl.stem(torch.zeros(1, 6, 128, 128))
    for stage in dl.stages:
        feats = stage(feats)
    assert feats.shape[-2:] == (8, 8)  # output stride 16


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (FCN8s, {"base_channels": 0}),
        (HRNet, {"num_modules": (1, 1)}),
        (DeepLabV3Plus, {"block": "xception"}),
        (DeepLabV3Plus, {"layers": (1, 1, 1)}),
    ],
)
def test_bad_configuration_fails_in_constructor(cls: type, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        cls(6, 2, **kwargs)


# ---- per-pixel RF / SVM ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pixel_patches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_patch_set(tmp_path_factory.mktemp("pixel"), counts={"train": 6, "val": 2, "test": 3}, size=32)


def test_pixel_features_columns() -> None:
    optical = np.array([0.1, 0.2, 0.3, 0.5], np.float32)[:, None, None] * np.ones((4, 2, 3), np.float32)
    sar = np.array([-5.0, -12.0], np.float32)[:, None, None] * np.ones((2, 2, 3), np.float32)
    x = pixel_features(optical, sar)
    assert x.shape == (6, len(FEATURE_NAMES))
    row = dict(zip(FEATURE_NAMES, x[0], strict=True))
    assert row["ndvi"] == pytest.approx((0.5 - 0.3) / 0.8)
    assert row["ndwi"] == pytest.approx((0.2 - 0.5) / 0.7)
    assert row["ndbi_like"] == pytest.approx((0.2 - 0.5) / 0.7)  # visible mean 0.2 vs NIR 0.5
    assert row["vv_minus_vh_db"] == pytest.approx(7.0)
    with pytest.raises(PatchDatasetError, match="optical"):
        pixel_features(optical[:3], sar)


def test_pixel_sample_is_seeded_and_skips_nodata(pixel_patches: Path) -> None:
    x1, y1 = sample_training_pixels(pixel_patches, n_samples=500, seed=3)
    x2, y2 = sample_training_pixels(pixel_patches, n_samples=500, seed=3)
    x3, _ = sample_training_pixels(pixel_patches, n_samples=500, seed=4)
    assert x1.shape == (500, len(FEATURE_NAMES)) and np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert set(np.unique(y1)) == {0, 1}
    x_cap, _ = sample_training_pixels(pixel_patches, n_samples=10**6, seed=3, max_patches=2)
    assert len(x_cap) == 2 * 32 * 32  # all labelled pixels of the first two patches, no more
    # every sampled row is a real pixel of the training split
    pixels = np.concatenate([pixel_features(o, s) for _, o, s, _ in iter_patches(pixel_patches, "train")])
    assert np.isin(x1[:, 0], pixels[:, 0]).all()


@pytest.mark.parametrize("method", ["rf", "svm"])
def test_pixel_classifier_trains_and_predicts_patches(pixel_patches: Path, method: str) -> None:
    config = PixelClassifierConfig(method=method, n_samples=800, seed=0, rf_trees=10)
    clf = train_pixel_classifier(pixel_patches, config)
    assert clf.n_train_pixels == 800 and clf.fit_seconds > 0
    correct = total = 0
    for _, optical, sar, label in iter_patches(pixel_patches, "test"):
        pred = clf.predict_patch(optical, sar)
        assert pred.shape == label.shape and pred.dtype == np.uint8
        correct += int((pred == label).sum())
        total += label.size
    assert correct / total > 0.8  # the fixture's classes are separable per pixel
    optical[:, 0, 0] = np.nan
    assert clf.predict_patch(optical, sar)[0, 0] == 255
    assert clf.describe()["config"]["method"] == method


def test_pixel_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="method"):
        PixelClassifierConfig(method="knn")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_samples"):
        PixelClassifierConfig(method="rf", n_samples=1)
    assert isinstance(PixelClassifier.build(PixelClassifierConfig(method="svm")), PixelClassifier)


def test_fcn_dropout_is_element_wise_like_the_original() -> None:
    fcn = FCN8s(6, 2, base_channels=4)
    kinds = [type(m) for m in fcn.fc if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert kinds == [torch.nn.Dropout, torch.nn.Dropout]
    channel = FCN8s(6, 2, base_channels=4, dropout_mode="channel")
    assert [type(m) for m in channel.fc if isinstance(m, torch.nn.modules.dropout._DropoutNd)] == [torch.nn.Dropout2d] * 2
    # element-wise: within one feature map some values survive and some are zeroed
    drop = fcn.fc[1].train()
    y = drop(torch.ones(1, 4, 8, 8))
    per_map = (y == 0).float().mean(dim=(2, 3))
    assert ((per_map > 0) & (per_map < 1)).all()
    with pytest.raises(ValueError, match="dropout_mode"):
        FCN8s(6, 2, dropout_mode="spatial")  # type: ignore[arg-type]


def test_published_aspp_rates_degenerate_to_1x1_on_an_8x8_map() -> None:
    """DeepLabv3 Sec. 3.3: a rate close to the map size leaves only the centre weight; 128 px at stride 16 is 8×8."""
    from crofuse.baselines import aspp_receptive_taps, scaled_aspp_rates

    assert [aspp_receptive_taps(8, r) for r in (12, 18)] == [1.0, 1.0]
    assert aspp_receptive_taps(33, 6) > 6.5  # the published setting: most weights inside the map
    assert scaled_aspp_rates(128) == (1, 3, 4) and scaled_aspp_rates(513) == (6, 12, 18)
    assert min(aspp_receptive_taps(8, r) for r in scaled_aspp_rates(128)) >= 4.0
    torch.manual_seed(0)
    dl = DeepLabV3Plus(6, 2, base_channels=4, block="basic", layers=(1, 1, 1, 1)).eval()
    x = torch.randn(1, dl.aspp.branches[2][0].in_channels, 8, 8)
    conv = dl.aspp.branches[2][0]  # rate 12
    assert conv.dilation == (12, 12)
    centre = torch.nn.functional.conv2d(x, conv.weight[:, :, 1:2, 1:2])
    assert torch.allclose(conv(x), centre, atol=1e-6)  # exactly a 1×1 convolution
    scaled = DeepLabV3Plus(6, 2, base_channels=4, block="basic", layers=(1, 1, 1, 1), aspp_rates=(1, 3, 4)).eval()
    conv4 = scaled.aspp.branches[3][0]
    assert not torch.allclose(conv4(x), torch.nn.functional.conv2d(x, conv4.weight[:, :, 1:2, 1:2]), atol=1e-4)


def test_pixel_feature_sets(pixel_patches: Path) -> None:
    from crofuse.baselines import FEATURE_SETS

    assert FEATURE_SETS["bands"] == ("B02", "B03", "B04", "B08", "VV", "VH")
    assert len(FEATURE_SETS["bands+indices"]) == 10
    x6, y6 = sample_training_pixels(pixel_patches, n_samples=300, seed=1, features="bands")
    x10, y10 = sample_training_pixels(pixel_patches, n_samples=300, seed=1, features="bands+indices")
    assert x6.shape == (300, 6) and x10.shape == (300, 10)
    assert np.array_equal(x6, x10[:, :6]) and np.array_equal(y6, y10)  # the same pixels, fewer columns
    clf = train_pixel_classifier(pixel_patches, PixelClassifierConfig(method="rf", n_samples=300, rf_trees=3))
    assert clf.config.features == "bands" and clf.pipeline[-1].n_features_in_ == 6
    _, optical, sar, label = next(iter_patches(pixel_patches, "test"))
    assert clf.predict_patch(optical, sar).shape == label.shape
    with pytest.raises(ConfigError, match="features"):
        PixelClassifierConfig(method="rf", features="ndvi")  # type: ignore[arg-type]
