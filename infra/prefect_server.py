"""A real Prefect server and process worker on loopback, started and stopped as context managers.

Used by ``make demo`` (:mod:`infra.demo`), by the direct entry points ``python -m flows.map_city`` and
``python -m flows.remap`` (:func:`prefect_api_for_run`) and by the tests. The server keeps its SQLite database under
the given ``PREFECT_HOME``; every process started here gets :func:`offline_environment`, which turns off analytics,
telemetry, the UI and anything else that would try to reach the internet.

    with PrefectServer(home=Path(".prefect")) as server, ProcessWorker(server, pool="crofuse-process", cwd=repo):
        deploy(server)                  # prefect.yaml's deployments and its zombie automation

Both run as :class:`infra.process.ManagedProcess`: their own process group, a parent-death signal (they get SIGTERM
when the process that started them dies, even by SIGKILL), SIGTERM then SIGKILL on stop.

**Zombie flow runs.** A flow run whose process dies without reporting a final state (machine lost, worker and run
killed together) would stay RUNNING forever. Two layers mark it Crashed instead:

1. heartbeats: the worker gives its flow runs ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` (:data:`HEARTBEAT_SECONDS`;
   the older name ``PREFECT_RUNNER_HEARTBEAT_FREQUENCY`` is an alias), and the automation in ``prefect.yaml``
   (``automations:``, created by :func:`deploy` / :func:`ensure_automations`) changes a run to CRASHED when no event
   of it follows a heartbeat within its ``within`` window (Prefect 3 "Detect zombie flows");
2. :meth:`ProcessWorker.stop` marks Crashed, at once, the runs whose processes it stopped with the worker (Prefect's
   worker stops them on SIGTERM but leaves them RUNNING on the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from crofuse.errors import ServiceError
from infra.process import ManagedProcess, free_port, http_ready

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository root (where ``prefect.yaml`` lives); deployments run flows from here."""

DEFAULT_POOL = "crofuse-process"
"""The work pool named in ``prefect.yaml``."""

OFFLINE_SETTINGS: dict[str, str] = {
    "DO_NOT_TRACK": "1",  # client-side SDK telemetry (prefect._internal.analytics)
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # server-side usage analytics
    "PREFECT_SERVER_UI_ENABLED": "false",  # no UI: nothing to serve, and the UI fetches remote assets
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    "PREFECT_SERVER_METRICS_ENABLED": "false",
    "PREFECT_CLIENT_METRICS_ENABLED": "false",
    "PREFECT_API_ENABLE_HTTP2": "false",
    "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",  # never wait for a keyboard
    "PREFECT_PLUGINS_ENABLED": "false",
    "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false",
    "PREFECT_EXPERIMENTS_WARN": "false",
}
"""Settings (environment variables, prefect 3.9 names) that keep Prefect off the network."""

HEARTBEAT_SECONDS = 60
"""Seconds between flow-run heartbeats of our workers' flow runs (Prefect's minimum is 30, its default 180)."""

PREFECT_YAML = REPO_ROOT / "prefect.yaml"
"""The deployments and the zombie automation."""

ZOMBIE_AUTOMATION = "crofuse-crash-zombie-flow-runs"
"""Name of the automation in ``prefect.yaml`` that marks flow runs whose heartbeats stopped as Crashed."""

_T = TypeVar("_T")


