"""Every service we start stops with its children: on stop, on SIGINT/SIGTERM of the command that runs it, when the
service itself is SIGTERMed or SIGKILLed, and when its parent is SIGKILLed (parent-death signal, Linux).

Services: ``rustac serve`` (STAC API), the Prefect server and worker, ``dask scheduler`` / ``dask worker`` processes,
all started through :class:`infra.process.ManagedProcess`. After each scenario the test checks with psutil that no
process of the service's tree is left and that its port can be bound again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from crofuse.errors import ServiceError
from infra.process import PDEATHSIG_SUPPORTED, ManagedProcess, free_port, port_is_free

REPO = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not PDEATHSIG_SUPPORTED, reason="the parent-death signal is Linux-only (prctl)")


# -- helpers -------------------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _survivors(pids: list[int], timeout: float) -> list[str]:
    """Wait until none of ``pids`` runs (zombies count as gone); returns a description of those still running."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if _alive(p)]
    out = []
    for pid in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:160]}")
    return out


def _diagnose(survivors: list[str], logs: Path | None = None) -> str:
    """What a failed "no survivor" check prints: each survivor's state and children, and the services' log tails."""
    out = []
    for line in survivors:
        pid = int(line.split(":", 1)[0])
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            kids = [f"{c.pid} {' '.join(c.cmdline())[:80]}" for c in proc.children(recursive=True)]
            out.append(f"{line}\n  status={proc.status()} ppid={proc.ppid()} threads={proc.num_threads()} "
                       f"children={kids}")
    if logs is not None and logs.is_dir():
        for log in sorted(logs.rglob("*.log")):
            records = [ln for ln in log.read_text(errors="replace").splitlines() if ln[:4].isdigit()]  # no tracebacks
            out.append(f"--- {log.relative_to(logs)} (last records)\n" + "\n".join(records[-10:]))
    return "\n".join(out)


def _tree(pid: int) -> list[int]:
    proc = psutil.Process(pid)
    return [pid, *(c.pid for c in proc.children(recursive=True))]


