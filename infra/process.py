"""One owner for every service process crofuse starts: :class:`ManagedProcess`.

``rustac serve`` (:mod:`infra.stac`), ``prefect server start`` and ``prefect worker start``
(:mod:`infra.prefect_server`), ``dask scheduler`` and ``dask worker`` (:class:`infra.cluster.ProcessCluster`) and an
S3-compatible test server all start, wait and stop the same way:

- **start** in a new session (its own process group), stdin closed, stdout and stderr into one log file;
- **parent-death signal** (Linux): the child runs ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` between fork and exec, so the
  kernel sends it SIGTERM when the process that started it dies, even by SIGKILL (where no Python cleanup runs);
  ``parent_death_signal`` picks another signal for a service whose own SIGTERM handling cannot be trusted when
  everything around it dies at once (:class:`~infra.cluster.ProcessCluster`'s dask workers get SIGKILL: see
  :data:`infra.cluster.WORKER_PARENT_DEATH_SIGNAL`);
- **readiness**: ``ready()`` is polled until it returns True, the child exits, or the deadline passes; both failures
  raise :class:`~crofuse.errors.ServiceError` with the exit code and the last lines of the log;
- **stop**: SIGTERM to the process group, wait up to ``grace`` seconds, then SIGTERM to whatever is left of the
  group and of the child's descendants (Prefect starts flow runs in sessions of their own, outside the group), then
  SIGKILL; every wait has a deadline, and the child is reaped;
- a context manager; :func:`stop_on_signals` turns SIGTERM into the same exception as Ctrl-C for the foreground
  commands that run a service (``crofuse sample-catalog serve``, ``python -m infra.cluster``, the flow entry points),
  so SIGTERM from CI, systemd or Kubernetes runs the same cleanup as Ctrl-C.

Any command-line server fits; for example an S3 server and a dask scheduler::

    port = free_port()
    with ManagedProcess(["moto_server", "-H", "127.0.0.1", "-p", str(port)], name="moto_server",
                        ready=tcp_ready("127.0.0.1", port)) as s3:
        ...  # s3.pid, s3.log_tail()

    with ManagedProcess(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                        name="dask scheduler", ready=tcp_ready("127.0.0.1", port)):
        ...

**Limits of the parent-death signal.** It is Linux-only (``prctl``). Linux delivers it when the *thread* that started
the child exits, not the process: start services from a thread that lives as long as you need them (the main
thread). It is not inherited by grandchildren: a service's own children stop when the service stops them (Prefect's
worker stops its flow runs on SIGTERM, and :class:`~infra.prefect_server.ProcessWorker`'s shutdown watchdog kills
them if it does not within ``shutdown_seconds``; rustac, the Prefect server, ``dask scheduler`` and ``dask worker --no-nanny``
have none; a nanny's worker exits when the nanny's end of their pipe closes). **Elsewhere (macOS, BSD)** there is no parent-death signal: the child still gets its own session, and is
stopped by the context manager, by :func:`stop_on_signals` on SIGINT/SIGTERM, and by an ``atexit`` hook on a normal
interpreter exit; only a SIGKILLed parent leaves it running there, so run long-lived services under a supervisor
(launchd, systemd, Kubernetes) on those systems.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType

import psutil

from crofuse.errors import ServiceError

PDEATHSIG_SUPPORTED = sys.platform.startswith("linux")
"""Whether the parent-death signal is available here (Linux ``prctl(PR_SET_PDEATHSIG)``)."""

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

NOT_READY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # connection refused/reset, urllib.error.URLError, socket timeouts
    ValueError,  # half-written JSON answers (json.JSONDecodeError)
    KeyError,
)
"""Exceptions a readiness check may raise while the service is still starting; they mean "not ready yet"."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on ``host:port`` (a server could bind it now; TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def tcp_ready(host: str, port: int, *, timeout: float = 1.0) -> Callable[[], bool]:
    """A readiness check: ``host:port`` accepts TCP connections."""

    def check() -> bool:
        with socket.create_connection((host, port), timeout=timeout):
            return True

    return check


