"""The training loop of paper section IV-A.

Adam (initial lr 1e-4), the poly schedule ``lr = lr0 * (1 - iter/max_iter)^0.9`` stepped every iteration, loss
eq. (11), validation MIoU after every epoch, early stopping after ``patience`` epochs without improvement, the best
(by validation MIoU) and the last checkpoint kept.

The run's files (``best``/``last`` checkpoints, the resume state, the history) and how they are saved and restored
belong to :class:`crofuse.training.checkpoints.CheckpointManager`; the run's progress is a typed
:class:`crofuse.training.state.TrainState`.

After the last epoch the best checkpoint is calibrated: one temperature per head is fitted on the validation split
(temperature scaling, Guo et al. 2017, :mod:`crofuse.calibration`) and stored in its card (``card.calibration``,
with the ECE and NLL before and after on val, and on test when there is a test split), so the maps made from it
hold calibrated probabilities. A validation split without labelled pixels leaves the card uncalibrated (logged).

The training set and the run directory may be ``s3://`` URLs: the patches are read from a local copy in
worker-local temporary space (:func:`crofuse.trainingset.local_training_set`, fetched once and keyed by the listing's
etags, so a rerun downloads nothing),
and every file of the run is uploaded whole as it is saved (:mod:`crofuse.training.checkpoints`); the card and the
resume key record the URL, not the copy.

Nothing is pickled: tensors go to safetensors, scalars to JSON. Every file is written atomically through
:mod:`crofuse.io.store` (a temporary name and a rename on disk, one PUT on S3), and ``last.state.json`` is written
last, so an interrupted save never looks finished. A rerun with
``resume=True`` continues after the last completed epoch; a finished run is not trained again. Randomness (model
init, shuffling, augmentation) is derived from ``(seed, epoch)``, so a resumed run follows the same path as an
uninterrupted one.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crofuse.errors import CheckpointError
from crofuse.io.store import canonical, location
from crofuse.training.checkpoints import CheckpointManager
from crofuse.training.config import TrainConfig
from crofuse.training.state import TrainState

if TYPE_CHECKING:

    from crofuse.checkpoint import ModelCard
    from crofuse.normalization import Normalization

EpochCallback = Callable[[int, dict[str, Any]], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`: the best checkpoint, its metrics (``val``, ``test``, ``best_epoch``...) and history."""

    best_checkpoint: Any  # a Path, or a crofuse.io.store.Location for an s3:// run directory
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: Any = None
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


def training_set_record(data_root: Path | str) -> dict[str, Any] | None:
    """What the model card records of a crofuse training set (``patches.json``): the composite recipe, the label
    source, the split and the city-years with their cube fingerprints. ``None`` for other folders (WHU-IS)."""
    from crofuse.trainingset import read_manifest

    manifest = read_manifest(data_root)
    if manifest is None:
        return None
    split = {k: v for k, v in manifest["split"].items() if k != "blocks"}
    return {
        "fingerprint": manifest.get("fingerprint"),
        "recipe": manifest.get("recipe"),
        "labels": manifest.get("labels"),
        "split": split,
        "city_years": [{k: c.get(k) for k in ("city", "year", "cube_fingerprint", "catalog")}
                       for c in manifest.get("city_years", [])],
        "counts": {s: len(v) for s, v in manifest.get("splits", {}).items()},
    }


# --------------------------------------------------------------------------------------------------------------


