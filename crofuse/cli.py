"""The ``crofuse`` command line. Each area registers its own commands; heavy imports happen inside commands."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    help="crofuse: urban impervious-surface mapping with CroFuseNet (Sentinel-1 + Sentinel-2).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# (module, what it adds). Each module exposes ``register(app: typer.Typer) -> None``.
_COMMAND_MODULES = (
    "crofuse.training.cli",  # train, evaluate, info
    "crofuse.synthetic.cli",  # sample-catalog build/serve
    "crofuse.trainingset.cli",  # training-set build/info
    "crofuse.cube.cli",  # cube
    "tiling.cli",  # predict
    "crofuse.experiments.cli",  # experiments run/report
    "crofuse.statistics.cli",  # statistics consolidate/update/sample
    "infra.products_cli",  # products build/serve (serve starts rustac: infra)
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


@app.command()
def version() -> None:
    """Print the crofuse version."""
    from crofuse import __version__

    typer.echo(__version__)


if __name__ == "__main__":  # pragma: no cover
    app()
