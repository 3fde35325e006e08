"""The commands that run a server: ``crofuse sample-catalog serve`` and ``crofuse products serve``.

They live in the composition root because they start ``rustac serve`` (:class:`infra.stac.StacServer`), and
``crofuse`` never imports ``infra``. The root's signal handling (:func:`infra.process.stop_on_signals`, installed
around every command) turns SIGTERM into the same ``KeyboardInterrupt`` as Ctrl-C, so both stop the server; for a
server that is the normal end, and the exit code is 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from crofuse.errors import ServiceError

__all__ = ["products_serve", "sample_catalog_serve", "serve_stac"]

Port = Annotated[int | None, typer.Option("--port", help="Port on 127.0.0.1 (default: a free one).")]


def serve_stac(root: Path | str, port: int | None) -> None:
    """Serve the STAC catalog(s) under ``root`` with ``rustac serve`` on 127.0.0.1 until Ctrl-C or SIGTERM.

    Returns after printing ``stopped`` (rustac is stopped by then); raises :class:`ServiceError` when rustac
    stops on its own."""
    from infra.stac import StacServer

    try:
        with StacServer(root, port=port) as server:
            typer.echo(f"STAC API at {server.url} (collections: {', '.join(server.collections)}); Ctrl-C stops it")
            while server.running:
                time.sleep(0.5)
            raise ServiceError(f"the STAC server on {server.url} stopped unexpectedly; its output:\n"
                               f"{server.process.log_tail() if server.process is not None else '(none)'}")
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (infra.process.Interrupted): rustac is stopped by now
        typer.echo("stopped")


def sample_catalog_serve(
    out: Annotated[Path, typer.Argument(help="A folder written by `crofuse sample-catalog build`.")],
    port: Port = None,
) -> None:
    """Serve the catalog as a STAC API on 127.0.0.1 with `rustac serve` until Ctrl-C or SIGTERM (exit code 0)."""
    serve_stac(out, port)


def products_serve(
    out: Annotated[Path, typer.Argument(help="map output root (the flows' `output`, e.g. demo-output/maps)")],
    port: Port = None,
    href_base: Annotated[str | None, typer.Option(
        "--href-base", help="serve asset hrefs as this URL + their path under OUT (default: local file paths)")] = None,
) -> None:
    """Serve OUT's collection (built by `crofuse products build`) as a STAC API on 127.0.0.1 with `rustac serve`
    until Ctrl-C or SIGTERM (exit code 0).

    rustac hands hrefs out as they are, and the items' hrefs are relative to their folder: the server loads a copy
    (in a temporary folder) whose asset hrefs are absolute paths under OUT, or URLs under --href-base."""
    import tempfile

    from crofuse.products import export_collection

    with tempfile.TemporaryDirectory(prefix="crofuse-products-") as tmp:
        export_collection(out, Path(tmp), href_base=href_base)
        serve_stac(tmp, port)
