"""The cube builds the same on a real dask.distributed cluster (worker processes), as the map-city flow runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crofuse.cube import CubeConfig, build_cube, open_cube

pytestmark = pytest.mark.timeout(600)

AOI = (114.296, 30.586, 114.302, 30.592)


def test_same_cube_on_a_local_cluster_with_worker_processes(stac_api, tmp_path: Path):
    from distributed import Client, LocalCluster

    def cfg(out: Path) -> CubeConfig:
        return CubeConfig(city="wuhan", year=2022, aoi=AOI, catalog=stac_api, output=out, chunk_size=64)

    threaded = open_cube(build_cube(cfg(tmp_path / "threads"), progress=False)).load()
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        on_cluster = open_cube(build_cube(cfg(tmp_path / "cluster"), progress=True)).load()
    for name in ("optical", "sar", "valid", "optical_count", "sar_count"):
        np.testing.assert_array_equal(threaded[name].values, on_cluster[name].values, err_msg=name)
    assert on_cluster.rio.crs == threaded.rio.crs and on_cluster.attrs["crofuse_complete"] is True
