"""The Prefect flows end to end on the session's sample catalog (real rustac STAC API, real Prefect API).

One small city (Wuhan, 2.5 km, 2021 and 2022) is mapped with a tiny untrained CroFuseNet: the test checks the
plumbing (files, grids, CRS, statistics, reruns, failure handling), not accuracy.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from crofuse import statistics as st

pytestmark = pytest.mark.slow

YEARS = (2021, 2022)


@pytest.fixture(scope="module")
def mapped(flow_outputs):
    """Wuhan mapped for both years: 2021 in-process, 2022 on a local dask cluster (``tests/fixtures/flows.py``)."""
    return flow_outputs


def test_map_city_writes_valid_maps(mapped) -> None:
    import rioxarray  # noqa: F401
    from rio_cogeo.cogeo import cog_validate

    output, results = mapped
    for year in YEARS:
        folder = output / "wuhan" / str(year)
        assert results[year]["skipped"] is False and results[year]["chunks_computed"] >= 1
        for name in ("impervious.tif", "probability.tif", "reference.tif", "quicklook.png", "mapped.json"):
            assert (folder / name).exists(), name
        for cog in ("impervious.tif", "probability.tif"):
            valid, errors, _ = cog_validate(folder / cog)
            assert valid, errors
        maps = xr.open_zarr(folder / "maps.zarr")
        assert maps.rio.crs is not None and maps.rio.crs.to_epsg() == 32650
        assert set(np.unique(maps["impervious"].values)) <= {0, 1, 255}
        assert json.loads((folder / "mapped.json").read_text())["checkpoint_sha256"] == results[year]["checkpoint_sha256"]
    change = output / "wuhan" / "2022" / "change.tif"
    assert cog_validate(change)[0]
    assert set(np.unique(st.read_map(change).values)) <= {0, 1, 2, 255}
    assert not (output / "wuhan" / "2021" / "change.tif").exists()
    assert (output / "change.png").exists()


def test_map_city_statistics(mapped) -> None:
    output, results = mapped
    ds = xr.open_zarr(output / st.STATISTICS_ZARR)
    assert dict(ds.sizes) == {"city": 1, "year": 2}
    assert list(ds.year.values) == list(YEARS)
    wuhan = ds.sel(city="wuhan")
    # the AOI is the sample city's 2.5 km square, taken from the catalog's labels items
    assert wuhan.aoi_km2.values == pytest.approx([6.25, 6.25], rel=0.01)
    assert np.all((wuhan.fraction_of_aoi.values >= 0) & (wuhan.fraction_of_aoi.values <= 1))
    assert np.all(wuhan.valid_km2.values <= wuhan.aoi_km2.values + 1e-9)
    later = wuhan.sel(year=2022)
    assert int(later.previous_year) == 2021
    assert float(later.net_km2) == pytest.approx(float(later.gain_km2 - later.loss_km2))
    # the catalog has labels: the reference growth, the map's gain error and the model's error are reported, and
    # each equals what the files say (recomputed here from impervious.tif and reference.tif of both years)
    assert float(later.reference_gain_km2) > 0
    assert float(later.gain_error_km2) == pytest.approx(float(later.gain_km2 - later.reference_gain_km2), abs=1e-12)
    maps = {y: st.read_map(output / "wuhan" / str(y) / st.MAP_NAME) for y in YEARS}
    refs = {y: st.read_map(output / "wuhan" / str(y) / st.REFERENCE_NAME).values for y in YEARS}
    area = st.pixel_area(maps[2022].rio.crs, maps[2022].rio.transform(), maps[2022].shape)
    disagreement = 0.0
    for y in YEARS:
        m, r = maps[y].values, refs[y]
        both = (m != 255) & (r != 255)
        disagreement += float(area[both & (m != r)].sum()) / 1e6
    assert float(later.gain_error_bound_km2) == pytest.approx(disagreement, rel=1e-9)
    ref_gain = float(area[(refs[2021] == 0) & (refs[2022] == 1)].sum()) / 1e6
    assert float(later.reference_gain_km2) == pytest.approx(ref_gain, rel=1e-9)
    # the catalog has labels, so the flow labelled an accuracy sample from reference.tif: estimates with CIs
    assert str(later.estimate_source.values).startswith("reference rasters")
    assert float(later.estimated_gain_ci95_km2) > 0 and np.isfinite(float(later.estimated_gain_km2))
    # the flow's returned record is the table's row
    assert results[2022]["statistics"]["gain_km2"] == pytest.approx(float(later.gain_km2))
    rows = st.read_statistics_csv(output / st.STATISTICS_CSV)
    assert [(r["city"], r["year"]) for r in rows] == [("wuhan", 2021), ("wuhan", 2022)]
    # equal-area correction: Wuhan (114.3°E) is 2.7° west of zone 50's central meridian, where UTM
    # over-states areas by k² ≈ 1.00085
    imp, naive = float(later.impervious_km2), float(later.naive_impervious_km2)
    if imp > 0:
        assert naive / imp == pytest.approx(1.00085, abs=5e-5)


def test_reference_gain_is_the_generators_growth(mapped, stac_api: str) -> None:
    """The change computed from the catalog's labels equals the growth the generator recorded for 2022."""
    import pystac_client

    output, _ = mapped
    item = next(pystac_client.Client.open(stac_api).search(collections=["labels"], datetime="2022").items())
    growth_pixels_km2 = item.properties["crofuse:growth_km2"]  # pixel count × 100 m² (not equal-area)
    later = xr.open_zarr(output / st.STATISTICS_ZARR).sel(city="wuhan", year=2022)
    assert growth_pixels_km2 > 0
    assert float(later.reference_gain_km2) * 1.00085 == pytest.approx(growth_pixels_km2, rel=1e-3)


