"""End-to-end ``map-city`` benchmark: one paper-width city-year on a local dask cluster, with a stage breakdown.

Run from the repository root::

    .venv/bin/python benchmarks/map_city.py                       # 10 x 10 km (100 km^2), 1 then 2 workers
    .venv/bin/python benchmarks/map_city.py --size-km 4 --workers 1   # a quicker look

What runs (the real parts, started by our own ``infra/``): the sample catalog (generator v2, one city, one year)
served by ``rustac serve`` (:class:`infra.stac.StacServer`), a Prefect server (:func:`infra.prefect_server.
prefect_api_for_run`), a ``dask scheduler`` and N ``dask worker`` processes (:class:`infra.cluster.ProcessCluster`,
one thread each), and the ``map-city`` flow called with ``dask_address`` = that scheduler, ``tiling.torch_threads
= 1`` (one torch thread per worker) and a seeded, untrained CroFuseNet at the paper's width (``base_channels=32``;
the speed of a forward does not depend on the weights). Each worker count maps the city into a fresh output root,
so every run does the whole job: search, cube, prediction, reference labels, statistics, quicklooks, products.

Measured from outside, without changing library code: timers around the library calls the flow's tasks make
(patched module attributes in this process), the dask task stream of the scheduler (which task ran how long on
which worker: the cube's read / composite / write tasks and the prediction's chunk tasks), timers installed on the
workers with ``client.run`` around the model call, the cube-region reads and the zarr chunk writes, and
``/proc/<pid>/io`` ``rchar`` (bytes read through ``read(2)``) of the workers and of this process.

Where work runs on several workers at once, a stage's wall time is split between its parts in proportion to the
worker-seconds of their tasks (stated in the output). Prefect overhead is the flow's wall time minus every timed
library call (so it also holds the flow's own glue: lease, dask client connect, marker).

Prints a breakdown table per worker count, the ratio end-to-end / (read + model) (target <= 1.3), and the 1 -> 2
worker speed-up (target >= 1.8x on 2 cores). Asserts nothing. ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# ---------------------------------------------------------------------------------------------------------------------
# Timers in this (the flow's) process: wrap module attributes that the flow's tasks look up at call time.
# ---------------------------------------------------------------------------------------------------------------------
TIMES: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
SPANS: dict[str, list[tuple[float, float]]] = defaultdict(list)
"""Wall-clock (epoch) spans of each stage's calls, to attribute dask tasks to the stage they ran in."""


def _wrap(module: Any, name: str, stage: str) -> None:
    """Replace ``module.name`` by a timed wrapper that adds its wall time to ``TIMES[stage]`` (once only)."""
    original = getattr(module, name, None)
    if original is None or getattr(original, "_bench_stage", None):
        if original is None:
            print(f"  (note: {module.__name__}.{name} not found: stage {stage!r} is not timed)")
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        start, epoch = time.perf_counter(), time.time()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[stage] += time.perf_counter() - start
            CALLS[stage] += 1
            SPANS[stage].append((epoch, time.time()))

    timed._bench_stage = stage  # type: ignore[attr-defined]
    timed.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(module, name, timed)


CUBE_IO: dict[str, float] = defaultdict(float)
"""Bytes the workers read (rchar) while the cube graph ran, and the bytes on disk of the assets it read."""


def _workers_rchar() -> int:
    from distributed import default_client

    return sum(default_client().run(_rchar).values())


def _wrap_cube_io() -> None:
    """Around ``write_cube`` (the cube's dask graph): the workers' rchar before and after it (so the model
    checkpoint and the prediction's reads are not counted); around ``search_season``: the size on disk of every
    asset the cube reads (the S2 bands + SCL, the S1 VV/VH) of the scenes it found."""
    import crofuse.cube
    import crofuse.cube.build

    write_cube = crofuse.cube.build.write_cube

    def counted(*args: Any, **kwargs: Any) -> Any:
        before = _workers_rchar()
        try:
            return write_cube(*args, **kwargs)
        finally:
            CUBE_IO["worker_rchar"] += _workers_rchar() - before

    crofuse.cube.build.write_cube = counted
    search = crofuse.cube.search_season

    def sized(config: Any, *args: Any, **kwargs: Any) -> Any:
        from urllib.parse import urlparse

        items = search(config, *args, **kwargs)
        keys = {*config.catalog_profile.optical_assets.values(), config.catalog_profile.scl_asset,
                *config.sar_source_profile.sar_assets.values()}
        total = 0
        for item in [*items.optical, *items.sar]:
            for key, asset in item.assets.items():
                href = urlparse(asset.href)
                if key in keys and href.scheme in ("", "file") and os.path.exists(href.path):
                    total += os.path.getsize(href.path)
        CUBE_IO["asset_bytes"] += total
        return items

    crofuse.cube.search_season = sized


