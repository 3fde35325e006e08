"""Run a suite: for every method and seed, train (or reuse), evaluate, and write one JSON record.

Deep methods train with :func:`crofuse.training.train` (paper IV-A recipe, scaled by the profile; early stopping on
the validation MIoU) and are evaluated on the test split; RF/SVM train on a seeded pixel sample and classify whole
test patches. Training outputs live in ``RESULTS/_runs/<run-id>/``, where the run id hashes everything that
determines the trained model (method, options, loss weights, input standardisation, augmentation, profile, data,
seed). A run shared by several suites (CroFuseNet is Table II's last column, the ablation's case 5, the loss
suite's proposed weights, the modality suite's fusion and the transfer suite's model) is trained once and reused;
its record says so (``reused``) and keeps the original training time.

Records go to ``RESULTS/<split>/<suite>/<method>/seed<k>.json``. A rerun skips every record that exists, and
training resumes after its last finished epoch, so a long program can be spread over several sittings.

The leave-one-city-out suite (``loco``) trains, per method and seed, one model on every city (the in-domain
reference) and one per held-out city on the others, and tests each on the held-out city's test split
(:meth:`crofuse.experiments.data.SampleData.combined`).
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
from crofuse.experiments.profiles import Domain, Profile, get_profile
from crofuse.experiments.records import SCHEMA, machine_info, record_path, write_json_atomic
from crofuse.experiments.suites import PROGRAM, Method, Suite, get_suite, model_options, parameter_count

__all__ = ["EXTERNAL_SPLIT", "RunContext", "evaluate_pixel_predictions", "run_method", "run_program", "run_suite",
           "with_training_length"]

RUN_MARKER = "experiment-run.json"
"""Written into a run folder when its training and test evaluation finished (metrics, timings)."""

EXTERNAL_SPLIT = "external"
"""The split name of runs on a given ``source_root`` (e.g. the real WHU-IS): its own train/val/test folders."""


@dataclass(frozen=True)
class RunContext:
    """Where a suite run reads and writes, on which split, and on what device."""

    out: Path
    profile: Profile
    data: SampleData
    split: str
    suite: Suite
    source_root: Path | None = None
    device: str = "auto"
    progress: bool = True

    def source(self) -> Path:
        """The single-city patch set (or the given ``source_root``)."""
        if self.source_root is not None:
            return self.source_root
        return self.data.patch_set(self.profile.source, self.split)


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


def _augmentation(method: Method) -> Any:
    from crofuse.data import Augmentation

    return Augmentation.from_dict({**Augmentation().to_dict(), **method.augmentation})


def _run_id(method: Method, profile: Profile, data_root: Path, seed: int, *, suite: Suite | None = None,
            limit_batches: int | None = None) -> str:
    deep = method.kind == "deep"
    key = {
        "kind": method.kind,
        "model": method.model,
        "options": model_options(method, profile, suite) if deep else {},
        "alpha": method.alpha if deep else None,
        "beta": method.beta if deep else None,
        # threads change speed, not the model: a run is the same run whatever thread count trained it
        "profile": {k: v for k, v in profile.to_dict().items() if k != "torch_threads"},
        "data": str(Path(data_root).resolve()),
        "seed": seed,
    }
    if deep and method.standardisation != "dataset":
        key["standardisation"] = method.standardisation
    if deep and method.augmentation:
        key["augmentation"] = dict(sorted(method.augmentation.items()))
    if not deep:
        key["features"] = method.features
    if limit_batches != profile.limit_batches:
        key["limit_batches"] = limit_batches
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


def _train_pixel(method: Method, ctx: RunContext, seed: int, data_root: Path, run_dir: Path) -> dict[str, Any]:
    from crofuse.baselines import PixelClassifierConfig, iter_patches, train_pixel_classifier

    profile = ctx.profile
    n_samples = profile.rf_samples if method.model == "rf" else profile.svm_samples
    config = PixelClassifierConfig(method=method.model, n_samples=n_samples, seed=seed, rf_trees=profile.rf_trees,
                                   n_jobs=profile.torch_threads or 1, features=method.features)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    clf = train_pixel_classifier(data_root, config, max_patches=profile.max_patches)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    names, preds, labels = [], {}, {}
    for i, (name, optical, sar, label) in enumerate(iter_patches(data_root, "test")):
        if profile.max_patches is not None and i >= profile.max_patches:
            break
        names.append(name)
        preds[name] = clf.predict_patch(optical, sar)
        labels[name] = label
    metrics = evaluate_pixel_predictions(preds, labels)
    eval_s = time.perf_counter() - t1
    run_dir.mkdir(parents=True, exist_ok=True)
    from crofuse.io.store import atomic_file

    with atomic_file(run_dir / "test_predictions.npz") as tmp:  # the one atomic write (crofuse.io.store)
        np.savez_compressed(tmp, names=np.array(names), maps=np.stack([preds[n] for n in names]))
    return {
        "metrics": metrics,
        "val_metrics": {},
        "train": {"kind": "pixel", "features": method.features, "classifier": clf.describe()},
        "timings": {"train_s": train_s, "eval_s": eval_s},
        "artifacts": {"predictions": "test_predictions.npz", "checkpoint": None},
    }


# ---- deep methods --------------------------------------------------------------------------------------------------


def _train_deep(method: Method, ctx: RunContext, seed: int, data_root: Path, run_dir: Path,
                limit_batches: int | None) -> dict[str, Any]:
    from crofuse.training import TrainConfig, train

    profile = ctx.profile
    options = model_options(method, profile, ctx.suite)
    config = TrainConfig(
        data_root=data_root,
        out_dir=run_dir,
        model=method.model,
        model_options=options,
        alpha=method.alpha,
        beta=method.beta,
        lr=profile.lr,
        batch_size=profile.batch_size,
        max_epochs=profile.epochs,
        patience=profile.patience,
        min_delta=profile.min_delta,
        seed=seed,
        device=ctx.device,
        max_patches=profile.max_patches,
        limit_batches=limit_batches,
        eval_batch_size=profile.eval_batch_size,
        augmentation=_augmentation(method),
        standardisation=method.standardisation,
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
            "options": options,
            "parameters": parameter_count(method.model, options),
            "alpha": method.alpha,
            "beta": method.beta,
            "standardisation": method.standardisation,
            "augmentation": config.augmentation.to_dict() if config.augmentation else None,
            "config": config.to_dict(),
            "best_epoch": result.metrics.get("best_epoch"),
            "epochs": result.metrics.get("epochs"),
            "max_epochs": profile.epochs,
            "patience": profile.patience,
            "min_delta": profile.min_delta,
            "stopped_early": result.stopped_early,
            "history": result.history,
        },
        "timings": {"train_s": total, "eval_s": None},
        "artifacts": {"checkpoint": result.best_checkpoint.name, "predictions": None},
    }


def run_method(method: Method, ctx: RunContext, seed: int, data_root: Path | None = None, *,
               limit_batches: int | None = None, multi_city: bool = False) -> tuple[dict[str, Any], Path, bool]:
    """Train and evaluate ``method`` with ``seed`` on ``data_root`` (default: the source patch set), or reuse a
    finished identical run. ``multi_city`` uses the profile's ``multi_city_limit_batches``.

    Returns ``(outcome, run_dir, reused)``; the outcome holds metrics, training details, timings and artefacts.
    """
    data_root = Path(data_root) if data_root is not None else ctx.source()
    if limit_batches is None:
        limit_batches = (ctx.profile.multi_city_limit_batches if multi_city else None) or ctx.profile.limit_batches
    run_dir = ctx.out / "_runs" / _run_id(method, ctx.profile, data_root, seed, suite=ctx.suite,
                                          limit_batches=limit_batches)
    marker = run_dir / RUN_MARKER
    if marker.exists():
        return json.loads(marker.read_text()), run_dir, True
    with _torch_threads(ctx.profile.torch_threads):
        import torch

        torch.manual_seed(seed)
        if method.kind == "pixel":
            outcome = _train_pixel(method, ctx, seed, data_root, run_dir)
        else:
            outcome = _train_deep(method, ctx, seed, data_root, run_dir, limit_batches)
    write_json_atomic(marker, outcome)
    return outcome, run_dir, False


def _evaluate(ctx: RunContext, checkpoint: Path, root: Path) -> tuple[dict[str, float], float]:
    from crofuse.training import evaluate_checkpoint

    t0 = time.perf_counter()
    with _torch_threads(ctx.profile.torch_threads):
        metrics = evaluate_checkpoint(checkpoint, root, "test", batch_size=ctx.profile.eval_batch_size,
                                      device=ctx.device, max_patches=ctx.profile.max_patches)
    return metrics, time.perf_counter() - t0


def _training_summary(outcome: dict[str, Any]) -> dict[str, Any]:
    train = outcome.get("train") or {}
    return {k: train.get(k) for k in ("best_epoch", "epochs", "max_epochs", "stopped_early", "parameters")}


# ---- what each suite does beyond train + test ------------------------------------------------------------------------


def transfer_targets(profile: Profile) -> list[tuple[str, Domain]]:
    """The transfer suite's targets (paper V-C): every other city in the source year (spatial) and the source city
    in ``temporal_year`` (temporal)."""
    source = profile.source
    targets = [("spatial", Domain(c, source.year)) for c in profile.city_names() if c != source.city]
    if profile.temporal_year is not None:
        targets.append(("temporal", Domain(source.city, profile.temporal_year)))
    return targets


def _transfer_domains(ctx: RunContext, checkpoint: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, domain in transfer_targets(ctx.profile):
        root = ctx.data.patch_set(domain, ctx.split)
        metrics, seconds = _evaluate(ctx, checkpoint, root)
        out[domain.slug] = {"kind": kind, "name": f"{domain.city} {domain.year}", "city": domain.city,
                            "year": domain.year, "dataset": str(root), "metrics": metrics, "eval_s": seconds}
    return out


def _loco(method: Method, ctx: RunContext, seed: int) -> tuple[dict[str, Any], Path, bool, dict[str, Any]]:
    """The all-city model and one model per held-out city; per city: held-out and in-domain test metrics."""
    profile = ctx.profile
    cities = profile.city_names()
    if len(cities) < 2:
        raise ConfigError(f"leave-one-city-out needs at least two cities, the profile has {list(cities)}")
    year = profile.source.year
    roots = {c: ctx.data.patch_set(Domain(c, year), ctx.split) for c in cities}

    def union(split: str, names: Sequence[str]) -> list[tuple[Path, str]]:
        return [(roots[c], split) for c in names]

    everyone = ctx.data.combined(f"loco-all-{ctx.split}", {s: union(s, cities) for s in ("train", "val", "test")})
    ref, ref_dir, ref_reused = run_method(method, ctx, seed, everyone, multi_city=True)
    ref_ckpt = ref_dir / str(ref["artifacts"]["checkpoint"])
    domains: dict[str, Any] = {}
    reused = ref_reused
    train_s = float(ref["timings"].get("train_s") or 0.0)
    for held in cities:
        others = [c for c in cities if c != held]
        fold_root = ctx.data.combined(f"loco-{held}-{ctx.split}", {"train": union("train", others),
                                                                   "val": union("val", others),
                                                                   "test": union("test", [held])})
        fold, fold_dir, fold_reused = run_method(method, ctx, seed, fold_root, multi_city=True)
        in_domain, eval_s = _evaluate(ctx, ref_ckpt, roots[held])
        reused &= fold_reused
        train_s += float(fold["timings"].get("train_s") or 0.0)
        domains[Domain(held, year).slug] = {
            "kind": "held-out", "name": f"{held} {year}", "city": held, "year": year, "dataset": str(roots[held]),
            "trained_on": others, "metrics": fold["metrics"], "in_domain": in_domain,
            "run_dir": str(fold_dir.relative_to(ctx.out)), "train": _training_summary(fold),
            "train_s": fold["timings"].get("train_s"), "eval_s": eval_s,
        }
    outcome = {**ref, "timings": {**ref["timings"], "train_s": train_s}}
    outcome["train"] = {**ref["train"], "cities": list(cities)}
    return outcome, ref_dir, reused, domains


# ---- suites ----------------------------------------------------------------------------------------------------------


def with_training_length(profile: Profile, *, epochs: int | None = None, patience: int | None = None) -> Profile:
    """``profile`` with another epoch budget and/or early-stopping patience, renamed to say so."""
    changes = {k: v for k, v in (("epochs", epochs), ("patience", patience)) if v is not None}
    if not changes:
        return profile
    label = ",".join(f"{k}={v}" for k, v in changes.items())
    return profile.with_changes(name=f"{profile.name}[{label}]", **changes)


def _resolve_profile(profile: str | Profile, threads: int | None, epochs: int | None,
                     patience: int | None) -> Profile:
    profile = get_profile(profile) if isinstance(profile, str) else profile
    if threads is not None:
        profile = profile.with_changes(torch_threads=threads)
    return with_training_length(profile, epochs=epochs, patience=patience)


def run_suite(
    suite: str | Suite,
    *,
    profile: str | Profile,
    seeds: int | Sequence[int] = 3,
    out: Path | str,
    split: str = "blocked",
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
    """Run ``suite`` under ``profile`` on ``split`` for ``seeds`` (a count: seeds 0..n-1, or explicit seeds).

    ``methods`` restricts the suite to some method keys (default: every method but the optional ones).
    ``data_dir`` holds the sample catalog and the patch sets built from it through STAC (default ``out/_data``;
    :class:`crofuse.experiments.data.SampleData`): ``serve`` serves the sample catalog while patch sets are built
    (``infra.stac.StacServer``), or ``catalog_url`` names a STAC API that already serves it. ``source_root``
    replaces the generated source patch set with an existing WHU-IS style folder (e.g. the real WHU-IS; split
    ``external``; not for the transfer and leave-one-city-out suites). ``threads`` overrides the profile's torch
    thread count (use 1 on a machine shared with other jobs). ``epochs``/``patience`` override the profile's
    training length; the profile is then renamed (``cpu-small[epochs=60]``), so its records and tables never pass
    for the plain profile's. Existing records are kept unless ``force``. Returns the record paths, in method then
    seed order.
    """
    suite = get_suite(suite) if isinstance(suite, str) else suite
    profile = _resolve_profile(profile, threads, epochs, patience)
    seed_list = _seeds(seeds)
    chosen = list(suite.default_methods) if methods is None else [suite.method(k) for k in methods]
    if source_root is not None:
        if suite.name in ("transfer", "loco"):
            raise ConfigError(f"the {suite.name} suite runs on the sample cities; it takes no --source-root")
        split = EXTERNAL_SPLIT
    else:
        profile.data.training_set_fields(split)  # validates the split name
    out = Path(out)
    data_dir = Path(data_dir) if data_dir is not None else out / "_data"
    with SampleData(data_dir, profile, serve=serve, catalog_url=catalog_url, progress=progress) as data:
        ctx = RunContext(out=out, profile=profile, data=data, split=split, suite=suite,
                         source_root=Path(source_root) if source_root is not None else None, device=device,
                         progress=progress)
        return _run_jobs(ctx, chosen, seed_list, force=force)


def run_program(*, profile: str | Profile, seeds: int | Sequence[int] = 3, out: Path | str,
                stages: Sequence[int] | None = None, **kwargs: Any) -> list[Path]:
    """Run :data:`~crofuse.experiments.suites.PROGRAM` in its order (or only the stages with the given 0-based
    indices); finished records are skipped, so this resumes a program spread over several sittings."""
    paths: list[Path] = []
    for i, (suite, split, methods) in enumerate(PROGRAM):
        if stages is not None and i not in stages:
            continue
        paths += run_suite(suite, profile=profile, seeds=seeds, out=out, split=split, methods=methods, **kwargs)
    return paths


def _run_jobs(ctx: RunContext, chosen: list[Method], seed_list: list[int], *, force: bool) -> list[Path]:
    from tqdm.auto import tqdm

    out, profile, suite = ctx.out, ctx.profile, ctx.suite
    machine = machine_info()
    paths: list[Path] = []
    jobs = [(m, s) for m in chosen for s in seed_list]
    for method, seed in tqdm(jobs, desc=f"suite {suite.name} ({ctx.split})", unit="run", disable=not ctx.progress):
        path = record_path(out, ctx.split, suite.name, method.key, seed)
        paths.append(path)
        if path.exists() and not force:
            continue
        t0 = time.perf_counter()
        if force and suite.name != "loco":  # redo the training too, not only the record
            shutil.rmtree(out / "_runs" / _run_id(method, profile, ctx.source(), seed, suite=suite,
                                                  limit_batches=profile.limit_batches), ignore_errors=True)
        domains: dict[str, Any] = {}
        extra_eval_s = 0.0
        if suite.name == "loco":
            outcome, run_dir, reused, domains = _loco(method, ctx, seed)
            extra_eval_s = sum(float(d["eval_s"]) for d in domains.values())
            source = {"cities": list(profile.city_names()), "year": profile.source.year,
                      "dataset": str(run_dir.relative_to(out))}
        else:
            outcome, run_dir, reused = run_method(method, ctx, seed)
            if suite.name == "transfer":
                domains = _transfer_domains(ctx, run_dir / str(outcome["artifacts"]["checkpoint"]))
                extra_eval_s = sum(float(d["eval_s"]) for d in domains.values())
            source = {"city": profile.source.city, "year": profile.source.year, "dataset": str(ctx.source())}
        timings = dict(outcome["timings"])
        timings["this_call_s"] = time.perf_counter() - t0
        timings["total_s"] = float(timings.get("train_s") or 0.0) + float(timings.get("eval_s") or 0.0) + extra_eval_s
        record = {
            "schema": SCHEMA,
            "suite": suite.name,
            "split": ctx.split,
            "method": method.key,
            "label": method.label,
            "role": method.role,
            "control_of": method.control_of,
            "seed": seed,
            "profile": profile.to_dict(),
            "source": source,
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
