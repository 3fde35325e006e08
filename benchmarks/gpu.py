"""GPU benchmark, prepared for when a GPU is there: model throughput in bf16 + channels-last, and the dask-cuda path.

Run from the repository root on a CUDA machine (torch with CUDA, ``pip install -e '.[gpu]'`` for dask-cuda)::

    .venv/bin/python benchmarks/gpu.py                       # batch 256, 8192^2 bf16 matmul, 4096^2 px cube
    .venv/bin/python benchmarks/gpu.py --batch 512 --cube-side 8192

and anywhere, to check that the script itself works (tiny sizes, CPU, seconds to a minute)::

    .venv/bin/python benchmarks/gpu.py --dry-run              # = --device cpu --batch 4 --matmul-n 512 ...

Prints (docs/scale.md uses these figures):

1. the measured matmul peak: a large bf16 ``a @ b`` (2 n^3 FLOPs), TFLOP/s;
2. CroFuseNet at the paper's width (``ModelSpec("crofusenet")``, ``base_channels=32``): FLOPs per 128 x 128
   6-band patch (``torch.utils.flop_counter.FlopCounterMode``, forward, 2 FLOPs per multiply-add), then the forward
   in bf16 autocast with channels-last tensors and weights at ``--batch`` (>= 256 on a GPU): patches/s, km^2/s of
   windows (one window = 1.6384 km^2; at the default stride 96 a km^2 of map needs (128/96)^2 = 1.78x that),
   achieved TFLOP/s and its share of the measured matmul peak, peak GPU memory;
3. end to end through dask: ``tiling.predict_cube`` (cube -> maps.zarr + COGs) on a ``LocalCUDACluster`` (one
   worker per GPU, ``infra.cluster.ClusterConfig(kind="cuda")``) with ``device="cuda"``, ``autocast="bf16"``,
   ``channels_last=True``: km^2/s, windows/s and their ratio to (2). Without dask-cuda or without a GPU this part
   prints why (the ``ClusterError`` message, which says what to install) and, so that the code path is still
   exercised, runs the same call on a one-worker CPU ``LocalCluster``.

Asserts nothing; exits 0 when every part that could run ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_throughput import (  # the one timing and FLOP-counting helper
    count_flops,
    time_call,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATCH = 128
PATCH_KM2 = PATCH * PATCH * 100 / 1e6  # 10 m pixels


def matmul_peak(device, n: int, repeats: int) -> float:
    """Measured dense bf16 matmul rate, FLOP/s (2 n^3 per product)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = time_call(lambda: a @ b, device, repeats=repeats, warmup=2)
    return 2 * n**3 / seconds


def model_throughput(args, device, peak: float) -> dict[str, float]:
    import torch

    from crofuse.model import ModelSpec

    torch.manual_seed(0)
    model = ModelSpec("crofusenet").build().to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    flops = int(count_flops(model, PATCH, device))
    model = model.to(memory_format=torch.channels_last)
    optical = torch.randn(args.batch, 4, PATCH, PATCH, device=device).contiguous(memory_format=torch.channels_last)
    sar = torch.randn(args.batch, 2, PATCH, PATCH, device=device).contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)

    def run() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            model(optical, sar)

    seconds = time_call(run, device, repeats=args.repeats, warmup=2)  # + cuDNN autotuning
    patches_s = args.batch / seconds
    achieved = flops * patches_s
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(f"CroFuseNet (paper width): {params / 1e6:.2f} M parameters, {flops / 1e9:.2f} GFLOP per "
          f"{PATCH}x{PATCH} patch (forward, FlopCounterMode)")
    print(f"  bf16 autocast + channels-last, batch {args.batch}: {seconds * 1e3:.1f} ms per batch -> "
          f"**{patches_s:.1f} patches/s** = {patches_s * PATCH_KM2:.1f} km^2/s of windows "
          f"({patches_s * PATCH_KM2 / (PATCH / 96) ** 2:.1f} km^2/s of map at stride 96)")
    print(f"  achieved {achieved / 1e12:.2f} TFLOP/s = **{100 * achieved / peak:.1f} % of the measured bf16 matmul "
          f"peak**; peak GPU memory {mem:.1f} GiB")
    return {"patches_s": patches_s, "flops": flops, "achieved": achieved}


