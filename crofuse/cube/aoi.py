"""Areas of interest: parse a city polygon or bbox (lon/lat), choose the UTM grid, slug the city name.

A city goes in as a GeoJSON polygon (file, dict or shapely geometry) or a ``(west, south, east, north)`` bbox in
WGS84 degrees. The cube is written on a 10 m grid in the UTM zone of the AOI's centroid, pixel edges on multiples of
10 m (the Sentinel-2 10 m band grid), so cubes of the same city in different years share one pixel grid.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crofuse.errors import AOIError, ConfigError

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox
    from shapely.geometry.base import BaseGeometry

MAX_AOI_DEGREES = 5.0
"""Largest bbox side accepted (about 500 km): bigger areas are almost always a unit or axis-order mistake."""


@dataclass(frozen=True)
class AOI:
    """An area of interest in WGS84 lon/lat: a valid (multi)polygon and its bbox ``(west, south, east, north)``."""

    geometry: BaseGeometry

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` in degrees."""
        w, s, e, n = self.geometry.bounds
        return (float(w), float(s), float(e), float(n))

    @property
    def centroid(self) -> tuple[float, float]:
        """``(lon, lat)`` of the polygon's centroid."""
        c = self.geometry.centroid
        return (float(c.x), float(c.y))

    @property
    def geojson(self) -> dict[str, Any]:
        """The polygon as a GeoJSON geometry dict (what STAC ``intersects`` takes)."""
        from shapely.geometry import mapping

        return json.loads(json.dumps(mapping(self.geometry)))

    @property
    def utm_zones(self) -> tuple[int, ...]:
        """Every UTM zone number the AOI touches (more than one means the cube is reprojected for some pixels)."""
        w, _, e, _ = self.bbox
        return tuple(range(utm_zone(w), utm_zone(e) + 1))


