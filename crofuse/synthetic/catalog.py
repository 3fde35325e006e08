"""Write the sample catalog: COGs plus STAC items and collections named as on the Planetary Computer.

Layout under ``OUT``: ``catalog.json``, ``<collection>/collection.json``, ``<collection>/<item>/<item>.json`` with the
item's COGs beside it, and ``build.json`` (the settings and the summary of the last build). An item counts as finished
when its JSON exists, carries the fingerprint of the current settings and all its assets exist with the
``file:size`` and ``file:checksum`` the JSON records; everything is written
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
from crofuse.synthetic.config import SampleConfig
from crofuse.synthetic.schedule import Acquisition, boa_offset, sentinel1_schedule, sentinel2_schedule

if TYPE_CHECKING:
    import pystac

    from crofuse.synthetic.landcover import GroundTruth

S2_COLLECTION, S1_COLLECTION, LABELS_COLLECTION = "sentinel-2-l2a", "sentinel-1-rtc", "labels"
WORLDCOVER_COLLECTION, IO_LULC_COLLECTION = "esa-worldcover", "io-lulc-annual-v02"
COLLECTIONS = (S2_COLLECTION, S1_COLLECTION, LABELS_COLLECTION, WORLDCOVER_COLLECTION, IO_LULC_COLLECTION)
WEAK_LABEL_COLLECTIONS = (WORLDCOVER_COLLECTION, IO_LULC_COLLECTION)
WEAK_LABELS_VERSION = "1"
"""Part of the fingerprint of the weak-label items: bumped whenever :mod:`crofuse.synthetic.weak_labels` changes."""
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
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
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


def io_lulc_item_id(city: City, year: int) -> str:
    """``<city>-<year>`` (Planetary Computer's ids are ``<UTM tile>-<year>``)."""
    return f"{city.name}-{year}"


def _plan_item_id(city: City, year: int, collection: str, acq: Acquisition | None) -> str:
    if acq is not None:
        return item_id(acq, city)
    if collection == WORLDCOVER_COLLECTION:
        from crofuse.synthetic.weak_labels import worldcover_item_id

        return worldcover_item_id(city.name, year)
    if collection == IO_LULC_COLLECTION:
        return io_lulc_item_id(city, year)
    return label_item_id(city, year)


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


def _new_item(iid: str, gb, t: dt.datetime, props: dict[str, Any], extensions: list[str], *, grid=None):
    """An item whose footprint is ``gb``'s and whose projection fields describe ``grid`` (default ``gb``)."""
    import pystac

    geom, bbox = _geometry(gb)
    item = pystac.Item(id=iid, geometry=geom, bbox=bbox, datetime=t, properties=dict(props))
    item.properties.update(_proj(grid if grid is not None else gb))
    item.stac_extensions = [EXT[e] for e in ["proj", *extensions, "file"]]
    return item


def file_checksum(path: Path) -> str:
    """``file:checksum`` of a file: its SHA2-256 as a hex multihash (``1220`` + 64 hex digits)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "1220" + h.hexdigest()


def _asset(href: Path, title: str, roles: list[str], bands: list[dict], extra: dict | None = None):
    """A COG asset with ``raster:bands`` and the file extension's ``file:checksum``/``file:size`` of the file as
    written (``crofuse.cube`` verifies them before reading)."""
    import pystac

    fields = {"raster:bands": bands, **(extra or {}), "file:checksum": file_checksum(href),
              "file:size": href.stat().st_size}
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
    for a in d.get("assets", {}).values():
        p = Path(a["href"])
        # a missing, truncated, damaged or replaced COG (or an item written before assets carried file:checksum) is
        # redone: hashing is ~1 s per GB, small next to generating the item again
        if not p.exists() or "file:checksum" not in a or p.stat().st_size != a.get("file:size"):
            return None
        if file_checksum(p) != a["file:checksum"]:
            return None
    return pystac.Item.from_dict(d, migrate=False)


def _common_props(city: City, fingerprint: str, cfg: SampleConfig) -> dict[str, Any]:
    props = {"crofuse:city": city.name, "crofuse:fingerprint": fingerprint, "crofuse:seed": cfg.seed,
             "crofuse:generator": cfg.version, "crofuse:synthetic": True}
    if cfg.generator >= 2:
        props["crofuse:palette"] = city.palette
    return props


def optical_kwargs(cfg: SampleConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`~crofuse.synthetic.optical.simulate_optical` for a catalog of ``cfg``."""
    return {"seed": cfg.seed, "cloud_scale": cfg.cloud_scale, "partial_swath_probability": cfg.partial_swath_probability,
            "temporal_variation": cfg.temporal_variation, "overcast": cfg.overcast,
            "difficulty": cfg.difficulty if cfg.generator >= 2 else None}


def sar_kwargs(cfg: SampleConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`~crofuse.synthetic.sar.simulate_sar` for a catalog of ``cfg``."""
    return {"seed": cfg.seed, "enl": cfg.enl, "temporal_variation": cfg.temporal_variation,
            "difficulty": cfg.difficulty if cfg.generator >= 2 else None}


def _write_s2(out: Path, city: City, truth: GroundTruth, acq: Acquisition, cfg: SampleConfig, fp: str):
    from crofuse.synthetic.optical import SCL_RESOLUTION_M, simulate_optical

    scene = simulate_optical(truth, acq, **optical_kwargs(cfg))
    iid = item_id(acq, city)
    d = out / S2_COLLECTION / iid
    gb = truth.geobox
    offset = boa_offset(scene.baseline)
    props = _common_props(city, fp, cfg) | {
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
        }], {"eo:bands": [{"name": band, "common_name": common, "center_wavelength": wl}], "gsd": 10, **_proj(gb)}))
    scl_gb = gb.zoom_out(2)
    p = write_cog(d / "SCL.tif", scene.scl, scl_gb, nodata=0, band_names=("SCL",))
    item.add_asset("SCL", _asset(p, "Scene classification map (SCL) - 20m", ["data"], [{
        "nodata": 0, "data_type": "uint8", "spatial_resolution": SCL_RESOLUTION_M}],
        {"gsd": SCL_RESOLUTION_M, **_proj(scl_gb)}))
    return item


def _write_s1(out: Path, city: City, truth: GroundTruth, acq: Acquisition, cfg: SampleConfig, fp: str):
    from crofuse.synthetic.sar import simulate_sar

    scene = simulate_sar(truth, acq, **sar_kwargs(cfg))
    iid = item_id(acq, city)
    d = out / S1_COLLECTION / iid
    gb = truth.geobox
    props = _common_props(city, fp, cfg) | {
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
            "nodata": "nan", "data_type": "float32", "spatial_resolution": 10, "unit": "linear power"}], _proj(gb)))
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
    props = _common_props(city, fp, cfg) | {
        "crofuse:year": truth.year,
        "crofuse:impervious_fraction": float(truth.label.mean()),
        "crofuse:impervious_km2": float(truth.label.sum() * px_km2),
        "crofuse:growth_km2": float(truth.growth.sum() * px_km2),
        "start_datetime": f"{truth.year}-01-01T00:00:00Z",
        "end_datetime": f"{truth.year}-12-31T23:59:59Z",
    }
    v2 = cfg.generator >= 2
    if v2:
        dr, dc = truth.extra["reference_shift_px"]
        props |= {
            "crofuse:reference_impervious_fraction": float(truth.reference.mean()),
            "crofuse:reference_agreement": float((truth.reference == truth.label).mean()),
            "crofuse:reference_shift_px": [round(dr, 4), round(dc, 4)],
            "crofuse:reference_growth_km2": float(truth.extra["reference_growth"].sum() * px_km2),
        }
    t = dt.datetime(truth.year, 7, 1, tzinfo=dt.UTC)
    item = _new_item(iid, gb, t, props, ["raster", "classification"])
    binary = {"classification:classes": [{"value": 0, "name": "pervious"}, {"value": 1, "name": "impervious"}]}
    if v2:  # the reference a dataset gives (annotation errors), and the exact truth beside it
        p = write_cog(d / "impervious.tif", truth.reference, gb, nodata=255, band_names=("impervious",))
        item.add_asset("impervious", _asset(
            p, "Reference impervious surface (1) / pervious (0), 10 m, drawn with an annotator's errors "
            "(co-registration, time lag)", ["data", "labels"], [{
                "nodata": 255, "data_type": "uint8", "spatial_resolution": 10}], {**binary, **_proj(gb)}))
        p = write_cog(d / "impervious_exact.tif", truth.label, gb, nodata=255, band_names=("impervious_exact",))
        item.add_asset("impervious_exact", _asset(
            p, "Exact impervious surface (1) / pervious (0), 10 m: impervious share >= 0.5", ["data", "labels"], [{
                "nodata": 255, "data_type": "uint8", "spatial_resolution": 10}], {**binary, **_proj(gb)}))
    else:
        p = write_cog(d / "impervious.tif", truth.label, gb, nodata=255, band_names=("impervious",))
        item.add_asset("impervious", _asset(p, "Impervious surface (1) / pervious (0), 10 m", ["data", "labels"], [{
            "nodata": 255, "data_type": "uint8", "spatial_resolution": 10}], {**binary, **_proj(gb)}))
    p = write_cog(d / "landcover.tif", truth.landcover, gb, nodata=0, band_names=("landcover",))
    item.add_asset("landcover", _asset(p, "Majority land cover, 10 m", ["data", "labels"], [{
        "nodata": 0, "data_type": "uint8", "spatial_resolution": 10}],
        {"classification:classes": _LANDCOVER_CLASSES, **_proj(gb)}))
    p = write_cog(d / "growth.tif", truth.growth, gb, nodata=255, band_names=("growth",))
    item.add_asset("growth", _asset(p, f"Impervious since {truth.year - 1} (1) / not (0)", ["data", "labels"], [{
        "nodata": 255, "data_type": "uint8", "spatial_resolution": 10}], _proj(gb)))
    p = write_cog(d / "impervious_fraction.tif", truth.impervious_fraction, gb, nodata=float("nan"),
                  band_names=("impervious_fraction",), overview_resampling="average")
    item.add_asset("impervious_fraction", _asset(p, "Impervious share of each 10 m pixel", ["data"], [{
        "nodata": "nan", "data_type": "float32", "spatial_resolution": 10}], _proj(gb)))
    return item


def _weak_fingerprint(cfg: SampleConfig, city: City, year: int) -> str:
    return f"{cfg.city_fingerprint(city, year, labels=False)}-w{WEAK_LABELS_VERSION}"


def _year_props(year: int) -> dict[str, str]:
    return {"start_datetime": f"{year}-01-01T00:00:00Z", "end_datetime": f"{year}-12-31T23:59:59Z"}


def _accuracy_props(built, truth: GroundTruth, target) -> dict[str, Any]:
    """The built class against the exact truth on the truth's grid, as the item records it."""
    from crofuse.synthetic.weak_labels import built_accuracy

    a = built_accuracy(built, truth.label.astype(bool))
    return {
        "crofuse:built_user_accuracy": round(a["ua"], 4),
        "crofuse:built_producer_accuracy": round(a["pa"], 4),
        "crofuse:impervious_agreement": round(a["oa"], 4),
        "crofuse:target_built_user_accuracy": target.built_ua,
        "crofuse:target_built_producer_accuracy": target.built_pa,
        "crofuse:target_overall_accuracy": target.overall,
    }


def _write_worldcover(out: Path, city: City, truth: GroundTruth, cfg: SampleConfig, fp: str):
    """An ``esa-worldcover``-shaped item: the simulated map on the product's EPSG:4326 grid (1/12000 degree)."""
    from crofuse.synthetic import weak_labels as wl

    year = truth.year
    version, tag, _ = wl.WORLDCOVER_PRODUCTS[year]
    iid = wl.worldcover_item_id(city.name, year)
    d = out / WORLDCOVER_COLLECTION / iid
    weak = wl.worldcover_map(truth, seed=cfg.seed, product_year=year)
    grid_map, grid = wl.to_worldcover_grid(weak.classes, truth.geobox)
    back = wl.reproject_classes(grid_map, grid, truth.geobox, nodata=wl.WORLDCOVER_NODATA)
    props = _common_props(city, fp, cfg) | _year_props(year) | {
        "crofuse:year": year,
        "description": f"SYNTHETIC ESA WorldCover-shaped land cover for {year} ({tag}) with the product's documented "
                       "errors; simulated by crofuse.synthetic.weak_labels. Not real data.",
        "esa_worldcover:product_version": version,
        "esa_worldcover:product_tile": wl.worldcover_tile(city.lon, city.lat),
        "mission": "sentinel-1, sentinel-2", "instruments": ["c-sar", "msi"],
        "platform": "sentinel-1a, sentinel-1b, sentinel-2a, sentinel-2b",
    } | _accuracy_props(back == wl.WORLDCOVER_BUILT_UP, truth, weak.target)
    item = _new_item(iid, truth.geobox, dt.datetime(year, 7, 1, tzinfo=dt.UTC), props, ["raster", "classification"],
                     grid=grid)
    p = write_cog(d / f"{iid}_Map.tif", grid_map, grid, nodata=wl.WORLDCOVER_NODATA, band_names=("Map",))
    item.add_asset("map", _asset(p, "Land Cover Classes", ["data"], [{
        "nodata": wl.WORLDCOVER_NODATA, "data_type": "uint8", "spatial_resolution": 10, "sampling": "area"}],
        {"classification:classes": wl.WORLDCOVER_CLASSES, **_proj(grid),
         "description": "Discrete classification according to the Land Cover Classification System scheme "
                        "developed by the United Nations Food and Agriculture Organization"}))
    return item


def _write_io_lulc(out: Path, city: City, truth: GroundTruth, cfg: SampleConfig, fp: str):
    """An ``io-lulc-annual-v02``-shaped item: the simulated 9-class map on the city's 10 m UTM grid."""
    from crofuse.synthetic import weak_labels as wl

    year = truth.year
    iid = io_lulc_item_id(city, year)
    d = out / IO_LULC_COLLECTION / iid
    weak = wl.io_lulc_map(truth, seed=cfg.seed)
    gb = truth.geobox
    props = _common_props(city, fp, cfg) | _year_props(year) | {
        "crofuse:year": year,
        "description": f"SYNTHETIC Impact Observatory 10 m Annual LULC (9-class, v02)-shaped map for {year} with the "
                       "product's documented errors; simulated by crofuse.synthetic.weak_labels. Not real data.",
    } | _accuracy_props(weak.built, truth, weak.target)
    item = _new_item(iid, gb, dt.datetime(year, 7, 1, tzinfo=dt.UTC), props, ["raster", "classification"])
    p = write_cog(d / f"{iid}.tif", weak.classes, gb, nodata=wl.IO_NODATA, band_names=("data",))
    item.add_asset("data", _asset(p, "Global land use/land cover data", ["data"], [{
        "nodata": wl.IO_NODATA, "data_type": "uint8", "spatial_resolution": 10, "sampling": "area"}],
        {"classification:classes": wl.IO_LULC_CLASSES, **_proj(gb)}))
    return item


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _city_plan(cfg: SampleConfig, city: City) -> list[tuple[int, str, Acquisition | None]]:
    from crofuse.synthetic.weak_labels import worldcover_years

    plan: list[tuple[int, str, Acquisition | None]] = []
    # WorldCover exists for 2020 and 2021 only: its items may be for years the catalog has no scenes of
    plan += [(y, WORLDCOVER_COLLECTION, None) for y in worldcover_years(cfg.base_year, cfg.years)]
    for year in cfg.years:
        plan.append((year, LABELS_COLLECTION, None))
        plan.append((year, IO_LULC_COLLECTION, None))
        plan += [(year, S2_COLLECTION, a) for a in sentinel2_schedule(city, year, cfg.months)]
        plan += [(year, S1_COLLECTION, a) for a in sentinel1_schedule(
            city, year, cfg.months, orbits=cfg.s1_orbits, gap_months=cfg.s1_gap_months)]
    return plan


def _build_city(out: Path, cfg: SampleConfig, city: City, tick: Callable[[str], None]) -> list[tuple[str, dict, bool]]:
    """Write (or reuse) every item of one city; returns (collection, item dict, written) per item."""
    from crofuse.synthetic.landcover import generate_truths

    plan = []
    for year, coll, acq in _city_plan(cfg, city):
        fp = _fingerprint(cfg, city, year, coll)
        iid = _plan_item_id(city, year, coll, acq)
        path = out / coll / iid / f"{iid}.json"
        plan.append((year, coll, acq, fp, iid, path, _finished(path, fp)))
    todo_years = sorted({year for year, *_, done in plan if done is None})
    truths: dict[int, GroundTruth] = {}
    if todo_years:  # one pass for every year that has something to (re)write
        truths = generate_truths(
            city, todo_years, size_km=cfg.size_for(city), seed=cfg.seed, subpixel=cfg.subpixel,
            growth_rate=cfg.growth_rate, base_year=cfg.base_year, generator=cfg.generator,
            difficulty=cfg.difficulty,
        )
    results = []
    for year, coll, acq, fp, iid, path, item in plan:
        written = item is None
        if item is None:
            truth = truths[year]
            if coll == WORLDCOVER_COLLECTION:
                item = _write_worldcover(out, city, truth, cfg, fp)
            elif coll == IO_LULC_COLLECTION:
                item = _write_io_lulc(out, city, truth, cfg, fp)
            elif acq is None:
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


def _fingerprint(cfg: SampleConfig, city: City, year: int, collection: str) -> str:
    if collection in WEAK_LABEL_COLLECTIONS:
        return _weak_fingerprint(cfg, city, year)
    return cfg.city_fingerprint(city, year, labels=collection == LABELS_COLLECTION)


def _city_done(out: Path, cfg: SampleConfig, city: City) -> bool:
    for year, coll, acq in _city_plan(cfg, city):
        iid = _plan_item_id(city, year, coll, acq)
        if _finished(out / coll / iid / f"{iid}.json", _fingerprint(cfg, city, year, coll)) is None:
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
        gb = city.geobox(cfg.size_for(city))
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
    WORLDCOVER_COLLECTION: "SYNTHETIC weak labels shaped like ESA WorldCover 10 m (2020 v100, 2021 v200; EPSG:4326, "
    "1/12000 degree, legend 10-100, built-up = 50), derived from the exact truth with the product's documented "
    "errors (narrow roads and sparse urban edges omitted; accuracy of the validation report). Only 2020 and 2021 "
    "exist, as for the real product. Not real data; see docs/sample-data.md.",
    IO_LULC_COLLECTION: "SYNTHETIC weak labels shaped like Impact Observatory / Esri 10 m Annual Land Use Land Cover "
    "(9-class) v02 (UTM, 10 m, built area = 7), derived from the exact truth with the product's documented errors "
    "(smooth/blocky classes, urban green in dense blocks mapped as built area). Not real data; see "
    "docs/sample-data.md.",
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
