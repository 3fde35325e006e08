"""Eq. (11) loss, eqs. (13)-(17) metrics, and the input normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crofuse.errors import ConfigError
from crofuse.losses import CroFuseLoss, masked_cross_entropy
from crofuse.metrics import SegmentationMetrics, metrics_from_confusion
from crofuse.model import CroFuseOutput
from crofuse.normalization import Normalization

# --- loss ---------------------------------------------------------------------------------------------------------


def _output(seed: int = 0) -> tuple[CroFuseOutput, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = CroFuseOutput(*(torch.randn(2, 2, 8, 8, generator=g) for _ in range(3)))
    target = torch.randint(0, 2, (2, 8, 8), generator=g)
    target[0, :3] = 255  # nodata rows
    return out, target


def test_loss_is_weighted_sum_of_separate_cross_entropies() -> None:
    out, target = _output()
    ce = [F.cross_entropy(o, target, ignore_index=255) for o in out]
    for alpha, beta in ((1.0, 0.8), (0.3, 2.0), (0.0, 0.0)):
        loss = CroFuseLoss(alpha, beta)(out, target)
        assert torch.allclose(loss, ce[0] + alpha * ce[1] + beta * ce[2], atol=1e-6)
    parts = CroFuseLoss().components(out, target)
    assert set(parts) == {"shared", "optical", "sar", "total"}
    assert torch.allclose(parts["optical"], ce[1]) and torch.allclose(parts["sar"], ce[2])
    # the paper's weights are the defaults
    assert (CroFuseLoss().alpha, CroFuseLoss().beta) == (1.0, 0.8)


def test_loss_ignores_nodata_pixels() -> None:
    out, target = _output()
    loss = CroFuseLoss()(out, target)
    changed = CroFuseOutput(*(o.clone() for o in out))
    for o in changed:
        o[0, :, :3] = 1000.0 * torch.randn_like(o[0, :, :3])  # only where the label is 255
    assert torch.allclose(CroFuseLoss()(changed, target), loss)
    # ...while changing a labelled pixel does change it
    changed.shared[1, 0, 0, 0] += 5.0
    assert not torch.allclose(CroFuseLoss()(changed, target), loss)
    # mean over labelled pixels only: equals CE over the labelled subset
    mask = target != 255
    manual = F.cross_entropy(out.shared.permute(0, 2, 3, 1)[mask], target[mask])
    assert torch.allclose(masked_cross_entropy(out.shared, target), manual, atol=1e-6)


def test_loss_all_nodata_is_zero_not_nan_and_keeps_the_graph() -> None:
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = CroFuseLoss()(logits, torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_loss_on_plain_tensor_is_cross_entropy_and_checks_labels() -> None:
    out, target = _output()
    assert torch.allclose(CroFuseLoss()(out.shared, target), F.cross_entropy(out.shared, target, ignore_index=255))
    assert set(CroFuseLoss().components(out.shared, target)) == {"shared", "total"}
    bad = target.clone()
    bad[1, 0, 0] = 7
    with pytest.raises(ValueError, match=r"\[7\]"):
        CroFuseLoss()(out, bad)
    with pytest.raises(ValueError, match="do not match"):
        CroFuseLoss()(out.shared, target[:, :4])
    with pytest.raises(ValueError, match="alpha"):
        CroFuseLoss(alpha=-1)
    # uint8 labels, as read from the label rasters, work
    assert torch.allclose(CroFuseLoss()(out, target.to(torch.uint8)), CroFuseLoss()(out, target))


# --- metrics ------------------------------------------------------------------------------------------------------

# 8 pixels: target 1,1,1,0,0,0,0,255 / predicted 1,0,0,1,0,0,0,1 (the nodata pixel is ignored, 7 count)
# impervious: TP 1, FN 2, FP 1, TN 3; pervious: TP 3, FN 1, FP 2. cm[true, pred] = [[3, 1], [2, 1]].
TARGET = torch.tensor([1, 1, 1, 0, 0, 0, 0, 255]).reshape(1, 2, 4)
PRED = torch.tensor([1, 0, 0, 1, 0, 0, 0, 1]).reshape(1, 2, 4)
EXPECTED = {
    "iou_impervious": 1 / 4,
    "ua_impervious": 1 / 2,
    "pa_impervious": 1 / 3,
    "f1_impervious": 2 / 5,
    "iou_pervious": 3 / 6,
    "ua_pervious": 3 / 5,
    "pa_pervious": 3 / 4,
    "f1_pervious": 2 / 3,
    "oa": 4 / 7,
    "miou": (1 / 4 + 1 / 2) / 2,
    "mean_f1": (2 / 5 + 2 / 3) / 2,
}


def test_metrics_match_hand_computed_confusion_matrix() -> None:
    metric = SegmentationMetrics()
    metric.update(PRED, TARGET)
    assert metric.confusion_matrix().tolist() == [[3, 1], [2, 1]]
    result = metric.compute()
    assert set(result) == set(EXPECTED)
    for key, value in EXPECTED.items():
        assert result[key] == pytest.approx(value), key


def test_metrics_accumulate_over_batches_and_accept_logits_and_outputs() -> None:
    metric = SegmentationMetrics()
    logits = F.one_hot(PRED, 2).permute(0, 3, 1, 2).float() * 3.0  # argmax == PRED
    metric.update(logits[..., :2], TARGET[..., :2])
    metric.update(CroFuseOutput(logits[..., 2:], -logits[..., 2:], -logits[..., 2:]), TARGET[..., 2:])
    assert metric.confusion_matrix().tolist() == [[3, 1], [2, 1]]
    assert metric.compute()["miou"] == pytest.approx(EXPECTED["miou"])
    # float (N, H, W) is the impervious probability (what the Predictor returns), thresholded at 0.5
    metric.reset()
    metric.update(PRED.float() * 0.4 + 0.3, TARGET)  # 0.7 where PRED is 1, 0.3 where 0
    assert metric.confusion_matrix().tolist() == [[3, 1], [2, 1]]
    metric.reset()
    metric.update(TARGET.clamp(max=1), TARGET)
    assert metric.compute()["oa"] == 1.0


def test_metrics_agree_with_scikit_learn_on_random_maps() -> None:
    from sklearn.metrics import accuracy_score, f1_score, jaccard_score, precision_score, recall_score

    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 2, (4, 16, 16), generator=g)
    pred = torch.where(torch.rand(4, 16, 16, generator=g) < 0.8, target, 1 - target)
    metric = SegmentationMetrics()
    metric.update(pred, target)
    r = metric.compute()
    t, p = target.flatten().numpy(), pred.flatten().numpy()
    assert r["iou_impervious"] == pytest.approx(jaccard_score(t, p, pos_label=1))
    assert r["ua_impervious"] == pytest.approx(precision_score(t, p, pos_label=1))
    assert r["pa_pervious"] == pytest.approx(recall_score(t, p, pos_label=0))
    assert r["f1_pervious"] == pytest.approx(f1_score(t, p, pos_label=0))
    assert r["mean_f1"] == pytest.approx(f1_score(t, p, average="macro"))
    assert r["oa"] == pytest.approx(accuracy_score(t, p))


def test_metrics_from_confusion_edge_cases() -> None:
    # no impervious pixels at all, none predicted: its ratios are undefined (NaN), means skip them
    r = metrics_from_confusion(np.array([[10, 0], [0, 0]]))
    assert math.isnan(r["iou_impervious"]) and math.isnan(r["f1_impervious"])
    assert r["iou_pervious"] == 1.0 and r["miou"] == 1.0 and r["oa"] == 1.0
    # impervious present but never predicted: PA 0, UA undefined
    r = metrics_from_confusion(np.array([[5, 0], [5, 0]]))
    assert r["pa_impervious"] == 0.0 and math.isnan(r["ua_impervious"]) and r["iou_impervious"] == 0.0
    # ...and its F1 is 0, so a collapsed all-pervious model cannot earn a mean F1 from the pervious class alone
    assert r["f1_impervious"] == 0.0
    assert r["mean_f1"] == pytest.approx(r["f1_pervious"] / 2)
    with pytest.raises(ValueError, match="square"):
        metrics_from_confusion(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class names"):
        metrics_from_confusion(np.eye(3))


def test_metrics_reject_bad_labels_and_shapes() -> None:
    metric = SegmentationMetrics()
    with pytest.raises(ValueError, match="outside"):
        metric.update(PRED, TARGET.clone().fill_(3))
    with pytest.raises(ValueError, match="do not match"):
        metric.update(PRED[..., :2], TARGET)


# --- normalisation ------------------------------------------------------------------------------------------------

NORM = Normalization((0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.25, 2.0), (-10.0, -17.0), (2.0, 4.0))


def test_normalization_torch_and_numpy() -> None:
    optical = torch.arange(4 * 2 * 3, dtype=torch.float32).reshape(4, 2, 3)
    sar = torch.full((1, 2, 2, 3), -12.0)
    o, s = NORM.apply(optical, sar)
    assert torch.allclose(o[2], (optical[2] - 0.3) / 0.25)
    assert torch.allclose(s[0, 0], torch.full((2, 3), 1.0 * (-12.0 + 10.0) / 2.0))
    assert torch.allclose(s[0, 1], torch.full((2, 3), (-12.0 + 17.0) / 4.0))
    o_np, s_np = NORM.apply(optical.numpy(), sar.numpy())
    assert isinstance(o_np, np.ndarray) and o_np.dtype == np.float32
    assert np.allclose(o_np, o.numpy()) and np.allclose(s_np, s.numpy())
    # integer input becomes float32
    o_int, _ = NORM.apply(np.ones((4, 1, 1), dtype=np.uint16), sar.numpy())
    assert o_int.dtype == np.float32


def test_normalization_round_trip_and_validation() -> None:
    assert Normalization.from_dict(NORM.to_dict()) == NORM
    assert NORM.optical_channels == 4 and NORM.sar_channels == 2
    with pytest.raises(ConfigError, match="> 0"):
        Normalization((0.0,), (0.0,), (0.0,), (1.0,))
    with pytest.raises(ConfigError, match="lengths"):
        Normalization((0.0, 1.0), (1.0,), (0.0,), (1.0,))
    with pytest.raises(ConfigError, match="finite"):
        Normalization((float("nan"),), (1.0,), (0.0,), (1.0,))
    with pytest.raises(ConfigError, match="keys"):
        Normalization.from_dict({"optical_mean": [0.0]})
    with pytest.raises(ValueError, match="bands"):
        NORM.apply(torch.zeros(3, 4, 4), torch.zeros(2, 4, 4))
    x, y = Normalization.identity().apply(torch.ones(4, 2, 2), torch.ones(2, 2, 2))
    assert torch.equal(x, torch.ones(4, 2, 2)) and torch.equal(y, torch.ones(2, 2, 2))
