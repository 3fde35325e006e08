"""``crofuse experiments run SUITE`` and ``crofuse experiments report RESULTS``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

experiments_app = typer.Typer(
    help="Reproduce the paper's experiments (Tables II-IV, Figs. 9 and 11, transfer) on the sample benchmark.",
    no_args_is_help=True,
)


@experiments_app.command("run")
def run_command(
    ctx: typer.Context,
    suite: Annotated[str, typer.Argument(help="table2, ablation, loss, modality or transfer")],
    profile: Annotated[str, typer.Option(help="paper (IV-A recipe), cpu-small (2 cores, < 1 h) or micro (smoke test)")]
    = "cpu-small",
    seeds: Annotated[int, typer.Option(min=1, help="number of seeds (0..N-1) per method")] = 3,
    out: Annotated[Path, typer.Option(help="results folder")] = Path("results"),
    methods: Annotated[str | None, typer.Option(help="comma-separated subset of the suite's method keys")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where sample patch sets are cached (default OUT/_data)")]
    = None,
    source_root: Annotated[Path | None, typer.Option(help="train/test on this WHU-IS style folder instead")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (default: the profile's)")] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="training epochs instead of the profile's (renames the profile)")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(min=1, help="early-stop patience instead of the profile's (renames the profile)")
    ] = None,
    force: Annotated[bool, typer.Option(help="redo runs that already have a record")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train and evaluate every method of SUITE for each seed; one JSON record per run under OUT/SUITE/METHOD/.

    While patch sets are built, the sample catalog is served as a local STAC API (`rustac serve`)."""
    from crofuse.cli import services
    from crofuse.experiments.runner import run_suite

    paths = run_suite(
        suite, profile=profile, seeds=seeds, out=out,
        methods=[m.strip() for m in methods.split(",") if m.strip()] if methods else None,
        data_dir=data_dir, source_root=source_root, device=device, threads=threads, epochs=epochs,
        patience=patience, force=force, progress=progress, serve=services(ctx).serve_catalog,
    )
    typer.echo(f"{len(paths)} run records under {out / suite}")


@experiments_app.command("report")
def report_command(
    results: Annotated[Path, typer.Argument(help="results folder written by `crofuse experiments run`")],
    out: Annotated[Path | None, typer.Option(help="Markdown file (default RESULTS/report.md)")] = None,
    figure: Annotated[bool, typer.Option(help="also draw a Fig. 7-style PNG per suite from the checkpoints")] = True,
    patches: Annotated[int, typer.Option(min=1, help="test patches in each figure")] = 4,
) -> None:
    """Render Tables II, III, IV, the loss/modality/transfer tables (mean ± std over seeds) and figures."""
    from crofuse.experiments.figure import render_qualitative_figure
    from crofuse.experiments.records import load_records
    from crofuse.experiments.report import write_report

    figures = {}
    if figure:
        suites = sorted({r["suite"] for r in load_records(results)} - {"transfer"})
        for suite in suites:
            figures[suite] = render_qualitative_figure(results, suite, results / f"{suite}-qualitative.png",
                                                       n_patches=patches)
    path = write_report(results, out=out, figures=figures)
    typer.echo(f"report: {path}")
    for png in figures.values():
        typer.echo(f"figure: {png}")


def register(app: typer.Typer) -> None:
    """Add ``crofuse experiments run/report`` to the ``crofuse`` app."""
    app.add_typer(experiments_app, name="experiments")
