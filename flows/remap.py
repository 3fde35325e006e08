"""Flow ``remap-cities``: map every city-year of a cities file that is not done yet, then update the statistics.

Every city-year runs as a ``map-city`` subflow on one dask cluster for the whole run, up to ``max_concurrent`` of
them at once (default: the cluster's worker threads, :func:`flows.tasks.cluster_slots`; 1 in-process). The
subflows run in threads of this flow's process, each with its own client of the shared cluster: their model work
is chunk tasks on the cluster, and their searches, cube writes and statistics overlap. We chose concurrent subflows
over fanning out ``map-city`` deployment runs: they work the same in a deployment and in a direct run (no worker
or deployment needed), share the one cluster the run started (the heavy work spreads over its workers, which can
span machines: dask-jobqueue, Kubernetes), and the run still sees every outcome to write its report. A city that
fails (bad AOI, empty search, unreadable scene...) does not stop the others; at the end the flow writes
``<output>/remap-report.json`` and

* builds the temporally consistent series (``impervious_consistent.tif``, :mod:`crofuse.statistics.consistency`) of
  every city it touched, over all of that city's mapped years, before the statistics are updated;
* publishes the products collection (the items of every city it touched: their consistent maps, change maps and
  figures may have changed) and leaves a table artifact (key ``remap-cities``) with every city-year's outcome;
* ends **Completed** when every city-year is mapped, returning the report;
* ends **Failed** when any city-year failed, *after* mapping all the others and updating the statistics. The state
  message names each failed city-year and its cause, so a scheduled run that went wrong is visible (and can alert)
  instead of hiding behind a green run. The report (also in the state's result) lists what succeeded.
"""

from __future__ import annotations

import contextvars
import json
import threading
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State
from pydantic import Field

from crofuse.layout import REMAP_REPORT
from flows.params import (
    DEFAULT_CATALOG,
    DEFAULT_CHECKPOINT,
    DEFAULT_OUTPUT,
    IN_PROCESS,
    CubeOptions,
    TilingOptions,
    read_cities_file,
)
from flows.tasks import (
    cluster_slots,
    dask_for_run,
    local_task,
    publish_products,
    remap_artifact,
    update_city_statistics,
)

REPORT_NAME = REMAP_REPORT

Years = Annotated[list[Annotated[int, Field(ge=2015, le=2100)]], Field(min_length=1)]


@flow(name="remap-cities", log_prints=True, validate_parameters=True)
def remap_cities(
    cities_file: str,
    years: Years | None = None,
    catalog: str = DEFAULT_CATALOG,
    checkpoint: str = DEFAULT_CHECKPOINT,
    output: str = DEFAULT_OUTPUT,
    dask_address: str | None = None,
    season: str | None = None,
    tiling: TilingOptions | None = None,
    cube_options: CubeOptions | None = None,
    quicklooks: bool = True,
    max_concurrent: Annotated[int, Field(ge=1, le=256)] | None = None,
) -> State:
    """Map every ``(city, year)`` of ``cities_file`` × ``years`` not already mapped, then update the statistics.

    Args:
        cities_file: YAML or GeoJSON file of cities (``flows.params`` describes the format; ``infra/cities.yaml``
            is an example). Relative paths are relative to the working directory (the repository in deployments).
        years: years to map, e.g. ``[2020, 2021]``; None (the yearly schedule) maps the previous calendar year.
        catalog: default STAC API URL for cities that do not name their own.
        checkpoint, output, season, tiling, cube_options, quicklooks: as in ``map-city``.
        dask_address: None/``"local"`` starts one local cluster for the whole run; ``"in-process"`` uses none;
            otherwise a scheduler address. Every city-year runs on it.
        max_concurrent: city-years mapped at once; None: what the cluster can use (its worker threads), 1
            in-process.
    """
    from flows.map_city import map_city

    log = get_run_logger()
    if years is None:
        import datetime as dt

        years = [dt.datetime.now(dt.UTC).year - 1]
    cities = read_cities_file(cities_file)
    jobs = [(spec, year) for spec in cities for year in sorted(set(years))]
    done: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    records: dict[tuple[str, int], dict[str, Any]] = {}
    with dask_for_run(dask_address) as client:
        address = IN_PROCESS if client is None else client.scheduler.address
        bound = max_concurrent or cluster_slots(client)
        log.info("%d city-years, up to %d at once", len(jobs), bound)

        def map_one(spec: Any, year: int) -> State:
            return map_city(
                city=spec.name, year=year, aoi=spec.aoi, catalog=spec.catalog or catalog, checkpoint=checkpoint,
                output=output, dask_address=address, season=season, tiling=tiling, cube_options=cube_options,
                quicklooks=quicklooks, return_state=True,
            )

        outcomes = run_bounded(map_one, jobs, bound)
        for (spec, year), outcome in zip(jobs, outcomes, strict=True):
            state = outcome
            if isinstance(outcome, BaseException):  # a subflow that could not even start: reported, not raised
                state = Failed(message=f"{type(outcome).__name__}: {outcome}", data=outcome)
            if state.is_completed():
                result = state.result()
                entry = {"city": result["city"], "year": year, "out_dir": result["out_dir"], "item": result.get("item")}
                (skipped if result["skipped"] else done).append(entry)
                if result.get("statistics"):
                    records[(result["city"], year)] = result["statistics"]
            else:
                cause = _cause(state)
                log.error("%s %s failed: %s", spec.name, year, cause)
                failed.append({"city": spec.name, "year": year, "error": cause})

    from crofuse.cube import city_slug
    from crofuse.io.store import location

    touched = [slug for slug in sorted({city_slug(s.name) for s in cities}) if (location(output) / slug).is_dir()]
    consistency = {}
    for slug in touched:
        consistency[slug] = consolidate_series(output, slug)
    for slug in touched:
        update_city_statistics(output, slug)
    published = publish_products(output, touched) if touched else {}
    report = {"mapped": done, "already_done": skipped, "failed": failed, "years": sorted(set(years)),
              "consistency": consistency, "collection": published.get("collection")}
    _write_report(output, report)
    remap_artifact(report, records)
    summary = f"{len(done)} city-years mapped, {len(skipped)} already done, {len(failed)} failed"
    log.info(summary)
    if failed:
        lines = "; ".join(f"{f['city']} {f['year']}: {f['error']}" for f in failed)
        return Failed(message=f"{summary}. Failed: {lines}", data=report)
    return Completed(message=summary, data=report)


