"""``crofuse sample-catalog build``: the synthetic sample data (training sets: ``crofuse training-set build``).

``crofuse sample-catalog serve`` starts ``rustac serve`` (``infra``), so the composition root adds it to
:data:`sample_app` (:mod:`crofuse_cli.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

sample_app = typer.Typer(
    help="Synthetic Sentinel-1/Sentinel-2 sample cities: build a STAC catalog and serve it.",
    no_args_is_help=True,
)


def _split(values: list[str] | None) -> list[str]:
    """Accept repeated options and comma-separated values: ``--cities wuhan,nanjing`` or ``--cities wuhan --cities nanjing``."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _config(
    cities: list[str] | None,
    years: list[str] | None,
    months: list[str] | None,
    size_km: float,
    seed: int,
    s1_gap_months: list[str] | None = None,
    generator: int | None = None,
):
    from crofuse.errors import ConfigError
    from crofuse.synthetic import SampleConfig, city_by_name

    def ints(values: list[str] | None, option: str) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in _split(values))
        except ValueError:
            raise ConfigError(f"{option} {','.join(_split(values))}: give integers, e.g. {option} 2021,2022") from None

    kw: dict = {"size_km": size_km, "seed": seed}
    if generator is not None:
        kw["generator"] = generator
    if s1_gap_months:
        kw["s1_gap_months"] = tuple(_split(s1_gap_months))
    if cities:
        kw["cities"] = tuple(city_by_name(c) for c in _split(cities))
    if years:
        kw["years"] = ints(years, "--years")
    if months:
        kw["months"] = ints(months, "--months")
    return SampleConfig(**kw)


Cities = Annotated[list[str] | None, typer.Option("--cities", help="City slugs (wuhan, nanjing, cairo, kuala-lumpur, milan, hefei, nanchang); default the first five.")]
Years = Annotated[list[str] | None, typer.Option("--years", help="Years, e.g. --years 2021,2022 (default).")]
Months = Annotated[list[str] | None, typer.Option("--months", help="Months with acquisitions (default 6, June).")]
SizeKm = Annotated[float, typer.Option("--size-km", help="Side of the square simulated around each city centre.")]
Seed = Annotated[int, typer.Option("--seed", help="Everything is deterministic in (city, year, seed).")]
S1Gaps = Annotated[
    list[str] | None,
    typer.Option("--s1-gap-months", help="YYYY-MM months with no Sentinel-1 pass at all, e.g. 2022-06 (default none)."),
]


@sample_app.command("build")
def build(
    out: Annotated[Path, typer.Argument(help="Folder for the COGs and STAC JSON (created if missing).")],
    cities: Cities = None,
    years: Years = None,
    months: Months = None,
    size_km: SizeKm = 10.0,
    seed: Seed = 0,
    s1_gap_months: S1Gaps = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes building cities in parallel (default: up to 2).")
    ] = None,
    generator: Annotated[
        int | None, typer.Option("--generator", help="2 (default): city palettes and annotated reference labels; "
                                                     "1: the earlier generator, byte for byte.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Simulate the cities and write a STAC catalog (COGs + JSON). Finished items are reused on a rebuild."""
    from crofuse.synthetic import build_catalog

    summary = build_catalog(
        out, _config(cities, years, months, size_km, seed, s1_gap_months, generator), progress=progress,
        workers=workers,
    )
    for line in summary.lines():
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add ``crofuse sample-catalog`` (``build``; the root adds ``serve``) to the ``crofuse`` app."""
    app.add_typer(sample_app, name="sample-catalog")
