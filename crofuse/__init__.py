"""crofuse: annual urban impervious-surface maps from Sentinel-1/Sentinel-2 fusion with CroFuseNet.

Wu et al., "CroFuseNet: A Semantic Segmentation Network for Urban Impervious Surface Extraction Based on Cross
Fusion of Optical and SAR Images", IEEE JSTARS 16, 2023.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crofuse")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

OPTICAL_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
"""Sentinel-2 bands in model order: blue, green, red, NIR (paper Table I)."""

SAR_BANDS: tuple[str, ...] = ("VV", "VH")
"""Sentinel-1 polarisations in model order (paper Table I)."""

IMPERVIOUS, PERVIOUS, NODATA_LABEL = 1, 0, 255

__all__ = ["IMPERVIOUS", "NODATA_LABEL", "OPTICAL_BANDS", "PERVIOUS", "SAR_BANDS", "__version__"]