def install_client_timers() -> None:
    import crofuse.cube
    import crofuse.cube.assets
    import crofuse.cube.build
    import crofuse.labels
    import crofuse.labels.reference
    import crofuse.layout
    import crofuse.products
    import crofuse.quicklooks
    import crofuse.statistics
    import flows.map_city  # noqa: F401  (the package re-exports the flow under the module's name)
    import tiling
    import tiling.cog

    _wrap_cube_io()  # first: the timers below then wrap these (their own time is counted in their stage)
    _wrap(crofuse.labels, "city_extent", "search")          # resolve-aoi: the city's extent from the labels items
    _wrap(crofuse.cube, "search_season", "search")           # search-scenes
    flow_module = sys.modules["flows.map_city"]
    _wrap(crofuse.cube, "build_cube", "cube")                # build-cube, everything (parts below)
    _wrap(crofuse.cube.assets, "check_headers", "cube/asset headers")
    _wrap(crofuse.cube.assets, "verify_files", "cube/asset checksums")
    _wrap(crofuse.cube.build, "assemble", "cube/graph")
    _wrap(crofuse.cube.build, "write_cube", "cube/compute")  # the dask graph: read + composite + zarr write
    _wrap(crofuse.cube.build, "_impossible_report", "cube/checks")
    _wrap(crofuse.cube.build, "_coverage", "cube/checks")
    _wrap(crofuse.cube.build, "publish", "cube/publish")
    _wrap(tiling, "predict_cube", "predict")                 # predict, everything (parts below)
    _wrap(tiling.cog, "write_cog", "predict/COGs")
    _wrap(crofuse.labels.reference, "write_reference", "reference labels")
    _wrap(crofuse.layout, "publish", "publication")
    _wrap(flow_module, "checkpoint_sha256", "checkpoint hash")
    _wrap(flow_module, "write_marker", "publication")
    _wrap(crofuse.statistics, "update_statistics", "statistics")
    _wrap(crofuse.statistics, "load_record", "statistics")
    for name in ("city_year_quicklook", "refresh_stale_quicklooks", "change_plot"):
        _wrap(crofuse.quicklooks, name, "quicklooks")
    _wrap(crofuse.products, "publish", "products (STAC item)")


# ---------------------------------------------------------------------------------------------------------------------
# Timers on the dask workers (installed with client.run; each worker keeps its own totals)
# ---------------------------------------------------------------------------------------------------------------------
def _worker_install() -> str:
    """Timers on this worker: the model call, the cube-region reads and maps.zarr chunk writes of the prediction,
    and odc-loader's per-source raster read (``odc.loader._rio._rio_read``: open + windowed read/warp of one COG
    band into one cube chunk) with the decoded bytes it returned."""
    import time as _time

    import tiling.inference as ti
    import tiling.predict as tp
    import tiling.store as ts

    if getattr(tp, "_bench_times", None) is not None:
        return "already"
    times: dict[str, float] = {"model": 0.0, "region read": 0.0, "zarr write": 0.0, "model calls": 0.0,
                               "model windows": 0.0, "raster read": 0.0, "raster reads": 0.0,
                               "raster decoded bytes": 0.0, "model load": 0.0}
    tp._bench_times = times

    def timer(fn, key):
        def timed(*a, **k):
            t = _time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                times[key] += _time.perf_counter() - t
        return timed

    plain_load = tp.load_model

    def load_model(*a, **k):
        import dataclasses

        t = _time.perf_counter()
        model = plain_load(*a, **k)  # the first call on a worker reads and builds the model; later ones hit a cache
        times["model load"] += _time.perf_counter() - t

        def count(fn):
            if fn is None:
                return None

            def timed(optical, sar):
                t = _time.perf_counter()
                try:
                    return fn(optical, sar)
                finally:
                    times["model"] += _time.perf_counter() - t
                    times["model calls"] += 1
                    times["model windows"] += len(optical)
            return timed

        return dataclasses.replace(model, predict_fn=count(model.predict_fn),
                                   predict_heads_fn=count(model.predict_heads_fn))

    tp.load_model = load_model
    notes = []
    if hasattr(ti, "read_region"):
        ti.read_region = timer(ti.read_region, "region read")
    else:
        notes.append("tiling.inference.read_region not found")
    if hasattr(ts, "write_chunk"):
        ts.write_chunk = timer(ts.write_chunk, "zarr write")
    else:
        notes.append("tiling.store.write_chunk not found")
    try:
        import odc.loader._rio as rio

        plain_read = rio._rio_read

        def raster_read(*a, **k):
            t = _time.perf_counter()
            try:
                out = plain_read(*a, **k)
                times["raster decoded bytes"] += float(getattr(out[1], "nbytes", 0))
                return out
            finally:
                times["raster read"] += _time.perf_counter() - t
                times["raster reads"] += 1
        rio._rio_read = raster_read
    except (ImportError, AttributeError):
        notes.append("odc.loader._rio._rio_read not found: raster reads not timed")
    return "; ".join(notes) or "ok"


