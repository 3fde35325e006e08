"""The composition root of the ``crofuse`` command line (the console script).

``crofuse`` (the library), ``tiling`` (tiled inference) and ``infra`` (servers, clusters, signals) each contribute
commands; only this package imports all of them, and nothing imports it. See :mod:`crofuse_cli.app` for the app and
:mod:`crofuse_cli.exits` for the exit codes.
"""

from crofuse_cli.app import app, main
from crofuse_cli.exits import ExitCode

__all__ = ["ExitCode", "app", "main"]
