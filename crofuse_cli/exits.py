"""The ``crofuse`` exit codes and the one error handler of the command line.

Every command just raises; :func:`handle` turns what escaped into one ``error: <message>`` line on stderr and an
exit code from :class:`ExitCode` (README "Exit codes", docs/architecture.md "The command line"). ``--debug`` or
``CROFUSE_DEBUG=1`` prints the traceback above that line.
"""

from __future__ import annotations

import errno
import signal
import sys
import traceback
from enum import IntEnum

import typer

from crofuse.errors import CatalogError, ClusterError, ConfigError, CrofuseError, ServiceError

__all__ = ["ExitCode", "describe", "exit_code", "handle"]


class ExitCode(IntEnum):
    """What a ``crofuse`` exit status means. 130 and 143 are the shell's ``128 + signal``."""

    OK = 0
    """Done. Also a ``serve`` command stopped by Ctrl-C or SIGTERM: that is how a server ends."""
    FAILED = 1
    """A crofuse error: bad or missing data, a refused run (another run's settings in the folder, a checkpoint that
    does not match), a failed step; or a file that cannot be read or written (a read-only output, a full disk)."""
    USAGE = 2
    """The command line or a configuration value is wrong: typer's own usage errors, :class:`ConfigError`, a
    pydantic validation error. Change the options, not the data."""
    SERVICE = 3
    """Something outside the process failed: a STAC catalog (:class:`CatalogError`: search, signing, deadline,
    an empty search), a local service or dask cluster (:class:`ServiceError`, :class:`ClusterError`), the network.
    Check the URL or the service; a later retry may succeed."""
    BUG = 70
    """An unexpected exception: a bug in crofuse (the traceback is always printed; please report it). ``EX_SOFTWARE``
    of sysexits.h."""
    INTERRUPTED = 128 + signal.SIGINT
    """Ctrl-C (SIGINT), after the cleanup ran (started servers and clusters stopped, half-written outputs left
    unfinished, so a rerun redoes them)."""
    TERMINATED = 128 + signal.SIGTERM
    """SIGTERM (CI, systemd, Kubernetes), after the same cleanup as Ctrl-C."""


# errno values that mean "this file system will not take the write" (the path is named in the message)
_WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


def _is_network(exc: BaseException) -> bool:
    import socket
    import urllib.error

    return isinstance(exc, (*_NETWORK_ERRORS, urllib.error.URLError, socket.gaierror))


def _pydantic_error() -> type[BaseException] | None:
    module = sys.modules.get("pydantic")  # a pydantic error can only exist if pydantic was imported
    return getattr(module, "ValidationError", None) if module is not None else None


def exit_code(exc: BaseException) -> ExitCode:
    """The exit code of an exception that escaped a command (see :class:`ExitCode`)."""
    if isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, "signum", signal.SIGINT)  # infra.process.Interrupted carries the signal
        return ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    if isinstance(exc, (CatalogError, ServiceError, ClusterError)):
        return ExitCode.SERVICE
    if isinstance(exc, CrofuseError):
        return ExitCode.FAILED
    pydantic_error = _pydantic_error()
    if pydantic_error is not None and isinstance(exc, pydantic_error):
        return ExitCode.USAGE
    if isinstance(exc, OSError):
        return ExitCode.SERVICE if _is_network(exc) else ExitCode.FAILED
    return ExitCode.BUG


def _describe_os_error(exc: OSError) -> str:
    if _is_network(exc):
        reason = getattr(exc, "reason", None)  # urllib.error.URLError
        return f"network error: {reason if reason is not None else exc}"
    if exc.filename is None:
        return exc.strerror or str(exc) or type(exc).__name__
    what = exc.strerror or str(exc)
    if exc.filename2 is not None:
        return f"cannot move {exc.filename} to {exc.filename2}: {what}"
    verb = "cannot write" if exc.errno in _WRITE_ERRNOS else "cannot use"
    return f"{verb} {exc.filename}: {what}"


def _describe_validation_error(exc: BaseException) -> str:
    errors = exc.errors()  # type: ignore[attr-defined]
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in errors]
    return f"invalid {getattr(exc, 'title', 'value')}: " + "; ".join(parts)


def describe(exc: BaseException) -> str:
    """The message of the ``error:`` line: what was wrong (crofuse's messages also say what to do)."""
    if isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, "signum", signal.SIGINT)
        return f"stopped by {signal.Signals(signum).name}"
    if isinstance(exc, CrofuseError):
        return str(exc) or type(exc).__name__
    pydantic_error = _pydantic_error()
    if pydantic_error is not None and isinstance(exc, pydantic_error):
        return _describe_validation_error(exc)
    if isinstance(exc, OSError):
        return _describe_os_error(exc)
    return f"internal error (a bug, please report it with the traceback above): {type(exc).__name__}: {exc}"


def handle(exc: BaseException, *, debug: bool = False) -> ExitCode:
    """Print ``exc`` as one ``error:`` line on stderr (the traceback first with ``debug``, and always for a bug) and
    return its exit code. Continuation lines of a long message (a service's log tail) are indented, so every error
    starts with ``error:`` at the start of a line."""
    code = exit_code(exc)
    if debug or code is ExitCode.BUG:
        traceback.print_exception(exc, file=sys.stderr)
    message = describe(exc).replace("\n", "\n  ")
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return code