def _warm_up() -> str:
    """Import what the tasks use, so the figures are those of a warm cluster (a long-lived cluster maps many
    city-years; a fresh worker's imports, ~5-10 s, are a one-off and are not counted in the run)."""
    import odc.stac  # noqa: F401
    import rasterio  # noqa: F401
    import torch  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    import crofuse.cube
    import crofuse.cube.build  # noqa: F401
    import tiling.predict  # noqa: F401

    return "warm"


def _worker_times() -> dict[str, float]:
    import tiling.predict as tp

    return dict(getattr(tp, "_bench_times", {}) or {})


def _worker_reset() -> None:
    import tiling.predict as tp

    for k in getattr(tp, "_bench_times", {}) or {}:
        tp._bench_times[k] = 0.0


def _rchar() -> int:
    """Bytes this process read through read(2)/pread(2) so far (/proc/self/io; includes the page cache)."""
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# Task stream: classify the tasks of one window of time
# ---------------------------------------------------------------------------------------------------------------------
def _prefix(key: Any) -> str:
    from dask.utils import key_split

    return key_split(key)


def task_extent(stream: list[dict[str, Any]], spans: list[tuple[float, float]]) -> tuple[float, float, int]:
    """Seconds from the start of ``spans`` to the first task's start, from the last task's stop to the end, and the
    number of tasks (how long the driver took to build and send the graph, and to finish after it)."""
    if not spans:
        return 0.0, 0.0, 0
    a, b = spans[0][0], spans[-1][1]
    starts, stops = [], []
    for rec in stream:
        for part in rec.get("startstops", ()):
            if part.get("action") == "compute" and a - 0.5 <= part["start"] <= b + 0.5:
                starts.append(part["start"])
                stops.append(part["stop"])
    if not starts:
        return 0.0, 0.0, 0
    return min(starts) - a, b - max(stops), len(starts)


def task_seconds(stream: list[dict[str, Any]], spans: list[tuple[float, float]]) -> dict[str, float]:
    """Worker-seconds of computation per task prefix, for the tasks that started inside one of ``spans``."""
    out: dict[str, float] = defaultdict(float)
    for rec in stream:
        for part in rec.get("startstops", ()):
            if part.get("action") != "compute":
                continue
            if any(a - 0.5 <= part["start"] <= b + 0.5 for a, b in spans):
                out[_prefix(rec["key"])] += part["stop"] - part["start"]
    return dict(out)


# ---------------------------------------------------------------------------------------------------------------------
def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def prepare(work: Path, size_km: float, base_channels: int) -> tuple[Path, Path, dict[str, float]]:
    from crofuse.synthetic import WUHAN, SampleConfig, build_catalog
    from tests.fixtures.tiling import make_tiling_checkpoint

    prep: dict[str, float] = {}
    catalog = work / f"catalog-{size_km:g}km"
    t0 = time.perf_counter()
    build_catalog(catalog, SampleConfig(cities=(WUHAN,), years=(2022,), size_km=size_km), workers=1)
    prep["catalog build (reused if present)"] = time.perf_counter() - t0
    ckpt = work / f"crofusenet-w{base_channels}.safetensors"
    t0 = time.perf_counter()
    if not ckpt.exists():
        make_tiling_checkpoint(ckpt, base_channels=base_channels)
    prep["checkpoint"] = time.perf_counter() - t0
    return catalog, ckpt, prep