def _run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def offline_environment(home: Path, *, api_url: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for Prefect processes: ``base`` (default ``os.environ``) + :data:`OFFLINE_SETTINGS`.

    Args:
        home: ``PREFECT_HOME`` (SQLite database, profiles, local result storage).
        api_url: ``PREFECT_API_URL`` of a running server; None removes any inherited one.
        base: environment to start from.
    """
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_SETTINGS)
    env["PREFECT_HOME"] = str(Path(home).resolve())
    env["CROFUSE_ROOT"] = env.get("CROFUSE_ROOT", str(REPO_ROOT))
    if api_url is None:
        env.pop("PREFECT_API_URL", None)
    else:
        env["PREFECT_API_URL"] = api_url
    return env


def prefect_executable() -> str:
    """The ``prefect`` CLI of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "prefect"
    return str(candidate) if candidate.exists() else "prefect"


class PrefectServer:
    """``prefect server start`` on loopback with SQLite under ``home``; waits until ``/api/health`` answers.

    Runs as an :class:`infra.process.ManagedProcess` (own process group, parent-death signal, SIGTERM then SIGKILL
    on stop).

    Args:
        home: ``PREFECT_HOME`` for the server (database ``prefect.db`` lives there); created if missing.
        port: TCP port on 127.0.0.1; None picks a free one.
        startup_timeout: seconds to wait for the health check (the first start migrates the database).
        log_path: where the server's stdout/stderr go (default ``home/server.log``).
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int | None = None,
        startup_timeout: float = 180.0,
        log_path: Path | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else self.home / "server.log"
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServiceError("The Prefect server is not started; use it as a context manager.")
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients of this server (CLI calls, workers, flow runs)."""
        return offline_environment(self.home, api_url=self.api_url)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self) -> PrefectServer:
        if self.running:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        env = offline_environment(self.home)
        env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
        env["PREFECT_SERVER_API_PORT"] = str(self.port)
        cmd = [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--no-ui", "--analytics-off"]
        self.process = ManagedProcess(
            cmd,
            name=f"the Prefect server on port {self.port} (PREFECT_HOME {self.home})",
            env=env,
            log_path=self.log_path,
            ready=http_ready(f"{self.api_url}/health"),
            ready_timeout=self.startup_timeout,
            grace=20.0,
            poll_interval=0.5,
        )
        self.process.start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def create_process_pool(server: PrefectServer, pool: str = DEFAULT_POOL) -> None:
    """Create the ``process`` work pool on ``server`` (no error when it already exists)."""
    proc = subprocess.run(
        [prefect_executable(), "work-pool", "create", pool, "--type", "process"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and "already exists" not in out:
        raise ServiceError(f"Could not create work pool {pool!r} on {server.api_url}:\n{out[-2000:]}")


_WORKER_NUMBERS = itertools.count(1)

WORKER_SHUTDOWN_SECONDS = 10.0
"""How long a Prefect worker may take to stop after its first SIGTERM or SIGINT before it is killed.

``prefect worker start`` turns SIGTERM into SIGINT, and asyncio turns the first SIGINT into one ``cancel()`` of the
CLI's main task; the worker then tears down (API calls, its flow runs). Nothing bounds that: when the one
cancellation is lost or the teardown waits on a server that is gone (the parent-death case, where the server gets
its SIGTERM at the same moment), the worker keeps polling forever (seen on a loaded 2-core CI machine: alive 40 s
after SIGTERM, and 30 s after its parent was SIGKILLed, ``status=sleeping ppid=1``). The launcher
:mod:`infra.prefect_worker_launcher` arms a watchdog on the first SIGTERM/SIGINT that stops the worker's flow runs
and then SIGKILLs the worker once this many seconds have passed. Runs it was running stay RUNNING on the server:
:meth:`ProcessWorker.stop` marks them Crashed when it can, the zombie automation of ``prefect.yaml`` otherwise."""


class ProcessWorker:
    """``prefect worker start --type process`` for ``pool`` against a running :class:`PrefectServer`.

    Flow runs start as child processes of the worker (Prefect puts each in a session of its own) with the worker's
    environment, so ``CROFUSE_ROOT`` (the repository, used by the pull step in ``prefect.yaml``), the offline
    settings and ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` reach them. Ready when the worker logs that it started.

    :meth:`stop` stops the worker and every flow-run process under it, then marks Crashed the runs it submitted
    (its log says which) whose process it stopped (Prefect would leave them RUNNING).

    Args:
        server: a started server.
        pool: the work pool to poll; created (type ``process``) if missing.
        cwd: working directory of the worker (default: the repository root).
        limit: flow runs at once (1 keeps a 2-core machine usable).
        poll_seconds: how often the worker asks for new runs.
        heartbeat_seconds: flow-run heartbeat period (>= 30 s; Prefect's own minimum).
        extra_env: more environment variables for the worker and its flow runs.
        log_path: where the worker's output goes (default ``<server home>/worker-<pool>.log``).
        startup_timeout: seconds to wait for the worker to start.
        shutdown_seconds: after its first SIGTERM/SIGINT (ours, its parent's death, anyone's), the worker's flow runs
            are stopped and the worker killed if it has not exited by then (:data:`WORKER_SHUTDOWN_SECONDS`).
    """

    def __init__(
        self,
        server: PrefectServer,
        *,
        pool: str = DEFAULT_POOL,
        cwd: Path | None = None,
        limit: int = 1,
        poll_seconds: float = 2.0,
        heartbeat_seconds: int = HEARTBEAT_SECONDS,
        extra_env: dict[str, str] | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 120.0,
        shutdown_seconds: float = WORKER_SHUTDOWN_SECONDS,
    ) -> None:
        if heartbeat_seconds < 30:
            raise ValueError(f"heartbeat_seconds={heartbeat_seconds}: Prefect allows 30 s at least")
        self.server = server
        self.pool = pool
        self.cwd = Path(cwd) if cwd else REPO_ROOT
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = int(heartbeat_seconds)
        self.extra_env = dict(extra_env or {})
        self.log_path = Path(log_path) if log_path else server.home / f"worker-{pool}.log"
        self.startup_timeout = startup_timeout
        self.shutdown_seconds = float(shutdown_seconds)
        self.name = f"crofuse-{os.getpid()}-{next(_WORKER_NUMBERS)}"
        self.process: ManagedProcess | None = None
        self._log_offset = 0
        self.crashed_runs: list[str] = []
        """Ids of the flow runs the last :meth:`stop` marked Crashed."""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def environment(self) -> dict[str, str]:
        """The worker's environment (its flow runs inherit it)."""
        env = self.server.env
        env["PREFECT_WORKER_QUERY_SECONDS"] = str(self.poll_seconds)
        env["PREFECT_WORKER_PREFETCH_SECONDS"] = "5"
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(self.heartbeat_seconds)
        env.update(self.extra_env)
        return env

    def start(self) -> ProcessWorker:
        if self.running:
            return self
        create_process_pool(self.server, self.pool)
        cmd = [
            sys.executable, "-m", "infra.prefect_worker_launcher", str(self.shutdown_seconds),
            "worker", "start", "--pool", self.pool, "--type", "process",
            "--limit", str(self.limit), "--install-policy", "never", "--name", self.name,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        started = f"Worker '{self.name}' started"

        def ready() -> bool:
            return started in self._log_since_start()

        self.process = ManagedProcess(
            cmd,
            name=f"the Prefect worker {self.name!r} for pool {self.pool!r}",
            env=self.environment(),
            cwd=self.cwd,
            log_path=self.log_path,
            ready=ready,
            ready_timeout=self.startup_timeout,
            grace=self.shutdown_seconds + 10.0,  # the watchdog's kill comes first; then ManagedProcess's SIGKILL
            poll_interval=0.2,
        )
        self.process.start()
        return self

    def _log_since_start(self) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def submitted_runs(self) -> list[str]:
        """Ids of the flow runs this worker submitted (from its log)."""
        pattern = rf"Worker '{re.escape(self.name)}' submitting flow run '([0-9a-f-]{{36}})'"
        return re.findall(pattern, self._log_since_start()) if self.process is not None else []

    def stop(self) -> None:
        """Stop the worker and its flow runs; mark Crashed the runs it was running (when the server still runs)."""
        if self.process is None:
            return
        self.process.stop()
        pids = {str(pid) for pid in self.process.stopped_pids}
        submitted = set(self.submitted_runs())
        self.crashed_runs = []
        if pids and submitted and self.server.running:
            message = (
                f"The worker {self.name!r} was stopped while this run was running, and its flow-run process was "
                "stopped with it. Run it again."
            )
            try:
                self.crashed_runs = crash_flow_runs(self.server, submitted, pids=pids, message=message)
            except Exception as exc:  # noqa: BLE001 - teardown must go on; the zombie automation is the fallback
                warnings.warn(
                    f"could not mark the runs of the stopped worker {self.name!r} Crashed ({exc}); the zombie "
                    "automation will, once their heartbeats are overdue",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def __enter__(self) -> ProcessWorker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def crash_flow_runs(server: PrefectServer, run_ids: set[str], *, pids: set[str], message: str) -> list[str]:
    """Set Crashed on those of ``run_ids`` that are unfinished and whose process is one of ``pids`` (or that have
    no process yet); returns their ids."""
    return _run_async(_crash_flow_runs(server, run_ids, pids=pids, message=message))


async def _crash_flow_runs(server: PrefectServer, run_ids: set[str], *, pids: set[str], message: str) -> list[str]:
    from uuid import UUID

    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]
    crashed: list[str] = []
    async with PrefectClient(api=server.api_url) as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(r) for r in run_ids]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)),
            ),
        )
        for run in runs:
            pid = (run.infrastructure_pid or "").rsplit(":", 1)[-1]  # "<pid>" or "<host>:<pid>"; "" before it ran
            if not pid or pid in pids:
                await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                crashed.append(str(run.id))
    return crashed


