"""``crofuse statistics``: the consistent series, accuracy samples (design, labels, estimate) and the tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

statistics_app = typer.Typer(
    help="Impervious statistics: temporally consistent series, accuracy samples and area estimates, the tables.",
    no_args_is_help=True,
)
sample_app = typer.Typer(
    help="Accuracy samples (Olofsson et al. 2014): draw a design, label it from rasters, estimate from labels.",
    no_args_is_help=True,
)
statistics_app.add_typer(sample_app, name="sample")

Output = Annotated[str, typer.Option("--output", "-o", help="Output root holding <city>/<year>/impervious.tif (a path or s3://bucket/prefix).")]
City = Annotated[str, typer.Argument(help="City folder name (slug), e.g. wuhan.")]
Year = Annotated[int, typer.Argument(help="Mapped year.")]


@statistics_app.command("consolidate")
def consolidate(
    city: City,
    output: Output = "outputs",
    threshold: Annotated[int, typer.Option(help="Probability (%) at or above which a year is impervious.")] = 50,
    reversal_below: Annotated[
        int, typer.Option(help="Probability (%) below which a year is evidence of reversal.")
    ] = 20,
    reversal_years: Annotated[int, typer.Option(help="Consecutive years of evidence a reversal needs.")] = 2,
    non_reverting: Annotated[bool, typer.Option("--non-reverting/--no-rule",
                                                help="--no-rule: no temporal rule, just the thresholded maps.")] = True,
) -> None:
    """Write impervious_consistent.tif for every mapped year of CITY (impervious does not revert, after GAIA)."""
    from crofuse.statistics.consistency import ConsistencyRule, consolidate_city

    rule = ConsistencyRule(non_reverting=non_reverting, threshold=threshold, reversal_below=reversal_below,
                           reversal_years=reversal_years)
    report = consolidate_city(output, city, rule=rule)
    typer.echo(report.summary())


@statistics_app.command("update")
def update(
    output: Output = "outputs",
    city: Annotated[list[str] | None, typer.Option("--city", help="Refresh only these cities (repeatable).")] = None,
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait for another writer of the tables.")] = 600.0,
) -> None:
    """Refresh the city-year records and rewrite statistics.zarr and statistics.csv; print the table."""
    from crofuse.statistics import format_table, update_statistics

    ds = update_statistics(output, cities=city or None, lock_timeout=lock_timeout)
    typer.echo(format_table(ds))


@sample_app.command("design")
def design(
    city: City,
    year: Year,
    output: Output = "outputs",
    seed: Annotated[int | None, typer.Option(help="Random seed (default: derived from city and year).")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Total points (default: eq. 13 for --target-se).")] = None,
    target_se: Annotated[float, typer.Option(help="Target standard error of overall accuracy (eq. 13).")] = 0.01,
    min_rare: Annotated[int, typer.Option(help="Fewest points in a rare (< 10 % of the area) stratum.")] = 75,
    buffer_px: Annotated[int, typer.Option(
        help="Width (pixels) of the buffer stratum: stable pixels next to mapped gain/loss, where most missed change "
             "lies (Olofsson et al. 2020); 0: no buffer.")] = 1,
) -> None:
    """Draw a stratified random sample of CITY YEAR's map and write sample.csv/.geojson for labelling."""
    from crofuse.errors import ConfigError
    from crofuse.statistics.sample import draw_city_year_design

    if buffer_px < 0:
        raise ConfigError(f"--buffer-px {buffer_px}: give 0 (no buffer) or a width in pixels")
    d, path = draw_city_year_design(output, city, year, seed=seed, n_total=n, target_se=target_se,
                                    min_rare=min_rare, buffer_px=buffer_px)
    typer.echo(f"{d.n} points in {path.parent}: " + ", ".join(
        f"{c} {a} (of {p} px, {km:.3f} km2)" for c, a, p, km in
        zip(d.strata, d.allocation, d.stratum_pixels, d.stratum_area_km2)))
    typer.echo(f"label the `reference` column of {path.parent / 'sample.csv'} (or sample.geojson) with one of "
               f"{list(d.classes)} and save it as {path.parent / 'labelled.csv'} (docs/labelling.md)")


