"""True (ellipsoidal) pixel areas of a map grid.

A 10 m UTM pixel is 100 m² *on the map*, but UTM is conformal, not equal-area: its point scale factor ``k`` is 0.9996
on the central meridian and grows to about 1.001 at the zone edge, and areas scale by ``k²``. Counting UTM pixels
therefore over-states areas near the zone edges and under-states them near the central meridian by up to ~0.2 %,
which is the same order as real year-to-year urban growth of a mature city. :func:`pixel_area` divides every pixel's
map area by the projection's areal scale at its centre (``pyproj.Proj.get_factors().areal_scale``, evaluated on a
coarse node grid and interpolated bilinearly, because it varies smoothly), which gives the area on the WGS84
ellipsoid, the same number an equal-area reprojection would give without resampling the map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from crofuse.errors import DataError

M2_PER_KM2 = 1e6


def pixel_area(crs: Any, transform: Any, shape: tuple[int, int], *, max_nodes: int = 64) -> np.ndarray:
    """True area in m² of every pixel of a north-up grid, on the WGS84 ellipsoid.

    ``map area / areal scale`` at each pixel centre, where the areal scale of the projection comes from
    ``pyproj.Proj.get_factors`` (for UTM it is ``k²``, ``k`` the point scale factor). The scale is evaluated on at most
    ``max_nodes × max_nodes`` nodes spanning the grid and interpolated bilinearly to every pixel (it changes by less
    than 1e-6 across a 10 km block). Geographic CRSs (degrees) get the exact area of each row's cell on the
    ellipsoid instead.

    Args:
        crs: anything :class:`pyproj.CRS` accepts (``"EPSG:32650"``, a rasterio CRS, WKT).
        transform: the grid's affine transform (``rasterio``/``affine.Affine``), north-up (no rotation).
        shape: ``(height, width)`` in pixels.
        max_nodes: nodes per axis of the coarse scale grid.

    Returns:
        ``float64`` array of shape ``shape`` in m².
    """
    import pyproj
    from odc.geo.geobox import GeoBox

    crs = pyproj.CRS.from_user_input(crs)
    height, width = (int(s) for s in shape)
    if transform.b != 0 or transform.d != 0:
        raise DataError(f"pixel_area needs a north-up grid (no rotation); got transform {tuple(transform)[:6]}.")
    if height <= 0 or width <= 0:
        raise DataError(f"pixel_area needs a non-empty grid; got shape {shape}.")
    if crs.is_geographic:
        return _geographic_pixel_area(crs, transform, height, width)

    gbox = GeoBox((height, width), transform, crs.to_wkt())
    map_area = abs(transform.a * transform.e)  # m² per pixel in the projected plane
    rows = np.linspace(0.5, height - 0.5, min(height, max_nodes))
    cols = np.linspace(0.5, width - 0.5, min(width, max_nodes))
    cc, rr = np.meshgrid(cols, rows)
    x, y = gbox.pix2wld(cc, rr)  # node positions in the map CRS
    to_lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_lonlat.transform(x, y)
    scale = np.asarray(pyproj.Proj(crs).get_factors(lon, lat).areal_scale, dtype="float64").reshape(cc.shape)
    if not np.all(np.isfinite(scale)):
        raise DataError(f"The projection {crs.to_string()} has no finite areal scale over this grid.")
    return map_area / _bilinear(scale, rows, cols, height, width)


def pixel_area_of(like: xr.DataArray) -> np.ndarray:
    """:func:`pixel_area` of the grid of a raster read with rioxarray."""
    from crofuse.statistics.maps import geobox_of

    gbox = geobox_of(like)
    return pixel_area(gbox.crs.to_wkt(), gbox.affine, gbox.shape)


def _interp_weights(nodes: np.ndarray, n: int) -> np.ndarray:
    """``(n, len(nodes))`` matrix of linear-interpolation weights from node positions to pixel centres."""
    weights = np.zeros((n, len(nodes)))
    centres = np.arange(n) + 0.5
    if len(nodes) == 1:
        weights[:, 0] = 1.0
        return weights
    hi = np.clip(np.searchsorted(nodes, centres), 1, len(nodes) - 1)
    lo = hi - 1
    t = np.clip((centres - nodes[lo]) / (nodes[hi] - nodes[lo]), 0.0, 1.0)
    weights[np.arange(n), lo] = 1.0 - t
    weights[np.arange(n), hi] += t
    return weights


def _bilinear(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    """Separable linear interpolation of a node grid to every pixel centre."""
    return _interp_weights(rows, height) @ values @ _interp_weights(cols, width).T


def _geographic_pixel_area(crs: Any, transform: Any, height: int, width: int) -> np.ndarray:
    """Exact ellipsoidal area of lon/lat cells (all cells of a row have the same area)."""
    import pyproj

    geod = pyproj.Geod(ellps="WGS84") if crs.ellipsoid is None else pyproj.Geod(
        a=crs.ellipsoid.semi_major_metre, rf=crs.ellipsoid.inverse_flattening
    )
    row_area = np.empty(height)
    dx = abs(transform.a)
    for i in range(height):
        top = transform.f + i * transform.e
        bottom = top + transform.e
        lons = [0.0, dx, dx, 0.0]
        lats = [top, top, bottom, bottom]
        row_area[i] = abs(geod.polygon_area_perimeter(lons, lats)[0])
    return np.repeat(row_area[:, None], width, axis=1)


def naive_pixel_area(transform: Any, shape: tuple[int, int]) -> np.ndarray:
    """Map-plane pixel area in m² (``|a·e|`` for every pixel): what blind pixel counting assumes."""
    return np.full(tuple(int(s) for s in shape), abs(transform.a * transform.e), dtype="float64")


def grid_of(da: xr.DataArray) -> tuple[Any, Any, tuple[int, int]]:
    """``(crs, transform, (height, width))`` of a 2-D raster read with rioxarray (from its ``.odc.geobox``)."""
    from crofuse.statistics.maps import geobox_of

    gbox = geobox_of(da)
    return da.rio.crs, gbox.affine, tuple(int(s) for s in gbox.shape)


__all__ = ["M2_PER_KM2", "grid_of", "naive_pixel_area", "pixel_area", "pixel_area_of"]
