"""``predict_cube``: a cube and a checkpoint in, impervious maps (COGs + ``maps.zarr``) out, chunk by chunk on dask.

Two tasks per output chunk, each window of the global grid running once (:mod:`tiling.windows`):

1. :func:`run_windows` reads the region of the windows the chunk owns straight from the cube (never the whole city),
   runs them in batches on the worker's cached model and writes their weighted sums over the chunk plus its spill
   into the scratch ``sums.zarr`` (:mod:`tiling.store`), then a ``.sums`` marker;
2. once every phase-1 task is done, :func:`run_chunk` adds the sums of the blocks overlapping the chunk (its own and
   its upper/left neighbours'), divides, encodes, writes its own region of ``maps.zarr`` and then its completeness
   marker.

The client only holds the task lists, so memory on both sides is set by ``TilingConfig.chunk_size``, not by the
size of the city.

Layers: the class, the calibrated probability of the shared head (the card's temperature, ``crofuse.calibration``),
its entropy (``uncertainty``) and, for CroFuseNet, the disagreement of its three heads. Each head's probability is
blended with the same Hann weights and the uncertainty layers are computed per pixel from the blended
probabilities, so they are exactly as independent of the chunking as the probability is.

The cube, the checkpoint and the output folder may be paths or ``s3://`` URLs (:mod:`crofuse.io.store`): each task
reads the cube, fetches the checkpoint (once per worker) and writes its region and marker through the store, and the
COGs are written in temporary space and published in one step, so the workers need no disk in common with the
client or each other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crofuse import IMPERVIOUS, NODATA_LABEL, OPTICAL_BANDS, PERVIOUS, SAR_BANDS, layout
from crofuse.cube import open_cube
from crofuse.cube.reader import cube_identity, cube_reader
from crofuse.errors import CrofuseError, InferenceError
from crofuse.io.store import Location, cached_copy, canonical, location
from crofuse.uncertainty import binary_entropy, head_disagreement
from tiling import store as maps_store
from tiling.config import TilingConfig
from tiling.inference import SumsPart, accumulate_chunk, predict_chunk_probability
from tiling.model import file_sha256, load_model, set_torch_threads
from tiling.windows import block_side, chunk_bounds, feeding_chunks, grid_size

log = logging.getLogger(__name__)

IMPERVIOUS_COG = layout.IMPERVIOUS
PROBABILITY_COG = layout.PROBABILITY
UNCERTAINTY_COG = layout.UNCERTAINTY
DISAGREEMENT_COG = layout.DISAGREEMENT
COGS: dict[str, tuple[str, str]] = {
    "impervious": (IMPERVIOUS_COG, "mode"),
    "probability": (PROBABILITY_COG, "average"),
    "uncertainty": (UNCERTAINTY_COG, "average"),
    "disagreement": (DISAGREEMENT_COG, "average"),
}
"""maps.zarr variable -> (COG file name, overview resampling)."""
_CUBE_ATTRS = ("city", "year", "catalog", "optical_items", "sar_items", "crofuse_version", "season")


class RecipeWarning(UserWarning):
    """The checkpoint was trained on another composite recipe than the cube it maps."""


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
    """Windows the model ran in this run (each window of the grid once; windows with no valid pixel are skipped)."""
    seconds: float
    warnings: tuple[str, ...] = ()
    uncertainty: Path | None = None
    disagreement: Path | None = None
    calibrated: bool = False
    temperature: float = 1.0
    grid_windows: int = 0
    """Windows in the global window grid; ``windows / grid_windows`` is the model work ratio (<= 1)."""


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs for one output chunk (small and picklable)."""

    cube_path: str
    cube_identity: str
    store: str
    progress_dir: str
    shape: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]
    checkpoint: str
    sha256: str
    config: TilingConfig
    torch_threads: int | None
    variables: tuple[str, ...] = ("impervious", "probability", "uncertainty")
    sums: str = ""
    """The scratch ``sums.zarr`` of phase 1 (:mod:`tiling.store`)."""
    layers: tuple[str, ...] = ("shared",)
    """The heads blended, ``"shared"`` first (the layers of ``sums``)."""


