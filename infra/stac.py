"""A local STAC API over a static catalog folder: ``rustac serve`` on 127.0.0.1, as a context manager.

rustac's in-memory backend loads the collections and their items (``--load-collection-items``) from JSON. We never
hand it stac-geoparquet: that path makes it fetch DuckDB extensions from the network.

Note: searches should use POST (pystac-client's default). rustac 0.9's GET ``/search`` answers 500
"unsupported value" when the result needs a ``next`` link.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from crofuse.errors import ServiceError


def find_rustac() -> str:
    """Path of the ``rustac`` executable (next to this Python first, then on PATH)."""
    here = Path(sys.executable).parent / "rustac"
    if here.exists():
        return str(here)
    found = shutil.which("rustac")
    if found is None:
        raise ServiceError("the `rustac` command was not found: install it with `pip install rustac`")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def collection_files(catalog_root: Path | str) -> list[Path]:
    """The ``collection.json`` files of a catalog folder (or of the folder holding ``catalog.json``)."""
    root = Path(catalog_root)
    if root.is_file():
        root = root.parent
    files = sorted(root.glob("*/collection.json"))
    if not files:
        raise ServiceError(
            f"{root} holds no <collection>/collection.json: build one with `crofuse sample-catalog build {root}`"
        )
    return files


class StacServer:
    """Run ``rustac serve`` over a catalog folder while the ``with`` block runs.

    >>> with StacServer("sample-catalog") as api:  # doctest: +SKIP
    ...     client = pystac_client.Client.open(api.url)
    """

    def __init__(
        self, catalog_root: Path | str, *, port: int | None = None, host: str = "127.0.0.1", timeout: float = 60.0
    ) -> None:
        self.catalog_root = Path(catalog_root).resolve()
        self.host = host
        self.port = port
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self.collections = [json.loads(p.read_text())["id"] for p in collection_files(self.catalog_root)]

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServiceError("the STAC server is not running: use it as a context manager or call start()")
        return f"http://{self.host}:{self.port}"

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:  # noqa: S310 (loopback only)
            return json.loads(r.read())

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def start(self) -> StacServer:
        """Start the server and wait until ``/`` and ``/collections`` answer with every collection."""
        if self._proc is not None:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        cmd = [
            find_rustac(), "serve", "--addr", f"{self.host}:{self.port}", "--load-collection-items",
            *map(str, collection_files(self.catalog_root)),
        ]
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True, cwd=self.catalog_root
        )
        deadline = time.monotonic() + self.timeout
        last = ""
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                err = self._stderr_text()
                self._cleanup()
                raise ServiceError(
                    f"`rustac serve` exited with code {code} before answering "
                    f"(catalog {self.catalog_root}, port {self.port}). Its stderr:\n{err}"
                )
            try:
                self._get("/")
                got = {c["id"] for c in self._get("/collections")["collections"]}
                if set(self.collections) <= got:
                    return self
                last = f"collections so far: {sorted(got)}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as e:
                last = repr(e)
            time.sleep(0.1)
        err = self._stderr_text()
        self.stop()
        raise ServiceError(
            f"`rustac serve` did not answer on {self.url} within {self.timeout:.0f} s ({last}). Its stderr:\n{err}"
        )

    def stop(self) -> None:
        """Stop the server and its process group."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> StacServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
