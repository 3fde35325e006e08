"""Prefect runs that lose their process end Crashed, not RUNNING forever; direct runs leave no Prefect server behind.

- a deployment run whose worker and flow-run process are SIGKILLed together (the machine is lost) is marked Crashed
  by the heartbeat automation of ``prefect.yaml`` (here with a 45 s window and 30 s heartbeats, Prefect's minimum);
- stopping the worker (SIGTERM) while a run runs marks the run Crashed at once;
- a SIGKILLed ``python -m flows.map_city`` leaves no Prefect server process (parent-death signal);
- ``python -m flows.map_city`` / ``python -m flows.remap`` without arguments print a usage message, exit code 2.

The deployments here run :func:`hold`, a flow that waits, so a kill lands mid-run on any machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prefect import flow

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = f"{Path(__file__).resolve().relative_to(REPO).as_posix()}:hold"
HEARTBEAT = 30  # Prefect's minimum
WINDOW = 45  # the automation's `within` in these tests (prefect.yaml: 600 s)


@flow(name="hold")
def hold(seconds: float = 600.0, pidfile: str = "") -> int:
    """Write this process's pid to ``pidfile``, then wait ``seconds``."""
    if pidfile:
        tmp = Path(f"{pidfile}.tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(pidfile)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
    return os.getpid()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(what: str, check, timeout: float, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll)


# -- direct entry points -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["flows.map_city", "flows.remap"])
def test_direct_entry_points_print_usage(module: str) -> None:
    """Fault report 3: `python -m flows.map_city` with no arguments died with an IndexError."""
    proc = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, timeout=120, env=_env(), cwd=REPO
    )
    assert proc.returncode == 2, proc.stderr
    assert f"usage: python -m {module}" in proc.stderr
    assert "Traceback" not in proc.stderr and "IndexError" not in proc.stderr


