"""Evaluation of a model or a checkpoint on a patch split (paper IV-A-3, eqs. (13)-(17)), and its calibration.

- :func:`evaluate_model` / :func:`evaluate_checkpoint`: IoU, UA, PA, F1 per class, OA, MIoU, mean F1;
  :func:`evaluate_checkpoint` also reports the expected calibration error and NLL of the shared head before
  (``T = 1``) and after the card's temperature, and can draw the reliability diagram.
- :func:`collect_logits`, :func:`calibrate_model`: temperature scaling (Guo et al. 2017, :mod:`crofuse.calibration`)
  fitted on a split's logits (the trainer fits it on the validation split of the best checkpoint).
- :func:`calibrate_checkpoint`: the same for an existing checkpoint (``crofuse calibrate``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from crofuse.calibration import Calibration, ReliabilityBins
    from crofuse.data.patches import PatchUnits

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 2_000_000
"""Labelled pixels kept (a seeded uniform subsample) to fit a temperature: one parameter needs far fewer, and it
bounds memory at about 16 MB of logits per head."""


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_float_dict(values: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in values.items():
        if hasattr(value, "numel") and value.numel() != 1:
            continue  # per-class vectors are reported by their named scalar entries
        out[key] = float(value)
    return out


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one split (eqs. (13)-(17)) and the reliability bins of the shared head before (``T = 1``) and
    after temperature ``temperature`` (the same bins when ``temperature`` is 1), with the mean NLL of each."""

    metrics: dict[str, float]
    before: ReliabilityBins
    after: ReliabilityBins
    nll_before: float
    nll_after: float
    temperature: float

    def calibration_figures(self) -> dict[str, float]:
        """``ece_before``, ``ece_after``, ``nll_before``, ``nll_after``."""
        return {"ece_before": self.before.ece, "ece_after": self.after.ece,
                "nll_before": self.nll_before, "nll_after": self.nll_after}


