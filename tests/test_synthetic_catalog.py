"""The sample catalog as files and as a served STAC API: COGs validate, searches and stackstac loads work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crofuse.errors import ServiceError
from crofuse.synthetic import S1_COLLECTION, S2_COLLECTION, ground_truth, sentinel1_schedule, sentinel2_schedule
from tests.fixtures.catalog import SMALL_CATALOG


def _items(root: Path, collection: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / collection).glob("*/*.json"))]


def test_catalog_has_the_scheduled_items(sample_catalog: Path) -> None:
    city = SMALL_CATALOG.cities[0]
    n_s2 = sum(len(sentinel2_schedule(city, y, SMALL_CATALOG.months)) for y in SMALL_CATALOG.years)
    n_s1 = sum(
        len(sentinel1_schedule(city, y, SMALL_CATALOG.months, orbits=SMALL_CATALOG.s1_orbits))
        for y in SMALL_CATALOG.years
    )
    assert len(_items(sample_catalog, S2_COLLECTION)) == n_s2 == 12
    # S1A + S1B in 2021, only S1A in 2022: fewer SAR passes in 2022
    s1 = _items(sample_catalog, S1_COLLECTION)
    assert len(s1) == n_s1
    by_year = {y: sum(i["properties"]["datetime"].startswith(str(y)) for i in s1) for y in SMALL_CATALOG.years}
    assert by_year[2021] > by_year[2022] > 0
    assert {i["properties"]["platform"] for i in s1 if i["properties"]["datetime"].startswith("2022")} == {
        "SENTINEL-1A"
    }
    assert len(_items(sample_catalog, "labels")) == 2
    assert len(_items(sample_catalog, "io-lulc-annual-v02")) == 2  # one per catalog year
    assert len(_items(sample_catalog, "esa-worldcover")) == 2  # the product years 2020 and 2021 only


def test_items_carry_the_contract_properties(sample_catalog: Path) -> None:
    for item in _items(sample_catalog, S2_COLLECTION):
        p = item["properties"]
        assert p["crofuse:city"] == "wuhan"
        assert p["proj:code"] == "EPSG:32650" and p["proj:shape"] == [250, 250]
        assert 0.0 <= p["eo:cloud_cover"] <= 100.0
        assert p["sat:orbit_state"] == "descending"
        year = int(p["datetime"][:4])
        assert p["s2:processing_baseline"] == ("03.01" if year == 2021 else "04.00")
        assert set(item["assets"]) == {"B02", "B03", "B04", "B08", "SCL"}
        rb = item["assets"]["B04"]["raster:bands"][0]
        assert rb["nodata"] == 0 and rb["scale"] == 0.0001
        assert rb["offset"] == (0.0 if year == 2021 else -0.1)
        assert item["assets"]["SCL"]["proj:shape"] == [125, 125]  # SCL at 20 m like the real product
        assert all(Path(a["href"]).is_absolute() and Path(a["href"]).exists() for a in item["assets"].values())
    for item in _items(sample_catalog, S1_COLLECTION):
        assert set(item["assets"]) == {"vv", "vh"}
        assert item["properties"]["sat:orbit_state"] in ("ascending", "descending")
        assert item["properties"]["crofuse:city"] == "wuhan"


def test_every_asset_carries_file_checksum_and_size(sample_catalog: Path) -> None:
    import hashlib

    items = [d for p in sorted(sample_catalog.glob("*/*/*.json")) if (d := json.loads(p.read_text())).get("assets")]
    assert len(items) == 33
    for item in items:
        assert "https://stac-extensions.github.io/file/v2.1.0/schema.json" in item["stac_extensions"]
        for a in item["assets"].values():
            data = Path(a["href"]).read_bytes()
            assert a["file:size"] == len(data)
            assert a["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()  # multihash: sha2-256, 32 bytes


def test_cogs_validate(sample_catalog: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    tifs = sorted(sample_catalog.rglob("*.tif"))
    assert len(tifs) >= 12 * 5 + 2 * 4
    for tif in tifs[::3]:
        valid, errors, _ = cog_validate(str(tif), quiet=True)
        assert valid, (tif, errors)


def test_dn_offset_follows_processing_baseline(sample_catalog: Path) -> None:
    """Same truth, different baselines: 2022 DN carry +1000, so DN/10000 - 0.1 gives back reflectance."""
    import rasterio

    truth = ground_truth(SMALL_CATALOG, "wuhan", 2022)
    for item in _items(sample_catalog, S2_COLLECTION):
        if not item["properties"]["datetime"].startswith("2022"):
            continue
        with rasterio.open(item["assets"]["B08"]["href"]) as src:
            dn = src.read(1)
        with rasterio.open(item["assets"]["SCL"]["href"]) as src:
            scl = np.repeat(np.repeat(src.read(1), 2, 0), 2, 1)
        clear = np.isin(scl, (4, 5, 6))
        if clear.mean() < 0.2:
            continue
        refl = dn[clear] / 10000.0 - 0.1
        assert abs(np.median(refl - truth.reflectance[3][clear])) < 0.02
        return
    pytest.fail("no 2022 acquisition with 20% clear sky")


def test_stac_api_search_counts(stac_api: str, sample_catalog: Path) -> None:
    import pystac_client

    client = pystac_client.Client.open(stac_api)
    assert {c.id for c in client.get_collections()} == {
        "sentinel-2-l2a", "sentinel-1-rtc", "labels", "esa-worldcover", "io-lulc-annual-v02"}
    truth = ground_truth(SMALL_CATALOG, "wuhan", 2021)
    bbox = list(truth.geobox.extent.to_crs("EPSG:4326").boundingbox)
    s2_2021 = list(client.search(collections=[S2_COLLECTION], bbox=bbox, datetime="2021-06-01/2021-06-30").items())
    assert len(s2_2021) == 6
    s1_2022 = list(client.search(collections=[S1_COLLECTION], bbox=bbox, datetime="2022-06", limit=2).items())
    expected = len(sentinel1_schedule(SMALL_CATALOG.cities[0], 2022, (6,), orbits=SMALL_CATALOG.s1_orbits))
    assert len(s1_2022) == expected  # paging with limit=2 must return all of them
    far = list(client.search(collections=[S2_COLLECTION], bbox=[0.0, 0.0, 1.0, 1.0]).items())
    assert far == []
    july = list(client.search(collections=[S2_COLLECTION], datetime="2021-07-01/2021-07-31").items())
    assert july == []


def test_stackstac_loads_searched_items(stac_api: str) -> None:
    import pystac_client
    import stackstac

    truth = ground_truth(SMALL_CATALOG, "wuhan", 2022)
    client = pystac_client.Client.open(stac_api)
    items = client.search(collections=[S2_COLLECTION], datetime="2022-06").item_collection()
    # pystac(-client) migrates items to projection v2 and drops ``proj:epsg``; stackstac 0.5 only reads that
    # field, so the EPSG code comes from ``proj:code`` and the bounds from the grid we want
    epsg = int(items[0].properties["proj:code"].split(":")[1])
    arr = stackstac.stack(items, assets=["B02", "B03", "B04", "B08"], epsg=epsg, resolution=10, dtype="float64",
                          bounds=tuple(truth.geobox.boundingbox), rescale=False, fill_value=0,
                          xy_coords="center")
    import dask.array as da

    assert isinstance(arr.data, da.Array)
    assert arr.attrs["crs"].upper() == "EPSG:32650"
    assert arr.shape == (6, 4, 250, 250)
    np.testing.assert_allclose(arr.x.values[[0, -1]], truth.geobox.coords["x"].values[[0, -1]])
    # the clearest acquisition equals the truth (DN/1e4 - 0.1) within atmosphere/texture tolerances
    best = int(np.argmin([i.properties["eo:cloud_cover"] for i in items]))
    dn = arr[best].values
    refl = dn / 10000.0 - 0.1
    valid = dn[0] > 0
    assert valid.mean() > 0.3
    err = np.abs(refl[:, valid] - truth.reflectance[:, valid])
    assert np.median(err) < 0.01


def test_server_reports_a_failed_start(tmp_path: Path, sample_catalog: Path) -> None:
    import socket

    from infra.stac import StacServer

    with pytest.raises(ServiceError, match="collection.json"):
        StacServer(tmp_path)
    # a port that is taken: rustac cannot bind, and the error carries its stderr
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(ServiceError, match="stderr"):
            with StacServer(sample_catalog, port=port, timeout=15):
                pass


def test_server_stops_on_exit(sample_catalog: Path) -> None:
    import urllib.error
    import urllib.request

    from infra.stac import StacServer

    with StacServer(sample_catalog) as server:
        url = server.url
        assert server.running
        with urllib.request.urlopen(url + "/collections", timeout=5) as r:
            assert r.status == 200
    assert not server.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/", timeout=2)


def test_cli_serve_runs_until_interrupted(sample_catalog: Path) -> None:
    """`crofuse sample-catalog serve` announces its URL, answers there, and stops cleanly on Ctrl-C (SIGINT).

    The test waits for the announcement line, not only for the port: rustac may answer a moment before the
    command has printed where it is, and a SIGINT sent in that moment would be a race in the test, not a bug.
    """
    import queue
    import signal
    import subprocess
    import sys
    import threading
    import time
    import urllib.error
    import urllib.request

    from infra.stac import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crofuse_cli", "sample-catalog", "serve", str(sample_catalog), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def _read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=_read, daemon=True)
    reader.start()
    out: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not any("STAC API at" in line for line in out):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"serve exited before announcing its URL: {''.join(out)}"
            out.append(line)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/collections", timeout=10) as r:
            ids = {c["id"] for c in json.loads(r.read())["collections"]}
        assert ids == {"sentinel-2-l2a", "sentinel-1-rtc", "labels", "esa-worldcover", "io-lulc-annual-v02"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        while (line := lines.get(timeout=10)) is not None:  # the rest of the output, up to the reader's end mark
            out.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(out)
    assert f"http://127.0.0.1:{port}" in text and "stopped" in text
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
