"""Corrupt bytes in a COG never pass silently, wherever the damage lands.

One tiny catalog (Wuhan, 1 km, June 2022) is built and served once for the module. A Sentinel-2 B04 COG of a scene
the cube uses is damaged in place (and restored) at >= 20 offsets spread over the file: the TIFF header, the IFD
(entry table and the values of the tags that place the pixels: tile offsets/byte counts, GeoTIFF pixel scale,
tie point, geokeys, nodata), the compressed tile and the end of the file. With ``file:checksum`` verification off
(so the header, georeferencing and bounds checks are what is exercised), every build must either fail with an
:class:`~crofuse.errors.AssetReadError` naming the item, the asset and the file, or produce a cube whose flagged
pixels (``optical_flagged``/``sar_flagged``) cover every value that differs from the clean cube. With verification
on, the first damaged byte is a named checksum mismatch.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from crofuse.cube import CubeConfig, build_cube, open_cube
from crofuse.errors import AssetReadError
from tests.fixtures.cube import build_small_catalog, catalog_items, inner_bbox, served_catalog

pytestmark = pytest.mark.timeout(600)

DAMAGE_TILE = 2000  # bytes overwritten in tile data and at the end (as in the reproduction)
DAMAGE_IFD = 8  # bytes overwritten in the header and IFD: one tag value, not the tile behind it
GEO_TAGS = {256: "ImageWidth", 257: "ImageLength", 322: "TileWidth", 324: "TileOffsets", 325: "TileByteCounts",
            33550: "ModelPixelScale", 33922: "ModelTiepoint", 34735: "GeoKeyDirectory", 42113: "GDAL_NODATA"}
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    root = build_small_catalog(tmp_path_factory.mktemp("corruption"), size_km=1.0)
    with served_catalog(root) as url:
        yield root, url


def _cfg(url: str, out: Path, **kw) -> CubeConfig:
    from crofuse.synthetic import WUHAN

    return CubeConfig(**({"city": "wuhan", "year": 2022, "aoi": inner_bbox(WUHAN, 1.0, margin=0.02), "catalog": url,
                          "output": out, "chunk_size": 64, "min_valid_fraction": 0.0} | kw))


def _target(root: Path) -> tuple[Path, str]:
    """B04 of the clearest Sentinel-2 scene (every scene under max_cloud_cover is used; this one the most)."""
    items = [d for d in catalog_items(root, "sentinel-2-l2a", city="wuhan", year=2022)
             if d["properties"]["eo:cloud_cover"] <= 80]
    best = min(items, key=lambda d: d["properties"]["eo:cloud_cover"])
    return Path(best["assets"]["B04"]["href"]), best["id"]


def _tiff_layout(data: bytes) -> tuple[dict[str, int], int, int]:
    """(tag name -> file offset of its value, first tile offset, first tile byte count) of a classic little-endian
    TIFF's first IFD (what GDAL's COG driver writes here)."""
    assert data[:4] == b"II*\x00", "expected a classic little-endian TIFF"
    ifd = struct.unpack_from("<I", data, 4)[0]
    (n,) = struct.unpack_from("<H", data, ifd)
    where = {"IFD entry table": ifd}
    values = {}
    for k in range(n):
        e = ifd + 2 + 12 * k
        tag, typ, count = struct.unpack_from("<HHI", data, e)
        inline = _TIFF_SIZES.get(typ, 1) * count <= 4
        at = e + 8 if inline else struct.unpack_from("<I", data, e + 8)[0]
        if tag in GEO_TAGS:
            where[GEO_TAGS[tag]] = at
        values[tag] = (typ, at)
    def first(tag: int) -> int:
        typ, at = values[tag]
        return struct.unpack_from("<Q" if typ == 16 else "<I", data, at)[0]
    return where, first(324), first(325)


def _offsets(data: bytes) -> list[tuple[str, int, int]]:
    """(region, offset, length) of every damage to try: >= 20, spread over header, IFD, tile data and the end."""
    where, tile0, tile_bytes = _tiff_layout(data)
    out = [("header", 0, DAMAGE_IFD), ("header", 4, 4)]
    out += [(f"IFD: {name}", at, DAMAGE_IFD) for name, at in sorted(where.items(), key=lambda kv: kv[1])]
    out += [("tile data", int(o), DAMAGE_TILE) for o in np.linspace(tile0, tile0 + tile_bytes - 1, 12)]
    out += [("end", len(data) - DAMAGE_TILE, DAMAGE_TILE), ("end", len(data) - 16, 16)]
    return out


@contextmanager
def _damaged(path: Path, offset: int, length: int, seed: int) -> Iterator[None]:
    clean = path.read_bytes()
    b = bytearray(clean)
    n = max(0, min(length, len(b) - offset))
    b[offset:offset + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(b))
    try:
        yield
    finally:
        path.write_bytes(clean)


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else (a == b)
    return ~same if same.ndim == 2 else ~same.all(0)


@pytest.fixture(scope="module")
def clean_cube(tiny, tmp_path_factory):
    _, url = tiny
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_cube(build_cube(_cfg(url, tmp_path_factory.mktemp("clean")), progress=False)).load()
    return ds, caught


def test_cloudy_pixel_columns_emit_no_runtime_warning(clean_cube, monkeypatch):
    """Pixels no clear scene ever sees (all-NaN along time) reduce to NaN without an All-NaN-slice warning, from the
    threaded dask build and from the reduction itself without any warning filter (``catch_warnings`` is not
    thread-safe, so the composite must not rely on it)."""
    from crofuse.cube.composite import _nanreduce

    ds, caught = clean_cube
    assert int((ds["optical_count"] == 0).sum()) > 0  # the season leaves some pixels never clear
    assert np.isnan(ds["optical"].values[:, ds["optical_count"].values == 0]).all()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    x = np.full((3, 4, 5), np.nan, np.float32)
    x[0, 0] = [0.1, 0.2, np.nan, 0.4, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for reducer in ("median", "mean"):
            out = _nanreduce(x, reducer=reducer, axis=-1)
            assert out[0, 0] == pytest.approx(0.3) and np.isnan(out[1:]).all() and np.isnan(out[0, 1:]).all()


def test_clean_build_verifies_checksums_and_reports_no_impossible_values(tiny, clean_cube, tmp_path):
    _, url = tiny
    ds = open_cube(build_cube(_cfg(url, tmp_path, verify_checksums=True), progress=False))
    n_assets = len(ds.attrs["optical_items"]) * 5 + len(ds.attrs["sar_items"]) * 2
    assert ds.attrs["assets_verified"] == n_assets
    assert ds.attrs["impossible_values"] == {} and ds.attrs["optical_impossible_values"] == 0
    assert int(ds["optical_flagged"].max()) == 0 and int(ds["sar_flagged"].max()) == 0


def test_damage_anywhere_fails_named_or_is_flagged(tiny, clean_cube, tmp_path):
    root, url = tiny
    clean, _ = clean_cube
    target, item = _target(root)
    damages = _offsets(target.read_bytes())
    assert len(damages) >= 20
    outcomes = []
    for k, (region, offset, length) in enumerate(damages):
        with _damaged(target, offset, length, seed=k):
            try:
                ds = open_cube(build_cube(_cfg(url, tmp_path / str(k), verify_checksums=False), progress=False))
            except AssetReadError as e:
                msg = str(e)
                assert str(target) in msg and "'B04'" in msg and item in msg, (region, offset, msg)
                stage = ("georeferencing" if "georeferencing" in msg else "impossible values" if "physically "
                         "impossible" in msg else "read error" if "reading raster data" in msg else "header")
                outcomes.append((region, offset, f"failed, named ({stage})"))
                continue
        ds = ds.load()
        differs = np.zeros(ds["valid"].shape, bool)
        for name in ("optical", "sar", "optical_count", "sar_count", "valid"):
            differs |= _differs(ds[name].values, clean[name].values)
        flagged = (ds["optical_flagged"].values > 0) | (ds["sar_flagged"].values > 0)
        assert not (differs & ~flagged).any(), (region, offset, int((differs & ~flagged).sum()))
        outcomes.append((region, offset, f"built, {int(differs.sum())} px differ, {int(flagged.sum())} flagged"))
    print("\n".join(f"{r:>28} @ {o:6d}: {what}" for r, o, what in outcomes))  # the figures of docs/cube.md
    # the reproduction (2000 bytes in the middle of the tile) is among them and no longer builds
    assert any(r == "tile data" and w.startswith("failed, named") for r, _, w in outcomes)


def test_checksum_mismatch_is_named(tiny, tmp_path):
    root, url = tiny
    target, item = _target(root)
    size = target.stat().st_size
    with _damaged(target, size // 2, DAMAGE_TILE, seed=99):
        with pytest.raises(AssetReadError, match="file:checksum mismatch") as info:
            build_cube(_cfg(url, tmp_path, verify_checksums=True), progress=False)
    msg = str(info.value)
    assert str(target) in msg and "'B04'" in msg and item in msg and "expected " in msg and "found " in msg
    assert "verify_checksums=False" in msg  # what to do
    assert not (tmp_path / "wuhan" / "2022" / "inputs.zarr").exists()


def _rewrite(path: Path, edit) -> bytes:
    """Rewrite a COG with ``edit(array)`` applied (same grid, same writer); returns the original bytes."""
    import rasterio
    from odc.geo.geobox import GeoBox

    from crofuse.synthetic.cog import write_cog

    clean = path.read_bytes()
    with rasterio.open(path) as src:
        arr, nodata, gb = src.read(1), src.nodata, GeoBox(src.shape, src.transform, src.crs.to_wkt())
    write_cog(path, edit(arr.copy()), gb, nodata=nodata, overview_resampling="nearest")
    return clean


def test_few_impossible_values_become_flagged_nodata_and_are_reported(tiny, clean_cube, tmp_path):
    """Below max_impossible_fraction the cube is built: the impossible values are nodata, the pixels flagged, the
    counts in the attributes; above it the build fails naming item and asset."""
    root, url = tiny
    clean, _ = clean_cube
    target, item = _target(root)
    sar_item = catalog_items(root, "sentinel-1-rtc", city="wuhan", year=2022)[0]
    vv = Path(sar_item["assets"]["vv"]["href"])
    opt_px = [(20, 20), (20, 21), (60, 70)]
    sar_px = [(40, 40), (41, 40)]

    def bright(a):
        for r, c in opt_px:
            a[r, c] = 30000  # reflectance 2.9: impossible
        return a

    def bad_sar(a):
        a[sar_px[0]] = -0.5  # negative power
        a[sar_px[1]] = 1e9  # +90 dB
        return a

    n_clear = len(_clear_in(root, item, opt_px))
    assert n_clear > 0
    backups = {target: _rewrite(target, bright), vv: _rewrite(vv, bad_sar)}
    try:
        ds = open_cube(build_cube(_cfg(url, tmp_path / "few", verify_checksums=False, max_impossible_fraction=0.01),
                                  progress=False)).load()
        with pytest.raises(AssetReadError, match=rf"item '{item}' asset 'B04'.*: {n_clear} values outside"):
            build_cube(_cfg(url, tmp_path / "strict", verify_checksums=False, max_impossible_fraction=1e-4),
                       progress=False)
    finally:
        for p, b in backups.items():
            p.write_bytes(b)
    counts = ds.attrs["impossible_values"]
    assert counts.get(f"{item}/B04") == n_clear
    assert counts.get(f"{sar_item['id']}/vv") == 2 and ds.attrs["sar_impossible_values"] == 2
    flagged = (ds["optical_flagged"].values > 0) | (ds["sar_flagged"].values > 0)
    differs = np.zeros(flagged.shape, bool)
    for name in ("optical", "sar", "optical_count", "sar_count", "valid"):
        differs |= _differs(ds[name].values, clean[name].values)
    assert differs.any() and not (differs & ~flagged).any()
    assert float(np.nanmax(ds["optical"].values)) <= 1.5  # the impossible values never reach the composite
    assert int(ds["sar_flagged"].values.sum()) == 2


def _clear_in(root: Path, item: str, pixels: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The native 10 m pixels the item's SCL (20 m) calls clear: only there is a bright value used, so counted."""
    import rasterio

    from crofuse.cube.config import DEFAULT_SCL_MASK

    d = next(x for x in catalog_items(root, "sentinel-2-l2a", city="wuhan", year=2022) if x["id"] == item)
    with rasterio.open(d["assets"]["SCL"]["href"]) as src:
        scl = src.read(1)
    return [(r, c) for r, c in pixels if scl[r // 2, c // 2] not in DEFAULT_SCL_MASK]


def test_multihash_and_remote_files_are_verified(tmp_path):
    """``file:checksum`` multihashes are parsed (sha2-256, sha2-512, md5 with its two-byte code), unknown functions
    are reported, and an http(s) asset is hashed over the network (a loopback server here)."""
    import functools
    import hashlib
    import http.server
    import threading

    from crofuse.cube.assets import AssetRef, parse_multihash, verify_files

    data = b"not really a COG, but bytes all the same" * 100
    sha = hashlib.sha256(data).hexdigest()
    assert parse_multihash("1220" + sha) == ("sha256", sha)
    assert parse_multihash("1340" + hashlib.sha512(data).hexdigest())[0] == "sha512"
    assert parse_multihash("d50110" + hashlib.md5(data).hexdigest())[0] == "md5"
    with pytest.raises(ValueError, match="cannot verify"):
        parse_multihash("1e20" + sha)  # blake3: not supported, said so
    with pytest.raises(ValueError, match="32 bytes"):
        parse_multihash("1220" + sha[:-2])
    (tmp_path / "a.tif").write_bytes(data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/a.tif"
        assert verify_files([AssetRef("it", "B04", url, checksum="1220" + sha, size=len(data))]) == 1
        with pytest.raises(AssetReadError, match=r"item 'it' asset 'B04'.*file:size mismatch"):
            verify_files([AssetRef("it", "B04", url, checksum="1220" + sha, size=len(data) + 1)])
        with pytest.raises(AssetReadError, match=rf"expected {'0' * 64}, found {sha}"):
            verify_files([AssetRef("it", "B04", url, checksum="1220" + "0" * 64)])
        with pytest.raises(AssetReadError, match="cannot be read"):
            verify_files([AssetRef("it", "B04", url + ".missing", checksum="1220" + sha)])
    finally:
        server.shutdown()
        server.server_close()
