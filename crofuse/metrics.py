"""Segmentation accuracy from a confusion matrix accumulated over a whole split, eqs. (13)-(17) (Sec. IV-A-3).

Per class (``impervious`` = 1, ``pervious`` = 0): IoU (13), UA = user's accuracy = precision (14),
PA = producer's accuracy = recall (15), F1 (16); over all pixels: OA (17); and the paper's "comprehensive"
figures: mean IoU (MIoU, the early-stopping criterion) and mean F1. Rows of the confusion matrix are the ground
truth, columns the prediction (torchmetrics' convention). A ratio with a zero denominator is NaN; means skip NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_confusion_matrix

from crofuse import NODATA_LABEL
from crofuse.model.crofusenet import CroFuseOutput, main_logits

CLASS_NAMES: tuple[str, ...] = ("pervious", "impervious")
"""Class names by label value: 0 pervious, 1 impervious."""


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def metrics_from_confusion(cm: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> dict[str, float]:
    """Eqs. (13)-(17) from ``cm[true, predicted]`` pixel counts.

    Returns ``iou_<name>``, ``ua_<name>``, ``pa_<name>``, ``f1_<name>`` for every class, and ``oa``, ``miou``,
    ``mean_f1``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    if len(class_names) != cm.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {cm.shape[0]}-class confusion matrix")
    if (cm < 0).any():
        raise ValueError("a confusion matrix cannot hold negative counts")
    out: dict[str, float] = {}
    ious, f1s = [], []
    for c, name in enumerate(class_names):
        tp = cm[c, c]
        fp = cm[:, c].sum() - tp
        fn = cm[c, :].sum() - tp
        iou = _ratio(tp, tp + fp + fn)  # eq. (13)
        ua = _ratio(tp, tp + fp)  # eq. (14)
        pa = _ratio(tp, tp + fn)  # eq. (15)
        # eq. (16), 2·PA·UA / (PA + UA), written as 2TP / (2TP + FP + FN): the same value wherever UA and PA exist,
        # and 0 (not NaN) for a class that is present but never predicted, so a collapsed model cannot score a
        # mean F1 from the other class alone. NaN only where the class is absent from both map and reference.
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        out |= {f"iou_{name}": iou, f"ua_{name}": ua, f"pa_{name}": pa, f"f1_{name}": f1}
        ious.append(iou)
        f1s.append(f1)
    out["oa"] = _ratio(np.trace(cm), cm.sum())  # eq. (17)
    out["miou"] = _nanmean(ious)
    out["mean_f1"] = _nanmean(f1s)
    return out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


class SegmentationMetrics(Metric):
    """A torchmetrics ``Metric`` accumulating the confusion matrix of a whole split.

    ``update(preds_or_logits, target)``: ``preds`` is either class indices ``(N, H, W)``, logits/probabilities
    ``(N, C, H, W)`` (arg-maxed), a float impervious probability ``(N, H, W)`` (2 classes; ``> 0.5`` is
    impervious), or a :class:`~crofuse.model.CroFuseOutput` (its ``shared`` logits);
    ``target`` ``(N, H, W)`` labels with ``ignore_index`` for nodata. ``compute()`` returns
    :func:`metrics_from_confusion` of the total.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        num_classes: int = 2,
        *,
        ignore_index: int = NODATA_LABEL,
        class_names: Sequence[str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        if class_names is None:
            class_names = CLASS_NAMES if num_classes == 2 else tuple(f"class{i}" for i in range(num_classes))
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names)
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor | CroFuseOutput, target: Tensor) -> None:
        preds = main_logits(preds) if isinstance(preds, CroFuseOutput) else preds
        target = target.long()
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        elif preds.is_floating_point():
            if self.num_classes != 2:
                raise ValueError("float preds of shape (N, H, W) are only understood for 2 classes (as P(class 1))")
            preds = preds > 0.5  # impervious probability, as the Predictor returns it
        if preds.shape != target.shape:
            raise ValueError(
                f"preds {tuple(preds.shape)} do not match target {tuple(target.shape)}; expected class indices "
                "(N, H, W) or logits (N, C, H, W)"
            )
        valid = target != self.ignore_index
        if bool((valid & ((target < 0) | (target >= self.num_classes))).any()):
            raise ValueError(
                f"target holds labels outside 0..{self.num_classes - 1} that are not the ignore value "
                f"{self.ignore_index}: {torch.unique(target[valid]).tolist()}"
            )
        self.confmat += multiclass_confusion_matrix(
            preds.long(), target, self.num_classes, ignore_index=self.ignore_index, validate_args=False
        )

    def compute(self) -> dict[str, float]:
        return metrics_from_confusion(self.confmat.cpu().numpy(), self.class_names)

    def confusion_matrix(self) -> np.ndarray:
        """The accumulated ``cm[true, predicted]`` counts."""
        return self.confmat.cpu().numpy().copy()


__all__ = ["CLASS_NAMES", "SegmentationMetrics", "metrics_from_confusion"]