def utm_zone(lon: float) -> int:
    """UTM zone number (1-60) of a longitude (the regular 6-degree zones; no Norway/Svalbard exceptions)."""
    return min(int((lon + 180.0) // 6.0) + 1, 60)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone holding ``(lon, lat)``: 326zz north of the equator, 327zz south."""
    return (32600 if lat >= 0 else 32700) + utm_zone(lon)


def _check_lonlat_box(w: float, s: float, e: float, n: float, *, what: str) -> None:
    vals = (w, s, e, n)
    if not all(math.isfinite(v) for v in vals):
        raise AOIError(f"{what} {vals} has non-finite values; give (west, south, east, north) in degrees")
    lat_bad = any(abs(v) > 90 for v in (s, n))
    lon_ok_as_lat = all(abs(v) <= 90 for v in (w, e))
    if lat_bad and lon_ok_as_lat and all(abs(v) <= 180 for v in (s, n)):
        raise AOIError(
            f"{what} {vals} has latitudes outside [-90, 90]: it looks like latitude/longitude are swapped. "
            f"Give (west, south, east, north) = (lon_min, lat_min, lon_max, lat_max), "
            f"e.g. --bbox {s} {w} {n} {e}"
        )
    if lat_bad or any(abs(v) > 180 for v in (w, e)):
        raise AOIError(
            f"{what} {vals} is not in lon/lat degrees (lon in [-180, 180], lat in [-90, 90]); "
            "reproject the AOI to WGS84 (EPSG:4326) first"
        )
    if w >= e:
        hint = " (areas crossing the antimeridian are not supported: split them)" if w > 0 > e else ""
        raise AOIError(f"{what} {vals}: west ({w}) must be less than east ({e}){hint}; order is (west, south, east, north)")
    if s >= n:
        raise AOIError(f"{what} {vals}: south ({s}) must be less than north ({n}); order is (west, south, east, north)")
    if e - w > MAX_AOI_DEGREES or n - s > MAX_AOI_DEGREES:
        raise AOIError(
            f"{what} {vals} spans {e - w:.2f} x {n - s:.2f} degrees; the limit is {MAX_AOI_DEGREES} degrees per side. "
            "Map a city, not a country: split large areas"
        )


def _geometry_from_geojson(obj: Mapping[str, Any], *, source: str) -> BaseGeometry:
    from shapely.geometry import shape
    from shapely.ops import unary_union

    kind = obj.get("type")
    if kind == "FeatureCollection":
        feats = obj.get("features") or []
        if not feats:
            raise AOIError(f"{source}: the FeatureCollection has no features; it must hold the city polygon")
        return unary_union([_geometry_from_geojson(f, source=source) for f in feats])
    if kind == "Feature":
        geom = obj.get("geometry")
        if not geom:
            raise AOIError(f"{source}: the Feature has no geometry")
        return _geometry_from_geojson(geom, source=source)
    try:
        return shape(obj)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise AOIError(f"{source}: not a GeoJSON geometry ({e}); give a Polygon or MultiPolygon in lon/lat") from e


def parse_bbox(bbox: Sequence[float]) -> AOI:
    """An AOI from ``(west, south, east, north)`` in degrees; detects swapped lat/lon and reversed corners."""
    from shapely.geometry import box

    if len(bbox) != 4:
        raise AOIError(f"bbox {tuple(bbox)} must have 4 numbers: west south east north (degrees)")
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError) as err:
        raise AOIError(f"bbox {tuple(bbox)} must hold numbers: west south east north (degrees)") from err
    _check_lonlat_box(w, s, e, n, what="bbox")
    return AOI(box(w, s, e, n))


def parse_aoi(aoi: Any) -> AOI:
    """Turn a user AOI into a validated :class:`AOI` (WGS84 polygon).

    Accepts an :class:`AOI`, a 4-sequence bbox ``(west, south, east, north)``, a shapely (multi)polygon, a GeoJSON
    dict (Geometry, Feature or FeatureCollection, whose polygons are merged), a path to a GeoJSON file, or a string
    holding GeoJSON. Raises :class:`~crofuse.errors.AOIError` when it is not a valid, non-empty polygon in lon/lat.
    """
    from shapely.geometry.base import BaseGeometry
    from shapely.validation import explain_validity

    if isinstance(aoi, AOI):
        return aoi
    source = "AOI"
    if isinstance(aoi, (str, Path)):
        text = str(aoi).strip()
        if text.startswith("{"):
            source = "AOI string"
            try:
                aoi = json.loads(text)
            except json.JSONDecodeError as e:
                raise AOIError(f"AOI string is not valid JSON: {e}") from e
        else:
            path = Path(text)
            source = f"AOI file {path}"
            if not path.is_file():
                raise AOIError(f"{source} does not exist; give a GeoJSON file with the city polygon (lon/lat)")
            try:
                aoi = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise AOIError(f"{source} is not GeoJSON: {e}") from e
    if isinstance(aoi, BaseGeometry):
        geom = aoi
    elif isinstance(aoi, Mapping):
        geom = _geometry_from_geojson(aoi, source=source)
    elif isinstance(aoi, Sequence) and all(isinstance(v, (int, float)) for v in aoi):
        return parse_bbox(aoi)
    else:
        raise AOIError(
            f"{source} of type {type(aoi).__name__} is not understood: give a GeoJSON polygon (file, dict or string), "
            "a shapely polygon, or a bbox (west, south, east, north)"
        )
    if geom.is_empty:
        raise AOIError(f"{source} is empty; give the city polygon")
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise AOIError(f"{source} is a {geom.geom_type}, not a Polygon or MultiPolygon; give the city's area")
    if not geom.is_valid:
        raise AOIError(
            f"{source} is not a valid polygon ({explain_validity(geom)}). Fix it (e.g. shapely.make_valid, or "
            "QGIS 'Fix geometries') and try again"
        )
    if geom.area == 0:
        raise AOIError(f"{source} has zero area")
    w, s, e, n = geom.bounds
    _check_lonlat_box(w, s, e, n, what=f"{source} bounds")
    return AOI(geom)


_SLUG_STRIP = re.compile(r"[^a-z0-9]+")
SLUG_MAX = 80
"""Longest slug (folder name) :func:`city_slug` returns."""
_SLUG_HASH = 8  # hex digits of the suffix that keeps truncated slugs apart


def city_slug(name: str) -> str:
    """A file-system safe slug of a city name: ASCII lower case, digits and ``-`` (``"São Paulo" -> "sao-paulo"``).

    Path separators and dots are dropped, so a slug can never climb out of the output root (``"../x" -> "x"``).
    Slugs of at most :data:`SLUG_MAX` characters are returned whole. A longer one is cut and ends in ``-`` plus the
    first 8 hex digits of the SHA-256 of the whole slug, so two long names that share a prefix get two folders
    (still :data:`SLUG_MAX` characters at most); names that differ only in case, accents or punctuation share one.
    """
    import hashlib

    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    slug = _SLUG_STRIP.sub("-", ascii_name.lower()).strip("-")
    if not slug:
        raise ConfigError(f"city name {name!r} has no letters or digits to build a folder name from")
    if len(slug) <= SLUG_MAX:
        return slug
    digest = hashlib.sha256(slug.encode()).hexdigest()[:_SLUG_HASH]
    return f"{slug[: SLUG_MAX - _SLUG_HASH - 1].rstrip('-')}-{digest}"


def target_geobox(aoi: AOI, *, resolution: float = 10.0, epsg: int | None = None) -> GeoBox:
    """The output grid: ``resolution`` metres in ``epsg`` (default: UTM zone of the AOI centroid), edges snapped
    to multiples of ``resolution`` and covering the whole AOI."""
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry

    if epsg is None:
        epsg = utm_epsg(*aoi.centroid)
    geom = Geometry(aoi.geometry, crs="EPSG:4326").to_crs(f"EPSG:{epsg}")
    return GeoBox.from_geopolygon(geom, resolution=resolution, crs=f"EPSG:{epsg}")


__all__ = ["AOI", "city_slug", "parse_aoi", "parse_bbox", "target_geobox", "utm_epsg", "utm_zone"]
