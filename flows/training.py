"""Flows ``build-training-set`` and ``train-model``: a training set from STAC, then a checkpoint trained on it.

    build-training-set:  per city-year: cube + labels (network tasks, retried)  ->  split  ->  patches  ->  manifest
    train-model:         crofuse.training.train on a training set folder (paper IV-A recipe, sized by parameters)

Both are thin: every task calls :mod:`crofuse.trainingset` or :mod:`crofuse.training`. Deployed from
``prefect.yaml`` next to ``map-city``::

    prefect deployment run build-training-set/build-training-set -p cities_file=infra/cities.yaml -p years='[2021,2022]'
    prefect deployment run train-model/train-model -p training_set=demo-output/training-set -p out=runs/m1
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from pydantic import Field

from flows.params import DEFAULT_CATALOG
from flows.tasks import local_task, network_task

Years = Annotated[list[Annotated[int, Field(ge=2015, le=2100)]], Field(min_length=1)]
DEFAULT_TRAINING_SET = "demo-output/training-set"


@network_task(name="prepare-city-year")
def prepare_task(config: Any, city: Any, year: int) -> Any:
    """The city-year's cube (the ``map-city`` composite) and its labels on the cube grid."""
    from crofuse.trainingset import prepare_city_year

    prepared = prepare_city_year(config, city, year)
    get_run_logger().info("%s %s: cube %s, labels %s (coverage %.1f%%)", prepared.city, year, prepared.cube.name,
                          prepared.label_provenance["source"], 100 * prepared.label_provenance["coverage"])
    return prepared


@local_task(name="plan-split")
def plan_task(config: Any, prepared: list[Any]) -> Any:
    """Windows and the split over every city-year (mostly ignored patches dropped after the split)."""
    from crofuse.trainingset import plan_training_set

    plan = plan_training_set(config, prepared)
    get_run_logger().info("split %s: %s patches, %s dropped, %d val/test pixels inside a training patch",
                          config.split, plan.counts(), plan.dropped, plan.leaked_pixels)
    return plan


@local_task(name="write-patches")
def write_task(config: Any, plan: Any, prepared: Any) -> dict[str, Any]:
    """The patches of one city-year (skipped when already written with the same plan)."""
    from crofuse.trainingset import write_city_year

    return write_city_year(config, plan, prepared)


@local_task(name="write-manifest")
def finish_task(config: Any, prepared: list[Any], plan: Any, written: list[dict[str, Any]]) -> Any:
    from crofuse.trainingset import finish_training_set

    return finish_training_set(config, prepared, plan, written)


def _summary_artifact(summary: Any, config: Any) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [{"split": s, "patches": summary.counts[s], "impervious_fraction": round(summary.impervious_fraction[s], 4),
             "dropped": summary.dropped.get(s, 0)} for s in ("train", "val", "test")]
    create_table_artifact(key="training-set", table=rows,
                          description=f"Training set {summary.root}: split {config.split}, labels {config.labels}; "
                                      f"{summary.leaked_pixels} val/test pixels inside a training patch")