def run_once(*, workers: int, stac_url: str, ckpt: Path, out: Path, chunk: int, batch: int,
             cube_chunk: int | None = None) -> dict[str, Any]:
    """One map-city run on a fresh ProcessCluster of ``workers`` one-thread workers; returns the figures."""
    import distributed

    from flows import map_city
    from infra.cluster import ProcessCluster

    TIMES.clear()
    CALLS.clear()
    SPANS.clear()
    CUBE_IO.clear()
    with ProcessCluster(n_workers=workers, threads_per_worker=1) as cluster, \
            distributed.Client(cluster.scheduler_address) as client:
        client.get_task_stream()  # installs the scheduler's task-stream plugin before the run
        client.run(_warm_up)
        notes = client.run(_worker_install)
        client.run(_worker_reset)
        rchar0_workers = client.run(_rchar)
        rchar0_self = _rchar()
        load0 = _load()
        wall0 = time.time()
        t0 = time.perf_counter()
        result = map_city(
            city="wuhan", year=2022, catalog=stac_url, checkpoint=str(ckpt), output=str(out),
            dask_address=cluster.scheduler_address,
            tiling={"chunk_size": chunk, "batch_size": batch, "torch_threads": 1, "device": "cpu"},
            cube_options={"chunk_size": cube_chunk} if cube_chunk else None,
        )
        e2e = time.perf_counter() - t0
        wall1 = time.time()
        load1 = _load()
        rchar_workers = sum(client.run(_rchar).values()) - sum(rchar0_workers.values())
        rchar_self = _rchar() - rchar0_self
        wtimes = client.run(_worker_times)
        stream = client.get_task_stream(start=wall0 - 1, stop=wall1 + 1)
    stages = dict(TIMES)
    cube_prefixes = task_seconds(stream, SPANS.get("cube/compute", []))
    predict_prefixes = task_seconds(stream, SPANS.get("predict", []))
    # tiling's tasks: run_windows (phase 1: each window once, the model) and run_chunk (phase 2: sums, encode, write)
    chunk_prefixes = {p: v for p, v in predict_prefixes.items() if "chunk" in p or "windows" in p}
    predict_prefixes = chunk_prefixes or predict_prefixes
    w = {k: sum(t.get(k, 0.0) for t in wtimes.values()) for k in next(iter(wtimes.values()))}
    store_s = sum(v for p, v in cube_prefixes.items() if "store" in p.lower() or "zarr" in p.lower())
    return {
        "workers": workers,
        "e2e_s": e2e,
        "stages": stages,
        "calls": dict(CALLS),
        "cube_task_seconds": sum(cube_prefixes.values()),
        "cube_task_extent": task_extent(stream, SPANS.get("cube/compute", [])),
        "predict_task_extent": task_extent(stream, SPANS.get("predict", [])),
        "cube_store_task_seconds": store_s,
        "cube_prefix_seconds": dict(sorted(cube_prefixes.items(), key=lambda kv: -kv[1])),
        "chunk_task_seconds": sum(predict_prefixes.values()),
        "predict_prefix_seconds": predict_prefixes,
        "worker_times": w,
        "worker_notes": notes,
        "bytes_read_workers": rchar_workers,
        "cube_bytes_read_workers": CUBE_IO.get("worker_rchar", 0.0),
        "cube_asset_bytes": CUBE_IO.get("asset_bytes", 0.0),
        "bytes_read_flow_process": rchar_self,
        "load_before": load0,
        "load_after": load1,
        "chunks_computed": result.get("chunks_computed"),
        "windows": result.get("windows"),
        "aoi_km2": (result.get("statistics") or {}).get("aoi_km2"),
    }


