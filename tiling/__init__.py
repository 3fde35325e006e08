"""Tiled, distributed CroFuseNet inference: global window grid, Hann blending, dask chunks, COG and zarr maps."""

from tiling.blend import BlendAccumulator, blend_weights
from tiling.config import TilingConfig
from tiling.inference import predict_chunk_probability, predict_scene, read_region
from tiling.predict import PredictionOutputs, encode_maps, predict_cube
from tiling.windows import ChunkPlan, chunk_bounds, plan_chunk, reflect_index, window_starts

__all__ = [
    "BlendAccumulator",
    "ChunkPlan",
    "PredictionOutputs",
    "TilingConfig",
    "blend_weights",
    "chunk_bounds",
    "encode_maps",
    "plan_chunk",
    "predict_chunk_probability",
    "predict_cube",
    "predict_scene",
    "read_region",
    "reflect_index",
    "window_starts",
]
