"""``maps.zarr``: metadata created up front, chunk regions written by the workers, markers for resuming.

Layout (zarr v3), every variable ``(y, x)`` uint8 with ``nodata = 255`` at the same pixels:

- ``impervious``: 1 impervious / 0 pervious;
- ``probability``: calibrated impervious probability of the shared head, percent 0..100;
- ``uncertainty``: binary entropy of that probability in percent of its maximum (1 bit), 0..100;
- ``disagreement``: range (max - min) of the calibrated impervious probabilities of CroFuseNet's three heads in
  percentage points, 0..100; only for models with several heads (the attribute ``disagreement`` says why it is
  missing otherwise).

Plus the cube's ``x``/``y`` coordinates and a rioxarray ``spatial_ref``. Attributes carry the checkpoint's sha256,
the tiling settings, the cube's provenance, ``calibrated`` / ``temperature`` and ``complete`` (set last, after every
chunk is written).

Resuming: each chunk writes a marker file under ``<out>/.maps.zarr.progress/`` after its data; a rerun skips chunks
with a marker. The markers are deleted when the run completes.

Sums (phase 1 of :func:`tiling.predict_cube`): each chunk runs the windows it owns once and writes their weighted
sums over its block (chunk + spill) into ``<out>/.maps.zarr.progress/sums.zarr``, one zarr chunk per output chunk,
then the marker ``r{row}_c{col}.sums``; phase 2 reads back the blocks overlapping each output chunk. Scratch, deleted
with the markers: ``(heads + 1) x 4`` bytes per pixel of every block, about ``(heads + 1) x 4 x ((chunk + window -
1) / chunk)^2`` bytes per scene pixel before compression (20 B/px for CroFuseNet's three heads at 1024/128).

The store and the markers may be on disk or on object storage (``s3://``): every access goes through
:mod:`crofuse.io.store`, and each task writes only its own chunk-aligned region, so workers need no shared disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crofuse import NODATA_LABEL, layout
from crofuse.io.store import Location, location

MAPS_STORE = layout.MAPS
PROGRESS_DIR = layout.MAPS_PROGRESS
VARIABLES = ("impervious", "probability", "uncertainty", "disagreement")
"""Every variable a maps store can hold, in order; a single-head model's store has all but ``disagreement``."""
LAYOUT_VERSION = 2
"""Version of the store layout (2: uncertainty layers); part of the run key, so older outputs are remade."""

VARIABLE_ATTRS: dict[str, dict] = {
    "impervious": {"long_name": "impervious surface", "flag_values": [0, 1], "flag_meanings": "pervious impervious"},
    "probability": {
        "long_name": "impervious surface probability", "units": "percent", "valid_range": [0, 100],
        "description": "calibrated probability that the pixel is impervious (shared head, temperature-scaled "
                       "softmax, Hann-blended over overlapping windows)",
    },
    "uncertainty": {
        "long_name": "impervious surface uncertainty (entropy)", "units": "percent of 1 bit", "valid_range": [0, 100],
        "description": "binary entropy of the calibrated impervious probability p in bits, x 100: 0 where p is 0 "
                       "or 1, 100 at p = 0.5; the expected error rate of the class is min(p, 1 - p)",
    },
    "disagreement": {
        "long_name": "disagreement of the optical, SAR and fused heads", "units": "percentage points",
        "valid_range": [0, 100],
        "description": "max - min of the calibrated impervious probabilities of CroFuseNet's shared, optical and SAR "
                       "heads (each Hann-blended): 0 when all three agree, 100 when one is certain of impervious and "
                       "another of pervious",
    },
}
RUN_KEY_ATTR = "crofuse_run_key"
COMPLETE_ATTR = "complete"


def marker_name(rows: tuple[int, int], cols: tuple[int, int]) -> str:
    """The name of the completeness marker of the chunk whose top-left pixel is ``(rows[0], cols[0])``."""
    return f"r{rows[0]}_c{cols[0]}.done"


def marker_path(progress_dir: Path | Location | str, rows: tuple[int, int], cols: tuple[int, int]) -> Location:
    """The completeness marker of the chunk whose top-left pixel is ``(rows[0], cols[0])``."""
    return location(progress_dir) / marker_name(rows, cols)


def write_marker(path: Path | Location | str, payload: dict) -> None:
    """Write a marker atomically (one rename, or one PUT), after the chunk's data is written."""
    location(path).write_text(json.dumps(payload))


def finished_markers(progress_dir: Path | Location | str) -> set[str]:
    """The names of the markers written so far (one listing, not one request per chunk)."""
    return {p.name for p in location(progress_dir).iterdir()}


SUMS_STORE = "sums.zarr"


def sums_marker_name(rows: tuple[int, int], cols: tuple[int, int]) -> str:
    """The marker that the sums of the chunk whose top-left pixel is ``(rows[0], cols[0])`` are written."""
    return f"r{rows[0]}_c{cols[0]}.sums"


