"""``predict_cube``: a cube and a checkpoint in, impervious maps (COGs + ``maps.zarr``) out, chunk by chunk on dask.

Each output chunk is one task: it reads its pixels plus the halo its windows need straight from the cube (never the
whole city), runs its windows in batches on the worker's cached model, blends, crops, writes its own region of
``maps.zarr`` and then its completeness marker. The client only holds the task list, so memory on both sides is
set by ``TilingConfig.chunk_size``, not by the size of the city.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from crofuse import IMPERVIOUS, NODATA_LABEL, OPTICAL_BANDS, PERVIOUS, SAR_BANDS
from crofuse.errors import CubeError, InferenceError
from tiling import store as maps_store
from tiling.config import TilingConfig
from tiling.inference import predict_chunk_probability
from tiling.model import file_sha256, load_model, set_torch_threads
from tiling.windows import chunk_bounds

IMPERVIOUS_COG = "impervious.tif"
PROBABILITY_COG = "probability.tif"
_CUBE_ATTRS = ("city", "year", "catalog", "optical_items", "sar_items", "crofuse_version", "season")


@dataclass(frozen=True)
class PredictionOutputs:
    """Where the maps went and what the run did."""

    out_dir: Path
    impervious: Path
    probability: Path
    maps: Path
    checkpoint_sha256: str
    chunks_total: int
    chunks_computed: int
    chunks_skipped: int
    windows: int
    seconds: float


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs for one output chunk (small and picklable)."""

    cube_path: str
    store: str
    progress_dir: str
    shape: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]
    checkpoint: str
    sha256: str
    config: TilingConfig
    torch_threads: int | None


@dataclass(frozen=True)
class ChunkReport:
    """What one chunk task did."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    skipped: bool
    windows: int
    seconds: float
    pid: int


# ---------------------------------------------------------------------------------------------------------- cube
def open_cube_dataset(path: str | Path):
    """Open an input cube lazily (``crofuse.cube.open_cube`` when the cube package provides it)."""
    try:
        from crofuse.cube import open_cube  # type: ignore[attr-defined]
    except ImportError:
        try:
            from crofuse.cube.store import open_cube
        except ImportError:
            open_cube = None
    path = Path(path)
    if not path.exists():
        raise CubeError(f"input cube {path} does not exist; build it with `crofuse cube` first")
    import rioxarray  # noqa: F401
    import xarray as xr

    cube = open_cube(path) if open_cube is not None else xr.open_zarr(path, decode_coords="all", consolidated=False)
    if "spatial_ref" in cube.data_vars:  # written without grid_mapping attributes: still the cube's CRS variable
        cube = cube.set_coords("spatial_ref")
    return cube


def check_cube(cube, path: str | Path) -> None:
    """Refuse a cube that does not follow the contract in docs/architecture.md, saying what is missing."""
    missing = [v for v in ("optical", "sar", "valid") if v not in cube.variables]
    if missing:
        raise CubeError(f"cube {path} lacks variable(s) {missing}; it must hold optical, sar and valid (see docs)")
    for name, bands in (("optical", OPTICAL_BANDS), ("sar", SAR_BANDS)):
        var = cube[name]
        if var.ndim != 3 or var.dims[1:] != ("y", "x"):
            raise CubeError(f"cube {path}: {name} has dims {var.dims}, expected (band, 'y', 'x')")
        band_dim = var.dims[0]
        if band_dim in var.coords:
            have = [str(b) for b in var[band_dim].values]
            if not set(bands) <= set(have):
                raise CubeError(f"cube {path}: {name} bands {have} do not include {list(bands)}")
        elif var.sizes[band_dim] != len(bands):
            raise CubeError(f"cube {path}: {name} has {var.sizes[band_dim]} bands, expected {len(bands)} {bands}")
    if cube["valid"].dims != ("y", "x"):
        raise CubeError(f"cube {path}: valid has dims {cube['valid'].dims}, expected ('y', 'x')")
    if cube.rio.crs is None:
        raise CubeError(f"cube {path} has no CRS (spatial_ref); rebuild it with `crofuse cube`")


def _in_band_order(var, bands: tuple[str, ...]):
    """Select ``bands`` in model order along the variable's first (band) dimension, whatever its name."""
    band_dim = var.dims[0]
    if band_dim in var.coords:
        return var.sel({band_dim: list(bands)})
    return var


_READERS: dict[str, object] = {}
_READERS_LOCK = threading.Lock()