def test_rerun_of_finished_city_year_does_no_model_work(mapped, stac_api: str, tiny_checkpoint: Path) -> None:
    from flows import map_city

    output, _ = mapped
    folder = output / "wuhan" / "2022"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}
    again = map_city(
        city="wuhan", year=2022, catalog=stac_api, checkpoint=str(tiny_checkpoint), output=str(output),
        dask_address="in-process",
    )
    assert again["skipped"] is True and again["chunks_computed"] == 0
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}
    assert after == before  # maps, change map, statistics record and marker untouched



def test_a_changed_mapping_parameter_makes_the_city_year_unfinished(mapped, tiny_checkpoint: Path) -> None:
    """The marker holds the checkpoint and the parameters that change what the map says; speed settings don't."""
    from flows.params import CubeOptions, TilingOptions
    from flows.tasks import (
        checkpoint_sha256,
        finished_marker,
        mapping_parameters_sha256,
    )

    output, results = mapped
    folder = output / "wuhan" / "2022"
    sha = checkpoint_sha256(str(tiny_checkpoint))
    kw = {"aoi": None, "catalog": results[2022]["catalog"], "season": None, "cube_options": None}
    same = mapping_parameters_sha256(**kw, tiling={"chunk_size": 256})
    assert same == mapping_parameters_sha256(**kw, tiling={"chunk_size": 1024, "batch_size": 4, "device": "cpu"})
    assert same == mapping_parameters_sha256(**kw, tiling={"window": 128, "stride": 96, "halo": 16}), "the defaults"
    assert same == mapping_parameters_sha256(**kw, tiling=TilingOptions(torch_threads=2, autocast="off"))
    assert finished_marker(folder, sha, same) is not None
    # the cube options that only change speed (or how carefully assets are checked) do not remap either
    for speed in ({"catalog_deadline": 60}, {"http_timeout": 5, "http_retries": 0}, {"chunk_size": 1024},
                  {"verify_checksums": False, "check_assets": False}, {"loader": "odc-stac"}):
        assert mapping_parameters_sha256(**{**kw, "cube_options": speed}, tiling=None) == same, speed
        assert mapping_parameters_sha256(**{**kw, "cube_options": CubeOptions(**speed)}, tiling=None) == same
    for changed in ({"season": "07-01/07-31"}, {"aoi": [114.2, 30.5, 114.3, 30.6]},
                    {"cube_options": {"loader": "stackstac"}}, {"cube_options": {"max_cloud_cover": 50}},
                    {"catalog": "http://127.0.0.1:1"}):
        other = mapping_parameters_sha256(**{**kw, **changed}, tiling=None)
        assert finished_marker(folder, sha, other) is None, changed
    assert finished_marker(folder, sha, mapping_parameters_sha256(**kw, tiling={"stride": 64})) is None
    assert finished_marker(folder, "0" * 64, same) is None, "another checkpoint remaps"


