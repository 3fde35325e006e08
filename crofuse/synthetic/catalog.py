"""Write the sample catalog: COGs plus STAC items and collections named as on the Planetary Computer.

Layout under ``OUT``: ``catalog.json``, ``<collection>/collection.json``, ``<collection>/<item>/<item>.json`` with the
item's COGs beside it, and ``build.json`` (the settings and the summary of the last build). An item counts as finished
when its JSON exists, carries the fingerprint of the current settings and all its assets exist; everything is written
under a temporary name and renamed, so an interrupted build never leaves a file that looks finished.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crofuse.errors import DataError
from crofuse.synthetic.cities import City
from crofuse.synthetic.cog import write_cog, write_json
from crofuse.synthetic.config import GENERATOR_VERSION, SampleConfig
from crofuse.synthetic.schedule import Acquisition, boa_offset, sentinel1_schedule, sentinel2_schedule

if TYPE_CHECKING:
    import pystac

    from crofuse.synthetic.landcover import GroundTruth

S2_COLLECTION, S1_COLLECTION, LABELS_COLLECTION = "sentinel-2-l2a", "sentinel-1-rtc", "labels"
COLLECTIONS = (S2_COLLECTION, S1_COLLECTION, LABELS_COLLECTION)
S2_BANDS = ("B02", "B03", "B04", "B08")
S1_BANDS = ("vv", "vh")
_COMMON = {"B02": ("blue", 0.49), "B03": ("green", 0.56), "B04": ("red", 0.665), "B08": ("nir", 0.842)}
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
}
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass
class CatalogSummary:
    """What :func:`build_catalog` wrote: item counts, area, impervious fraction per city and year, timings."""

    root: Path
    items: dict[str, int]
    written: int
    reused: int
    area_km2: dict[str, float]
    impervious_fraction: dict[tuple[str, int], float]
    growth_km2: dict[tuple[str, int], float]
    seconds: float
    bytes_on_disk: int
    config: SampleConfig = field(repr=False)

    def lines(self) -> list[str]:
        """Human-readable report (what ``crofuse sample-catalog build`` prints)."""
        out = [f"catalog: {self.root / 'catalog.json'}"]
        out.append(
            "items: " + ", ".join(f"{k} {v}" for k, v in self.items.items())
            + f" ({self.written} written, {self.reused} reused)"
        )
        for city, km2 in self.area_km2.items():
            out.append(f"{city}: {km2:.2f} km2")
            for (c, y), f in sorted(self.impervious_fraction.items()):
                if c == city:
                    out.append(
                        f"  {y}: impervious fraction {f:.3f}, new impervious since {y - 1}: "
                        f"{self.growth_km2[(c, y)]:.3f} km2"
                    )
        out.append(f"{self.bytes_on_disk / 1e6:.1f} MB on disk, {self.seconds:.1f} s")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "items": self.items,
            "written": self.written,
            "reused": self.reused,
            "area_km2": self.area_km2,
            "impervious_fraction": {f"{c}/{y}": v for (c, y), v in self.impervious_fraction.items()},
            "growth_km2": {f"{c}/{y}": v for (c, y), v in self.growth_km2.items()},
            "seconds": self.seconds,
            "bytes_on_disk": self.bytes_on_disk,
        }


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S")


def item_id(acq: Acquisition, city: City) -> str:
    """Planetary-Computer-like item ids, made unique per city."""
    if acq.collection == S2_COLLECTION:
        return f"S2{acq.platform[-1]}_MSIL2A_{_stamp(acq.datetime)}_R{acq.relative_orbit:03d}_{city.name}"
    return f"S1{acq.platform[-1]}_IW_GRDH_1SDV_{_stamp(acq.datetime)}_{city.name}_rtc"


def label_item_id(city: City, year: int) -> str:
    return f"labels_{city.name}_{year}"


def _geometry(gb) -> tuple[dict, list[float]]:
    geom = gb.extent.to_crs("EPSG:4326")
    g = geom.geom
    return json.loads(json.dumps(g.__geo_interface__)), [float(v) for v in g.bounds]


def _proj(gb, *, shape: tuple[int, int] | None = None, transform=None) -> dict[str, Any]:
    a = transform if transform is not None else gb.affine
    shp = list(shape if shape is not None else gb.shape)
    epsg = gb.crs.epsg
    b = gb.extent.boundingbox
    return {
        "proj:code": f"EPSG:{epsg}",
        "proj:epsg": epsg,  # stackstac 0.5 reads proj:epsg (projection v1); v2 readers use proj:code
        "proj:shape": shp,
        "proj:transform": [a.a, a.b, a.c, a.d, a.e, a.f],
        "proj:bbox": [b.left, b.bottom, b.right, b.top],
    }


def _new_item(iid: str, gb, t: dt.datetime, props: dict[str, Any], extensions: list[str]):
    import pystac

    geom, bbox = _geometry(gb)
    item = pystac.Item(id=iid, geometry=geom, bbox=bbox, datetime=t, properties=dict(props))
    item.properties.update(_proj(gb))
    item.stac_extensions = [EXT[e] for e in ["proj", *extensions]]
    return item


def _asset(href: Path, title: str, roles: list[str], bands: list[dict], extra: dict | None = None):
    import pystac

    fields = {"raster:bands": bands, **(extra or {})}
    return pystac.Asset(href=str(href.resolve()), media_type=COG_TYPE, title=title, roles=roles, extra_fields=fields)


def _finished(path: Path, fingerprint: str) -> pystac.Item | None:
    """The item at ``path`` if it is complete and was built with the current settings, else None."""
    import pystac

    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if d.get("properties", {}).get("crofuse:fingerprint") != fingerprint:
        return None
    if not all(Path(a["href"]).exists() for a in d.get("assets", {}).values()):
        return None
    return pystac.Item.from_dict(d, migrate=False)


def _common_props(city: City, fingerprint: str, seed: int) -> dict[str, Any]:
    return {"crofuse:city": city.name, "crofuse:fingerprint": fingerprint, "crofuse:seed": seed,
            "crofuse:generator": GENERATOR_VERSION, "crofuse:synthetic": True}


def _write_s2(out: Path, city: City, truth: GroundTruth, acq: Acquisition, cfg: SampleConfig, fp: str):
    from crofuse.synthetic.optical import SCL_RESOLUTION_M, simulate_optical

    scene = simulate_optical(
        truth, acq, seed=cfg.seed, cloud_scale=cfg.cloud_scale,
        partial_swath_probability=cfg.partial_swath_probability, temporal_variation=cfg.temporal_variation,
        overcast=cfg.overcast,
    )
    iid = item_id(acq, city)
    d = out / S2_COLLECTION / iid
    gb = truth.geobox
    offset = boa_offset(scene.baseline)
    props = _common_props(city, fp, cfg.seed) | {
        "platform": acq.platform, "constellation": "Sentinel-2", "instruments": ["msi"],
        "eo:cloud_cover": round(scene.cloud_cover, 3), "s2:processing_baseline": scene.baseline,
        "s2:boa_add_offset": -offset, "sat:orbit_state": acq.orbit_state, "sat:relative_orbit": acq.relative_orbit,
        "gsd": 10,
    }
    item = _new_item(iid, gb, acq.datetime, props, ["eo", "raster", "sat"])
    for k, band in enumerate(S2_BANDS):
        p = write_cog(d / f"{band}.tif", scene.dn[k], gb, nodata=0, band_names=(band,))
        common, wl = _COMMON[band]
        item.add_asset(band, _asset(p, f"Band {band} ({common}) - 10m", ["data", "reflectance"], [{
            "nodata": 0, "data_type": "uint16", "spatial_resolution": 10, "scale": 0.0001,
            "offset": -offset / 10000.0, "unit": "1",
        }], {"eo:bands": [{"name": band, "common_name": common, "center_wavelength": wl}], "gsd": 10}))
    scl_gb = gb.zoom_out(2)
    p = write_cog(d / "SCL.tif", scene.scl, scl_gb, nodata=0, band_names=("SCL",))
    item.add_asset("SCL", _asset(p, "Scene classification map (SCL) - 20m", ["data"], [{
        "nodata": 0, "data_type": "uint8", "spatial_resolution": SCL_RESOLUTION_M}],
        {"gsd": SCL_RESOLUTION_M, **_proj(scl_gb)}))
    return item


def _write_s1(out: Path, city: City, truth: GroundTruth, acq: Acquisition, cfg: SampleConfig, fp: str):
    from crofuse.synthetic.sar import simulate_sar

    scene = simulate_sar(truth, acq, seed=cfg.seed, enl=cfg.enl, temporal_variation=cfg.temporal_variation)
    iid = item_id(acq, city)
    d = out / S1_COLLECTION / iid
    gb = truth.geobox
    props = _common_props(city, fp, cfg.seed) | {
        "platform": acq.platform, "constellation": "Sentinel-1", "instruments": ["c-sar"],
        "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:polarizations": ["VV", "VH"],
        "sar:product_type": "GRD", "sat:orbit_state": acq.orbit_state, "sat:relative_orbit": acq.relative_orbit,
        "crofuse:enl": cfg.enl, "gsd": 10,
    }
    item = _new_item(iid, gb, acq.datetime, props, ["raster", "sat", "sar"])
    for k, band in enumerate(S1_BANDS):
        p = write_cog(d / f"{band}.tif", scene.gamma0[k], gb, nodata=float("nan"), band_names=(band.upper(),),
                      overview_resampling="average")
        item.add_asset(band, _asset(p, f"{band.upper()}: gamma0 terrain-corrected, linear power", ["data"], [{
            "nodata": "nan", "data_type": "float32", "spatial_resolution": 10, "unit": "linear power"}]))
    return item


_LANDCOVER_CLASSES = [
    {"value": 1, "name": "water"}, {"value": 2, "name": "trees"}, {"value": 3, "name": "grass"},
    {"value": 4, "name": "cropland"}, {"value": 5, "name": "bare-soil"}, {"value": 6, "name": "paved"},
    {"value": 7, "name": "building"},
]


def _write_labels(out: Path, city: City, truth: GroundTruth, cfg: SampleConfig, fp: str):
    iid = label_item_id(city, truth.year)
    d = out / LABELS_COLLECTION / iid
    gb = truth.geobox
    px_km2 = (gb.resolution.x**2) / 1e6
    props = _common_props(city, fp, cfg.seed) | {
        "crofuse:year": truth.year,
        "crofuse:impervious_fraction": float(truth.label.mean()),
        "crofuse:impervious_km2": float(truth.label.sum() * px_km2),
        "crofuse:growth_km2": float(truth.growth.sum() * px_km2),
        "start_datetime": f"{truth.year}-01-01T00:00:00Z",
        "end_datetime": f"{truth.year}-12-31T23:59:59Z",
    }
    t = dt.datetime(truth.year, 7, 1, tzinfo=dt.UTC)
    item = _new_item(iid, gb, t, props, ["raster", "classification"])
    p = write_cog(d / "impervious.tif", truth.label, gb, nodata=255, band_names=("impervious",))
    item.add_asset("impervious", _asset(p, "Impervious surface (1) / pervious (0), 10 m", ["data", "labels"], [{
        "nodata": 255, "data_type": "uint8", "spatial_resolution": 10}],
        {"classification:classes": [{"value": 0, "name": "pervious"}, {"value": 1, "name": "impervious"}]}))
    p = write_cog(d / "landcover.tif", truth.landcover, gb, nodata=0, band_names=("landcover",))
    item.add_asset("landcover", _asset(p, "Majority land cover, 10 m", ["data", "labels"], [{
        "nodata": 0, "data_type": "uint8", "spatial_resolution": 10}],
        {"classification:classes": _LANDCOVER_CLASSES}))
    p = write_cog(d / "growth.tif", truth.growth, gb, nodata=255, band_names=("growth",))
    item.add_asset("growth", _asset(p, f"Impervious since {truth.year - 1} (1) / not (0)", ["data", "labels"], [{
        "nodata": 255, "data_type": "uint8", "spatial_resolution": 10}]))
    p = write_cog(d / "impervious_fraction.tif", truth.impervious_fraction, gb, nodata=float("nan"),
                  band_names=("impervious_fraction",), overview_resampling="average")
    item.add_asset("impervious_fraction", _asset(p, "Impervious share of each 10 m pixel", ["data"], [{
        "nodata": "nan", "data_type": "float32", "spatial_resolution": 10}]))
    return item


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _city_plan(cfg: SampleConfig, city: City) -> list[tuple[int, str, Acquisition | None]]:
    plan: list[tuple[int, str, Acquisition | None]] = []
    for year in cfg.years:
        plan.append((year, LABELS_COLLECTION, None))
        plan += [(year, S2_COLLECTION, a) for a in sentinel2_schedule(city, year, cfg.months)]
        plan += [(year, S1_COLLECTION, a) for a in sentinel1_schedule(
            city, year, cfg.months, orbits=cfg.s1_orbits, gap_months=cfg.s1_gap_months)]
    return plan


def _build_city(out: Path, cfg: SampleConfig, city: City, tick: Callable[[str], None]) -> list[tuple[str, dict, bool]]:
    """Write (or reuse) every item of one city; returns (collection, item dict, written) per item."""
    from crofuse.synthetic.landcover import generate_truths

    truths: dict[int, GroundTruth] | None = None
    results = []
    for year, coll, acq in _city_plan(cfg, city):
        fp = cfg.city_fingerprint(city, year)
        iid = label_item_id(city, year) if acq is None else item_id(acq, city)
        path = out / coll / iid / f"{iid}.json"
        item = _finished(path, fp)
        written = item is None
        if item is None:
            if truths is None:
                truths = generate_truths(
                    city, cfg.years, size_km=cfg.size_km, seed=cfg.seed, subpixel=cfg.subpixel,
                    growth_rate=cfg.growth_rate, base_year=cfg.base_year,
                )
            truth = truths[year]
            if acq is None:
                item = _write_labels(out, city, truth, cfg, fp)
            elif coll == S2_COLLECTION:
                item = _write_s2(out, city, truth, acq, cfg, fp)
            else:
                item = _write_s1(out, city, truth, acq, cfg, fp)
            item.set_self_href(str(path))
            write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))
        results.append((coll, item.to_dict(include_self_link=False, transform_hrefs=False), written))
        tick(iid)
    return results


_QUEUE = None


def _init_worker(queue) -> None:
    global _QUEUE
    _QUEUE = queue


def _build_city_worker(out: Path, cfg: SampleConfig, city: City) -> list[tuple[str, dict, bool]]:
    return _build_city(out, cfg, city, _QUEUE.put)


def _city_done(out: Path, cfg: SampleConfig, city: City) -> bool:
    for year, coll, acq in _city_plan(cfg, city):
        iid = label_item_id(city, year) if acq is None else item_id(acq, city)
        if _finished(out / coll / iid / f"{iid}.json", cfg.city_fingerprint(city, year)) is None:
            return False
    return True


def build_catalog(
    out: Path | str, config: SampleConfig | None = None, *, progress: bool = False, workers: int | None = None,
    on_item: Callable[[str], None] | None = None,
) -> CatalogSummary:
    """Simulate the cities of ``config`` and write COGs plus a STAC catalog under ``out``.

    Idempotent: finished items built with the same settings are reused, not rewritten. ``workers`` processes build
    cities in parallel (default: one per city, at most 2); ``workers=1`` builds in this process.
    """
    import pystac
    from tqdm.auto import tqdm

    cfg = config or SampleConfig()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    total = sum(len(_city_plan(cfg, c)) for c in cfg.cities)
    n_workers = min(len(cfg.cities), 2) if workers is None else max(1, min(workers, len(cfg.cities)))
    bar = tqdm(total=total, desc="sample catalog", unit="item", disable=not progress)

    def tick(iid: str) -> None:
        bar.set_postfix_str(iid)
        bar.update(1)
        if on_item is not None:
            on_item(iid)

    per_city: dict[str, list[tuple[str, dict, bool]]] = {}
    todo = [c for c in cfg.cities if not _city_done(out, cfg, c)]
    if n_workers == 1 or len(todo) <= 1:
        for city in cfg.cities:
            per_city[city.name] = _build_city(out, cfg, city, tick)
    else:
        import multiprocessing as mp
        import queue as queue_mod
        import threading
        from concurrent.futures import ProcessPoolExecutor

        for city in cfg.cities:
            if city not in todo:
                per_city[city.name] = _build_city(out, cfg, city, tick)
        # fork is cheap; a process running threads (servers, dask) gets spawn instead, which is safe
        ctx = mp.get_context("fork" if threading.active_count() == 1 else "spawn")
        q = ctx.Queue()
        with ProcessPoolExecutor(
            min(n_workers, len(todo)), mp_context=ctx, initializer=_init_worker, initargs=(q,)
        ) as pool:
            futures = {pool.submit(_build_city_worker, out, cfg, city): city.name for city in todo}
            pending = set(futures)
            while pending:
                try:
                    tick(q.get(timeout=0.2))
                except queue_mod.Empty:
                    pass
                for f in [f for f in pending if f.done()]:
                    pending.discard(f)
                    per_city[futures[f]] = f.result()  # re-raises a worker's error here
            while not q.empty():
                tick(q.get())
    bar.close()
    items: dict[str, list[pystac.Item]] = {c: [] for c in COLLECTIONS}
    written = reused = 0
    isf: dict[tuple[str, int], float] = {}
    growth: dict[tuple[str, int], float] = {}
    area: dict[str, float] = {}
    for city in cfg.cities:
        gb = city.geobox(cfg.size_km)
        area[city.name] = gb.shape[0] * gb.shape[1] * (gb.resolution.x**2) / 1e6
        for coll, d, was_written in per_city[city.name]:
            item = pystac.Item.from_dict(d, migrate=False)
            written += was_written
            reused += not was_written
            if coll == LABELS_COLLECTION:
                year = int(item.properties["crofuse:year"])
                isf[(city.name, year)] = float(item.properties["crofuse:impervious_fraction"])
                growth[(city.name, year)] = float(item.properties["crofuse:growth_km2"])
            items[coll].append(item)
    _write_stac(out, cfg, items)
    summary = CatalogSummary(
        root=out, items={c: len(v) for c, v in items.items()}, written=written, reused=reused, area_km2=area,
        impervious_fraction=isf, growth_km2=growth, seconds=time.perf_counter() - t0,
        bytes_on_disk=_dir_bytes(out), config=cfg,
    )
    write_json(out / "build.json", {"config": cfg.to_dict(), "summary": summary.to_dict()})
    return summary


_DESCRIPTIONS = {
    S2_COLLECTION: "SYNTHETIC Sentinel-2 Level-2A surface reflectance (B02, B03, B04, B08 as uint16 DN, SCL at 20 m), "
    "simulated by crofuse.synthetic over procedural cities. Not real data.",
    S1_COLLECTION: "SYNTHETIC Sentinel-1 radiometrically terrain-corrected gamma0 (VV, VH, linear power, float32) "
    "with Gamma speckle, simulated by crofuse.synthetic. Not real data.",
    LABELS_COLLECTION: "Exact ground truth of the synthetic cities: impervious label, land cover, growth since the "
    "previous year and impervious fraction per 10 m pixel.",
}


def _write_stac(out: Path, cfg: SampleConfig, items: dict[str, list]) -> None:
    import pystac

    catalog = pystac.Catalog(
        id="crofuse-sample", description="crofuse synthetic sample catalog (procedural cities; not real data)",
        title="crofuse sample catalog", catalog_type=pystac.CatalogType.ABSOLUTE_PUBLISHED,
    )
    all_items = [i for its in items.values() for i in its]
    for cid, its in items.items():
        # an empty collection (e.g. every Sentinel-1 month in s1_gap_months) is still listed, with the catalog's extent
        src = its or all_items
        bboxes = np.array([i.bbox for i in src])
        times = sorted(i.datetime for i in src)
        extent = pystac.Extent(
            pystac.SpatialExtent([[*bboxes[:, :2].min(0).tolist(), *bboxes[:, 2:].max(0).tolist()]]),
            pystac.TemporalExtent([[times[0], times[-1]]]),
        )
        cities = sorted({i.properties["crofuse:city"] for i in src})
        coll = pystac.Collection(
            id=cid, description=_DESCRIPTIONS[cid], extent=extent, license="CC0-1.0", title=cid,
            summaries=pystac.Summaries({"crofuse:city": cities}),
            catalog_type=pystac.CatalogType.ABSOLUTE_PUBLISHED,
        )
        for it in its:
            it.clear_links()
            coll.add_item(it)
        catalog.add_child(coll)
    # The trailing separator matters: pystac takes a last component with a dot ("wuhan-8.2km") for a file name.
    catalog.normalize_hrefs(str(out).rstrip("/") + "/")
    for obj in [catalog, *catalog.get_children(), *catalog.get_items(recursive=True)]:
        d = obj.to_dict(include_self_link=True, transform_hrefs=True)
        write_json(Path(obj.get_self_href()), d)


def read_manifest(out: Path | str) -> dict[str, Any]:
    """The ``build.json`` of a catalog folder (settings and summary); DataError if it is not a built catalog."""
    p = Path(out) / "build.json"
    if not p.exists():
        raise DataError(f"{out} is not a sample catalog (no build.json); run `crofuse sample-catalog build {out}`")
    return json.loads(p.read_text())
