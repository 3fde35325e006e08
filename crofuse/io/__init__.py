"""Reading and writing what crofuse publishes: the one I/O layer (:mod:`crofuse.io.store`: paths, ``file://`` and
``s3://`` URLs), leases (:mod:`crofuse.io.lease`) and validated Cloud-Optimised GeoTIFFs (:mod:`crofuse.io.cog`)."""

from __future__ import annotations

from crofuse.io.cog import overview_levels, write_cog, write_cog_regions
from crofuse.io.store import Location, location

__all__ = ["Location", "location", "overview_levels", "write_cog", "write_cog_regions"]