@flow(name="build-training-set", log_prints=True, validate_parameters=True)
def build_training_set_flow(
    cities_file: str,
    years: Years,
    out: str = DEFAULT_TRAINING_SET,
    catalog: str = DEFAULT_CATALOG,
    labels: str = "sample",
    nearest_year: bool = False,
    split: Literal["blocked", "random", "by-city"] = "blocked",
    block_km: Annotated[float, Field(gt=0)] = 2.56,
    patch_size: Annotated[int, Field(ge=16)] = 128,
    stride: Annotated[int, Field(ge=1)] = 80,
    seed: int = 0,
    season: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build a training set from STAC for every city of ``cities_file`` and every year (``crofuse.trainingset``).

    Args:
        cities_file: YAML or GeoJSON cities file (``infra/cities.yaml`` is an example).
        years: years to build, e.g. ``[2021, 2022]``.
        out: the training set's folder (relative paths: the worker's repository checkout).
        catalog: STAC API of the scenes and of STAC label sources.
        labels: ``sample``, ``esa-worldcover``, ``io-lulc``, or a label file/definition on the worker.
        nearest_year: use a label source's nearest year when it has none for a city-year.
        split, block_km, patch_size, stride, seed: the split and windows (docs/training-sets.md).
        season: compositing window ``MM-DD/MM-DD`` (default June, as ``map-city``).
        overwrite: replace a training set built with other settings in ``out``.
    """
    from crofuse.cities import read_cities_file
    from crofuse.trainingset import start_training_set, training_set_config

    log = get_run_logger()
    config = training_set_config(
        out=out, cities=read_cities_file(cities_file), years=years, catalog=catalog, labels=labels,
        nearest_year=nearest_year, split=split, block_km=block_km, patch_size=patch_size, stride=stride, seed=seed,
        cube={"season": season} if season else {},
    )
    started = time.perf_counter()
    summary = start_training_set(config, overwrite=overwrite)
    if summary is None:
        prepared = [prepare_task(config, city, year) for city in config.cities for year in config.years]
        plan = plan_task(config, prepared)
        written = [write_task(config, plan, p) for p in prepared]
        summary = finish_task(config, prepared, plan, written)
    else:
        log.info("%s is already complete with these settings: nothing to do", summary.root)
    _summary_artifact(summary, config)
    log.info("\n".join(summary.lines()))
    return {"root": str(summary.root), "counts": summary.counts, "dropped": summary.dropped,
            "leaked_pixels": summary.leaked_pixels, "reused": summary.reused,
            "seconds": round(time.perf_counter() - started, 3)}


@local_task(name="train")
def train_task(config: Any) -> dict[str, Any]:
    from crofuse.training import train

    result = train(config)
    return {"best_checkpoint": str(result.best_checkpoint), "best_epoch": result.metrics.get("best_epoch"),
            "epochs": result.metrics.get("epochs"), "stopped_early": result.stopped_early,
            "val": result.metrics.get("val"), "test": result.metrics.get("test")}


@flow(name="train-model", log_prints=True, validate_parameters=True)
def train_model_flow(
    training_set: str,
    out: str,
    model: str = "crofusenet",
    base_channels: Annotated[int | None, Field(ge=1)] = None,
    head_relu: bool | None = None,
    epochs: Annotated[int, Field(ge=1)] = 400,
    patience: Annotated[int, Field(ge=1)] = 50,
    batch_size: Annotated[int, Field(ge=1)] = 32,
    lr: Annotated[float, Field(gt=0)] = 1e-4,
    max_patches: Annotated[int | None, Field(ge=1)] = None,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Train a model on a training set (paper IV-A recipe by default; ``crofuse.training.train``).

    The checkpoint's card records the training set's composite recipe, label source and split, so ``map-city``
    can check that it maps cubes made the same way.
    """
    from prefect.artifacts import create_markdown_artifact

    from crofuse.training import TrainConfig

    options: dict[str, Any] = {}
    if base_channels is not None:
        options["base_channels"] = base_channels
    if head_relu is not None:
        options["head_relu"] = head_relu
    config = TrainConfig(data_root=training_set, out_dir=out, model=model, model_options=options, max_epochs=epochs,
                         patience=patience, batch_size=batch_size, lr=lr, max_patches=max_patches, seed=seed,
                         device=device, progress=False)
    result = train_task(config)
    val, test = result.get("val") or {}, result.get("test") or {}
    create_markdown_artifact(
        key="train-model",
        markdown=(f"# {model} on {training_set}\n\nbest checkpoint: `{result['best_checkpoint']}` (epoch "
                  f"{result['best_epoch']} of {result['epochs']})\n\n| split | MIoU | OA | F1 |\n|---|---|---|---|\n"
                  + "".join(f"| {name} | {m.get('miou', float('nan')):.4f} | {m.get('oa', float('nan')):.4f} | "
                            f"{m.get('mean_f1', float('nan')):.4f} |\n" for name, m in (("val", val), ("test", test)))),
        description="train-model result",
    )
    get_run_logger().info("best checkpoint %s: val MIoU %.4f", result["best_checkpoint"], val.get("miou", float("nan")))
    return result


__all__ = ["build_training_set_flow", "train_model_flow"]
