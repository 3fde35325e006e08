"""``python -m infra.prefect_worker_launcher SECONDS ARGS...``: run ``prefect ARGS...`` with a shutdown watchdog.

``prefect worker start`` turns SIGTERM into SIGINT, and asyncio turns the first SIGINT into one ``cancel()`` of the
CLI's main task; nothing bounds the teardown that follows (see :data:`infra.prefect_server.WORKER_SHUTDOWN_SECONDS`).
This launcher wraps every SIGINT/SIGTERM handler that Prefect and asyncio install: the first signal arms a daemon
thread that, ``SECONDS`` later, terminates and then kills the process's descendants (flow runs, in sessions of their
own) and SIGKILLs the process. A worker that exits in time never notices the watchdog.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

import psutil

Handler = Callable[[int, FrameType | None], object]

_armed = threading.Event()


def _watchdog(signum: int, limit: float) -> None:
    time.sleep(limit)
    print(f"crofuse: the worker did not stop within {limit:g} s of {signal.Signals(signum).name}: "
          "stopping its flow runs and killing it", flush=True)
    try:
        kids = psutil.Process().children(recursive=True)
        for kid in kids:
            try:
                kid.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(kids, timeout=3)
        for kid in alive:
            try:
                kid.kill()
            except psutil.Error:
                pass
    finally:
        os.kill(os.getpid(), signal.SIGKILL)


def arming(handler: Handler, limit: float) -> Handler:
    """``handler``, preceded on its first call (of any armed handler) by starting the watchdog."""
    def on_signal(signum: int, frame: FrameType | None) -> object:
        if not _armed.is_set():
            _armed.set()
            threading.Thread(target=_watchdog, args=(signum, limit), name="crofuse-shutdown-watchdog",
                             daemon=True).start()
        return handler(signum, frame)
    on_signal.crofuse_armed = True  # type: ignore[attr-defined]
    return on_signal


def install(limit: float) -> None:
    """Arm every SIGINT/SIGTERM handler installed from now on, and SIGTERM until Prefect sets its own."""
    set_handler = signal.signal

    def signal_with_watchdog(signum, handler):  # signal.signal's signature
        if signum in (signal.SIGINT, signal.SIGTERM) and callable(handler) \
                and not getattr(handler, "crofuse_armed", False):
            handler = arming(handler, limit)
        return set_handler(signum, handler)

    signal.signal = signal_with_watchdog  # type: ignore[assignment]
    set_handler(signal.SIGTERM, arming(lambda signum, frame: sys.exit(128 + signum), limit))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m infra.prefect_worker_launcher SECONDS PREFECT-ARGS...")
    install(float(args[0]))
    from prefect.cli import app

    sys.argv = ["prefect", *args[1:]]
    sys.exit(app())


if __name__ == "__main__":
    main()
