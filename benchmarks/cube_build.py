"""Benchmark: build an input cube for a demo-sized city from a local catalog, then for an AOI 4x larger.

Prints wall seconds, throughput (COG bytes of the items used per second, and uncompressed cube bytes written per
second) and peak memory of each build, each run in a fresh subprocess so the peak RSS is that build's own. Peak
memory should stay roughly flat as the AOI grows: the cube is computed chunk by chunk, never whole scenes.

    python benchmarks/cube_build.py [--size-km 4] [--chunk-size 256] [--loader odc-stac] [--threads 2]

The sample catalog (one city, June 2022, side ``2 x size-km``) is built once with ``crofuse.synthetic`` into
``<system tmp>/crofuse-bench-cube`` and reused. Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, os, resource, sys, time
import dask
from crofuse.cube import CubeConfig, build_cube, open_cube
import odc.stac, stackstac, rioxarray  # noqa: F401  (imports counted in the baseline, not in the build)
args = json.loads(sys.argv[1])
dask.config.set(scheduler="threads", num_workers=args["threads"])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cfg = CubeConfig(city="wuhan", year=2022, aoi=tuple(args["bbox"]), catalog=args["url"], output=args["out"],
                 chunk_size=args["chunk"], loader=args["loader"])
t = time.perf_counter()
path = build_cube(cfg, progress=False, force=True)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ds = open_cube(path)
out_bytes = sum(v.size * v.dtype.itemsize for v in ds.data_vars.values())
# the COG bytes behind the items the cube used (what had to be read, at most)
in_bytes = 0
for coll, ids, keys in (("sentinel-2-l2a", ds.attrs["optical_items"], ["B02", "B03", "B04", "B08", "SCL"]),
                        ("sentinel-1-rtc", ds.attrs["sar_items"], ["vv", "vh"])):
    for iid in ids:
        item = json.load(open(os.path.join(args["catalog"], coll, iid, iid + ".json")))
        in_bytes += sum(os.path.getsize(item["assets"][k]["href"]) for k in keys)
# the pixels the loaders decode: 4 uint16 bands + SCL (20 m, uint8) per Sentinel-2 item, 2 float32 per Sentinel-1 item
px = ds.sizes["y"] * ds.sizes["x"]
decoded = px * (len(ds.attrs["optical_items"]) * (4 * 2 + 0.25) + len(ds.attrs["sar_items"]) * 2 * 4)
print(json.dumps({"seconds": seconds, "decoded_mb": decoded / 1e6, "base_rss_mb": base / 1024, "peak_rss_mb": peak / 1024,
                  "shape": [ds.sizes["y"], ds.sizes["x"]], "in_mb": in_bytes / 1e6, "out_mb": out_bytes / 1e6,
                  "chunks": len(ds["optical"].data.to_delayed().ravel()), "valid": ds.attrs["valid_fraction"]}))
"""


def _catalog(size_km: float) -> Path:
    from crofuse.synthetic import WUHAN, SampleConfig, build_catalog

    # no dot in the folder name: pystac would take "wuhan-8.2km" for a file and write the STAC JSON beside it
    root = Path(tempfile.gettempdir()) / "crofuse-bench-cube" / f"wuhan-{size_km * 1000:.0f}m"
    t = time.perf_counter()
    summary = build_catalog(root, SampleConfig(cities=(WUHAN,), years=(2022,), size_km=size_km), progress=True)
    print(f"catalog {root}: {summary.items}, {summary.bytes_on_disk / 1e6:.0f} MB "
          f"({summary.reused} items reused, {time.perf_counter() - t:.0f} s)")
    return root


def _bbox(size_km: float, catalog_km: float) -> tuple[float, float, float, float]:
    """A centred square of side ``size_km`` inside the catalog's square, in lon/lat."""
    from crofuse.synthetic import WUHAN

    w, s, e, n = WUHAN.geobox(catalog_km).extent.to_crs("EPSG:4326").boundingbox
    f = (1 - size_km / catalog_km) / 2
    return (w + (e - w) * f, s + (n - s) * f, e - (e - w) * f, n - (n - s) * f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-km", type=float, default=4.0, help="side of the demo city AOI (the demo uses 4 km)")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--loader", default="odc-stac", choices=["odc-stac", "stackstac"])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    from infra.stac import StacServer

    catalog_km = 2 * a.size_km + 0.2  # room for the 4x (2x side) AOI
    root = _catalog(catalog_km)
    rows = []
    with StacServer(root) as api, tempfile.TemporaryDirectory() as out:
        for label, side in (("demo AOI", a.size_km), ("4x AOI", 2 * a.size_km)):
            args = {"bbox": _bbox(side * 0.999, catalog_km), "url": api.url, "out": out, "chunk": a.chunk_size,
                    "loader": a.loader, "threads": a.threads, "catalog": str(root)}
            res = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True,
                                 env=os.environ | {"PYTHONWARNINGS": "ignore"}, check=False)
            if res.returncode != 0:
                sys.exit(f"{label} build failed:\n{res.stderr[-4000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append((label, r))
    print(f"\ncube build, loader {a.loader}, chunk {a.chunk_size} px, {a.threads} dask threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine: other jobs may be running)")
    print("  input MB = pixels decoded from the COGs inside the AOI (uncompressed); COG MB = size of the files")
    print(f"{'':9} {'pixels':>11} {'chunks':>6} {'seconds':>8} {'input MB':>8} {'in MB/s':>8} {'COG MB':>7} "
          f"{'cube MB':>8} {'out MB/s':>8} {'RSS base':>9} {'RSS peak':>9} {'build +':>8}")
    for label, r in rows:
        grow = r["peak_rss_mb"] - r["base_rss_mb"]
        print(f"{label:9} {r['shape'][0]:>5}x{r['shape'][1]:<5} {r['chunks']:>6} {r['seconds']:>8.1f} "
              f"{r['decoded_mb']:>8.1f} {r['decoded_mb'] / r['seconds']:>8.2f} {r['in_mb']:>7.1f} {r['out_mb']:>8.1f} "
              f"{r['out_mb'] / r['seconds']:>8.2f} {r['base_rss_mb']:>8.0f}M {r['peak_rss_mb']:>8.0f}M {grow:>7.0f}M")
    (_, small), (_, big) = rows
    print(f"4x AOI: time x{big['seconds'] / small['seconds']:.2f}, peak RSS x{big['peak_rss_mb'] / small['peak_rss_mb']:.2f}"
          f" (build increment x{(big['peak_rss_mb'] - big['base_rss_mb']) / max(small['peak_rss_mb'] - small['base_rss_mb'], 1):.2f})")


if __name__ == "__main__":
    main()