def test_typed_options_mirror_the_library_configs() -> None:
    """TilingOptions/CubeOptions hold the library configs' fields with their defaults, and build valid configs."""
    import dataclasses

    from crofuse.cube import CubeConfig
    from flows.params import CubeOptions, TilingOptions
    from tiling import TilingConfig

    tiling = {f.name: f.default for f in dataclasses.fields(TilingConfig)}
    assert set(TilingOptions.model_fields) == set(tiling) - {"model_multiple"}
    assert TilingOptions().to_config() == TilingConfig()
    cube = {f.name: f.default for f in dataclasses.fields(CubeConfig) if f.init}
    flow_params = {"city", "year", "aoi", "catalog", "season", "output"}  # parameters of map-city itself
    assert set(CubeOptions.model_fields) == set(cube) - flow_params
    for name, value in CubeOptions().model_dump().items():
        assert value == cube[name], name
    config = CubeConfig(city="wuhan", year=2022, aoi=[114.2, 30.5, 114.3, 30.6], catalog="http://x",
                        **CubeOptions(max_cloud_cover=40, loader="stackstac").config_fields())
    assert (config.max_cloud_cover, config.loader) == (40, "stackstac")


def test_bad_options_are_refused_before_any_work(prefect_harness, stac_api: str, tiny_checkpoint: Path,
                                                 tmp_path: Path) -> None:
    from flows import map_city

    for bad, words in (({"tiling": {"chunk_sise": 256}}, ("tiling", "chunk_sise", "Extra inputs")),
                       ({"tiling": {"window": 100}}, ("window", "multiple of 16")),
                       ({"cube_options": {"loader": "gdal"}}, ("cube_options", "loader", "odc-stac"))):
        state = map_city(city="wuhan", year=2021, catalog=stac_api, checkpoint=str(tiny_checkpoint),
                         output=str(tmp_path), dask_address="in-process", return_state=True, **bad)
        assert state.is_failed(), bad
        for word in words:
            assert word in state.message, (word, state.message)
    assert not any(tmp_path.iterdir()), "nothing was searched, built or written"


def test_map_city_fails_loudly_with_the_real_cause(prefect_harness, stac_api: str, tiny_checkpoint: Path, tmp_path) -> None:
    from crofuse.errors import AOIError, CheckpointError
    from flows import map_city

    with pytest.raises(AOIError, match="swapped"):
        map_city(city="wuhan", year=2021, aoi=[30.5, 114.2, 30.6, 114.3], catalog=stac_api,
                 checkpoint=str(tiny_checkpoint), output=str(tmp_path), dask_address="in-process")
    with pytest.raises(CheckpointError, match="does not exist"):
        map_city(city="wuhan", year=2021, catalog=stac_api, checkpoint=str(tmp_path / "nope.safetensors"),
                 output=str(tmp_path), dask_address="in-process")
    state = map_city(city="wuhan", year=1999, catalog=stac_api, checkpoint=str(tiny_checkpoint),
                     output=str(tmp_path), return_state=True)
    assert state.is_failed() and "year" in state.message  # rejected by parameter validation


