"""predict_cube on real dask worker processes: 1 vs 2 workers, model loaded once per worker, a killed worker."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from infra.cluster import ClusterConfig, dask_client
from tests.fixtures.tiling import make_cube, slow_down_chunks
from tiling import TilingConfig, predict_cube
from tiling.predict import torch_threads_for
from tiling.store import PROGRESS_DIR

# torch_threads pinned: convolutions summed over a different number of threads differ in the last float bits,
# which can move a rounded percent by one; pinned, the maps must be byte-identical however chunks are distributed.
CONFIG = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)
N_CHUNKS = 12  # 192 x 256 px in 64-px chunks


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return make_cube(tmp_path_factory.mktemp("dask-cube") / "testville" / "2024" / "inputs.zarr", (192, 256), seed=3, chunk=64)


def _maps(outputs) -> dict[str, np.ndarray]:
    import rasterio
    import zarr

    group = zarr.open_group(outputs.maps, mode="r")
    maps = {v: group[v][:] for v in ("impervious", "probability", "uncertainty", "disagreement")}
    for path in (outputs.impervious, outputs.probability, outputs.uncertainty, outputs.disagreement):
        with rasterio.open(path) as src:
            maps[path.name] = src.read(1)
    return maps


def _loads(client) -> dict[str, int]:
    def count() -> int:
        import tiling.model

        return tiling.model.LOAD_COUNT

    return client.run(count)


@pytest.fixture(scope="module")
def one_worker_maps(cube, tiling_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "testville" / "2024"
    with dask_client(ClusterConfig(kind="cpu", n_workers=1, dashboard_address=None)) as client:
        assert torch_threads_for(client) == max(1, len(os.sched_getaffinity(0)))
        result = predict_cube(cube, tiling_checkpoint, out, config=CONFIG, client=client, progress=False)
        assert list(_loads(client).values()) == [1], "the model is loaded once per worker, not once per task"
    assert result.chunks_computed == N_CHUNKS
    return _maps(result)


@pytest.fixture(scope="module")
def two_workers():
    with dask_client(ClusterConfig(kind="cpu", n_workers=2, dashboard_address=None)) as client:
        yield client


def test_two_workers_give_the_same_maps_as_one(one_worker_maps, two_workers, cube, tiling_checkpoint, tmp_path):
    client = two_workers
    assert torch_threads_for(client) == max(1, len(os.sched_getaffinity(0)) // 2), "workers x threads <= cores"
    result = predict_cube(cube, tiling_checkpoint, tmp_path / "out", config=CONFIG, client=client, progress=False)
    assert result.chunks_computed == N_CHUNKS
    assert sorted(_loads(client).values()) == [1, 1], "both workers ran chunks, each loaded the model once"
    got = _maps(result)
    for key, expected in one_worker_maps.items():
        assert (got[key] == expected).all(), key


def test_a_killed_worker_does_not_spoil_the_run(one_worker_maps, two_workers, cube, tiling_checkpoint, tmp_path):
    client = two_workers
    client.run(slow_down_chunks, 0.25)  # so the kill below lands mid-run on any machine
    out = tmp_path / "out"
    progress = out / PROGRESS_DIR
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = predict_cube(cube, tiling_checkpoint, out, config=CONFIG, client=client, progress=False)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and thread.is_alive():
        if progress.exists() and len(list(progress.glob("*.done"))) >= 2:
            break
        time.sleep(0.02)
    assert thread.is_alive(), "the run finished before a worker could be killed"
    done_at_kill = len(list(progress.glob("*.done")))
    victim = sorted(client.run(os.getpid).values())[0]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert done_at_kill < N_CHUNKS
    pids_after = set(client.run(os.getpid).values())
    assert victim not in pids_after, "the killed worker was replaced"
    got = _maps(outcome["result"])
    for key, expected in one_worker_maps.items():
        assert (got[key] == expected).all(), key
