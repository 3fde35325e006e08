"""Procedural sample cities and physically plausible Sentinel-1/Sentinel-2 simulation, served as a STAC catalog.

Ground truth is drawn at 5 m (default) and mixed linearly to 10 m, each city with its palette (generator v2;
``SampleConfig(generator=1)`` reproduces the earlier generator byte for byte); Sentinel-2 L2A (B02, B03, B04, B08, SCL) and
Sentinel-1 RTC (VV, VH) acquisitions are simulated from it with clouds, shadows, cirrus and speckle, written as COGs
with STAC items (``build_catalog``). Training sets are cut from it through the mapping pipeline
(``crofuse.trainingset``: STAC search, the cube composite, the catalog's labels), never from an in-memory composite.
See ``docs/sample-data.md`` for the values used and what is not modelled.
"""

from __future__ import annotations

from crofuse.synthetic.catalog import (
    COLLECTIONS,
    LABELS_COLLECTION,
    S1_COLLECTION,
    S2_COLLECTION,
    CatalogSummary,
    build_catalog,
    read_manifest,
)
from crofuse.synthetic.cities import (
    CAIRO,
    DEFAULT_CITIES,
    HEFEI,
    KNOWN_CITIES,
    KUALA_LUMPUR,
    MILAN,
    NANCHANG,
    NANJING,
    TRAINING_CITIES,
    WUHAN,
    City,
    city_by_name,
)
from crofuse.synthetic.config import Difficulty, SampleConfig
from crofuse.synthetic.palettes import PALETTES, Palette, get_palette
from crofuse.synthetic.landcover import GroundTruth, generate_landcover, generate_truths, ground_truth
from crofuse.synthetic.optical import SCL_MASKED, OpticalScene, simulate_optical
from crofuse.synthetic.sar import SarScene, simulate_sar
from crofuse.synthetic.schedule import Acquisition, sentinel1_schedule, sentinel2_schedule
from crofuse.synthetic.signatures import LandCover, Material

__all__ = [
    "CAIRO",
    "COLLECTIONS",
    "DEFAULT_CITIES",
    "HEFEI",
    "KNOWN_CITIES",
    "KUALA_LUMPUR",
    "LABELS_COLLECTION",
    "MILAN",
    "NANCHANG",
    "NANJING",
    "PALETTES",
    "S1_COLLECTION",
    "S2_COLLECTION",
    "SCL_MASKED",
    "TRAINING_CITIES",
    "WUHAN",
    "Acquisition",
    "CatalogSummary",
    "City",
    "Difficulty",
    "GroundTruth",
    "LandCover",
    "Material",
    "OpticalScene",
    "Palette",
    "SampleConfig",
    "SarScene",
    "build_catalog",
    "city_by_name",
    "generate_landcover",
    "generate_truths",
    "get_palette",
    "ground_truth",
    "read_manifest",
    "sentinel1_schedule",
    "sentinel2_schedule",
    "simulate_optical",
    "simulate_sar",
]
