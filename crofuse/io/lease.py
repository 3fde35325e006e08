"""Leases: one holder at a time of a city-year (or of the statistics tables), on disk and on object storage alike.

A lease is one small JSON object (owner id, host, pid, command, start and heartbeat times, timeout) written with a
**conditional write** (:mod:`crofuse.io.store`), never with ``fcntl``, so it works where many machines share only
an object store:

* **acquire**: ``put_if_absent`` (S3 ``If-None-Match: *``; on disk a hard link that fails if the name exists);
* **heartbeat**: a background thread rewrites it every ``heartbeat`` seconds with ``put_if_match`` on the version
  it wrote last (S3 ``If-Match``); if that fails someone took it over, and :meth:`Lease.check` raises
  :class:`~crofuse.errors.LeaseLostError` at the next step that would publish;
* **takeover**: a lease whose heartbeat is older than its ``timeout`` (its holder died without releasing it), or
  whose holder is a process of this host that no longer exists, is replaced with ``put_if_match`` on the expired
  version, so of several waiters exactly one takes it;
* **release**: on exit of the ``with`` block (also on Ctrl-C and on SIGTERM through
  :func:`infra.process.stop_on_signals`, and at interpreter exit) the holder deletes it if it is still its own.

A run that finds the lease held waits up to ``wait`` seconds (logging who holds it) and then raises
:class:`~crofuse.errors.LeaseHeldError` naming the holder and since when; ``wait=0`` fails at once.

Expiry compares the holder's heartbeat time with this machine's clock: clocks of the machines sharing an output
must agree to well within ``timeout`` (NTP does; the default timeout is two minutes).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from crofuse.errors import LeaseHeldError, LeaseLostError
from crofuse.io.store import HOST, Location, _pid_alive, location

log = logging.getLogger("crofuse.lease")

TIMEOUT_ENV = "CROFUSE_LEASE_TIMEOUT"
DEFAULT_TIMEOUT = 120.0
"""Seconds without a heartbeat after which a lease counts as abandoned (``$CROFUSE_LEASE_TIMEOUT`` overrides)."""


def default_timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    return float(value) if value else DEFAULT_TIMEOUT


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class LeaseInfo:
    """The content of a lease object."""

    owner: str
    host: str
    pid: int
    command: str
    purpose: str
    started_epoch: float
    heartbeat_epoch: float
    timeout: float

    @property
    def started(self) -> str:
        return _iso(self.started_epoch)

    def expired(self, now: float | None = None) -> bool:
        """Abandoned: no heartbeat for ``timeout`` seconds, or its process is gone (same host only)."""
        now = time.time() if now is None else now
        if now - self.heartbeat_epoch > self.timeout:
            return True
        return self.host == HOST and not _pid_alive(self.pid)

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return (f"pid {self.pid} on {self.host} since {self.started} ({now - self.started_epoch:.0f} s; last "
                f"heartbeat {now - self.heartbeat_epoch:.0f} s ago; {self.purpose or self.command})")

    def to_json(self) -> bytes:
        data = asdict(self)
        data.update(started=self.started, heartbeat=_iso(self.heartbeat_epoch))
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LeaseInfo | None:
        try:
            d = json.loads(raw)
            return cls(owner=str(d["owner"]), host=str(d["host"]), pid=int(d["pid"]), command=str(d.get("command", "")),
                       purpose=str(d.get("purpose", "")), started_epoch=float(d["started_epoch"]),
                       heartbeat_epoch=float(d["heartbeat_epoch"]), timeout=float(d["timeout"]))
        except (ValueError, KeyError, TypeError):
            return None


def read_lease(loc: Location | str) -> LeaseInfo | None:
    """Who holds the lease at ``loc`` now (None: nobody, or an unreadable object)."""
    try:
        return LeaseInfo.from_json(location(loc).read_bytes())
    except FileNotFoundError:
        return None


_HELD: dict[Location, Lease] = {}
_HELD_LOCK = threading.Lock()
_ALIVE: weakref.WeakSet[Lease] = weakref.WeakSet()


@atexit.register
def _release_all() -> None:  # pragma: no cover - interpreter exit
    for lease in list(_ALIVE):
        with contextlib.suppress(Exception):
            lease.release()


class Lease:
    """The lease at ``loc`` (see the module docstring). Use as a context manager.

    Args:
        loc: the lease object (``<output>/<city>/<year>/.lease``).
        purpose: what the holder is doing, shown to whoever waits (``"map-city wuhan 2021"``).
        timeout: seconds without a heartbeat after which it may be taken over (default
            :func:`default_timeout`).
        heartbeat: seconds between heartbeats (default ``timeout / 4``).
        wait: seconds to wait for a held lease before :class:`LeaseHeldError` (0: at once; None: for ever).
        poll: seconds between attempts while waiting.
        log_every: seconds between the "waiting for" log lines.
        reentrant: a second ``Lease`` on the same object in this process shares the first one's hold instead of
            waiting for it (a flow that holds a city-year and calls ``build_cube``, which takes it too).
        logger: where waiting and takeovers are logged.
        what: what the log lines call it (``"the statistics lock"``).
    """

    def __init__(self, loc: Location | str, *, purpose: str = "", timeout: float | None = None,
                 heartbeat: float | None = None, wait: float | None = 0.0, poll: float = 0.5,
                 log_every: float = 30.0, reentrant: bool = False, logger: logging.Logger | None = None,
                 what: str = "the lease") -> None:
        self.loc = location(loc)
        self.purpose = purpose
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self.heartbeat = self.timeout / 4 if heartbeat is None else float(heartbeat)
        self.wait = wait
        self.poll = poll
        self.log_every = log_every
        self.reentrant = reentrant
        self.log = logger or log
        self.what = what
        self.owner = uuid.uuid4().hex
        self.version: str | None = None
        self.info: LeaseInfo | None = None
        self.lost = False
        self.took_over: LeaseInfo | None = None
        """The abandoned lease this one replaced, if any."""
        self.waited = 0.0
        self._shared: Lease | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- acquiring -------------------------------------------------------------------------------------------------
    def _new_info(self, started: float | None = None) -> LeaseInfo:
        now = time.time()
        return LeaseInfo(owner=self.owner, host=HOST, pid=os.getpid(), command=" ".join(sys.argv)[:200],
                         purpose=self.purpose, started_epoch=started or now, heartbeat_epoch=now, timeout=self.timeout)

    def acquire(self) -> Lease:
        """Take the lease (waiting up to ``wait`` s); :class:`LeaseHeldError` naming the holder if it stays held."""
        if self.reentrant:
            with _HELD_LOCK:
                held = _HELD.get(self.loc)
            if held is not None and not held.lost:
                self._shared = held
                return self
        started = time.monotonic()
        last_log = -math.inf
        attempts = 0
        while True:
            attempts += 1
            info = self._new_info()
            version = self.loc.put_if_absent(info.to_json())
            if version is None:
                version = self._take_over_if_abandoned(info)
            if version is not None:
                self.version, self.info = version, info
                break
            holder = read_lease(self.loc)
            waited = time.monotonic() - started
            if self.wait is not None and waited >= self.wait:
                who = holder.describe() if holder else "another run (the lease is being rewritten)"
                raise LeaseHeldError(
                    f"{self.loc} is held by {who}; "
                    + (f"gave up after {waited:.0f} s. " if self.wait else "")
                    + "Wait for that run to finish, or stop it; a lease whose holder died is taken over "
                    f"{(holder.timeout if holder else self.timeout):.0f} s after its last heartbeat"
                )
            if holder is not None and waited - last_log >= self.log_every:
                limit = "for ever" if self.wait is None else f"up to {self.wait:.0f} s"
                self.log.warning("waiting for %s %s (%.0f s so far, %s): held by %s", self.what, self.loc, waited,
                                 limit, holder.describe())
                last_log = waited
            pause = self.poll if self.wait is None else max(0.0, min(self.poll, self.wait - waited))
            time.sleep(min(pause, 0.05 * attempts))
        self.waited = time.monotonic() - started
        if last_log > -math.inf:
            self.log.warning("got %s %s after %.1f s", self.what, self.loc, self.waited)
        _ALIVE.add(self)
        if self.reentrant:
            with _HELD_LOCK:
                _HELD[self.loc] = self
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat {self.loc.name}", daemon=True)
        self._thread.start()
        return self

    def _take_over_if_abandoned(self, info: LeaseInfo) -> str | None:
        try:
            raw, version = self.loc.read_versioned()
        except FileNotFoundError:
            return None  # released meanwhile: the next put_if_absent gets it
        holder = LeaseInfo.from_json(raw)
        if holder is None:  # half-written by a disk without hard links, or garbage: abandoned once old enough
            try:
                age = time.time() - self.loc.stat().mtime_ns / 1e9
            except FileNotFoundError:
                return None
            if age <= self.timeout:
                return None
        elif not holder.expired():
            return None
        new = self.loc.put_if_match(info.to_json(), version)
        if new is not None:
            self.took_over = holder
            self.log.warning("took over the abandoned lease %s from %s", self.loc,
                             holder.describe() if holder else "an unreadable lease")
        return new

    # -- holding ---------------------------------------------------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                if self._stop.is_set() or self.lost:
                    return
                assert self.info is not None and self.version is not None
                info = LeaseInfo(**{**asdict(self.info), "heartbeat_epoch": time.time()})
                try:
                    new = self.loc.put_if_match(info.to_json(), self.version)
                except Exception as e:  # noqa: BLE001 - a passing storage error: try again at the next beat
                    self.log.warning("heartbeat of the lease %s failed (%s); retrying", self.loc, e)
                    continue
                if new is None:
                    self.lost = True
                    holder = read_lease(self.loc)
                    self.log.error("lost the lease %s to %s", self.loc, holder.describe() if holder else "nobody")
                    return
                self.version, self.info = new, info

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if another run took this lease over (call before publishing)."""
        lease = self._shared or self
        if lease.lost:
            holder = read_lease(self.loc)
            raise LeaseLostError(
                f"the lease {self.loc} was taken over by {holder.describe() if holder else 'another run'} (this run's "
                f"heartbeat stopped for over {lease.timeout:.0f} s): stopping without publishing; rerun when it is "
                "done"
            )

    def release(self) -> None:
        """Delete the lease if it is still ours and stop the heartbeat (idempotent)."""
        if self._shared is not None:
            self._shared = None
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            if self.reentrant:
                with _HELD_LOCK:
                    if _HELD.get(self.loc) is self:
                        del _HELD[self.loc]
            if self.version is None or self.lost:
                return
            try:
                current = self.loc.version()
                if current == self.version:
                    self.loc.unlink(missing_ok=True)
            except Exception as e:  # noqa: BLE001 - it expires on its own
                self.log.warning("could not release the lease %s (%s); it expires after %.0f s", self.loc, e,
                                 self.timeout)
            finally:
                self.version = None
                _ALIVE.discard(self)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def hold(loc: Location | str, **kwargs: Any) -> Iterator[Lease]:
    """``with hold(loc, purpose=..., wait=...) as lease:`` (see :class:`Lease`)."""
    lease = Lease(loc, **kwargs).acquire()
    try:
        yield lease
    finally:
        lease.release()


def held_here(loc: Location | str) -> Lease | None:
    """The re-entrant lease this process holds on ``loc``, if any."""
    with _HELD_LOCK:
        lease = _HELD.get(location(loc))
    return lease if lease is not None and not lease.lost else None


__all__ = ["DEFAULT_TIMEOUT", "TIMEOUT_ENV", "Lease", "LeaseInfo", "default_timeout", "held_here", "hold",
           "read_lease"]