def _port_released(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not port_is_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 km, one-year sample catalog (a few seconds to build): enough for rustac to serve."""
    from tests.fixtures.cube import build_small_catalog

    return build_small_catalog(tmp_path_factory.mktemp("tiny-catalog"))


# -- ManagedProcess itself (no services; fast) ---------------------------------------------------------------------
FAMILY = textwrap.dedent(
    """
    import subprocess, sys, time
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    same_group = subprocess.Popen(sleep)
    own_session = subprocess.Popen(sleep, start_new_session=True)   # as Prefect starts flow runs
    print("children", same_group.pid, own_session.pid, flush=True)
    time.sleep(600)
    """
)


def test_stop_takes_the_group_and_descendants_in_other_sessions(tmp_path: Path) -> None:
    log = tmp_path / "family.log"
    proc = ManagedProcess(
        [sys.executable, "-c", FAMILY], name="family", log_path=log, ready=lambda: "children" in log.read_text(),
        ready_timeout=30,
    )
    with proc:
        tree = _tree(proc.pid)
        assert len(tree) == 3, proc.log_tail()
        sessions = {os.getsid(pid) for pid in tree}
        assert len(sessions) == 2, "one grandchild runs in a session of its own"
    try:
        assert not proc.running
        assert set(proc.stopped_pids) == set(tree)
        assert _survivors(tree, 10) == []
    finally:
        _kill_all(tree)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    proc = ManagedProcess([sys.executable, "-c", code], name="stubborn", grace=1.0)
    proc.start()
    pid = proc.pid
    deadline = time.monotonic() + 20
    while "up" not in proc.log_tail() and time.monotonic() < deadline:  # SIG_IGN is installed once it printed
        time.sleep(0.05)
    started = time.monotonic()
    try:
        code_ = proc.stop()
        assert code_ == -signal.SIGKILL
        assert time.monotonic() - started < 15  # grace 1 s + bounded waits, not forever
        assert _survivors([pid], 5) == []
    finally:
        _kill_all([pid])


def test_readiness_deadline_and_early_exit_report_the_log_tail() -> None:
    waiting = ManagedProcess(
        [sys.executable, "-c", "print('marker-1234', flush=True); import time; time.sleep(600)"],
        name="never-ready", ready=lambda: False, ready_timeout=1.0,
    )
    with pytest.raises(ServiceError, match=r"(?s)never-ready was not ready within 1 s.*marker-1234"):
        waiting.start()
    assert not waiting.running and _survivors([waiting.pid], 5) == []

    failing = ManagedProcess(
        [sys.executable, "-c", "print('boom-5678', flush=True); raise SystemExit(3)"],
        name="failing", ready=lambda: False, ready_timeout=30,
    )
    with pytest.raises(ServiceError, match=r"(?s)failing exited with code 3 before it was ready.*boom-5678"):
        failing.start()

    with pytest.raises(ServiceError, match="could not start"):
        ManagedProcess([str(REPO / "no-such-command")], ready=lambda: True).start()


PARENT = textwrap.dedent(
    """
    import signal, sys, time
    from infra.process import ManagedProcess
    sig = signal.SIGTERM if sys.argv[1] == "on" else None
    child = ManagedProcess([sys.executable, "-c", "import time; time.sleep(600)"], parent_death_signal=sig).start()
    print(child.pid, flush=True)
    time.sleep(600)
    """
)


@linux_only
@pytest.mark.parametrize("pdeathsig", ["on", "off"])
def test_children_die_with_a_sigkilled_parent(pdeathsig: str) -> None:
    """With the parent-death signal the child dies with its SIGKILLed parent; without it (the control) it lives."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, pdeathsig], stdout=subprocess.PIPE, text=True, env=_env()
    )
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(timeout=10)
        if pdeathsig == "on":
            assert _survivors([child], 10) == []
        else:
            time.sleep(1.0)
            assert _alive(child), "the control: without the signal the orphan keeps running"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if child is not None:
            _kill_all([child])


