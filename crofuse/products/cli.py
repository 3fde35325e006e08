"""``crofuse products build``: the products collection of a map output root (docs/products.md).

``crofuse products serve`` starts ``rustac serve`` (``infra``), so the composition root adds it to
:data:`products_app` (:mod:`crofuse_cli.serve`).
"""

from __future__ import annotations

from typing import Annotated

import typer

products_app = typer.Typer(
    help="Products as STAC: every finished city-year of a map output root as an item of one collection.",
    no_args_is_help=True,
)


@products_app.command("build")
def build(
    out: Annotated[str, typer.Argument(help="map output root (the flows' `output`, e.g. demo-output/maps, or "
                                          "s3://bucket/maps)")],
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

    from pystac.errors import STACValidationError

    from crofuse.errors import DataError
    from crofuse.products import ProductsConfig, publish
    from crofuse.products import validate as validate_stac

    report = publish(out, cities=city or None, config=ProductsConfig(collection_id=collection_id, license=license))
    if validate:
        for path in [*report.items, report.collection]:
            try:
                validate_stac(json.loads(path.read_text()))
            except STACValidationError as e:
                raise DataError(f"{path} is not valid STAC: {e}") from e
    for folder, reason in report.skipped.items():
        typer.echo(f"warning: {folder}: no item: {reason}", err=True)
    typer.echo(report.summary() + (" (validated)" if validate else ""))


def register(app: typer.Typer) -> None:
    """Add ``crofuse products`` to the ``crofuse`` app."""
    app.add_typer(products_app, name="products")


__all__ = ["products_app", "register"]
