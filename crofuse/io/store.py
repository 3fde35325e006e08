"""The one I/O layer of crofuse: every path it reads or writes may be a URL.

A :class:`Location` is a local path (``outputs/maps``, ``/data/maps``, ``file:///data/maps``) or an object-store
URL (``s3://bucket/prefix``); :func:`location` turns any of them (or a :class:`pathlib.Path`) into one. Locations
join like paths (``root / "wuhan" / "2021" / "impervious.tif"``) and have the operations crofuse needs, the same on
both kinds:

* ``read_bytes``/``read_text``, ``write_bytes``/``write_text`` (atomic: a reader sees the old object or the new one;
  on disk a hidden temporary sibling renamed into place, on S3 one PUT), ``exists``, ``is_file``, ``is_dir``,
  ``iterdir``, ``unlink``, ``rmtree``, ``stat`` (size, modification time, version);
* conditional writes, the primitive of the leases (:mod:`crofuse.io.lease`): :meth:`Location.put_if_absent`
  (S3 ``If-None-Match: *``; on disk a hard link of a finished temporary file, which fails if the name exists) and
  :meth:`Location.put_if_match` (S3 ``If-Match: <etag>``; on disk compare-and-rename on the file's identity);
* :meth:`Location.upload` of a file finished in worker-local temporary space (one PUT, or a rename), and
  :func:`atomic_file`, a local path to write through with libraries that write by file name (rasterio,
  matplotlib, safetensors, numpy), committed in one rename or one PUT when the block ends;
* :func:`cached_copy` (one file) and :func:`cached_tree` (a set of files, e.g. a training set's patches): local
  copies of objects in worker-local temporary space, fetched once per version and reused;
* :meth:`Location.zarr_store` for zarr 3 (a path on disk, :class:`zarr.storage.ObjectStore` on S3) and
  :meth:`Location.gdal_path` + :func:`gdal_env` for rasterio/GDAL (``/vsis3/``).

**Why obstore.** It is the object-store library of zarr 3's :class:`~zarr.storage.ObjectStore` (so zarr chunks and
our own objects share one client and one configuration), it does conditional PUTs natively (``mode="create"`` and
``mode={"e_tag": ...}``), its stores pickle (dask ships them to workers), and it has no async stack to manage
(fsspec/s3fs would bring aiobotocore and a second store implementation for zarr).

**Configuration** comes from the standard AWS environment variables: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, and the endpoint override
of the AWS SDKs for S3-compatible stores, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (``http://`` endpoints
are allowed: a loopback test server). GDAL gets the same endpoint through :func:`gdal_env`.

**Temporary space.** :func:`scratch_dir` gives a private folder in worker-local temporary space
(``$CROFUSE_TMPDIR``, else the system's), named after the host and process; the next one created on the same host
removes the folders of processes that are gone, so a killed write leaves nothing behind for long. Atomic writes on
disk use a hidden sibling (``.NAME.crofuse-tmp-HOST-PID-RAND``), which :func:`clean_temp_siblings` removes the same
way.

**One rename.** Every local rename onto a final name goes through :func:`rename_into_place`: the atomic writes
above, publication on disk (:mod:`crofuse.layout`) and folder swaps that have no object-store meaning.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from crofuse.errors import OutputWriteError, StorageError

ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
"""Environment variables naming the S3 endpoint (first set wins); unset means AWS itself."""

TMPDIR_ENV = "CROFUSE_TMPDIR"
"""Environment variable naming the worker-local temporary folder (default: :func:`tempfile.gettempdir`)."""

TEMP_MARK = ".crofuse-tmp-"
"""Part of the name of every temporary sibling of an atomic write on disk."""

_SCRATCH_PREFIX = "crofuse-scratch"
_STALE_SECONDS = 24 * 3600.0  # temporary files of another host are removed after a day
HOST = socket.gethostname()


# ------------------------------------------------------------------------------------------------------ S3 client
def s3_endpoint() -> str | None:
    """The S3 endpoint override from the environment (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), or None."""
    for name in ENDPOINT_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value.rstrip("/")
    return None


def _s3_config() -> dict[str, Any]:
    endpoint = s3_endpoint()
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    if endpoint:
        config["endpoint"] = endpoint
        config["virtual_hosted_style_request"] = False
        if endpoint.startswith("http://"):
            client["allow_http"] = True
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        config["region"] = region
    return {"config": config, "client_options": client}


_STORES: dict[tuple[str, str, str], Any] = {}
_STORES_LOCK = threading.Lock()


def _s3(bucket: str, prefix: str | None = None) -> Any:
    """An obstore ``S3Store`` for ``bucket`` (cached per bucket, endpoint and key id when unprefixed)."""
    from obstore.store import S3Store

    options = _s3_config()
    if prefix:
        return S3Store(bucket, prefix=prefix, config=options["config"], client_options=options["client_options"])
    key = (bucket, options["config"].get("endpoint", ""), os.environ.get("AWS_ACCESS_KEY_ID", ""))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = S3Store(bucket, config=options["config"], client_options=options["client_options"])
            _STORES[key] = store
        return store


def _not_found(exc: BaseException) -> bool:
    return isinstance(exc, FileNotFoundError) or type(exc).__name__ == "NotFoundError"


def _storage_error(exc: BaseException, loc: Location, what: str) -> StorageError:
    endpoint = s3_endpoint() or "AWS"
    return StorageError(
        f"{what} {loc} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}); check "
        f"the bucket, the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the endpoint ({endpoint}; set "
        "AWS_ENDPOINT_URL for an S3-compatible store)"
    )


# ------------------------------------------------------------------------------------------------------ Location
@dataclass(frozen=True)
class Stat:
    """What :meth:`Location.stat` knows of a file or object."""

    size: int
    mtime_ns: int
    version: str

    @property
    def st_mtime_ns(self) -> int:  # what os.stat_result callers read
        return self.mtime_ns

    @property
    def st_size(self) -> int:
        return self.size

    @property
    def token(self) -> int:
        """An integer that changes whenever the content is rewritten: the modification time on disk, a hash of the
        etag on S3 (whose modification times have one-second resolution)."""
        if "-" in self.version and self.version.split("-")[0].isdigit():
            return self.mtime_ns
        import hashlib

        return int(hashlib.sha1(self.version.encode()).hexdigest()[:15], 16)


def _local_version(st: os.stat_result) -> str:
    """A file's identity: a new version for every file written (inode), and for an in-place change (mtime)."""
    return f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"


