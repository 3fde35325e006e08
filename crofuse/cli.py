"""The library's side of the ``crofuse`` command line: its command modules and what the composition root lends them.

The ``crofuse`` app itself, its one error handler, the exit codes and the signal handling live in the composition
root, :mod:`crofuse_cli` (the console script), because it also registers ``tiling``'s and ``infra``'s commands, and
``crofuse`` never imports ``tiling``, ``flows`` or ``infra`` (docs/architecture.md "The command line").

A command module exposes ``register(app: typer.Typer) -> None``. Its commands just raise: a
:class:`~crofuse.errors.CrofuseError` (or an ``OSError``) becomes one ``error:`` line and a documented exit code in
the root. A command that needs a part only the root can build (a STAC server) takes a ``typer.Context`` and asks
:func:`services` for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

__all__ = ["COMMAND_MODULES", "Services", "register", "services", "version"]

# (module, what it adds). Heavy imports happen inside the commands.
COMMAND_MODULES = (
    "crofuse.training.cli",  # train, evaluate, calibrate, info
    "crofuse.synthetic.cli",  # sample-catalog build (the root adds serve)
    "crofuse.trainingset.cli",  # training-set build/info
    "crofuse.cube.cli",  # cube
    "crofuse.experiments.cli",  # experiments run/report
    "crofuse.statistics.cli",  # statistics consolidate/update/sample
    "crofuse.products.cli",  # products build (the root adds serve)
)


@dataclass(frozen=True)
class Services:
    """What the composition root lends the library's commands (as ``ctx.obj`` of the root command)."""

    serve_catalog: Callable[[Path], AbstractContextManager[Any]] | None = None
    """``serve_catalog(root)``: a context manager serving a STAC catalog folder, whose value has ``.url``
    (:class:`infra.stac.StacServer`); ``crofuse experiments run`` serves the sample catalog with it."""


def services(ctx: typer.Context) -> Services:
    """The :class:`Services` of the running ``crofuse`` app (none when a library app runs on its own)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Services) else Services()


def version() -> None:
    """Print the crofuse version."""
    from crofuse import __version__

    typer.echo(__version__)


def register(app: typer.Typer) -> None:
    """Add every library command (:data:`COMMAND_MODULES`) to ``app`` (the root adds :func:`version` last)."""
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
