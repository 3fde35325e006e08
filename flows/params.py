"""Flow parameters: defaults, the cities file, and AOI parameters (bbox or GeoJSON polygon).

The cities file format (YAML or GeoJSON) is owned by :mod:`crofuse.cities` (``CitySpec``, ``read_cities_file``),
which the training-set builder shares; it is re-exported here for the flows.
"""

from __future__ import annotations

import os
from typing import Any

from crofuse.cities import CitySpec, read_cities_file

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

__all__ = [
    "DEFAULT_CATALOG",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_OUTPUT",
    "IN_PROCESS",
    "LOCAL_CLUSTER",
    "AOIParam",
    "CitySpec",
    "read_cities_file",
]
