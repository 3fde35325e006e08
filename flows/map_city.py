"""Flow ``map-city``: one city-year from STAC scenes to impervious maps, change map, statistics and quicklooks.

    search scenes -> input cube -> tiled prediction -> reference labels -> statistics -> quicklooks -> marker
        -> product item + collection (STAC) -> Prefect artifacts

Outputs go to ``<output>/<city-slug>/<year>/`` (a path or an ``s3://`` URL; the layout is :mod:`crofuse.layout`).
The last thing written is ``mapped.json``; a rerun of a city-year that has it (for the same checkpoint and the same
parameters that change what a map says: AOI, catalog, season, cube options, window/stride/threshold) does no model
work and only refreshes the statistics tables.

A run holds the city-year's **lease** (``.lease``: owner, host, pid, start, heartbeat; a conditional write) for its
whole length: a second run of the same city-year waits ``lease_wait`` seconds for it, then fails naming the holder
and since when. A (re)map builds its new products (a changed cube, the maps, the reference labels) in
``.staging/<run>/`` beside the finished ones, which stay readable and consistent; only when they are all complete is
the marker invalidated, the products moved into place, the statistics and quicklook recomputed, and the marker
written last (:func:`crofuse.layout.publish`). A failed remap leaves the old city-year exactly as it was.
After the marker, the city-year is published as an item of the products collection
(``<output>/<city>/<year>/item.json``, ``<output>/collection.json``; docs/products.md), and the run leaves two Prefect
artifacts: a table of its statistics record and a markdown summary (figures, the item's link, the quicklook).

Run it directly (``python -m flows.map_city wuhan 2021``, ``--help`` for the options), from Python
(``map_city("wuhan", 2021)``) or through the ``map-city/map-city`` deployment in ``prefect.yaml``.
"""

from __future__ import annotations

