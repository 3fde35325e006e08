"""Asset health: name the COG that is corrupt or unreachable instead of letting it become silent nodata.

Three checks, all threaded and all before any pixel is loaded, each raising :class:`~crofuse.errors.AssetReadError`
that names the item, the asset key and the href:

- :func:`check_headers`: every COG opens (header and first IFD) and its georeferencing is the one the catalog's
  projection extension gives (``proj:code``/``proj:epsg``, and where the asset has them ``proj:shape`` and
  ``proj:transform``): a damaged GeoTIFF tag otherwise moves or re-projects the pixels without any read error.
- :func:`verify_files`: where an asset carries the STAC file extension's ``file:size`` and ``file:checksum``
  (multihash, https://github.com/stac-extensions/file, v2.1.0), the bytes are what the catalog says. This is the
  only check that catches damage inside a compressed tile that still decodes (to wrong values): the header is
  intact and the decoder may not notice.
- :func:`diagnose_read_failure`: after a read failed during compute, which asset it was.

Values that decode but are physically impossible are handled in :mod:`crofuse.cube.composite`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crofuse.errors import AssetReadError

if TYPE_CHECKING:
    import pystac

log = logging.getLogger(__name__)

_GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "1"}


@dataclass(frozen=True)
class AssetRef:
    """One raster the cube reads: the item, the asset key, its href and, where the catalog gives them, the
    expected ``file:checksum`` (multihash, hex) and ``file:size`` (bytes)."""

    item: str
    key: str
    href: str
    checksum: str | None = None
    size: int | None = None
    epsg: int | None = None
    shape: tuple[int, int] | None = None
    transform: tuple[float, ...] | None = None

    def describe(self) -> str:
        """``item 'X' asset 'B04' (href)``."""
        return f"item {self.item!r} asset {self.key!r} ({self.href})"


def _epsg(fields: dict) -> int | None:
    code = fields.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        try:
            return int(code.split(":", 1)[1])
        except ValueError:
            return None
    epsg = fields.get("proj:epsg")
    return int(epsg) if isinstance(epsg, int) and not isinstance(epsg, bool) else None


def _number(v) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def asset_refs(items: Iterable[pystac.Item], keys: Sequence[str]) -> list[AssetRef]:
    """Every (item, asset) pair that will be read, with what the catalog says about its file and grid.

    The grid is taken from the asset's projection fields; only the CRS falls back to the item's (item-level
    ``proj:shape``/``proj:transform`` describe one resolution, not necessarily this asset's).
    """
    refs = []
    for it in items:
        for k in keys:
            a = it.assets[k]
            f = a.extra_fields
            shape = f.get("proj:shape")
            transform = f.get("proj:transform")
            refs.append(AssetRef(
                it.id, k, a.href,
                checksum=str(f["file:checksum"]) if f.get("file:checksum") else None,
                size=_number(f.get("file:size")),
                epsg=_epsg(f) or _epsg(it.properties),
                shape=tuple(int(v) for v in shape) if isinstance(shape, list) and len(shape) == 2 else None,
                transform=tuple(float(v) for v in transform[:6]) if isinstance(transform, list)
                and len(transform) >= 6 else None,
            ))
    return refs


def _grid_mismatch(ref: AssetRef, src) -> str | None:
    """What differs between the file's georeferencing and the catalog's, or ``None``."""
    found_epsg = src.crs.to_epsg() if src.crs is not None else None
    if ref.epsg is not None and found_epsg != ref.epsg:
        return f"its CRS is {src.crs.to_string() if src.crs else None}, the catalog says EPSG:{ref.epsg}"
    if ref.shape is not None and (src.height, src.width) != ref.shape:
        return f"its shape is {[src.height, src.width]}, the catalog's proj:shape is {list(ref.shape)}"
    if ref.transform is not None:
        found = tuple(src.transform)[:6]
        if any(abs(a - b) > 1e-6 * max(1.0, abs(b)) for a, b in zip(found, ref.transform, strict=True)):
            return f"its transform is {list(found)}, the catalog's proj:transform is {list(ref.transform)}"
    return None


def _open_header(ref: AssetRef) -> str | None:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.Env(**_GDAL_ENV), rasterio.open(ref.href) as src:
            if src.count < 1 or src.width < 1 or src.height < 1:
                return f"it has no pixels ({src.count} bands, {src.width}x{src.height})"
            if src.crs is None:
                return "it has no CRS"
            mismatch = _grid_mismatch(ref, src)
            if mismatch:
                return f"its georeferencing is not the catalog's: {mismatch} (a damaged header, or a wrong item)"
    except (RasterioError, OSError, ValueError) as e:  # damaged tags can also fail to decode (UnicodeDecodeError)
        return f"{type(e).__name__}: {e}" if not isinstance(e, RasterioError | OSError) else str(e)
    return None


def _read_all(ref: AssetRef) -> str | None:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.Env(**_GDAL_ENV), rasterio.open(ref.href) as src:
            for _, window in src.block_windows(1):
                src.read(1, window=window)
    except (RasterioError, OSError, ValueError) as e:
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


# ------------------------------------------------------------------------------------------- file:checksum / size
_MULTIHASH = {0x11: ("sha1", 20), 0x12: ("sha256", 32), 0x13: ("sha512", 64), 0xD5: ("md5", 16)}
"""Multihash function codes crofuse can verify (https://github.com/multiformats/multicodec): sha1, sha2-256,
sha2-512, md5. Other codes are reported, not guessed."""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def parse_multihash(text: str) -> tuple[str, str]:
    """``"1220<64 hex>"`` -> ``("sha256", "<64 hex>")``. Raises ``ValueError`` on anything it cannot verify."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"file:checksum {text!r} is not a hex-encoded multihash") from None
    code, i = _varint(raw, 0)
    length, i = _varint(raw, i)
    if code not in _MULTIHASH:
        raise ValueError(f"file:checksum {text!r} uses multihash function 0x{code:x}, which crofuse cannot verify "
                         f"(known: {', '.join(n for n, _ in _MULTIHASH.values())})")
    name, size = _MULTIHASH[code]
    digest = raw[i:]
    if length != size or len(digest) != size:
        raise ValueError(f"file:checksum {text!r}: a {name} digest has {size} bytes, this one {len(digest)}")
    return name, digest.hex()


def _open_bytes(href: str):
    """A binary file object for a local path or ``file://`` URL, an http(s) URL (urllib, 60 s timeout), or anything
    else fsspec opens (s3://, gs://, ... with the matching fsspec backend installed)."""
    local = href.removeprefix("file://")
    if "://" not in local:
        return open(Path(local), "rb")
    if href.startswith(("http://", "https://")):
        import urllib.request

        return urllib.request.urlopen(href, timeout=60)  # the catalog's own asset URL
    import fsspec

    return fsspec.open(href, "rb").open()


def _verify_file(ref: AssetRef) -> str | None:
    """``None`` when the file matches its ``file:size``/``file:checksum`` (or has neither), else what differs."""
    import hashlib

    if ref.checksum is None and ref.size is None:
        return None
    algo = want = None
    if ref.checksum is not None:
        try:
            algo, want = parse_multihash(ref.checksum)
        except ValueError as e:
            return str(e)
    h = hashlib.new(algo) if algo else None
    n = 0
    try:
        with _open_bytes(ref.href) as f:
            while block := f.read(1 << 20):
                n += len(block)
                if h is not None:
                    h.update(block)
    except (OSError, ValueError, ImportError) as e:  # ImportError: no fsspec backend for the URL's scheme
        return f"it cannot be read to verify its file:checksum ({type(e).__name__}: {e})"
    if ref.size is not None and n != ref.size:
        return f"file:size mismatch: the catalog says {ref.size} bytes, the file has {n}"
    if h is not None and h.hexdigest() != want:
        return f"file:checksum mismatch ({algo}): expected {want}, found {h.hexdigest()}"
    return None


def verify_files(refs: Sequence[AssetRef], *, workers: int = 8) -> int:
    """Check every asset that carries ``file:size``/``file:checksum`` against its bytes, in parallel.

    Returns how many assets were verified; raises :class:`AssetReadError` naming each mismatch (item, asset key,
    href, expected vs found) and what to do. Reads whole files: for remote catalogs whose items carry checksums this
    downloads every asset once (turn it off with ``CubeConfig.verify_checksums=False``).
    """
    todo = [r for r in refs if r.checksum is not None or r.size is not None]
    if not todo:
        return 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(zip(todo, pool.map(_verify_file, todo), strict=True))
    bad = [(ref, err) for ref, err in results if err]
    if bad:
        lines = "\n".join(f"  - {ref.describe()}: {err}" for ref, err in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise AssetReadError(
            f"{len(bad)} raster asset(s) are not the files their catalog describes (file:size/file:checksum):\n"
            f"{lines}{more}\nThe file was damaged or replaced after the catalog was written: re-download or "
            "regenerate it (for the sample catalog: `crofuse sample-catalog build`, which rewrites damaged items), "
            "or remove the item. To build anyway, set verify_checksums=False: impossible values are then still "
            "caught by the bounds checks, values within the bounds are not."
        )
    return len(todo)


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


__all__ = ["AssetRef", "asset_refs", "check_headers", "diagnose_read_failure", "parse_multihash", "verify_files"]