def run_evaluation(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device | str = "cpu",
    num_classes: int = 2,
    temperature: float = 1.0,
    bins: int | None = None,
    progress: bool = False,
    desc: str = "evaluate",
    reliability: bool = True,
) -> Evaluation:
    """One pass of ``model`` (eval mode) over ``loader``: the confusion matrix and, from the shared head's logits,
    the reliability bins and NLL before and after ``temperature`` (exact sums over all labelled pixels).
    ``reliability=False``: the confusion matrix only (bins empty, NLL NaN)."""
    import torch
    from tqdm.auto import tqdm

    from crofuse import NODATA_LABEL
    from crofuse.calibration import (
        DEFAULT_BINS,
        ReliabilityBins,
        calibrated_probabilities,
        reliability_bins,
    )
    from crofuse.metrics import SegmentationMetrics
    from crofuse.model import main_logits

    bins = bins or DEFAULT_BINS
    device = torch.device(device)
    metric = SegmentationMetrics(num_classes=num_classes, ignore_index=NODATA_LABEL).to(device)
    before, after = ReliabilityBins.empty(bins), ReliabilityBins.empty(bins)
    nll_sum = {"before": 0.0, "after": 0.0}
    labelled = 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
            optical = batch["optical"].to(device, non_blocking=True)
            sar = batch["sar"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            logits = main_logits(model(optical, sar)).float()
            metric.update(logits.argmax(dim=1), label)
            n = int((label != NODATA_LABEL).sum()) if reliability else 0
            if not n:
                continue
            labelled += n
            for name, t in (("before", 1.0), ("after", temperature)):
                if name == "after" and t == 1.0:
                    continue
                prob = calibrated_probabilities(logits, t)
                bins_ = reliability_bins(prob, label, bins=bins, ignore_index=NODATA_LABEL)
                nll = torch.nn.functional.cross_entropy(logits.double() / t, label, ignore_index=NODATA_LABEL,
                                                        reduction="sum")
                nll_sum[name] += float(nll)
                if name == "before":
                    before = before + bins_
                else:
                    after = after + bins_
    model.train(was_training)
    if temperature == 1.0:
        after, nll_sum["after"] = before, nll_sum["before"]
    mean = {k: (v / labelled if labelled else math.nan) for k, v in nll_sum.items()}
    return Evaluation(metrics=_as_float_dict(metric.compute()), before=before, after=after,
                      nll_before=mean["before"], nll_after=mean["after"], temperature=float(temperature))


def evaluate_model(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device | str = "cpu",
    num_classes: int = 2,
    progress: bool = False,
    desc: str = "evaluate",
) -> dict[str, float]:
    """Run ``model`` over ``loader`` in eval mode and return the metrics of :class:`crofuse.metrics.SegmentationMetrics`."""
    return run_evaluation(model, loader, device=device, num_classes=num_classes, progress=progress, desc=desc,
                          reliability=False).metrics


# ------------------------------------------------------------------------------------------------ calibration
@dataclass(frozen=True)
class CollectedLogits:
    """Logits ``(M, C)`` float32 of every head at the same labelled pixels, their labels ``(M,)``, and how many
    labelled pixels the split had (``pixels_seen``; more than ``M`` when subsampled)."""

    logits: dict[str, torch.Tensor]
    labels: torch.Tensor
    pixels_seen: int


def collect_logits(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device | str = "cpu",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    seed: int = 0,
    progress: bool = False,
    desc: str = "logits",
) -> CollectedLogits:
    """The logits of every head of ``model`` at the labelled pixels of ``loader`` (label 255 dropped).

    With ``max_pixels``, each pixel is kept with probability ``max_pixels / (patches x H x W)`` (a seeded uniform
    subsample, the same on every run over the same loader), so memory stays bounded on large splits.
    """
    import torch
    from tqdm.auto import tqdm

    from crofuse import NODATA_LABEL
    from crofuse.calibration import head_logits

    device = torch.device(device)
    dataset = getattr(loader, "dataset", None)
    size = getattr(dataset, "patch_size", None)
    rate = 1.0
    if max_pixels is not None and dataset is not None and size is not None:
        total = len(dataset) * int(size[0]) * int(size[1])
        rate = min(1.0, max_pixels / max(total, 1))
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    seen = 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
            label = batch["label"]
            keep = label != NODATA_LABEL
            seen += int(keep.sum())
            if rate < 1.0:
                keep &= torch.rand(label.shape, generator=generator) < rate
            if not bool(keep.any()):
                continue
            out = head_logits(model(batch["optical"].to(device), batch["sar"].to(device)))
            flat_keep = keep.reshape(-1).to(device)
            for head, z in out.items():
                z = z.float().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
                parts.setdefault(head, []).append(z[flat_keep].cpu())
            labels.append(label.reshape(-1)[keep.reshape(-1)].to(torch.uint8))
    model.train(was_training)
    if not labels:
        return CollectedLogits(logits={}, labels=torch.zeros(0, dtype=torch.uint8), pixels_seen=seen)
    return CollectedLogits(logits={h: torch.cat(v) for h, v in parts.items()}, labels=torch.cat(labels),
                           pixels_seen=seen)


def calibrate_model(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device | str = "cpu",
    bins: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    fitted_on: str = "val",
    dataset: str | None = None,
    progress: bool = False,
) -> Calibration:
    """Fit the temperature of every head of ``model`` on ``loader`` (Guo et al. 2017) and measure the shared
    head's ECE and NLL before and after on the same pixels.

    Raises :class:`~crofuse.errors.DataError` when the split has no labelled pixel or the fit is undefined.
    """
    from crofuse.calibration import (
        DEFAULT_BINS,
        Calibration,
        calibrated_probabilities,
        expected_calibration_error,
        fit_temperature,
    )
    from crofuse.errors import DataError

    bins = bins or DEFAULT_BINS
    collected = collect_logits(model, loader, device=device, max_pixels=max_pixels, progress=progress,
                               desc=f"logits {fitted_on}")
    if not len(collected.labels):
        raise DataError(f"the {fitted_on} split has no labelled pixel: a temperature cannot be fitted on it")
    labels = collected.labels.long()
    fits = {head: fit_temperature(z, labels) for head, z in collected.logits.items()}
    shared = fits["shared"]
    z = collected.logits["shared"]
    return Calibration(
        temperature=shared.temperature,
        head_temperatures={h: f.temperature for h, f in fits.items() if h != "shared"},
        fitted_on=fitted_on,
        dataset=dataset,
        pixels=shared.pixels,
        bins=bins,
        ece_before=expected_calibration_error(calibrated_probabilities(z, 1.0), labels, bins=bins),
        ece_after=expected_calibration_error(calibrated_probabilities(z, shared.temperature), labels, bins=bins),
        nll_before=shared.nll_before,
        nll_after=shared.nll_after,
    )


# ------------------------------------------------------------------------------------------------ checkpoints
def _units_of(card: Any, units: PatchUnits | None) -> PatchUnits:
    from crofuse.data.patches import PatchUnits

    if units is not None:
        return units
    recorded = (card.training_data or {}).get("units")
    return PatchUnits.from_dict(recorded) if isinstance(recorded, dict) else PatchUnits()


def _split_loader(card: Any, dataset_root: str | Path, split: str, *, batch_size: int, num_workers: int,
                  max_patches: int | None, units: PatchUnits | None) -> DataLoader:
    from torch.utils.data import DataLoader

    from crofuse.data.patches import PatchDataset, collate_patches
    from crofuse.trainingset import local_training_set

    dataset = PatchDataset(local_training_set(dataset_root), split, normalization=card.normalization, units=_units_of(card, units),
                           max_patches=max_patches)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_patches)


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset_root: str | Path,
    split: str = "test",
    *,
    batch_size: int = 16,
    device: str = "auto",
    num_workers: int = 0,
    max_patches: int | None = None,
    units: PatchUnits | None = None,
    progress: bool = False,
    bins: int | None = None,
    reliability_plot: str | Path | None = None,
) -> dict[str, float]:
    """Metrics (``miou``, ``oa``, ``mean_f1``, per-class IoU/UA/PA/F1...) of a checkpoint on one split, plus the
    shared head's ``ece_before``/``ece_after`` and ``nll_before``/``nll_after`` (``T = 1`` against the card's
    temperature; both the same and ``temperature`` 1 for an uncalibrated card) and ``temperature``.

    Inputs are normalised with the statistics stored in the checkpoint's card; the patch units default to the ones
    the checkpoint was trained with (recorded in its card), else reflectance/dB. ``reliability_plot`` writes the
    reliability diagram (before and after on the same axes) to that PNG.
    """
    from crofuse.calibration import plot_reliability
    from crofuse.checkpoint import load_checkpoint
    from crofuse.io.store import location

    dev = resolve_device(device)
    loaded = load_checkpoint(checkpoint, device=str(dev))
    card = loaded.card
    calibration = card.calibration
    bins = bins or (calibration.bins if calibration is not None else None)
    loader = _split_loader(card, dataset_root, split, batch_size=batch_size, num_workers=num_workers,
                           max_patches=max_patches, units=units)
    temperature = calibration.temperature if calibration is not None else 1.0
    result = run_evaluation(loaded.model, loader, device=dev, num_classes=card.num_classes, temperature=temperature,
                            bins=bins, progress=progress, desc=f"evaluate {split}")
    if reliability_plot is not None:
        state = f"T = {temperature:.3f} fitted on {calibration.fitted_on}" if calibration else "not calibrated"
        plot_reliability(result.before, result.after, reliability_plot, temperature=temperature,
                         title=f"{location(checkpoint).name}, {split} split ({state})", classes=card.num_classes)
    return {**result.metrics, **result.calibration_figures(), "temperature": temperature}


