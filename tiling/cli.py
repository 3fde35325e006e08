"""``crofuse predict``: tiled CroFuseNet inference of one input cube on a dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def predict(
    cube: Annotated[Path, typer.Argument(help="input cube (inputs.zarr) built by `crofuse cube`")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="model checkpoint (.safetensors)")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="output folder <output>/<city>/<year>/ (default: the cube's folder)"),
    ] = None,
    dask_address: Annotated[
        str | None, typer.Option("--dask-address", help="scheduler of an existing cluster, e.g. tcp://host:8786")
    ] = None,
    cluster: Annotated[str, typer.Option("--cluster", help="local cluster kind: auto, cpu or cuda")] = "auto",
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="local CPU worker processes")] = None,
    threads_per_worker: Annotated[int | None, typer.Option("--threads-per-worker")] = None,
    window: Annotated[int, typer.Option("--window", help="window side in pixels (multiple of 16)")] = 128,
    stride: Annotated[int, typer.Option("--stride", help="step between windows (overlap = window - stride)")] = 96,
    batch_size: Annotated[int, typer.Option("--batch-size", help="windows per forward pass")] = 16,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="output chunk side (one dask task each)")] = 1024,
    blend: Annotated[str, typer.Option("--blend", help="hann or none")] = "hann",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N")] = "auto",
    no_cluster: Annotated[bool, typer.Option("--no-cluster", help="run in this process, no dask cluster")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="refuse a cube composited with another recipe "
                                         "(reducer, season, SCL mask) than the checkpoint was trained on")] = False,
) -> None:
    """Map impervious surface for one city and year: impervious.tif, probability.tif and maps.zarr."""
    from infra.cluster import ClusterConfig, dask_client
    from tiling.config import TilingConfig
    from tiling.predict import predict_cube

    out_dir = out if out is not None else cube.resolve().parent
    config = TilingConfig(
        window=window, stride=stride, batch_size=batch_size, chunk_size=chunk_size, blend=blend, device=device
    )
    if no_cluster:
        result = predict_cube(cube, checkpoint, out_dir, config=config, client=None, strict=strict)
    else:
        cluster_config = ClusterConfig(
            kind=cluster, address=dask_address, n_workers=workers, threads_per_worker=threads_per_worker
        )
        with dask_client(cluster_config) as client:
            typer.echo(f"dask dashboard: {client.dashboard_link}", err=True)
            result = predict_cube(cube, checkpoint, out_dir, config=config, client=client, strict=strict)
    typer.echo(
        f"{result.chunks_computed} chunks computed, {result.chunks_skipped} skipped, {result.windows} windows, "
        f"{result.seconds:.1f} s\n{result.impervious}\n{result.probability}\n{result.maps}"
    )


def register(app: typer.Typer) -> None:
    """Add ``crofuse predict`` to the ``crofuse`` app."""
    app.command("predict")(predict)
