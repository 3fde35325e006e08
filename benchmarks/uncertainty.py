"""Benchmark: does the error rate rise with the maps' uncertainty, and does temperature scaling calibrate?

Builds (or reuses) the demo's training set through STAC: the sample catalog of the training cities (Hefei and
Nanchang, 2021 and 2022, June, 6 km by default) from ``crofuse.synthetic.build_catalog``, served by
``infra.stac.StacServer`` (``rustac serve``), then ``crofuse.trainingset.build_training_set`` (the map-city cube
composite, the catalog's labels, 64 x 64 patches every 48 px, blocked split in 1.28 km blocks: with the paper's
128 x 128 patches a blocked split of a few km leaves almost no training patches). Trains (or reuses) a reduced-width
CroFuseNet as the demo does (``base_channels`` 8, plain conv head, Adam 2e-3, poly LR); the trainer fits one
temperature per head on the validation split (``crofuse.calibration``). Then it predicts the held-out test patches
with the calibrated :class:`~crofuse.checkpoint.Predictor` and prints

- the ECE (15 equal-width bins) and NLL of the shared head before (T = 1) and after scaling, on val and on test;
- the error rate of the map's class (``p > 0.5``) by decile of entropy and of head disagreement, with a cluster
  bootstrap over test patches of "top decile error - bottom decile error";
- reliability diagrams (val and test) as PNGs in the work folder.

    python benchmarks/uncertainty.py [--size-km 6] [--block-km 1.28] [--patch-size 64] [--stride 48] [--epochs 20] [--width 8] [--threads 2] [--work DIR] [--fresh]

The catalog, training set and checkpoint are kept in ``--work`` (default ``<system tmp>/crofuse-bench-uncertainty``)
and reused by a rerun (``--fresh`` retrains). Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def _training_set(work: Path, size_km: float, years: list[int], block_km: float, patch: int, stride: int) -> Path:
    from crofuse.cities import CitySpec
    from crofuse.synthetic import TRAINING_CITIES, SampleConfig, build_catalog
    from crofuse.trainingset import (
        build_training_set,
        read_manifest,
        training_set_config,
    )
    from infra.stac import StacServer

    catalog = work / f"catalog-{size_km * 1000:.0f}m"
    out = work / f"training-set-{size_km * 1000:.0f}m-b{block_km * 1000:.0f}m-p{patch}-s{stride}"
    build_catalog(catalog, SampleConfig(cities=TRAINING_CITIES, years=tuple(years), size_km=size_km), progress=False)
    if read_manifest(out) is not None:
        return out
    with StacServer(catalog) as stac:
        config = training_set_config(out=out, cities=[CitySpec(name=c.name) for c in TRAINING_CITIES], years=years,
                                     catalog=stac.url, labels="sample", split="blocked", block_km=block_km, patch_size=patch, stride=stride)
        summary = build_training_set(config, progress=False)
    for line in summary.lines():
        print(line)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-km", type=float, default=6.0)
    p.add_argument("--block-km", type=float, default=1.28, help="blocked-split block side")
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--stride", type=int, default=48)
    p.add_argument("--years", type=int, nargs="+", default=[2021, 2022])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--width", type=int, default=8, help="base_channels (paper: 32)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resamples", type=int, default=1000, help="cluster bootstrap resamples")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "crofuse-bench-uncertainty")
    p.add_argument("--fresh", action="store_true", help="retrain the model")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from crofuse.checkpoint import Predictor, read_card
    from crofuse.data import PatchDataset
    from crofuse.training import TrainConfig, train
    from crofuse.training.evaluate import evaluate_checkpoint
    from crofuse.uncertainty import (
        bootstrap_top_minus_bottom,
        error_by_decile,
        format_decile_table,
        patch_uncertainty,
    )

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = _training_set(args.work, args.size_km, args.years, args.block_km, args.patch_size, args.stride)
    run = args.work / f"run-{data.name}-w{args.width}-e{args.epochs}-s{args.seed}"
    if args.fresh:
        shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    result = train(TrainConfig(data_root=data, out_dir=run, model="crofusenet",
                               model_options={"base_channels": args.width, "head_relu": False}, lr=2e-3,
                               batch_size=16, max_epochs=args.epochs, patience=args.epochs, seed=args.seed,
                               device="cpu", progress=False))
    train_s = time.perf_counter() - t0
    card = read_card(result.best_checkpoint)
    cal = card.calibration
    if cal is None:
        raise SystemExit("the trainer left the checkpoint uncalibrated (see its log); nothing to measure")

    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')}; machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, "
          f"{args.threads} threads")
    print(f"training set {data}: patches {card.training_data['patches']}; CroFuseNet base_channels {args.width}, "
          f"plain conv head, {args.epochs} epochs (train call {train_s:.0f} s; a finished run is reused), best epoch "
          f"{result.metrics['best_epoch']}: val MIoU {result.metrics['val']['miou']:.4f}, test MIoU "
          f"{result.metrics['test']['miou']:.4f}")
    print(f"temperatures (fitted on val, {cal.pixels} pixels): shared {cal.temperature:.4f}, "
          + ", ".join(f"{h} {t:.4f}" for h, t in cal.head_temperatures.items()))

    plots = {}
    evaluations = {}
    for split in ("val", "test"):
        plots[split] = args.work / f"reliability-{split}.png"
        evaluations[split] = evaluate_checkpoint(result.best_checkpoint, data, split, device="cpu",
                                                 reliability_plot=plots[split])
    print("\n| split | pixels | ECE before (T = 1) | ECE after | NLL before | NLL after |")
    print("|---|---|---|---|---|---|")
    for split, ev in evaluations.items():
        n = cal.pixels if split == "val" else "all labelled"
        print(f"| {split} | {n} | {ev['ece_before']:.4f} | {ev['ece_after']:.4f} | {ev['nll_before']:.4f} "
              f"| {ev['nll_after']:.4f} |")

    predictor = Predictor.from_checkpoint(result.best_checkpoint)
    pixels = patch_uncertainty(predictor, PatchDataset(data, "test"))
    tables = {name: error_by_decile(u, pixels.error) for name, u in pixels.measures().items()}
    print(f"\ntest: {len(np.unique(pixels.patch))} patches, {len(pixels.error)} labelled pixels, error rate "
          f"{pixels.error.mean():.2%}; deciles by uncertainty (1 = least uncertain), error = class differs from "
          "the label")
    print(format_decile_table(tables))
    summary = {}
    for name, u in pixels.measures().items():
        diffs = bootstrap_top_minus_bottom(u, pixels.error, pixels.patch, resamples=args.resamples, seed=args.seed)
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        rows = tables[name]
        print(f"{name}: top - bottom decile error {rows[-1].error_rate - rows[0].error_rate:+.2%} "
              f"(patch bootstrap 95 % interval {lo:+.2%} .. {hi:+.2%}, share <= 0: {(diffs <= 0).mean():.3f})")
        summary[name] = {"rows": [r.__dict__ for r in rows], "bootstrap_95": [float(lo), float(hi)]}
    print(f"reliability diagrams: {plots['val']}, {plots['test']}; total {time.perf_counter() - started:.0f} s")
    print(json.dumps({"calibration": cal.to_dict(), "evaluations": evaluations, "deciles": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
