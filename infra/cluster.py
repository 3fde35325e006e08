"""Pick and start a dask cluster; the rest of crofuse only ever sees a ``distributed.Client``.

- ``kind="cuda"``: ``dask_cuda.LocalCUDACluster``, one worker per visible GPU (needs the ``crofuse[gpu]`` extra);
- ``kind="cpu"``: ``distributed.LocalCluster`` with worker *processes* (torch releases the GIL, but separate
  processes keep each worker's model, allocator and OpenMP pool apart);
- ``kind="auto"``: CUDA when a GPU and dask-cuda are both there, CPU otherwise;
- ``address="tcp://host:8786"``: connect to a scheduler someone else runs (dask-jobqueue on SLURM/PBS, dask-kubernetes,
  ``dask scheduler`` by hand). That cluster is never shut down from here.

:class:`ProcessCluster` starts a ``dask scheduler`` and N ``dask worker`` command-line processes, each an
:class:`infra.process.ManagedProcess` and each worker in its own empty working directory: the shape of a cluster
whose machines share no disk, on one machine. Pass its ``scheduler_address`` as ``dask_address``.

Everything binds to 127.0.0.1 by default; set ``host`` to serve workers on other machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from crofuse.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from infra.process import ManagedProcess

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


WORKER_PARENT_DEATH_SIGNAL = signal.SIGKILL
"""What a :class:`ProcessCluster` worker gets from the kernel when the process that started it dies (Linux).

SIGKILL, not :class:`~infra.process.ManagedProcess`'s default SIGTERM: the parent's death signals the scheduler and
every worker at the same instant, so the scheduler's ``close`` message and SIGTERM reach a worker together. ``dask
worker --no-nanny`` answers SIGTERM by returning from its ``asyncio.run``, which cancels every task, including the
``Worker.close()`` the scheduler's message just started; the worker is left ``closing`` and the connection handler's
``finally: await self.close()`` then waits for a close that never finishes, so ``asyncio.run`` never returns and the
worker outlives everyone (distributed 2026.8; ``--death-timeout`` only bounds the start). SIGKILL loses nothing
here: the worker's results live in memory and die with the scheduler anyway, and its scratch space is left as after
any crash. The scheduler keeps SIGTERM (it closes on its own, with nothing to wait for), and :meth:`ProcessCluster.stop`
(the path SIGINT/SIGTERM of the parent take) still stops the workers with SIGTERM first, before the scheduler, so
they close gracefully; a worker that hangs there is killed after its grace period.
"""


def dask_executable() -> str:
    """The ``dask`` CLI of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "dask"
    return str(candidate) if candidate.exists() else "dask"


