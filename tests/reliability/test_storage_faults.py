"""Faults of the output storage: a failed remap, two runs of one city-year, a read-only or full output, litter.

Each test reproduces a reported fault and fails on the code before the fix:

* #1: a remap that fails half-way leaves the finished city-year exactly as it was (maps, marker, statistics row,
  quicklook); the rerun resumes in its staging area, and the marker says "publishing" whenever a product moves;
* #4: a second run of a city-year waits for the lease, then fails naming the holder; it never removes the holder's
  temporary store; a lease whose holder was killed is taken over;
* #12: a read-only output fails before any work, in one line naming it; a full disk names the path, the file system
  and the space needed, and does not re-read every input;
* #13: a killed COG write leaves nothing next to the outputs, and its temporary folder is removed by the next write;
  a failed quicklook leaves no temporary PNG.

The disk faults mount small tmpfs file systems (root on Linux); elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crofuse.errors import LeaseHeldError, OutputWriteError
from crofuse.io.lease import Lease
from crofuse.io.store import location

pytestmark = pytest.mark.timeout(600)
REPO = Path(__file__).resolve().parents[2]
UTM50N = "EPSG:32650"


# ------------------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, size, ro=False)``: a fresh tmpfs under ``tmp_path`` (unmounted after the test)."""
    mounted: list[Path] = []

    def mount(name: str, size: str, *, ro: bool = False) -> Path:
        if not sys.platform.startswith("linux") or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs Linux and root")
        target = tmp_path / name
        target.mkdir()
        options = f"size={size}" + (",ro" if ro else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "crofuse-test", str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _grid(h: int, w: int):
    import rioxarray  # noqa: F401
    import xarray as xr

    da = xr.DataArray(np.zeros((h, w), "uint8"), dims=("y", "x"),
                      coords={"y": 3400000 - 5 - 10 * np.arange(h), "x": 500005 + 10 * np.arange(w)})
    return da.rio.write_crs(UTM50N).rio.write_transform()


def _cube_config(stac_api: str, output, **kw):
    from crofuse.cube import CubeConfig

    return CubeConfig(city="wuhan", year=2022, catalog=stac_api, output=output, chunk_size=128,
                      aoi=[114.27, 30.57, 114.29, 30.59], min_valid_fraction=0.0, **kw)


# ------------------------------------------------------------------------------------------------------ #1
def test_a_failed_remap_leaves_the_finished_city_year_as_it_was(prefect_harness, stac_api, tiny_checkpoint, tmp_path,
                                                                 monkeypatch) -> None:
    import xarray as xr

    import tiling.predict
    from crofuse import layout
    from flows import map_city
    from flows.tasks import finished_marker
    from tests.fixtures.model import make_checkpoint
    from tiling.windows import chunk_bounds

    out = tmp_path / "maps"
    kw = {"city": "wuhan", "year": 2021, "catalog": stac_api, "output": str(out), "dask_address": "in-process",
          "tiling": {"chunk_size": 128}}
    first = map_city(checkpoint=str(tiny_checkpoint), **kw)
    folder = out / "wuhan" / "2021"
    names = ("impervious.tif", "probability.tif", "mapped.json", "statistics.json", "quicklook.png", "aoi.geojson")
    before = {n: (folder / n).read_bytes() for n in names}
    table = xr.open_zarr(out / "statistics.zarr").load()

    other = make_checkpoint(tmp_path / "other.safetensors", seed=7)
    real = tiling.predict.predict_chunk_probability
    calls: list[int] = []

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the worker was lost (injected fault)")
        return real(*args, **kwargs)

    monkeypatch.setattr(tiling.predict, "predict_chunk_probability", dies_on_the_second_chunk)
    with pytest.raises(Exception, match="injected fault"):
        map_city(checkpoint=str(other), **kw)
    assert {n: (folder / n).read_bytes() for n in names} == before, "the finished products are untouched"
    assert finished_marker(folder, first["checkpoint_sha256"], first["parameters_sha256"]) is not None
    assert xr.open_zarr(folder / "maps.zarr").attrs["checkpoint_sha256"] == first["checkpoint_sha256"]
    xr.testing.assert_identical(xr.open_zarr(out / "statistics.zarr").load(), table)
    assert not (folder / ".lease").exists(), "the failed run released its lease"

    monkeypatch.setattr(tiling.predict, "predict_chunk_probability", real)
    moves: list[tuple[str, str | None]] = []
    for name in ("replace_file", "replace_store"):
        original = getattr(layout, name)

        def spy(src, dst, _original=original):
            moves.append((dst.name, layout.marker_state(folder)))
            return _original(src, dst)

        monkeypatch.setattr(layout, name, spy)
    again = map_city(checkpoint=str(other), **kw)
    shape = xr.open_zarr(folder / "inputs.zarr").sizes
    total = len(chunk_bounds(shape["y"], 128)) * len(chunk_bounds(shape["x"], 128))
    assert total > 1 and again["chunks_computed"] == total - 1, "the rerun resumed the staged maps"
    assert {"impervious.tif", "probability.tif", "maps.zarr"} <= {n for n, _ in moves}
    assert all(state == layout.PUBLISHING for _, state in moves), f"a product moved under a valid marker: {moves}"
    marker = json.loads((folder / "mapped.json").read_text())
    assert marker["state"] == "complete" and marker["checkpoint_sha256"] == again["checkpoint_sha256"]
    assert xr.open_zarr(folder / "maps.zarr").attrs["checkpoint_sha256"] == again["checkpoint_sha256"]
    record = json.loads((folder / "statistics.json").read_text())
    assert record["sources"] != json.loads(before["statistics.json"])["sources"], "statistics of the new map"
    assert not list((folder / ".staging").glob("*")) if (folder / ".staging").exists() else True


# ------------------------------------------------------------------------------------------------------ #4
def test_a_second_run_waits_for_the_lease_then_names_its_holder(prefect_harness, stac_api, tiny_checkpoint,
                                                                 tmp_path) -> None:
    from crofuse.cube import build_cube
    from flows import map_city

    out = tmp_path / "maps"
    folder = out / "wuhan" / "2022"
    running = folder / ".inputs.zarr.tmp-0live000"  # the temporary cube of the run holding the lease
    running.mkdir(parents=True)
    (running / "zarr.json").write_text("{}")
    holder = Lease(location(folder) / ".lease", purpose="map-city wuhan 2022 (the other run)", timeout=60,
                   heartbeat=0.5).acquire()
    try:
        started = time.monotonic()
        pattern = rf"held by pid {os.getpid()} on {socket.gethostname()} since \d{{4}}-.*the other run"
        with pytest.raises(LeaseHeldError, match=pattern):
            map_city(city="wuhan", year=2022, catalog=stac_api, checkpoint=str(tiny_checkpoint), output=str(out),
                     dask_address="in-process", lease_wait=1.5)
        assert 1.5 <= time.monotonic() - started < 60, "it waited lease_wait seconds, then gave up"
        with pytest.raises(LeaseHeldError, match=pattern):
            build_cube(_cube_config(stac_api, out), progress=False, lease_wait=0)
        assert running.exists(), "a temporary store is removed only by the lease holder"
    finally:
        holder.release()


_HOLD_AND_DIE = """
import sys, time
from crofuse.io.lease import Lease
Lease(sys.argv[1], purpose="a run that gets SIGKILLed", timeout=600).acquire()
print("holding", flush=True)
time.sleep(120)
"""


def test_a_lease_whose_holder_was_killed_is_taken_over(stac_api, tmp_path) -> None:
    from crofuse.cube import build_cube
    from crofuse.io.lease import read_lease

    out = tmp_path / "maps"
    folder = out / "wuhan" / "2022"
    folder.mkdir(parents=True)
    stale = folder / ".inputs.zarr.tmp-0dead000"
    stale.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_AND_DIE, str(folder / ".lease")], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    dead = read_lease(folder / ".lease")
    assert dead is not None and dead.pid == proc.pid
    assert time.time() - dead.heartbeat_epoch < dead.timeout, "its heartbeat has not timed out: the dead pid tells"
    path = build_cube(_cube_config(stac_api, out), progress=False, lease_wait=0)  # its pid is gone: taken over
    assert (path / "zarr.json").exists() and not stale.exists(), "the dead run's temporary store is removed"
    assert not (folder / ".lease").exists()


