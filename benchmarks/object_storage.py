"""Object-storage benchmark: the same work on local disk and on an S3-compatible server (moto on 127.0.0.1).

Run from the repository root::

    .venv/bin/python benchmarks/object_storage.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/object_storage.py --side 512

Prints, for a local folder and for ``s3://`` on ``moto_server`` (``infra.s3.S3Server``):
- a lease: acquire + release (a conditional PUT, a GET, a DELETE), mean of ``--leases`` rounds;
- a COG of ``--cog`` x ``--cog`` uint8 pixels through the one writer (temp space + one rename or one PUT);
- ``predict_cube`` of a ``--side`` x ``--side`` test cube in this process (cube read, chunk regions and markers
  written, COGs published), and the same cube's ``update_statistics``-free publication of the maps
  (``crofuse.layout.replace_store`` of ``maps.zarr``: a rename on disk, a server-side copy per object on S3).

moto keeps objects in memory and answers on loopback: the S3 figures measure the client's request overhead, not a
real store's latency or bandwidth.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256, help="test cube side in pixels")
    parser.add_argument("--chunk", type=int, default=128, help="output chunk side")
    parser.add_argument("--cog", type=int, default=2048, help="COG side in pixels")
    parser.add_argument("--leases", type=int, default=20, help="lease rounds")
    args = parser.parse_args(argv)

    import torch

    from crofuse.io.cog import write_cog
    from crofuse.io.lease import Lease
    from crofuse.io.store import location
    from crofuse.layout import replace_store
    from infra.s3 import S3Server
    from tests.fixtures.tiling import make_cube, make_tiling_checkpoint
    from tiling import TilingConfig, predict_cube

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="crofuse-bench-s3-"))
    os.environ["CROFUSE_TMPDIR"] = str(work / "tmp")
    checkpoint = make_tiling_checkpoint(work / "model.safetensors")
    cube = make_cube(work / "cube" / "testville" / "2024" / "inputs.zarr", (args.side, args.side), seed=1,
                     chunk=args.chunk)
    data = np.random.default_rng(0).integers(0, 3, (args.cog, args.cog), dtype=np.uint8)
    config = TilingConfig(chunk_size=args.chunk, device="cpu", torch_threads=1)
    rows = []
    with S3Server(buckets=["bench"]) as s3:
        os.environ.update(s3.env)
        for kind, root in (("local", location(work / "out")), ("s3 (moto)", location("s3://bench/out"))):
            lease = root / "lease-bench" / ".lease"
            t_lease = _timed(lambda lease=lease: Lease(lease).acquire().release(), args.leases)
            t_cog = _timed(lambda root=root: write_cog(root / "cog.tif", data, crs="EPSG:32633",
                                                       transform=(10, 0, 500000, 0, -10, 5000000), nodata=255))
            out = root / "testville" / "2024" / ".staging" / "bench"
            t_predict = _timed(lambda out=out: predict_cube(cube, checkpoint, out, config=config, progress=False))
            t_publish = _timed(lambda root=root, out=out: replace_store(out / "maps.zarr",
                                                                        root / "testville" / "2024" / "maps.zarr"))
            rows.append((kind, t_lease * 1000, t_cog, t_predict, t_publish))
    print(f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; cube "
          f"{args.side}x{args.side} px in {args.chunk} px chunks, COG {args.cog}x{args.cog} uint8")
    print(f"{'where':<10} {'lease (ms)':>11} {'COG (s)':>8} {'predict_cube (s)':>17} {'publish maps.zarr (s)':>22}")
    for kind, lease_ms, cog_s, predict_s, publish_s in rows:
        print(f"{kind:<10} {lease_ms:>11.1f} {cog_s:>8.2f} {predict_s:>17.2f} {publish_s:>22.2f}")


if __name__ == "__main__":
    main()