def test_remap_keeps_going_past_a_broken_city(mapped, stac_api: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from flows import remap_cities
    from flows.remap import REPORT_NAME

    output, _ = mapped
    cities = tmp_path / "cities.yaml"
    cities.write_text(
        "cities:\n"
        "  - name: Atlantis\n"
        "    aoi: [10.0, 5.0, 9.0, 6.0]   # west > east\n"
        "  - name: wuhan\n"
    )
    mtime = (output / "wuhan/2022/impervious.tif").stat().st_mtime_ns
    state = remap_cities(
        cities_file=str(cities), years=list(YEARS), catalog=stac_api, checkpoint=str(tiny_checkpoint),
        output=str(output), dask_address="in-process", return_state=True,
    )
    assert state.is_failed()
    assert "atlantis 2021" in state.message.lower() and "AOIError" in state.message
    report = json.loads((output / REPORT_NAME).read_text())
    assert {(f["city"], f["year"]) for f in report["failed"]} == {("Atlantis", 2021), ("Atlantis", 2022)}
    assert all("west" in f["error"] for f in report["failed"])
    # Wuhan came after the broken city and was still handled (already done: no model work)
    assert {(d["city"], d["year"]) for d in report["already_done"]} == {("wuhan", 2021), ("wuhan", 2022)}
    assert (output / "wuhan/2022/impervious.tif").stat().st_mtime_ns == mtime
    ds = xr.open_zarr(output / st.STATISTICS_ZARR)
    assert list(ds.city.values) == ["wuhan"]  # the failed city left no half-made rows
    assert not math.isnan(float(ds.gain_km2.sel(city="wuhan", year=2022)))


def test_cities_file_formats(tmp_path: Path) -> None:
    from crofuse.errors import ConfigError
    from flows.params import read_cities_file

    geo = tmp_path / "cities.geojson"
    geo.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "Wuhan", "catalog": "http://x"},
         "geometry": {"type": "Polygon", "coordinates": [[[114, 30], [114.1, 30], [114.1, 30.1], [114, 30]]]}},
    ]}))
    (spec,) = read_cities_file(geo)
    assert spec.name == "Wuhan" and spec.catalog == "http://x" and spec.aoi["type"] == "Polygon"
    sample = read_cities_file(Path(__file__).parent.parent / "infra" / "cities.yaml")
    assert [c.name for c in sample] == ["wuhan", "nanjing"]
    dup = tmp_path / "dup.yaml"
    dup.write_text("cities: [{name: São Paulo}, {name: sao paulo}]\n")
    with pytest.raises(ConfigError, match="share the folder name"):
        read_cities_file(dup)
    with pytest.raises(ConfigError, match="does not exist"):
        read_cities_file(tmp_path / "missing.yaml")


def test_only_network_failures_are_retried() -> None:
    from crofuse.errors import AOIError, CatalogError, EmptySearchError
    from flows.tasks import is_transient

    assert is_transient(ConnectionRefusedError("refused"))
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as inner:
            raise CatalogError("search failed") from inner
    except CatalogError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(EmptySearchError("no items"))
    assert not is_transient(AOIError("west must be less than east"))
    assert not is_transient(ValueError("bug"))


