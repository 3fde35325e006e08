"""Tiled-inference benchmark: throughput, overhead over a plain batched forward, 1 -> 2 workers, worker memory.

Run from the repository root::

    .venv/bin/python benchmarks/inference.py              # small defaults, a few minutes on 2 cores
    .venv/bin/python benchmarks/inference.py --side 1024 --base-channels 32
    .venv/bin/python benchmarks/inference.py --work-only --side 768   # model work vs chunk size only

Prints:
- km^2/s and patches (windows)/s of tiled inference (predict_cube in this process, cube -> COGs + zarr);
- the ratio of that time to a plain batched forward over (a) the same windows (the machinery's overhead: reading,
  reflection, blending, writing) and (b) the scene's pixels once (adds the cost of the window overlap);
- the speed-up from 1 to 2 dask worker processes (LocalCluster);
- peak RSS of a worker for a cube and for one 4x larger (same chunk size): it should stay roughly flat;
- model work vs chunk size: windows the model runs / windows in the global grid, planned for a 10240^2 px city and
  measured by ``predict_cube`` on the cube, now (each window once, in the chunk owning it) and before (each chunk
  ran every window touching it: the sum of ``plan_chunk`` over the chunks).
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss it is not inherited across fork + exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # pragma: no cover - not Linux


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256, help="cube side in pixels (10 m)")
    parser.add_argument("--chunk", type=int, default=256, help="output chunk side")
    parser.add_argument("--base-channels", type=int, default=8, help="CroFuseNet width (paper: 32)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in this process")
    parser.add_argument("--work-only", action="store_true", help="only the model work vs chunk size table")
    args = parser.parse_args(argv)

    import torch

    from crofuse.checkpoint import Predictor
    from infra.cluster import ClusterConfig, dask_client
    from tests.fixtures.tiling import make_cube, make_tiling_checkpoint
    from tiling import TilingConfig, predict_cube

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="crofuse-bench-"))
    side, big = args.side, 2 * args.side
    cube = make_cube(root / "c1" / "inputs.zarr", (side, side), seed=1, chunk=args.chunk)
    ckpt = make_tiling_checkpoint(root / "model.safetensors", base_channels=args.base_channels)
    config = TilingConfig(chunk_size=args.chunk, batch_size=args.batch_size, device="cpu")
    km2 = side * side * 100 / 1e6
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} cores, torch {torch.__version__}, threads {args.threads}")
    if args.work_only:
        model_work(cube, ckpt, side, config, root)
        return
    cube4 = make_cube(root / "c4" / "inputs.zarr", (big, big), seed=2, chunk=args.chunk)
    print(f"cube {side}x{side} px ({km2:.1f} km^2), chunk {args.chunk}, window {config.window}/{config.stride}, "
          f"CroFuseNet base_channels={args.base_channels}, batch {args.batch_size}")

    # warm-up (model load, allocator) on a throwaway run, then the timed in-process run
    predict_cube(cube, ckpt, root / "warm", config=config, progress=False)
    import tiling.model

    (loaded,) = tiling.model._CACHE.values()  # time spent inside the model during the tiled run
    inner = loaded.predict_fn
    model_s = [0.0]

    def timed(o, s):
        start = time.perf_counter()
        try:
            return inner(o, s)
        finally:
            model_s[0] += time.perf_counter() - start

    loaded.predict_fn = timed
    t0 = time.perf_counter()
    result = predict_cube(cube, ckpt, root / "tiled", config=config, progress=False)
    tiled_s = time.perf_counter() - t0
    loaded.predict_fn = inner
    print(f"tiled inference (in-process): {tiled_s:.2f} s, {km2 / tiled_s:.3f} km^2/s, "
          f"{result.windows / tiled_s:.2f} patches/s ({result.windows} windows, {result.chunks_total} chunks)")
    print(f"  of which inside the model: {model_s[0]:.2f} s -> everything else (read, reflect, blend, zarr, COGs) "
          f"{tiled_s - model_s[0]:.2f} s; tiled/model-time = {tiled_s / model_s[0]:.2f}x")

    predictor = Predictor.from_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    w = config.window
    optical = rng.normal(0.1, 0.03, (args.batch_size, 4, w, w)).astype(np.float32)
    sar = rng.normal(-12, 3, (args.batch_size, 2, w, w)).astype(np.float32)
    predictor(optical, sar)

    def plain(n_windows: int) -> float:
        start = time.perf_counter()
        done = 0
        while done < n_windows:
            n = min(args.batch_size, n_windows - done)
            predictor(optical[:n], sar[:n])
            done += n
        return time.perf_counter() - start

    same_windows = plain(result.windows)
    scene_windows = int(np.ceil(side * side / (w * w)))
    scene_once = plain(scene_windows)
    print(f"plain batched forward over the same {result.windows} windows: {same_windows:.2f} s -> "
          f"tiled/plain = {tiled_s / same_windows:.2f}x (machinery overhead)")
    print(f"plain batched forward over the scene's pixels once ({scene_windows} windows): {scene_once:.2f} s -> "
          f"tiled/plain = {tiled_s / scene_once:.2f}x (overhead + window overlap + chunk halos)")

    timings = {}
    for workers in (1, 2):  # on the 4x cube: several chunks, so two workers have something to share
        with dask_client(ClusterConfig(kind="cpu", n_workers=workers, dashboard_address=None)) as client:
            predict_cube(cube, ckpt, root / f"warm{workers}", config=config, client=client, progress=False)
            t0 = time.perf_counter()
            run = predict_cube(cube4, ckpt, root / f"w{workers}", config=config, client=client, progress=False)
            timings[workers] = time.perf_counter() - t0
    print(f"dask LocalCluster on the 4x cube ({run.chunks_total} chunks): 1 worker {timings[1]:.2f} s, "
          f"2 workers {timings[2]:.2f} s -> speed-up {timings[1] / timings[2]:.2f}x")

    rss = {}
    for name, path in (("1x", cube), ("4x", cube4)):
        with dask_client(ClusterConfig(kind="cpu", n_workers=1, dashboard_address=None)) as client:
            predict_cube(path, ckpt, root / f"rss{name}", config=config, client=client, progress=False)
            rss[name] = max(client.run(_peak_rss_mib).values())
    print(f"peak worker RSS: 1x cube ({side}^2 px) {rss['1x']:.0f} MiB, 4x cube ({big}^2 px) {rss['4x']:.0f} MiB "
          f"-> ratio {rss['4x'] / rss['1x']:.2f}")
    print(f"client process peak RSS: {_peak_rss_mib():.0f} MiB")
    model_work(cube, ckpt, side, config, root)


def model_work(cube, ckpt, side: int, config, root: Path, city: int = 10240) -> None:
    """Print windows run / grid windows per chunk size: planned (a ``city``^2 scene and the cube) and measured."""
    from tiling import predict_cube
    from tiling.windows import chunk_bounds, grid_size, plan_chunk, planned_windows

    w, s, pad = config.window, config.stride, config.effective_halo

    def planned(shape, chunk) -> tuple[float, float]:
        grid = grid_size(shape, window=w, stride=s, pad=pad)
        before = sum(plan_chunk(shape, r, c, window=w, stride=s, pad=pad).n_windows
                     for r in chunk_bounds(shape[0], chunk) for c in chunk_bounds(shape[1], chunk))
        now = sum(planned_windows(shape, window=w, stride=s, pad=pad, chunk=chunk).values())
        return before / grid, now / grid

    print(f"model work = windows run / windows in the global grid (window {w}, stride {s}; the grid itself is "
          f"~(window/stride)^2 = {(w / s) ** 2:.2f}x the pixels, which blending needs)")
    print(f"| chunk | before, {city}^2 px city (planned) | now, {city}^2 px city (planned) | before, {side}^2 cube "
          f"(planned) | now, {side}^2 cube (measured by predict_cube) |")
    print("|---|---|---|---|---|")
    for chunk in (256, 512, 1024, "whole"):
        size = side if chunk == "whole" else chunk
        city_chunk = city if chunk == "whole" else chunk
        before_city, now_city = planned((city, city), city_chunk)
        cells = [f"{before_city:.3f}x", f"{now_city:.3f}x"]
        if size <= side:
            before_cube, _ = planned((side, side), size)
            run = predict_cube(cube, ckpt, root / f"work{size}", config=config.replace(chunk_size=size),
                               progress=False)
            ratio = run.windows / run.grid_windows
            measured = (f"{ratio:.3f}x ({run.windows}/{run.grid_windows} windows, {run.chunks_total} chunks, "
                        f"{run.seconds:.1f} s)")
            cells += [f"{before_cube:.3f}x", measured]
        else:
            cells += ["-", "-"]
        print(f"| {chunk} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
