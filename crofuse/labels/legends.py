"""Legends of the land-cover products that label sources read, as STAC ``classification:classes`` entries.

The label sources (:mod:`crofuse.labels.sources`) take their class names from here, and the sample catalog's
WorldCover- and IO-LULC-shaped collections (:mod:`crofuse.synthetic.weak_labels`) write them into their items.
"""

from __future__ import annotations


def _cls(value: int, name: str, description: str, color: str, **extra) -> dict:
    """One ``classification:classes`` entry (classification extension v2: ``name`` is a slug)."""
    return {"value": value, "name": name, "description": description, "color_hint": color, **extra}


WORLDCOVER_CLASSES = [
    _cls(10, "tree-cover", "Tree cover", "006400"),
    _cls(20, "shrubland", "Shrubland", "FFBB22"),
    _cls(30, "grassland", "Grassland", "FFFF4C"),
    _cls(40, "cropland", "Cropland", "F096FF"),
    _cls(50, "built-up", "Built-up", "FA0000"),
    _cls(60, "bare-sparse-vegetation", "Bare / sparse vegetation", "B4B4B4"),
    _cls(70, "snow-and-ice", "Snow and ice", "F0F0F0"),
    _cls(80, "permanent-water-bodies", "Permanent water bodies", "0064C8"),
    _cls(90, "herbaceous-wetland", "Herbaceous wetland", "0096A0"),
    _cls(95, "mangroves", "Mangroves", "00CF75"),
    _cls(100, "moss-and-lichen", "Moss and lichen", "FAE6A0"),
]
"""The ESA WorldCover legend (Zanaga et al. 2021 product user manual; Planetary Computer's ``esa-worldcover``)."""
WORLDCOVER_BUILT_UP = 50
WORLDCOVER_NODATA = 0

IO_LULC_CLASSES = [
    _cls(0, "no-data", "No Data", "000000", nodata=True),
    _cls(1, "water", "Water", "419BDF"),
    _cls(2, "trees", "Trees", "397D49"),
    _cls(4, "flooded-vegetation", "Flooded vegetation", "7A87C6"),
    _cls(5, "crops", "Crops", "E49635"),
    _cls(7, "built-area", "Built area", "C4281B"),
    _cls(8, "bare-ground", "Bare ground", "A59B8F"),
    _cls(9, "snow-ice", "Snow/ice", "A8EBFF"),
    _cls(10, "clouds", "Clouds", "616161"),
    _cls(11, "rangeland", "Rangeland", "E3E2C3"),
]
"""The 9-class legend of Impact Observatory's 10 m Annual LULC v02 (Planetary Computer's ``io-lulc-annual-v02``)."""
IO_BUILT_AREA = 7
IO_NODATA = 0



def class_names(legend: list[dict]) -> dict[int, str]:
    """``{code: description}`` of a legend (what a :class:`~crofuse.labels.LabelSource` declares)."""
    return {int(c["value"]): str(c["description"]) for c in legend}


__all__ = [
    "IO_BUILT_AREA",
    "IO_LULC_CLASSES",
    "IO_NODATA",
    "WORLDCOVER_BUILT_UP",
    "WORLDCOVER_CLASSES",
    "WORLDCOVER_NODATA",
    "class_names",
]
