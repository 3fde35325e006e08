"""The assets of a product item: key -> file of the city-year folder, role, media type, and how its values read.

This is the one place of :mod:`crofuse.products` that names files. The names come from their owners where
``crofuse`` may import them (:mod:`crofuse.statistics.maps`, :mod:`crofuse.statistics.tables`,
:mod:`crofuse.quicklooks`); the files written by ``tiling`` (``probability.tif``, and ``uncertainty.tif`` /
``disagreement.tif`` of calibrated models) and the ``flows`` marker are spelled here, because ``crofuse`` never
imports ``tiling`` or ``flows`` (``tests/test_products.py`` checks that the spellings agree). When the city-year
layout gets one owner, point these at it.

Encodings (docs/architecture.md, docs/products.md): every raster is a uint8 COG with nodata 255 on the cube's grid;
``impervious`` and ``consistent`` hold 1 impervious / 0 pervious, ``change`` 0 no change / 1 gain / 2 loss;
``probability`` is the impervious probability in percent (raster ``scale`` 0.01 gives 0..1), ``uncertainty`` the
binary entropy of that probability in percent of 1 bit (scale 0.01: bits), ``disagreement`` the range of the three
heads' probabilities in percentage points (scale 0.01: probability).
"""

from __future__ import annotations

from dataclasses import dataclass

from crofuse import IMPERVIOUS, NODATA_LABEL, PERVIOUS
from crofuse.quicklooks import CHANGE_PLOT_NAME, QUICKLOOK_NAME
from crofuse.statistics.change import GAIN, LOSS, NO_CHANGE
from crofuse.statistics.maps import (
    CHANGE_NAME,
    CONSISTENT_NAME,
    CUBE_NAME,
    MAP_NAME,
    PROBABILITY_STORE,
    RECORD_NAME,
)
from crofuse.statistics.tables import STATISTICS_CSV, STATISTICS_ZARR

from crofuse import layout  # noqa: E402  (the one owner of the names)

PROBABILITY_NAME = layout.PROBABILITY
"""``tiling.predict.PROBABILITY_COG``."""
UNCERTAINTY_NAME = layout.UNCERTAINTY
"""``tiling.predict.UNCERTAINTY_COG`` (calibrated models; branch ``calib``)."""
DISAGREEMENT_NAME = layout.DISAGREEMENT
"""``tiling.predict.DISAGREEMENT_COG`` (models with several heads; branch ``calib``)."""
MARKER_NAME = layout.MARKER
"""``flows.tasks.MARKER``: written last into a finished city-year folder."""

ITEM_NAME = "item.json"
"""The city-year's STAC item, next to its assets: ``<output>/<city>/<year>/item.json``."""
COLLECTION_NAME = "collection.json"
"""The products collection at the output root: ``<output>/collection.json``."""

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
ZARR = "application/vnd.zarr"
PNG = "image/png"
JSON = "application/json"
CSV = "text/csv"

BINARY_CLASSES: tuple[tuple[int, str, str], ...] = (
    (PERVIOUS, "pervious", "Pervious surface: vegetation, soil, water"),
    (IMPERVIOUS, "impervious", "Impervious surface: roofs, roads, paved ground"),
)
CHANGE_CLASSES: tuple[tuple[int, str, str], ...] = (
    (NO_CHANGE, "no_change", "Same class as in the previous mapped year"),
    (GAIN, "gain", "Pervious in the previous mapped year, impervious now"),
    (LOSS, "loss", "Impervious in the previous mapped year, pervious now"),
)


@dataclass(frozen=True)
class AssetSpec:
    """One asset of a product item.

    ``classes``: ``(value, name, description)`` of a classified raster (classification extension); ``scale`` and
    ``unit``: what one count of a scaled raster means (raster extension); ``required``: an item is not built
    without it (every other asset is included where its file exists)."""

    key: str
    name: str
    title: str
    roles: tuple[str, ...]
    media_type: str
    description: str = ""
    raster: bool = False
    classes: tuple[tuple[int, str, str], ...] = ()
    scale: float | None = None
    unit: str | None = None
    required: bool = False
    nodata: int = NODATA_LABEL


ITEM_ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec("impervious", MAP_NAME, "Impervious surface", ("data",), COG,
              "Impervious (1) / pervious (0) map thresholded from the blended probability", raster=True,
              classes=BINARY_CLASSES, required=True),
    AssetSpec("probability", PROBABILITY_NAME, "Impervious probability", ("data",), COG,
              "Probability that the pixel is impervious, percent (scale 0.01: 0..1)", raster=True, scale=0.01),
    AssetSpec("uncertainty", UNCERTAINTY_NAME, "Uncertainty (entropy)", ("data", "quality"), COG,
              "Binary entropy of the calibrated probability, percent of 1 bit (scale 0.01: bits)", raster=True,
              scale=0.01, unit="bit"),
    AssetSpec("disagreement", DISAGREEMENT_NAME, "Head disagreement", ("data", "quality"), COG,
              "Range of the optical, SAR and fused heads' probabilities, percentage points (scale 0.01)",
              raster=True, scale=0.01),
    AssetSpec("change", CHANGE_NAME, "Change since the previous mapped year", ("data",), COG,
              "Post-classification change against the previous mapped year", raster=True, classes=CHANGE_CLASSES),
    AssetSpec("consistent", CONSISTENT_NAME, "Temporally consistent impervious surface", ("data",), COG,
              "The city's non-reverting series (docs/flows.md, Temporal consistency)", raster=True,
              classes=BINARY_CLASSES),
    AssetSpec("maps", PROBABILITY_STORE, "Maps (zarr)", ("data",), ZARR,
              "zarr v3 store of the maps with their provenance attributes", required=True),
    AssetSpec("statistics", RECORD_NAME, "Statistics record", ("metadata",), JSON,
              "This city-year's row of the statistics table (schema-versioned)"),
    AssetSpec("thumbnail", QUICKLOOK_NAME, "Quicklook", ("thumbnail", "overview"), PNG,
              "RGB, VV, impervious map and change map"),
)
"""The assets of a city-year item, in order."""

COLLECTION_ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec("statistics", STATISTICS_ZARR, "Statistics table (zarr)", ("data", "metadata"), ZARR,
              "Impervious area, change and estimates per (city, year): xr.open_zarr(...)", required=True),
    AssetSpec("statistics_csv", STATISTICS_CSV, "Statistics table (CSV)", ("data", "metadata"), CSV,
              "One row per mapped city-year"),
    AssetSpec("change_plot", CHANGE_PLOT_NAME, "Impervious area per year", ("overview",), PNG,
              "Impervious km2 and net change per year per city"),
)
"""The collection-level assets at the output root."""

__all__ = [
    "COLLECTION_ASSETS",
    "COLLECTION_NAME",
    "CUBE_NAME",
    "DISAGREEMENT_NAME",
    "ITEM_ASSETS",
    "ITEM_NAME",
    "MARKER_NAME",
    "PROBABILITY_NAME",
    "UNCERTAINTY_NAME",
    "AssetSpec",
]