class Location:
    """A local path or an ``s3://`` URL (see the module docstring). Immutable; compare and hash by URL."""

    __slots__ = ("bucket", "key", "scheme")

    def __init__(self, scheme: str, bucket: str, key: str) -> None:
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "bucket", bucket)
        object.__setattr__(self, "key", key)

    def __setattr__(self, name: str, value: Any) -> None:  # pragma: no cover - immutability
        raise AttributeError("Location is immutable")

    def __reduce__(self):
        return (Location, (self.scheme, self.bucket, self.key))

    # -- identity ------------------------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def url(self) -> str:
        """``s3://bucket/key`` or the local path as given."""
        if self.is_local:
            return self.key
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    @property
    def path(self) -> Path:
        """The local path (:class:`StorageError` for an object-store URL: say what needs a local file)."""
        if not self.is_local:
            raise StorageError(f"{self.url} is not a local path")
        return Path(self.key)

    def __fspath__(self) -> str:
        if not self.is_local:  # never hand an s3:// URL to code that would create a local file of that name
            raise TypeError(f"{self.url} is an object-store URL, not a local path")
        return self.key

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, os.PathLike)) and not isinstance(other, Location):
            try:
                other = location(other)
            except (StorageError, TypeError):
                return False
        if not isinstance(other, Location):
            return NotImplemented
        if self.is_local and other.is_local:  # relative and absolute spellings of one path are one location
            return os.path.abspath(self.key) == os.path.abspath(other.key)
        return (self.scheme, self.bucket, self.key) == (other.scheme, other.bucket, other.key)

    def __hash__(self) -> int:
        return hash((self.scheme, self.bucket, os.path.abspath(self.key) if self.is_local else self.key))

    # -- path algebra --------------------------------------------------------------------------------------------
    def __truediv__(self, name: str | os.PathLike[str]) -> Location:
        name = os.fspath(name)
        if self.is_local:
            return Location("file", "", str(Path(self.key) / name))
        parts = [p for p in PurePosixPath(name).parts if p not in ("", "/")]
        if any(p == ".." for p in parts):
            raise StorageError(f"{name!r} would leave {self.url}")
        key = "/".join([self.key, *parts]) if self.key else "/".join(parts)
        return Location("s3", self.bucket, key)

    joinpath = __truediv__

    @property
    def name(self) -> str:
        return Path(self.key).name if self.is_local else PurePosixPath(self.key).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> Location:
        if self.is_local:
            return Location("file", "", str(Path(self.key).parent))
        return Location("s3", self.bucket, str(PurePosixPath(self.key).parent).lstrip(".").strip("/"))

    def with_name(self, name: str) -> Location:
        return self.parent / name

    def relative_to(self, other: Location) -> str:
        if self.is_local != other.is_local or self.bucket != other.bucket:
            raise ValueError(f"{self} is not under {other}")
        if self.is_local:
            return os.path.relpath(self.key, other.key)
        if other.key and not (self.key == other.key or self.key.startswith(other.key + "/")):
            raise ValueError(f"{self} is not under {other}")
        return self.key[len(other.key):].lstrip("/")

    # -- reading -------------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        if self.is_local:
            return self.path.exists()
        return self.is_file() or self.is_dir()

    def is_file(self) -> bool:
        if self.is_local:
            return self.path.is_file()
        return self._head() is not None

    def is_dir(self) -> bool:
        """On S3: any object under ``key/``."""
        if self.is_local:
            return self.path.is_dir()
        import obstore

        try:
            stream = obstore.list(_s3(self.bucket), prefix=self._prefix(), chunk_size=1)
            for batch in stream:
                return bool(batch)
        except Exception as e:
            raise _storage_error(e, self, "listing") from e
        return False

    def _prefix(self) -> str:
        return f"{self.key}/" if self.key else ""

    def _head(self) -> dict[str, Any] | None:
        import obstore

        try:
            return obstore.head(_s3(self.bucket), self.key)
        except Exception as e:
            if _not_found(e):
                return None
            raise _storage_error(e, self, "reading") from e

    def read_bytes(self) -> bytes:
        """The whole file or object; :class:`FileNotFoundError` if there is none."""
        if self.is_local:
            return self.path.read_bytes()
        return self.read_versioned()[0]

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def read_versioned(self) -> tuple[bytes, str]:
        """``(content, version)`` read together (the version to pass to :meth:`put_if_match`)."""
        if self.is_local:
            with open(self.key, "rb") as fh:
                st = os.fstat(fh.fileno())
                return fh.read(), _local_version(st)
        import obstore

        try:
            result = obstore.get(_s3(self.bucket), self.key)
            data = bytes(result.bytes())
        except Exception as e:
            if _not_found(e):
                raise FileNotFoundError(errno.ENOENT, "no such object", self.url) from None
            raise _storage_error(e, self, "reading") from e
        return data, str(result.meta.get("e_tag") or "")

    def iter_bytes(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The content in pieces (a file read block by block, an object streamed), for hashing large files
        without holding them in memory; :class:`FileNotFoundError` if there is none."""
        if self.is_local:
            with open(self.key, "rb") as fh:
                while block := fh.read(chunk_size):
                    yield block
            return
        import obstore

        try:
            result = obstore.get(_s3(self.bucket), self.key)
        except Exception as e:
            if _not_found(e):
                raise FileNotFoundError(errno.ENOENT, "no such object", self.url) from None
            raise _storage_error(e, self, "reading") from e
        for block in result.stream(min_chunk_size=chunk_size):
            yield bytes(block)

    def stat(self) -> Stat:
        if self.is_local:
            st = self.path.stat()
            return Stat(st.st_size, st.st_mtime_ns, _local_version(st))
        head = self._head()
        if head is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", self.url)
        modified = head.get("last_modified")
        mtime = int(modified.timestamp() * 1e9) if modified is not None else 0
        return Stat(int(head.get("size") or 0), mtime, str(head.get("e_tag") or ""))

    def version(self) -> str | None:
        """The current version (etag, or the file's identity on disk), None if there is no such file."""
        try:
            return self.stat().version
        except FileNotFoundError:
            return None

    def iterdir(self) -> Iterator[Location]:
        """Children (files and folders) in name order."""
        if self.is_local:
            if not self.path.is_dir():
                return iter(())
            return iter(sorted((Location("file", "", str(p)) for p in self.path.iterdir()), key=lambda x: x.key))
        import obstore

        try:
            listing = obstore.list_with_delimiter(_s3(self.bucket), prefix=self._prefix() or None)
        except Exception as e:
            raise _storage_error(e, self, "listing") from e
        keys = {p.rstrip("/") for p in listing["common_prefixes"]}
        keys |= {o["path"] for o in listing["objects"]}
        return iter([Location("s3", self.bucket, k) for k in sorted(keys)])

    def walk_files(self) -> list[Location]:
        """Every file under this folder (recursively), in name order."""
        if self.is_local:
            if not self.path.is_dir():
                return []
            return sorted((Location("file", "", str(p)) for p in self.path.rglob("*") if p.is_file()),
                          key=lambda x: x.key)
        return [Location("s3", self.bucket, o["path"]) for o in self._list_objects()]

    def listing(self) -> dict[str, str]:
        """Every file under this folder (recursively) with its version, by path relative to the folder: one
        listing on S3 (etags), no request per file."""
        if self.is_local:
            return {f.relative_to(self): f.stat().version for f in self.walk_files()}
        start = len(self._prefix())
        return {o["path"][start:]: str(o.get("e_tag") or "") for o in self._list_objects()}

    def _list_objects(self) -> list[dict[str, Any]]:
        import obstore

        try:
            return [o for batch in obstore.list(_s3(self.bucket), prefix=self._prefix()) for o in batch]
        except Exception as e:
            raise _storage_error(e, self, "listing") from e

    # -- writing -------------------------------------------------------------------------------------------------
    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """Create the folder on disk (object stores have no folders: nothing to do)."""
        if self.is_local:
            try:
                self.path.mkdir(parents=parents, exist_ok=exist_ok)
            except OSError as e:
                raise output_error(e, self) or e

    def write_bytes(self, data: bytes) -> None:
        """Replace the content atomically: a reader sees the old content or the new, never a part."""
        if self.is_local:
            self.parent.mkdir()
            tmp = temp_sibling(self.path)
            try:
                tmp.write_bytes(data)
                rename_into_place(tmp, self.path)
            except OSError as e:
                raise output_error(e, self, needed=len(data)) or e
            finally:
                tmp.unlink(missing_ok=True)
            return
        self._put(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def _put(self, data: bytes | Path, mode: Any = None) -> dict[str, Any]:
        import obstore

        payload: Any = data.read_bytes() if isinstance(data, Path) else data
        kwargs: dict[str, Any] = {"use_multipart": False}
        if mode is not None:
            kwargs["mode"] = mode
        try:
            return obstore.put(_s3(self.bucket), self.key, payload, **kwargs)
        except Exception as e:
            name = type(e).__name__
            if mode is not None and name in ("AlreadyExistsError", "PreconditionError"):
                raise _Conflict from e
            raise _storage_error(e, self, "writing") from e

    def upload(self, local_file: Path) -> Location:
        """Publish a finished local file here: a rename (or copy + rename) on disk, one PUT on S3."""
        local_file = Path(local_file)
        if self.is_local:
            self.parent.mkdir()
            try:
                rename_into_place(local_file, self.path)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise output_error(e, self, needed=local_file.stat().st_size) or e
                sibling = temp_sibling(self.path)
                try:
                    shutil.copyfile(local_file, sibling)
                    rename_into_place(sibling, self.path)
                except OSError as e2:
                    raise output_error(e2, self, needed=local_file.stat().st_size) or e2
                finally:
                    sibling.unlink(missing_ok=True)
            return self
        self._put(local_file)
        return self

    def put_if_absent(self, data: bytes) -> str | None:
        """Create with ``data`` only if nothing is there; the new version, or None if something was."""
        if self.is_local:
            self.parent.mkdir()
            tmp = temp_sibling(self.path)
            try:
                tmp.write_bytes(data)
                try:
                    os.link(tmp, self.key)  # atomic, and the file is complete when its name appears
                except FileExistsError:
                    return None
                return _local_version(os.stat(self.key))
            except OSError as e:
                raise output_error(e, self) or e
            finally:
                tmp.unlink(missing_ok=True)
        try:
            return str(self._put(data, mode="create").get("e_tag") or "")
        except _Conflict:
            return None

    def put_if_match(self, data: bytes, version: str) -> str | None:
        """Replace only if the current version is ``version``; the new version, or None if it was not.

        On disk: compare-and-rename under a guard file created with ``O_EXCL`` (held for the comparison and the
        rename only, microseconds; a guard left by a killed process is broken after 10 s); the file's identity
        (inode, modification time, size) is its version.
        """
        if self.is_local:
            return self._local_put_if_match(data, version)
        try:
            return str(self._put(data, mode={"e_tag": version}).get("e_tag") or "")
        except _Conflict:
            return None
        except StorageError:
            if not self.is_file():
                return None
            raise

    def _local_put_if_match(self, data: bytes, version: str) -> str | None:
        path = self.path
        if self.version() != version:  # cheap check first: a stale version never touches the file
            return None
        tmp = temp_sibling(path)
        guard = path.with_name(f".{path.name}{CAS_GUARD}")
        try:
            tmp.write_bytes(data)
            if not _take_guard(guard):
                return None
            try:
                if self.version() != version:
                    return None
                rename_into_place(tmp, path)  # the name always points at a complete file: readers never see a gap
                return _local_version(path.stat())
            finally:
                guard.unlink(missing_ok=True)
        except OSError as e:
            raise output_error(e, self) or e
        finally:
            tmp.unlink(missing_ok=True)

    def unlink(self, missing_ok: bool = True) -> None:
        if self.is_local:
            try:
                self.path.unlink(missing_ok=missing_ok)
            except IsADirectoryError:
                shutil.rmtree(self.path)
            return
        import obstore

        try:
            obstore.delete(_s3(self.bucket), self.key)
        except Exception as e:
            if _not_found(e) and missing_ok:
                return
            raise _storage_error(e, self, "deleting") from e

    def rmtree(self) -> None:
        """Remove the folder (every object under ``key/`` on S3) and a file of this name."""
        if self.is_local:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)
            return
        import obstore

        keys = [o["path"] for o in self._list_objects()]
        store = _s3(self.bucket)
        try:
            for start in range(0, len(keys), 500):
                obstore.delete(store, keys[start:start + 500])
        except Exception as e:
            raise _storage_error(e, self, "deleting") from e
        self.unlink(missing_ok=True)

    def copy_to(self, dst: Location) -> None:
        """Copy a file (server-side on S3) to ``dst``, replacing it."""
        if self.is_local and dst.is_local:
            dst.parent.mkdir()
            sibling = temp_sibling(dst.path)
            try:
                shutil.copyfile(self.key, sibling)
                rename_into_place(sibling, dst.path)
            finally:
                sibling.unlink(missing_ok=True)
            return
        if not self.is_local and not dst.is_local and self.bucket == dst.bucket:
            import obstore

            try:
                obstore.copy(_s3(self.bucket), self.key, dst.key)
            except Exception as e:
                raise _storage_error(e, dst, "copying to") from e
            return
        if self.is_local:
            dst.upload_copy(self.path)
        else:
            dst.write_bytes(self.read_bytes())

    def upload_copy(self, local_file: Path) -> None:
        """Like :meth:`upload` but leaves ``local_file`` where it is."""
        if self.is_local:
            Location("file", "", str(local_file)).copy_to(self)
        else:
            self._put(Path(local_file))

    # -- other libraries -----------------------------------------------------------------------------------------
    def zarr_store(self, *, read_only: bool = False) -> Any:
        """What zarr 3 and xarray take as the store at this location: the path on disk, an
        :class:`zarr.storage.ObjectStore` on S3 (picklable: dask ships it to the workers)."""
        if self.is_local:
            return self.key
        import zarr.storage

        return zarr.storage.ObjectStore(_s3(self.bucket, prefix=self.key), read_only=read_only)

    @property
    def gdal_path(self) -> str:
        """The name GDAL/rasterio open (inside :func:`gdal_env`): the path, or ``/vsis3/bucket/key``."""
        return self.key if self.is_local else f"/vsis3/{self.bucket}/{self.key}"


class _Conflict(Exception):
    """A conditional write lost (internal)."""


CAS_GUARD = ".crofuse-cas"


def _take_guard(guard: Path, *, timeout: float = 2.0, stale: float = 10.0) -> bool:
    """Create ``guard`` exclusively (retrying up to ``timeout`` s); a guard older than ``stale`` s is broken."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return True
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > stale:
                    guard.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)


def location(value: str | os.PathLike[str] | Location) -> Location:
    """A :class:`Location` for a path, a ``file://`` URL or an ``s3://`` URL."""
    if isinstance(value, Location):
        return value
    if isinstance(value, os.PathLike):
        return Location("file", "", os.fspath(value))
    if not isinstance(value, str):
        raise TypeError(f"expected a path or URL, got {type(value).__name__}")
    text = value.strip()
    if "://" not in text:
        return Location("file", "", str(Path(text).expanduser()) if text.startswith("~") else text)
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"{value}: file:// URLs name a local path (file:///abs/path), not a host")
        return Location("file", "", unquote(parsed.path))
    if scheme in ("s3", "s3a"):
        if not parsed.netloc:
            raise StorageError(f"{value}: an S3 URL needs a bucket (s3://bucket/prefix)")
        return Location("s3", parsed.netloc, unquote(parsed.path).strip("/"))
    raise StorageError(f"{value}: unsupported URL scheme {scheme!r}; give a path, file:///path or s3://bucket/prefix")


def native(value: str | os.PathLike[str] | Location) -> Path | Location:
    """What a function that writes somewhere hands back: a :class:`~pathlib.Path` for a local location (what
    callers of the local-only API always got), the :class:`Location` for an object-store URL."""
    loc = location(value)
    return loc.path if loc.is_local else loc


def path_or_url(value: str | os.PathLike[str] | Location) -> Path | str:
    """How a config keeps a place: a :class:`~pathlib.Path` for a local path (``file://`` URLs too), the URL string
    for object storage (``Path("s3://b/k")`` would fold the ``//``). Raises :class:`StorageError` for an
    unsupported URL."""
    loc = location(value)
    return loc.path if loc.is_local else loc.url


def canonical(value: str | os.PathLike[str] | Location) -> str:
    """How a place is recorded (provenance, resume keys): the absolute path on disk, the URL on object storage."""
    loc = location(value)
    return str(loc.path.resolve()) if loc.is_local else loc.url


def is_url(value: str | os.PathLike[str] | Location) -> bool:
    """Is ``value`` an object-store URL (not a local path)?"""
    return not location(value).is_local


# ------------------------------------------------------------------------------------------------------ GDAL
def gdal_options() -> dict[str, str]:
    """GDAL configuration for ``/vsis3/`` with the endpoint of the environment (credentials GDAL reads itself).

    ``CPL_VSIL_CURL_NON_CACHED`` keeps GDAL from serving a replaced object from its cache."""
    options = {"CPL_VSIL_CURL_NON_CACHED": "/vsis3/", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    endpoint = s3_endpoint()
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(AWS_S3_ENDPOINT=parsed.netloc, AWS_HTTPS="NO" if parsed.scheme == "http" else "YES",
                       AWS_VIRTUAL_HOSTING="FALSE")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["AWS_REGION"] = region
    return options


@contextlib.contextmanager
def gdal_env() -> Iterator[None]:
    """A ``rasterio.Env`` in which :attr:`Location.gdal_path` of an ``s3://`` location opens."""
    import rasterio

    with rasterio.Env(**gdal_options()):
        yield


# ------------------------------------------------------------------------------------------------------ errors
def _mount_of(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _free_mb(path: Path) -> float | None:
    try:
        return shutil.disk_usage(_mount_of(path)).free / 1e6
    except OSError:
        return None


def output_error(exc: BaseException, target: Location | Path | str, *, needed: int | None = None,
                 scratch: Path | None = None) -> OutputWriteError | None:
    """One line for a write that failed on the output's side (full disk, read-only, permission), or None.

    ``target`` is what was being written; ``scratch`` the local temporary file system when the failure happened
    there; ``needed`` the bytes the write needs (an estimate)."""
    if isinstance(exc, OutputWriteError):
        return exc
    code = getattr(exc, "errno", None)
    text = str(exc)
    full = code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text
    where = Path(scratch) if scratch is not None else (
        location(target).path if location(target).is_local else None)
    if not full and where is not None and ("IO error" in text or "Write error" in text or "write" in text.lower()):
        free = _free_mb(where)
        full = free is not None and needed is not None and free * 1e6 < needed
    if full:
        mount = _mount_of(where) if where is not None else None
        free = _free_mb(where) if where is not None else None
        details = [f"needs ~{max(1, round(needed / 1e6))} MB"] if needed else []
        if free is not None:
            details.append(f"{free:.0f} MB free")
        paren = f" ({', '.join(details)})" if details else ""
        hint = (f"; free space there or point {TMPDIR_ENV} at a larger folder" if scratch is not None
                else "; free space there or give another output")
        return OutputWriteError(f"no space left on {mount or target} writing {target}{paren}{hint}")
    if code == errno.EROFS:
        mount = _mount_of(where) if where is not None else target
        return OutputWriteError(f"cannot write {target}: {mount} is a read-only file system; give a writable output")
    if code in (errno.EACCES, errno.EPERM):
        return OutputWriteError(f"cannot write {target}: permission denied ({getattr(exc, 'filename', '') or target});"
                                " give an output folder this user can write")
    return None


def check_writable(folder: Location) -> None:
    """Fail at once, in one line, when ``folder`` cannot be written (before any work is done for it)."""
    if folder.is_local:
        probe_dir = folder.path
        try:
            probe_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{TEMP_MARK.strip('.')}probe-", dir=probe_dir)
            os.close(fd)
            os.unlink(name)
        except OSError as e:
            raise output_error(e, folder) or OutputWriteError(f"cannot write {folder}: {e}") from None
        return
    probe = folder / f".crofuse-probe-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    probe.write_bytes(b"")
    probe.unlink()


# ------------------------------------------------------------------------------------------------------ temp space
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_gone(name: str, mtime: float) -> bool:
    """A temporary name ``...HOST-PID-RAND``: is its process gone (this host), or is it a day old (elsewhere)?"""
    parts = name.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit():
        if parts[0].endswith(HOST):
            return not _pid_alive(int(parts[1]))
    return time.time() - mtime > _STALE_SECONDS


def rename_into_place(src: Path | str, dst: Path | str) -> None:
    """Rename a finished local file or folder ``src`` onto ``dst``, replacing a file there (atomic within one file
    system). The one rename of crofuse: atomic writes (:meth:`Location.write_bytes`, :func:`atomic_file`),
    publication on disk (:mod:`crofuse.layout`) and folder swaps with no object-store meaning (a local cache, a
    patch set built under a temporary name) all end here."""
    os.replace(src, dst)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str] | Location) -> Iterator[Path]:
    """A local path to write ``target`` through with a library that writes files by name (rasterio, matplotlib,
    numpy, safetensors): on disk a hidden temporary sibling (the suffix kept, so ``savefig`` and ``np.savez`` see
    the format), renamed onto ``target`` when the block ends; on S3 a file in worker-local temporary space, sent
    in one PUT. If the block raises, nothing reaches ``target`` and the temporary file is removed::

        with atomic_file(out / "quicklook.png") as tmp:
            fig.savefig(tmp)
    """
    loc = location(target)
    if not loc.is_local:
        with scratch_dir(f"write-{loc.stem}") as scratch:
            tmp = scratch / loc.name
            yield tmp
            loc._put(tmp)
        return
    loc.parent.mkdir()
    sibling = temp_sibling(loc.path)
    tmp = sibling.with_name(sibling.name + loc.suffix)
    try:
        yield tmp
        rename_into_place(tmp, loc.path)
    except OSError as e:
        raise output_error(e, loc) or e
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def temp_sibling(path: Path) -> Path:
    """A hidden temporary name next to ``path`` for an atomic write (same file system: the rename is atomic)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def clean_temp_siblings(folder: Location | Path) -> list[Path]:
    """Remove the temporary siblings of atomic writes in ``folder`` whose process is gone; returns them."""
    loc = location(folder)
    if not loc.is_local or not loc.path.is_dir():
        return []
    removed = []
    for p in loc.path.iterdir():
        if TEMP_MARK in p.name or p.name.endswith(CAS_GUARD):
            with contextlib.suppress(OSError):
                if _owner_gone(p.name, p.lstat().st_mtime) if TEMP_MARK in p.name else (
                        time.time() - p.lstat().st_mtime > 60):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                    removed.append(p)
    return removed


def scratch_root() -> Path:
    """The worker-local temporary folder (``$CROFUSE_TMPDIR`` or the system's)."""
    root = Path(os.environ.get(TMPDIR_ENV) or tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    return root


def clean_scratch() -> list[Path]:
    """Remove the scratch folders of this host's processes that are gone (and any a day old); returns them."""
    removed = []
    root = scratch_root()
    for p in root.glob(f"{_SCRATCH_PREFIX}-*"):
        with contextlib.suppress(OSError):
            if _owner_gone(p.name, p.lstat().st_mtime):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


@contextlib.contextmanager
def scratch_dir(label: str = "") -> Iterator[Path]:
    """A private folder in worker-local temporary space for one write, removed afterwards whatever happens.

    Creating one first removes those left by processes of this host that are gone (a killed write)."""
    clean_scratch()
    safe = "".join(c if c.isalnum() else "_" for c in label)[:40]
    folder = scratch_root() / f"{_SCRATCH_PREFIX}-{safe}-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = [
    "ENDPOINT_ENVS",
    "TEMP_MARK",
    "TMPDIR_ENV",
    "Location",
    "Stat",
    "atomic_file",
    "cached_copy",
    "cached_tree",
    "canonical",
    "check_writable",
    "clean_scratch",
    "clean_temp_siblings",
    "gdal_env",
    "gdal_options",
    "is_url",
    "location",
    "native",
    "output_error",
    "path_or_url",
    "rename_into_place",
    "s3_endpoint",
    "scratch_dir",
    "scratch_root",
    "temp_sibling",
]


# ------------------------------------------------------------------------------------------------------ local copies
def cached_copy(url: str | os.PathLike[str] | Location) -> Path:
    """A local copy of a file at ``url`` (a checkpoint on S3), fetched once per version into worker-local temporary
    space (``<tmp>/crofuse-cache/``) and reused while the object is unchanged; a local path is returned as is.

    Raises :class:`FileNotFoundError` when there is no such object."""
    import hashlib

    loc = location(url)
    if loc.is_local:
        return loc.path
    version = loc.version()
    if version is None:
        raise FileNotFoundError(errno.ENOENT, "no such object", loc.url)
    key = hashlib.sha256(f"{loc.url}\n{version}".encode()).hexdigest()[:24]
    folder = scratch_root() / "crofuse-cache" / key
    target = folder / loc.name
    if target.is_file():
        return target
    data, _ = loc.read_versioned()
    Location("file", "", str(target)).write_bytes(data)
    return target


CACHE_DIR = "crofuse-cache"
"""Folder of :func:`cached_copy` and :func:`cached_tree` under the worker-local temporary folder."""


def cached_tree(root: str | os.PathLike[str] | Location, names: Iterable[str], *, key: str, progress: bool = False,
                threads: int = 8) -> Path:
    """A local copy of the files ``names`` (paths relative to ``root``, e.g. the patches of a training set on S3),
    fetched into worker-local temporary space (``<tmp>/crofuse-cache/<key>/``) and reused while ``key`` is the same;
    a local ``root`` is returned as is.

    ``key`` must change whenever the content does (a training set's key is the hash of its ``patches.json``, which
    names every patch and the identity of every cube they were cut from). Every file is written whole under its
    name (temporary sibling + rename), and the folder's ``.complete`` marker last, so an interrupted fetch resumes
    where it stopped and a half-fetched copy is never used. Raises :class:`FileNotFoundError` for a missing file."""
    from concurrent.futures import ThreadPoolExecutor

    loc = location(root)
    if loc.is_local:
        return loc.path
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in key)[:64]
    folder = scratch_root() / CACHE_DIR / safe
    done = folder / ".complete"
    if done.is_file():
        return folder
    wanted = sorted(set(names))

    def fetch(name: str) -> None:
        target = folder / name
        if not target.is_file():  # a file already under its name is whole (written by rename)
            Location("file", "", str(target)).write_bytes((loc / name).read_bytes())

    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for _ in tqdm(pool.map(fetch, wanted), total=len(wanted), desc=f"fetching {loc.url}", unit="file",
                      disable=not progress):
            pass
    Location("file", "", str(done)).write_text(f"{loc.url}\n{len(wanted)} files\n")
    return folder
