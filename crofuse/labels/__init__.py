"""Label sources: impervious-surface labels from any product a user has, on the cube's grid (docs/labels.md).

    from crofuse.labels import get_label_source, labels_on_grid
    source = get_label_source("esa-worldcover")          # or "sample", "io-lulc", "my.tif", "roofs.gpkg", "src.yaml"
    labels = labels_on_grid(source, cube.odc.geobox, year=2021, area=aoi, catalog=url, aoi_mask=cube.in_aoi.values)
"""

from crofuse.labels.grid import DEFAULT_MIN_COVERAGE, LabelRaster, labels_on_grid
from crofuse.labels.sources import (
    ESA_WORLDCOVER,
    IO_LULC,
    LABEL_SOURCES,
    SAMPLE,
    SAMPLE_EXACT,
    LabelSource,
    get_label_source,
    load_label_source,
    raster_source,
    vector_source,
)
from crofuse.labels.stac import city_extent, find_label_items, item_year

__all__ = [
    "DEFAULT_MIN_COVERAGE",
    "ESA_WORLDCOVER",
    "IO_LULC",
    "LABEL_SOURCES",
    "SAMPLE",
    "SAMPLE_EXACT",
    "LabelRaster",
    "LabelSource",
    "city_extent",
    "find_label_items",
    "get_label_source",
    "item_year",
    "labels_on_grid",
    "load_label_source",
    "raster_source",
    "vector_source",
]
