"""A real Prefect server and process worker on loopback, started and stopped as context managers.

Used by ``make demo`` (:mod:`infra.demo`) and by ``tests/test_deployment.py``. The server keeps its SQLite database
under the given ``PREFECT_HOME``; every process started here gets :func:`offline_environment`, which turns off
analytics, telemetry, the UI and anything else that would try to reach the internet.

    with PrefectServer(home=Path(".prefect")) as server, ProcessWorker(server, pool="crofuse-process", cwd=repo):
        subprocess.run(["prefect", "deploy", "--all"], env=server.env, cwd=repo, check=True)

Both stop their whole process group on exit (SIGTERM, then SIGKILL after a grace period), so flow-run processes the
worker started do not outlive it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from crofuse.errors import ServiceError

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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def prefect_executable() -> str:
    """The ``prefect`` CLI of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "prefect"
    return str(candidate) if candidate.exists() else "prefect"


def _stop_group(proc: subprocess.Popen[bytes], *, grace: float = 20.0) -> None:
    """SIGTERM the process group of ``proc`` (it was started with ``start_new_session``), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


class PrefectServer:
    """``prefect server start`` on loopback with SQLite under ``home``; waits until ``/api/health`` answers.

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
        self._proc: subprocess.Popen[bytes] | None = None

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

    def start(self) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        env = offline_environment(self.home)
        env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
        env["PREFECT_SERVER_API_PORT"] = str(self.port)
        cmd = [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--no-ui", "--analytics-off"]
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            log.close()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        health = f"{self.api_url}/health"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise ServiceError(
                    f"The Prefect server exited with code {self._proc.returncode} while starting on port {self.port}. "
                    f"Last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise ServiceError(
            f"The Prefect server did not answer {health} within {self.startup_timeout:.0f} s; raise startup_timeout "
            f"on a slow machine. Last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        if self._proc is not None:
            _stop_group(self._proc)
            self._proc = None

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


class ProcessWorker:
    """``prefect worker start --type process`` for ``pool`` against a running :class:`PrefectServer`.

    Flow runs start as child processes of the worker (in its process group) with the worker's environment, so
    ``CROFUSE_ROOT`` (the repository, used by the pull step in ``prefect.yaml``) and the offline settings reach them.

    Args:
        server: a started server.
        pool: the work pool to poll; created (type ``process``) if missing.
        cwd: working directory of the worker (default: the repository root).
        limit: flow runs at once (1 keeps a 2-core machine usable).
        poll_seconds: how often the worker asks for new runs.
        extra_env: more environment variables for the worker and its flow runs.
        log_path: where the worker's output goes (default ``<server home>/worker-<pool>.log``).
    """

    def __init__(
        self,
        server: PrefectServer,
        *,
        pool: str = DEFAULT_POOL,
        cwd: Path | None = None,
        limit: int = 1,
        poll_seconds: float = 2.0,
        extra_env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.server = server
        self.pool = pool
        self.cwd = Path(cwd) if cwd else REPO_ROOT
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.extra_env = dict(extra_env or {})
        self.log_path = Path(log_path) if log_path else server.home / f"worker-{pool}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessWorker:
        create_process_pool(self.server, self.pool)
        env = self.server.env
        env["PREFECT_WORKER_QUERY_SECONDS"] = str(self.poll_seconds)
        env["PREFECT_WORKER_PREFETCH_SECONDS"] = "5"
        env.update(self.extra_env)
        cmd = [
            prefect_executable(), "worker", "start", "--pool", self.pool, "--type", "process",
            "--limit", str(self.limit), "--install-policy", "never", "--name", f"crofuse-{os.getpid()}",
        ]
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                cmd, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        time.sleep(1.0)
        if self._proc.poll() is not None:
            raise ServiceError(
                f"The Prefect worker for pool {self.pool!r} exited with code {self._proc.returncode}. "
                f"Last lines of {self.log_path}:\n{_tail(self.log_path)}"
            )
        return self

    def stop(self) -> None:
        if self._proc is not None:
            _stop_group(self._proc)
            self._proc = None

    def __enter__(self) -> ProcessWorker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def deploy(
    server: PrefectServer, *, names: list[str] | None = None, cwd: Path | None = None, pool: str = DEFAULT_POOL
) -> str:
    """``prefect deploy`` the deployments of ``prefect.yaml`` in ``cwd`` (default: all) to ``server``.

    Creates the ``process`` work pool first. Returns the CLI output; raises :class:`ServiceError` with that output
    when deploying fails.
    """
    create_process_pool(server, pool)
    cmd = [prefect_executable(), "deploy"]
    if names:
        for name in names:
            cmd += ["--name", name]
    else:
        cmd.append("--all")
    cmd.append("--no-prompt")
    proc = subprocess.run(
        cmd, env=server.env, cwd=cwd or REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ServiceError(f"`{' '.join(cmd[1:])}` failed (exit {proc.returncode}):\n{out[-4000:]}")
    return out


def run_deployment(
    server: PrefectServer, name: str, *, parameters: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    """``prefect deployment run NAME -p k=v ...``; returns the flow-run id the CLI printed."""
    import re

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
    import asyncio

    return asyncio.run(_wait(server, flow_run_id, timeout=timeout, poll=poll))


async def _wait(server: PrefectServer, flow_run_id: str, *, timeout: float, poll: float):
    import asyncio
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


__all__ = [
    "DEFAULT_POOL",
    "OFFLINE_SETTINGS",
    "REPO_ROOT",
    "PrefectServer",
    "ProcessWorker",
    "create_process_pool",
    "deploy",
    "free_port",
    "offline_environment",
    "run_deployment",
    "wait_for_flow_run",
]