def run_bounded(fn: Any, jobs: list[tuple[Any, ...]], bound: int) -> list[Any]:
    """``fn(*job)`` for every job, at most ``bound`` at once, each in a thread running a copy of the caller's
    context (a Prefect flow called there is a subflow of the caller's run); returns the results (or the exception
    a call raised) in the order of ``jobs``.

    The threads are daemons, and every wait here can be interrupted: on Ctrl-C or SIGTERM the run stops waiting
    and exits without waiting for the city-years still running (their marker is not written, so a rerun resumes
    them; Prefect marks them Crashed), where a thread pool would hold the process until they finished."""
    results: list[Any] = [None] * len(jobs)
    slots = threading.BoundedSemaphore(max(1, bound))

    def work(i: int, job: tuple[Any, ...], context: contextvars.Context) -> None:
        try:
            results[i] = context.run(fn, *job)
        except BaseException as exc:  # noqa: BLE001 (handed to the caller, which reports it)
            results[i] = exc
        finally:
            slots.release()

    threads = []
    for i, job in enumerate(jobs):
        slots.acquire()
        thread = threading.Thread(target=work, args=(i, job, contextvars.copy_context()), daemon=True,
                                  name=f"remap-{i}")
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return results


@local_task(name="consistency")
def consolidate_series(output: str, city: str) -> dict[str, Any]:
    """``impervious_consistent.tif`` for every mapped year of ``city`` (idempotent); a city with nothing to build
    from (no mapped year, grids that differ) is reported, not raised, so the other cities still get theirs."""
    from crofuse.errors import CrofuseError
    from crofuse.statistics import mapped_years
    from crofuse.statistics.consistency import consolidate_city

    if not mapped_years(output, city):
        return {"years": [], "note": "no mapped year"}
    try:
        report = consolidate_city(output, city)
    except CrofuseError as e:
        get_run_logger().error("%s: no consistent series: %s", city, e)
        return {"error": f"{type(e).__name__}: {e}"}
    get_run_logger().info(report.summary())
    return {"years": report.years, "missing_years": report.missing_years, "written": len(report.written),
            "unchanged": len(report.unchanged), "notes": report.notes}


def _cause(state: State) -> str:
    """The exception behind a failed subflow state, as ``Type: message``."""
    from prefect.exceptions import MissingResult

    try:
        exc = state.result(raise_on_failure=False)
    except MissingResult:
        return state.message or state.name
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"
    return state.message or state.name


def _write_report(output: str, report: dict[str, Any]) -> None:
    from crofuse.io.store import location

    (location(output) / REPORT_NAME).write_text(json.dumps(report, indent=2, default=str))


def _main(argv: list[str] | None = None) -> int:
    """``python -m flows.remap CITIES_FILE [YEAR ...] [options]``: one run, reported to ``PREFECT_API_URL`` or to a
    Prefect server started for the run (``infra.prefect_server.prefect_api_for_run``)."""
    import argparse

    from infra.prefect_server import run_flow_directly

    parser = argparse.ArgumentParser(
        prog="python -m flows.remap",
        description="Map every city-year of a cities file not mapped yet (the remap-cities flow, run directly).",
        epilog="Without PREFECT_API_URL a Prefect server is started for the run and stopped after it (docs/flows.md).",
    )
    parser.add_argument("cities_file", help="YAML or GeoJSON cities file, e.g. infra/cities.yaml")
    parser.add_argument(
        "years", type=int, nargs="*", default=[], help="years to map (default: the previous calendar year)"
    )
    parser.add_argument("--catalog", default=DEFAULT_CATALOG, help=f"default STAC API URL (default {DEFAULT_CATALOG})")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help=f"checkpoint (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"output root (default {DEFAULT_OUTPUT})")
    parser.add_argument("--dask-address", default=None, help="'local' (default), 'in-process' or tcp://scheduler:8786")
    args = parser.parse_args(argv)
    return run_flow_directly(
        remap_cities, args.cities_file, args.years or None, catalog=args.catalog, checkpoint=args.checkpoint,
        output=args.output, dask_address=args.dask_address,
    )


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(_main())
