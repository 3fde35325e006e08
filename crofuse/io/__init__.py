"""Files crofuse writes for others to read: validated Cloud-Optimised GeoTIFFs (:mod:`crofuse.io.cog`)."""

from __future__ import annotations

from crofuse.io.cog import overview_levels, write_cog, write_cog_regions

__all__ = ["overview_levels", "write_cog", "write_cog_regions"]
