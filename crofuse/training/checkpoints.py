"""The files of a training run and how they are saved and restored (no pickle anywhere).

Output directory::

    best.safetensors        weights + model card of the best epoch (card metrics: val, and test at the end)
    last.safetensors        weights + card of the latest epoch
    last.state.safetensors  optimizer tensors (Adam moments) of the latest epoch
    last.state.json         the :class:`~crofuse.training.state.TrainState` plus optimizer scalars and scheduler
                            (the resume marker)
    history.json, history.csv   per-epoch training loss, learning rate and validation metrics

The directory may be a path or an ``s3://`` URL. Every file is written through :mod:`crofuse.io.store` (on disk a
temporary name and a rename, on S3 one PUT of the whole file, built in memory), and ``last.state.json`` is written
last, so an interrupted save never looks finished, on disk or in a bucket.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crofuse.errors import CheckpointError, ConfigError
from crofuse.io.store import Location, cached_copy, location, native
from crofuse.training.state import TrainState

if TYPE_CHECKING:
    import torch
    from torch import nn

    from crofuse.checkpoint import ModelCard

BEST = "best.safetensors"
LAST = "last.safetensors"
LAST_STATE = "last.state.safetensors"
LAST_STATE_JSON = "last.state.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"


def optimizer_state_to_flat(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON scalars."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def optimizer_state_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_state_to_flat`."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = tensor
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


class CheckpointManager:
    """Saves and restores the files of one run directory, a path or an ``s3://`` URL (see the module docstring).

    ``out`` is its :class:`~crofuse.io.store.Location`; ``out_dir``, ``best`` and ``last`` are Paths for a local
    directory and Locations on object storage."""

    def __init__(self, out_dir: Path | str | Location) -> None:
        self.out = location(out_dir)
        self.out_dir = native(self.out)

    @property
    def best(self) -> Path | Location:
        return native(self.out / BEST)

    @property
    def last(self) -> Path | Location:
        return native(self.out / LAST)

    def save_model(self, path: Path | Location, model: nn.Module, card: ModelCard) -> None:
        from crofuse.checkpoint import save_checkpoint

        save_checkpoint(path, model, card)  # atomic: temporary name + rename, or one PUT

    def save_best(self, model: nn.Module, card: ModelCard) -> None:
        self.save_model(self.best, model, card)

    def load_state(self, resume_key: dict[str, Any]) -> TrainState | None:
        """The state to resume from, or ``None`` (no marker). Other options than the run there -> ConfigError."""
        marker = self.out / LAST_STATE_JSON
        try:
            raw = json.loads(marker.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{marker} is not valid JSON ({exc}); rerun with --no-resume to start over") from exc
        state = TrainState.from_dict(raw, where=str(marker))
        if state.resume_key != resume_key:
            diff = sorted(k for k in resume_key if resume_key.get(k) != (state.resume_key or {}).get(k))
            raise ConfigError(
                f"cannot resume {self.out_dir}: the run there used different {', '.join(diff)}; "
                "use the same options, another --out directory, or --no-resume to start over"
            )
        self._raw = raw
        return state

    def save_last(self, model: nn.Module, optimizer: Any, scheduler: Any, card: ModelCard, state: TrainState) -> None:
        """Optimizer tensors, the last weights, then the state marker (written last)."""
        from safetensors.torch import save

        tensors, opt_meta = optimizer_state_to_flat(optimizer.state_dict())
        payload = {**state.to_dict(), "optimizer": opt_meta, "scheduler": scheduler.state_dict()}
        marker = json.dumps(payload, indent=1)  # serialised first: a state that cannot be written stops here
        (self.out / LAST_STATE).write_bytes(
            save(tensors, metadata={"epoch": str(state.epoch), "format": "crofuse-optimizer-state"}))
        self.save_model(self.last, model, card)
        (self.out / LAST_STATE_JSON).write_text(marker)  # the marker: written last

    def restore(self, state: TrainState, model: nn.Module, optimizer: Any, scheduler: Any) -> None:
        """Load the last weights, optimizer and scheduler of ``state`` (checked to be of the same epoch)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        from crofuse.checkpoint import load_checkpoint

        raw = getattr(self, "_raw", None) or json.loads((self.out / LAST_STATE_JSON).read_text())
        state_path = cached_copy(self.out / LAST_STATE)  # the file itself on disk, a local copy of an object
        with safe_open(str(state_path), framework="pt") as f:
            saved_epoch = (f.metadata() or {}).get("epoch")
        loaded = load_checkpoint(self.last, device="cpu")
        weights_epoch = loaded.card.training_data.get("epoch")
        if saved_epoch != str(state.epoch) or weights_epoch != state.epoch:
            raise CheckpointError(
                f"the last checkpoint in {self.out_dir} is inconsistent (state epoch {state.epoch}, optimizer epoch "
                f"{saved_epoch}, weights epoch {weights_epoch}): a save was interrupted; rerun with --no-resume"
            )
        model.load_state_dict(loaded.model.state_dict())
        optimizer.load_state_dict(optimizer_state_from_flat(load_file(str(state_path)), raw["optimizer"]))
        scheduler.load_state_dict(raw["scheduler"])

    def write_history(self, history: list[dict[str, Any]]) -> None:
        (self.out / HISTORY_JSON).write_text(json.dumps(history, indent=1))
        if not history:
            return
        columns = list(dict.fromkeys(k for row in history for k in row))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        (self.out / HISTORY_CSV).write_text(text.getvalue())


__all__ = [
    "BEST",
    "HISTORY_CSV",
    "HISTORY_JSON",
    "LAST",
    "LAST_STATE",
    "LAST_STATE_JSON",
    "CheckpointManager",
    "optimizer_state_from_flat",
    "optimizer_state_to_flat",
]
