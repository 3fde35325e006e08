"""Evaluation of a model or a checkpoint on a patch split (paper IV-A-3, eqs. (13)-(17))."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from crofuse.data.patches import PatchUnits


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
    import torch
    from tqdm.auto import tqdm

    from crofuse import NODATA_LABEL
    from crofuse.metrics import SegmentationMetrics
    from crofuse.model import main_logits

    device = torch.device(device)
    metric = SegmentationMetrics(num_classes=num_classes, ignore_index=NODATA_LABEL).to(device)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
            optical = batch["optical"].to(device, non_blocking=True)
            sar = batch["sar"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            logits = main_logits(model(optical, sar))
            metric.update(logits.argmax(dim=1), label)
    model.train(was_training)
    return _as_float_dict(metric.compute())


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
) -> dict[str, float]:
    """Metrics (``miou``, ``oa``, ``mean_f1``, per-class IoU/UA/PA/F1...) of a checkpoint on one split.

    Inputs are normalised with the statistics stored in the checkpoint's card; the patch units default to the ones
    the checkpoint was trained with (recorded in its card), else reflectance/dB.
    """
    from torch.utils.data import DataLoader

    from crofuse.checkpoint import load_checkpoint
    from crofuse.data.patches import PatchDataset, PatchUnits, collate_patches

    dev = resolve_device(device)
    loaded = load_checkpoint(checkpoint, device=str(dev))
    card = loaded.card
    if units is None:
        recorded = (card.training_data or {}).get("units")
        units = PatchUnits.from_dict(recorded) if isinstance(recorded, dict) else PatchUnits()
    dataset = PatchDataset(dataset_root, split, normalization=card.normalization, units=units, max_patches=max_patches)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_patches)
    return evaluate_model(loaded.model, loader, device=dev, num_classes=card.num_classes, progress=progress,
                          desc=f"evaluate {split}")