class Trainer:
    """One training run of :class:`TrainConfig` (paper IV-A); use :func:`train` unless you need the pieces."""

    def __init__(self, config: TrainConfig, *, on_epoch_end: EpochCallback | None = None) -> None:
        self.config = config
        self.on_epoch_end = on_epoch_end
        self.checkpoints = CheckpointManager(config.out_dir)
        self.out_dir = self.checkpoints.out_dir
        self.code_version = code_version()  # once per run, not per saved epoch
        self.training_set = training_set_record(config.data_root)
        self.data_source = canonical(config.data_root)  # what the card records: the path or the URL
        self._data_dir: Path | None = None

    @property
    def data_dir(self) -> Path:
        """The training set as a local folder (a local copy of an ``s3://`` one, fetched on first use)."""
        if self._data_dir is None:
            from crofuse.trainingset import local_training_set

            self._data_dir = local_training_set(self.config.data_root, progress=self.config.progress)
        return self._data_dir

    # ---- setup -------------------------------------------------------------------------------------------------

    def _datasets(self, normalization: Normalization) -> dict[str, Any]:
        from crofuse.data.patches import PatchDataset

        cfg = self.config
        common = {"normalization": normalization, "units": cfg.units, "max_patches": cfg.max_patches}
        root = self.data_dir
        datasets = {
            "train": PatchDataset(root, "train", augmentation=cfg.augmentation, seed=cfg.seed, **common),
            "val": PatchDataset(root, "val", **common),
        }
        if cfg.evaluate_test and (root / "test").is_dir():
            datasets["test"] = PatchDataset(root, "test", **common)
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
        training_set = self.training_set or {}
        return ModelCard(
            model=ModelSpec(cfg.model, dict(cfg.model_options)),
            optical_bands=list(OPTICAL_BANDS),
            sar_bands=list(SAR_BANDS),
            normalization=normalization,
            num_classes=2,
            training_data={
                "dataset_root": self.data_source,
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
                # the composite recipe, label source and split of a crofuse training set (None for other folders):
                # predict_cube compares the recipe with the cube it maps
                "recipe": training_set.get("recipe"),
                "labels": training_set.get("labels"),
                "split": training_set.get("split"),
                "training_set": training_set or None,
            },
            metrics=metrics,
            code_version=self.code_version,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

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
        state = self.checkpoints.load_state(cfg.resume_key()) if cfg.resume else None

        if state is not None:
            normalization = Normalization.from_dict(state.normalization)
        else:
            normalization = compute_normalization(self.data_dir, units=cfg.units, max_patches=cfg.max_patches,
                                                  progress=cfg.progress).with_mode(cfg.standardisation)
        datasets = self._datasets(normalization)
        self.patch_size = datasets["train"].patch_size
        patches = {split: len(ds) for split, ds in datasets.items()}
        self.checkpoints.out.mkdir()  # only once the data checked out (nothing to do on object storage)

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
            self.checkpoints.restore(state, model, optimizer, scheduler)
            model.to(self.device)
        else:
            state = TrainState(normalization=normalization.to_dict(), resume_key=cfg.resume_key(),
                               config=cfg.to_dict(), code_version=self.code_version)

        history = state.history
        epochs = tqdm(range(state.epoch + 1, cfg.max_epochs + 1), desc="train", unit="epoch",
                      initial=state.epoch, total=cfg.max_epochs, disable=not cfg.progress)
        for epoch in epochs if not state.finished else ():
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
                state.iteration += 1
            lr_now = optimizer.param_groups[0]["lr"]
            val = evaluate_model(model, self._loader(datasets["val"], train=False), device=self.device,
                                 desc=f"val {epoch}", progress=cfg.progress)
            record = {"epoch": epoch, "train_loss": loss_sum / seen if seen else float("nan"), "lr": lr_now,
                      "iteration": state.iteration, "seconds": round(time.perf_counter() - t0, 3),
                      **{f"val_{k}": v for k, v in val.items()}}
            history.append(record)
            score = val["miou"] if math.isfinite(val["miou"]) else -math.inf  # NaN: nothing labelled in val
            if state.improved(score, cfg.min_delta):
                state.best_miou, state.best_epoch, state.best_val = score, epoch, val
                state.epochs_without_improvement = 0
                best_card = self._card(normalization, {"val": val, "best_epoch": epoch}, epoch=epoch, patches=patches)
                self.checkpoints.save_best(model, best_card)
            else:
                state.epochs_without_improvement += 1
            state.epoch = epoch
            stop = state.epochs_without_improvement >= cfg.patience
            state.finished = stop or epoch == cfg.max_epochs
            state.stopped_early = stop
            last_card = self._card(normalization, {"val": val, "best_epoch": state.best_epoch}, epoch=epoch,
                                   patches=patches)
            self.checkpoints.save_last(model, optimizer, scheduler, last_card, state)
            self.checkpoints.write_history(history)
            epochs.set_postfix(loss=f"{record['train_loss']:.4f}", val_miou=f"{val['miou']:.4f}",
                               best=f"{state.best_miou:.4f}")
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, record)
            if stop:
                break
        epochs.close()

        return self._finish(state, normalization, patches, datasets)

    def _finish(self, state: TrainState, normalization: Normalization, patches: dict[str, int],
                datasets: dict[str, Any]) -> TrainResult:
        from dataclasses import replace

        from crofuse.checkpoint import load_checkpoint
        from crofuse.training.evaluate import run_evaluation

        cfg = self.config
        best_path = self.checkpoints.best
        if not location(best_path).is_file():
            raise CheckpointError(f"{best_path} is missing although the run's state in {self.out_dir} exists; "
                                  "rerun with --no-resume")
        loaded = load_checkpoint(best_path, device=str(self.device))
        metrics: dict[str, Any] = dict(loaded.card.metrics or {})
        metrics.setdefault("val", state.best_val)
        metrics["best_epoch"] = state.best_epoch
        metrics["epochs"] = state.epoch
        metrics["stopped_early"] = state.stopped_early
        calibration = loaded.card.calibration
        changed = False
        if calibration is None:  # a resumed, finished run keeps the calibration it already has
            calibration = self._calibrate(loaded.model, datasets["val"])
            changed = calibration is not None
        needs_test = "test" not in metrics or (calibration is not None and calibration.test is None)
        if "test" in datasets and needs_test:
            result = run_evaluation(loaded.model, self._loader(datasets["test"], train=False), device=self.device,
                                    temperature=calibration.temperature if calibration else 1.0,
                                    bins=calibration.bins if calibration else None, desc="test",
                                    progress=cfg.progress)
            metrics["test"] = result.metrics
            if calibration is not None:
                calibration = replace(calibration, test=result.calibration_figures())
            changed = True
        if changed:
            card = replace(self._card(normalization, metrics, epoch=state.best_epoch, patches=patches),
                           calibration=calibration)
            self.checkpoints.save_best(loaded.model, card)
        self.checkpoints.write_history(state.history)
        return TrainResult(best_checkpoint=best_path, metrics=metrics, history=list(state.history),
                           last_checkpoint=self.checkpoints.last, stopped_early=bool(state.stopped_early))

    def _calibrate(self, model: Any, val: Any) -> Any:
        """Temperature scaling of every head on the validation split (None, logged, when it cannot be fitted)."""
        from crofuse.errors import DataError
        from crofuse.training.evaluate import calibrate_model

        try:
            calibration = calibrate_model(model, self._loader(val, train=False), device=self.device, fitted_on="val",
                                          dataset=self.data_source,
                                          progress=self.config.progress)
        except DataError as exc:
            log.warning("the best checkpoint stays uncalibrated (maps will use T = 1): %s", exc)
            return None
        log.info("calibrated on val (%d pixels): T = %.4f, ECE %.4f -> %.4f, NLL %.4f -> %.4f", calibration.pixels,
                 calibration.temperature, calibration.ece_before, calibration.ece_after, calibration.nll_before,
                 calibration.nll_after)
        return calibration


def train(config: TrainConfig, *, on_epoch_end: EpochCallback | None = None) -> TrainResult:
    """Train a model as in paper IV-A and return the best checkpoint, its metrics and the per-epoch history.

    ``on_epoch_end(epoch, record)`` is called after each epoch has been saved (e.g. for experiment logging).
    """
    return Trainer(config, on_epoch_end=on_epoch_end).run()
