"""The typed state of a training run: what ``last.state.json`` holds and a resumed run continues from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from crofuse.errors import CheckpointError

STATE_VERSION = 1


@dataclass
class TrainState:
    """Progress of one run (paper IV-A loop): epoch and iteration counters, early stopping, history.

    ``normalization`` is the train split's statistics (computed once, reused on resume); ``resume_key`` the options a
    resumed run must share (:meth:`crofuse.training.TrainConfig.resume_key`); ``code_version`` the version of the
    code that started the run.
    """

    normalization: dict[str, Any]
    resume_key: dict[str, Any]
    config: dict[str, Any]
    code_version: str
    epoch: int = 0
    iteration: int = 0
    best_miou: float | None = None
    best_epoch: int | None = None
    best_val: dict[str, Any] | None = None
    epochs_without_improvement: int = 0
    finished: bool = False
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    version: int = STATE_VERSION

    def improved(self, score: float, min_delta: float) -> bool:
        """Is ``score`` (validation MIoU) better than the best so far by more than ``min_delta``?"""
        return self.best_miou is None or score > self.best_miou + min_delta

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "") -> TrainState:
        if data.get("version") != STATE_VERSION:
            raise CheckpointError(f"{where} has state version {data.get('version')}, expected {STATE_VERSION}; rerun "
                                  "with --no-resume")
        known = set(cls.__dataclass_fields__)
        data = {k: v for k, v in data.items() if k in known}
        data.setdefault("code_version", "unknown")
        try:
            return cls(**data)
        except TypeError as e:
            raise CheckpointError(f"{where} is not a training state of this crofuse ({e}); rerun with --no-resume") from e


__all__ = ["STATE_VERSION", "TrainState"]
