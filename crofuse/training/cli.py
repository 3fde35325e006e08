"""Command-line commands of this package (placeholder: the owner of this package fills it in)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``crofuse`` app."""
