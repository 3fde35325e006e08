"""Asset health: name the COG that is corrupt or unreachable instead of letting it become silent nodata."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crofuse.errors import AssetReadError

if TYPE_CHECKING:
    import pystac

log = logging.getLogger(__name__)

_GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "1"}


@dataclass(frozen=True)
class AssetRef:
    """One raster the cube reads: the item, the asset key and its href."""

    item: str
    key: str
    href: str

    def describe(self) -> str:
        """``item 'X' asset 'B04' (href)``."""
        return f"item {self.item!r} asset {self.key!r} ({self.href})"


def asset_refs(items: Iterable[pystac.Item], keys: Sequence[str]) -> list[AssetRef]:
    """Every (item, asset) pair that will be read."""
    return [AssetRef(it.id, k, it.assets[k].href) for it in items for k in keys]


def _open_header(ref: AssetRef) -> str | None:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.Env(**_GDAL_ENV), rasterio.open(ref.href) as src:
            if src.count < 1 or src.width < 1 or src.height < 1:
                return f"it has no pixels ({src.count} bands, {src.width}x{src.height})"
            if src.crs is None:
                return "it has no CRS"
    except (RasterioError, OSError) as e:
        return str(e)
    return None


def _read_all(ref: AssetRef) -> str | None:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.Env(**_GDAL_ENV), rasterio.open(ref.href) as src:
            for _, window in src.block_windows(1):
                src.read(1, window=window)
    except (RasterioError, OSError) as e:
        return str(e)
    return None


def _raise_if_failed(results: Sequence[tuple[AssetRef, str | None]], *, stage: str) -> None:
    bad = [(ref, err) for ref, err in results if err]
    if not bad:
        return
    lines = "\n".join(f"  - {ref.describe()}: {err}" for ref, err in bad[:5])
    more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise AssetReadError(
        f"{len(bad)} raster asset(s) could not be {stage}:\n{lines}{more}\n"
        "Re-download or regenerate them (for the sample catalog: `crofuse sample-catalog build`), or remove the "
        "items from the catalog; crofuse does not turn unreadable rasters into silent nodata."
    )


def check_headers(refs: Sequence[AssetRef], *, workers: int = 8) -> None:
    """Open every asset (header and first IFD) in parallel; raise :class:`AssetReadError` naming each failure."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(zip(refs, pool.map(_open_header, refs), strict=True))
    _raise_if_failed(results, stage="opened")


def diagnose_read_failure(refs: Sequence[AssetRef], error: BaseException) -> AssetReadError | None:
    """After a read failed during compute: the asset(s) named in the error, else the first that cannot be read
    in full. Returns the error to raise (the caller chains the original), or ``None`` if no asset is to blame."""
    text = str(error)
    named = [ref for ref in refs if ref.href in text or ref.href.removeprefix("file://") in text]
    if named:
        lines = "\n".join(f"  - {ref.describe()}" for ref in named[:5])
        return AssetReadError(
            f"reading raster data failed:\n{lines}\nerror: {text}\nThe file is corrupt or unreachable: re-download or "
            "regenerate it (for the sample catalog: `crofuse sample-catalog build`), or remove the item."
        )
    log.warning("a read failed without naming its asset (%s); reading every asset in full to find it", text)
    for ref in refs:
        err = _read_all(ref)
        if err:
            return AssetReadError(
                f"reading raster data failed: {ref.describe()} cannot be read in full: {err}\n(original error: "
                f"{text})\nRe-download or regenerate it, or remove the item."
            )
    return None


__all__ = ["AssetRef", "asset_refs", "check_headers", "diagnose_read_failure"]
