"""Typed training configuration; defaults follow paper section IV-A."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crofuse.data.augment import Augmentation
from crofuse.data.patches import PatchUnits
from crofuse.errors import ConfigError
from crofuse.io.store import canonical


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs.

    Paper IV-A defaults: Adam with initial learning rate 1e-4, poly schedule ``(1 - iter/max_iter)^0.9`` stepped per
    iteration, batch size 32, 400 epochs, early stop after 50 epochs without a better validation MIoU; loss eq. (11)
    with ``alpha=1``, ``beta=0.8``.

    Quick runs: ``max_patches`` caps every split (first N patches by name), ``limit_batches`` caps the training
    iterations per epoch. ``min_delta`` is the MIoU gain that counts as an improvement for early stopping.
    ``resume`` continues from ``out_dir/last.safetensors`` when it exists. ``data_root`` and ``out_dir`` may be
    ``s3://`` URLs (kept as strings): the trainer reads a local copy of the patches and uploads every file it
    writes (:mod:`crofuse.training.checkpoints`). ``standardisation`` is the input
    rule recorded in the card (``"dataset"``, or ``"per-scene"``: :mod:`crofuse.normalization`).
    """

    data_root: Path | str
    out_dir: Path | str
    model: str = "crofusenet"
    model_options: dict[str, Any] = field(default_factory=dict)
    alpha: float = 1.0
    beta: float = 0.8
    lr: float = 1e-4
    poly_power: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 400
    patience: int = 50
    min_delta: float = 0.0
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    max_patches: int | None = None
    limit_batches: int | None = None
    augmentation: Augmentation | None = field(default_factory=Augmentation)
    standardisation: str = "dataset"
    units: PatchUnits = field(default_factory=PatchUnits)
    eval_batch_size: int | None = None
    evaluate_test: bool = True
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        from crofuse.errors import StorageError
        from crofuse.io.store import path_or_url

        for name in ("data_root", "out_dir"):
            try:
                object.__setattr__(self, name, path_or_url(getattr(self, name)))
            except StorageError as e:
                raise ConfigError(f"{name}: {e}") from None
        object.__setattr__(self, "model_options", dict(self.model_options))
        positive = {"lr": self.lr, "batch_size": self.batch_size, "max_epochs": self.max_epochs,
                    "patience": self.patience, "poly_power": self.poly_power}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        for name in ("alpha", "beta", "weight_decay", "min_delta", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("max_patches", "limit_batches", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (or None for no limit), got {value}")
        if self.standardisation not in ("dataset", "per-scene"):
            raise ConfigError(f"standardisation must be 'dataset' or 'per-scene', got {self.standardisation!r}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda", "mps")):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (paths as strings)."""
        data = asdict(self)
        data["data_root"] = str(self.data_root)
        data["out_dir"] = str(self.out_dir)
        data["augmentation"] = self.augmentation.to_dict() if self.augmentation else None
        data["units"] = self.units.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown training options {sorted(unknown)}")
        if isinstance(data.get("augmentation"), dict):
            data["augmentation"] = Augmentation.from_dict(data["augmentation"])
        if isinstance(data.get("units"), dict):
            data["units"] = PatchUnits.from_dict(data["units"])
        return cls(**data)

    def resume_key(self) -> dict[str, Any]:
        """The options a resumed run must share with the run it continues (they fix the iteration schedule)."""
        key = {
            "data_root": canonical(self.data_root),
            "model": self.model,
            "model_options": self.model_options,
            "lr": self.lr,
            "poly_power": self.poly_power,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "max_patches": self.max_patches,
            "limit_batches": self.limit_batches,
            "seed": self.seed,
        }
        if self.standardisation != "dataset":  # only then, so runs from before the option still resume
            key["standardisation"] = self.standardisation
        return key
