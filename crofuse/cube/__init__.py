"""Input cubes: STAC search -> seasonal Sentinel-2 + Sentinel-1 composites -> ``inputs.zarr`` (docs/cube.md).

    from crofuse.cube import CubeConfig, build_cube, open_cube
    path = build_cube(CubeConfig(city="wuhan", year=2021, aoi=(114.1, 30.4, 114.5, 30.7), catalog=URL))
    ds = open_cube(path)   # optical(band, y, x), sar(sar_band, y, x), valid, optical_count, sar_count
"""

from crofuse.cube.aoi import AOI, city_slug, parse_aoi, parse_bbox, target_geobox, utm_epsg
from crofuse.cube.build import build_cube
from crofuse.cube.config import CubeConfig, Season
from crofuse.cube.profiles import PROFILES, CatalogProfile, get_profile
from crofuse.cube.search import search_season
from crofuse.cube.store import cube_path, open_cube

__all__ = [
    "AOI",
    "PROFILES",
    "CatalogProfile",
    "CubeConfig",
    "Season",
    "build_cube",
    "city_slug",
    "cube_path",
    "get_profile",
    "open_cube",
    "parse_aoi",
    "parse_bbox",
    "search_season",
    "target_geobox",
    "utm_epsg",
]
