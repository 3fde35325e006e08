"""``crofuse train``, ``crofuse evaluate``, ``crofuse calibrate`` and ``crofuse info``. Heavy imports happen inside
the commands."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

_METRIC_ORDER = ("miou", "oa", "mean_f1")
_CALIBRATION_KEYS = ("temperature", "ece_before", "ece_after", "nll_before", "nll_after")


def _format_metrics(metrics: dict[str, Any]) -> str:
    keys = [k for k in _METRIC_ORDER if k in metrics] + sorted(k for k in metrics if k not in _METRIC_ORDER)
    width = max(len(k) for k in keys) if keys else 0
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key in keys:
        value = metrics[key]
        lines.append(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return "\n".join(lines)


def train_command(
    data_root: Annotated[str, typer.Argument(help="Patch dataset root: ROOT/{train,val,test}/{optical,sar,label}/ "
                                              "(a path or an s3:// URL)")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory for checkpoints and history (a path or "
                                     "an s3:// URL)")],
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
    from crofuse.checkpoint import read_card

    calibration = read_card(result.best_checkpoint).calibration
    typer.echo(f"\n{_format_calibration(calibration)}")


def _format_calibration(calibration: Any) -> str:
    if calibration is None:
        return "calibration: none (maps use T = 1); run `crofuse calibrate CKPT DATA_ROOT`"
    lines = [(f"calibration: T = {calibration.temperature:.4f} fitted on {calibration.fitted_on} "
              f"({calibration.pixels} pixels, {calibration.bins} bins)")]
    if calibration.head_temperatures:
        lines.append("  head temperatures: " + ", ".join(f"{h} {t:.4f}"
                                                           for h, t in calibration.head_temperatures.items()))
    rows = [(calibration.fitted_on, calibration.ece_before, calibration.ece_after, calibration.nll_before,
             calibration.nll_after)]
    if calibration.test:
        t = calibration.test
        rows.append(("test", t["ece_before"], t["ece_after"], t["nll_before"], t["nll_after"]))
    lines.append(f"  {'split':<6} {'ECE before':>10} {'ECE after':>10} {'NLL before':>10} {'NLL after':>10}")
    lines += [f"  {r[0]:<6} {r[1]:>10.4f} {r[2]:>10.4f} {r[3]:>10.4f} {r[4]:>10.4f}" for r in rows]
    return "\n".join(lines)


def evaluate_command(
    checkpoint: Annotated[str, typer.Argument(help="A .safetensors checkpoint (a path or an s3:// URL)")],
    data_root: Annotated[str, typer.Argument(help="Patch dataset root (a path or an s3:// URL)")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    batch_size: Annotated[int, typer.Option(help="Batch size")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    max_patches: Annotated[int | None, typer.Option(help="Use at most N patches")] = None,
    bins: Annotated[int | None, typer.Option(help="Equal-width ECE bins (default: the card's, else 15)")] = None,
    reliability_plot: Annotated[str | None, typer.Option(
        "--reliability-plot", help="Reliability diagram PNG (default: <checkpoint stem>.<split>.reliability.png "
        "beside the checkpoint)")] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write the reliability diagram")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Evaluate a checkpoint on one split: IoU/UA/PA/F1/OA (paper eqs. (13)-(17)), and the expected calibration
    error and NLL before (T = 1) and after the card's temperature, with a reliability diagram."""
    from crofuse.training.evaluate import evaluate_checkpoint

    plot_path = None
    if plot:
        from crofuse.io.store import location

        source = location(checkpoint)
        plot_path = reliability_plot or source.with_name(f"{source.stem}.{split}.reliability.png")
    metrics = evaluate_checkpoint(checkpoint, data_root, split, batch_size=batch_size, device=device,
                                  max_patches=max_patches, bins=bins, reliability_plot=plot_path)
    if as_json:
        typer.echo(json.dumps({**metrics, "reliability_plot": str(plot_path) if plot_path else None}, indent=1))
        return
    accuracy = {k: v for k, v in metrics.items() if k not in _CALIBRATION_KEYS}
    typer.echo(_format_metrics(accuracy))
    t = metrics["temperature"]
    state = f"T = {t:.4f}" if t != 1.0 else "T = 1 (the checkpoint is not calibrated: run `crofuse calibrate`)"
    typer.echo(f"\ncalibration on {split} ({state}):\n"
               f"  ECE {metrics['ece_before']:.4f} before, {metrics['ece_after']:.4f} after\n"
               f"  NLL {metrics['nll_before']:.4f} before, {metrics['nll_after']:.4f} after")
    if plot_path is not None:
        typer.echo(f"reliability diagram: {plot_path}")


def calibrate_command(
    checkpoint: Annotated[str, typer.Argument(help="A .safetensors checkpoint (a path or an s3:// URL)")],
    data_root: Annotated[str, typer.Argument(help="Patch dataset root (the training set of the checkpoint; a path "
                                              "or an s3:// URL)")],
    split: Annotated[str, typer.Option(help="Split to fit the temperature on (never the test split you report)")] = (
        "val"
    ),
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="Where to write the calibrated checkpoint (default: <stem>-calibrated.safetensors "
        "beside it)")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Replace CHECKPOINT itself (atomic rename)")] = False,
    bins: Annotated[int, typer.Option(help="Equal-width ECE bins")] = 15,
    max_pixels: Annotated[int, typer.Option(help="Labelled pixels used for the fit (seeded subsample)")] = 2_000_000,
    batch_size: Annotated[int, typer.Option(help="Batch size")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    max_patches: Annotated[int | None, typer.Option(help="Use at most N patches")] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write <out stem>.reliability.png beside it")] = True,
) -> None:
    """Fit a temperature (Guo et al. 2017) on a split's logits and write a checkpoint whose card holds it.

    The weights are unchanged; the Predictor and `crofuse predict` then map calibrated probabilities."""
    from crofuse.training.evaluate import calibrate_checkpoint, evaluate_checkpoint

    if in_place and out is not None:
        raise typer.BadParameter("give either --out or --in-place, not both")
    target = checkpoint if in_place else out
    written, calibration = calibrate_checkpoint(checkpoint, data_root, split, out=target, batch_size=batch_size,
                                                device=device, max_patches=max_patches, max_pixels=max_pixels,
                                                bins=bins)
    plot_path = written.with_name(f"{written.stem}.reliability.png") if plot else None
    if plot_path is not None:
        evaluate_checkpoint(written, data_root, split, batch_size=batch_size, device=device,
                            max_patches=max_patches, bins=bins, reliability_plot=plot_path)
    typer.echo(f"{_format_calibration(calibration)}\nwrote {written}")
    if plot_path is not None:
        typer.echo(f"reliability diagram: {plot_path}")


def info_command(
    checkpoint: Annotated[str, typer.Argument(help="A .safetensors checkpoint (a path or an s3:// URL)")],
) -> None:
    """Print a checkpoint's model card (architecture, bands, normalisation, training data, metrics, version)."""
    from crofuse.checkpoint import read_card

    card = read_card(checkpoint)
    typer.echo(json.dumps(card.to_dict(), indent=2, default=str))


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate``, ``calibrate`` and ``info`` to the ``crofuse`` app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("calibrate")(calibrate_command)
    app.command("info")(info_command)
