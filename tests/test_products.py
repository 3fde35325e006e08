"""Products as STAC: the items and the collection map-city writes, their validation (offline), idempotence, and the
collection served by rustac, searched with pystac-client and loaded back as a (time, y, x) cube with odc-stac.

The outputs are the session's map-city runs of Wuhan 2021 and 2022 on the sample catalog (``flow_outputs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from crofuse import statistics as st
from crofuse.errors import DataError
from crofuse.products import (
    COLLECTION_NAME,
    DEFAULT_COLLECTION_ID,
    ITEM_NAME,
    build_item,
    check_extensions,
    publish,
    validate,
    validate_core,
)

pytestmark = pytest.mark.slow

YEARS = (2021, 2022)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _item(output: Path, year: int) -> dict:
    return json.loads((output / "wuhan" / str(year) / ITEM_NAME).read_text())


def test_asset_names_agree_with_their_owners() -> None:
    """crofuse.products spells the names tiling and flows own (crofuse never imports them): they must agree."""
    import tiling.predict
    import tiling.store
    from crofuse.products import assets
    from flows.tasks import MARKER

    assert assets.PROBABILITY_NAME == tiling.predict.PROBABILITY_COG
    assert assets.MARKER_NAME == MARKER
    by_key = {a.key: a.name for a in assets.ITEM_ASSETS}
    assert by_key["impervious"] == tiling.predict.IMPERVIOUS_COG
    assert by_key["maps"] == tiling.store.MAPS_STORE
    for key, owner in (("uncertainty", "UNCERTAINTY_COG"), ("disagreement", "DISAGREEMENT_COG")):
        if hasattr(tiling.predict, owner):  # the calibrated-maps layers (branch calib)
            assert by_key[key] == getattr(tiling.predict, owner)


def test_map_city_publishes_valid_items(flow_outputs, stac_api: str, tiny_checkpoint: Path) -> None:
    import rasterio

    output, results = flow_outputs
    for year in YEARS:
        folder = output / "wuhan" / str(year)
        assert results[year]["item"] == str(folder / ITEM_NAME)
        item = _item(output, year)
        assert validate(item)  # core schema + extension fields
        assert item["id"] == f"wuhan-{year}" and item["collection"] == DEFAULT_COLLECTION_ID
        props = item["properties"]
        assert props["start_datetime"].startswith(f"{year}-06-01") and props["end_datetime"].startswith(f"{year}-06-30")
        # the projection extension says the COG's own grid
        with rasterio.open(folder / st.MAP_NAME) as src:
            assert props["proj:code"] == f"EPSG:{src.crs.to_epsg()}" == "EPSG:32650"
            assert props["proj:shape"] == [src.height, src.width]
            assert props["proj:transform"] == pytest.approx(list(src.transform)[:6])
        # assets, with checksums and sizes of the real files
        expected = {"impervious", "probability", "maps", "statistics", "thumbnail"} | ({"change"} if year == 2022 else set())
        assert expected <= set(item["assets"])
        for key, asset in item["assets"].items():
            path = folder / asset["href"]
            assert path.exists(), key
            if path.is_file():
                assert asset["file:checksum"] == "1220" + _sha256(path), key
                assert asset["file:size"] == path.stat().st_size, key
            else:
                assert "file:checksum" not in asset, "a zarr store is a folder: no checksum"
        imp = item["assets"]["impervious"]
        assert imp["raster:bands"][0]["data_type"] == "uint8" and imp["raster:bands"][0]["nodata"] == 255
        classes = {c["value"]: c for c in imp["classification:classes"]}
        assert set(classes) == {0, 1, 255} and classes[255]["nodata"] is True and classes[1]["name"] == "impervious"
        assert item["assets"]["probability"]["raster:bands"][0]["scale"] == 0.01
        # provenance: the checkpoint, the catalog and the input scenes (the cube's own record of them)
        assert props["crofuse:checkpoint_sha256"] == _sha256(tiny_checkpoint) == results[year]["checkpoint_sha256"]
        assert props["crofuse:catalog"] == stac_api
        cube = json.loads((folder / "inputs.zarr" / "zarr.json").read_text())["attributes"]
        assert props["crofuse:optical_items"] == cube["optical_items"] and props["crofuse:sar_items"] == cube["sar_items"]
        derived = [lk["href"] for lk in item["links"] if lk["rel"] == "derived_from"]
        assert len(derived) == len(cube["optical_items"]) + len(cube["sar_items"])
        with urllib.request.urlopen(derived[0], timeout=10) as r:  # the link resolves on the scene catalog
            assert json.loads(r.read())["id"] == cube["optical_items"][0]
        record = json.loads((folder / st.RECORD_NAME).read_text())
        assert props["crofuse:impervious_km2"] == pytest.approx(record["impervious_km2"])


def test_collection_has_the_items_and_the_statistics_table(flow_outputs) -> None:
    output, _ = flow_outputs
    collection = json.loads((output / COLLECTION_NAME).read_text())
    assert validate(collection)
    assert collection["id"] == DEFAULT_COLLECTION_ID
    items = [lk["href"] for lk in collection["links"] if lk["rel"] == "item"]
    assert items == [f"./wuhan/{y}/{ITEM_NAME}" for y in YEARS]
    assets = collection["assets"]
    assert assets["statistics"]["href"] == f"./{st.STATISTICS_ZARR}" and (output / st.STATISTICS_ZARR).is_dir()
    assert assets["statistics_csv"]["file:checksum"] == "1220" + _sha256(output / st.STATISTICS_CSV)
    (lo_x, lo_y, hi_x, hi_y), = collection["extent"]["spatial"]["bbox"]
    for year in YEARS:
        b = _item(output, year)["bbox"]
        assert lo_x <= b[0] and lo_y <= b[1] and b[2] <= hi_x and b[3] <= hi_y
    (start, end), = collection["extent"]["temporal"]["interval"]
    assert start.startswith("2021-06-01") and end.startswith("2022-06-30")
    assert collection["summaries"]["crofuse:city"] == ["wuhan"]


def test_publishing_is_idempotent(flow_outputs) -> None:
    from typer.testing import CliRunner

    from crofuse.cli import app

    output, _ = flow_outputs
    publish(output)  # whatever earlier tests changed (a remap's consistent series) is in the items now
    files = [output / COLLECTION_NAME, *(output / "wuhan" / str(y) / ITEM_NAME for y in YEARS)]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    report = publish(output)
    assert report.written == [] and len(report.items) == 2
    result = CliRunner().invoke(app, ["products", "build", str(output)])
    assert result.exit_code == 0, result.output
    assert "2 items" in result.output and "(0 written)" in result.output and "validated" in result.output
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    # a lost item is rebuilt from its folder alone, byte for byte
    lost = files[1]
    lost.unlink()
    report = publish(output)
    assert report.written == [lost] and lost.read_bytes() == before[lost][0]


def test_item_from_a_folder_alone(flow_outputs, tmp_path: Path) -> None:
    """A copied city-year folder without its cube still makes the same item (provenance from maps.zarr)."""
    output, _ = flow_outputs
    copy = tmp_path / "out" / "wuhan" / "2022"
    shutil.copytree(output / "wuhan" / "2022", copy, ignore=shutil.ignore_patterns("inputs.zarr", ITEM_NAME))
    item = build_item(copy, collection_id="my-maps").to_dict(include_self_link=False, transform_hrefs=False)
    original = _item(output, 2022)
    assert item["collection"] == "my-maps"
    assert item["assets"] == original["assets"] and item["properties"]["proj:transform"] == original["properties"]["proj:transform"]
    assert item["properties"]["crofuse:optical_items"] == original["properties"]["crofuse:optical_items"]
    assert item["properties"]["crofuse:checkpoint_sha256"] == original["properties"]["crofuse:checkpoint_sha256"]
    # without the marker the folder is not finished: no item, and it stays out of the collection
    (copy / "mapped.json").unlink()
    with pytest.raises(DataError, match="not a finished city-year"):
        build_item(copy, collection_id="my-maps")
    with pytest.raises(DataError, match="no finished city-year"):
        publish(tmp_path / "out")


def test_validation_is_offline_and_catches_bad_fields(flow_outputs, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from pystac.errors import STACValidationError

    output, _ = flow_outputs
    item = _item(output, 2022)

    def no_network(*args, **kwargs):
        raise AssertionError("validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    schemas = validate(item)
    assert "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json" in schemas

    bad = json.loads(json.dumps(item))
    del bad["properties"]["datetime"]
    with pytest.raises(STACValidationError):
        validate_core(bad)  # the core schema requires `datetime` (null with a start/end range)
    cases = [
        (lambda d: d["properties"].__setitem__("proj:shape", [250]), "proj:shape"),
        (lambda d: d["properties"].__setitem__("proj:code", "32650"), "proj:code"),
        (lambda d: d["assets"]["impervious"]["raster:bands"][0].__setitem__("data_type", "byte"), "data_type"),
        (lambda d: d["assets"]["impervious"]["classification:classes"][0].__setitem__("name", "not ok"), "class name"),
        (lambda d: d["assets"]["impervious"].__setitem__("file:checksum", "1220abc"), "file:checksum"),
        (lambda d: d["assets"]["impervious"].__setitem__("file:size", -1), "file:size"),
        (lambda d: d.__setitem__("stac_extensions", d["stac_extensions"][1:]), "without declaring"),
    ]
    for spoil, words in cases:
        broken = json.loads(json.dumps(item))
        spoil(broken)
        with pytest.raises(DataError, match=words):
            check_extensions(broken)


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`crofuse products serve` exited early: {proc.stdout.read()}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(url + "/collections", timeout=2) as r:
                if any(c["id"] == DEFAULT_COLLECTION_ID for c in json.loads(r.read())["collections"]):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come up within {timeout} s")


def test_serve_search_and_load_the_series(flow_outputs) -> None:
    """`crofuse products serve` (rustac), pystac-client finds both years, odc-stac loads them as one cube."""
    import pystac_client
    import rioxarray  # noqa: F401

    from crofuse.products import load_series, search_series
    from infra.stac import free_port

    output, _ = flow_outputs
    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "crofuse.cli", "products", "serve", str(output), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        _wait_for(url, proc)
        found = list(pystac_client.Client.open(url).search(collections=[DEFAULT_COLLECTION_ID]).items())
        assert sorted(it.id for it in found) == ["wuhan-2021", "wuhan-2022"]
        assert Path(found[0].assets["impervious"].href).is_file(), "served hrefs point at the files"
        items = search_series(url, "wuhan")
        series = load_series(items, bands=["impervious", "probability"])
        assert series["impervious"].dims == ("time", "y", "x")
        assert list(series.time.dt.year.values) == list(YEARS)
        assert series.odc.geobox.crs.epsg == 32650
        for i, year in enumerate(YEARS):
            on_disk = st.read_map(output / "wuhan" / str(year) / st.MAP_NAME)
            np.testing.assert_array_equal(series["impervious"].isel(time=i).values, on_disk.values)
            np.testing.assert_allclose(series.x.values, on_disk.x.values)
        with pytest.raises(DataError, match="no 'crofuse-impervious' item of 'atlantis'"):
            search_series(url, "atlantis")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "STAC API at" in out and "stopped" in out
