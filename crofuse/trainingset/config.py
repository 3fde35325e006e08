"""Typed settings of one training-set build (pydantic: validated on construction, shown by Prefect's UI)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crofuse.cities import CitySpec
from crofuse.errors import ConfigError
from crofuse.trainingset.splits import SplitKind

if TYPE_CHECKING:
    from crofuse.io.store import Location

DEFAULT_BLOCK_KM = 2.56
"""Side of a blocked-split block: two 128-pixel windows at 10 m (docs/training-sets.md measures 1.28 km too)."""


class TrainingSetConfig(BaseModel):
    """Everything that decides a training set built from STAC (``crofuse training-set build``).

    Attributes
    ----------
    out: the training set's folder (WHU-IS layout ``{train,val,test}/{optical,sar,label}/<name>.tif`` plus
        ``patches.json``, ``cubes/`` and ``labels/``): a path, or an ``s3://bucket/prefix`` URL (kept as a string:
        :class:`~pathlib.Path` would fold its ``//``); :attr:`root` is its :class:`~crofuse.io.store.Location`.
    cities: the cities (name, optional AOI, optional catalog), e.g. from a cities file (``crofuse.cities``).
    years: the years; every city is built for every year.
    catalog: STAC API of the scenes (and of STAC label sources) for cities that do not name their own.
    labels: the label source: ``sample``, ``esa-worldcover``, ``io-lulc``, a label GeoTIFF, a vector file or a YAML
        definition (``crofuse.labels.get_label_source``); ``label_options`` are its file options
        (``impervious``, ``fraction_threshold``, ``layer``, ``year``...).
    nearest_year: take a label source's nearest year when it has none for a city-year (else an error).
    min_label_coverage: least share of the AOI the labels must cover.
    split: ``blocked`` (default), ``random`` (the paper's) or ``by-city``; ``shares`` train/val/test (8:1:1).
    block_km, buffer_px: blocked split: block side, and how far training windows keep from val/test blocks
        (``None``: one window).
    holdout_val, holdout_test: by-city split: the cities held out (default: a seeded choice, one each).
    patch_size, stride: windows (paper: 128 and 80).
    max_ignored_fraction: patches with more ignored pixels (no label or no input) are dropped, after the split.
    seed: the split's seed.
    cube: more :class:`crofuse.cube.CubeConfig` fields (``season``, ``profile``, ``optical_reducer``, ``loader``,
        ``max_cloud_cover``...): the same composite recipe as ``map-city``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    out: Path | str
    cities: list[CitySpec] = Field(min_length=1)
    years: list[int] = Field(min_length=1)
    catalog: str | None = None
    labels: str = "sample"
    label_options: dict[str, Any] = Field(default_factory=dict)
    nearest_year: bool = False
    min_label_coverage: float = Field(default=0.5, ge=0.0, le=1.0)
    split: SplitKind = "blocked"
    shares: tuple[float, float, float] = (0.8, 0.1, 0.1)
    block_km: float = Field(default=DEFAULT_BLOCK_KM, gt=0)
    buffer_px: int | None = Field(default=None, ge=0)
    holdout_val: list[str] = Field(default_factory=list)
    holdout_test: list[str] = Field(default_factory=list)
    patch_size: int = Field(default=128, ge=16)
    stride: int = Field(default=80, ge=1)
    max_ignored_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    seed: int = 0
    cube: dict[str, Any] = Field(default_factory=dict)

    @field_validator("out", mode="before")
    @classmethod
    def _out(cls, out: Any) -> Any:
        from crofuse.errors import StorageError
        from crofuse.io.store import path_or_url

        if not isinstance(out, str | Path):
            return out
        try:
            return path_or_url(out)
        except StorageError as e:  # an unsupported scheme: a configuration error, in one line
            raise ValueError(str(e)) from None

    @field_validator("years")
    @classmethod
    def _years(cls, years: list[int]) -> list[int]:
        bad = [y for y in years if not (2015 <= y <= 2100)]
        if bad:
            raise ValueError(f"years {bad}: give calendar years from 2015 (Sentinel-1/2 era) on")
        return sorted(set(years))

    @field_validator("cube")
    @classmethod
    def _cube(cls, options: dict[str, Any]) -> dict[str, Any]:
        reserved = {"city", "year", "aoi", "catalog", "output"} & set(options)
        if reserved:
            raise ValueError(f"cube options {sorted(reserved)} are set by the training set itself")
        return options

    @model_validator(mode="after")
    def _check(self) -> TrainingSetConfig:
        if abs(sum(self.shares) - 1.0) > 1e-6 or min(self.shares) < 0:
            raise ValueError(f"shares={self.shares} must be three non-negative numbers adding up to 1 (e.g. 0.8, 0.1, 0.1)")
        if self.patch_size % 16:
            raise ValueError(f"patch_size={self.patch_size} must be a multiple of 16 (the UNet pools four times)")
        names = [c.name for c in self.cities]
        if len(set(names)) != len(names):
            raise ValueError(f"cities are listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        unknown = [c for c in self.holdout_val + self.holdout_test if c not in names]
        if unknown:
            raise ValueError(f"held-out cities {unknown} are not among the cities {names}")
        if self.split == "blocked" and self.block_px < self.patch_size:
            raise ValueError(
                f"block_km={self.block_km} is {self.block_px} px, smaller than one {self.patch_size}-px window: "
                f"use at least {self.patch_size * 10 / 1000:g} km"
            )
        if self.catalog is None and any(c.catalog is None for c in self.cities):
            raise ValueError("give the STAC API URL (catalog / --catalog) for cities that do not name their own")
        return self

    @property
    def root(self) -> Location:
        """The training set's folder as a :class:`~crofuse.io.store.Location` (a path or an ``s3://`` URL)."""
        from crofuse.io.store import location

        return location(self.out)

    @property
    def block_px(self) -> int:
        resolution = float(self.cube.get("resolution", 10.0))
        return int(round(self.block_km * 1000.0 / resolution))

    @property
    def effective_buffer_px(self) -> int:
        return self.patch_size if self.buffer_px is None else self.buffer_px

    def catalog_for(self, city: CitySpec) -> str:
        return city.catalog or self.catalog  # type: ignore[return-value]

    def settings(self) -> dict[str, Any]:
        """Everything but the folder, as JSON (what ``patches.json`` records and the fingerprint hashes)."""
        return self.model_dump(mode="json", exclude={"out"})

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:16]


def training_set_config(**fields: Any) -> TrainingSetConfig:
    """:class:`TrainingSetConfig` with a :class:`~crofuse.errors.ConfigError` that lists every bad field."""
    try:
        return TrainingSetConfig(**fields)
    except ValidationError as e:
        why = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid training-set settings: {why}") from None


__all__ = ["DEFAULT_BLOCK_KM", "TrainingSetConfig", "training_set_config"]