# -- crofuse sample-catalog serve: SIGTERM (fault report 1) ----------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_rustac_on_sigterm_and_sigint(tiny_catalog: Path, sig: int) -> None:
    """`crofuse sample-catalog serve` exits 0 on SIGTERM (CI, systemd, Kubernetes) as on Ctrl-C, and rustac with
    it: before the fix SIGTERM killed the command and left rustac running with its port bound."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crofuse_cli", "sample-catalog", "serve", str(tiny_catalog), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
    )
    tree: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        lines = []
        while not any("STAC API at" in line for line in lines):  # readline returns at the announcement or at EOF
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"serve exited before announcing its URL: {''.join(lines)}"
            lines.append(line)
        tree = _tree(proc.pid)
        assert len(tree) == 2, "the command and rustac"
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        rest = proc.stdout.read()
        assert "stopped" in rest
        assert _survivors(tree, 10) == [], "rustac outlived `serve`"
        assert _port_released(port), f"port {port} is still bound"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        _kill_all(tree)


# -- each service, signalled directly ------------------------------------------------------------------------------
@contextlib.contextmanager
def _rustac(catalog: Path) -> Iterator[tuple[ManagedProcess, int]]:
    from infra.stac import StacServer

    with StacServer(catalog) as server:
        assert server.process is not None and server.port is not None
        yield server.process, server.port


@contextlib.contextmanager
def _dask(part: str) -> Iterator[tuple[ManagedProcess, int]]:
    from infra.cluster import ProcessCluster

    with ProcessCluster(n_workers=1) as cluster:
        assert cluster.scheduler is not None and cluster.scheduler_address is not None
        if part == "scheduler":
            yield cluster.scheduler, int(cluster.scheduler_address.rsplit(":", 1)[1])
        else:
            (worker,) = cluster.workers
            ports = [c.laddr.port for c in psutil.Process(worker.pid).net_connections() if c.status == "LISTEN"]
            yield worker, ports[0]


SERVICES = ["rustac", "dask-scheduler", "dask-worker"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("service", SERVICES)
def test_a_signalled_service_leaves_no_process_and_no_port(service: str, sig: int, tiny_catalog: Path) -> None:
    ctx = _rustac(tiny_catalog) if service == "rustac" else _dask(service.split("-")[1])
    with ctx as (proc, port):
        tree = _tree(proc.pid)
        assert not port_is_free(port), "the service listens"
        os.kill(proc.pid, sig)
        deadline = time.monotonic() + 30
        while proc.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proc.running, f"{service} did not exit on {signal.Signals(sig).name}"
    try:
        assert _survivors(tree, 10) == []
        assert _port_released(port), f"port {port} of {service} is still bound"
    finally:
        _kill_all(tree)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_signalled_prefect_worker_and_server_leave_nothing(tmp_path: Path, sig: int) -> None:
    from infra.prefect_server import PrefectServer, ProcessWorker

    with PrefectServer(tmp_path / "home", startup_timeout=240) as server:
        assert server.process is not None and server.port is not None
        with ProcessWorker(server, poll_seconds=1) as worker:
            assert worker.process is not None
            worker_tree = _tree(worker.process.pid)
            os.kill(worker.process.pid, sig)
            deadline = time.monotonic() + 40
            while worker.running and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not worker.running
        assert _survivors(worker_tree, 10) == []
        server_tree = _tree(server.process.pid)
        os.kill(server.process.pid, sig)
        deadline = time.monotonic() + 40
        while server.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not server.running
    try:
        assert _survivors(server_tree, 10) == []
        assert _port_released(server.port)
    finally:
        _kill_all(worker_tree + server_tree)


# -- each service, parent SIGKILLed (parent-death signal) ----------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import psutil
    service, arg = sys.argv[1], Path(sys.argv[2])
    procs, ports = [], []
    if service == "rustac":
        from infra.stac import StacServer
        s = StacServer(arg).start()
        procs, ports = [s.process], [s.port]
    elif service == "dask":
        from infra.cluster import ProcessCluster
        c = ProcessCluster(n_workers=2, base_dir=arg).start()
        procs, ports = [c.scheduler, *c.workers], [int(c.scheduler_address.rsplit(":", 1)[1])]
    else:
        from infra.prefect_server import PrefectServer, ProcessWorker
        s = PrefectServer(arg, startup_timeout=240).start()
        w = ProcessWorker(s, poll_seconds=1).start()
        procs, ports = [s.process, w.process], [s.port]
    pids = [q.pid for p in procs for q in [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]]
    print(json.dumps({"pids": pids, "ports": ports}), flush=True)
    time.sleep(600)
    """
)


@linux_only
@pytest.mark.parametrize("service", ["rustac", "dask", pytest.param("prefect", marks=pytest.mark.slow)])
def test_services_die_with_their_sigkilled_parent(service: str, tiny_catalog: Path, tmp_path: Path) -> None:
    """SIGKILL leaves the parent no time to clean up: the parent-death signal stops rustac, the dask scheduler and
    workers, the Prefect server and worker anyway, and their ports are released."""
    arg = tiny_catalog if service == "rustac" else tmp_path / service
    parent = subprocess.Popen(
        [sys.executable, "-c", HOLDER, service, str(arg)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    started: dict = {"pids": [], "ports": []}
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # the holder prints once everything is ready (bounded by its timeouts)
        assert line, f"the {service} holder exited with {parent.wait(timeout=30)} before starting it"
        started = json.loads(line)
        assert all(not port_is_free(p) for p in started["ports"])
        parent.kill()
        parent.wait(timeout=10)
        left = _survivors(started["pids"], 30)
        assert left == [], _diagnose(left, arg if service != "rustac" else None)
        for port in started["ports"]:
            assert _port_released(port), f"port {port} is still bound"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        _kill_all(started["pids"])
