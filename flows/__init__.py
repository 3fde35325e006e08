"""Prefect 3 flows of crofuse: ``map-city`` (one city-year) and ``remap-cities`` (a cities file × years).

The flows are thin: each step is a task that calls library code (``crofuse.cube``, ``tiling``,
``crofuse.statistics``, ``crofuse.quicklooks``). Deployments are in ``prefect.yaml``; see docs/flows.md.
"""

from flows.map_city import map_city
from flows.remap import remap_cities

__all__ = ["map_city", "remap_cities"]
