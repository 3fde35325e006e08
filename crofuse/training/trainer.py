"""The training loop of paper section IV-A.

Adam (initial lr 1e-4), the poly schedule ``lr = lr0 * (1 - iter/max_iter)^0.9`` stepped every iteration, loss
eq. (11), validation MIoU after every epoch, early stopping after ``patience`` epochs without improvement, the best
(by validation MIoU) and the last checkpoint kept.

Output directory::

    best.safetensors        weights + model card of the best epoch (card metrics: val, and test at the end)
    last.safetensors        weights + card of the latest epoch
    last.state.safetensors  optimizer tensors (Adam moments) of the latest epoch
    last.state.json         epoch, iteration, scheduler, early-stopping state, history (the resume marker)
    history.json, history.csv   per-epoch training loss, learning rate and validation metrics

Nothing is pickled: tensors go to safetensors, scalars to JSON. Every file is written under a temporary name and
renamed, and ``last.state.json`` is renamed last, so an interrupted save never looks finished. A rerun with
``resume=True`` continues after the last completed epoch; a finished run is not trained again. Randomness (model
init, shuffling, augmentation) is derived from ``(seed, epoch)``, so a resumed run follows the same path as an
uninterrupted one.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crofuse.errors import CheckpointError, ConfigError
from crofuse.training.config import TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from crofuse.checkpoint import ModelCard
    from crofuse.normalization import Normalization

BEST = "best.safetensors"
LAST = "last.safetensors"
LAST_STATE = "last.state.safetensors"
LAST_STATE_JSON = "last.state.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
STATE_VERSION = 1

EpochCallback = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`: the best checkpoint, its metrics (``val``, ``test``, ``best_epoch``...) and history."""

    best_checkpoint: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: Path | None = None
    stopped_early: bool = False


def poly_lr(base_lr: float, iteration: int, max_iter: int, power: float = 0.9) -> float:
    """Poly learning rate of paper IV-A: ``base_lr * (1 - iteration/max_iter)^power``."""
    return base_lr * (1.0 - min(iteration, max_iter) / max_iter) ** power


def code_version() -> str:
    """``crofuse.__version__`` plus the git commit of the source tree when it is a checkout (``0.1.0+g1a2b3c4``)."""
    from crofuse import __version__

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


# --------------------------------------------------------------------------------------------------------------
# optimizer state <-> safetensors + JSON (no pickle)


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


# --------------------------------------------------------------------------------------------------------------


