"""Reference labels of a mapped city-year: the catalog's truth on the map grid (``reference.tif``), when it has one.

The sample catalog's ``labels`` collection is the generator's exact truth; a real catalog has no such collection, and
then no reference figures are reported (:func:`write_reference` returns ``None``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crofuse.labels.sources import SAMPLE, LabelSource


def reference_on_grid(source: LabelSource | str, like: Any, year: int, *, catalog: str | None = None,
                      nearest_year: bool = False, **options: Any) -> Any:
    """Labels of any label source for ``year`` on the grid of ``like`` (a map DataArray), as a uint8 array.

    What a reference sample is labelled from when no person labels it (``crofuse statistics sample label
    --labels``): the sample truth here, any product or user file elsewhere. Points where the source has no label
    stay unlabelled.
    """
    import odc.geo.xr  # noqa: F401  (registers the .odc accessor)

    from crofuse.cube.aoi import parse_aoi
    from crofuse.labels.grid import labels_on_grid
    from crofuse.labels.sources import get_label_source

    source = get_label_source(source, **options)
    geobox = like.odc.geobox
    area = parse_aoi(geobox.extent.to_crs("EPSG:4326").geom)
    return labels_on_grid(source, geobox, year=year, area=area, catalog=catalog, nearest_year=nearest_year,
                          min_coverage=0.0).data


def write_reference(catalog: str, city: str, year: int, like: Any, path: Path, *,
                    source: LabelSource = SAMPLE) -> Path | None:
    """Write ``source``'s labels of ``city``/``year`` on the grid of ``like`` (a map DataArray) to ``path`` (COG).

    Returns ``None`` and writes nothing when the catalog has no such collection or no item of that exact year over
    the map (real catalogs have no exact truth).
    """
    import odc.geo.xr  # noqa: F401  (registers the .odc accessor)

    from crofuse.cube.aoi import parse_aoi
    from crofuse.labels.grid import labels_on_grid
    from crofuse.labels.stac import collection_ids, item_year, search_label_items
    from crofuse.statistics import write_uint8_cog

    if source.collection not in collection_ids(catalog):
        return None
    geobox = like.odc.geobox
    area = parse_aoi(geobox.extent.to_crs("EPSG:4326").geom)
    items = [it for it in search_label_items(catalog, source.collection, area=area) if item_year(it) == year]  # type: ignore[arg-type]
    if not items:
        return None
    labels = labels_on_grid(source, geobox, year=year, area=area, catalog=catalog, min_coverage=0.0,
                            what=f"{city} {year}")
    write_uint8_cog(labels.data, like, path)
    return path


__all__ = ["reference_on_grid", "write_reference"]
