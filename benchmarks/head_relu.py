"""The paper's ReLU output head against a plain conv head (docs/model.md, "ReLU head vs plain conv head").

CroFuseNet's last layer in the paper is "3x3 conv, BN, ReLU" (Sec. III-A), which clips the logits at 0. This script
trains a reduced-width CroFuseNet with each head on the same sample patches and seeds, and prints per run: the
validation MIoU by epoch, the best validation MIoU, test MIoU/OA, and the share of test pixels whose impervious
probability is exactly 0.5 (both logits clipped to 0: no information).

    .venv/bin/python benchmarks/head_relu.py [--seeds 0 1] [--epochs 8] [--size-km 6] [--threads 2] [--out DIR]

Defaults: Wuhan 2021, 6 km, 64x64 patches with stride 48 and the paper's random split, as the measurement in
docs/model.md, but the patches now come from a training set built through STAC (the map-city median composite; the
measurement in docs/model.md used the earlier in-memory mean composite, so rerun to compare); base_channels 8,
eq. (11) loss, Adam at 1e-3 with the poly schedule, batch 8, CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def exact_half_fraction(checkpoint: Path, patches: Path) -> float:
    """Share of labelled test pixels with an impervious probability of exactly 0.5."""
    from crofuse.checkpoint import Predictor
    from crofuse.data import PatchDataset

    predictor = Predictor.from_checkpoint(checkpoint)
    test = PatchDataset(patches, "test")
    half = total = 0
    for i in range(len(test)):
        sample = test[i]
        p = predictor(sample["optical"][None].numpy(), sample["sar"][None].numpy())[0]
        labelled = sample["label"].numpy() != 255
        half += int((p[labelled] == 0.5).sum())
        total += int(labelled.sum())
    return half / max(total, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--size-km", type=float, default=6.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from crofuse.synthetic import WUHAN, SampleConfig, build_catalog
    from crofuse.training import TrainConfig, train
    from crofuse.trainingset import build_training_set, training_set_config
    from infra.stac import StacServer

    work = args.out or Path(tempfile.mkdtemp(prefix="head-relu-"))
    patches = work / "patches"
    build_catalog(work / "catalog", SampleConfig(cities=(WUHAN,), years=(2021,), size_km=args.size_km))
    with StacServer(work / "catalog") as stac:
        summary = build_training_set(training_set_config(
            out=patches, cities=[{"name": "wuhan"}], years=[2021], catalog=stac.url, split="random", patch_size=64,
            stride=48), overwrite=True, progress=False)
    print(f"patches: {summary.counts} under {patches}; torch {torch.__version__}, {args.threads} threads")
    print("| head | seed | val MIoU by epoch | best val MIoU | test MIoU | test OA | test px with p = 0.5 | s |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for head_relu in (True, False):
        for seed in args.seeds:
            t0 = time.perf_counter()
            result = train(TrainConfig(
                data_root=patches, out_dir=work / f"relu{int(head_relu)}-seed{seed}", model="crofusenet",
                model_options={"base_channels": 8, "head_relu": head_relu}, lr=1e-3, batch_size=8,
                max_epochs=args.epochs, patience=args.epochs, seed=seed, progress=False, resume=False,
            ))
            seconds = time.perf_counter() - t0
            val = [h["val_miou"] for h in result.history]
            test = result.metrics["test"]
            half = exact_half_fraction(result.best_checkpoint, patches)
            name = "conv+BN+ReLU (paper)" if head_relu else "plain 3x3 conv"
            print(f"| {name} | {seed} | {', '.join(f'{v:.3f}' for v in val)} | {max(val):.4f} | {test['miou']:.4f} "
                  f"| {test['oa']:.4f} | {half:.1%} | {seconds:.0f} |", flush=True)
            rows.append({"head_relu": head_relu, "seed": seed, "val_miou": val, "test": test, "exact_half": half,
                         "seconds": seconds})
    for head_relu in (True, False):
        sel = [r["test"]["miou"] for r in rows if r["head_relu"] == head_relu]
        print(f"head_relu={head_relu}: test MIoU {np.mean(sel):.4f} ± {np.std(sel, ddof=1) if len(sel) > 1 else 0:.4f}")
    (work / "head_relu.json").write_text(json.dumps(rows, indent=2, default=float))


if __name__ == "__main__":
    main()
