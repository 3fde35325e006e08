"""The ``crofuse`` app: every package's commands, the one error handler, signal handling and the injected services.

This is the only module that knows every package: it registers the library's commands (:mod:`crofuse.cli`),
``crofuse predict`` (:mod:`tiling.cli`) and the two ``serve`` commands (:mod:`crofuse_cli.serve`, ``infra``'s
``rustac``), and lends the library a STAC server (:class:`crofuse.cli.Services`). Around every command it installs
:func:`infra.process.stop_on_signals` (SIGTERM runs the same cleanup as Ctrl-C) and :func:`crofuse_cli.exits.handle`
(one ``error:`` line, a documented exit code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import crofuse.cli
import crofuse.products.cli
import crofuse.synthetic.cli
import tiling.cli
from crofuse.cli import Services
from crofuse_cli import serve
from crofuse_cli.exits import handle

__all__ = ["RootGroup", "app", "main"]


def _serve_catalog(root: Path) -> Any:
    from infra.stac import StacServer

    return StacServer(root)


class RootGroup(TyperGroup):
    """The root command: runs the chosen command under the signal handlers and the one error handler."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        from infra.process import stop_on_signals

        try:
            with stop_on_signals():
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own: --help, usage errors (exit 2), explicit exits
        except (Exception, KeyboardInterrupt) as exc:  # the one handler; KeyboardInterrupt: Ctrl-C or SIGTERM,
            # after the commands' cleanup ran
            raise typer.Exit(int(handle(exc, debug=bool(ctx.params.get("debug"))))) from exc


app = typer.Typer(
    cls=RootGroup,
    help=(
        "crofuse: urban impervious-surface mapping with CroFuseNet (Sentinel-1 + Sentinel-2).\n\n"
        "Exit codes: 0 ok, 1 a crofuse error (bad data, a refused run, an unwritable file), 2 a usage or "
        "configuration error, 3 a catalog, service or network error, 70 a bug, 130 Ctrl-C, 143 SIGTERM."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", envvar="CROFUSE_DEBUG",
                                        help="Print the traceback of an error (also CROFUSE_DEBUG=1).")] = False,
) -> None:
    if ctx.obj is None:
        ctx.obj = Services(serve_catalog=_serve_catalog)


crofuse.synthetic.cli.sample_app.command("serve")(serve.sample_catalog_serve)
crofuse.products.cli.products_app.command("serve")(serve.products_serve)
crofuse.cli.register(app)
tiling.cli.register(app)
app.command("version")(crofuse.cli.version)


def main(argv: list[str] | None = None) -> None:
    """The console script ``crofuse``: run the app and exit with its code (:class:`crofuse_cli.exits.ExitCode`)."""
    app(args=argv, prog_name="crofuse")


if __name__ == "__main__":  # pragma: no cover
    main()
