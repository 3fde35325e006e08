"""Tiled, distributed CroFuseNet inference: global window grid, Hann blending, dask chunks, COG and zarr maps."""

from tiling.blend import BlendAccumulator, blend_weights
from tiling.config import TilingConfig
from tiling.inference import (
    ChunkSums,
    accumulate_chunk,
    predict_chunk_probability,
    predict_scene,
    read_region,
)
from tiling.predict import PredictionOutputs, encode_maps, predict_cube
from tiling.windows import (
    ChunkPlan,
    OwnedPlan,
    chunk_bounds,
    feeding_chunks,
    grid_size,
    plan_chunk,
    plan_owned,
    planned_windows,
    reflect_index,
    window_starts,
)

__all__ = [
    "BlendAccumulator",
    "ChunkPlan",
    "ChunkSums",
    "OwnedPlan",
    "PredictionOutputs",
    "TilingConfig",
    "accumulate_chunk",
    "blend_weights",
    "chunk_bounds",
    "encode_maps",
    "feeding_chunks",
    "grid_size",
    "plan_chunk",
    "plan_owned",
    "planned_windows",
    "predict_chunk_probability",
    "predict_cube",
    "predict_scene",
    "read_region",
    "reflect_index",
    "window_starts",
]
