"""What the blocked split, multi-city training and weak labels change, for the demo-width CroFuseNet.

Three measurements on training sets built through STAC (``crofuse.trainingset``) from one sample catalog (Wuhan and
Nanjing, 2021 and 2022, ``--size-km`` each), every model a CroFuseNet of ``base_channels=8`` with the plain conv head
trained with the demo's recipe (Adam 2e-3, poly, batch 16, ``--epochs``, eq. (11) loss), one run per seed:

1. **Split** (``--with-split``). Wuhan 2021+2022 cut with the paper's random split and with the blocked split (2.56 km
   blocks, one window of buffer): test MIoU of each, and the share of held-out pixels inside some training patch.
2. **Transfer to an unseen city.** Blocked split of Wuhan 2021 alone vs of Wuhan + Nanjing 2021; both models scored
   on Wuhan's test blocks (in-domain) and on Nanjing: all of Nanjing for the Wuhan-only model (an unseen city), and
   Nanjing's held-out test blocks for both. The drop is in-domain minus Nanjing.
3. **Weak labels.** Wuhan + Nanjing 2021, blocked split, trained once on the sample reference labels (``sample``:
   the truth as an annotator draws it) and once on WorldCover-shaped labels (``esa-worldcover``, 2021 product); both
   scored on the exact truth (``sample-exact``) of the same test blocks.

    python benchmarks/split_and_transfer.py [--size-km 8] [--epochs 30] [--seeds 0] [--threads 2] [--with-split]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _train(root: Path, out: Path, *, epochs: int, seed: int) -> Path:
    from crofuse.training import TrainConfig, train

    result = train(TrainConfig(data_root=root, out_dir=out, model="crofusenet",
                               model_options={"base_channels": 8, "head_relu": False}, lr=2e-3, batch_size=16,
                               max_epochs=epochs, patience=epochs, seed=seed, progress=False, evaluate_test=False))
    return result.best_checkpoint


def _miou(checkpoint: Path, root: Path, split: str = "test", prefix: str | None = None) -> float:
    """MIoU of ``checkpoint`` on a split, optionally only on patches whose name starts with ``prefix``."""
    import numpy as np

    from crofuse import NODATA_LABEL
    from crofuse.checkpoint import Predictor
    from crofuse.data import PatchDataset
    from crofuse.metrics import metrics_from_confusion

    predictor = Predictor.from_checkpoint(checkpoint)
    ds = PatchDataset(root, split)
    cm = np.zeros((2, 2), np.int64)
    for i in range(len(ds)):
        if prefix is not None and not ds.files[i].name.startswith(prefix):
            continue
        raw = ds.read(i)
        p = predictor(raw.optical[None], raw.sar[None])[0]
        pred = (p > 0.5).astype(np.int64)
        ok = raw.label != NODATA_LABEL
        cm += np.bincount(raw.label[ok].astype(np.int64) * 2 + pred[ok], minlength=4).reshape(2, 2)
    return float(metrics_from_confusion(cm)["miou"])


def _set(out: Path, url: str, cities: list[str], years: list[int], **kw):
    from crofuse.trainingset import build_training_set, training_set_config

    summary = build_training_set(training_set_config(out=out, cities=[{"name": c} for c in cities], years=years,
                                                     catalog=url, **kw), overwrite=True, progress=False)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-km", type=float, default=8.0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "crofuse-bench-split")
    ap.add_argument("--with-split", action="store_true", help="also the random-vs-blocked comparison on Wuhan")
    args = ap.parse_args(argv)

    from crofuse.synthetic import NANJING, WUHAN, SampleConfig, build_catalog
    from infra.stac import StacServer

    work = args.out
    build_catalog(work / "catalog", SampleConfig(cities=(WUHAN, NANJING), years=(2021, 2022), size_km=args.size_km))
    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, object] = {"size_km": args.size_km, "epochs": args.epochs, "seeds": args.seeds,
                                  "load_average": os.getloadavg()[0]}
    t0 = time.perf_counter()
    with StacServer(work / "catalog") as stac:
        sets = {
            "wuhan": _set(work / "wuhan-2021", stac.url, ["wuhan"], [2021], split="blocked"),
            "both": _set(work / "both-2021", stac.url, ["wuhan", "nanjing"], [2021], split="blocked"),
            "nanjing-all": _set(work / "nanjing-all", stac.url, ["nanjing"], [2021], split="random",
                                shares=(0.0, 0.0, 1.0)),
            "both-weak": _set(work / "both-2021-worldcover", stac.url, ["wuhan", "nanjing"], [2021],
                              split="blocked", labels="esa-worldcover"),
            "both-exact": _set(work / "both-2021-exact", stac.url, ["wuhan", "nanjing"], [2021],
                               split="blocked", labels="sample-exact"),
        }
        if args.with_split:
            sets["random"] = _set(work / "wuhan-random", stac.url, ["wuhan"], [2021, 2022], split="random")
            sets["blocked"] = _set(work / "wuhan-blocked", stac.url, ["wuhan"], [2021, 2022], split="blocked")
    results["counts"] = {k: v.counts for k, v in sets.items()}
    results["leaked"] = {k: {"pixels": v.leaked_pixels,
                             "share_of_heldout": v.leaked_pixels / max(1, 128 * 128 * (v.counts["val"] + v.counts["test"]))}
                         for k, v in sets.items()}
    runs: dict[str, list[dict[str, float]]] = {}
    for seed in args.seeds:
        jobs = [("wuhan", "wuhan-2021"), ("both", "both-2021"), ("both-weak", "both-2021-worldcover")]
        if args.with_split:
            jobs += [("random", "wuhan-random"), ("blocked", "wuhan-blocked")]
        ck = {name: _train(work / root, work / "runs" / f"{name}-seed{seed}", epochs=args.epochs, seed=seed)
              for name, root in jobs}
        row = {
            "wuhan_only__wuhan_test": _miou(ck["wuhan"], work / "wuhan-2021"),
            "wuhan_only__nanjing_all": _miou(ck["wuhan"], work / "nanjing-all"),
            "wuhan_only__nanjing_test_blocks": _miou(ck["wuhan"], work / "both-2021", prefix="nanjing"),
            "both__wuhan_test": _miou(ck["both"], work / "both-2021", prefix="wuhan"),
            "both__nanjing_test_blocks": _miou(ck["both"], work / "both-2021", prefix="nanjing"),
            "weak__exact_test": _miou(ck["both-weak"], work / "both-2021-exact"),
            "reference__exact_test": _miou(ck["both"], work / "both-2021-exact"),
            "reference__reference_test": _miou(ck["both"], work / "both-2021"),
        }
        if args.with_split:
            row["random_test"] = _miou(ck["random"], work / "wuhan-random")
            row["blocked_test"] = _miou(ck["blocked"], work / "wuhan-blocked")
        runs[f"seed{seed}"] = [row]
        print(json.dumps({"seed": seed, **row}), flush=True)
    results["runs"] = runs
    results["seconds"] = time.perf_counter() - t0
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