def calibrate_checkpoint(
    checkpoint: str | Path,
    dataset_root: str | Path,
    split: str = "val",
    *,
    out: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    num_workers: int = 0,
    max_patches: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    bins: int | None = None,
    units: PatchUnits | None = None,
    progress: bool = False,
) -> tuple[Any, Calibration]:
    """Fit the temperature of an existing checkpoint on ``split`` of ``dataset_root`` and write the checkpoint
    with the calibration in its card to ``out`` (default ``<stem>-calibrated.safetensors`` beside it; pass the
    checkpoint's own path to replace it, which :func:`~crofuse.checkpoint.save_checkpoint` does atomically). The
    checkpoint, ``dataset_root`` and ``out`` may be ``s3://`` URLs (a Location comes back for one).

    The weights are copied unchanged; the fit always starts from the raw logits, so calibrating a calibrated
    checkpoint again gives the same temperature. Nothing is written when the fit fails.
    """
    from crofuse.checkpoint import load_checkpoint, save_checkpoint
    from crofuse.io.store import canonical, location, native

    source = location(checkpoint)
    target = location(out) if out is not None else source.with_name(f"{source.stem}-calibrated.safetensors")
    dev = resolve_device(device)
    loaded = load_checkpoint(checkpoint, device=str(dev))
    loader = _split_loader(loaded.card, dataset_root, split, batch_size=batch_size, num_workers=num_workers,
                           max_patches=max_patches, units=units)
    calibration = calibrate_model(loaded.model, loader, device=dev, bins=bins, max_pixels=max_pixels,
                                  fitted_on=split, dataset=canonical(dataset_root), progress=progress)
    save_checkpoint(target, loaded.model, replace(loaded.card, calibration=calibration))
    log.info("calibrated %s on %s/%s: T = %.4f, ECE %.4f -> %.4f; wrote %s", source.name, dataset_root, split,
             calibration.temperature, calibration.ece_before, calibration.ece_after, target)
    return native(target), calibration
