"""An S3-compatible server on 127.0.0.1 for tests and the demo: ``moto_server`` (``moto[server]`` from PyPI).

moto implements the S3 REST API in-process, conditional writes included (``PutObject`` with ``If-None-Match: *``
answers 412 when the key exists, ``If-Match: <etag>`` 412 when the etag differs), which the leases of
:mod:`crofuse.io.lease` rely on; ``tests/test_object_storage.py`` checks both against this very server. It runs as an
:class:`infra.process.ManagedProcess` (own process group, parent-death signal, stopped with its children)::

    with S3Server(buckets=["crofuse"]) as s3:
        os.environ.update(s3.env)                   # AWS_ENDPOINT_URL, test credentials, region
        map_city("wuhan", 2021, output="s3://crofuse/maps", ...)

Data lives in the server's memory: it is gone when the server stops.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path
from types import TracebackType

from crofuse.errors import ServiceError
from infra.process import ManagedProcess, free_port, tcp_ready

ACCESS_KEY = "crofuse-test"
SECRET_KEY = "crofuse-test-secret"
REGION = "us-east-1"


def moto_executable() -> str:
    """``moto_server`` of this interpreter's environment (``pip install 'moto[server]'``)."""
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("moto_server")
    if found is None:
        raise ServiceError("moto_server is not installed: pip install 'moto[server]' (the S3 test server)")
    return found


class S3Server:
    """``moto_server`` on ``host:port`` (a free port by default), with ``buckets`` created once it is up.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``.
        env: the environment variables a client needs (``AWS_ENDPOINT_URL``, credentials, region).
    """

    def __init__(self, *, buckets: tuple[str, ...] | list[str] = (), host: str = "127.0.0.1", port: int | None = None,
                 log_path: Path | str | None = None, ready_timeout: float = 60.0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.buckets = list(buckets)
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self) -> S3Server:
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        self.process = ManagedProcess(
            [moto_executable(), "-H", self.host, "-p", str(self.port)], name="moto_server (S3)", env=env,
            log_path=self.log_path, ready=tcp_ready(self.host, self.port), ready_timeout=self.ready_timeout, grace=5.0,
        ).start()
        try:
            for bucket in self.buckets:
                self.create_bucket(bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def create_bucket(self, bucket: str) -> str:
        """Create ``bucket`` (S3 ``CreateBucket``); returns ``s3://bucket``."""
        request = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT", data=b"")
        with urllib.request.urlopen(request, timeout=10) as resp:
            if resp.status != 200:
                raise ServiceError(f"creating bucket {bucket} on {self.endpoint} answered {resp.status}")
        return f"s3://{bucket}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


__all__ = ["S3Server", "moto_executable"]
