"""Flow parameters: defaults, the cities file, AOI parameters, and the typed ``tiling`` and ``cube_options`` models.

The cities file format (YAML or GeoJSON) is owned by :mod:`crofuse.cities` (``CitySpec``, ``read_cities_file``),
which the training-set builder shares; it is re-exported here for the flows.

:class:`TilingOptions` and :class:`CubeOptions` are pydantic models of the ``tiling.TilingConfig`` and
``crofuse.cube.CubeConfig`` fields a flow run may set (the others: city, year, AOI, catalog, season, output, are
flow parameters of their own). Prefect publishes their JSON schema with the deployment, so the UI shows every field
with its type, default and description, and the server refuses a run whose options have an unknown key or a value of
the wrong type before any worker picks it up (``extra="forbid"``). Their defaults are read from the library's
dataclasses, so they cannot drift; ``tests/test_flows.py`` checks that the fields match.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crofuse.cities import CitySpec, read_cities_file
from crofuse.cube.config import CubeConfig
from tiling.config import TilingConfig

DEFAULT_CATALOG = os.environ.get("CROFUSE_CATALOG", "http://127.0.0.1:8765")
"""The local sample catalog (``crofuse sample-catalog serve`` / ``make demo`` serve it on this port)."""

DEFAULT_CHECKPOINT = "demo-output/checkpoint/crofuse-demo.safetensors"
"""The checkpoint ``make demo`` trains (paths are relative to the repository root, the flows' working directory)."""

DEFAULT_OUTPUT = "demo-output/maps"
"""Where maps and statistics go: ``<output>/<city>/<year>/`` and ``<output>/statistics.{zarr,csv}``."""

LOCAL_CLUSTER = "local"
"""``dask_address`` value that starts one local dask cluster for the run (``infra.cluster.dask_client``)."""

IN_PROCESS = "in-process"
"""``dask_address`` value that runs every chunk in the flow process (no cluster; small AOIs, tests)."""

AOIParam = list[float] | dict[str, Any] | None
"""A flow's ``aoi`` parameter: ``[west, south, east, north]`` in degrees, a GeoJSON geometry/Feature, or None."""


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


_TILING = _defaults(TilingConfig)
_CUBE = _defaults(CubeConfig)
_PROFILES = Literal["sample", "planetary-computer", "earth-search"]


class _Options(BaseModel):
    """Options model: unknown keys are refused (the Prefect server refuses them at submission), values validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def changed(self) -> dict[str, Any]:
        """The fields set to something else than the library's default (JSON types)."""
        return self.model_dump(mode="json", exclude_defaults=True)


class TilingOptions(_Options):
    """How a cube is cut into windows, blended, chunked and thresholded: ``tiling.TilingConfig`` (docs/inference.md).

    ``chunk_size``, ``batch_size``, ``device``, ``autocast``, ``channels_last`` and ``torch_threads`` change how
    fast a map is made, not what it says (:data:`PERFORMANCE_ONLY_TILING`): changing them does not remap a finished
    city-year."""

    window: int = Field(_TILING["window"], gt=0, multiple_of=16, description="window side fed to the model, px")
    stride: int = Field(_TILING["stride"], gt=0, description="step between windows, px (overlap = window - stride)")
    halo: int | None = Field(_TILING["halo"], ge=0, description="reflection padding, px; None: (window - stride) // 2")
    batch_size: int = Field(_TILING["batch_size"], ge=1, description="windows per forward pass (speed only)")
    chunk_size: int = Field(_TILING["chunk_size"], ge=1, description="output chunk side, px: one dask task each (speed only)")
    blend: Literal["hann", "none"] = Field(_TILING["blend"], description="window blending: Hann taper or plain mean")
    floor: float = Field(_TILING["floor"], gt=0, le=1, description="smallest Hann blending weight")
    threshold: float = Field(_TILING["threshold"], gt=0, lt=1, description="probability at or above which a pixel is impervious")
    device: str = Field(_TILING["device"], pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="auto, cpu, cuda or cuda:N (speed only)")
    autocast: Literal["auto", "bf16", "fp16", "off"] = Field(_TILING["autocast"],
                                                             description="mixed precision on GPU (speed only)")
    channels_last: bool = Field(_TILING["channels_last"], description="NHWC memory format on GPU (speed only)")
    torch_threads: int | None = Field(_TILING["torch_threads"], ge=1,
                                      description="intra-op threads per task on CPU; None: split the cores (speed only)")

    def to_config(self) -> TilingConfig:
        """The library's config (which checks what a schema cannot, e.g. ``stride <= window``)."""
        return TilingConfig(**self.model_dump())


class CubeOptions(_Options):
    """More ``crofuse.cube.CubeConfig`` fields of the input cube (docs/cube.md).

    ``chunk_size``, ``http_timeout``, ``http_retries``, ``catalog_deadline``, ``check_assets`` and
    ``verify_checksums`` change how fast (or how carefully) a cube is read, not what it holds
    (:data:`PERFORMANCE_ONLY_CUBE`): changing them does not remap a finished city-year."""

    profile: _PROFILES = Field(_CUBE["profile"], description="catalog profile (collections, asset keys, signing)")
    sar_catalog: str | None = Field(_CUBE["sar_catalog"], description="STAC API of Sentinel-1 if not the catalog's")
    sar_profile: _PROFILES | None = Field(_CUBE["sar_profile"], description="profile of sar_catalog")
    optical_collection: str | None = Field(_CUBE["optical_collection"], description="override the Sentinel-2 collection id")
    sar_collection: str | None = Field(_CUBE["sar_collection"], description="override the Sentinel-1 collection id")
    chunk_size: int = Field(_CUBE["chunk_size"], ge=64, le=8192, description="cube chunk side, px (speed only)")
    loader: Literal["odc-stac", "stackstac"] = Field(_CUBE["loader"], description="raster loader (same pixels)")
    missing_modality: Literal["fail", "continue"] = Field(
        _CUBE["missing_modality"], description="a season with only optical or only SAR: fail, or map with it as NaN")
    min_valid_fraction: float = Field(_CUBE["min_valid_fraction"], ge=0, le=1,
                                      description="least fraction of the AOI with both modalities")
    max_cloud_cover: float = Field(_CUBE["max_cloud_cover"], ge=0, le=100,
                                   description="drop Sentinel-2 scenes above this cloud cover, %")
    scl_mask: tuple[int, ...] = Field(_CUBE["scl_mask"], description="SCL classes that are not clear (0-11)")
    optical_reducer: Literal["median", "mean"] = Field(_CUBE["optical_reducer"],
                                                       description="seasonal composite of reflectance")
    resolution: float = Field(_CUBE["resolution"], gt=0, le=1000, description="pixel size, m")
    epsg: int | None = Field(_CUBE["epsg"], description="output CRS; None: the UTM zone of the AOI centroid")
    resampling: Literal["nearest", "bilinear", "cubic", "average"] = Field(_CUBE["resampling"],
                                                                          description="resampling onto the grid")
    check_assets: bool = Field(_CUBE["check_assets"], description="open every asset's header first (checks only)")
    http_timeout: float = Field(_CUBE["http_timeout"], gt=0, description="seconds per STAC request (speed only)")
    http_retries: int = Field(_CUBE["http_retries"], ge=0, description="retries of one STAC request (speed only)")
    catalog_deadline: float = Field(_CUBE["catalog_deadline"], gt=0, le=3600,
                                    description="seconds one season search may take in all (speed only)")
    signing: Literal["none", "planetary-computer"] | None = Field(_CUBE["signing"],
                                                                   description="asset signing; None: the profile's")
    profile_file: str | None = Field(_CUBE["profile_file"], description="YAML/JSON of a custom catalog profile")
    max_items: int = Field(_CUBE["max_items"], ge=1, description="refuse searches with more items per collection")
    verify_checksums: bool = Field(_CUBE["verify_checksums"], description="check file:checksum of assets (checks only)")
    max_impossible_fraction: float = Field(_CUBE["max_impossible_fraction"], ge=0, le=1,
                                           description="worst window fraction of impossible values an asset may hold")

    def config_fields(self) -> dict[str, Any]:
        """Keyword arguments of ``CubeConfig`` (only the changed fields: the rest keep the library's defaults)."""
        return {k: getattr(self, k) for k in self.changed()}


PERFORMANCE_ONLY_TILING = frozenset({"chunk_size", "batch_size", "device", "autocast", "channels_last", "torch_threads"})
"""``TilingConfig`` fields that change how fast a map is made, not what it says: they do not force a remap."""

PERFORMANCE_ONLY_CUBE = frozenset(
    {"chunk_size", "http_timeout", "http_retries", "catalog_deadline", "check_assets", "verify_checksums"}
)
"""``CubeConfig`` fields that change how fast or how carefully a cube is read, not its pixels' meaning."""


def as_tiling_options(value: TilingOptions | dict[str, Any] | None) -> TilingOptions:
    """A :class:`TilingOptions` from the model, a dict of its fields, or None (every default)."""
    if isinstance(value, TilingOptions):
        return value
    return TilingOptions.model_validate(value or {})


def as_cube_options(value: CubeOptions | dict[str, Any] | None) -> CubeOptions:
    """A :class:`CubeOptions` from the model, a dict of its fields, or None (every default)."""
    if isinstance(value, CubeOptions):
        return value
    return CubeOptions.model_validate(value or {})


__all__ = [
    "DEFAULT_CATALOG",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_OUTPUT",
    "IN_PROCESS",
    "LOCAL_CLUSTER",
    "PERFORMANCE_ONLY_CUBE",
    "PERFORMANCE_ONLY_TILING",
    "AOIParam",
    "CitySpec",
    "CubeOptions",
    "TilingOptions",
    "as_cube_options",
    "as_tiling_options",
    "read_cities_file",
]
