"""The one I/O layer on a real S3-compatible server (``moto_server`` on 127.0.0.1, :class:`infra.s3.S3Server`) and on
disk: URLs, atomic and conditional writes, leases, COGs with one PUT, cubes and statistics on object storage."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from crofuse.errors import LeaseHeldError, LeaseLostError, StorageError
from crofuse.io.lease import Lease, LeaseInfo, read_lease
from crofuse.io.store import Location, location

UTM50N = "EPSG:32650"


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> Location:
    """A fresh output root on disk or on the S3 server."""
    if request.param == "local":
        return location(tmp_path / "root")
    return location(request.getfixturevalue("s3_root"))


# ------------------------------------------------------------------------------------------------------ URLs
def test_urls_parse_join_and_refuse_what_they_cannot_name(tmp_path) -> None:
    s3 = location("s3://bucket/maps/")
    assert (s3.scheme, s3.bucket, s3.key) == ("s3", "bucket", "maps")
    assert str(s3 / "wuhan" / "2021" / "impervious.tif") == "s3://bucket/maps/wuhan/2021/impervious.tif"
    assert (s3 / "wuhan").parent == s3 and (s3 / "a.tif").name == "a.tif" and (s3 / "a.tif").suffix == ".tif"
    assert (s3 / "x.zarr").gdal_path == "/vsis3/bucket/maps/x.zarr"
    assert location(f"file://{tmp_path}/a") == location(tmp_path / "a") == tmp_path / "a"
    assert location("relative/out").url == "relative/out" and location("relative/out").is_local
    with pytest.raises(TypeError, match="not a local path"):  # never handed to code that would create a local file
        Path(s3)
    with pytest.raises(StorageError, match="needs a bucket"):
        location("s3:///prefix")
    with pytest.raises(StorageError, match="unsupported URL scheme"):
        location("ftp://host/x")
    with pytest.raises(StorageError, match="would leave"):
        s3 / "../other"


# ------------------------------------------------------------------------------------------------------ operations
def test_read_write_list_and_delete(root: Location) -> None:
    f = root / "wuhan" / "2021" / "statistics.json"
    assert not f.exists() and not root.is_dir()
    f.write_text('{"a": 1}')
    assert f.is_file() and f.read_text() == '{"a": 1}' and (root / "wuhan").is_dir() and not f.is_dir()
    (root / "wuhan" / "2022" / "x.tif").write_bytes(b"tif")
    assert [p.name for p in (root / "wuhan").iterdir()] == ["2021", "2022"]
    assert sorted(p.relative_to(root) for p in root.walk_files()) == ["wuhan/2021/statistics.json", "wuhan/2022/x.tif"]
    v1 = f.stat().version
    f.write_text('{"a": 2}')
    assert f.stat().version != v1 and f.stat().size == 8
    (root / "wuhan" / "2021").rmtree()
    assert not f.exists() and (root / "wuhan" / "2022" / "x.tif").exists()
    with pytest.raises(FileNotFoundError):
        f.read_bytes()
    if root.is_local:
        assert not [p for p in root.path.rglob("*") if ".crofuse-tmp-" in p.name], "no temporary sibling left"


def test_conditional_writes_admit_exactly_one_writer(root: Location) -> None:
    """put-if-absent and put-if-match race between threads: one winner each time (on S3 the server decides:
    moto answers 412 to ``If-None-Match: *`` on an existing key and to a stale ``If-Match``)."""
    target = root / ".lease"
    results: list[str | None] = []

    def race(fn) -> list[str | None]:
        out: list[str | None] = []
        threads = [threading.Thread(target=lambda i=i: out.append(fn(i))) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return out

    results = race(lambda i: target.put_if_absent(f"writer {i}".encode()))
    assert sum(r is not None for r in results) == 1
    winner = next(r for r in results if r is not None)
    content, version = target.read_versioned()
    assert version == winner and content.startswith(b"writer ")
    results = race(lambda i: target.put_if_match(f"update {i}".encode(), version))
    assert sum(r is not None for r in results) == 1
    assert target.read_text().startswith("update ")
    assert target.put_if_match(b"stale", version) is None, "an outdated version never overwrites"
    assert (root / "absent").put_if_match(b"x", version) is None and not (root / "absent").exists()


# ------------------------------------------------------------------------------------------------------ leases
def test_a_held_lease_names_its_holder_and_a_waiter_gets_it_after_release(root: Location) -> None:
    lease = Lease(root / ".lease", purpose="map-city wuhan 2021", timeout=30, heartbeat=0.2).acquire()
    try:
        info = read_lease(root / ".lease")
        assert info is not None and info.owner == lease.owner and info.purpose == "map-city wuhan 2021"
        with pytest.raises(LeaseHeldError, match=r"held by pid \d+ on .+ since \d{4}-\d\d-\d\dT.*map-city wuhan 2021"):
            Lease(root / ".lease", wait=0).acquire()
        time.sleep(0.6)
        assert read_lease(root / ".lease").heartbeat_epoch > info.heartbeat_epoch, "the heartbeat rewrites it"
        got: list[Lease] = []
        waiter = threading.Thread(target=lambda: got.append(Lease(root / ".lease", wait=20, poll=0.1).acquire()))
        waiter.start()
        time.sleep(0.5)
        assert not got, "the waiter waits while the lease is held"
    finally:
        lease.release()
    waiter.join(20)
    assert got and read_lease(root / ".lease").owner == got[0].owner
    got[0].release()
    assert not (root / ".lease").exists()


def test_an_abandoned_lease_is_taken_over_by_exactly_one_waiter(root: Location) -> None:
    """A holder on another host whose heartbeat stopped longer ago than its timeout: of five waiters exactly one
    takes it over (put-if-match on the expired version), the others are told who holds it now."""
    dead = LeaseInfo(owner="dead", host="elsewhere", pid=1, command="", purpose="a killed run",
                     started_epoch=time.time() - 100, heartbeat_epoch=time.time() - 50, timeout=10)
    (root / ".lease").write_bytes(dead.to_json())
    winners: list[Lease] = []
    refused: list[str] = []

    def attempt() -> None:
        try:
            winners.append(Lease(root / ".lease", wait=0, timeout=30).acquire())
        except LeaseHeldError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=attempt) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1 and len(refused) == 4
    assert winners[0].took_over is not None and winners[0].took_over.owner == "dead"
    assert all("held by pid" in r and "a killed run" not in r for r in refused)
    winners[0].release()


def test_a_lease_taken_over_is_noticed_before_publishing(root: Location) -> None:
    lease = Lease(root / ".lease", timeout=30, heartbeat=0.1).acquire()
    try:
        _, version = (root / ".lease").read_versioned()
        other = LeaseInfo(owner="thief", host="elsewhere", pid=2, command="", purpose="another run",
                          started_epoch=time.time(), heartbeat_epoch=time.time(), timeout=30)
        assert (root / ".lease").put_if_match(other.to_json(), version) is not None
        deadline = time.monotonic() + 10
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLostError, match="another run"):
            lease.check()
    finally:
        lease.release()
    assert read_lease(root / ".lease").owner == "thief", "a lost lease is not deleted by its old holder"


# ------------------------------------------------------------------------------------------------------ COGs
def test_a_cog_is_written_in_temp_space_and_published_in_one_put(root: Location, tmp_path, monkeypatch) -> None:
    from rio_cogeo.cogeo import cog_validate

    from crofuse.io.cog import write_cog_regions
    from crofuse.io.store import gdal_env

    monkeypatch.setenv("CROFUSE_TMPDIR", str(tmp_path / "scratch"))
    dst = root / "wuhan" / "2021" / "impervious.tif"
    seen: list[bool] = []
    data = (np.arange(300 * 200).reshape(300, 200) % 3).astype("uint8")

    def region(rows, cols):
        seen.append(dst.exists())  # nothing is at the destination while the COG is being written
        return data[rows, cols]

    write_cog_regions(dst, region, shape=data.shape, dtype="uint8", chunks=(128, 128), crs=UTM50N,
                      transform=(10, 0, 500000, 0, -10, 3400000), nodata=255, overviews=1)
    assert seen and not any(seen)
    with gdal_env():
        valid, errors, _ = cog_validate(dst.gdal_path, quiet=True)
        import rasterio

        with rasterio.open(dst.gdal_path) as src:
            assert (src.read(1) == data).all() and src.overviews(1)
    assert valid, errors
    assert [p.name for p in dst.parent.iterdir()] == ["impervious.tif"], "nothing else next to the output"
    assert not list((tmp_path / "scratch").iterdir()), "the temporary folder is removed"


# ------------------------------------------------------------------------------------------------------ cubes
def test_a_cube_on_object_storage_is_published_complete_and_replaced_whole(s3_root, tmp_path) -> None:
    import xarray as xr

    from crofuse.cube import CubeConfig, build_cube, open_cube
    from crofuse.synthetic import WUHAN
    from tests.fixtures.cube import build_small_catalog, inner_bbox, served_catalog

    catalog = build_small_catalog(tmp_path / "catalog", size_km=1.0)
    with served_catalog(catalog) as url:
        kw = {"city": "wuhan", "year": 2022, "aoi": inner_bbox(WUHAN, 1.0), "catalog": url, "output": s3_root,
              "chunk_size": 64, "min_valid_fraction": 0.0}
        config = CubeConfig(**kw)
        path = build_cube(config, progress=False)
        assert str(path) == f"{s3_root}/wuhan/2022/inputs.zarr"
        ds = open_cube(path)
        first = ds.attrs["build_id"]
        assert ds["optical"].shape[0] == 4 and bool(np.isfinite(ds["optical"].values).any())
        assert build_cube(config, progress=False) == path, "a rerun reuses the complete cube"
        rebuilt = build_cube(CubeConfig(**kw, max_cloud_cover=79.0), progress=False)
        assert open_cube(rebuilt).attrs["build_id"] != first
    names = [p.name for p in location(f"{s3_root}/wuhan/2022").iterdir()]
    assert names == ["inputs.zarr"], f"no temporary store or lease left: {names}"
    assert xr.open_zarr(location(path).zarr_store(read_only=True), zarr_format=3).attrs["crofuse_complete"] is True


# ------------------------------------------------------------------------------------------------------ statistics
def test_statistics_on_object_storage(s3_root) -> None:
    import xarray as xr

    from crofuse import statistics as st
    from crofuse.statistics.maps import write_map

    like = _grid(30, 30)
    maps = {2020: np.zeros((30, 30), "uint8"), 2021: np.zeros((30, 30), "uint8")}
    maps[2021][5:15, 5:15] = 1
    for year, values in maps.items():
        write_map(values, like, location(f"{s3_root}/wuhan/{year}/impervious.tif"))
    ds = st.update_statistics(s3_root)
    assert list(ds.year.values) == [2020, 2021]
    assert float(ds.gain_km2.sel(city="wuhan", year=2021)) == pytest.approx(0.01, rel=0.01)  # 100 px of 100 m²
    rows = st.read_statistics_csv(f"{s3_root}/statistics.csv")
    assert [(r["city"], r["year"]) for r in rows] == [("wuhan", 2020), ("wuhan", 2021)]
    table = xr.open_zarr(location(f"{s3_root}/statistics.zarr").zarr_store(read_only=True))
    assert int(table["mapped"].sum()) == 2
    assert json.loads(location(f"{s3_root}/wuhan/2021/statistics.json").read_text())["previous_year"] == 2020
    assert location(f"{s3_root}/wuhan/2021/change.tif").is_file()
    assert not location(f"{s3_root}/.statistics-lock").exists(), "the lock is released"
    before = location(f"{s3_root}/wuhan/2021/statistics.json").version()
    st.update_statistics(s3_root)
    assert location(f"{s3_root}/wuhan/2021/statistics.json").version() == before, "a current record is reused"


def _grid(h: int, w: int):
    import rioxarray  # noqa: F401
    import xarray as xr

    da = xr.DataArray(np.zeros((h, w), "uint8"), dims=("y", "x"),
                      coords={"y": 3400000 - 5 - 10 * np.arange(h), "x": 500005 + 10 * np.arange(w)})
    return da.rio.write_crs(UTM50N).rio.write_transform()


# ------------------------------------------------------------------------------------------------------ map-city
PRODUCT_NAMES = {"inputs.zarr", "impervious.tif", "probability.tif", "maps.zarr", "reference.tif", "mapped.json",
                 "statistics.json", "quicklook.png", "aoi.geojson", "change.tif", "statistics.zarr", "statistics.csv",
                 "change.png", "zarr.json"}


@pytest.mark.slow
def test_map_city_on_object_storage_with_workers_that_share_no_disk(prefect_harness, stac_api, tiny_checkpoint,
                                                                     s3_root, tmp_path, monkeypatch) -> None:
    """``map-city`` with ``output=s3://…`` and ``checkpoint=s3://…`` on a ``dask scheduler`` and two ``dask worker``
    processes, each in its own mount namespace with an empty tmpfs over the client's folder (its output, temporary
    and cache space): nothing reaches the workers but through S3. One worker is SIGKILLed mid-run (the scheduler
    allows no retry, so the run fails); the rerun on the other worker resumes the chunks already on S3. The
    outputs come back complete through the S3 API, and no output file appears on the local disk."""
    import os
    import signal

    import distributed
    import rasterio
    import xarray as xr
    from rio_cogeo.cogeo import cog_validate

    from crofuse.io.store import gdal_env
    from flows import map_city
    from infra.cluster import ProcessCluster, check_isolation
    from tests.fixtures.tiling import slow_down_chunks

    try:
        check_isolation()
    except Exception as e:  # noqa: BLE001
        pytest.skip(str(e))
    client_dir = tmp_path / "client"
    (client_dir / "tmp").mkdir(parents=True)
    monkeypatch.setenv("CROFUSE_TMPDIR", str(client_dir / "tmp"))
    monkeypatch.chdir(client_dir)
    checkpoint = f"{s3_root}/models/{tiny_checkpoint.name}"
    location(checkpoint).upload_copy(tiny_checkpoint)
    output = f"{s3_root}/maps"
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": repo}
    kw = {"city": "wuhan", "year": 2021, "catalog": stac_api, "checkpoint": checkpoint, "output": output,
          "tiling": {"chunk_size": 128, "torch_threads": 1}}
    with ProcessCluster(n_workers=2, hide=[client_dir], env=env, base_dir=tmp_path / "dask",
                        scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}) as cluster:
        with distributed.Client(cluster.scheduler_address) as probe:
            seen = probe.run(lambda d: sorted(os.listdir(d)) if os.path.isdir(d) else None, str(client_dir))
            assert all(v == [] for v in seen.values()), f"the workers see the client's folder: {seen}"
            probe.run(slow_down_chunks, 1.0)  # so the kill lands mid-run
        outcome: dict[str, object] = {}

        def first_run() -> None:
            try:
                outcome["result"] = map_city(dask_address=cluster.scheduler_address, **kw)
            except Exception as e:  # noqa: BLE001
                outcome["error"] = e

        import threading

        thread = threading.Thread(target=first_run)
        thread.start()
        staging = location(f"{output}/wuhan/2021/.staging")
        deadline = time.monotonic() + 300
        done = 0
        while time.monotonic() < deadline and thread.is_alive():
            markers = [p for p in staging.walk_files() if p.name.endswith(".done")] if staging.is_dir() else []
            done = len(markers)
            if done >= 1:
                break
            time.sleep(0.2)
        assert thread.is_alive() and done >= 1, f"no chunk finished before the deadline ({outcome})"
        victim = cluster.workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        thread.join(300)
        assert "error" in outcome, "the run should fail: its chunk died with the worker and no retry is allowed"
        done = len([p for p in staging.walk_files() if p.name.endswith(".done")])
        assert done >= 1
        again = map_city(dask_address=cluster.scheduler_address, **kw)
    total = 4  # 250 x 250 px in 128 px chunks
    print(f"\nkilled worker {victim.pid} after {done} of {total} chunks; first run: "
          f"{type(outcome['error']).__name__}: {str(outcome['error'])[:160]}; rerun computed "
          f"{again['chunks_computed']} chunks")
    fetched = sorted(p.relative_to(tmp_path) for p in (tmp_path / "dask").rglob("*.safetensors"))
    assert fetched and all(str(p).startswith("dask/worker-") for p in fetched), "each worker fetched the checkpoint"
    assert again["skipped"] is False and again["chunks_computed"] == total - done, (done, again["chunks_computed"])

    folder = location(f"{output}/wuhan/2021")
    marker = json.loads((folder / "mapped.json").read_text())
    assert marker["state"] == "complete" and marker["checkpoint_sha256"] == again["checkpoint_sha256"]
    with gdal_env():
        for name in ("impervious.tif", "probability.tif", "reference.tif"):
            valid, errors, _ = cog_validate((folder / name).gdal_path, quiet=True)
            assert valid, (name, errors)
        with rasterio.open((folder / "impervious.tif").gdal_path) as src:
            impervious = src.read(1)
            assert src.crs.to_epsg() == 32650 and set(np.unique(impervious)) <= {0, 1, 255}
    maps = xr.open_zarr((folder / "maps.zarr").zarr_store(read_only=True))
    assert maps.attrs["complete"] is True and (maps["impervious"].values == impervious).all()
    cube = xr.open_zarr((folder / "inputs.zarr").zarr_store(read_only=True))
    assert cube.attrs["crofuse_complete"] is True
    for name in ("quicklook.png", "statistics.json", "aoi.geojson"):
        assert (folder / name).is_file(), name
    table = xr.open_zarr(location(f"{output}/statistics.zarr").zarr_store(read_only=True))
    assert bool(table["mapped"].sel(city="wuhan", year=2021))
    assert not (folder / ".lease").exists() and not staging.is_dir()
    local = [p for p in tmp_path.rglob("*") if p.name in PRODUCT_NAMES or p.suffix in (".tif", ".png", ".zarr")]
    assert not local, f"output files on the local disk: {local[:5]}"
    assert not list(client_dir.rglob("*.tif"))


# ------------------------------------------------------------------------------------------------------ publication
def test_publication_invalidates_the_marker_first_and_replaces_stores_whole(root: Location, monkeypatch) -> None:
    import xarray as xr

    from crofuse import layout

    cy = layout.city_year(root, "wuhan", 2021)
    old = xr.Dataset({"impervious": (("y", "x"), np.zeros((4, 6), "uint8"))}, attrs={"run": "old"})
    old.to_zarr(cy.maps.zarr_store(), mode="w", zarr_format=3, consolidated=True)
    (cy.maps / "stale-object").write_bytes(b"only in the old store")
    cy.impervious.write_bytes(b"old map")
    cy.record.write_text("{}")
    layout.write_marker(cy.folder, {"checkpoint_sha256": "old"})
    staging = cy.staging("r" * 64)
    new = xr.Dataset({"impervious": (("y", "x"), np.ones((4, 6), "uint8"))}, attrs={"run": "new"})
    new.to_zarr((staging / layout.MAPS).zarr_store(), mode="w", zarr_format=3, consolidated=True)
    (staging / layout.IMPERVIOUS).write_bytes(b"new map")
    assert layout.trusted(cy.folder)

    order: list[tuple[str, str | None]] = []
    for name in ("replace_file", "replace_store"):
        original = getattr(layout, name)
        monkeypatch.setattr(layout, name, lambda src, dst, _o=original: (
            order.append((dst.name, layout.marker_state(cy.folder))), _o(src, dst))[1])
    moved = layout.publish(cy, staging, run="r" * 64)
    assert sorted(moved) == [layout.IMPERVIOUS, layout.MAPS]
    assert order and all(state == layout.PUBLISHING for _, state in order), order
    assert not layout.trusted(cy.folder), "until the caller writes the marker, readers keep away"
    assert cy.impervious.read_bytes() == b"new map" and not cy.record.exists(), "the old map's record is removed"
    published = xr.open_zarr(cy.maps.zarr_store(read_only=True))
    assert published.attrs["run"] == "new" and int(published["impervious"].sum()) == 24
    assert not (cy.maps / "stale-object").exists(), "the store is replaced whole, not merged"
    assert not staging.exists() and layout.published_run(cy) == "r" * 64
    layout.write_marker(cy.folder, {"checkpoint_sha256": "new"})
    assert layout.trusted(cy.folder) and layout.read_marker(cy.folder)["state"] == layout.COMPLETE


def test_a_city_year_lease_is_shared_within_a_process_whatever_the_path_spelling(tmp_path, monkeypatch) -> None:
    """map-city holds the lease and calls build_cube, which takes it again: a relative and an absolute spelling of
    the output are one lease (the nested hold shares it), and only the outer release deletes it."""
    from crofuse import layout

    monkeypatch.chdir(tmp_path)
    outer = layout.city_year("maps", "wuhan", 2021).lease().acquire()
    try:
        inner = layout.city_year(str(tmp_path / "maps"), "wuhan", 2021).lease(wait=0).acquire()
        inner.release()
        assert (tmp_path / "maps/wuhan/2021/.lease").exists(), "the nested release leaves the outer hold"
        with pytest.raises(LeaseHeldError):
            Lease(tmp_path / "maps/wuhan/2021/.lease", wait=0).acquire()  # not re-entrant: another run's view
    finally:
        outer.release()
    assert not (tmp_path / "maps/wuhan/2021/.lease").exists()
