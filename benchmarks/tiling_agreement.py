"""Tiled prediction against one whole-scene forward, with a trained checkpoint on a real input cube (issue: tiling).

The tests (`tests/test_tiling.py`) check agreement with a seeded random model on a synthetic scene; this script
measures it with a trained model, by default the demo's (`make demo` writes both):

    .venv/bin/python benchmarks/tiling_agreement.py [--checkpoint demo-output/checkpoint/crofuse-demo.safetensors]
        [--cube demo-output/maps/wuhan/2022/inputs.zarr] [--border 32]

It prints, for window/stride settings with and without Hann blending, the share of valid pixels more than
``--border`` px from the scene edge on which the class maps agree, and the largest probability difference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "demo-output/checkpoint/crofuse-demo.safetensors")
    ap.add_argument("--cube", type=Path, default=ROOT / "demo-output/maps/wuhan/2022/inputs.zarr")
    ap.add_argument("--border", type=int, default=32, help="pixels from the scene edge left out of the comparison")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for path in (args.checkpoint, args.cube):
        if not path.exists():
            raise SystemExit(f"{path} does not exist: run `make demo` first, or pass --checkpoint/--cube")
    torch.set_num_threads(args.threads)

    from crofuse.checkpoint import Predictor
    from tiling import TilingConfig
    from tiling.inference import predict_scene
    from tiling.model import file_sha256, load_model
    from crofuse.cube import open_cube

    cube = open_cube(args.cube).load()
    optical = cube["optical"].values.astype("float32")
    sar = cube["sar"].values.astype("float32")
    valid = cube["valid"].values.astype(bool)
    h, w = valid.shape
    t0 = time.perf_counter()
    whole = Predictor.from_checkpoint(args.checkpoint)(optical[None], sar[None])[0]
    print(f"cube {args.cube} ({h} x {w} px), checkpoint {args.checkpoint.name}; whole-scene forward "
          f"{time.perf_counter() - t0:.1f} s")
    interior = np.zeros_like(valid)
    interior[args.border:-args.border, args.border:-args.border] = True
    interior &= valid
    model = load_model(args.checkpoint, file_sha256(args.checkpoint), config=TilingConfig(device="cpu"))
    print(f"interior valid pixels: {int(interior.sum())}, impervious in the whole-scene map: "
          f"{float((whole > 0.5)[interior].mean()):.1%}")
    print("| window / stride | blending | class agreement | max abs. probability difference | s |")
    print("|---|---|---|---|---|")
    for window, stride in ((128, 96), (128, 64), (256, 192)):
        for blend in ("hann", "none"):
            config = TilingConfig(device="cpu", window=window, stride=stride, blend=blend, chunk_size=max(h, w))
            t0 = time.perf_counter()
            tiled = predict_scene(optical, sar, valid, model.predict_fn, config=config)
            seconds = time.perf_counter() - t0
            agree = float(((tiled > 0.5) == (whole > 0.5))[interior].mean())
            diff = float(np.nanmax(np.abs(tiled - whole)[interior]))
            print(f"| {window} / {stride} | {blend} | {agree:.3%} | {diff:.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
