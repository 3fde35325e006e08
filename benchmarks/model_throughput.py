"""Inference cost of CroFuseNet and the early-fusion UNet on this machine.

Prints, per model: parameters; FLOPs per 128x128 patch (``torch.utils.flop_counter.FlopCounterMode``, forward,
2 FLOPs per multiply-add; convolutions and matmuls only); patches/s and km^2/s of 10 m pixels (one patch =
128 x 128 x 100 m^2 = 1.6384 km^2); achieved GFLOP/s and its ratio to a large fp32 matmul's GFLOP/s measured in
the same run (how well the model uses the hardware).

    .venv/bin/python benchmarks/model_throughput.py                 # CPU, 2 threads
    .venv/bin/python benchmarks/model_throughput.py --device cuda --batch 64 --autocast --channels-last
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from crofuse.model import ModelSpec

PIXEL_AREA_M2 = 10.0 * 10.0


def count_flops(model: torch.nn.Module, size: int, device: torch.device) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    optical = torch.randn(1, 4, size, size, device=device)
    sar = torch.randn(1, 2, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(optical, sar)
    return counter.get_total_flops()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, *, repeats: int, warmup: int = 1) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def matmul_gflops(device: torch.device, *, n: int, dtype: torch.dtype, repeats: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_call(lambda: a @ b, device, repeats=repeats)
    return 2 * n**3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["crofusenet", "unet-fusion"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--autocast", action="store_true", help="bf16 (CPU) / fp16 (CUDA) autocast")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    mm_dtype = (torch.float16 if device.type == "cuda" else torch.bfloat16) if args.autocast else torch.float32
    mm = matmul_gflops(device, n=args.matmul_n, dtype=mm_dtype, repeats=args.repeats)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"patch {args.size}x{args.size}, autocast {args.autocast}, channels_last {args.channels_last}")
    print(f"matmul {args.matmul_n}x{args.matmul_n} {str(mm_dtype).removeprefix('torch.')}: {mm:.1f} GFLOP/s")
    km2_per_patch = args.size * args.size * PIXEL_AREA_M2 / 1e6

    for name in args.models:
        torch.manual_seed(0)
        model = ModelSpec(name).build().to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        flops = count_flops(model, args.size, device)
        optical = torch.randn(args.batch, 4, args.size, args.size, device=device)
        sar = torch.randn(args.batch, 2, args.size, args.size, device=device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
            optical = optical.contiguous(memory_format=torch.channels_last)
            sar = sar.contiguous(memory_format=torch.channels_last)

        def run() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=mm_dtype, enabled=args.autocast):
                model(optical, sar)

        seconds = time_call(run, device, repeats=args.repeats)
        patches_s = args.batch / seconds
        achieved = flops * patches_s / 1e9
        print(
            f"{name:12s} params {params / 1e6:6.2f} M | {flops / 1e9:6.2f} GFLOP/patch | "
            f"{patches_s:8.2f} patches/s | {patches_s * km2_per_patch:8.2f} km2/s | "
            f"{achieved:8.1f} GFLOP/s = {achieved / mm:5.1%} of matmul"
        )


if __name__ == "__main__":
    main()
