"""``crofuse cube``: build the input cube of one city and year from a STAC catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def cube(
    city: Annotated[str, typer.Argument(help="City name (its slug names the output folder).")],
    year: Annotated[int, typer.Option("--year", "-y", help="Year of the season.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output root (a path or s3://bucket/prefix): the cube goes to OUT/<city>/<year>/inputs.zarr.")],
    catalog: Annotated[
        str | None, typer.Option("--catalog", "-c", help="STAC API URL (default: the profile's URL).")
    ] = None,
    aoi: Annotated[
        Path | None, typer.Option("--aoi", help="GeoJSON file with the city polygon (lon/lat).")
    ] = None,
    bbox: Annotated[
        tuple[float, float, float, float] | None,
        typer.Option("--bbox", help="West South East North in degrees (instead of --aoi)."),
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", "-p", help="Catalog profile: sample, planetary-computer, earth-search.")
    ] = "sample",
    profile_file: Annotated[
        Path | None,
        typer.Option("--profile-file", help="A custom catalog profile (YAML/JSON: collections, asset keys, SCL asset, "
                     "nodata, baseline property, signing; docs/cube.md), instead of --profile."),
    ] = None,
    signing: Annotated[
        str | None,
        typer.Option("--signing", help="Asset signing: none or planetary-computer (default: the profile's)."),
    ] = None,
    catalog_deadline: Annotated[
        float, typer.Option("--catalog-deadline", help="Seconds a catalog search may take in all, retries included.")
    ] = 120.0,
    sar_catalog: Annotated[str | None, typer.Option(help="Take Sentinel-1 from this STAC API instead.")] = None,
    sar_profile: Annotated[str | None, typer.Option(help="Profile of --sar-catalog.")] = None,
    optical_collection: Annotated[str | None, typer.Option(help="Override the Sentinel-2 collection id.")] = None,
    sar_collection: Annotated[str | None, typer.Option(help="Override the Sentinel-1 collection id.")] = None,
    season: Annotated[str, typer.Option(help="Compositing window MM-DD/MM-DD (default June, as the paper).")] = (
        "06-01/06-30"
    ),
    loader: Annotated[str, typer.Option(help="Pixel loader: odc-stac or stackstac.")] = "odc-stac",
    chunk_size: Annotated[int, typer.Option(help="Chunk size in pixels (dask and zarr).")] = 512,
    missing_modality: Annotated[
        str, typer.Option(help="fail, or continue with the missing modality as NaN.")
    ] = "fail",
    min_valid_fraction: Annotated[float, typer.Option(help="Least valid fraction of the AOI.")] = 0.3,
    max_cloud_cover: Annotated[float, typer.Option(help="Skip Sentinel-2 scenes cloudier than this (%).")] = 80.0,
    optical_reducer: Annotated[str, typer.Option(help="Sentinel-2 composite: median (default) or mean.")] = "median",
    verify_checksums: Annotated[bool, typer.Option(
        "--verify-checksums/--no-verify-checksums",
        help="Check each asset's file:checksum/file:size before loading (reads whole files).")] = True,
    max_impossible_fraction: Annotated[float, typer.Option(
        help="Fail when an asset has more than this share of physically impossible values.")] = 1e-3,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if an up-to-date cube exists.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Search a STAC catalog, composite the season's Sentinel-2 and Sentinel-1 and write inputs.zarr."""
    from crofuse.cube import CubeConfig, build_cube, open_cube
    from crofuse.errors import ConfigError

    if (aoi is None) == (bbox is None):
        raise ConfigError("give exactly one of --aoi FILE or --bbox W S E N")
    config = CubeConfig(
        city=city,
        year=year,
        aoi=str(aoi) if aoi is not None else bbox,
        catalog=catalog,
        profile=profile,
        profile_file=profile_file,
        signing=signing,  # type: ignore[arg-type]
        catalog_deadline=catalog_deadline,
        sar_catalog=sar_catalog,
        sar_profile=sar_profile,
        optical_collection=optical_collection,
        sar_collection=sar_collection,
        season=season,
        output=out,
        chunk_size=chunk_size,
        loader=loader,  # type: ignore[arg-type]
        missing_modality=missing_modality,  # type: ignore[arg-type]
        min_valid_fraction=min_valid_fraction,
        max_cloud_cover=max_cloud_cover,
        optical_reducer=optical_reducer,  # type: ignore[arg-type]
        verify_checksums=verify_checksums,
        max_impossible_fraction=max_impossible_fraction,
    )
    path = build_cube(config, progress=progress, force=force)
    ds = open_cube(path)
    a = ds.attrs
    typer.echo(
        f"{path}\n  {ds.sizes['x']} x {ds.sizes['y']} px in {a['crs']}, season {a['season']}, "
        f"{len(a['optical_items'])} Sentinel-2 + {len(a['sar_items'])} Sentinel-1 items\n"
        f"  valid {a['valid_fraction']:.1%} (clear optical {a['optical_fraction']:.1%}, SAR {a['sar_fraction']:.1%})"
        + (f"\n  missing modalities: {', '.join(a['missing_modalities'])}" if a.get("missing_modalities") else "")
    )


def register(app: typer.Typer) -> None:
    """Add ``crofuse cube`` to the ``crofuse`` app."""
    app.command("cube")(cube)
