"""Time and size of building the default demo sample catalog (2 cities × 2 years, ~10×10 km, June).

Target (issue 3): under 2 minutes on 2 cores and under 1 GB of disk. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/sample_catalog.py [--size-km 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from crofuse.synthetic import SampleConfig, build_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-km", type=float, default=SampleConfig().size_km)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    config = SampleConfig(size_km=args.size_km)
    with tempfile.TemporaryDirectory(prefix="crofuse-bench-catalog-") as tmp:
        t0 = time.perf_counter()
        summary = build_catalog(Path(tmp), config, workers=args.workers)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_catalog(Path(tmp), config, workers=args.workers)
        rebuild_s = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    print("\n".join(summary.lines()))
    print(f"build: {build_s:.1f} s wall, {own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime:.1f} s CPU")
    print(f"rebuild with the same settings: {rebuild_s:.2f} s")
    print(f"disk: {summary.bytes_on_disk / 1e6:.0f} MB for {sum(summary.items.values())} items")
    print(f"peak RSS: this process {own.ru_maxrss / 1024:.0f} MB, largest worker {children.ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
