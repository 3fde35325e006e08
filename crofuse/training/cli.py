"""``crofuse train``, ``crofuse evaluate`` and ``crofuse info``. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

_METRIC_ORDER = ("miou", "oa", "mean_f1")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print crofuse's own errors (bad data, bad options, unreadable checkpoints) as one line and exit 1."""
    from crofuse.errors import CrofuseError

    try:
        yield
    except CrofuseError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from exc


def _format_metrics(metrics: dict[str, Any]) -> str:
    keys = [k for k in _METRIC_ORDER if k in metrics] + sorted(k for k in metrics if k not in _METRIC_ORDER)
    width = max(len(k) for k in keys) if keys else 0
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key in keys:
        value = metrics[key]
        lines.append(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return "\n".join(lines)


def train_command(
    data_root: Annotated[Path, typer.Argument(help="Patch dataset root: ROOT/{train,val,test}/{optical,sar,label}/")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for checkpoints and history")],
    model: Annotated[str, typer.Option(help="Model registry name (crofusenet, unet-fusion, unet-optical, ...)")] = (
        "crofusenet"
    ),
    epochs: Annotated[int, typer.Option(help="Maximum number of epochs (paper: 400)")] = 400,
    batch_size: Annotated[int, typer.Option(help="Batch size (paper: 32)")] = 32,
    patience: Annotated[int, typer.Option(help="Early stop after this many epochs without better val MIoU")] = 50,
    lr: Annotated[float, typer.Option(help="Initial learning rate of the poly schedule (paper: 1e-4)")] = 1e-4,
    alpha: Annotated[float, typer.Option(help="Weight of the optical-branch loss, eq. (11)")] = 1.0,
    beta: Annotated[float, typer.Option(help="Weight of the SAR-branch loss, eq. (11)")] = 0.8,
    base_channels: Annotated[int | None, typer.Option(help="Width of the first level (paper: 32)")] = None,
    model_option: Annotated[
        list[str] | None, typer.Option("--model-option", help="Extra model option KEY=JSON, repeatable")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    num_workers: Annotated[int, typer.Option(help="DataLoader worker processes")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    max_patches: Annotated[int | None, typer.Option(help="Use at most N patches per split (quick runs)")] = None,
    limit_batches: Annotated[int | None, typer.Option(help="At most N training batches per epoch")] = None,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Train-split augmentation")] = True,
    optical_scale: Annotated[float, typer.Option(help="Multiply optical values by this (1e-4 for S2 DN)")] = 1.0,
    sar_linear: Annotated[bool, typer.Option("--sar-linear", help="SAR files hold linear power, not dB")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/last.safetensors")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars")] = True,
) -> None:
    """Train CroFuseNet (or another registered model) on a WHU-IS style patch dataset (paper IV-A)."""
    from crofuse.data.augment import Augmentation
    from crofuse.data.patches import PatchUnits
    from crofuse.training.config import TrainConfig
    from crofuse.training.trainer import train

    options: dict[str, Any] = {}
    for item in model_option or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--model-option expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    if base_channels is not None:
        options["base_channels"] = base_channels
    with _user_errors():
        config = TrainConfig(
                data_root=data_root, out_dir=out, model=model, model_options=options, alpha=alpha, beta=beta, lr=lr,
            batch_size=batch_size, max_epochs=epochs, patience=patience, seed=seed, num_workers=num_workers,
            device=device, max_patches=max_patches, limit_batches=limit_batches,
            augmentation=Augmentation() if augment else None,
            units=PatchUnits(optical_scale=optical_scale, sar_in_db=not sar_linear), resume=resume,
            progress=progress,
        )
        result = train(config)
    typer.echo(f"best checkpoint: {result.best_checkpoint} (epoch {result.metrics['best_epoch']}"
               f"{', stopped early' if result.stopped_early else ''})")
    for split in ("val", "test"):
        if result.metrics.get(split):
            typer.echo(f"\n{split}:\n{_format_metrics(result.metrics[split])}")


def evaluate_command(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint")],
    data_root: Annotated[Path, typer.Argument(help="Patch dataset root")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    batch_size: Annotated[int, typer.Option(help="Batch size")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    max_patches: Annotated[int | None, typer.Option(help="Use at most N patches")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Evaluate a checkpoint on one split and print IoU/UA/PA/F1/OA (paper eqs. (13)-(17))."""
    from crofuse.training.evaluate import evaluate_checkpoint

    with _user_errors():
        metrics = evaluate_checkpoint(checkpoint, data_root, split, batch_size=batch_size, device=device,
                                      max_patches=max_patches)
    typer.echo(json.dumps(metrics, indent=1) if as_json else _format_metrics(metrics))


def info_command(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint")],
) -> None:
    """Print a checkpoint's model card (architecture, bands, normalisation, training data, metrics, version)."""
    from crofuse.checkpoint import read_card

    with _user_errors():
        card = read_card(checkpoint)
    typer.echo(json.dumps(card.to_dict(), indent=2, default=str))


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``info`` to the ``crofuse`` app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("info")(info_command)