def sums_marker_path(progress_dir: Path | Location | str, rows: tuple[int, int], cols: tuple[int, int]) -> Location:
    return location(progress_dir) / sums_marker_name(rows, cols)


def create_sums_store(path: Path | Location | str, *, grid: tuple[int, int], block: tuple[int, int],
                      layers: tuple[str, ...]) -> None:
    """An empty float32 array ``(chunk rows, chunk cols, layers + 1, block h, block w)`` of fill 0, one zarr chunk
    per output chunk (so phase-1 tasks never share one); the last layer is the weight sum."""
    import zarr

    zarr.create_array(
        location(path).zarr_store(), shape=(*grid, len(layers) + 1, *block), chunks=(1, 1, len(layers) + 1, *block),
        dtype="float32", fill_value=0.0, zarr_format=3, overwrite=True, attributes={"layers": list(layers)},
    )


def write_sums(path: Path | Location | str, index: tuple[int, int], total: np.ndarray, weight_sum: np.ndarray) -> None:
    """Write one chunk's sums (``total (layers, h, w)``, ``weight_sum (h, w)``, ``h, w`` up to the block side) as
    its whole zarr chunk, zero-padded where the scene ends."""
    import zarr

    array = zarr.open_array(location(path).zarr_store(), mode="r+")
    block = np.zeros(array.shape[2:], dtype=np.float32)
    h, w = weight_sum.shape
    block[:-1, :h, :w] = total
    block[-1, :h, :w] = weight_sum
    array[index] = block


def sums_store_exists(path: Path | Location | str) -> bool:
    return (location(path) / "zarr.json").exists()


def open_sums(path: Path | Location | str):
    """The sums array (read-only) and its layer names."""
    import zarr

    array = zarr.open_array(location(path).zarr_store(read_only=True), mode="r")
    return array, tuple(array.attrs["layers"])


def store_state(store: Path | Location | str) -> tuple[str | None, bool]:
    """``(run_key, complete)`` of an existing maps store, ``(None, False)`` when there is none."""
    try:
        text = (location(store) / "zarr.json").read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None, False
    attrs = json.loads(text).get("attributes", {})
    return attrs.get(RUN_KEY_ATTR), bool(attrs.get(COMPLETE_ATTR, False))


def create_store(store: Path | Location | str, cube, *, chunk_size: int, attrs: dict, variables: tuple[str, ...] = VARIABLES[:2]) -> None:
    """Write the metadata and coordinates of an empty maps store (no chunk data: ``compute=False``) holding
    ``variables`` (names from :data:`VARIABLES`)."""
    import dask.array as da
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr

    shape = (cube.sizes["y"], cube.sizes["x"])
    chunks = (min(chunk_size, shape[0]), min(chunk_size, shape[1]))
    unknown = [v for v in variables if v not in VARIABLES]
    if unknown:
        raise ValueError(f"unknown maps variables {unknown}; known: {VARIABLES}")
    template = xr.Dataset(
        {
            name: (("y", "x"), da.full(shape, NODATA_LABEL, dtype=np.uint8, chunks=chunks))
            for name in variables
        },
        coords={"y": cube["y"].values, "x": cube["x"].values},
    )
    template = template.rio.write_crs(cube.rio.crs).rio.write_transform(cube.rio.transform())
    for name in variables:
        template[name].attrs.update(nodata=NODATA_LABEL, **VARIABLE_ATTRS[name])
    for name in variables:
        template[name].encoding.update(
            {"chunks": chunks, "fill_value": NODATA_LABEL, "coordinates": "spatial_ref", "grid_mapping": "spatial_ref"}
        )
    template.attrs.update(attrs)
    template.attrs[COMPLETE_ATTR] = False
    store = location(store)
    store.rmtree()
    template.to_zarr(store.zarr_store(), mode="w", compute=False, zarr_format=3, consolidated=False)


def write_chunk(store: Path | Location | str, rows: tuple[int, int], cols: tuple[int, int], **layers: np.ndarray) -> None:
    """Write one chunk's region of every variable given (regions are chunk-aligned, so tasks never share a zarr
    chunk), e.g. ``write_chunk(store, rows, cols, impervious=..., probability=..., uncertainty=...)``."""
    import zarr

    group = zarr.open_group(location(store).zarr_store(), mode="r+")
    region = (slice(*rows), slice(*cols))
    for name, values in layers.items():
        group[name][region] = values


def mark_complete(store: Path | Location | str, extra: dict | None = None) -> None:
    """Set ``complete = True`` (the last thing written) and consolidate the metadata."""
    import zarr

    zstore: Any = location(store).zarr_store()
    group = zarr.open_group(zstore, mode="r+")
    group.attrs.update({**(extra or {}), COMPLETE_ATTR: True})
    zarr.consolidate_metadata(zstore)