def breakdown(r: dict[str, Any]) -> tuple[list[tuple[str, float, str]], dict[str, float]]:
    """Rows ``(stage, wall seconds, note)`` that add up to the end-to-end time, and the headline figures.

    Work on the workers is measured in worker-seconds; with ``n`` workers busy at once its wall share is
    worker-seconds / n, and what is left of a stage's wall time is the time its workers were not all busy
    (scheduling, stragglers, the driver's own steps)."""
    s, n, wt = r["stages"], r["workers"], r["worker_times"]
    g = s.get
    e2e = r["e2e_s"]
    read = wt["raster read"] / n
    write = r["cube_store_task_seconds"] / n
    composite = max(0.0, r["cube_task_seconds"] / n - read - write)
    checks = g("cube/asset headers", 0.0) + g("cube/asset checksums", 0.0)
    cube_parts = g("cube/graph", 0.0) + g("cube/checks", 0.0) + g("cube/publish", 0.0)
    cube_idle = g("cube/compute", 0.0) - read - write - composite
    cube_rest = g("cube", 0.0) - checks - g("cube/compute", 0.0) - cube_parts
    predict, cogs = g("predict", 0.0), g("predict/COGs", 0.0)
    model, zarr, load = wt["model"] / n, wt["zarr write"] / n, wt["model load"] / n
    chunk = r["chunk_task_seconds"] / n
    tiling_in_tasks = max(0.0, chunk - model - zarr - load)
    tiling_rest = predict - cogs - chunk
    timed = (g("search", 0.0) + g("cube", 0.0) + predict + g("reference labels", 0.0) + g("publication", 0.0)
             + g("checkpoint hash", 0.0) + g("statistics", 0.0) + g("quicklooks", 0.0)
             + g("products (STAC item)", 0.0))
    rows = [
        ("search (STAC: AOI + season)", g("search", 0.0), "flow process, rustac on loopback"),
        ("asset checks (headers + checksums)", checks, "flow process; the checksums read every asset once"),
        ("load/read (COG windows -> cube grid)", read, "odc-loader raster reads on the workers"),
        ("composite (median / mean dB, masks)", composite, "the cube graph's other tasks"),
        ("cube write (zarr store tasks)", write, ""),
        ("cube: dask idle / scheduling", cube_idle, "cube graph wall minus its tasks' worker-s / n"),
        ("cube: graph, coverage + value checks, publish", cube_parts, "flow process (reads the new store back)"),
        ("cube: lease, rest", cube_rest, "build-cube wall minus the above"),
        ("model (CroFuseNet forward)", model, "predict_fn calls on the workers"),
        ("model load on the workers", load, "first chunk of each worker: read + build the checkpoint"),
        ("tiling overhead in the chunk tasks", tiling_in_tasks, "region reads, reflection, Hann blending, encode"),
        ("tiling: driver set-up + dask idle", tiling_rest, "open/inspect cube, hash, create store, stragglers"),
        ("zarr writing (maps.zarr chunks)", zarr, "on the workers"),
        ("COG writing (probability, impervious, ...)", cogs, "flow process, after the chunks"),
        ("reference labels", g("reference labels", 0.0), "labels item -> reference.tif"),
        ("publication + marker + checkpoint hash", g("publication", 0.0) + g("checkpoint hash", 0.0), ""),
        ("statistics", g("statistics", 0.0), "statistics.zarr/.csv"),
        ("quicklooks", g("quicklooks", 0.0), "PNG quicklook + change plot"),
        ("products (STAC item + collection)", g("products (STAC item)", 0.0), ""),
        ("Prefect overhead + flow glue", e2e - timed, "end-to-end minus every timed call (lease, client, states)"),
    ]
    heads = {"read_s": read, "model_s": model, "e2e_s": e2e}
    return rows, heads


