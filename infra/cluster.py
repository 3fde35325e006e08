"""Pick and start a dask cluster; the rest of crofuse only ever sees a ``distributed.Client``.

- ``kind="cuda"``: ``dask_cuda.LocalCUDACluster``, one worker per visible GPU (needs the ``crofuse[gpu]`` extra);
- ``kind="cpu"``: ``distributed.LocalCluster`` with worker *processes* (torch releases the GIL, but separate
  processes keep each worker's model, allocator and OpenMP pool apart);
- ``kind="auto"``: CUDA when a GPU and dask-cuda are both there, CPU otherwise;
- ``address="tcp://host:8786"``: connect to a scheduler someone else runs (dask-jobqueue on SLURM/PBS, dask-kubernetes,
  ``dask scheduler`` by hand). That cluster is never shut down from here.

Everything binds to 127.0.0.1 by default; set ``host`` to serve workers on other machines.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from crofuse.errors import ClusterError, ConfigError

ClusterKind = Literal["auto", "cpu", "cuda"]
GPU_EXTRA_HINT = "install the GPU extra: pip install 'crofuse[gpu]' (it brings dask-cuda)"


def available_cores() -> int:
    """Cores this process may run on (affinity-aware)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class ClusterConfig:
    """Which dask cluster to use.

    Attributes:
        kind: ``"auto"``, ``"cpu"`` or ``"cuda"``; ignored when ``address`` is given.
        address: scheduler address of an existing cluster (``tcp://...``); then nothing is started.
        n_workers: CPU: worker processes (default: one per 4 cores, at least 1). CUDA: ignored (one per GPU).
        threads_per_worker: dask task threads per worker (default 1: each task runs torch on several cores itself).
        memory_limit: per-worker memory limit (``"auto"`` splits the machine's memory between workers, or e.g.
            ``"4GiB"``, or ``None`` for no limit).
        host: interface the scheduler and workers listen on.
        dashboard_address: where the dask dashboard listens (``None`` turns it off).
        connect_timeout: how long to wait for a remote scheduler (``address``) before giving up.
    """

    kind: ClusterKind = "auto"
    address: str | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | int | float | None = "auto"
    host: str = "127.0.0.1"
    dashboard_address: str | None = "127.0.0.1:0"
    connect_timeout: str = "30s"

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"cluster kind {self.kind!r} is not allowed; use 'auto', 'cpu' or 'cuda'")
        if self.address is not None and "://" not in self.address:
            raise ConfigError(f"address {self.address!r} needs a protocol, e.g. 'tcp://10.0.0.5:8786'")
        if self.n_workers is not None and self.n_workers < 1:
            raise ConfigError(f"n_workers={self.n_workers} must be >= 1")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ConfigError(f"threads_per_worker={self.threads_per_worker} must be >= 1")


def _dask_cuda():
    try:
        import dask_cuda
    except ImportError:
        return None
    return dask_cuda


def _gpu_count() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_kind(config: ClusterConfig) -> Literal["cpu", "cuda", "remote"]:
    """What ``config`` starts: ``"remote"`` (an address), ``"cuda"`` or ``"cpu"``.

    Raises :class:`ClusterError` when ``kind="cuda"`` is asked for without GPUs or without dask-cuda.
    """
    if config.address is not None:
        return "remote"
    if config.kind == "cpu":
        return "cpu"
    gpus = _gpu_count()
    has_dask_cuda = _dask_cuda() is not None
    if config.kind == "cuda":
        if not has_dask_cuda:
            raise ClusterError(f"a CUDA cluster was asked for but dask-cuda is not installed; {GPU_EXTRA_HINT}")
        if gpus == 0:
            raise ClusterError("a CUDA cluster was asked for but torch sees no GPU; use kind='cpu' or 'auto'")
        return "cuda"
    return "cuda" if gpus and has_dask_cuda else "cpu"


def default_workers(cores: int | None = None) -> int:
    """CPU workers by default: one per 4 cores (each worker's torch then uses ~4 cores), at least 1."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // 4)


def start_cluster(config: ClusterConfig):
    """Start (but do not connect to) the local cluster ``config`` describes; the caller closes it."""
    kind = resolve_kind(config)
    if kind == "remote":
        raise ConfigError("start_cluster starts local clusters; a remote address is connected to by dask_client")
    if kind == "cuda":
        dask_cuda = _dask_cuda()
        assert dask_cuda is not None  # resolve_kind checked it
        return dask_cuda.LocalCUDACluster(
            threads_per_worker=config.threads_per_worker or 1,
            memory_limit=config.memory_limit,
            host=config.host,
            dashboard_address=config.dashboard_address,
        )
    from distributed import LocalCluster

    dashboard = {"dashboard_address": config.dashboard_address}
    if config.dashboard_address is None:  # LocalCluster treats None as "the default port": switch it off instead
        dashboard = {"scheduler_kwargs": {"dashboard": False}}
    return LocalCluster(
        n_workers=config.n_workers or default_workers(),
        threads_per_worker=config.threads_per_worker or 1,
        processes=True,
        memory_limit=config.memory_limit,
        host=config.host,
        **dashboard,
    )


@contextlib.contextmanager
def dask_client(config: ClusterConfig = ClusterConfig()) -> Iterator:
    """A ``distributed.Client`` for ``config``; stops what it started on exit, never a remote cluster.

    Example::

        with dask_client(ClusterConfig(kind="cpu", n_workers=2)) as client:
            predict_cube(cube, checkpoint, out_dir, client=client)
    """
    from distributed import Client

    kind = resolve_kind(config)
    if kind == "remote":
        try:
            client = Client(config.address, timeout=config.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the dask scheduler at {config.address} ({exc}); check the address and that the "
                "scheduler is running"
            ) from exc
        try:
            yield client
        finally:
            client.close()  # only our connection: the cluster belongs to whoever started it
        return
    try:
        cluster = start_cluster(config)
    except (OSError, TimeoutError, RuntimeError) as exc:
        raise ClusterError(f"could not start a local {kind} dask cluster: {exc}") from exc
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin CLI wrapper
    """``python -m infra.cluster --kind cpu --workers 2``: run a local cluster until Ctrl-C, print its address."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads-per-worker", type=int, default=None)
    parser.add_argument("--memory-limit", default="auto")
    args = parser.parse_args(argv)
    config = ClusterConfig(
        kind=args.kind, n_workers=args.workers, threads_per_worker=args.threads_per_worker,
        memory_limit=args.memory_limit,
    )
    with dask_client(config) as client:
        print(f"scheduler: {client.scheduler.address}  dashboard: {client.dashboard_link}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    _main()