def load_automations(prefect_file: Path = PREFECT_YAML) -> list[Any]:
    """The ``automations:`` of a ``prefect.yaml``, validated as Prefect ``AutomationCore`` objects.

    ``prefect deploy`` ignores this key; ``prefect automation create --from-file prefect.yaml`` reads it, and so
    does :func:`ensure_automations`.
    """
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    spec = yaml.safe_load(Path(prefect_file).read_text()) or {}
    try:
        return [AutomationCore.model_validate(a) for a in spec.get("automations") or []]
    except ValueError as exc:
        raise ServiceError(f"the automations of {prefect_file} are not valid Prefect automations: {exc}") from exc


def ensure_automations(
    server: PrefectServer, prefect_file: Path = PREFECT_YAML, *, within_seconds: float | None = None
) -> dict[str, str]:
    """Create or update (by name) the automations of ``prefect_file`` on ``server``; returns ``{name: id}``.

    Idempotent: a second call updates the automation instead of adding a copy. ``within_seconds`` replaces the
    ``within`` window of every proactive trigger (tests use a short one).
    """
    automations = load_automations(prefect_file)
    if within_seconds is not None:
        import datetime as dt

        for automation in automations:
            if getattr(automation.trigger, "within", None) is not None:
                automation.trigger.within = dt.timedelta(seconds=within_seconds)
    return _run_async(_ensure_automations(server, automations))


