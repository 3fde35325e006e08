"""Prefect tasks of the flows: each does one step by calling library code.

Only the steps that talk to the network (the STAC API and the COGs it points at) retry, and only on errors that a
retry can cure (connection refused/reset, timeouts, HTTP 429/5xx, decided on the exception type and status); a bad
AOI, an empty search, a missing checkpoint or a catalog that ran out of its deadline fails at once with the
library's own message. Tasks never cache (``NO_CACHE``): the files on disk and their
completeness markers decide what is done.

The season's scenes are searched once per run (``search-scenes``); ``build-cube`` builds from what it found.
After the marker, ``publish-products`` writes the city-year's STAC item and the collection (:mod:`crofuse.products`)
and ``artifacts`` leaves the run's Prefect artifacts (a table of the statistics record, a markdown summary).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from crofuse.errors import (
    AOIError,
    CatalogDeadlineError,
    CatalogError,
    ConfigError,
    EmptySearchError,
    InsufficientDataError,
    MissingModalityError,
)
from crofuse.layout import MARKER
from flows.params import (
    IN_PROCESS,
    LOCAL_CLUSTER,
    PERFORMANCE_ONLY_CUBE,
    PERFORMANCE_ONLY_TILING,
    CubeOptions,
    TilingOptions,
    as_cube_options,
    as_tiling_options,
)

RETRY_DELAYS = [2, 10, 30]

_NOT_TRANSIENT = (AOIError, ConfigError, EmptySearchError, MissingModalityError, InsufficientDataError,
                  CatalogDeadlineError)


def _transient_types() -> tuple[type[BaseException], ...]:
    """Exception types of network failures a retry can cure (connection refused/reset, timeouts)."""
    import httpx
    import requests
    import urllib3.exceptions

    return (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout,
            requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError,
            urllib3.exceptions.NewConnectionError, urllib3.exceptions.TimeoutError, httpx.TransportError)


def _status(exc: BaseException) -> int | None:
    for attr in ("status", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def is_transient(exc: BaseException | None) -> bool:
    """Could a Prefect retry cure ``exc``? Decided on the exception type and the HTTP status, never on the message.

    Walks the cause chain: a bad AOI, an empty search, a bad setting, or a catalog that ran out of its deadline
    (the transport already retried within it: a Prefect retry would multiply it) is not retried; a
    :class:`~crofuse.errors.CatalogError` carries the transport's verdict (``transient``, from the status: 429,
    500, 502, 503, 504); any other error with an HTTP status is transient on those statuses; connection errors and
    timeouts (builtin, requests, urllib3, httpx types) are transient.
    """
    from crofuse.cube.stac_client import is_transient_status

    transient_types = _transient_types()
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, _NOT_TRANSIENT):
            return False
        if isinstance(exc, CatalogError) and exc.transient is not None:
            return exc.transient
        status = _status(exc)
        if status is not None:
            return is_transient_status(status)
        if isinstance(exc, transient_types):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def retry_on_network_error(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` of the network tasks: retry only :func:`is_transient` failures."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return is_transient(exc)


def network_task(**kwargs: Any):
    """``@task`` for a step that talks to the network: retries transient failures with backoff."""
    return task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
                retry_condition_fn=retry_on_network_error, cache_policy=NO_CACHE, **kwargs)


def local_task(**kwargs: Any):
    """``@task`` for a local step: no retries (a retry would fail the same way), no caching."""
    return task(cache_policy=NO_CACHE, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------------------------------------------------
@contextmanager
def dask_for_run(dask_address: str | None):
    """One dask client for the whole flow run.

    ``None`` or ``"local"``: start a local cluster with ``infra.cluster.dask_client`` and stop it at the end;
    ``"in-process"``: no cluster (everything runs in the flow process); anything else: the address of a running
    scheduler (``tcp://host:8786``), e.g. one started by dask-jobqueue or on Kubernetes (infra/README.md).
    Yields the client (or None) and makes it the default for dask computations in the run.
    """
    if dask_address == IN_PROCESS:
        yield None
        return
    from infra.cluster import ClusterConfig, dask_client

    config = ClusterConfig() if dask_address in (None, LOCAL_CLUSTER) else ClusterConfig(address=dask_address)
    with dask_client(config) as client, client.as_current():
        # as_current: this thread's (and its tasks') default client, also when remap-cities runs several map-city
        # subflows in threads of one process, each with its own client of the shared cluster
        yield client


def current_client() -> Any:
    """The run's dask client, or None when the run is in-process."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def cluster_slots(client: Any) -> int:
    """How many city-years a cluster can work on at once: its worker threads (one chunk task each), at least 1;
    1 without a cluster (in-process runs use the flow process's cores for one city-year)."""
    if client is None:
        return 1
    return max(1, sum(client.nthreads().values()))


# --------------------------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------------------------
@network_task(name="resolve-aoi")
def resolve_aoi(city: str, aoi: list[float] | dict[str, Any] | None, catalog: str) -> dict[str, Any]:
    """The AOI as a validated GeoJSON geometry; without one, the city's extent from the catalog's labels."""
    from crofuse.cube.aoi import parse_aoi
    from crofuse.labels import city_extent

    raw = city_extent(catalog, city) if aoi is None else aoi
    return parse_aoi(raw).geojson


@network_task(name="search-scenes")
def search_scenes(config: Any) -> Any:
    """Search the season's Sentinel-2 and Sentinel-1 scenes: the run's one search (``build-cube`` builds from it).

    Returns the :class:`crofuse.cube.search.SeasonItems`; an empty search fails in ``build-cube`` with the
    library's message (which also tells a swapped bbox)."""
    from crofuse.cube import search_season

    items = search_season(config)
    found = {"optical": len(items.optical), "sar": len(items.sar), "cloudy": len(items.cloudy)}
    get_run_logger().info("%s %s: %s", config.slug, config.year, found)
    return items


@network_task(name="build-cube")
def build_input_cube(config: Any, items: Any, path: str | None = None) -> str:
    """``crofuse.cube.build_cube`` from the scenes ``search-scenes`` found: seasonal composites into
    ``inputs.zarr`` (reused when already built); ``path`` builds it elsewhere (a remap's staging area, beside the
    cube the finished maps were made from)."""
    from crofuse.cube import build_cube

    return str(build_cube(config, progress=False, items=items, path=path))


@local_task(name="predict")
def predict_maps(cube: str, checkpoint: str, out_dir: str, tiling: TilingOptions | dict[str, Any] | None,
                 strict: bool = False) -> dict[str, Any]:
    """``tiling.predict_cube`` on the run's dask client: ``impervious.tif``, ``probability.tif``, ``maps.zarr``.

    A cube composited with another recipe than the checkpoint's is logged as a warning (``strict``: refused)."""
    from tiling import predict_cube

    config = as_tiling_options(tiling).to_config()
    out = predict_cube(cube, checkpoint, out_dir, config=config, client=current_client(), progress=False,
                       strict=strict)
    for message in out.warnings:
        get_run_logger().warning(message)
    get_run_logger().info(
        "predicted %d/%d chunks (%d windows) in %.1f s", out.chunks_computed, out.chunks_total, out.windows, out.seconds
    )
    return {
        "impervious": str(out.impervious),
        "probability": str(out.probability),
        "maps": str(out.maps),
        "checkpoint_sha256": out.checkpoint_sha256,
        "chunks_computed": out.chunks_computed,
        "windows": out.windows,
        "seconds": round(out.seconds, 3),
    }


@network_task(name="reference-labels")
def fetch_reference(catalog: str, city: str, year: int, out_dir: str) -> bool:
    """Ground-truth labels of the city-year from the catalog, on the map grid (``reference.tif``), if it has them."""
    from crofuse.io.store import location
    from crofuse.labels.reference import write_reference
    from crofuse.statistics import MAP_NAME, REFERENCE_NAME, read_map

    like = read_map(location(out_dir) / MAP_NAME)
    written = write_reference(catalog, city, year, like, location(out_dir) / REFERENCE_NAME)
    return written is not None


@local_task(name="statistics")
def update_city_statistics(output: str, city: str, year: int | None = None) -> dict[str, Any] | None:
    """Refresh the city's records and rewrite ``statistics.zarr``/``.csv``; returns the year's record."""
    from dataclasses import asdict

    from crofuse.statistics import load_record, update_statistics

    update_statistics(output, cities=[city])
    if year is None:
        return None
    record = load_record(output, city, year)
    return None if record is None else asdict(record)


_PYPLOT = threading.Lock()
"""One quicklook at a time per process: pyplot's state is global, and the change plot of the output root is written
under a per-process temporary name (``remap-cities`` runs map-city subflows in threads of one process)."""


@local_task(name="quicklooks")
def write_quicklooks(output: str, city: str, year: int, cube: str | None) -> list[str]:
    """PNG quicklook of the city-year and the change plot of all cities."""
    from crofuse.quicklooks import (
        change_plot,
        city_year_quicklook,
        refresh_stale_quicklooks,
    )

    with _PYPLOT:
        paths = [city_year_quicklook(output, city, year, cube=cube)]
        paths += refresh_stale_quicklooks(output, city)  # later years whose change map this year rewrote
        paths.append(change_plot(output))
    return [str(p) for p in paths]


def checkpoint_sha256(checkpoint: str) -> str:
    """The SHA-256 of the checkpoint (a path, or an ``s3://`` URL fetched once into the local cache)."""
    from crofuse.io.store import cached_copy
    from tiling.model import file_sha256

    path = Path(cached_copy(checkpoint)) if "://" in str(checkpoint) else Path(checkpoint)
    if not path.is_file():
        from crofuse.errors import CheckpointError

        raise CheckpointError(
            f"checkpoint {path.resolve()} does not exist: train one (`crofuse train`, or `make demo` trains the "
            "demo checkpoint) or pass checkpoint=PATH"
        )
    return file_sha256(path)


def mapping_parameters_sha256(
    *,
    aoi: Any,
    catalog: str,
    season: str | None,
    tiling: TilingOptions | dict[str, Any] | None,
    cube_options: CubeOptions | dict[str, Any] | None,
) -> str:
    """Hash of the ``map-city`` parameters that change what a finished map says (besides the checkpoint).

    A rerun with another AOI, catalog, season, cube option or window/stride/threshold remaps the city-year; one
    that only changes speed (:data:`~flows.params.PERFORMANCE_ONLY_TILING`: chunk size, batch size, device,
    threads...; :data:`~flows.params.PERFORMANCE_ONLY_CUBE`: the cube's chunk size, HTTP timeout and retries,
    ``catalog_deadline``, the asset checks) reuses it. An option set to its default is the same map as no option.
    """
    import dataclasses

    resolved = as_tiling_options(tiling).to_config()  # defaults filled in: {"stride": 96} is the same map as none
    tiling_meaning = {**dataclasses.asdict(resolved), "halo": resolved.effective_halo}
    cube_meaning = {k: v for k, v in as_cube_options(cube_options).changed().items() if k not in PERFORMANCE_ONLY_CUBE}
    meaning = {
        "aoi": aoi,
        "catalog": catalog,
        "season": season,
        "cube_options": cube_meaning,
        "tiling": {k: v for k, v in tiling_meaning.items() if k not in PERFORMANCE_ONLY_TILING},
    }
    return hashlib.sha256(json.dumps(meaning, sort_keys=True, default=str).encode()).hexdigest()


def finished_marker(out_dir: Any, sha256: str, parameters_sha256: str) -> dict[str, Any] | None:
    """The complete marker of a city-year mapped with this checkpoint and these mapping parameters (see
    :func:`mapping_parameters_sha256`), or None if it must be (re)done (no marker, a marker that says a new map is
    being published, another checkpoint or other parameters, or no map under it)."""
    from crofuse.io.store import location
    from crofuse.layout import COMPLETE, IMPERVIOUS, read_marker

    out_dir = location(out_dir)
    data = read_marker(out_dir)
    if data is None or data.get("state", COMPLETE) != COMPLETE or not (out_dir / IMPERVIOUS).exists():
        return None
    if data.get("checkpoint_sha256") != sha256:
        return None
    if data.get("parameters_sha256") != parameters_sha256:
        return None
    return data


def write_marker(out_dir: Any, data: dict[str, Any]) -> None:
    """Write the complete marker atomically (the last thing a city-year run writes; :mod:`crofuse.layout`)."""
    from crofuse.layout import write_marker as _write

    _write(out_dir, data)


@local_task(name="publish-products")
def publish_products(output: str, city: str | list[str], year: int | None = None) -> dict[str, Any]:
    """Write the STAC items of the finished years of ``city`` (one or several) and the products collection
    (:func:`crofuse.products.publish`, idempotent); returns the collection's path and, with ``year``, that
    city-year's item path (None if it could not be built: the log says why)."""
    from crofuse.io.store import location
    from crofuse.products import ITEM_NAME, publish

    cities = [city] if isinstance(city, str) else list(city)
    report = publish(output, cities=cities)  # a path or an s3:// URL (crofuse.io.store)
    for folder, reason in report.skipped.items():
        get_run_logger().warning("no product item for %s: %s", folder, reason)
    out: dict[str, Any] = {"collection": str(report.collection), "written": [str(p) for p in report.written]}
    if year is not None:
        item = location(output) / cities[0] / str(year) / ITEM_NAME
        out["item"] = str(item) if item in {location(p) for p in report.items} else None
    return out


def _missing(value: Any) -> bool:
    """None or NaN (a record's "not applicable")."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _km2(value: Any) -> str:
    return "n/a" if _missing(value) else f"{value:.3f} km²"


def _record_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A statistics record as ``field, value, unit`` rows (NaN as None), every column of the table in order."""
    from crofuse.statistics import NUMERIC_FIELDS

    estimates = record.get("estimates") or {}
    rows = []
    for name in ("city", "year", *NUMERIC_FIELDS, "estimate_source", "estimate_notes"):
        value = record.get(name, estimates.get(name))
        if _missing(value) or value == "":
            continue
        rows.append({"field": name, "value": value, "unit": "km²" if "_km2" in name else ""})
    return rows


def _uri(path: str) -> str:
    """A link to a product: its URL on object storage, a file:// URI on disk."""
    return path if "://" in path else Path(path).resolve().as_uri()


def city_year_markdown(record: dict[str, Any] | None, *, city: str, year: int, item: str | None,
                       collection: str | None, quicklook: str | None, skipped: bool, checkpoint_sha: str) -> str:
    """The markdown summary of one map-city run: the figures, the product item's link and the quicklook."""
    lines = [f"# {city} {year}: impervious surface", ""]
    lines.append("Already mapped with this checkpoint and these parameters: no model work." if skipped else
                 "Mapped in this run.")
    lines.append("")
    if record:
        lines += ["| quantity | value |", "|---|---|"]
        lines.append(f"| impervious area | {_km2(record.get('impervious_km2'))} "
                     f"({100 * record.get('fraction_of_aoi', float('nan')):.1f} % of the {_km2(record.get('aoi_km2'))} AOI) |")
        if record.get("previous_year", -1) != -1:
            lines.append(f"| since {record['previous_year']} | gain {_km2(record.get('gain_km2'))}, "
                         f"loss {_km2(record.get('loss_km2'))}, net {_km2(record.get('net_km2'))} |")
        ref = record.get("reference_gain_km2")
        if not _missing(ref) and record.get("previous_year", -1) != -1:
            lines.append(f"| reference gain (labels) | {_km2(ref)} |")
        est = (record.get("estimates") or {})
        for what in ("impervious", "gain"):
            value, ci = est.get(f"estimated_{what}_km2"), est.get(f"estimated_{what}_ci95_km2")
            if not _missing(value):
                lines.append(f"| estimated {what} (accuracy sample) | {value:.3f} ± {ci:.3f} km² (95 % CI) |")
        lines.append("")
    else:
        lines += ["No statistics record.", ""]
    if item:
        lines.append(f"Product item: [{city}-{year}]({_uri(item)}) in the collection "
                     f"[{collection.rsplit('/', 1)[-1] if collection else ''}]({_uri(collection) if collection else ''})")
    else:
        lines.append("Product item: none (see the run's log)")
    lines.append("")
    lines.append(f"Quicklook: `{quicklook}`" if quicklook else "Quicklook: not written (quicklooks=False)")
    lines.append("")
    lines.append(f"Checkpoint SHA-256: `{checkpoint_sha}`")
    return "\n".join(lines) + "\n"


def artifact_key(*parts: Any) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from ``parts``."""
    import re

    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(str(p) for p in parts).lower())).strip("-")


@local_task(name="artifacts")
def city_year_artifacts(record: dict[str, Any] | None, *, city: str, year: int, item: str | None,
                        collection: str | None, quicklook: str | None, skipped: bool,
                        checkpoint_sha: str) -> dict[str, str]:
    """The run's Prefect artifacts: a table of the statistics record (key ``statistics-<city>-<year>``) and a
    markdown summary with the figures, the item's link and the quicklook (key ``map-city-<city>-<year>``)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    table_key, summary_key = artifact_key("statistics", city, year), artifact_key("map-city", city, year)
    create_table_artifact(
        table=_record_rows(record) if record else [{"field": "city", "value": city, "unit": ""}],
        key=table_key, description=f"Statistics record of {city} {year} (statistics.json; docs/flows.md)",
    )
    create_markdown_artifact(
        markdown=city_year_markdown(record, city=city, year=year, item=item, collection=collection,
                                    quicklook=quicklook, skipped=skipped, checkpoint_sha=checkpoint_sha),
        key=summary_key, description=f"map-city {city} {year}: figures, product item, quicklook",
    )
    return {"table": table_key, "markdown": summary_key}


@local_task(name="artifacts")
def remap_artifact(report: dict[str, Any], records: dict[tuple[str, int], dict[str, Any]]) -> str:
    """The table artifact of a remap-cities run (key ``remap-cities``): one row per city-year with its outcome, the
    headline figures and the product item (or the error)."""
    from prefect.artifacts import create_table_artifact

    rows = []
    for status, entries in (("mapped", report["mapped"]), ("already done", report["already_done"]),
                            ("failed", report["failed"])):
        for e in entries:
            record = records.get((e["city"], int(e["year"]))) or {}
            row = {"city": e["city"], "year": int(e["year"]), "status": status}
            for name in ("impervious_km2", "gain_km2", "loss_km2"):
                value = record.get(name)
                row[name] = None if _missing(value) else round(float(value), 6)
            row["item"] = e.get("item")
            row["error"] = e.get("error")
            rows.append(row)
    rows.sort(key=lambda r: (r["city"], r["year"]))
    key = "remap-cities"
    create_table_artifact(table=rows, key=key, description=(
        f"remap-cities: {len(report['mapped'])} mapped, {len(report['already_done'])} already done, "
        f"{len(report['failed'])} failed"))
    return key


__all__ = [
    "MARKER",
    "PERFORMANCE_ONLY_TILING",
    "artifact_key",
    "build_input_cube",
    "checkpoint_sha256",
    "city_year_artifacts",
    "city_year_markdown",
    "cluster_slots",
    "current_client",
    "dask_for_run",
    "fetch_reference",
    "finished_marker",
    "is_transient",
    "mapping_parameters_sha256",
    "predict_maps",
    "publish_products",
    "remap_artifact",
    "resolve_aoi",
    "retry_on_network_error",
    "search_scenes",
    "update_city_statistics",
    "write_marker",
    "write_quicklooks",
]