def test_direct_entry_point_refuses_bad_parameters_before_starting_a_server(tmp_path: Path) -> None:
    env = _env()
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-m", "flows.map_city", "wuhan", "1999"], capture_output=True, text=True, timeout=120,
        env=env, cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert "error: Flow run received invalid parameters" in proc.stderr and "2015" in proc.stderr
    assert "Traceback" not in proc.stderr
    home = tmp_path / "home"
    assert not (home / "server.log").exists() and not (home / "prefect.db").exists(), "no server, no run recorded"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_direct_run_leaves_no_prefect_server(tmp_path: Path, sig: int) -> None:
    """Fault report 2: each SIGKILLed `python -m flows.map_city` orphaned Prefect's temporary API server. Now the
    run reports to a server we start with a parent-death signal, which dies with it. On SIGTERM the run is marked
    Crashed first, and the command exits 143."""
    from infra.process import free_port

    checkpoint = tmp_path / "checkpoint.safetensors"
    checkpoint.write_bytes(b"not read: the run waits on the unreachable catalog first")
    env = _env()
    env.pop("PREFECT_API_URL", None)
    env.update({"PREFECT_HOME": str(tmp_path / "home"), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    log = tmp_path / "run.log"
    catalog = f"http://127.0.0.1:{free_port()}"  # nobody listens: the AOI lookup retries (2, 10, 30 s)
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "flows.map_city", "wuhan", "2021", "--catalog", catalog,
             "--checkpoint", str(checkpoint), "--output", str(tmp_path / "maps"), "--dask-address", "in-process"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )
    descendants: list[psutil.Process] = []
    try:
        _wait_for(
            "the flow run started", lambda: "Beginning flow run" in log.read_text() or run.poll() is not None, 240
        )
        assert run.poll() is None, log.read_text()[-3000:]
        descendants = psutil.Process(run.pid).children(recursive=True)
        servers = [p for p in descendants if "server" in " ".join(p.cmdline()) or "uvicorn" in " ".join(p.cmdline())]
        assert servers, f"no Prefect server among the run's processes: {[p.cmdline() for p in descendants]}"
        run.send_signal(sig)
        code = run.wait(timeout=60)
        deadline = time.monotonic() + 30
        while (left := [p for p in descendants if _alive(p.pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], f"processes outlived the killed run: {[' '.join(p.cmdline())[:120] for p in left]}"
        if sig == signal.SIGTERM:
            text = log.read_text()
            assert code == 143, text[-3000:]
            assert "Finished in state Crashed" in text, "the run was marked Crashed while its server still ran"
    finally:
        run.kill()
        run.wait(timeout=10)
        for proc in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


# -- deployments ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zombie_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A Prefect server with the ``hold`` deployment and prefect.yaml's zombie automation (45 s window)."""
    from infra.prefect_server import PrefectServer, deploy, ensure_automations

    home = tmp_path_factory.mktemp("zombie-home")
    spec = home / "prefect.yaml"
    spec.write_text(
        "name: crofuse-reliability\nprefect-version: 3.9.1\nbuild: null\npush: null\n"
        f"pull:\n  - prefect.deployments.steps.set_working_directory:\n      directory: {REPO}\n"
        f"deployments:\n  - name: hold\n    entrypoint: {ENTRYPOINT}\n    work_pool:\n      name: crofuse-process\n"
    )
    with PrefectServer(home, startup_timeout=240) as server:
        deploy(server, cwd=REPO, prefect_file=spec)
        ensure_automations(server)  # prefect.yaml's automation, as deploy() creates it for the real deployments
        ensure_automations(server, within_seconds=WINDOW)  # the same, updated in place with a test-sized window
        yield server


def _start_hold(server, worker, tmp_path: Path) -> tuple[str, int]:
    """Run the hold deployment; returns (flow run id, flow-run process pid) once it runs and has sent a heartbeat."""
    from infra.prefect_server import read_flow_run, run_deployment

    pidfile = tmp_path / "hold.pid"
    run_id = run_deployment(server, "hold/hold", parameters={"pidfile": str(pidfile)}, cwd=REPO)
    pid = int(_wait_for("the hold flow wrote its pid", lambda: pidfile.exists() and pidfile.read_text(), 180))
    assert psutil.Process(pid) in psutil.Process(worker.process.pid).children(recursive=True)
    assert read_flow_run(server, run_id).state.is_running()
    _wait_for("a heartbeat of the run reached the server", lambda: _heartbeats(server, run_id), 60)
    return run_id, pid


def _heartbeats(server, run_id: str) -> int:
    import httpx

    body = {
        "filter": {"event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": [f"prefect.flow-run.{run_id}"]}},
        "limit": 5,
    }
    resp = httpx.post(f"{server.api_url}/events/filter", json=body, timeout=10)
    resp.raise_for_status()
    return len(resp.json()["events"])


@pytest.mark.slow
def test_a_run_whose_worker_and_process_are_killed_ends_crashed(zombie_server, tmp_path: Path) -> None:
    """Fault report 2: a run that lost its process stayed RUNNING forever. SIGKILL the worker and the flow-run
    process together (a lost machine: nobody is left to report a state); the heartbeat automation marks it Crashed."""
    from infra.prefect_server import ProcessWorker, read_flow_run

    worker = ProcessWorker(zombie_server, poll_seconds=1, heartbeat_seconds=HEARTBEAT, cwd=REPO, log_path=tmp_path / "w.log")
    with worker:
        run_id, pid = _start_hold(zombie_server, worker, tmp_path)
        worker_pid = worker.process.pid
        os.killpg(worker_pid, signal.SIGKILL)  # the worker's group, and the run's own session
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        killed = time.monotonic()
        assert read_flow_run(zombie_server, run_id).state.is_running(), "nobody reported the kill"
        run = _wait_for(
            "the zombie run is marked Crashed",
            lambda: (r := read_flow_run(zombie_server, run_id)).state.is_final() and r,
            WINDOW + 2 * HEARTBEAT + 30,
            poll=2,
        )
        waited = time.monotonic() - killed
    assert run.state.is_crashed(), f"{run.state.name}: {run.state.message}"
    assert "heartbeat" in (run.state.message or "")
    assert worker.crashed_runs == [], "the worker was dead: the automation, not the worker, marked the run"
    print(f"zombie run Crashed {waited:.0f} s after the kill (window {WINDOW} s, heartbeats every {HEARTBEAT} s)")


@pytest.mark.slow
def test_stopping_the_worker_crashes_its_running_run(zombie_server, tmp_path: Path) -> None:
    """Prefect's worker stops its flow runs on SIGTERM but leaves them RUNNING; ProcessWorker.stop marks them
    Crashed at once, and no flow-run process survives."""
    from infra.prefect_server import ProcessWorker, read_flow_run

    worker = ProcessWorker(zombie_server, poll_seconds=1, heartbeat_seconds=HEARTBEAT, cwd=REPO, log_path=tmp_path / "w.log")
    with worker:
        run_id, pid = _start_hold(zombie_server, worker, tmp_path)
    assert not _alive(pid)
    assert worker.crashed_runs == [run_id]
    run = read_flow_run(zombie_server, run_id)
    assert run.state.is_crashed(), f"{run.state.name}: {run.state.message}"
    assert worker.name in (run.state.message or "")


def test_ensure_automations_is_idempotent(zombie_server) -> None:
    """The fixture created the automation twice (once with the test window): there is one, with that window."""
    import asyncio

    from prefect.client.orchestration import PrefectClient

    from infra.prefect_server import ZOMBIE_AUTOMATION

    async def read():
        async with PrefectClient(api=zombie_server.api_url) as client:
            return await client.read_automations_by_name(ZOMBIE_AUTOMATION)

    (automation,) = asyncio.run(read())
    assert automation.enabled and automation.trigger.within.total_seconds() == WINDOW


def test_prefect_yaml_automation_outlasts_heartbeats(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The zombie automation must not crash live runs: its window covers 3 heartbeats at our period and at
    Prefect's default; and the heartbeat setting we give workers is a real Prefect setting."""
    from prefect.client.schemas.objects import StateType
    from prefect.settings import Settings
    from prefect.settings.models.flows import FlowsSettings

    from infra.prefect_server import HEARTBEAT_SECONDS, ZOMBIE_AUTOMATION, PrefectServer, ProcessWorker, load_automations

    (automation,) = load_automations()
    assert automation.name == ZOMBIE_AUTOMATION and automation.enabled
    trigger = automation.trigger
    assert trigger.posture == "Proactive" and trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.for_each == {"prefect.resource.id"}
    prefect_default = FlowsSettings.model_fields["heartbeat_frequency"].default
    assert trigger.within.total_seconds() >= 3 * max(HEARTBEAT_SECONDS, prefect_default)
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state == StateType.CRASHED

    env = ProcessWorker(PrefectServer(tmp_path, port=1)).environment()
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    assert Settings().flows.heartbeat_frequency == HEARTBEAT_SECONDS