@sample_app.command("label")
def label(
    city: City,
    year: Year,
    reference: Annotated[str | None, typer.Option(
        help="Reference labels of YEAR on the map grid (1/0/255): a raster path or URL.")] = None,
    previous_reference: Annotated[str | None, typer.Option(help="Reference labels of the previous mapped year.")]
    = None,
    labels: Annotated[str | None, typer.Option(
        help="Label the points from a label source instead of rasters: sample, sample-exact, esa-worldcover, "
             "io-lulc, a GeoTIFF or a polygon file (docs/labels.md); reprojected onto the map grid.")] = None,
    catalog: Annotated[str | None, typer.Option(help="STAC API of a STAC label source (--labels).")] = None,
    nearest_year: Annotated[bool, typer.Option(
        help="With --labels: use the source's nearest year when it has none for YEAR.")] = False,
    output: Output = "outputs",
) -> None:
    """Label CITY YEAR's design from reference rasters or a label source; writes sample/labelled.csv."""
    from crofuse.errors import ConfigError
    from crofuse.statistics.maps import MAP_NAME, city_year_folder, read_map
    from crofuse.statistics.sample import (
        SAMPLE_DIR,
        SampleError,
        label_from_rasters,
        read_design,
        write_labels_csv,
    )

    if (reference is None) == (labels is None):
        raise ConfigError("give either --reference RASTER (labels on the map grid) or --labels SOURCE")
    folder = city_year_folder(output, city, year) / SAMPLE_DIR
    d = read_design(folder)
    if d is None:
        raise SampleError(f"no design in {folder}: draw one with `crofuse statistics sample design {city} {year}`")
    if labels is not None:
        from crofuse.labels.reference import reference_on_grid

        def on_grid(y: int):  # the source's labels of year y on the map grid of y (the design's grid)
            like = read_map(city_year_folder(output, city, y) / MAP_NAME)
            return reference_on_grid(labels, like, y, catalog=catalog, nearest_year=nearest_year)

        current = on_grid(year)
        previous = on_grid(d.previous_year) if d.previous_year != -1 else None
        source = labels
    else:
        current, previous, source = reference, previous_reference, str(reference).rsplit("/", 1)[-1]
    labelled = label_from_rasters(d, current, previous, source=source)
    path = write_labels_csv(labelled, folder / "labelled.csv")
    typer.echo(f"{labelled.n} of {d.n} points labelled from {source}: {path}")


@sample_app.command("estimate")
def estimate(
    city: City,
    year: Year,
    output: Output = "outputs",
    labels: Annotated[Path | None, typer.Option(help="Labelled sample (default: sample/labelled.csv or .geojson).")]
    = None,
) -> None:
    """Estimate areas (with 95 % CIs) and accuracies of CITY YEAR from its labelled sample."""
    from crofuse.statistics.maps import city_year_folder
    from crofuse.statistics.sample import (
        SAMPLE_DIR,
        SampleError,
        city_year_strata,
        estimate_columns,
        find_labelled,
        read_design,
        read_labelled_sample,
    )

    folder = city_year_folder(output, city, year) / SAMPLE_DIR
    d = read_design(folder)
    path = labels or find_labelled(folder)
    if d is None:
        raise SampleError(f"{folder} has no design.json: draw a design first (`crofuse statistics sample "
                          f"design {city} {year}`)")
    if path is None:
        raise SampleError(f"{folder} has no labelled sample: fill the reference column of {folder / 'sample.csv'}"
                          " and save it as labelled.csv there (docs/labelling.md)")
    s = city_year_strata(output, city, year)
    cols = estimate_columns(read_labelled_sample(path, d, inside=s.inside))
    typer.echo(f"{city} {year}: {int(cols['sample_points'])} labelled points ({path.name})")
    for name in ("impervious", "gain", "loss", "net"):
        if f"estimated_{name}_km2" in cols:
            value, ci = cols[f"estimated_{name}_km2"], cols[f"estimated_{name}_ci95_km2"]
            typer.echo(f"  {name:<11} {value:9.4f} km2 ± {ci:.4f} (95 % CI; SE {cols[f'estimated_{name}_se_km2']:.4f})")
    for c in d.classes:
        ua, pa = cols[f"user_accuracy_{c}"], cols[f"producer_accuracy_{c}"]
        ua_se, pa_se = cols[f"user_accuracy_{c}_se"], cols[f"producer_accuracy_{c}_se"]
        typer.echo(f"  {c:<18} user's {_pct(ua, ua_se)}  producer's {_pct(pa, pa_se)}")
    typer.echo(f"  overall accuracy {_pct(cols['overall_accuracy'], cols['overall_accuracy_se'])}")


def _pct(v: float, se: float) -> str:
    return "   -   " if math.isnan(v) else f"{100 * v:5.1f} % ± {196 * se:.1f}"


def register(app: typer.Typer) -> None:
    """Add ``crofuse statistics`` to the ``crofuse`` app."""
    app.add_typer(statistics_app, name="statistics")