def _flow_runs(flow_name: str, parent_ids: list | None = None) -> list:
    """Flow runs of ``flow_name`` on the test Prefect API (the harness's real server), oldest first."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read():
        async with get_client() as client:
            return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))

    runs = asyncio.run(read())
    return sorted(runs, key=lambda r: r.start_time or r.expected_start_time)


def _artifacts(flow_run_id) -> dict:
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))

    return {a.key: a for a in asyncio.run(read())}


def test_remap_maps_city_years_concurrently_and_searches_once(prefect_harness, stac_api: str, tiny_checkpoint: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """remap-cities runs its city-years at once (bounded by max_concurrent), one failing city does not stop the
    other, and each map-city run searches the catalog once per collection (search-scenes; build-cube reuses it)."""
    import threading
    from collections import Counter

    from crofuse.cube import search
    from crofuse.products import ITEM_NAME
    from flows import remap_cities

    searches: Counter = Counter()
    lock = threading.Lock()
    real = search.search_collection
    together = threading.Barrier(2, timeout=120)

    waited: set = set()

    def counting(client, query, **kw):
        key = (query.collection, query.datetime[:4])
        with lock:
            first = key not in waited and query.collection == "sentinel-2-l2a"
            waited.add(key)
        if first:
            together.wait()  # both Wuhan city-years are searching at the same time, or this breaks after 120 s
        found = real(client, query, **kw)
        with lock:
            searches[key] += 1  # searches that answered (a Prefect retry of a failed one would be another)
        return found

    monkeypatch.setattr(search, "search_collection", counting)
    cities = tmp_path / "cities.yaml"
    cities.write_text("cities:\n  - name: Atlantis\n    aoi: [10.0, 5.0, 9.0, 6.0]   # west > east\n  - name: wuhan\n")
    output = tmp_path / "out"
    kw = {"cities_file": str(cities), "years": list(YEARS), "catalog": stac_api, "checkpoint": str(tiny_checkpoint),
          "output": str(output), "dask_address": "in-process", "quicklooks": False, "tiling": {"chunk_size": 256}}
    state = remap_cities(**kw, max_concurrent=4, return_state=True)
    assert state.is_failed() and "Atlantis 2021" in state.message and "Atlantis 2022" in state.message
    report = json.loads((output / "remap-report.json").read_text())
    # both Wuhan city-years passed the barrier in their search: they ran at the same time
    assert {(d["city"], d["year"]) for d in report["mapped"]} == {("wuhan", 2021), ("wuhan", 2022)}, report["failed"]
    assert {(f["city"], f["year"]) for f in report["failed"]} == {("Atlantis", 2021), ("Atlantis", 2022)}

    # one search per collection per city-year: search-scenes searched, build-cube built from its items
    assert searches == {(c, str(y)): 1 for c in ("sentinel-2-l2a", "sentinel-1-rtc") for y in YEARS}

    # the Wuhan runs are subflows of the remap run, and overlapped in time
    remap_run = _flow_runs("remap-cities")[-1]
    wuhan = [r for r in _flow_runs("map-city") if r.parameters.get("city") == "wuhan"
             and r.start_time and r.start_time >= remap_run.start_time]
    assert len(wuhan) == 2 and all(r.state.is_completed() and r.parent_task_run_id for r in wuhan)
    first, second = wuhan
    assert second.start_time < first.end_time, [(r.start_time, r.end_time) for r in wuhan]
    for year in YEARS:
        assert (output / "wuhan" / str(year) / ITEM_NAME).is_file()
    ds = xr.open_zarr(output / st.STATISTICS_ZARR)
    assert list(ds.city.values) == ["wuhan"] and list(ds.year.values) == list(YEARS)

    # the remap's table artifact: one row per city-year with its outcome, read back from the Prefect API
    table = json.loads(_artifacts(remap_run.id)["remap-cities"].data)
    rows = {(r["city"], r["year"]): r for r in table}
    assert {k: r["status"] for k, r in rows.items()} == {
        ("Atlantis", 2021): "failed", ("Atlantis", 2022): "failed", ("wuhan", 2021): "mapped",
        ("wuhan", 2022): "mapped"}
    assert "west" in rows[("Atlantis", 2021)]["error"]
    assert rows[("wuhan", 2022)]["item"] == str(output / "wuhan" / "2022" / ITEM_NAME)

    # max_concurrent=1: the (already mapped) city-years run one after the other
    remap_cities(**kw, max_concurrent=1, return_state=True)
    again = _flow_runs("remap-cities")[-1]
    serial = [r for r in _flow_runs("map-city") if r.start_time and r.start_time >= again.start_time]
    assert len(serial) == 4
    for before, after in itertools.pairwise(serial):
        assert after.start_time >= before.end_time, [(r.start_time, r.end_time) for r in serial]
