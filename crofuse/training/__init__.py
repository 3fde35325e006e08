"""Training and evaluation of CroFuseNet and the baselines (paper IV-A); ``crofuse train/evaluate/info``."""

from __future__ import annotations

from crofuse.training.config import TrainConfig
from crofuse.training.evaluate import evaluate_checkpoint, evaluate_model, resolve_device
from crofuse.training.trainer import TrainResult, Trainer, code_version, poly_lr, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "code_version",
    "evaluate_checkpoint",
    "evaluate_model",
    "poly_lr",
    "resolve_device",
    "train",
]
