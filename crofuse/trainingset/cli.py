"""``crofuse training-set build|info``: training sets from STAC through the mapping pipeline."""

from __future__ import annotations

import json
from typing import Annotated

import typer

training_set_app = typer.Typer(
    help="Training sets built from a STAC catalog with any label source (the map-city composite, blocked splits).",
    no_args_is_help=True,
)


def _split_list(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _ints(values: list[str] | None) -> list[int]:
    try:
        return [int(v) for v in _split_list(values)]
    except ValueError as e:
        raise typer.BadParameter(f"expected integers, got {values}: {e}") from None


@training_set_app.command("build")
def build_command(
    out: Annotated[str, typer.Argument(help="Folder of the training set (WHU-IS layout + patches.json): a path or "
                                       "an s3://bucket/prefix URL.")],
    years: Annotated[list[str], typer.Option("--years", help="Years, e.g. --years 2021,2022.")],
    cities: Annotated[str | None, typer.Option("--cities", help="Cities file (YAML or GeoJSON, see "
                                               "infra/cities.yaml; a path or an s3:// URL).")] = None,
    city: Annotated[list[str] | None, typer.Option("--city", help="A city name instead of a cities file "
                                                   "(repeatable; AOI from the catalog's labels).")] = None,
    catalog: Annotated[str | None, typer.Option("--catalog", "-c", help="STAC API URL.")] = None,
    labels: Annotated[str, typer.Option("--labels", help="sample, esa-worldcover, io-lulc, FILE.tif, FILE.gpkg "
                                        "or a YAML label-source definition.")] = "sample",
    impervious_values: Annotated[list[str] | None, typer.Option(help="Label GeoTIFF: impervious class codes "
                                                                "(default 1).")] = None,
    ignore_values: Annotated[list[str] | None, typer.Option(help="Label GeoTIFF: codes without a label.")] = None,
    fraction_threshold: Annotated[float | None, typer.Option(help="Label GeoTIFF of impervious fraction: "
                                                             "impervious where >= this.")] = None,
    label_layer: Annotated[str | None, typer.Option(help="Vector file: the layer of impervious polygons.")] = None,
    label_year: Annotated[int | None, typer.Option(help="Label file: the year it applies to.")] = None,
    nearest_year: Annotated[bool, typer.Option("--nearest-year", help="Use a label source's nearest year when "
                                               "it has none for a city-year.")] = False,
    min_label_coverage: Annotated[float, typer.Option(help="Least share of the AOI the labels must cover.")] = 0.5,
    split: Annotated[str, typer.Option(help="blocked (default), random (the paper's) or by-city.")] = "blocked",
    block_km: Annotated[float, typer.Option(help="Blocked split: block side in km.")] = 2.56,
    buffer_px: Annotated[int | None, typer.Option(help="Blocked split: training windows keep this far from "
                                                  "val/test blocks (default one window).")] = None,
    holdout_val: Annotated[list[str] | None, typer.Option(help="by-city: cities for val.")] = None,
    holdout_test: Annotated[list[str] | None, typer.Option(help="by-city: cities for test.")] = None,
    patch_size: Annotated[int, typer.Option(help="Window size (paper: 128).")] = 128,
    stride: Annotated[int, typer.Option(help="Window stride (paper: 80).")] = 80,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    season: Annotated[str | None, typer.Option(help="Compositing window MM-DD/MM-DD (default June).")] = None,
    profile: Annotated[str | None, typer.Option(help="Catalog profile (default sample).")] = None,
    optical_reducer: Annotated[str | None, typer.Option(help="median (default) or mean.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a training set built with other "
                                            "settings in OUT.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Build a training set: the map-city cube of every city-year, labels from LABELS, patches, a spatial split."""
    from crofuse.cities import CitySpec, read_cities_file
    from crofuse.errors import ConfigError
    from crofuse.trainingset import build_training_set, training_set_config

    if (cities is None) == (not city):
        raise ConfigError("give a cities file (--cities FILE) or city names (--city NAME), not both")
    specs = read_cities_file(cities) if cities is not None else [CitySpec(name=c) for c in _split_list(city)]
    cube = {k: v for k, v in (("season", season), ("profile", profile), ("optical_reducer", optical_reducer))
            if v is not None}
    options = {"impervious": tuple(_ints(impervious_values)), "ignore": tuple(_ints(ignore_values)),
               "fraction_threshold": fraction_threshold, "layer": label_layer, "year": label_year}
    config = training_set_config(
        out=out, cities=specs, years=_ints(years), catalog=catalog, labels=labels,
        label_options={k: v for k, v in options.items() if v not in (None, ())}, nearest_year=nearest_year,
        min_label_coverage=min_label_coverage, split=split, block_km=block_km, buffer_px=buffer_px,
        holdout_val=_split_list(holdout_val), holdout_test=_split_list(holdout_test), patch_size=patch_size,
        stride=stride, seed=seed, cube=cube,
    )
    summary = build_training_set(config, overwrite=overwrite, progress=progress)
    typer.echo("\n".join(summary.lines()))


@training_set_app.command("info")
def info_command(root: Annotated[str, typer.Argument(help="A training set folder (a path or an s3:// URL).")]
                 ) -> None:
    """Print a training set's split, label source, recipe and counts (its patches.json, without the name lists)."""
    from crofuse.errors import TrainingSetError
    from crofuse.trainingset import read_manifest

    manifest = read_manifest(root)
    if manifest is None:
        raise TrainingSetError(f"{root} has no patches.json (not a crofuse training set, or still being built): "
                               "build one with `crofuse training-set build`")
    shown = {k: v for k, v in manifest.items() if k not in ("splits",)}
    shown["counts"] = {s: len(v) for s, v in manifest["splits"].items()}
    shown["split"] = {k: v for k, v in manifest["split"].items() if k != "blocks"} | {
        "blocks": len(manifest["split"]["blocks"])}
    typer.echo(json.dumps(shown, indent=1, default=str))


def register(app: typer.Typer) -> None:
    """Add ``training-set build|info`` to the ``crofuse`` app."""
    app.add_typer(training_set_app, name="training-set")


__all__ = ["register", "training_set_app"]