# ------------------------------------------------------------------------------------------------------ #12
def test_a_read_only_output_fails_at_once_in_one_line(prefect_harness, stac_api, tiny_checkpoint, tmpfs) -> None:
    from flows import map_city

    ro = tmpfs("ro", "1m", ro=True)
    started = time.monotonic()
    with pytest.raises(OutputWriteError) as info:
        map_city(city="wuhan", year=2021, catalog=stac_api, checkpoint=str(tiny_checkpoint), output=str(ro / "maps"),
                 dask_address="in-process")
    message = str(info.value)
    assert "\n" not in message and str(ro) in message and "read-only file system" in message, message
    assert time.monotonic() - started < 30


def test_a_full_disk_names_the_path_and_does_not_reread_the_inputs(stac_api, tmpfs, monkeypatch, caplog) -> None:
    from crofuse.cube import build

    full = tmpfs("full", "96k")
    rereads: list[BaseException] = []
    real = build.asset_checks.diagnose_read_failure
    monkeypatch.setattr(build.asset_checks, "diagnose_read_failure", lambda refs, e: rereads.append(e) or real(refs, e))
    with caplog.at_level("WARNING"), pytest.raises(OutputWriteError) as info:
        build.build_cube(_cube_config(stac_api, full / "maps"), progress=False)
    message = str(info.value)
    assert message.startswith(f"no space left on {full} writing {full}/maps/wuhan/2022/inputs.zarr"), message
    assert "needs ~" in message and " MB" in message and "\n" not in message
    assert not rereads and "reading every asset in full" not in caplog.text, "a write error is no read error"
    assert not [p for p in (full / "maps/wuhan/2022").iterdir() if p.name != ".lease"], "no half-written store"


