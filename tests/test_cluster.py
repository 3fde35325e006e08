"""infra.cluster: one config picks the cluster; dask_client starts and stops only what it started."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from crofuse.errors import ClusterError, ConfigError
from infra.cluster import ClusterConfig, dask_client, default_workers, resolve_kind


def test_config_validation():
    with pytest.raises(ConfigError, match="auto"):
        ClusterConfig(kind="tpu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="protocol"):
        ClusterConfig(address="10.0.0.5:8786")
    with pytest.raises(ConfigError):
        ClusterConfig(n_workers=0)


def test_kind_resolution_on_this_machine():
    import torch

    assert resolve_kind(ClusterConfig(kind="cpu")) == "cpu"
    assert resolve_kind(ClusterConfig(address="tcp://127.0.0.1:8786")) == "remote"
    try:
        import dask_cuda  # noqa: F401

        has_dask_cuda = True
    except ImportError:
        has_dask_cuda = False
    gpu = torch.cuda.is_available()
    assert resolve_kind(ClusterConfig(kind="auto")) == ("cuda" if gpu and has_dask_cuda else "cpu")
    if not (gpu and has_dask_cuda):
        with pytest.raises(ClusterError, match=r"crofuse\[gpu\]|no GPU"):
            resolve_kind(ClusterConfig(kind="cuda"))
    if not has_dask_cuda:
        with pytest.raises(ClusterError, match=r"pip install 'crofuse\[gpu\]'"):
            resolve_kind(ClusterConfig(kind="cuda"))


def test_default_workers_leave_cores_for_torch():
    assert default_workers(1) == 1 and default_workers(2) == 1 and default_workers(16) == 4


def _wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_local_cpu_cluster_runs_worker_processes_and_stops_them():
    config = ClusterConfig(kind="cpu", n_workers=1, dashboard_address=None)
    with dask_client(config) as client:
        pids = client.run(os.getpid)
        assert len(pids) == 1
        (pid,) = pids.values()
        assert pid != os.getpid(), "workers are separate processes"
        assert client.submit(sum, [1, 2, 3]).result() == 6
        address = client.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")
    assert _wait_gone(pid), "the worker process is stopped on exit"


def test_remote_address_is_used_and_never_shut_down():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        with dask_client(ClusterConfig(address=cluster.scheduler_address)) as client:
            assert client.submit(lambda x: x + 1, 41).result() == 42
        with Client(cluster) as again:  # still running after dask_client left
            assert len(again.nthreads()) == 1
            assert again.submit(lambda: "alive").result() == "alive"


def test_unreachable_scheduler_is_a_cluster_error():
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match="cannot reach"):
        with dask_client(ClusterConfig(address=f"tcp://127.0.0.1:{port}", connect_timeout="2s")):
            pass


def test_process_cluster_runs_workers_in_their_own_empty_directories(tmp_path):
    """``ProcessCluster``: a ``dask scheduler`` and ``dask worker`` processes (children of this process), each worker
    in its own directory that starts empty; stopping it leaves no process."""
    from distributed import Client

    from infra.cluster import ProcessCluster

    with ProcessCluster(n_workers=2, base_dir=tmp_path) as cluster:
        assert len(set(cluster.worker_dirs)) == 2
        for wdir in cluster.worker_dirs:  # empty but for the worker's own dask scratch space
            assert set(os.listdir(wdir)) <= {"dask-scratch-space"}, os.listdir(wdir)
        pids = [cluster.scheduler.pid, *(w.pid for w in cluster.workers)]
        assert {psutil.Process(p).ppid() for p in pids} == {os.getpid()}, "command-line processes, children of ours"
        with Client(cluster.scheduler_address, timeout="20s") as client:
            cwds = client.run(os.getcwd)
            assert sorted(cwds.values()) == sorted(str(d) for d in cluster.worker_dirs)
            assert client.submit(sum, [1, 2, 3]).result() == 6
    assert all(_wait_gone(p) for p in pids)
