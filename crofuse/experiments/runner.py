"""Run a suite: for every method and seed, train (or reuse), evaluate, and write one JSON record.

Deep methods train with :func:`crofuse.training.train` (paper IV-A recipe, scaled by the profile) and are evaluated
on the test split of the source patch set; RF/SVM train on a seeded pixel sample and classify whole test patches.
Training outputs live in ``RESULTS/_runs/<run-id>/``, where the run id hashes everything that determines the trained
model (method, options, loss weights, profile, data, seed). A run shared by several suites (CroFuseNet is Table II's
last column, the ablation's case 5, the loss suite's proposed weights, the modality suite's fusion and the transfer
suite's model) is trained once and reused; its record says so (``reused``) and keeps the original training time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from crofuse.errors import ConfigError
from crofuse.experiments.data import SampleData, ServeCatalog
from crofuse.experiments.profiles import Profile, get_profile
from crofuse.experiments.records import SCHEMA, machine_info, record_path, write_json_atomic
from crofuse.experiments.suites import Method, Suite, get_suite, model_options

__all__ = ["RunContext", "evaluate_pixel_predictions", "run_method", "run_suite"]

RUN_MARKER = "experiment-run.json"
"""Written into a run folder when its training and source evaluation finished (metrics, timings)."""


@dataclass(frozen=True)
class RunContext:
    """Where a suite run reads and writes, and on what device."""

    out: Path
    profile: Profile
    data: SampleData
    source_root: Path
    device: str = "auto"
    progress: bool = True


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {seeds}")
        return list(range(seeds))
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and non-empty, got {seeds}")
    return seeds


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_id(method: Method, profile: Profile, source_root: Path, seed: int) -> str:
    key = {
        "kind": method.kind,
        "model": method.model,
        "options": model_options(method, profile) if method.kind == "deep" else {},
        "alpha": method.alpha if method.kind == "deep" else None,
        "beta": method.beta if method.kind == "deep" else None,
        # threads change speed, not the model: a run is the same run whatever thread count trained it
        "profile": {k: v for k, v in profile.to_dict().items() if k != "torch_threads"},
        "data": str(source_root.resolve()),
        "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{method.model}-{digest}-seed{seed}"


# ---- per-pixel baselines -------------------------------------------------------------------------------------------


def evaluate_pixel_predictions(predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Eqs. (13)-(17) from class maps and labels of the same patches (nodata labels and predictions skipped)."""
    from crofuse import NODATA_LABEL
    from crofuse.metrics import metrics_from_confusion

    cm = np.zeros((2, 2), dtype=np.int64)
    for name, pred in predictions.items():
        label = labels[name]
        ok = (label != NODATA_LABEL) & (pred != NODATA_LABEL)
        cm += np.bincount(label[ok].astype(np.int64) * 2 + pred[ok], minlength=4).reshape(2, 2)
    return metrics_from_confusion(cm)


def _train_pixel(method: Method, ctx: RunContext, seed: int, run_dir: Path) -> dict[str, Any]:
    from crofuse.baselines import PixelClassifierConfig, iter_patches, train_pixel_classifier

    profile = ctx.profile
    n_samples = profile.rf_samples if method.model == "rf" else profile.svm_samples
    config = PixelClassifierConfig(method=method.model, n_samples=n_samples, seed=seed, rf_trees=profile.rf_trees,
                                   n_jobs=profile.torch_threads or 1)
    t0 = time.perf_counter()
    clf = train_pixel_classifier(ctx.source_root, config, max_patches=profile.max_patches)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    names, preds, labels = [], {}, {}
    for i, (name, optical, sar, label) in enumerate(iter_patches(ctx.source_root, "test")):
        if profile.max_patches is not None and i >= profile.max_patches:
            break
        names.append(name)
        preds[name] = clf.predict_patch(optical, sar)
        labels[name] = label
    metrics = evaluate_pixel_predictions(preds, labels)
    eval_s = time.perf_counter() - t1
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".test_predictions.tmp.npz"
    np.savez_compressed(tmp, names=np.array(names), maps=np.stack([preds[n] for n in names]))
    tmp.replace(run_dir / "test_predictions.npz")
    return {
        "metrics": metrics,
        "val_metrics": {},
        "train": {"kind": "pixel", "classifier": clf.describe()},
        "timings": {"train_s": train_s, "eval_s": eval_s},
        "artifacts": {"predictions": "test_predictions.npz", "checkpoint": None},
    }


