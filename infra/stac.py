"""A local STAC API over a static catalog folder: ``rustac serve`` on 127.0.0.1, as a context manager.

rustac's in-memory backend loads the collections and their items (``--load-collection-items``) from JSON. We never
hand it stac-geoparquet: that path makes it fetch DuckDB extensions from the network.

The server runs as an :class:`infra.process.ManagedProcess`: its own process group, a parent-death signal, a
readiness deadline, SIGTERM then SIGKILL on stop.

Note: searches should use POST (pystac-client's default). rustac 0.9's GET ``/search`` answers 500
"unsupported value" when the result needs a ``next`` link.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from pathlib import Path
from types import TracebackType

from crofuse.errors import ServiceError
from infra.process import ManagedProcess, free_port

__all__ = ["StacServer", "collection_files", "find_rustac", "free_port"]


def find_rustac() -> str:
    """Path of the ``rustac`` executable (next to this Python first, then on PATH)."""
    here = Path(sys.executable).parent / "rustac"
    if here.exists():
        return str(here)
    found = shutil.which("rustac")
    if found is None:
        raise ServiceError("the `rustac` command was not found: install it with `pip install rustac`")
    return found


def collection_files(catalog_root: Path | str) -> list[Path]:
    """The ``collection.json`` files of a catalog folder (or of the folder holding ``catalog.json``): a
    ``collection.json`` in the folder itself (the products collection of a map output root, ``crofuse products
    build``) and one in each subfolder (a static catalog, ``crofuse sample-catalog build``)."""
    root = Path(catalog_root)
    if root.is_file():
        root = root.parent
    own = root / "collection.json"
    files = ([own] if own.is_file() else []) + sorted(root.glob("*/collection.json"))
    if not files:
        raise ServiceError(
            f"{root} holds no collection.json nor <collection>/collection.json: build a sample catalog with "
            f"`crofuse sample-catalog build {root}`, or the products collection of map outputs with "
            f"`crofuse products build {root}`"
        )
    return files


class StacServer:
    """Run ``rustac serve`` over a catalog folder while the ``with`` block runs.

    Ready when ``/`` answers and ``/collections`` lists every collection of the folder.

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
        self.collections = [json.loads(p.read_text())["id"] for p in collection_files(self.catalog_root)]
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServiceError("the STAC server is not running: use it as a context manager or call start()")
        return f"http://{self.host}:{self.port}"

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:  # noqa: S310 (loopback only)
            return json.loads(r.read())

    def _ready(self) -> bool:
        self._get("/")
        got = {c["id"] for c in self._get("/collections")["collections"]}
        return set(self.collections) <= got

    def start(self) -> StacServer:
        """Start the server and wait until ``/`` and ``/collections`` answer with every collection."""
        if self.running:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        cmd = [
            find_rustac(), "serve", "--addr", f"{self.host}:{self.port}", "--load-collection-items",
            *map(str, collection_files(self.catalog_root)),
        ]
        self.process = ManagedProcess(
            cmd, name=f"`rustac serve` on {self.host}:{self.port} (catalog {self.catalog_root})",
            cwd=self.catalog_root, ready=self._ready, ready_timeout=self.timeout, grace=5.0,
        )
        self.process.start()
        return self

    def stop(self) -> None:
        """Stop the server and its process group."""
        if self.process is not None:
            self.process.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def __enter__(self) -> StacServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
