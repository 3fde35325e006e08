"""Named sample cities and the 10 m UTM grid each one is simulated on."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crofuse.errors import ConfigError

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

PIXEL_SIZE_M = 10.0
"""Sentinel-2 10 m bands (B02, B03, B04, B08): the grid every simulated raster lives on."""

_SLUG = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class City:
    """A named place: its slug, centre (lon/lat, WGS84), the UTM CRS its rasters are written in, and the palette
    (:mod:`crofuse.synthetic.palettes`) generator v2 draws it with (v1 ignores it)."""

    name: str
    lon: float
    lat: float
    epsg: int
    palette: str = "humid-subtropical-china"

    def __post_init__(self) -> None:
        from crofuse.synthetic.palettes import get_palette

        get_palette(self.palette)  # validates the name
        if not _SLUG.match(self.name):
            raise ConfigError(
                f"city name {self.name!r} is not a slug: use lower-case letters, digits and '-' (e.g. 'wuhan')"
            )
        if not (-180 <= self.lon <= 180 and -80 <= self.lat <= 84):
            raise ConfigError(f"city {self.name!r}: centre ({self.lon}, {self.lat}) is outside the UTM domain")
        zone = int((self.lon + 180) // 6) + 1
        expected = (32600 if self.lat >= 0 else 32700) + zone
        if self.epsg != expected:
            raise ConfigError(
                f"city {self.name!r}: EPSG:{self.epsg} is not the UTM zone of ({self.lon}, {self.lat}); "
                f"use EPSG:{expected}"
            )

    @property
    def key(self) -> int:
        """A stable integer derived from the name (seeds per-city randomness; not Python's salted ``hash``)."""
        return zlib.crc32(self.name.encode())

    def centre_xy(self) -> tuple[float, float]:
        """Centre in the city's UTM CRS (metres), snapped to the 10 m grid."""
        from pyproj import Transformer

        t = Transformer.from_crs(4326, self.epsg, always_xy=True)
        x, y = t.transform(self.lon, self.lat)
        return round(x / PIXEL_SIZE_M) * PIXEL_SIZE_M, round(y / PIXEL_SIZE_M) * PIXEL_SIZE_M

    def geobox(self, size_km: float) -> GeoBox:
        """The square 10 m grid of side ``size_km`` centred on the city (north-up, pixel edges on the 10 m grid)."""
        from odc.geo.geobox import GeoBox

        n = grid_pixels(size_km)
        cx, cy = self.centre_xy()
        half = n * PIXEL_SIZE_M / 2
        x0, y0 = cx - half, cy - half
        return GeoBox.from_bbox(
            (x0, y0, x0 + n * PIXEL_SIZE_M, y0 + n * PIXEL_SIZE_M), f"EPSG:{self.epsg}", shape=(n, n)
        )


def grid_pixels(size_km: float) -> int:
    """Number of 10 m pixels along one side of a ``size_km`` square (an even number)."""
    if not (0.5 <= size_km <= 50):
        raise ConfigError(f"size_km={size_km} is not allowed: use a side between 0.5 and 50 km")
    n = int(round(size_km * 1000 / PIXEL_SIZE_M))
    return n + (n % 2)


WUHAN = City("wuhan", 114.30, 30.59, 32650, "humid-subtropical-china")
NANJING = City("nanjing", 118.80, 32.06, 32650, "humid-subtropical-china")
CAIRO = City("cairo", 31.24, 30.04, 32636, "arid-nile")
KUALA_LUMPUR = City("kuala-lumpur", 101.69, 3.14, 32647, "tropical-humid")
MILAN = City("milan", 9.19, 45.46, 32632, "temperate-europe")

DEFAULT_CITIES: tuple[City, ...] = (WUHAN, NANJING, CAIRO, KUALA_LUMPUR, MILAN)
"""The default sample cities, one per palette and two of the paper's humid Yangtze type (docs/sample-data.md,
"Cities"): Wuhan (the paper's WHU-IS area) and Nanjing, a dry city (Cairo), a tropical one (Kuala Lumpur) and a
European one with tile roofs (Milan)."""

HEFEI = City("hefei", 117.27, 31.86, 32650, "humid-subtropical-china")
NANCHANG = City("nanchang", 115.86, 28.68, 32650, "humid-subtropical-china")
TRAINING_CITIES: tuple[City, ...] = (HEFEI, NANCHANG)
"""Two more humid cities of the Yangtze basin (the humid palette, other procedural layouts): the demo trains its
model on them, so the cities it maps are never seen in training."""

KNOWN_CITIES: tuple[City, ...] = DEFAULT_CITIES + TRAINING_CITIES


def city_by_name(name: str, cities: tuple[City, ...] = KNOWN_CITIES) -> City:
    """Look a city up by slug; the error lists the known ones."""
    for c in cities:
        if c.name == name:
            return c
    raise ConfigError(f"unknown city {name!r}; known cities: {', '.join(c.name for c in cities)}")
