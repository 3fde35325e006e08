"""``crofuse experiments run SUITE``, ``crofuse experiments program`` and ``crofuse experiments report RESULTS``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

experiments_app = typer.Typer(
    help="Reproduce the paper's experiments (Tables II-IV, Figs. 9 and 11, transfer, leave-one-city-out) on the "
         "sample benchmark.",
    no_args_is_help=True,
)

_Profile = Annotated[str, typer.Option(help="paper (IV-A recipe, GPU-sized), cpu-small (2 cores) or micro (smoke test)")]
_Seeds = Annotated[int, typer.Option(min=1, help="number of seeds (0..N-1) per method")]
_Out = Annotated[Path, typer.Option(help="results folder")]
_DataDir = Annotated[Path | None, typer.Option(help="where the sample catalog and patch sets are cached "
                                                     "(default OUT/_data)")]
_Device = Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")]
_Threads = Annotated[int | None, typer.Option(min=1, help="torch threads (default: the profile's)")]
_Epochs = Annotated[int | None, typer.Option(min=1, help="training epochs instead of the profile's (renames the "
                                                        "profile)")]
_Patience = Annotated[int | None, typer.Option(min=1, help="early-stop patience instead of the profile's (renames "
                                                          "the profile)")]
_Progress = Annotated[bool, typer.Option(help="show progress bars")]


@experiments_app.command("run")
def run_command(
    ctx: typer.Context,
    suite: Annotated[str, typer.Argument(help="table2, ablation, loss, modality, transfer or loco")],
    profile: _Profile = "cpu-small",
    seeds: _Seeds = 3,
    out: _Out = Path("results"),
    split: Annotated[str, typer.Option(help="blocked (default: no test pixel inside a training patch) or random "
                                            "(the paper's)")] = "blocked",
    methods: Annotated[str | None, typer.Option(help="comma-separated subset of the suite's method keys "
                                                     "(default: all but the optional ones)")] = None,
    data_dir: _DataDir = None,
    source_root: Annotated[Path | None, typer.Option(help="train/test on this WHU-IS style folder instead")] = None,
    device: _Device = "auto",
    threads: _Threads = None,
    epochs: _Epochs = None,
    patience: _Patience = None,
    force: Annotated[bool, typer.Option(help="redo runs that already have a record")] = False,
    progress: _Progress = True,
) -> None:
    """Train and evaluate every method of SUITE for each seed; one JSON record per run under OUT/SPLIT/SUITE/METHOD/.

    While patch sets are built, the sample catalog is served as a local STAC API (`rustac serve`)."""
    from crofuse.cli import services
    from crofuse.experiments.runner import run_suite

    paths = run_suite(
        suite, profile=profile, seeds=seeds, out=out, split=split,
        methods=[m.strip() for m in methods.split(",") if m.strip()] if methods else None,
        data_dir=data_dir, source_root=source_root, device=device, threads=threads, epochs=epochs,
        patience=patience, force=force, progress=progress, serve=services(ctx).serve_catalog,
    )
    typer.echo(f"{len(paths)} run records under {out}")


@experiments_app.command("program")
def program_command(
    ctx: typer.Context,
    profile: _Profile = "cpu-small",
    seeds: _Seeds = 3,
    out: _Out = Path("results"),
    stages: Annotated[str | None, typer.Option(help="comma-separated stage numbers (1-based, see the report's "
                                                    "program status) to run; default all, in order")] = None,
    data_dir: _DataDir = None,
    device: _Device = "auto",
    threads: _Threads = None,
    progress: _Progress = True,
) -> None:
    """Run the whole program in its order (Table II on both splits, leave-one-city-out, Table IV, modality, loss,
    transfer); finished records are skipped, so it resumes where an earlier sitting stopped."""
    from crofuse.cli import services
    from crofuse.errors import ConfigError
    from crofuse.experiments.runner import run_program

    try:
        chosen = [int(s) - 1 for s in stages.split(",") if s.strip()] if stages else None
    except ValueError as exc:
        raise ConfigError(f"--stages {stages!r}: give comma-separated stage numbers, e.g. 1,2") from exc
    paths = run_program(profile=profile, seeds=seeds, out=out, stages=chosen, data_dir=data_dir, device=device,
                        threads=threads, progress=progress, serve=services(ctx).serve_catalog)
    typer.echo(f"{len(paths)} run records under {out}")


def existing_figures(results: Path) -> dict[str, Path]:
    """Figures already in ``results``: ``<split>-<suite>-qualitative.png``, and the first benchmark's
    ``<suite>-qualitative.png`` (random split)."""
    from crofuse.experiments.figure import FIGURE_SUITES, figure_name

    found = {}
    for suite in FIGURE_SUITES:
        for split in ("blocked", "random", "external"):
            path = results / figure_name(suite, split)
            if path.exists():
                found[f"{split}-{suite}"] = path
        old = results / f"{suite}-qualitative.png"
        if old.exists() and f"random-{suite}" not in found:
            found[f"random-{suite}"] = old
    return found


@experiments_app.command("report")
def report_command(
    results: Annotated[Path, typer.Argument(help="results folder written by `crofuse experiments run`")],
    out: Annotated[Path | None, typer.Option(help="Markdown file (default RESULTS/report.md)")] = None,
    docs: Annotated[Path | None, typer.Option(help="also rebuild this page's generated block for RESULTS (e.g. "
                                                   "docs/results.md); its hand-written sections are kept")] = None,
    docs_level: Annotated[int, typer.Option(min=2, max=5, help="heading level of the suites in the docs block")] = 3,
    figure: Annotated[bool, typer.Option(help="draw a Fig. 7-style PNG per suite and split from the checkpoints "
                                              "(else link the PNGs already there)")] = True,
    patches: Annotated[int, typer.Option(min=1, help="test patches in each figure")] = 4,
) -> None:
    """Render Tables II, III, IV, the loss/modality/transfer/leave-one-city-out tables (mean ± std over seeds)."""
    from crofuse.experiments.figure import FIGURE_SUITES, figure_name, render_qualitative_figure
    from crofuse.experiments.records import load_records
    from crofuse.experiments.report import write_docs, write_report

    figures = existing_figures(results)
    if figure:
        pairs = sorted({(r["suite"], r.get("split", "random")) for r in load_records(results)
                        if r["suite"] in FIGURE_SUITES and r.get("schema_upgraded_from") is None})
        for suite, split in pairs:
            figures[f"{split}-{suite}"] = render_qualitative_figure(
                results, suite, results / figure_name(suite, split), n_patches=patches, split=split)
    path = write_report(results, out=out, figures=figures)
    if docs is not None:
        write_docs(docs, results, figures=figures, level=docs_level)
    typer.echo(f"report: {path}")
    if docs is not None:
        typer.echo(f"docs: {docs}")
    for png in figures.values():
        typer.echo(f"figure: {png}")


def register(app: typer.Typer) -> None:
    """Add ``crofuse experiments run/program/report`` to the ``crofuse`` app."""
    app.add_typer(experiments_app, name="experiments")
