"""Validate product items and the collection offline: the STAC core schemas, then the extension fields.

What validates against a JSON schema, and what does not (no network at run time):

* **Core, by JSON schema.** pystac ships the STAC 1.1.0 core schemas (``item``, ``collection``, ``catalog`` and the
  item-spec fragments ``basics``, ``common``, ``datetime``, ``instrument``, ``licensing``, ``provider``, ``bands``,
  ``data-values``) and GeoJSON's ``Feature`` and ``Geometry``; :func:`validate_core` validates with
  ``pystac.validation.validate_dict`` against those only, through a validator that refuses to fetch anything (a
  schema that is not shipped is an error that says so, never a download).
* **Extensions, by pystac's extension classes.** pystac does not ship the extension schemas (projection v2.0.0,
  raster v1.1.0, classification v2.0.0, file v2.1.0), and we do not vendor them. :func:`check_extensions` reads
  every extension field through its pystac class (``ProjectionExtension``, ``RasterExtension``,
  ``ClassificationExtension``, ``FileExtension``: ``.ext()`` refuses an object that does not declare the
  extension) and checks what those schemas require of it: types, ranges, patterns (``proj:shape`` two positive
  integers, ``proj:transform`` 6 or 9 numbers, a ``raster:bands`` data type of the enumeration, class names
  ``^[0-9A-Za-z-_]+$`` with unique values, ``file:checksum`` a multihash in hex, ``file:size`` a non-negative
  integer); and that no field of an extension is used without the extension declared.
"""

from __future__ import annotations

import re
from typing import Any

from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

from crofuse.errors import DataError

EXTENSION_PREFIXES = ("proj:", "raster:", "classification:", "file:")


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator restricted to the schemas pystac ships: it never fetches a schema."""

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise GetSchemaError(schema_uri, LookupError(
                f"schema {schema_uri} is not shipped with pystac, and schemas are not fetched at run time"))
        return self.schema_cache[schema_uri]


def validate_core(stac: dict[str, Any]) -> list[str]:
    """Validate a STAC item or collection dict against the core schemas shipped with pystac; returns the schema
    URIs used. Raises :class:`pystac.errors.STACValidationError` when it is not valid."""
    from pystac.validation import validate_dict

    return list(validate_dict(stac, extensions=[], validator=OfflineValidator()))


def _fail(where: str, message: str) -> None:
    raise DataError(f"{where}: {message}")


def _fields(stac: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, field name)`` of every field of ``stac`` (properties, assets, collection top level)."""
    found = [(f"{stac.get('id')} properties", k) for k in (stac.get("properties") or {})]
    found += [(f"{stac.get('id')}", k) for k in stac if stac.get("type") == "Collection"]
    for key, asset in (stac.get("assets") or {}).items():
        found += [(f"{stac.get('id')} asset {key}", k) for k in asset]
    return found


def _check_projection(where: str, proj: Any) -> None:
    code, wkt2 = proj.code, proj.wkt2
    if code is None and wkt2 is None:
        _fail(where, "proj:code or proj:wkt2 must say the CRS")
    if code is not None and not re.fullmatch(r"[A-Z]+:[0-9A-Za-z._-]+", code):
        _fail(where, f"proj:code {code!r} is not AUTHORITY:CODE (e.g. 'EPSG:32650')")
    shape = proj.shape
    if shape is None or len(shape) != 2 or not all(isinstance(v, int) and v > 0 for v in shape):
        _fail(where, f"proj:shape {shape!r} must be two positive integers [rows, columns]")
    transform = proj.transform
    if transform is None or len(transform) not in (6, 9) or not all(isinstance(v, int | float) for v in transform):
        _fail(where, f"proj:transform {transform!r} must be 6 or 9 numbers")