import hashlib
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
    lease_wait: Annotated[float, Field(ge=0, le=86400)] = 0.0,
) -> dict[str, Any]:
    """Map impervious surface of one city for one year.

    Args:
        city: city name (``"wuhan"``, ``"São Paulo"``); its slug names the output folder.
        year: the year whose season (default June) is composited.
        aoi: ``[west, south, east, north]`` in degrees or a GeoJSON polygon (lon/lat); None takes the city's extent
            from the catalog's ``labels`` collection (the sample catalog has one).
        catalog: STAC API URL (default: the local sample catalog).
        checkpoint: ``.safetensors`` checkpoint: a path or an ``s3://`` URL.
        output: output root: a path or ``s3://bucket/prefix`` (credentials and endpoint from the AWS environment
            variables, ``AWS_ENDPOINT_URL`` for an S3-compatible store).
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
        lease_wait: seconds to wait when another run holds this city-year's lease (0: fail at once, naming it).

    Returns:
        ``{"city", "year", "out_dir", "skipped", "chunks_computed", "statistics", "item", "collection", ...}``;
        ``skipped`` is True and ``chunks_computed`` 0 when the city-year was already finished.
    """
    from crofuse import layout
    from crofuse.cube import CubeConfig
    from crofuse.cube.store import read_attrs
    from crofuse.io.store import check_writable

    log = get_run_logger()
    cy = layout.city_year(output, city, year)
    slug, out_dir = cy.city, cy.folder
    sha = checkpoint_sha256(checkpoint)  # a missing checkpoint fails before any network or cube work
    params_sha = mapping_parameters_sha256(
        aoi=aoi, catalog=catalog, season=season, tiling=tiling, cube_options=cube_options
    )
    run = hashlib.sha256(f"{sha}:{params_sha}".encode()).hexdigest()
    done = finished_marker(out_dir, sha, params_sha)
    if done is not None:
        log.info("%s %s is already mapped with this checkpoint and these parameters (%s): no model work",
                 slug, year, cy.marker)
        return _finished(log, done, output, slug, year, sha)
    check_writable(out_dir)  # a read-only output fails here, in one line, before any network or model work

    with cy.lease(purpose=f"map-city {slug} {year}", wait=lease_wait) as lease:
        done = finished_marker(out_dir, sha, params_sha)  # another run may have finished it while we waited
        if done is not None:
            return _finished(log, done, output, slug, year, sha)
        for leftover in cy.clean(keep_run=run):
            log.info("removed %s (left by an interrupted run)", leftover)
        staging = cy.staging(run)
        geometry = resolve_aoi(slug, aoi, catalog)
        maps: dict[str, Any] = {"chunks_computed": 0, "windows": 0, "seconds": 0.0}
        has_reference = (cy / layout.REFERENCE).exists()
        if layout.published_run(cy) == run and layout.marker_state(out_dir) == layout.PUBLISHING:
            log.info("%s %s: this run's products were published before an interruption; finishing", slug, year)
        else:
            config = CubeConfig(
                city=slug, year=year, aoi=geometry, catalog=catalog, output=output, season=season,
                **as_cube_options(cube_options).config_fields(),
            )
            existing = read_attrs(cy.cube)
            cube_target = None if existing and existing.get("fingerprint") == config.fingerprint() else str(
                staging / layout.CUBE)  # a changed cube is built beside the one the finished maps were made from
            scenes = search_scenes(config)  # the run's one search; build-cube builds from it
            with dask_for_run(dask_address) as client:
                if client is not None:
                    log.info("dask cluster: %s (dashboard %s)", client.scheduler.address, client.dashboard_link)
                cube = build_input_cube(config, scenes, cube_target)
                maps = predict_maps(cube, checkpoint, str(staging), tiling, strict)
            has_reference = fetch_reference(catalog, slug, year, str(staging))
            _write_aoi(staging, geometry)
            # what the old map had and the new one has not (reference labels, a head-disagreement layer) goes too
            layout.publish(cy, staging, run=run, remove=(*layout.DERIVED, layout.REFERENCE, *layout.MAP_PRODUCTS),
                           lease=lease)
        with layout.publishing_here(out_dir):
            record = update_city_statistics(output, slug, year)
            looks = write_quicklooks(output, slug, year, None) if quicklooks else []
        result = {
            "city": slug,
            "year": int(year),
            "out_dir": str(out_dir),
            "cube": str(cy.cube),
            "catalog": catalog,
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": sha,
            "parameters_sha256": params_sha,
            "reference": bool(has_reference),
            "quicklooks": looks,
            "impervious": str(cy.impervious),
            "probability": str(cy.probability),
            "maps": str(cy.maps),
            **{k: maps[k] for k in ("windows", "seconds") if k in maps},
        }
        lease.check()
        write_marker(out_dir, result)
    published = publish_products(output, slug, year)
    _log_summary(log, record)
    city_year_artifacts(record, city=slug, year=int(year), item=published.get("item"),
                        collection=published["collection"], quicklook=looks[0] if looks else None,
                        skipped=False, checkpoint_sha=sha)
    return {**result, "skipped": False, "chunks_computed": maps["chunks_computed"], "statistics": record,
            **{k: published.get(k) for k in ("item", "collection")}}


def _finished(log: Any, done: dict[str, Any], output: str, slug: str, year: int, sha: str) -> dict[str, Any]:
    """The result of a run that found the city-year finished: only the tables, the products and the artifacts."""
    from crofuse.io.store import location

    record = update_city_statistics(output, slug, year)
    published = publish_products(output, slug, year)
    folder = str(location(done.get("out_dir", "")))
    looks = [p for p in done.get("quicklooks", []) if str(location(p).parent) == folder]
    city_year_artifacts(record, city=slug, year=int(year), item=published.get("item"),
                        collection=published["collection"], quicklook=looks[0] if looks else None,
                        skipped=True, checkpoint_sha=sha)
    return {**done, "skipped": True, "chunks_computed": 0, "statistics": record,
            **{k: published.get(k) for k in ("item", "collection")}}


def _write_aoi(folder: Any, geometry: dict[str, Any]) -> None:
    import json

    from crofuse.layout import AOI

    (folder / AOI).write_text(json.dumps(geometry))


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
