"""The Prefect worker's shutdown watchdog (:mod:`infra.prefect_worker_launcher`): a process that ignores the
SIGTERM it was sent, and its child, are killed ``SECONDS`` after the first signal; one that exits in time is not."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil

_STUCK = textwrap.dedent("""
    import signal, subprocess, sys, time
    from infra.prefect_worker_launcher import install
    install(float(sys.argv[1]))
    # like a worker whose teardown never ends: its handler returns and the process keeps going
    signal.signal(signal.SIGTERM, lambda signum, frame: print("handled", flush=True))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    print(child.pid, flush=True)
    while True:
        time.sleep(0.1)
""")

_PROMPT = textwrap.dedent("""
    import signal, sys, time
    from infra.prefect_worker_launcher import install
    install(float(sys.argv[1]))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(7))
    print("ready", flush=True)
    while True:
        time.sleep(0.1)
""")


def _start(script: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, str(seconds)], stdout=subprocess.PIPE, text=True)


def test_watchdog_kills_a_worker_that_does_not_stop_and_its_flow_runs() -> None:
    proc = _start(_STUCK, 1.0)
    try:
        child = psutil.Process(int(proc.stdout.readline()))
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, "the watchdog fired before its limit"
        assert proc.wait(timeout=60) == -signal.SIGKILL
        child.wait(timeout=30)
        assert not child.is_running()
        out = proc.stdout.read()
        assert "handled" in out and "did not stop within 1 s of SIGTERM" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_worker_that_stops_in_time_keeps_its_own_exit() -> None:
    proc = _start(_PROMPT, 30.0)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
