"""Flow ``map-city``: one city-year from STAC scenes to impervious maps, change map, statistics and quicklooks.

    search scenes -> input cube -> tiled prediction -> reference labels -> statistics -> quicklooks -> marker
        -> product item + collection (STAC) -> Prefect artifacts

Outputs go to ``<output>/<city-slug>/<year>/`` (layout in docs/architecture.md and docs/flows.md). The last thing
written is ``mapped.json``; a rerun of a city-year that has it (for the same checkpoint and the same parameters that change
what a map says: AOI, catalog, season, cube options, window/stride/threshold) does no model work and only refreshes
the statistics tables. After the marker, the city-year is published as an item of the products collection
(``<output>/<city>/<year>/item.json``, ``<output>/collection.json``; docs/products.md), and the run leaves two Prefect
artifacts: a table of its statistics record and a markdown summary (figures, the item's link, the quicklook).

Run it directly (``python -m flows.map_city wuhan 2021``, ``--help`` for the options), from Python
(``map_city("wuhan", 2021)``) or through the ``map-city/map-city`` deployment in ``prefect.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from flows.params import (
    DEFAULT_CATALOG,
    DEFAULT_CHECKPOINT,
    DEFAULT_OUTPUT,
    AOIParam,
    CubeOptions,
    TilingOptions,
    as_cube_options,
)
from flows.tasks import (
    MARKER,
    build_input_cube,
    checkpoint_sha256,
    city_year_artifacts,
    dask_for_run,
    fetch_reference,
    finished_marker,
    mapping_parameters_sha256,
    predict_maps,
    publish_products,
    resolve_aoi,
    search_scenes,
    update_city_statistics,
    write_marker,
    write_quicklooks,
)

Year = Annotated[int, Field(ge=2015, le=2100, description="calendar year (Sentinel-1/2 era)")]
CityName = Annotated[str, Field(min_length=1, max_length=120, description="city name; its slug names the folder")]


@flow(name="map-city", log_prints=True, validate_parameters=True)
def map_city(
    city: CityName,
    year: Year,
    aoi: AOIParam = None,
    catalog: str = DEFAULT_CATALOG,
    checkpoint: str = DEFAULT_CHECKPOINT,
    output: str = DEFAULT_OUTPUT,
    dask_address: str | None = None,
    season: str | None = None,
    tiling: TilingOptions | None = None,
    cube_options: CubeOptions | None = None,
    quicklooks: bool = True,
    strict: bool = False,
) -> dict[str, Any]:
    """Map impervious surface of one city for one year.

    Args:
        city: city name (``"wuhan"``, ``"São Paulo"``); its slug names the output folder.
        year: the year whose season (default June) is composited.
        aoi: ``[west, south, east, north]`` in degrees or a GeoJSON polygon (lon/lat); None takes the city's extent
            from the catalog's ``labels`` collection (the sample catalog has one).
        catalog: STAC API URL (default: the local sample catalog).
        checkpoint: ``.safetensors`` checkpoint.
        output: output root.
        dask_address: None/``"local"`` starts a local dask cluster for the run, ``"in-process"`` uses none,
            anything else is a scheduler address (``tcp://...``).
        season: compositing window ``"MM-DD/MM-DD"`` (default June, as the paper).
        tiling: :class:`~flows.params.TilingOptions` (``window``, ``batch_size``, ``chunk_size``, ``device``...;
            a dict of its fields works too). Unknown keys are refused when the run is submitted.
        cube_options: :class:`~flows.params.CubeOptions`, more ``crofuse.cube.CubeConfig`` fields (``profile``,
            ``loader``, ``max_cloud_cover``...).
        quicklooks: write the PNG quicklook and the change plot.
        strict: refuse to map a cube composited with another recipe (reducer, season, SCL mask) than the one the
            checkpoint was trained on (default: a warning in the run's log).

    Returns:
        ``{"city", "year", "out_dir", "skipped", "chunks_computed", "statistics", "item", "collection", ...}``;
        ``skipped`` is True and ``chunks_computed`` 0 when the city-year was already finished.
    """
    from crofuse.cube import CubeConfig, city_slug

    log = get_run_logger()
    slug = city_slug(city)
    out_dir = Path(output) / slug / str(year)
    sha = checkpoint_sha256(checkpoint)  # a missing checkpoint fails before any network or cube work

    params_sha = mapping_parameters_sha256(
        aoi=aoi, catalog=catalog, season=season, tiling=tiling, cube_options=cube_options
    )
    done = finished_marker(out_dir, sha, params_sha)
    if done is not None:
        log.info("%s %s is already mapped with this checkpoint and these parameters (%s): no model work",
                 slug, year, out_dir / MARKER)
        record = update_city_statistics(output, slug, year)
        published = publish_products(output, slug, year)
        looks = [p for p in done.get("quicklooks", []) if Path(p).parent == out_dir]
        city_year_artifacts(record, city=slug, year=int(year), item=published.get("item"),
                            collection=published["collection"], quicklook=looks[0] if looks else None,
                            skipped=True, checkpoint_sha=sha)
        return {**done, "skipped": True, "chunks_computed": 0, "statistics": record,
                **{k: published.get(k) for k in ("item", "collection")}}

    geometry = resolve_aoi(slug, aoi, catalog)
    config = CubeConfig(
        city=slug, year=year, aoi=geometry, catalog=catalog, output=output, season=season,
        **as_cube_options(cube_options).config_fields(),
    )
    scenes = search_scenes(config)  # the run's one search; build-cube builds from it
    with dask_for_run(dask_address) as client:
        if client is not None:
            log.info("dask cluster: %s (dashboard %s)", client.scheduler.address, client.dashboard_link)
        cube = build_input_cube(config, scenes)
        maps = predict_maps(cube, checkpoint, str(out_dir), tiling, strict)
    has_reference = fetch_reference(catalog, slug, year, str(out_dir))
    _write_aoi(out_dir, geometry)
    record = update_city_statistics(output, slug, year)
    looks = write_quicklooks(output, slug, year, cube) if quicklooks else []
    result = {
        "city": slug,
        "year": int(year),
        "out_dir": str(out_dir),
        "cube": cube,
        "catalog": catalog,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha,
        "parameters_sha256": params_sha,
        "reference": bool(has_reference),
        "quicklooks": looks,
        **{k: maps[k] for k in ("impervious", "probability", "maps", "windows", "seconds")},
    }
    write_marker(out_dir, result)
    published = publish_products(output, slug, year)
    _log_summary(log, record)
    city_year_artifacts(record, city=slug, year=int(year), item=published.get("item"),
                        collection=published["collection"], quicklook=looks[0] if looks else None,
                        skipped=False, checkpoint_sha=sha)
    return {**result, "skipped": False, "chunks_computed": maps["chunks_computed"], "statistics": record,
            **{k: published.get(k) for k in ("item", "collection")}}


def _write_aoi(out_dir: Path, geometry: dict[str, Any]) -> None:
    import json
    import os

    path = out_dir / "aoi.geojson"
    text = json.dumps(geometry)
    if path.exists() and path.read_text() == text:
        return
    tmp = out_dir / f".aoi.geojson.tmp{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, path)


def _log_summary(log: Any, record: dict[str, Any] | None) -> None:
    if not record:
        return
    msg = (
        f"{record['city']} {record['year']}: impervious {record['impervious_km2']:.3f} km2 "
        f"({100 * record['fraction_of_aoi']:.1f}% of the AOI)"
    )
    if record.get("previous_year", -1) != -1:
        msg += f"; since {record['previous_year']}: gain {record['gain_km2']:.3f}, loss {record['loss_km2']:.3f} km2"
    ref_gain = record.get("reference_gain_km2")
    if ref_gain is not None and ref_gain == ref_gain:
        msg += (
            f"; reference gain {ref_gain:.3f} km2, error {record['gain_error_km2']:+.3f} km2 "
            f"(model disagreement bound {record['gain_error_bound_km2']:.3f} km2)"
        )
    log.info(msg)


def _main(argv: list[str] | None = None) -> int:
    """``python -m flows.map_city CITY YEAR [options]``: one run, reported to ``PREFECT_API_URL`` or to a Prefect
    server started for the run (``infra.prefect_server.prefect_api_for_run``)."""
    import argparse

    from infra.prefect_server import run_flow_directly

    parser = argparse.ArgumentParser(
        prog="python -m flows.map_city",
        description="Map impervious surface of one city for one year (the map-city flow, run directly).",
        epilog="Without PREFECT_API_URL a Prefect server is started for the run and stopped after it (docs/flows.md).",
    )
    parser.add_argument("city", help="city name, e.g. wuhan")
    parser.add_argument("year", type=int, help="year, e.g. 2021")
    parser.add_argument("--catalog", default=DEFAULT_CATALOG, help=f"STAC API URL (default {DEFAULT_CATALOG})")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=f"checkpoint (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"output root (default {DEFAULT_OUTPUT})")
    parser.add_argument("--dask-address", default=None, help="'local' (default), 'in-process' or tcp://scheduler:8786")
    args = parser.parse_args(argv)
    return run_flow_directly(
        map_city, args.city, args.year, catalog=args.catalog, checkpoint=args.checkpoint, output=args.output,
        dask_address=args.dask_address,
    )


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(_main())