@dataclass(frozen=True)
class ChunkReport:
    """What one chunk task did."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    skipped: bool
    windows: int
    seconds: float
    pid: int


# ---------------------------------------------------------------------------------------------------------- checks
def check_inputs(cube, cube_path: Path, checkpoint: Path, *, strict: bool = False) -> list[str]:
    """Validate the checkpoint against the cube before any output is touched; return the warnings.

    See :func:`inspect_inputs`, which also returns what the run needs of the checkpoint."""
    return inspect_inputs(cube, cube_path, checkpoint, strict=strict).warnings


@dataclass(frozen=True)
class CheckedInputs:
    """What :func:`inspect_inputs` found: the warnings, the checkpoint's card and the heads of its model."""

    warnings: list[str]
    card: Any  # crofuse.checkpoint.ModelCard
    heads: tuple[str, ...]


def inspect_inputs(cube, cube_path: Path, checkpoint: Path, *, strict: bool = False) -> CheckedInputs:
    """Validate the checkpoint against the cube before any output is touched (:func:`check_inputs`).

    The checkpoint is loaded in full (every tensor checked against its card), its bands must be the cube's, and its
    training recipe (the card's ``training_data.recipe``: reducer, season, SCL mask...) is compared with the cube's
    (:func:`crofuse.cube.recipe.compare_recipes`): a different band set or resolution is refused; a different
    reducer, season, SCL mask or profile is a warning naming both values, refused with ``strict``.
    """
    from crofuse.checkpoint import load_checkpoint, model_heads
    from crofuse.cube.recipe import compare_recipes, composite_recipe
    from crofuse.errors import CheckpointMismatchError

    loaded = load_checkpoint(checkpoint, expect_bands=(OPTICAL_BANDS, SAR_BANDS))
    card = loaded.card
    trained = (card.training_data or {}).get("recipe")
    diffs = compare_recipes(trained, composite_recipe(cube.attrs))
    refused = [d for d in diffs if d.severity == "refuse" or (strict and d.severity == "warn")]
    if refused:
        raise CheckpointMismatchError(
            f"{checkpoint.name} was trained on other inputs than the cube {cube_path} holds: "
            f"{'; '.join(d.describe() for d in refused)}. Rebuild the cube with the checkpoint's recipe "
            f"(`crofuse info {checkpoint}` shows it){'' if not strict else ', or drop --strict to map anyway'}"
        )
    warnings = [
        f"{checkpoint.name} was trained on another composite recipe than the cube {cube_path.name} "
        f"({'; '.join(d.describe() for d in diffs if d.severity == 'warn')}): the maps may be biased; rebuild the "
        "cube with the training recipe, or pass --strict to refuse such runs"
    ] if any(d.severity == "warn" for d in diffs) else []
    if trained is None:
        log.info("%s records no training recipe (trained on patches from outside crofuse.trainingset): the cube "
                 "cannot be checked against it", checkpoint.name)
    return CheckedInputs(warnings=warnings, card=card, heads=model_heads(loaded.model))


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


def encode_percent(values: np.ndarray) -> np.ndarray:
    """A 0..1 layer (NaN = nodata) -> uint8 whole percent 0..100, 255 nodata (the ``probability`` encoding)."""
    nodata = ~np.isfinite(values)
    percent = np.rint(np.clip(np.where(nodata, 0.0, values), 0.0, 1.0) * 100.0).astype(np.uint8)
    percent[nodata] = NODATA_LABEL
    return percent


