"""Label sources: where impervious-surface labels come from, kept as data (as catalog profiles are).

A :class:`LabelSource` declares a product's classes, its nodata, the year it applies to, and how its values map to
the training labels ``{0 pervious, 1 impervious, 255 ignore}`` (``crofuse.PERVIOUS/IMPERVIOUS/NODATA_LABEL``):

- ``sample``: the sample catalog's ``labels`` collection, the generator's exact truth (``docs/sample-data.md``);
- ``esa-worldcover``: a STAC collection shaped like Planetary Computer's ``esa-worldcover`` (10 m, class 50 =
  built-up; products for 2020 and 2021 only);
- ``io-lulc``: shaped like ``io-lulc-annual-v02`` (Esri/Impact Observatory annual land cover, class 7 = built area);
- a user's GeoTIFF (:func:`raster_source`): any CRS and resolution, with a class mapping or a threshold on a
  fraction;
- a user's vector file (:func:`vector_source`): polygons of impervious surface, rasterised at >= 50 % cover as the
  sample labels are.

A source can also be written as a YAML file (the fields of :class:`LabelSource`) and given by path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crofuse import IMPERVIOUS, NODATA_LABEL, PERVIOUS
from crofuse.errors import ConfigError, LabelError
from crofuse.labels.legends import (
    IO_BUILT_AREA,
    IO_LULC_CLASSES,
    IO_NODATA,
    WORLDCOVER_BUILT_UP,
    WORLDCOVER_CLASSES,
    WORLDCOVER_NODATA,
    class_names,
)

LabelKind = Literal["stac", "raster", "vector"]
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".shp", ".fgb", ".parquet", ".gml", ".kml")
DEFINITION_SUFFIXES = (".yaml", ".yml")


class LabelSource(BaseModel):
    """One source of impervious-surface labels and how its values become ``{0, 1, 255}``.

    Attributes
    ----------
    name: what records and messages call it.
    kind: ``stac`` (a collection of a STAC API), ``raster`` (a GeoTIFF or any GDAL raster) or ``vector``
        (polygons of impervious surface).
    collection, asset: the STAC collection id and asset key (``stac``).
    path, layer: the file and, for multi-layer vector files, the layer (``raster``/``vector``).
    classes: the legend, code -> name. A value that is neither in it nor nodata is an error (unknown class codes).
        Empty for fraction rasters.
    impervious: codes that are impervious (1); ``ignore``: codes that carry no label (255, e.g. clouds); every other
        code in ``classes`` is pervious (0).
    nodata: the product's nodata value (255 in the output).
    fraction_threshold: for rasters of impervious *fraction*: values >= the threshold are impervious (in the
        raster's own units: 0.5 for 0-1 fractions, 50 for percent).
    year: the year a file applies to (``None``: any year; STAC items carry their own years).
    min_cover: share of a 10 m pixel a polygon must cover to be impervious (vector; 0.5 as the sample labels).
    supersample: sub-pixels per side used to measure that cover (vector).
    exact: the source is ground truth (the sample labels), not a product with its own errors.
    resolution_m: the product's nominal resolution (informational).
    reference: where the product and its accuracy are described.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: LabelKind
    description: str = ""
    collection: str | None = None
    asset: str | None = None
    path: str | None = None
    layer: str | None = None
    classes: dict[int, str] = Field(default_factory=dict)
    impervious: tuple[int, ...] = ()
    ignore: tuple[int, ...] = ()
    nodata: float | None = None
    fraction_threshold: float | None = None
    year: int | None = None
    min_cover: float = Field(default=0.5, gt=0.0, le=1.0)
    supersample: int = Field(default=5, ge=1, le=20)
    exact: bool = False
    resolution_m: float | None = None
    reference: str = ""

    @field_validator("classes", mode="before")
    @classmethod
    def _int_keys(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            try:
                return {int(k): str(v) for k, v in value.items()}
            except (TypeError, ValueError) as e:
                raise ValueError(f"class codes must be integers: {e}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> LabelSource:
        if self.kind == "stac" and not (self.collection and self.asset):
            raise ValueError("a STAC label source needs `collection` and `asset`")
        if self.kind in ("raster", "vector") and not self.path:
            raise ValueError(f"a {self.kind} label source needs `path`")
        if self.kind == "vector":
            return self
        if self.fraction_threshold is None:
            if not self.classes:
                raise ValueError("give the legend (`classes`) with the `impervious` codes, or a `fraction_threshold`")
            if not self.impervious:
                raise ValueError("no `impervious` class codes: which values are impervious surface?")
            unknown = [c for c in sorted(set(self.impervious) | set(self.ignore)) if c not in self.classes]
            if unknown:
                raise ValueError(f"impervious/ignore codes {unknown} are not in the legend {sorted(self.classes)}")
        return self

    # ---------------------------------------------------------------------------------------------- values
    @property
    def categorical(self) -> bool:
        """Class codes (resampled with nearest/mode), not a continuous fraction (resampled with average)."""
        return self.fraction_threshold is None

    def to_binary(self, values: np.ndarray, *, what: str = "") -> np.ndarray:
        """The product's values -> uint8 ``{0 pervious, 1 impervious, 255 ignore}``.

        Raises :class:`~crofuse.errors.LabelError` on class codes that are not in the legend (a wrong source or a
        corrupt file), naming them and the legend.
        """
        v = np.asarray(values)
        out = np.full(v.shape, NODATA_LABEL, dtype=np.uint8)
        missing = ~np.isfinite(v) if np.issubdtype(v.dtype, np.floating) else np.zeros(v.shape, bool)
        if self.nodata is not None and not np.isnan(self.nodata):
            missing |= v == self.nodata
        if self.fraction_threshold is not None:
            ok = ~missing
            out[ok] = np.where(v[ok] >= self.fraction_threshold, IMPERVIOUS, PERVIOUS)
            return out
        present = v[~missing]
        codes = np.unique(present)
        unknown = [c for c in codes.tolist() if int(c) != c or int(c) not in self.classes]
        if unknown:
            legend = ", ".join(f"{k} {n}" for k, n in sorted(self.classes.items()))
            raise LabelError(
                f"label source {self.name!r}{f' ({what})' if what else ''} holds class codes {unknown[:8]} that are "
                f"not in its legend ({legend}). Check that the file is this product, or declare the codes in the "
                "source's `classes`"
            )
        labelled = ~missing & ~np.isin(v, list(self.ignore))
        out[labelled] = np.where(np.isin(v[labelled], list(self.impervious)), IMPERVIOUS, PERVIOUS)
        return out

    def describe(self) -> dict[str, Any]:
        """What a training set's manifest and a model card record about the labels."""
        return self.model_dump(mode="json", exclude_defaults=False)


SAMPLE = LabelSource(
    name="sample",
    kind="stac",
    description="the sample catalog's reference labels: the generator's truth as an annotator draws it (a city-wide "
                "co-registration shift of ~0.75 px, a small warp, a time lag), 1 where >= 50 % impervious",
    collection="labels",
    asset="impervious",
    classes={0: "pervious", 1: "impervious"},
    impervious=(1,),
    nodata=255,
    resolution_m=10.0,
    reference="docs/sample-data.md, 'Reference labels' (procedural cities; not real data)",
)

SAMPLE_EXACT = LabelSource(
    name="sample-exact",
    kind="stac",
    description="the sample catalog's exact ground truth (no annotation error): only synthetic data has it; use it to "
                "score models and products against the truth",
    collection="labels",
    asset="impervious_exact",
    classes={0: "pervious", 1: "impervious"},
    impervious=(1,),
    nodata=255,
    exact=True,
    resolution_m=10.0,
    reference="docs/sample-data.md (procedural cities; not real data)",
)

ESA_WORLDCOVER = LabelSource(
    name="esa-worldcover",
    kind="stac",
    description="ESA WorldCover 10 m (v100 for 2020, v200 for 2021), built-up = 50, as on Planetary Computer",
    collection="esa-worldcover",
    asset="map",
    classes=class_names(WORLDCOVER_CLASSES),
    impervious=(WORLDCOVER_BUILT_UP,),
    nodata=WORLDCOVER_NODATA,
    resolution_m=10.0,
    reference="Zanaga et al. 2021/2022, ESA WorldCover 10 m v100/v200 (doi:10.5281/zenodo.5571936, 7254221)",
)

IO_LULC = LabelSource(
    name="io-lulc",
    kind="stac",
    description="Esri / Impact Observatory annual 10 m land use land cover (v02), built area = 7",
    collection="io-lulc-annual-v02",
    asset="data",
    classes=class_names(IO_LULC_CLASSES),
    impervious=(IO_BUILT_AREA,),
    ignore=(10,),  # clouds
    nodata=IO_NODATA,
    resolution_m=10.0,
    reference="Karra et al. 2021, Global land use / land cover with Sentinel 2 and deep learning (IGARSS)",
)

LABEL_SOURCES: dict[str, LabelSource] = {s.name: s for s in (SAMPLE, SAMPLE_EXACT, ESA_WORLDCOVER, IO_LULC)}
"""The built-in STAC label sources by name."""


def raster_source(
    path: str | Path,
    *,
    impervious: Sequence[int] = (),
    classes: Mapping[int, str] | None = None,
    ignore: Sequence[int] = (),
    nodata: float | None = None,
    fraction_threshold: float | None = None,
    year: int | None = None,
) -> LabelSource:
    """A user's label raster: class codes (``impervious`` lists the impervious ones; ``classes`` the legend, by
    default ``{0, 1}`` plus the impervious codes) or a fraction thresholded at ``fraction_threshold``.

    ``nodata`` defaults to the file's own nodata value (read when the labels are loaded).
    """
    if fraction_threshold is None and not impervious:
        impervious = (1,)
    legend = dict(classes or {})
    if fraction_threshold is None and not legend:
        legend = {0: "pervious", **{int(c): "impervious" for c in impervious}, **{int(c): "ignore" for c in ignore}}
    return _validated(
        name=Path(path).name, kind="raster", path=str(Path(path).expanduser().resolve()), classes=legend,
        impervious=tuple(int(c) for c in impervious), ignore=tuple(int(c) for c in ignore), nodata=nodata,
        fraction_threshold=fraction_threshold, year=year,
        description=f"user raster {Path(path).name}",
    )


def vector_source(path: str | Path, *, layer: str | None = None, year: int | None = None,
                  min_cover: float = 0.5) -> LabelSource:
    """A user's polygons of impervious surface; every other pixel inside the file's coverage is pervious.

    The coverage is the layer named ``coverage`` of the file when there is one (polygons of the area that was
    interpreted), else the bounding box of all features.
    """
    return _validated(name=Path(path).name, kind="vector", path=str(Path(path).expanduser().resolve()),
                      layer=layer, year=year, min_cover=min_cover, description=f"user polygons {Path(path).name}",
                      classes={0: "pervious", 1: "impervious"}, impervious=(1,))


def _validated(**fields: Any) -> LabelSource:
    try:
        return LabelSource(**fields)
    except ValidationError as e:
        raise ConfigError(f"invalid label source: {_errors(e)}") from None


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'source'}: {err['msg']}" for err in e.errors())


def load_label_source(path: str | Path) -> LabelSource:
    """A label source written as YAML (the fields of :class:`LabelSource`); relative ``path`` fields are relative
    to the YAML file."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the label source file {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"label source file {path} must hold a mapping of LabelSource fields")
    if data.get("path") and not Path(data["path"]).is_absolute():
        data["path"] = str((path.parent / data["path"]).resolve())
    data.setdefault("name", path.stem)
    try:
        return LabelSource(**data)
    except ValidationError as e:
        raise ConfigError(f"label source file {path}: {_errors(e)}") from None


def get_label_source(spec: str | LabelSource | Mapping[str, Any], **options: Any) -> LabelSource:
    """Resolve ``--labels``: a built-in name (``sample``, ``esa-worldcover``, ``io-lulc``), a YAML definition, a
    raster file (``options``: ``impervious``, ``classes``, ``ignore``, ``nodata``, ``fraction_threshold``,
    ``year``) or a vector file (``layer``, ``year``, ``min_cover``)."""
    if isinstance(spec, LabelSource):
        return spec
    if isinstance(spec, Mapping):
        try:
            return LabelSource(**spec)
        except ValidationError as e:
            raise ConfigError(f"invalid label source: {_errors(e)}") from None
    options = {k: v for k, v in options.items() if v not in (None, (), [], {})}
    if spec in LABEL_SOURCES:
        if options:
            raise ConfigError(f"options {sorted(options)} apply to label files, not to the built-in source {spec!r}")
        return LABEL_SOURCES[spec]
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if suffix in DEFINITION_SUFFIXES:
        return load_label_source(path)
    if not path.exists():
        raise ConfigError(
            f"unknown label source {spec!r}: use one of {', '.join(LABEL_SOURCES)}, a label GeoTIFF, a vector file "
            f"({', '.join(VECTOR_SUFFIXES)}) or a YAML label-source definition"
        )
    if suffix in RASTER_SUFFIXES:
        allowed = {"impervious", "classes", "ignore", "nodata", "fraction_threshold", "year"}
        _only(options, allowed, spec)
        return raster_source(path, **options)
    if suffix in VECTOR_SUFFIXES:
        _only(options, {"layer", "year", "min_cover"}, spec)
        return vector_source(path, **options)
    raise ConfigError(f"label file {spec!r}: unknown type {suffix!r}; rasters: {RASTER_SUFFIXES}, vectors: "
                      f"{VECTOR_SUFFIXES}")


def _only(options: Mapping[str, Any], allowed: set[str], spec: str) -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        raise ConfigError(f"options {extra} do not apply to {spec!r} (allowed: {sorted(allowed)})")


__all__ = [
    "ESA_WORLDCOVER",
    "IO_LULC",
    "LABEL_SOURCES",
    "SAMPLE",
    "SAMPLE_EXACT",
    "LabelSource",
    "get_label_source",
    "load_label_source",
    "raster_source",
    "vector_source",
]