def _cube_reader(path: str):
    """A per-process cached ``reader(rows, cols)`` over the cube's arrays, in model band order."""
    with _READERS_LOCK:
        reader = _READERS.get(path)
        if reader is not None:
            return reader
        import xarray as xr

        # plain lazily-indexed zarr arrays (no dask): a task reads its region synchronously, and never submits a
        # nested graph back to the cluster from inside a worker. The client already validated the cube.
        cube = xr.open_zarr(path, chunks=None, decode_coords="all", consolidated=False)
        optical, sar = cube["optical"], cube["sar"]
        optical = _in_band_order(optical, OPTICAL_BANDS)
        sar = _in_band_order(sar, SAR_BANDS)
        valid = cube["valid"]

        def reader(rows: slice, cols: slice):
            return (
                optical.isel(y=rows, x=cols).values,
                sar.isel(y=rows, x=cols).values,
                valid.isel(y=rows, x=cols).values.astype(bool),
            )

        _READERS[path] = reader
        return reader


# ---------------------------------------------------------------------------------------------------------- task
def encode_maps(probability: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Blended probability (NaN = nodata) -> (impervious uint8 1/0/255, probability uint8 percent / 255).

    Impervious where ``p > threshold``, strictly: at the default 0.5 this is the argmax of the two logits with ties
    going to pervious (``torch.argmax`` takes the first maximum), as in training and evaluation. It matters for
    checkpoints with the paper's ReLU head, where pixels whose two logits are both clipped to 0 get exactly 0.5.
    """
    nodata = ~np.isfinite(probability)
    p = np.where(nodata, 0.0, probability)
    impervious = np.where(p > threshold, IMPERVIOUS, PERVIOUS).astype(np.uint8)
    percent = np.rint(np.clip(p, 0.0, 1.0) * 100.0).astype(np.uint8)
    impervious[nodata] = NODATA_LABEL
    percent[nodata] = NODATA_LABEL
    return impervious, percent


def run_chunk(task: ChunkTask) -> ChunkReport:
    """Predict one output chunk and write it (the dask task). Skips a chunk whose marker exists."""
    start = time.perf_counter()
    marker = maps_store.marker_path(Path(task.progress_dir), task.rows, task.cols)
    if marker.exists():
        return ChunkReport(task.rows, task.cols, True, 0, 0.0, os.getpid())
    model = load_model(task.checkpoint, task.sha256, config=task.config)
    if model.device == "cpu":
        set_torch_threads(task.torch_threads)
    result = predict_chunk_probability(
        _cube_reader(task.cube_path),
        task.shape,
        task.rows,
        task.cols,
        model.predict_fn,
        config=task.config,
        fill=model.fill,
    )
    impervious, percent = encode_maps(result.probability, task.config.threshold)
    maps_store.write_chunk(Path(task.store), task.rows, task.cols, impervious=impervious, probability=percent)
    seconds = time.perf_counter() - start
    maps_store.write_marker(marker, {"windows": result.n_windows, "seconds": seconds})
    return ChunkReport(task.rows, task.cols, False, result.n_windows, seconds, os.getpid())


# ---------------------------------------------------------------------------------------------------------- driver
def _run_key(cube_path: Path, cube, sha256: str, config: TilingConfig) -> str:
    payload = {
        "cube": str(cube_path.resolve()),
        "cube_attrs": {k: str(cube.attrs.get(k)) for k in _CUBE_ATTRS},
        "shape": [cube.sizes["y"], cube.sizes["x"]],
        "checkpoint_sha256": sha256,
        "tiling": config.output_fields(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def torch_threads_for(client) -> int:
    """Intra-op threads per task so that, on every host, dask threads x torch threads <= that host's cores."""

    def cores() -> int:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    nthreads = client.nthreads()
    host_cores = client.run(cores)
    by_host: dict[str, list[str]] = {}
    for addr in nthreads:
        by_host.setdefault(addr.rsplit(":", 1)[0], []).append(addr)
    per_task = [
        max(1, host_cores[addrs[0]] // max(1, sum(nthreads[a] for a in addrs))) for addrs in by_host.values()
    ]
    return min(per_task) if per_task else 1


def _execute(tasks: list[ChunkTask], client, *, progress: bool, run_key: str) -> list[ChunkReport]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="chunks", unit="chunk", disable=not progress)
    reports: list[ChunkReport] = []
    try:
        if client is None:
            for task in tasks:
                reports.append(run_chunk(task))
                bar.update(1)
            return reports
        from distributed import as_completed

        attempt = uuid.uuid4().hex[:8]  # a rerun on the same client must not pick up an older run's futures
        keys = [f"crofuse-chunk-{run_key[:12]}-{attempt}-r{t.rows[0]}-c{t.cols[0]}" for t in tasks]
        futures = client.map(run_chunk, tasks, key=keys, pure=False)
        try:
            for future in as_completed(futures):
                reports.append(future.result())
                bar.update(1)
        except Exception as exc:
            client.cancel(futures)
            raise InferenceError(
                f"a chunk task failed ({type(exc).__name__}: {exc}); the chunks already written are kept, "
                "fix the cause and rerun the same command to resume"
            ) from exc
        return reports
    finally:
        bar.close()


def predict_cube(
    cube_path: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    config: TilingConfig = TilingConfig(),
    client=None,
    progress: bool = True,
) -> PredictionOutputs:
    """Map impervious surface over a whole cube with tiled, blended CroFuseNet inference.

    Args:
        cube_path: ``inputs.zarr`` built by ``crofuse cube`` (layout in docs/architecture.md).
        checkpoint: a ``.safetensors`` checkpoint (``crofuse.checkpoint``); workers must be able to read this path.
        out_dir: ``<output>/<city>/<year>/``; receives ``impervious.tif``, ``probability.tif`` and ``maps.zarr``.
        config: windows, blending, chunking, device (:class:`TilingConfig`).
        client: a ``distributed.Client`` (e.g. from ``infra.cluster.dask_client``); ``None`` runs the chunks one
            after the other in this process.
        progress: show a progress bar over chunks.

    A rerun after an interruption skips the chunks already written and ends with the same bytes; a rerun after a
    complete run only rewrites missing COGs. A different checkpoint or tiling setting starts over.
    """
    started = time.perf_counter()
    cube_path, checkpoint, out_dir = Path(cube_path), Path(checkpoint), Path(out_dir)
    if not checkpoint.is_file():
        raise InferenceError(f"checkpoint {checkpoint} does not exist; train one with `crofuse train`")
    cube = open_cube_dataset(cube_path)
    check_cube(cube, cube_path)
    shape = (int(cube.sizes["y"]), int(cube.sizes["x"]))
    sha256 = file_sha256(checkpoint)
    run_key = _run_key(cube_path, cube, sha256, config)

    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / maps_store.MAPS_STORE
    progress_dir = out_dir / maps_store.PROGRESS_DIR
    impervious_cog, probability_cog = out_dir / IMPERVIOUS_COG, out_dir / PROBABILITY_COG
    found_key, complete = maps_store.store_state(store)
    tiles = [(r, c) for r in chunk_bounds(shape[0], config.chunk_size) for c in chunk_bounds(shape[1], config.chunk_size)]

    if found_key != run_key:  # nothing to resume from: start over (also drops stale COGs of another run)
        shutil.rmtree(progress_dir, ignore_errors=True)
        impervious_cog.unlink(missing_ok=True)
        probability_cog.unlink(missing_ok=True)
        attrs = {k: cube.attrs[k] for k in _CUBE_ATTRS if k in cube.attrs}
        attrs.update(
            {
                "cube": str(cube_path.resolve()),
                "checkpoint": checkpoint.name,
                "checkpoint_sha256": sha256,
                "tiling": json.dumps(asdict(config)),
                maps_store.RUN_KEY_ATTR: run_key,
            }
        )
        maps_store.create_store(store, cube, chunk_size=config.chunk_size, attrs=attrs)
        complete = False
    progress_dir.mkdir(exist_ok=True)

    reports: list[ChunkReport] = []
    if complete:
        skipped = len(tiles)
    else:
        todo = [t for t in tiles if not maps_store.marker_path(progress_dir, *t).exists()]
        skipped = len(tiles) - len(todo)
        threads = config.torch_threads
        if threads is None and client is not None:
            threads = torch_threads_for(client)
        tasks = [
            ChunkTask(
                cube_path=str(cube_path.resolve()),
                store=str(store.resolve()),
                progress_dir=str(progress_dir.resolve()),
                shape=shape,
                rows=rows,
                cols=cols,
                checkpoint=str(checkpoint.resolve()),
                sha256=sha256,
                config=config,
                torch_threads=threads,
            )
            for rows, cols in todo
        ]
        reports = _execute(tasks, client, progress=progress, run_key=run_key)
        skipped += sum(r.skipped for r in reports)
        maps_store.mark_complete(store)

    tags = {
        "CROFUSE_RUN_KEY": run_key,
        "CHECKPOINT_SHA256": sha256,
        "CITY": str(cube.attrs.get("city", "")),
        "YEAR": str(cube.attrs.get("year", "")),
    }
    from tiling.cog import cog_tag, write_cog

    for variable, path, resampling in (
        ("impervious", impervious_cog, "mode"),
        ("probability", probability_cog, "average"),
    ):
        if cog_tag(path, "CROFUSE_RUN_KEY") != run_key:
            write_cog(store, variable, path, crs=cube.rio.crs, transform=cube.rio.transform(), resampling=resampling, tags=tags)
    shutil.rmtree(progress_dir, ignore_errors=True)
    computed = [r for r in reports if not r.skipped]
    return PredictionOutputs(
        out_dir=out_dir,
        impervious=impervious_cog,
        probability=probability_cog,
        maps=store,
        checkpoint_sha256=sha256,
        chunks_total=len(tiles),
        chunks_computed=len(computed),
        chunks_skipped=skipped,
        windows=sum(r.windows for r in computed),
        seconds=time.perf_counter() - started,
    )