def cluster_end_to_end(args, device, patches_s: float) -> str:
    """predict_cube on a LocalCUDACluster (or, without one, on a CPU LocalCluster, to exercise the code)."""
    from crofuse.errors import ClusterError
    from infra.cluster import ClusterConfig, dask_client
    from tests.fixtures.tiling import make_cube, make_tiling_checkpoint
    from tiling import TilingConfig, predict_cube

    kind, tiling_device = "cuda", "cuda"
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        print("dask-cuda is not installed: the LocalCUDACluster part cannot run; install the GPU extra "
              "(pip install -e '.[gpu]'), with a CUDA build of torch")
        kind = "cpu"
    if kind == "cuda" and device.type != "cuda":
        print("torch sees no CUDA device: the LocalCUDACluster part cannot run (a CUDA build of torch and a GPU "
              "are needed)")
        kind = "cpu"
    if kind == "cpu":
        try:  # show the message the library gives a user who asks for a CUDA cluster here
            with dask_client(ClusterConfig(kind="cuda", dashboard_address=None)):
                pass
        except ClusterError as exc:
            print(f"  infra.cluster says: {exc}")
        print("  running the same predict_cube call on a one-worker CPU LocalCluster instead (code path check only)")
        tiling_device = "cpu"

    root = Path(tempfile.mkdtemp(prefix="crofuse-gpu-bench-"))
    side = args.cube_side
    cube = make_cube(root / "cube" / "inputs.zarr", (side, side), seed=1, chunk=min(args.chunk, side))
    warm = make_cube(root / "warm" / "inputs.zarr", (PATCH * 2, PATCH * 2), seed=2, chunk=PATCH * 2)
    ckpt = make_tiling_checkpoint(root / "model.safetensors", base_channels=args.base_channels)
    config = TilingConfig(device=tiling_device, autocast="bf16" if tiling_device == "cuda" else "off",
                          channels_last=True, batch_size=args.batch, chunk_size=min(args.chunk, side))
    cluster = ClusterConfig(kind=kind, dashboard_address=None, **({"n_workers": 1} if kind == "cpu" else {}))
    with dask_client(cluster) as client:
        workers = len(client.scheduler_info()["workers"])
        predict_cube(warm, ckpt, root / "warm-out", config=config, client=client, progress=False)
        t0 = time.perf_counter()
        out = predict_cube(cube, ckpt, root / "out", config=config, client=client, progress=False)
        seconds = time.perf_counter() - t0
    km2 = side * side * 100 / 1e6
    label = "LocalCUDACluster" if kind == "cuda" else "CPU LocalCluster (stand-in)"
    print(f"{label}, {workers} worker(s), cube {side}x{side} px ({km2:.1f} km^2), chunk {config.chunk_size}, "
          f"base_channels {args.base_channels}: {seconds:.2f} s -> **{km2 / seconds:.2f} km^2/s**, "
          f"{out.windows / seconds:.1f} windows/s ({out.windows} windows, {out.chunks_computed} chunks)")
    if kind == "cuda" and args.base_channels == 32:
        per_gpu = out.windows / seconds / max(workers, 1)
        print(f"  end-to-end windows/s per GPU / model-only patches/s = {per_gpu / patches_s:.2f}")
    return kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:N or cpu")
    parser.add_argument("--batch", type=int, default=256, help="windows per forward (>= 256 on a GPU)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--matmul-n", type=int, default=8192, help="side of the bf16 matmul that measures peak")
    parser.add_argument("--cube-side", type=int, default=4096, help="end-to-end cube side, px (4096: 1678 km^2)")
    parser.add_argument("--chunk", type=int, default=2048, help="output chunk side of the end-to-end run")
    parser.add_argument("--base-channels", type=int, default=32, help="model width of the end-to-end run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU runs)")
    parser.add_argument("--skip-cluster", action="store_true", help="only the matmul and the model")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny CPU run that checks the script: --device cpu --batch 4 --repeats 1 "
                             "--matmul-n 512 --cube-side 256 --chunk 256 --base-channels 8")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.batch, args.repeats, args.matmul_n = "cpu", 4, 1, 512
        args.cube_side, args.chunk, args.base_channels = 256, 256, 8

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} but torch {torch.__version__} sees no CUDA device (a CPU build of "
              "torch, or no GPU); use --device cpu or --dry-run", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                              platform.machine())
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()}; device {device} ({name}); "
          f"torch {torch.__version__}; CUDA {torch.version.cuda}; threads {torch.get_num_threads()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if device.type == "cpu":
        print("(CPU: figures check the script, they are not the GPU figures docs/scale.md asks for)")
    if device.type == "cuda" and args.batch < 256:
        print(f"note: --batch {args.batch} < 256; the figure docs/scale.md uses is at batch >= 256")

    peak = matmul_peak(device, args.matmul_n, args.repeats)
    print(f"measured peak: bf16 matmul {args.matmul_n}^2: **{peak / 1e12:.2f} TFLOP/s**")
    model = model_throughput(args, device, peak)
    if not args.skip_cluster:
        cluster_end_to_end(args, device, model["patches_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
