"""Benchmark: a 2-city x 2-year training set built from a local STAC API, with the share of time per stage.

Prints patches/s, the COG bytes read per second, and the share of the build spent in search, load, composite (+ the
cube write), labels and patch writing. The stages are timed as follows: the whole build runs once with fresh cubes
(``crofuse.trainingset.build_training_set``, which reports cube, label, plan and write seconds); the search
(``crofuse.cube.search_season``) and the raw load (the loaders' dask arrays computed, no composite) of every city-year
are then timed on their own, and the cube time minus search and load is the composite and cube-write share.

    python benchmarks/training_set.py [--size-km 4] [--threads 2] [--split blocked]

The sample catalog (Hefei and Nanchang, 2021 and 2022, June) is built once into ``<system tmp>/crofuse-bench-ts``
and reused; every run builds the training set from scratch. Figures depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _catalog(size_km: float) -> Path:
    from crofuse.synthetic import TRAINING_CITIES, SampleConfig, build_catalog

    root = Path(tempfile.gettempdir()) / "crofuse-bench-ts" / f"catalog-{size_km * 1000:.0f}m"
    build_catalog(root, SampleConfig(cities=TRAINING_CITIES, years=(2021, 2022), size_km=size_km), progress=False)
    return root


def _asset_bytes(items, keys) -> int:
    return sum(os.path.getsize(it.assets[k].href) for it in items for k in keys if os.path.exists(it.assets[k].href))


def _load_only(config) -> tuple[float, int, float]:
    """(search seconds, COG bytes of the assets, load seconds) of one city-year."""
    import dask

    from crofuse.cube import search_season, target_geobox
    from crofuse.cube.loaders import load_assets

    t = time.perf_counter()
    items = search_season(config)
    search_s = time.perf_counter() - t
    prof = config.catalog_profile
    geobox = target_geobox(config.area, resolution=config.resolution)
    common = {"loader": config.loader, "chunk_size": config.chunk_size}
    arrays = [
        load_assets(items.optical, list(prof.optical_assets.values()), geobox, dtype="uint16", nodata=0, **common),
        load_assets(items.optical, [prof.scl_asset], geobox, dtype="uint8", nodata=0, resampling="nearest", **common),
        load_assets(items.sar, list(prof.sar_assets.values()), geobox, dtype="float32", nodata=float("nan"), **common),
    ]
    t = time.perf_counter()
    dask.compute(*[a.data for a in arrays])
    load_s = time.perf_counter() - t
    nbytes = _asset_bytes(items.optical, [*prof.optical_assets.values(), prof.scl_asset])
    nbytes += _asset_bytes(items.sar, list(prof.sar_assets.values()))
    return search_s, nbytes, load_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-km", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2, help="dask threads")
    p.add_argument("--split", default="blocked")
    args = p.parse_args(argv)

    catalog = _catalog(args.size_km)
    import dask

    from crofuse.cities import CitySpec
    from crofuse.cube import CubeConfig
    from crofuse.labels import city_extent
    from crofuse.synthetic import TRAINING_CITIES
    from crofuse.trainingset import build_training_set, training_set_config
    from infra.stac import StacServer

    dask.config.set(scheduler="threads", num_workers=args.threads)
    out = Path(tempfile.gettempdir()) / "crofuse-bench-ts" / "ts"
    shutil.rmtree(out, ignore_errors=True)
    with StacServer(catalog) as stac:
        config = training_set_config(out=out, cities=[CitySpec(name=c.name) for c in TRAINING_CITIES],
                                     years=[2021, 2022], catalog=stac.url, split=args.split)
        t0 = time.perf_counter()
        summary = build_training_set(config, progress=False)
        total = time.perf_counter() - t0
        search_s = load_s = 0.0
        nbytes = 0
        for city in TRAINING_CITIES:
            aoi = city_extent(stac.url, city.name)
            for year in (2021, 2022):
                s, b, load = _load_only(CubeConfig(city=city.name, year=year, aoi=aoi, catalog=stac.url,
                                                   output=out / "scratch"))
                search_s, nbytes, load_s = search_s + s, nbytes + b, load_s + load
    sec = summary.seconds
    patches = sum(summary.counts.values())
    stages = {
        "search": search_s,
        "load": load_s,
        "composite + cube write": max(0.0, sec["cubes"] - search_s - load_s),
        "labels": sec["labels"],
        "split + patch writing": sec["plan"] + sec["write"],
    }
    accounted = sum(stages.values())
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; dask threads {args.threads}")
    print(f"training set: 2 cities x 2 years, {args.size_km:g} km each, split {args.split}: {summary.counts} "
          f"({summary.leaked_pixels} val/test pixels inside a training patch)")
    print(f"total {total:.1f} s: {patches / total:.2f} patches/s, {nbytes / 1e6 / total:.2f} MB/s of COG bytes over "
          f"the whole build ({nbytes / 1e6:.1f} MB; {nbytes / 1e6 / max(load_s, 1e-9):.1f} MB/s during the load)")
    for name, seconds in stages.items():
        print(f"  {name:<24} {seconds:7.2f} s  {100 * seconds / accounted:5.1f} %")
    print(json.dumps({"total_s": total, "patches": patches, "mb": nbytes / 1e6, "stages_s": stages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