class Trainer:
    """One training run of :class:`TrainConfig` (paper IV-A); use :func:`train` unless you need the pieces."""

    def __init__(self, config: TrainConfig, *, on_epoch_end: EpochCallback | None = None) -> None:
        self.config = config
        self.on_epoch_end = on_epoch_end
        self.out_dir = config.out_dir

    # ---- setup -------------------------------------------------------------------------------------------------

    def _datasets(self, normalization: Normalization) -> dict[str, Any]:
        from crofuse.data.patches import PatchDataset

        cfg = self.config
        common = {"normalization": normalization, "units": cfg.units, "max_patches": cfg.max_patches}
        datasets = {
            "train": PatchDataset(cfg.data_root, "train", augmentation=cfg.augmentation, seed=cfg.seed, **common),
            "val": PatchDataset(cfg.data_root, "val", **common),
        }
        if cfg.evaluate_test and (cfg.data_root / "test").is_dir():
            datasets["test"] = PatchDataset(cfg.data_root, "test", **common)
        return datasets

    def _loader(self, dataset: Any, *, train: bool, epoch: int = 0) -> Any:
        import torch
        from torch.utils.data import DataLoader

        from crofuse.data.patches import collate_patches

        cfg = self.config
        generator = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch)) if train else None
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size if train else (cfg.eval_batch_size or cfg.batch_size),
            shuffle=train,
            generator=generator,
            num_workers=cfg.num_workers,
            collate_fn=collate_patches,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
        )

    def _card(self, normalization: Normalization, metrics: dict[str, Any], *, epoch: int,
              patches: dict[str, int]) -> ModelCard:
        from crofuse import OPTICAL_BANDS, SAR_BANDS
        from crofuse.checkpoint import ModelCard
        from crofuse.model import ModelSpec

        cfg = self.config
        return ModelCard(
            model=ModelSpec(cfg.model, dict(cfg.model_options)),
            optical_bands=list(OPTICAL_BANDS),
            sar_bands=list(SAR_BANDS),
            normalization=normalization,
            num_classes=2,
            training_data={
                "dataset_root": str(cfg.data_root.resolve()),
                "patches": patches,
                "patch_size": list(self.patch_size),
                "units": cfg.units.to_dict(),
                "epoch": epoch,
                "loss": {"name": "crofuse", "alpha": cfg.alpha, "beta": cfg.beta},
                "optimizer": {"name": "adam", "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                              "schedule": f"poly^{cfg.poly_power}", "batch_size": cfg.batch_size},
                "augmentation": cfg.augmentation.to_dict() if cfg.augmentation else None,
                "seed": cfg.seed,
                "max_epochs": cfg.max_epochs,
                "patience": cfg.patience,
            },
            metrics=metrics,
            code_version=code_version(),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

    def _save_model(self, path: Path, model: nn.Module, card: ModelCard) -> None:
        from crofuse.checkpoint import save_checkpoint

        save_checkpoint(path, model, card)  # atomic: temporary name + rename

    # ---- resume ------------------------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any] | None:
        marker = self.out_dir / LAST_STATE_JSON
        if not self.config.resume or not marker.exists():
            return None
        try:
            state = json.loads(marker.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{marker} is not valid JSON ({exc}); rerun with --no-resume to start over") from exc
        if state.get("version") != STATE_VERSION:
            raise CheckpointError(f"{marker} has state version {state.get('version')}, expected {STATE_VERSION}")
        want, have = self.config.resume_key(), state.get("resume_key")
        if want != have:
            diff = sorted(k for k in want if want.get(k) != (have or {}).get(k))
            raise ConfigError(
                f"cannot resume {self.out_dir}: the run there used different {', '.join(diff)}; "
                "use the same options, another --out directory, or --no-resume to start over"
            )
        return state

    def _save_state(self, model: nn.Module, optimizer: Any, scheduler: Any, card: ModelCard,
                    state: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        tensors, opt_meta = optimizer_state_to_flat(optimizer.state_dict())
        epoch = str(state["epoch"])
        tmp_state = _tmp_name(self.out_dir / LAST_STATE)
        save_file(tensors, str(tmp_state), metadata={"epoch": epoch, "format": "crofuse-optimizer-state"})
        payload = {**state, "optimizer": opt_meta, "scheduler": scheduler.state_dict()}
        tmp_json = self.out_dir / f".{LAST_STATE_JSON}.tmp"
        tmp_json.write_text(json.dumps(payload, indent=1))
        os.replace(tmp_state, self.out_dir / LAST_STATE)
        self._save_model(self.out_dir / LAST, model, card)
        os.replace(tmp_json, self.out_dir / LAST_STATE_JSON)  # the marker: renamed last

    def _restore(self, state: dict[str, Any], model: nn.Module, optimizer: Any, scheduler: Any) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        from crofuse.checkpoint import load_checkpoint

        epoch = int(state["epoch"])
        state_path = self.out_dir / LAST_STATE
        with safe_open(str(state_path), framework="pt") as f:
            saved_epoch = (f.metadata() or {}).get("epoch")
        loaded = load_checkpoint(self.out_dir / LAST, device="cpu")
        weights_epoch = loaded.card.training_data.get("epoch")
        if saved_epoch != str(epoch) or weights_epoch != epoch:
            raise CheckpointError(
                f"the last checkpoint in {self.out_dir} is inconsistent (state epoch {epoch}, optimizer epoch "
                f"{saved_epoch}, weights epoch {weights_epoch}): a save was interrupted; rerun with --no-resume"
            )
        model.load_state_dict(loaded.model.state_dict())
        optimizer.load_state_dict(optimizer_state_from_flat(load_file(str(state_path)), state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])

    # ---- loop --------------------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        import torch
        from tqdm.auto import tqdm

        from crofuse import NODATA_LABEL
        from crofuse.data.stats import compute_normalization
        from crofuse.losses import CroFuseLoss
        from crofuse.model import ModelSpec
        from crofuse.normalization import Normalization
        from crofuse.training.evaluate import evaluate_model, resolve_device

        cfg = self.config
        self.device = resolve_device(cfg.device)
        state = self._load_state()

        if state is not None:
            normalization = Normalization.from_dict(state["normalization"])
        else:
            normalization = compute_normalization(cfg.data_root, units=cfg.units, max_patches=cfg.max_patches,
                                                  progress=cfg.progress)
        datasets = self._datasets(normalization)
        self.patch_size = datasets["train"].patch_size
        patches = {split: len(ds) for split, ds in datasets.items()}
        self.out_dir.mkdir(parents=True, exist_ok=True)  # only once the data checked out

        torch.manual_seed(cfg.seed)
        spec = ModelSpec(cfg.model, dict(cfg.model_options))
        model = spec.build(optical_channels=4, sar_channels=2, num_classes=2).to(self.device)
        criterion = CroFuseLoss(alpha=cfg.alpha, beta=cfg.beta, ignore_index=NODATA_LABEL)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_batches = len(self._loader(datasets["train"], train=True))
        iters_per_epoch = min(n_batches, cfg.limit_batches) if cfg.limit_batches else n_batches
        max_iter = cfg.max_epochs * iters_per_epoch
        scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max_iter, power=cfg.poly_power)

        if state is not None:
            self._restore(state, model, optimizer, scheduler)
            model.to(self.device)
        else:
            state = {
                "version": STATE_VERSION,
                "epoch": 0,
                "iteration": 0,
                "best_miou": None,
                "best_epoch": None,
                "best_val": None,
                "epochs_without_improvement": 0,
                "finished": False,
                "stopped_early": False,
                "history": [],
                "normalization": normalization.to_dict(),
                "resume_key": cfg.resume_key(),
                "config": cfg.to_dict(),
            }

        history: list[dict[str, Any]] = state["history"]
        epochs = tqdm(range(state["epoch"] + 1, cfg.max_epochs + 1), desc="train", unit="epoch",
                      initial=state["epoch"], total=cfg.max_epochs, disable=not cfg.progress)
        for epoch in epochs if not state["finished"] else ():
            t0 = time.perf_counter()
            torch.manual_seed(_epoch_seed(cfg.seed, epoch))
            datasets["train"].set_epoch(epoch)
            model.train()
            loss_sum, seen = 0.0, 0
            loader = self._loader(datasets["train"], train=True, epoch=epoch)
            bar = tqdm(loader, total=iters_per_epoch, desc=f"epoch {epoch}", unit="batch", leave=False,
                       disable=not cfg.progress)
            for i, batch in enumerate(bar):
                if i >= iters_per_epoch:
                    break
                label = batch["label"].to(self.device, non_blocking=True)
                if bool((label != NODATA_LABEL).any()):
                    optical = batch["optical"].to(self.device, non_blocking=True)
                    sar = batch["sar"].to(self.device, non_blocking=True)
                    loss = criterion(model(optical, sar), label)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += float(loss.detach()) * label.shape[0]
                    seen += label.shape[0]
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
                scheduler.step()  # one poly step per iteration, also for an all-nodata batch
                state["iteration"] += 1
            lr_now = optimizer.param_groups[0]["lr"]
            val = evaluate_model(model, self._loader(datasets["val"], train=False), device=self.device,
                                 desc=f"val {epoch}", progress=cfg.progress)
            record = {"epoch": epoch, "train_loss": loss_sum / seen if seen else float("nan"), "lr": lr_now,
                      "iteration": state["iteration"], "seconds": round(time.perf_counter() - t0, 3),
                      **{f"val_{k}": v for k, v in val.items()}}
            history.append(record)
            score = val["miou"] if math.isfinite(val["miou"]) else -math.inf  # NaN: nothing labelled in val
            improved = state["best_miou"] is None or score > state["best_miou"] + cfg.min_delta
            if improved:
                state.update(best_miou=score, best_epoch=epoch, best_val=val, epochs_without_improvement=0)
                best_card = self._card(normalization, {"val": val, "best_epoch": epoch}, epoch=epoch, patches=patches)
                self._save_model(self.out_dir / BEST, model, best_card)
            else:
                state["epochs_without_improvement"] += 1
            state["epoch"] = epoch
            stop = state["epochs_without_improvement"] >= cfg.patience
            state["finished"] = stop or epoch == cfg.max_epochs
            state["stopped_early"] = stop
            last_card = self._card(normalization, {"val": val, "best_epoch": state["best_epoch"]}, epoch=epoch,
                                   patches=patches)
            self._save_state(model, optimizer, scheduler, last_card, state)
            self._write_history(history)
            epochs.set_postfix(loss=f"{record['train_loss']:.4f}", val_miou=f"{val['miou']:.4f}",
                               best=f"{state['best_miou']:.4f}")
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, record)
            if stop:
                break
        epochs.close()

        return self._finish(state, normalization, patches, datasets)

    def _finish(self, state: dict[str, Any], normalization: Normalization, patches: dict[str, int],
                datasets: dict[str, Any]) -> TrainResult:
        from crofuse.checkpoint import load_checkpoint
        from crofuse.training.evaluate import evaluate_model

        cfg = self.config
        best_path = self.out_dir / BEST
        if not best_path.exists():
            raise CheckpointError(f"{best_path} is missing although {self.out_dir / LAST_STATE_JSON} exists; "
                                  "rerun with --no-resume")
        loaded = load_checkpoint(best_path, device=str(self.device))
        metrics: dict[str, Any] = dict(loaded.card.metrics or {})
        metrics.setdefault("val", state["best_val"])
        metrics["best_epoch"] = state["best_epoch"]
        metrics["epochs"] = state["epoch"]
        metrics["stopped_early"] = state["stopped_early"]
        if "test" in datasets and "test" not in metrics:
            metrics["test"] = evaluate_model(loaded.model, self._loader(datasets["test"], train=False),
                                             device=self.device, desc="test", progress=cfg.progress)
            card = self._card(normalization, metrics, epoch=state["best_epoch"], patches=patches)
            self._save_model(best_path, loaded.model, card)
        self._write_history(state["history"])
        return TrainResult(best_checkpoint=best_path, metrics=metrics, history=list(state["history"]),
                           last_checkpoint=self.out_dir / LAST, stopped_early=bool(state["stopped_early"]))

    def _write_history(self, history: list[dict[str, Any]]) -> None:
        _atomic_write_text(self.out_dir / HISTORY_JSON, json.dumps(history, indent=1))
        if not history:
            return
        columns = list(dict.fromkeys(k for row in history for k in row))
        tmp = self.out_dir / f".{HISTORY_CSV}.tmp"
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)
        os.replace(tmp, self.out_dir / HISTORY_CSV)


def train(config: TrainConfig, *, on_epoch_end: EpochCallback | None = None) -> TrainResult:
    """Train a model as in paper IV-A and return the best checkpoint, its metrics and the per-epoch history.

    ``on_epoch_end(epoch, record)`` is called after each epoch has been saved (e.g. for experiment logging).
    """
    return Trainer(config, on_epoch_end=on_epoch_end).run()
