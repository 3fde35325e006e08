"""Prefect tasks of the flows: each does one step by calling library code.

Only the steps that talk to the network (the STAC API and the COGs it points at) retry, and only on errors that a
retry can cure (connection refused/reset, timeouts, HTTP 429/5xx, decided on the exception type and status); a bad
AOI, an empty search, a missing checkpoint or a catalog that ran out of its deadline fails at once with the
library's own message. Tasks never cache (``NO_CACHE``): the files on disk and their
completeness markers decide what is done.
"""

from __future__ import annotations

import hashlib
import json
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
from flows.params import IN_PROCESS, LOCAL_CLUSTER


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
    with dask_client(config) as client:
        yield client


def current_client() -> Any:
    """The run's dask client, or None when the run is in-process."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


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
def search_scenes(config: Any) -> dict[str, int]:
    """Search the season's Sentinel-2 and Sentinel-1 scenes (fails loudly when there are none)."""
    from crofuse.cube import search_season

    items = search_season(config)
    found = {"optical": len(items.optical), "sar": len(items.sar), "cloudy": len(items.cloudy)}
    get_run_logger().info("%s %s: %s", config.slug, config.year, found)
    if not items.optical and not items.sar:
        raise EmptySearchError(
            f"no Sentinel-2 or Sentinel-1 scenes for {config.slug} in {config.season_window.label(config.year)} at "
            f"{config.catalog}: check the AOI, the year and the catalog URL"
        )
    return found


@network_task(name="build-cube")
def build_input_cube(config: Any, path: str | None = None) -> str:
    """``crofuse.cube.build_cube``: seasonal composites into ``inputs.zarr`` (reused when already built); ``path``
    builds it elsewhere (a remap's staging area, beside the cube the finished maps were made from)."""
    from crofuse.cube import build_cube

    return str(build_cube(config, progress=False, path=path))


@local_task(name="predict")
def predict_maps(cube: str, checkpoint: str, out_dir: str, tiling: dict[str, Any] | None,
                 strict: bool = False) -> dict[str, Any]:
    """``tiling.predict_cube`` on the run's dask client: ``impervious.tif``, ``probability.tif``, ``maps.zarr``.

    A cube composited with another recipe than the checkpoint's is logged as a warning (``strict``: refused)."""
    from tiling import TilingConfig, predict_cube

    config = TilingConfig(**(tiling or {}))
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


@local_task(name="quicklooks")
def write_quicklooks(output: str, city: str, year: int, cube: str | None) -> list[str]:
    """PNG quicklook of the city-year and the change plot of all cities."""
    from crofuse.quicklooks import change_plot, city_year_quicklook, refresh_stale_quicklooks

    paths = [city_year_quicklook(output, city, year, cube=cube)]
    paths += refresh_stale_quicklooks(output, city)  # later years whose change map this year just rewrote
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


PERFORMANCE_ONLY_TILING = frozenset({"chunk_size", "batch_size", "device", "autocast", "channels_last", "torch_threads"})
"""``TilingConfig`` fields that change how fast a map is made, not what it says: they do not force a remap."""


def mapping_parameters_sha256(
    *,
    aoi: Any,
    catalog: str,
    season: str | None,
    tiling: dict[str, Any] | None,
    cube_options: dict[str, Any] | None,
) -> str:
    """Hash of the ``map-city`` parameters that change what a finished map says (besides the checkpoint).

    A rerun with another AOI, catalog, season, cube option or window/stride/threshold remaps the city-year; one
    that only changes chunk size, batch size or device reuses it.
    """
    import dataclasses

    from tiling import TilingConfig

    resolved = TilingConfig(**(tiling or {}))  # defaults filled in: {"stride": 96} is the same map as no option
    tiling_meaning = {**dataclasses.asdict(resolved), "halo": resolved.effective_halo}
    meaning = {
        "aoi": aoi,
        "catalog": catalog,
        "season": season,
        "cube_options": cube_options or {},
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


__all__ = [
    "MARKER",
    "build_input_cube",
    "checkpoint_sha256",
    "current_client",
    "dask_for_run",
    "fetch_reference",
    "finished_marker",
    "is_transient",
    "mapping_parameters_sha256",
    "predict_maps",
    "resolve_aoi",
    "retry_on_network_error",
    "search_scenes",
    "update_city_statistics",
    "write_marker",
    "write_quicklooks",
]