# ---- deep methods --------------------------------------------------------------------------------------------------


def _train_deep(method: Method, ctx: RunContext, seed: int, run_dir: Path) -> dict[str, Any]:
    from crofuse.training import TrainConfig, train

    profile = ctx.profile
    config = TrainConfig(
        data_root=ctx.source_root,
        out_dir=run_dir,
        model=method.model,
        model_options=model_options(method, profile),
        alpha=method.alpha,
        beta=method.beta,
        lr=profile.lr,
        batch_size=profile.batch_size,
        max_epochs=profile.epochs,
        patience=profile.patience,
        seed=seed,
        device=ctx.device,
        max_patches=profile.max_patches,
        limit_batches=profile.limit_batches,
        eval_batch_size=profile.eval_batch_size,
        progress=ctx.progress,
    )
    t0 = time.perf_counter()
    result = train(config)
    total = time.perf_counter() - t0
    test = result.metrics.get("test") or {}
    return {
        "metrics": dict(test),
        "val_metrics": dict(result.metrics.get("val") or {}),
        "train": {
            "kind": "deep",
            "model": method.model,
            "options": model_options(method, profile),
            "alpha": method.alpha,
            "beta": method.beta,
            "config": config.to_dict(),
            "best_epoch": result.metrics.get("best_epoch"),
            "epochs": result.metrics.get("epochs"),
            "stopped_early": result.stopped_early,
            "history": result.history,
        },
        "timings": {"train_s": total, "eval_s": None},
        "artifacts": {"checkpoint": result.best_checkpoint.name, "predictions": None},
    }


def run_method(method: Method, ctx: RunContext, seed: int) -> tuple[dict[str, Any], Path, bool]:
    """Train and evaluate ``method`` with ``seed`` on the source patch set, or reuse a finished identical run.

    Returns ``(outcome, run_dir, reused)``; the outcome holds metrics, training details, timings and artefacts.
    """
    run_dir = ctx.out / "_runs" / _run_id(method, ctx.profile, ctx.source_root, seed)
    marker = run_dir / RUN_MARKER
    if marker.exists():
        return json.loads(marker.read_text()), run_dir, True
    with _torch_threads(ctx.profile.torch_threads):
        import torch

        torch.manual_seed(seed)
        outcome = _train_pixel(method, ctx, seed, run_dir) if method.kind == "pixel" else _train_deep(
            method, ctx, seed, run_dir
        )
    write_json_atomic(marker, outcome)
    return outcome, run_dir, False


def _transfer_domains(ctx: RunContext, checkpoint: Path) -> dict[str, Any]:
    """Evaluate a source-trained checkpoint on the test split of the other city and of the next year (paper V-C)."""
    from crofuse.training import evaluate_checkpoint

    profile = ctx.profile
    out: dict[str, Any] = {}
    for name, domain in (("spatial", profile.spatial_target), ("temporal", profile.temporal_target)):
        root = ctx.data.patch_set(domain)
        t0 = time.perf_counter()
        with _torch_threads(profile.torch_threads):
            metrics = evaluate_checkpoint(checkpoint, root, "test", batch_size=profile.eval_batch_size,
                                          device=ctx.device, max_patches=profile.max_patches)
        out[name] = {"name": f"{domain.city} {domain.year}", "city": domain.city, "year": domain.year,
                     "dataset": str(root), "metrics": metrics, "eval_s": time.perf_counter() - t0}
    return out


def with_training_length(profile: Profile, *, epochs: int | None = None, patience: int | None = None) -> Profile:
    """``profile`` with another epoch budget and/or early-stopping patience, renamed to say so."""
    changes = {k: v for k, v in (("epochs", epochs), ("patience", patience)) if v is not None}
    if not changes:
        return profile
    label = ",".join(f"{k}={v}" for k, v in changes.items())
    return profile.with_changes(name=f"{profile.name}[{label}]", **changes)