def test_a_full_temporary_folder_names_it_and_the_space_a_cog_needs(tmpfs, tmp_path, monkeypatch) -> None:
    from crofuse.io.cog import write_cog

    scratch = tmpfs("scratch", "256k")
    monkeypatch.setenv("CROFUSE_TMPDIR", str(scratch))
    data = np.random.default_rng(0).integers(0, 255, (1500, 1500), dtype=np.uint8)  # 2.25 MB, incompressible
    dst = tmp_path / "out" / "probability.tif"
    with pytest.raises(OutputWriteError) as info:
        write_cog(dst, data, crs=UTM50N, transform=(10, 0, 500000, 0, -10, 3400000), nodata=255)
    message = str(info.value)
    assert message.startswith(f"no space left on {scratch} writing {dst} (needs ~3 MB"), message
    assert "CROFUSE_TMPDIR" in message and "\n" not in message
    assert not dst.exists() and not list(scratch.iterdir())


# ------------------------------------------------------------------------------------------------------ #13
_SLOW_COG = """
import sys, time
import numpy as np
from crofuse.io.cog import write_cog_regions
def region(rows, cols):
    print("region", flush=True)
    time.sleep(0.5)
    return np.zeros((rows.stop - rows.start, cols.stop - cols.start), "uint8")
write_cog_regions(sys.argv[1], region, shape=(512, 512), dtype="uint8", chunks=(64, 64), crs="EPSG:32650",
                  transform=(10, 0, 500000, 0, -10, 3400000), nodata=255)
"""


def test_a_killed_cog_write_leaves_no_litter(tmp_path) -> None:
    from crofuse.io.cog import write_cog

    scratch, out = tmp_path / "scratch", tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROFUSE_TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_COG, str(out / "impervious.tif")], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "region"
        assert proc.stdout.readline().strip() == "region"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert not list(out.iterdir()), "nothing next to the outputs"
    assert list(scratch.iterdir()), "the killed writer's temporary folder (precondition)"
    os.environ["CROFUSE_TMPDIR"] = str(scratch)
    try:
        write_cog(out / "change.tif", np.zeros((32, 32), "uint8"), crs=UTM50N,
                  transform=(10, 0, 500000, 0, -10, 3400000), nodata=255)
    finally:
        del os.environ["CROFUSE_TMPDIR"]
    assert not list(scratch.iterdir()), "the next write removed the killed writer's temporary folder"
    assert [p.name for p in out.iterdir()] == ["change.tif"]


def test_a_failed_quicklook_leaves_no_temporary_png(tmp_path, monkeypatch) -> None:
    import matplotlib.figure

    from crofuse.quicklooks import city_year_quicklook
    from crofuse.statistics import write_map

    folder = tmp_path / "wuhan" / "2021"
    write_map(np.zeros((40, 40), "uint8"), _grid(40, 40), folder / "impervious.tif")

    def full_disk(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    with pytest.raises(OutputWriteError, match=f"no space left on .* writing {folder / 'quicklook.png'}"):
        city_year_quicklook(tmp_path, "wuhan", 2021)
    assert sorted(p.name for p in folder.iterdir()) == ["impervious.tif"], "no temporary PNG next to the outputs"


_HOLD_UNTIL_SIGTERM = """
import sys, time
from crofuse.io.lease import Lease
from infra.process import Interrupted, stop_on_signals
try:
    with stop_on_signals(), Lease(sys.argv[1], purpose="a run stopped by SIGTERM"):
        print("holding", flush=True)
        time.sleep(120)
except Interrupted:
    sys.exit(143)
"""


def test_a_run_stopped_by_sigterm_releases_its_lease(tmp_path) -> None:
    lease = tmp_path / "wuhan" / "2021" / ".lease"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_UNTIL_SIGTERM, str(lease)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        assert lease.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not lease.exists(), "released on SIGTERM: the next run need not wait for the timeout"
