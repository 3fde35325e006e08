"""The cube's dask graph: tasks in the graph ``assemble`` hands to dask, per spatial chunk and per km², for the
benchmark city of ``benchmarks/map_city.py`` (the sample catalog's Wuhan 2022, ``--size-km`` square), and
optionally the computed cube's arrays saved to / compared with an ``.npz`` (to check a graph change keeps values).

    .venv/bin/python benchmarks/cube_graph.py                         # task counts, both loaders
    .venv/bin/python benchmarks/cube_graph.py --save before.npz       # + compute and save the arrays (before-<loader>.npz)
    .venv/bin/python benchmarks/cube_graph.py --compare before.npz    # + compute and compare bit for bit

Counts: ``len(ds.__dask_graph__())`` (the graph handed to ``to_zarr``, before its store layer) and the number of
tasks after dask's own optimisation (``dask.optimize``, what the scheduler runs). Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARS = ("optical", "sar", "valid", "optical_count", "sar_count", "optical_flagged", "sar_flagged", "in_aoi",
        "optical_impossible", "sar_impossible")


def _named(path: Path, loader: str) -> Path:
    """``before.npz`` -> ``before-odc-stac.npz``: one file per loader."""
    return path.with_name(f"{path.stem}-{loader}{path.suffix}")


def main(argv: list[str] | None = None) -> None:
    import dask

    from crofuse.cube import CubeConfig
    from crofuse.cube.aoi import target_geobox
    from crofuse.cube.build import _check_modalities, assemble
    from crofuse.cube.search import search_season
    from crofuse.synthetic import WUHAN, SampleConfig, build_catalog
    from infra.stac import StacServer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-km", type=float, default=10.0)
    p.add_argument("--chunk-size", type=int, default=512)
    p.add_argument("--loaders", default="odc-stac,stackstac")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "crofuse-bench-mapcity")
    p.add_argument("--save", type=Path, default=None)
    p.add_argument("--compare", type=Path, default=None)
    a = p.parse_args(argv)
    catalog = a.work / f"catalog-{a.size_km:g}km"
    build_catalog(catalog, SampleConfig(cities=(WUHAN,), years=(2022,), size_km=a.size_km), workers=1)
    w, s, e, n = WUHAN.geobox(a.size_km).extent.to_crs("EPSG:4326").boundingbox
    with StacServer(catalog) as stac:
        for loader in a.loaders.split(","):
            cfg = CubeConfig(city="wuhan", year=2022, aoi=(w, s, e, n), catalog=stac.url, output=a.work / "graph-out",
                             chunk_size=a.chunk_size, loader=loader)
            items = search_season(cfg)
            missing = _check_modalities(cfg, items)
            gb = target_geobox(cfg.area, resolution=cfg.resolution, epsg=cfg.epsg)
            t = time.perf_counter()
            ds = assemble(cfg, items, gb, missing)
            built = time.perf_counter() - t
            graph = ds.__dask_graph__()
            (opt,) = dask.optimize(ds)
            n_chunks = len(ds["optical"].data.to_delayed().ravel())
            km2 = gb.shape[0] * gb.shape[1] * cfg.resolution ** 2 / 1e6
            print(f"{loader}: {gb.shape[1]} x {gb.shape[0]} px = {km2:.1f} km^2, chunk {a.chunk_size} -> {n_chunks} "
                  f"chunks; {len(items.optical)} S2 + {len(items.sar)} S1 items; graph {len(graph)} tasks "
                  f"({len(graph) / n_chunks:.1f} per chunk, {len(graph) / km2:.1f} per km^2), optimised "
                  f"{len(opt.__dask_graph__())}; assemble {built:.2f} s")
            if a.save or a.compare:
                t = time.perf_counter()
                got = {v: ds[v].values for v in VARS if v in ds}
                print(f"computed in {time.perf_counter() - t:.1f} s (threaded scheduler)")
                if a.save:
                    np.savez(_named(a.save, loader), **got)
                    print(f"saved {_named(a.save, loader)}")
                if a.compare:
                    ref = np.load(_named(a.compare, loader), allow_pickle=False)
                    for v, arr in got.items():
                        same = arr.shape == ref[v].shape and np.array_equal(arr, ref[v], equal_nan=True)
                        print(f"  {v}: {arr.dtype}{arr.shape} {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