def run_suite(
    suite: str | Suite,
    *,
    profile: str | Profile,
    seeds: int | Sequence[int] = 3,
    out: Path | str,
    methods: Sequence[str] | None = None,
    data_dir: Path | str | None = None,
    source_root: Path | str | None = None,
    device: str = "auto",
    threads: int | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    force: bool = False,
    progress: bool = True,
    serve: ServeCatalog | None = None,
    catalog_url: str | None = None,
) -> list[Path]:
    """Run ``suite`` under ``profile`` for ``seeds`` (a count: seeds 0..n-1, or explicit seeds) into ``out``.

    ``methods`` restricts the suite to some method keys. ``data_dir`` holds the sample catalog and the patch sets
    built from it through STAC (default ``out/_data``; :class:`crofuse.experiments.data.SampleData`): ``serve``
    serves the sample catalog while patch sets are built (``infra.stac.StacServer``), or ``catalog_url`` names a
    STAC API that already serves it. ``source_root`` replaces the generated source patch set with an existing WHU-IS style folder
    (e.g. the real WHU-IS); the transfer suite still generates its target domains. ``threads`` overrides the
    profile's torch thread count (use 1 on a machine shared with other jobs: two threads contending for busy cores
    run many times slower). ``epochs``/``patience`` override the profile's training length; the profile is then
    renamed (``cpu-small[epochs=60]``), so its records and tables never pass for the plain profile's. Existing
    records are kept unless ``force``. Returns the record paths, in method then seed order.
    """
    suite = get_suite(suite) if isinstance(suite, str) else suite
    profile = get_profile(profile) if isinstance(profile, str) else profile
    if threads is not None:
        profile = profile.with_changes(torch_threads=threads)
    profile = with_training_length(profile, epochs=epochs, patience=patience)
    seed_list = _seeds(seeds)
    chosen = list(suite.methods) if methods is None else [suite.method(k) for k in methods]
    out = Path(out)
    data_dir = Path(data_dir) if data_dir is not None else out / "_data"
    with SampleData(data_dir, profile, serve=serve, catalog_url=catalog_url, progress=progress) as data:
        source = Path(source_root) if source_root is not None else data.patch_set(profile.source)
        ctx = RunContext(out=out, profile=profile, data=data, source_root=source, device=device, progress=progress)
        return _run_jobs(suite, ctx, chosen, seed_list, force=force)


def _run_jobs(suite: Suite, ctx: RunContext, chosen: list[Method], seed_list: list[int], *, force: bool) -> list[Path]:
    from tqdm.auto import tqdm

    out, profile, source, progress = ctx.out, ctx.profile, ctx.source_root, ctx.progress
    machine = machine_info()
    paths: list[Path] = []
    jobs = [(m, s) for m in chosen for s in seed_list]
    for method, seed in tqdm(jobs, desc=f"suite {suite.name}", unit="run", disable=not progress):
        path = record_path(out, suite.name, method.key, seed)
        paths.append(path)
        if path.exists() and not force:
            continue
        t0 = time.perf_counter()
        if force:  # redo the training too, not only the record
            shutil.rmtree(out / "_runs" / _run_id(method, profile, source, seed), ignore_errors=True)
        outcome, run_dir, reused = run_method(method, ctx, seed)
        domains: dict[str, Any] = {}
        if suite.name == "transfer":
            checkpoint = run_dir / str(outcome["artifacts"]["checkpoint"])
            domains = _transfer_domains(ctx, checkpoint)
        timings = dict(outcome["timings"])
        timings["this_call_s"] = time.perf_counter() - t0
        timings["total_s"] = float(timings.get("train_s") or 0.0) + float(timings.get("eval_s") or 0.0) + sum(
            float(d["eval_s"]) for d in domains.values()
        )
        record = {
            "schema": SCHEMA,
            "suite": suite.name,
            "method": method.key,
            "label": method.label,
            "seed": seed,
            "profile": profile.to_dict(),
            "source": {"city": profile.source.city, "year": profile.source.year, "dataset": str(source)},
            "metrics": outcome["metrics"],
            "val_metrics": outcome.get("val_metrics", {}),
            "domains": domains,
            "paper": method.paper,
            "train": outcome["train"],
            "timings": timings,
            "artifacts": {**outcome["artifacts"], "run_dir": str(run_dir.relative_to(out))},
            "reused": reused,
            "machine": machine,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json_atomic(path, record)
    return paths
