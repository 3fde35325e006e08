"""The composite recipe: how a cube's pixels were made, so that training and mapping can be checked to match.

A model learns the statistics of its inputs: a median composite is darker over residual cloud edges than a mean,
a September season has other vegetation than June. The recipe is read from a cube's attributes (written by
:func:`crofuse.cube.build_cube`), recorded in a training set's ``patches.json`` and in the model card, and compared
with the cube a checkpoint is asked to map (:func:`compare_recipes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crofuse import OPTICAL_BANDS, SAR_BANDS

RECIPE_VERSION = 1

SEVERITY = {
    "bands": "refuse",
    "sar_bands": "refuse",
    "resolution": "refuse",
    "optical_reducer": "warn",
    "season": "warn",
    "scl_mask": "warn",
    "profile": "warn",
    "loader": "info",
    "max_cloud_cover": "info",
    "resampling": "info",
}
"""How much a difference matters: ``refuse`` (the model cannot read these inputs), ``warn`` (it reads them but
was trained on other statistics; ``--strict`` refuses), ``info`` (recorded only)."""


def season_window(season: str | None) -> str | None:
    """``"2021-06-01/2021-06-30"`` (a cube's ``season``) -> ``"06-01/06-30"``; the year is not part of a recipe."""
    if not season:
        return None
    parts = str(season).split("/")
    if len(parts) != 2:
        return str(season)
    return "/".join(p.strip()[-5:] for p in parts)


def composite_recipe(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe of a cube from its root attributes (``inputs.zarr``'s ``.attrs``)."""
    scl = attrs.get("scl_mask")
    return {
        "version": RECIPE_VERSION,
        "bands": list(OPTICAL_BANDS),
        "sar_bands": list(SAR_BANDS),
        "profile": attrs.get("profile"),
        "optical_reducer": attrs.get("optical_reducer"),
        "sar_composite": "mean of linear gamma0, then 10 log10 (dB)",
        "season": season_window(attrs.get("season")),
        "scl_mask": sorted(int(c) for c in scl) if scl is not None else None,
        "loader": attrs.get("loader"),
        "resolution": float(attrs["resolution"]) if attrs.get("resolution") is not None else None,
        "max_cloud_cover": attrs.get("max_cloud_cover"),
        "resampling": attrs.get("resampling", "nearest"),
    }


@dataclass(frozen=True)
class RecipeDifference:
    """One field on which the training recipe and a cube differ."""

    field: str
    trained: Any
    cube: Any
    severity: str

    def describe(self) -> str:
        return f"{self.field}: trained on {self.trained!r}, this cube has {self.cube!r}"


def compare_recipes(trained: Mapping[str, Any] | None, cube: Mapping[str, Any]) -> list[RecipeDifference]:
    """The differences between a checkpoint's training recipe and a cube's recipe, most severe first.

    A field missing on either side (an older checkpoint, a cube from other code) is not a difference.
    """
    if not trained:
        return []
    out = []
    for name, severity in SEVERITY.items():
        a, b = trained.get(name), cube.get(name)
        if a is None or b is None:
            continue
        if isinstance(a, list | tuple) or isinstance(b, list | tuple):
            same = list(a) == list(b)
        elif isinstance(a, int | float) and isinstance(b, int | float):
            same = abs(float(a) - float(b)) < 1e-9
        else:
            same = a == b
        if not same:
            out.append(RecipeDifference(name, a, b, severity))
    rank = {"refuse": 0, "warn": 1, "info": 2}
    return sorted(out, key=lambda d: rank[d.severity])


__all__ = ["RECIPE_VERSION", "SEVERITY", "RecipeDifference", "compare_recipes", "composite_recipe", "season_window"]