def _check_raster(where: str, raster: Any) -> None:
    from pystac.extensions.raster import DataType

    bands = raster.bands
    if not bands:
        _fail(where, "raster:bands is empty")
    types = {t.value for t in DataType}
    for band in bands:
        data_type = band.data_type
        if data_type is None or str(getattr(data_type, "value", data_type)) not in types:
            _fail(where, f"raster:bands data_type {data_type!r} is not one of {sorted(types)}")
        for name in ("nodata", "scale", "offset", "spatial_resolution"):
            value = getattr(band, name)
            if value is not None and not isinstance(value, int | float):
                _fail(where, f"raster:bands {name} {value!r} is not a number")
        if band.spatial_resolution is not None and band.spatial_resolution <= 0:
            _fail(where, f"raster:bands spatial_resolution {band.spatial_resolution} must be > 0")


def _check_classification(where: str, classification: Any) -> None:
    classes = classification.classes
    if not classes:
        _fail(where, "classification:classes is empty")
    values = [c.value for c in classes]
    if len(set(values)) != len(values):
        _fail(where, f"classification:classes has repeated values {values}")
    for c in classes:
        if not isinstance(c.value, int):
            _fail(where, f"class value {c.value!r} is not an integer")
        if not re.fullmatch(r"[0-9A-Za-z_-]+", c.name or ""):
            _fail(where, f"class name {c.name!r} must match ^[0-9A-Za-z-_]+$")
        if c.nodata is not None and not isinstance(c.nodata, bool):
            _fail(where, f"class {c.name} nodata {c.nodata!r} is not a boolean")


def _check_file(where: str, file: Any) -> None:
    checksum, size = file.checksum, file.size
    if checksum is not None and not re.fullmatch(r"(?:[0-9a-f]{2})+", checksum):
        _fail(where, f"file:checksum {checksum!r} is not a multihash in hex")
    if checksum is not None and checksum.startswith("1220") and len(checksum) != 4 + 64:
        _fail(where, f"file:checksum {checksum!r}: a SHA-256 multihash has 64 hex digits after 1220")
    if size is not None and not (isinstance(size, int) and size >= 0):
        _fail(where, f"file:size {size!r} is not a non-negative integer")


def check_extensions(stac: dict[str, Any]) -> list[str]:
    """Check the extension fields of an item or collection dict with pystac's extension classes (see the module
    docstring); returns the extension schema URIs checked. Raises :class:`~crofuse.errors.DataError`."""
    import pystac
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    classes = {"proj:": ProjectionExtension, "raster:": RasterExtension,
               "classification:": ClassificationExtension, "file:": FileExtension}
    declared = set(stac.get("stac_extensions") or [])
    used = {prefix for _, name in _fields(stac) for prefix in EXTENSION_PREFIXES if name.startswith(prefix)}
    for prefix in used:
        uri = classes[prefix].get_schema_uri()
        family = uri[: uri.rindex("/v") + 2]  # https://stac-extensions.github.io/projection/v (any version)
        if not any(d.startswith(family) for d in declared):
            _fail(str(stac.get("id")), f"uses {prefix}* fields without declaring {uri}")
    obj: Any = pystac.Item.from_dict(stac) if stac.get("type") == "Feature" else pystac.Collection.from_dict(stac)
    if isinstance(obj, pystac.Item) and any(k.startswith("proj:") for k in obj.properties):
        _check_projection(f"{obj.id} properties", ProjectionExtension.ext(obj))
    for key, asset in obj.assets.items():
        where = f"{obj.id} asset {key}"
        fields = asset.extra_fields
        if any(k.startswith("proj:") for k in fields):
            _check_projection(where, ProjectionExtension.ext(asset))
        if "raster:bands" in fields:
            _check_raster(where, RasterExtension.ext(asset))
        if "classification:classes" in fields:
            _check_classification(where, ClassificationExtension.ext(asset))
        if any(k.startswith("file:") for k in fields):
            _check_file(where, FileExtension.ext(asset))
    return sorted(declared)


def validate(stac: dict[str, Any]) -> list[str]:
    """:func:`validate_core` then :func:`check_extensions`; returns the schema URIs validated or checked."""
    return validate_core(stac) + check_extensions(stac)


__all__ = ["EXTENSION_PREFIXES", "OfflineValidator", "check_extensions", "validate", "validate_core"]