class ProcessCluster:
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on this machine, as a context manager.

    Every process is an :class:`infra.process.ManagedProcess` (own process group, parent-death signal, SIGTERM then
    SIGKILL on stop); the workers' parent-death signal is SIGKILL (:data:`WORKER_PARENT_DEATH_SIGNAL` says why). Each worker runs in its own empty directory ``<base_dir>/worker-<i>`` (its working directory
    and ``--local-directory``), and is told the scheduler's address, not a shared scheduler file: nothing the
    workers use is on a disk they share, except what a task writes there on purpose.

    Args:
        n_workers: worker processes.
        threads_per_worker: ``--nthreads`` of each worker.
        memory_limit: ``--memory-limit`` of each worker (``"auto"``, ``"2GiB"``...).
        host: interface the scheduler and workers listen on.
        nanny: run each worker under a nanny (restarts it when it dies; one more process per worker). Without one,
            each ``dask worker`` process is the worker, a direct child of this process.
        base_dir: where the scheduler's and the workers' directories go (default: a new temporary directory,
            removed on stop).
        env: environment of the processes (default: this process's).
        ready_timeout: seconds to wait for the scheduler, then for each worker to register.
        hide: folders the workers must not see (Linux, as root): each worker runs in its own mount namespace
            (``unshare -m``) with a private, empty tmpfs mounted over each of them, and with ``CROFUSE_TMPDIR`` in
            its own directory. Pass the client's output and temporary folders to prove that a run shares no disk
            with its workers: a worker that reads or writes there sees only its private tmpfs.
        scheduler_env: extra environment of the scheduler only (e.g. ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES``).

    Example::

        with ProcessCluster(n_workers=2) as cluster, distributed.Client(cluster.scheduler_address) as client:
            client.submit(os.getcwd).result()      # .../worker-0 or .../worker-1
    """

    def __init__(
        self,
        n_workers: int = 2,
        *,
        threads_per_worker: int = 1,
        memory_limit: str = "auto",
        host: str = "127.0.0.1",
        nanny: bool = False,
        base_dir: Path | str | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
        hide: list[Path | str] | tuple[Path | str, ...] = (),
        scheduler_env: dict[str, str] | None = None,
    ) -> None:
        if n_workers < 1:
            raise ConfigError(f"n_workers={n_workers} must be >= 1")
        self.hide = [Path(p).resolve() for p in hide]
        if self.hide:
            check_isolation()
        self.scheduler_env = dict(scheduler_env or {})
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.host = host
        self.nanny = nanny
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.env = env
        self.ready_timeout = ready_timeout
        self.scheduler: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.scheduler_address: str | None = None
        """``tcp://host:port`` of the scheduler once started (pass it as ``dask_address``)."""

    @property
    def worker_dirs(self) -> list[Path]:
        """The working directory of each worker."""
        assert self.base_dir is not None, "start() first"
        return [self.base_dir / f"worker-{i}" for i in range(self.n_workers)]

    def start(self) -> ProcessCluster:
        from infra.process import ManagedProcess

        if self.scheduler is not None and self.scheduler.running:
            return self
        self.workers = []
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="crofuse-dask-"))
        sched_dir = self.base_dir / "scheduler"
        sched_dir.mkdir(parents=True, exist_ok=True)
        sched_file = sched_dir / "scheduler.json"
        sched_file.unlink(missing_ok=True)

        def scheduler_ready() -> bool:
            if not sched_file.exists():
                return False
            self.scheduler_address = json.loads(sched_file.read_text())["address"]  # ValueError while half-written
            return True

        try:
            self.scheduler = ManagedProcess(
                [dask_executable(), "scheduler", "--host", self.host, "--port", "0", "--no-dashboard",
                 "--scheduler-file", str(sched_file)],
                name="dask scheduler", env={**(self.env or os.environ), **self.scheduler_env} if self.scheduler_env
                else self.env, cwd=sched_dir, log_path=sched_dir / "scheduler.log",
                ready=scheduler_ready, ready_timeout=self.ready_timeout,
            )
            self.scheduler.start()
            for i, wdir in enumerate(self.worker_dirs):
                wdir.mkdir(parents=True, exist_ok=True)
                log = self.base_dir / f"worker-{i}.log"  # beside, not inside, the worker's empty directory
                offset = log.stat().st_size if log.exists() else 0
                argv = [dask_executable(), "worker", self.scheduler_address, "--name", f"worker-{i}",
                        "--nthreads", str(self.threads_per_worker), "--nworkers", "1",
                        "--memory-limit", str(self.memory_limit), "--local-directory", str(wdir),
                        "--host", self.host, "--no-dashboard", "--nanny" if self.nanny else "--no-nanny",
                        "--death-timeout", "60"]
                if self.hide:
                    argv = isolated_argv(argv, hide=self.hide, tmpdir=wdir / "tmp")
                worker = ManagedProcess(
                    argv,
                    name=f"dask worker-{i}", env=self.env, cwd=wdir, log_path=log,
                    ready=_log_has(log, offset, "Registered to:"), ready_timeout=self.ready_timeout,
                    parent_death_signal=WORKER_PARENT_DEATH_SIGNAL,
                )
                self.workers.append(worker)
                worker.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the workers, then the scheduler; remove the temporary base directory if it was ours."""
        for worker in reversed(self.workers):
            worker.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._own_base and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> ProcessCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def check_isolation() -> None:
    """Raise :class:`ClusterError` unless workers can get a mount namespace of their own (Linux, root, unshare)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None:
        raise ClusterError("hiding folders from dask workers needs Linux, root and util-linux's unshare "
                           "(a private mount namespace per worker)")


def isolated_argv(argv: list[str], *, hide: list[Path], tmpdir: Path) -> list[str]:
    """``argv`` run in a new mount namespace with an empty tmpfs over each folder of ``hide`` (which must exist)
    and ``CROFUSE_TMPDIR=tmpdir``. ``unshare`` and ``sh`` exec into the command: it keeps the pid (and the
    parent-death signal) of the process :class:`~infra.process.ManagedProcess` started."""
    import shlex

    mounts = " && ".join(f"mount -t tmpfs -o size=64m crofuse-hidden {shlex.quote(str(p))}" for p in hide)
    script = (f"mount --make-rprivate / && {mounts} && mkdir -p {shlex.quote(str(tmpdir))} && "
              f"export CROFUSE_TMPDIR={shlex.quote(str(tmpdir))} && exec \"$@\"")
    return ["unshare", "-m", "sh", "-c", script, "sh", *argv]


def _log_has(path: Path, offset: int, text: str):
    """A readiness check: ``text`` appeared in ``path`` after byte ``offset``."""

    def check() -> bool:
        with open(path, "rb") as log:
            log.seek(offset)
            return text in log.read().decode(errors="replace")

    return check


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
    from infra.process import Interrupted, stop_on_signals

    try:
        with stop_on_signals(), dask_client(config) as client:
            print(f"scheduler: {client.scheduler.address}  dashboard: {client.dashboard_link}", flush=True)
            while True:
                time.sleep(3600)
    except Interrupted:  # Ctrl-C or SIGTERM: the cluster is closed by now
        pass


if __name__ == "__main__":  # pragma: no cover
    _main()