def report(r: dict[str, Any], size_km: float) -> dict[str, float]:
    rows, heads = breakdown(r)
    e2e = r["e2e_s"]
    km2 = r.get("aoi_km2") or size_km * size_km
    wt = r["worker_times"]
    print(f"\n### {r['workers']} worker(s) x 1 thread; load average (1/5/15 min) before {r['load_before']}, after "
          f"{r['load_after']}")
    print(f"end-to-end map-city: {e2e:.1f} s for {km2:.1f} km^2 ({km2 / e2e:.3f} km^2/s); "
          f"{r['chunks_computed']} chunks, {r['windows']} windows; worker notes: {r['worker_notes']}")
    print("| stage | wall s | % of end-to-end | note |")
    print("|---|---:|---:|---|")
    for name, sec, note in rows:
        print(f"| {name} | {sec:.1f} | {100 * sec / e2e:.1f} | {note} |")
    mb = r["cube_bytes_read_workers"] / 1e6
    assets = r["cube_asset_bytes"] / 1e6
    print(f"read (cube graph): workers' rchar {mb:.0f} MB = {mb / max(km2, 1e-9):.2f} MB/km^2 (the assets it reads "
          f"hold {assets:.0f} MB on disk = {assets / max(km2, 1e-9):.2f} MB/km^2) in {wt['raster read']:.2f} worker-s "
          f"of raster reads ({int(wt['raster reads'])} reads) -> {mb / max(wt['raster read'], 1e-9):.0f} MB/s per "
          f"worker; decoded {wt['raster decoded bytes'] / 1e6:.0f} MB")
    print(f"other reads: workers' rchar over the whole run {r['bytes_read_workers'] / 1e6:.0f} MB (adds the "
          f"checkpoint, ~145 MB per worker at paper width, and the cube regions); flow process "
          f"{r['bytes_read_flow_process'] / 1e6:.0f} MB (checksums of every asset, COG writing, statistics, quicklooks)")
    print(f"model: {wt['model']:.1f} worker-s for {int(wt['model windows'])} windows = "
          f"{wt['model windows'] / max(wt['model'], 1e-9):.2f} windows/s per 1-thread worker; chunk tasks "
          f"{r['chunk_task_seconds']:.1f} worker-s (region reads {wt['region read']:.1f}, zarr writes "
          f"{wt['zarr write']:.1f}); cube tasks {r['cube_task_seconds']:.1f} worker-s")
    for what in ("cube", "predict"):
        lead, tail, count = r[f"{what}_task_extent"]
        print(f"{what}: {count} tasks; first task started {lead:.1f} s after the stage began, the last ended "
              f"{tail:.1f} s before it ended")
    top = list(r["cube_prefix_seconds"].items())[:8]
    print("cube graph, worker-s by task prefix: " + ", ".join(f"{p} {v:.1f}" for p, v in top))
    ratio = e2e / max(heads["read_s"] + heads["model_s"], 1e-9)
    print(f"ratio end-to-end / (read + model) = {e2e:.1f} / ({heads['read_s']:.1f} + {heads['model_s']:.1f}) = "
          f"**{ratio:.2f}** (target <= 1.3)")
    return {**heads, "ratio": ratio, "km2": km2, "cube_bytes_read": r["cube_bytes_read_workers"],
            "asset_bytes": r["cube_asset_bytes"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-km", type=float, default=10.0, help="side of the sample city (10: 100 km^2)")
    parser.add_argument("--base-channels", type=int, default=32, help="CroFuseNet width (paper: 32)")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--chunk", type=int, default=512, help="output chunk side (one dask task each)")
    parser.add_argument("--batch", type=int, default=16, help="windows per forward")
    parser.add_argument("--cube-chunk", type=int, default=None, help="cube chunk side (default: the library's, 512)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "crofuse-bench-mapcity",
                        help="where the catalog and checkpoint are kept between runs (outputs: a fresh subfolder)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    import torch

    from infra.prefect_server import prefect_api_for_run
    from infra.stac import StacServer

    os.environ.setdefault("DO_NOT_TRACK", "1")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.node()} {platform.machine()}, {len(os.sched_getaffinity(0))} cores, torch "
          f"{torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {_load()}")
    catalog, ckpt, prep = prepare(work, args.size_km, args.base_channels)
    print("preparation (not in the figures): " + ", ".join(f"{k} {v:.1f} s" for k, v in prep.items()))
    print(f"city: wuhan 2022, {args.size_km:g} x {args.size_km:g} km; CroFuseNet base_channels={args.base_channels}; "
          f"chunk {args.chunk}, batch {args.batch}, window 128 / stride 96, one torch thread per worker")
    install_client_timers()
    results = []
    runs_root = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    with StacServer(catalog) as stac, prefect_api_for_run(home=work / "prefect-home"):
        for n in [int(x) for x in args.workers.split(",") if x.strip()]:
            r = run_once(workers=n, stac_url=stac.url, ckpt=ckpt, out=runs_root / f"w{n}", chunk=args.chunk,
                         batch=args.batch, cube_chunk=args.cube_chunk)
            r["summary"] = report(r, args.size_km)
            results.append(r)
    by_n = {r["workers"]: r for r in results}
    if 1 in by_n and 2 in by_n:
        a, b = by_n[1], by_n[2]
        print(f"\n1 -> 2 workers (same run settings): end-to-end {a['e2e_s']:.1f} s -> {b['e2e_s']:.1f} s = "
              f"**{a['e2e_s'] / b['e2e_s']:.2f}x**; prediction stage {a['stages'].get('predict', 0):.1f} s -> "
              f"{b['stages'].get('predict', 0):.1f} s = {a['stages'].get('predict', 0) / max(b['stages'].get('predict', 0), 1e-9):.2f}x; "
              f"cube stage {a['stages'].get('cube', 0):.1f} s -> {b['stages'].get('cube', 0):.1f} s = "
              f"{a['stages'].get('cube', 0) / max(b['stages'].get('cube', 0), 1e-9):.2f}x (target >= 1.8x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
        print(f"figures written to {args.json}")
    with contextlib.suppress(Exception):
        import shutil

        shutil.rmtree(runs_root)


if __name__ == "__main__":
    main()
