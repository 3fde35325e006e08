"""``crofuse products build|serve``: the products collection of a map output root (docs/products.md).

Registered in ``crofuse.cli`` like ``tiling.cli``. It lives in ``infra`` because ``serve`` starts a server
(``rustac serve`` through :class:`infra.stac.StacServer`), and ``crofuse`` never imports ``infra``; ``build`` is
library code (:func:`crofuse.products.publish`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

products_app = typer.Typer(
    help="Products as STAC: every finished city-year of a map output root as an item of one collection.",
    no_args_is_help=True,
)

_OUT = Annotated[Path, typer.Argument(help="map output root (the flows' `output`, e.g. demo-output/maps)")]


@products_app.command("build")
def build(
    out: _OUT,
    city: Annotated[list[str] | None, typer.Option("--city", help="rebuild only this city's items (repeatable); "
                                                   "the others are read from disk")] = None,
    collection_id: Annotated[str, typer.Option("--collection-id", help="id of the collection")] = "crofuse-impervious",
    license: Annotated[str, typer.Option("--license", help="SPDX id of the products' licence, or 'other'")] = "other",
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="validate every item and the "
                                           "collection (core schemas + extension fields, offline)")] = True,
) -> None:
    """Write <city>/<year>/item.json for every finished city-year and OUT/collection.json (idempotent: unchanged
    files are not rewritten)."""
    import json

    from crofuse.errors import CrofuseError
    from crofuse.products import ProductsConfig, publish
    from crofuse.products import validate as validate_stac

    try:
        report = publish(out, cities=city or None, config=ProductsConfig(collection_id=collection_id,
                                                                        license=license))
        if validate:
            for path in [*report.items, report.collection]:
                validate_stac(json.loads(path.read_text()))
    except CrofuseError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    for folder, reason in report.skipped.items():
        typer.echo(f"warning: {folder}: no item: {reason}", err=True)
    typer.echo(report.summary() + (" (validated)" if validate else ""))


@products_app.command("serve")
def serve(
    out: _OUT,
    port: Annotated[int | None, typer.Option("--port", help="Port on 127.0.0.1 (default: a free one).")] = None,
    href_base: Annotated[str | None, typer.Option(
        "--href-base", help="serve asset hrefs as this URL + their path under OUT (default: local file paths)")] = None,
) -> None:
    """Serve OUT's collection (built by `crofuse products build`) as a STAC API on 127.0.0.1 with `rustac serve`
    until Ctrl-C or SIGTERM (exit code 0).

    rustac hands hrefs out as they are, and the items' hrefs are relative to their folder: the server loads a copy
    (in a temporary folder) whose asset hrefs are absolute paths under OUT, or URLs under --href-base."""
    import tempfile
    import time

    from crofuse.errors import CrofuseError
    from crofuse.products import export_collection
    from infra.process import stop_on_signals
    from infra.stac import StacServer

    try:
        with tempfile.TemporaryDirectory(prefix="crofuse-products-") as tmp:
            export_collection(out, Path(tmp), href_base=href_base)
            with stop_on_signals(), StacServer(tmp, port=port) as server:
                typer.echo(f"STAC API at {server.url} (collections: {', '.join(server.collections)}); "
                           "Ctrl-C stops it")
                while server.running:
                    time.sleep(0.5)
                typer.echo("error: the STAC server stopped unexpectedly", err=True)
                raise typer.Exit(1)
    except CrofuseError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (infra.process.Interrupted): rustac is stopped by now, exit 0
        typer.echo("stopped")


def register(app: typer.Typer) -> None:
    """Add ``crofuse products`` to the ``crofuse`` app."""
    app.add_typer(products_app, name="products")


__all__ = ["products_app", "register"]