def encode_layers(heads: dict[str, np.ndarray], threshold: float, variables: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Blended head probabilities of one chunk (NaN = nodata) -> the uint8 layers named in ``variables``.

    ``uncertainty`` is the binary entropy of the shared probability and ``disagreement`` the range of all heads'
    probabilities (:mod:`crofuse.uncertainty`), both from the unrounded blended values; their nodata is the
    probability's.
    """
    shared = heads["shared"]
    nodata = ~np.isfinite(shared)
    impervious, percent = encode_maps(shared, threshold)
    layers = {"impervious": impervious, "probability": percent}
    if "uncertainty" in variables:
        layers["uncertainty"] = encode_percent(binary_entropy(shared))
    if "disagreement" in variables:
        others = [heads[k] for k in sorted(heads) if k != "shared"]
        if others:
            spread = head_disagreement([shared, *others])
            spread[nodata] = np.nan
        else:  # no window ran in this chunk: all nodata
            spread = np.full(shared.shape, np.nan, dtype=np.float32)
        layers["disagreement"] = encode_percent(spread)
    return {k: layers[k] for k in variables}


def _sums_index(task: ChunkTask) -> tuple[int, int]:
    return task.rows[0] // task.config.chunk_size, task.cols[0] // task.config.chunk_size


def run_windows(task: ChunkTask) -> ChunkReport:
    """Phase 1 of one chunk (a dask task): run the windows it owns, write their sums, then its ``.sums`` marker.
    Skips a chunk whose marker exists. A chunk whose windows have no valid pixel writes nothing (the store's fill
    is 0: no contribution)."""
    start = time.perf_counter()
    marker = maps_store.sums_marker_path(task.progress_dir, task.rows, task.cols)
    if marker.exists():
        return ChunkReport(task.rows, task.cols, True, 0, 0.0, os.getpid())
    model = load_model(task.checkpoint, task.sha256, config=task.config)
    if model.device == "cpu":
        set_torch_threads(task.torch_threads)
    predict_fn = model.predict_heads_fn if len(task.layers) > 1 else model.predict_fn
    sums = accumulate_chunk(cube_reader(task.cube_path, task.cube_identity), task.shape, task.rows, task.cols,
                            predict_fn, config=task.config, names=task.layers)
    if sums.total is not None and sums.weight_sum is not None:
        maps_store.write_sums(task.sums, _sums_index(task), sums.total, sums.weight_sum)
    seconds = time.perf_counter() - start
    maps_store.write_marker(marker, {"windows": sums.n_windows, "seconds": seconds})
    return ChunkReport(task.rows, task.cols, False, sums.n_windows, seconds, os.getpid())


def _stored_partials(task: ChunkTask):
    """``partials`` for :func:`predict_chunk_probability` reading phase 1's sums back from the store."""
    array, layers = maps_store.open_sums(task.sums)
    chunk = task.config.chunk_size

    def partials(owner, rows, cols) -> SumsPart | None:
        (r0, _), (c0, _) = owner
        block = array[r0 // chunk, c0 // chunk, :, rows[0] - r0 : rows[1] - r0, cols[0] - c0 : cols[1] - c0]
        weight_sum = block[-1]
        if not weight_sum.any():  # never written (no window with a valid pixel), or a region no window reached
            return None
        return SumsPart(layers, block[:-1], weight_sum)

    return partials


def run_chunk(task: ChunkTask) -> ChunkReport:
    """Phase 2 of one output chunk (a dask task): blend it from the stored sums and write it. Skips a chunk whose
    marker exists. Runs no model."""
    start = time.perf_counter()
    marker = maps_store.marker_path(task.progress_dir, task.rows, task.cols)
    if marker.exists():
        return ChunkReport(task.rows, task.cols, True, 0, 0.0, os.getpid())
    result = predict_chunk_probability(
        cube_reader(task.cube_path, task.cube_identity),
        task.shape,
        task.rows,
        task.cols,
        config=task.config,
        partials=_stored_partials(task),
    )
    heads = dict(result.heads) or {"shared": result.probability}
    layers = encode_layers(heads, task.config.threshold, task.variables)
    maps_store.write_chunk(task.store, task.rows, task.cols, **layers)
    seconds = time.perf_counter() - start
    maps_store.write_marker(marker, {"windows": result.n_windows, "seconds": seconds})
    return ChunkReport(task.rows, task.cols, False, result.n_windows, seconds, os.getpid())


# ---------------------------------------------------------------------------------------------------------- driver
def _run_key(cube, sha256: str, config: TilingConfig, cube_path: str = "") -> str:
    """What a finished run is: the cube's content identity (not its path: a moved or copied output tree resumes),
    the checkpoint's sha256 and the tiling settings that change the bytes. A cube without an identity (not written
    by :func:`crofuse.cube.store.publish`: no ``fingerprint``, no ``build_id``) falls back to its path, so another
    such cube at another path is never taken for a finished one (a moved tree of it is recomputed)."""
    identity = cube_identity(cube.attrs)
    payload = {
        "cube": identity if identity.strip("/") else f"path:{cube_path}",
        "cube_attrs": {k: str(cube.attrs.get(k)) for k in _CUBE_ATTRS},
        "shape": [cube.sizes["y"], cube.sizes["x"]],
        "checkpoint_sha256": sha256,
        "tiling": config.output_fields(),
        "maps_layout": maps_store.LAYOUT_VERSION,
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


def _task_error(exc: Exception) -> Exception:
    """The error a failed chunk task surfaces as, the same with or without a dask client: crofuse's own errors
    (an unreadable cube, a checkpoint that changed) as they are, anything else as :class:`InferenceError`."""
    if isinstance(exc, CrofuseError):
        return exc
    return InferenceError(
        f"a chunk task failed ({type(exc).__name__}: {exc}); the chunks already written are kept, fix the cause "
        "and rerun the same command to resume"
    )


def _execute(tasks: list[ChunkTask], client, *, progress: bool, run_key: str, fn=None,
             stage: str = "chunk") -> list[ChunkReport]:
    """Run ``fn`` (default :func:`run_chunk`) on every task, in this process or on the dask ``client``."""
    from tqdm.auto import tqdm

    fn = run_chunk if fn is None else fn
    desc = {"chunk": "chunks", "windows": "windows (chunks)"}.get(stage, stage)
    bar = tqdm(total=len(tasks), desc=desc, unit="chunk", disable=not progress)
    reports: list[ChunkReport] = []
    try:
        if client is None:
            try:
                for task in tasks:
                    reports.append(fn(task))
                    bar.update(1)
            except Exception as exc:
                raise _task_error(exc) from exc
            return reports
        from distributed import as_completed

        attempt = uuid.uuid4().hex[:8]  # a rerun on the same client must not pick up an older run's futures
        keys = [f"crofuse-{stage}-{run_key[:12]}-{attempt}-r{t.rows[0]}-c{t.cols[0]}" for t in tasks]
        futures = client.map(fn, tasks, key=keys, pure=False)
        try:
            for future in as_completed(futures):
                reports.append(future.result())
                bar.update(1)
        except Exception as exc:
            client.cancel(futures)
            raise _task_error(exc) from exc
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
    strict: bool = False,
) -> PredictionOutputs:
    """Map impervious surface over a whole cube with tiled, blended CroFuseNet inference.

    Args:
        cube_path: ``inputs.zarr`` built by ``crofuse cube`` (layout in docs/architecture.md); a path or a URL.
        checkpoint: a ``.safetensors`` checkpoint (``crofuse.checkpoint``): an ``s3://`` URL (each worker fetches
            it once), or a path every worker can read.
        out_dir: ``<output>/<city>/<year>/`` (a path or an ``s3://`` URL); receives ``impervious.tif``,
            ``probability.tif``, ``uncertainty.tif`` (and ``disagreement.tif``) and ``maps.zarr``.
        config: windows, blending, chunking, device (:class:`TilingConfig`).
        client: a ``distributed.Client`` (e.g. from ``infra.cluster.dask_client``); ``None`` runs the chunks one
            after the other in this process.
        progress: show a progress bar over chunks.
        strict: refuse a cube whose composite recipe (reducer, season, SCL mask, profile) differs from the one the
            checkpoint was trained on, instead of warning (:func:`check_inputs`).

    A rerun after an interruption skips the chunks already written and ends with the same bytes; a rerun after a
    complete run only rewrites missing COGs. A different checkpoint or tiling setting starts over.
    """
    started = time.perf_counter()
    cube_loc, checkpoint_loc, out = location(str(cube_path)), location(str(checkpoint)), location(str(out_dir))
    if not checkpoint_loc.is_file():
        raise InferenceError(f"checkpoint {checkpoint_loc} does not exist; train one with `crofuse train`")
    checkpoint = cached_copy(checkpoint_loc)  # the client's copy (the same path for a local checkpoint)
    cube = open_cube(cube_loc)
    cube_path = cube_loc.path if cube_loc.is_local else cube_loc
    checked = inspect_inputs(cube, cube_path, checkpoint, strict=strict)
    notes = checked.warnings
    calibration = checked.card.calibration
    if calibration is None:  # said once per run, here on the client (workers stay quiet)
        log.warning("%s has no calibration: probability.tif and maps.zarr hold the uncalibrated softmax (T = 1); "
                    "fit a temperature with `crofuse calibrate %s DATA_ROOT`", checkpoint.name, checkpoint)
    multi_head = len(checked.heads) > 1
    variables = ("impervious", "probability", "uncertainty", *(("disagreement",) if multi_head else ()))
    for message in notes:
        log.warning(message)
        warnings.warn(message, RecipeWarning, stacklevel=2)
    shape = (int(cube.sizes["y"]), int(cube.sizes["x"]))
    sha256 = file_sha256(checkpoint)
    run_key = _run_key(cube, sha256, config, canonical(cube_loc))

    out.mkdir()
    store = out / maps_store.MAPS_STORE
    progress_dir = out / maps_store.PROGRESS_DIR
    cog_paths = {v: out / COGS[v][0] for v in variables}
    found_key, complete = maps_store.store_state(store)
    tiles = [(r, c) for r in chunk_bounds(shape[0], config.chunk_size) for c in chunk_bounds(shape[1], config.chunk_size)]

    if found_key != run_key:  # nothing to resume from: start over (also drops stale COGs of another run)
        progress_dir.rmtree()
        for name, _resampling in COGS.values():
            (out / name).unlink(missing_ok=True)
        attrs = {k: cube.attrs[k] for k in _CUBE_ATTRS if k in cube.attrs}
        attrs.update(
            {
                "cube": _task_path(cube_loc),
                "checkpoint": checkpoint_loc.name,
                "checkpoint_sha256": sha256,
                "tiling": json.dumps(asdict(config)),
                maps_store.RUN_KEY_ATTR: run_key,
                **_calibration_attrs(calibration, checked.heads),
            }
        )
        maps_store.create_store(store, cube, chunk_size=config.chunk_size, attrs=attrs, variables=variables)
        complete = False
    progress_dir.mkdir()

    reports: list[ChunkReport] = []
    window_reports: list[ChunkReport] = []
    if complete:
        skipped = len(tiles)
    else:
        sums = progress_dir / maps_store.SUMS_STORE
        layers = ("shared", *sorted(h for h in checked.heads if h != "shared")) if multi_head else ("shared",)
        finished = maps_store.finished_markers(progress_dir)
        if not maps_store.sums_store_exists(sums):  # fresh run (or scratch lost): every chunk's sums are needed
            finished = {name for name in finished if not name.endswith(".sums")}
            maps_store.create_sums_store(
                sums, grid=(len(chunk_bounds(shape[0], config.chunk_size)), len(chunk_bounds(shape[1], config.chunk_size))),
                block=tuple(block_side(n, window=config.window, chunk=config.chunk_size) for n in shape),
                layers=layers,
            )
        todo = [t for t in tiles if maps_store.marker_name(*t) not in finished]
        skipped = len(tiles) - len(todo)
        feeding = {o for t in todo for o in feeding_chunks(shape, *t, window=config.window, chunk=config.chunk_size)}
        owners = [t for t in tiles if t in feeding and maps_store.sums_marker_name(*t) not in finished]
        threads = config.torch_threads
        if threads is None and client is not None:
            threads = torch_threads_for(client)

        def task_for(rows, cols) -> ChunkTask:
            return ChunkTask(
                cube_path=_task_path(cube_loc),
                cube_identity=cube_identity(cube.attrs),
                store=_task_path(store),
                progress_dir=_task_path(progress_dir),
                shape=shape,
                rows=rows,
                cols=cols,
                checkpoint=_task_path(checkpoint_loc),
                sha256=sha256,
                config=config,
                torch_threads=threads,
                variables=variables,
                sums=_task_path(sums),
                layers=layers,
            )

        # phase 1: each window once, in the chunk owning it; phase 2 (after all of phase 1): blend and write
        window_reports = _execute([task_for(*t) for t in owners], client, progress=progress, run_key=run_key,
                                  fn=run_windows, stage="windows")
        reports = _execute([task_for(*t) for t in todo], client, progress=progress, run_key=run_key, fn=run_chunk)
        skipped += sum(r.skipped for r in reports)
        maps_store.mark_complete(store)

    tags = {
        "CROFUSE_RUN_KEY": run_key,
        "CHECKPOINT_SHA256": sha256,
        "CITY": str(cube.attrs.get("city", "")),
        "YEAR": str(cube.attrs.get("year", "")),
    }
    from tiling.cog import cog_tag, write_cog

    for variable, path in cog_paths.items():
        if cog_tag(path, "CROFUSE_RUN_KEY") != run_key:
            write_cog(store, variable, path, crs=cube.rio.crs, transform=cube.rio.transform(),
                      resampling=COGS[variable][1], tags=tags)
    progress_dir.rmtree()
    computed = [r for r in reports if not r.skipped]
    return PredictionOutputs(
        out_dir=_result(out),
        impervious=_result(cog_paths["impervious"]),
        probability=_result(cog_paths["probability"]),
        maps=_result(store),
        checkpoint_sha256=sha256,
        chunks_total=len(tiles),
        chunks_computed=len(computed),
        chunks_skipped=skipped,
        windows=sum(r.windows for r in window_reports if not r.skipped),
        seconds=time.perf_counter() - started,
        warnings=tuple(notes),
        uncertainty=_result(cog_paths["uncertainty"]),
        disagreement=_result(cog_paths["disagreement"]) if "disagreement" in cog_paths else None,
        calibrated=calibration is not None,
        temperature=calibration.temperature if calibration is not None else 1.0,
        grid_windows=grid_size(shape, window=config.window, stride=config.stride, pad=config.effective_halo),
    )


def _task_path(loc: Location) -> str:
    """How a task names a location: the absolute path on disk, the URL on object storage."""
    return str(loc.path.resolve()) if loc.is_local else loc.url


def _result(loc: Location) -> Any:
    """What callers get back: a :class:`~pathlib.Path` for a local output (as always), else the :class:`Location`."""
    return loc.path if loc.is_local else loc


def _calibration_attrs(calibration, heads: tuple[str, ...]) -> dict[str, object]:
    """maps.zarr attributes that say whether the probabilities are calibrated and which layers exist."""
    attrs: dict[str, object] = {
        "calibrated": calibration is not None,
        "temperature": calibration.temperature if calibration is not None else 1.0,
        "head_temperatures": json.dumps({h: (calibration.temperature_of(h) if calibration else 1.0) for h in heads}),
        "calibration": json.dumps(calibration.to_dict()) if calibration is not None else "none: the checkpoint "
                       "has no fitted temperature, probabilities are the uncalibrated softmax (T = 1)",
        "heads": list(heads),
        "uncertainty": "binary entropy of the calibrated probability, percent of 1 bit (variable uncertainty, "
                       "uncertainty.tif)",
    }
    if len(heads) > 1:
        attrs["disagreement"] = (f"max - min of the calibrated impervious probabilities of the heads {list(heads)}, "
                                 "percentage points (variable disagreement, disagreement.tif)")
    else:
        attrs["disagreement"] = ("not available: the model has one head (shared), so there is no head disagreement "
                                 "layer")
    return attrs