def http_ready(url: str, *, timeout: float = 2.0) -> Callable[[], bool]:
    """A readiness check: ``GET url`` answers with a 2xx status."""

    def check() -> bool:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback services)
            return 200 <= resp.status < 300

    return check


def _parent_death_hook(sig: int, parent_pid: int) -> Callable[[], None]:
    """The ``preexec_fn`` that asks Linux to send ``sig`` to the child when its parent dies.

    ``prctl`` is looked up here, in the parent, so the child (between fork and exec) only makes the system call. If
    the parent died before the call took effect, the child is reparented already: it signals itself.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def hook() -> None:
        if prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            os._exit(126)  # exec would start a service nobody can stop if we die: refuse
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)

    return hook


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_all(procs: Sequence[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(sig)  # psutil checks the pid still names the same process (no pid-reuse accidents)


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process in ``procs`` is gone or a zombie; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


_RUNNING: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:  # pragma: no cover - runs at interpreter exit
    for proc in list(_RUNNING):
        with contextlib.suppress(Exception):
            proc.stop()


class ManagedProcess:
    """A service process: own session, parent-death signal, readiness deadline, group stop. A context manager.

    Args:
        argv: the command (``argv[0]`` is looked up on ``PATH`` as usual).
        name: what error messages call it (default ``argv[0]``'s file name).
        env: the child's whole environment (default: this process's).
        cwd: its working directory.
        log_path: file for its stdout and stderr (appended); default a temporary file deleted by :meth:`stop`.
        ready: polled until it returns True; exceptions in :data:`NOT_READY_ERRORS` mean "not yet". None: ready once
            started.
        ready_timeout: seconds to wait for ``ready``.
        grace: seconds between SIGTERM and SIGKILL on :meth:`stop`.
        parent_death_signal: signal the child gets when its parent dies (Linux); None turns it off.
        poll_interval: seconds between readiness checks.

    >>> with ManagedProcess(["sleep", "60"], name="sleeper") as proc:  # doctest: +SKIP
    ...     assert proc.running
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        log_path: Path | str | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 60.0,
        grace: float = 10.0,
        parent_death_signal: int | None = signal.SIGTERM,
        poll_interval: float = 0.1,
    ) -> None:
        self.argv = [os.fspath(a) for a in argv]
        if not self.argv:
            raise ValueError("ManagedProcess needs a command")
        self.name = name or Path(self.argv[0]).name
        self.env = dict(env) if env is not None else None
        self.cwd = Path(cwd) if cwd is not None else None
        self.log_path = Path(log_path) if log_path is not None else None
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.grace = grace
        self.parent_death_signal = parent_death_signal if PDEATHSIG_SUPPORTED else None
        self.poll_interval = poll_interval
        self.stopped_pids: list[int] = []
        """The processes the last :meth:`stop` found and stopped (the child and its descendants)."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._temp_log: Path | None = None

    # -- state -------------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def descendants(self) -> list[psutil.Process]:
        """The child's descendants now, whatever their process group or session."""
        if self._proc is None:
            return []
        try:
            return psutil.Process(self._proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the child's output."""
        path = self.log_path or self._temp_log
        if path is None:
            return "(not started)"
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def _describe_log(self) -> str:
        where = f" ({self.log_path})" if self.log_path else ""
        return f"Last lines of its output (stdout and stderr){where}:\n{self.log_tail()}"

    # -- start -------------------------------------------------------------------------------------------------
    def start(self) -> ManagedProcess:
        """Start the child and wait until it is ready; raises :class:`ServiceError` (child stopped) if it is not."""
        if self.running:
            return self
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # noqa: SIM115 (closed below; the child keeps its copy)
        else:
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(self.argv[0]).name)[:40]
            fd, temp = tempfile.mkstemp(prefix=f"crofuse-{stem}-", suffix=".log")
            self._temp_log = Path(temp)
            log = os.fdopen(fd, "ab")
        preexec = None
        if self.parent_death_signal is not None:
            preexec = _parent_death_hook(int(self.parent_death_signal), os.getpid())
        try:
            self._proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 (only a prctl system call; see _parent_death_hook)
            )
        except OSError as exc:
            self._remove_temp_log()
            raise ServiceError(f"could not start {self.name} ({' '.join(self.argv)}): {exc}") from exc
        finally:
            log.close()
        _RUNNING.add(self)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll ``ready`` until it is True; :class:`ServiceError` if the child exits or the deadline passes."""
        if self.ready is None:
            return
        assert self._proc is not None, "start() first"
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServiceError(
                    f"{self.name} exited with code {code} before it was ready ({' '.join(self.argv)}). "
                    f"{self._describe_log()}"
                )
            try:
                if self.ready():
                    return
                last = "the readiness check said no"
            except NOT_READY_ERRORS as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"{self.name} was not ready within {timeout:.0f} s ({last}); it may need a longer timeout on a "
                    f"busy machine. {self._describe_log()}"
                )
            time.sleep(self.poll_interval)

    # -- stop --------------------------------------------------------------------------------------------------
    def stop(self, grace: float | None = None) -> int | None:
        """Stop the child, its process group and its descendants; reap it. Returns its exit code (None if never
        started). Safe to call twice, and after the child died on its own."""
        proc = self._proc
        if proc is None:
            return None
        grace = self.grace if grace is None else grace
        pgid = proc.pid  # start_new_session: the child leads its own group
        try:
            leader = psutil.Process(proc.pid)
            tree = [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            leader, tree = None, []
        self.stopped_pids = [p.pid for p in tree]

        def signal_group(sig: int) -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)

        if proc.poll() is None:
            signal_group(signal.SIGTERM)  # the service's own shutdown stops what it started
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        # whatever it left: the rest of its group, descendants in other sessions, a leader that ignored SIGTERM
        with contextlib.suppress(psutil.NoSuchProcess):
            if leader is not None and _alive(leader):
                tree += [p for p in leader.children(recursive=True) if p not in tree]
        left = [p for p in tree if _alive(p)]
        if left:
            signal_group(signal.SIGTERM)
            _signal_all(left, signal.SIGTERM)
            left = _wait_gone(left, min(5.0, grace))
        signal_group(signal.SIGKILL)  # members of the group we never saw (reparented grandchildren)
        _signal_all(left, signal.SIGKILL)
        _wait_gone(left, 5.0)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        _RUNNING.discard(self)
        self._remove_temp_log()
        return proc.returncode

    def _remove_temp_log(self) -> None:
        if self._temp_log is not None:
            with contextlib.suppress(FileNotFoundError):
                self._temp_log.unlink()

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exit {self.returncode}" if self._proc else "not started"
        return f"ManagedProcess({self.name!r}, pid={self.pid}, {state})"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (raised by :func:`stop_on_signals`). A ``KeyboardInterrupt``, so every cleanup
    written for Ctrl-C runs for SIGTERM too. ``exit_code`` is the shell's ``128 + signal``."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"received {signal.Signals(self.signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Raise :class:`Interrupted` in the main thread on the first of ``signals``; ignore repeats while the cleanup
    runs (every stop is bounded), then restore the previous handlers. Outside the main thread it does nothing.

    For the foreground commands that run services::

        try:
            with stop_on_signals(), StacServer(root) as server:
                wait_forever()
        except Interrupted:
            print("stopped")          # the server is stopped by now
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


__all__ = [
    "NOT_READY_ERRORS",
    "PDEATHSIG_SUPPORTED",
    "Interrupted",
    "ManagedProcess",
    "free_port",
    "http_ready",
    "port_is_free",
    "stop_on_signals",
    "tcp_ready",
]