async def _ensure_automations(server: PrefectServer, automations: list[Any]) -> dict[str, str]:
    from prefect.client.orchestration import PrefectClient

    ids: dict[str, str] = {}
    async with PrefectClient(api=server.api_url) as client:
        for automation in automations:
            existing = await client.read_automations_by_name(automation.name)
            if existing:
                await client.update_automation(existing[0].id, automation)
                for extra in existing[1:]:  # copies left by repeated `prefect automation create`
                    await client.delete_automation(extra.id)
                ids[automation.name] = str(existing[0].id)
            else:
                ids[automation.name] = str(await client.create_automation(automation))
    return ids


def deploy(
    server: PrefectServer,
    *,
    names: list[str] | None = None,
    cwd: Path | None = None,
    pool: str = DEFAULT_POOL,
    prefect_file: Path | None = None,
) -> str:
    """``prefect deploy`` the deployments of ``prefect.yaml`` in ``cwd`` (default: all) to ``server``.

    Creates the ``process`` work pool first, and the file's ``automations:`` after (:func:`ensure_automations`).
    ``prefect_file`` deploys another file from ``cwd``. Returns the CLI output; raises :class:`ServiceError` with
    that output when deploying fails.
    """
    create_process_pool(server, pool)
    cwd = Path(cwd) if cwd else REPO_ROOT
    spec_file = Path(prefect_file) if prefect_file else cwd / "prefect.yaml"
    cmd = [prefect_executable(), "deploy"]
    if prefect_file:
        cmd += ["--prefect-file", str(prefect_file)]
    if names:
        for name in names:
            cmd += ["--name", name]
    else:
        cmd.append("--all")
    cmd.append("--no-prompt")
    proc = subprocess.run(cmd, env=server.env, cwd=cwd, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ServiceError(f"`{' '.join(cmd[1:])}` failed (exit {proc.returncode}):\n{out[-4000:]}")
    ensure_automations(server, spec_file)
    return out


def run_deployment(
    server: PrefectServer, name: str, *, parameters: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    """``prefect deployment run NAME -p k=v ...``; returns the flow-run id the CLI printed."""
    cmd = [prefect_executable(), "deployment", "run", name]
    for key, value in (parameters or {}).items():
        cmd += ["-p", f"{key}={value}"]
    proc = subprocess.run(cmd, env=server.env, cwd=cwd or REPO_ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
    if proc.returncode != 0 or match is None:
        raise ServiceError(f"`prefect deployment run {name}` failed (exit {proc.returncode}):\n{out[-4000:]}")
    return match.group(1)


def wait_for_flow_run(server: PrefectServer, flow_run_id: str, *, timeout: float = 1200.0, poll: float = 2.0):
    """Poll the server until the flow run is final; returns its ``FlowRun`` (check ``.state``)."""
    return _run_async(_wait(server, flow_run_id, timeout=timeout, poll=poll))


def read_flow_run(server: PrefectServer, flow_run_id: str):
    """The flow run's current ``FlowRun`` (``.state``, ``.infrastructure_pid``...)."""
    return _run_async(_read(server, flow_run_id))


async def _read(server: PrefectServer, flow_run_id: str):
    from uuid import UUID

    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=server.api_url) as client:
        return await client.read_flow_run(UUID(flow_run_id))


async def _wait(server: PrefectServer, flow_run_id: str, *, timeout: float, poll: float):
    from uuid import UUID

    from prefect.client.orchestration import PrefectClient

    deadline = time.monotonic() + timeout
    async with PrefectClient(api=server.api_url) as client:
        while True:
            run = await client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                state = run.state.name if run.state else "unknown"
                raise ServiceError(
                    f"Flow run {flow_run_id} is still {state} after {timeout:.0f} s; is a worker polling its pool? "
                    "Check the worker log."
                )
            await asyncio.sleep(poll)


@contextlib.contextmanager
def prefect_api_for_run(
    *, home: Path | None = None, startup_timeout: float = 180.0, announce: Any = None
) -> Iterator[str]:
    """The Prefect API a direct flow run (``python -m flows.map_city``) reports to; yields its URL.

    ``PREFECT_API_URL`` (environment or Prefect profile) set: that server. Unset: a :class:`PrefectServer` of ours
    for the duration of the block, on the SQLite database under ``PREFECT_HOME`` (default ``~/.prefect``), with the
    zombie automation. It replaces Prefect's own temporary server, which is an unmanaged child that outlives a
    SIGKILLed parent; ours gets the parent-death signal and is stopped on exit, SIGINT and SIGTERM.

    Args:
        home: ``PREFECT_HOME`` for the server (default: Prefect's setting).
        startup_timeout: seconds to wait for the server.
        announce: called with one line saying which server is used (default: print to stderr).
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    say = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    settings = get_current_settings()
    if settings.api.url:
        yield str(settings.api.url)
        return
    home = Path(home) if home is not None else Path(settings.home)
    say(
        f"PREFECT_API_URL is not set: starting a Prefect server for this run (database under {home}; set "
        "PREFECT_API_URL to report to a server you run, see docs/flows.md)"
    )
    previous = os.environ.get("PREFECT_API_URL")
    with PrefectServer(home, startup_timeout=startup_timeout) as server:
        if PREFECT_YAML.exists():  # a checkout; an installed package has no prefect.yaml
            ensure_automations(server)
        os.environ["PREFECT_API_URL"] = server.api_url
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                try:
                    yield server.api_url
                finally:
                    _drain_prefect_clients()
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous


def _drain_prefect_clients(timeout: float = 5.0) -> None:
    """Send the logs and events Prefect still holds in its background workers while our server still answers."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort: the run's result does not depend on its last log lines
            worker.drain_all(timeout=timeout)


def run_flow_directly(flow_fn: Any, /, *args: Any, show: Any = print, **params: Any) -> int:
    """Run ``flow_fn(*args, **params)`` for a ``python -m flows...`` entry point; returns the process exit code.

    The flow reports to :func:`prefect_api_for_run`'s server; SIGINT and SIGTERM stop the run (Prefect marks it
    Crashed) and then the server. Exit codes: 0 completed (``show`` gets the result), 1 the run failed (its state
    message, e.g. the crofuse error, printed as one ``error:`` line), 2 parameters the flow refused, 128 + signal
    when interrupted (130 Ctrl-C, 143 SIGTERM).
    """
    import inspect

    from prefect.exceptions import ParameterTypeError, TerminationSignal

    from crofuse.errors import CrofuseError
    from infra.process import Interrupted, stop_on_signals

    try:
        flow_fn.validate_parameters(dict(inspect.signature(flow_fn.fn).bind(*args, **params).arguments))
    except ParameterTypeError as exc:  # before any server starts or any run is recorded
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with stop_on_signals(), prefect_api_for_run():
            state = flow_fn(*args, **params, return_state=True)
            result = state.result(raise_on_failure=False) if state.is_completed() else None
    except Interrupted as exc:
        print(f"interrupted ({exc}): the run and its Prefect server are stopped", file=sys.stderr)
        return exc.exit_code
    except TerminationSignal as exc:  # Prefect's own SIGTERM handler, active while the flow runs
        print(f"interrupted (signal {exc.signal}): the run is marked Crashed, its Prefect server stopped", file=sys.stderr)
        return 128 + int(exc.signal)
    except CrofuseError as exc:  # the server could not start (ServiceError)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not state.is_completed():
        print(f"error: the run ended {state.name}: {state.message}", file=sys.stderr)
        return 1
    show(result)
    return 0


__all__ = [
    "DEFAULT_POOL",
    "HEARTBEAT_SECONDS",
    "OFFLINE_SETTINGS",
    "PREFECT_YAML",
    "REPO_ROOT",
    "ZOMBIE_AUTOMATION",
    "PrefectServer",
    "ProcessWorker",
    "crash_flow_runs",
    "create_process_pool",
    "deploy",
    "ensure_automations",
    "free_port",
    "load_automations",
    "offline_environment",
    "prefect_api_for_run",
    "read_flow_run",
    "run_deployment",
    "run_flow_directly",
    "wait_for_flow_run",
]
