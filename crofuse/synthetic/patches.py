"""WHU-IS style patch dataset from the same generator (paper section IV: 128x128 patches, stride 80, 8:1:1 split).

The inputs are built as the paper builds its data: a seasonal composite per city and year, the mean of clear-sky
Sentinel-2 reflectance (pixels whose SCL is not 0/1/3/8/9/10) and the mean of Sentinel-1 linear power converted to
dB. The acquisitions are the same simulated passes as in the sample catalog (same seeds), computed in memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crofuse import NODATA_LABEL
from crofuse.errors import ConfigError
from crofuse.synthetic.cities import DEFAULT_CITIES, City
from crofuse.synthetic.cog import write_json
from crofuse.synthetic.config import GENERATOR_VERSION, SampleConfig

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

    from crofuse.synthetic.landcover import GroundTruth

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Composite:
    """Seasonal composite of one city and year on the 10 m grid (paper section IV's inputs).

    optical: ``(4, y, x)`` float32 mean clear-sky reflectance, NaN where no clear observation.
    sar: ``(2, y, x)`` float32 mean gamma0 (linear average) in dB, NaN where no pass.
    optical_count, sar_count: ``(y, x)`` number of observations averaged.
    """

    optical: np.ndarray
    sar: np.ndarray
    optical_count: np.ndarray
    sar_count: np.ndarray


def seasonal_composite(truth: GroundTruth, config: SampleConfig) -> Composite:
    """Mean clear-sky S2 reflectance and S1 dB of the linear mean, over the passes ``build_catalog`` writes."""
    from crofuse.synthetic.optical import SCL_MASKED, simulate_optical
    from crofuse.synthetic.sar import simulate_sar
    from crofuse.synthetic.schedule import sentinel1_schedule, sentinel2_schedule

    n = truth.shape[0]
    osum = np.zeros((4, n, n), np.float64)
    ocount = np.zeros((n, n), np.int32)
    for acq in sentinel2_schedule(truth.city, truth.year, config.months):
        sc = simulate_optical(
            truth, acq, seed=config.seed, cloud_scale=config.cloud_scale,
            partial_swath_probability=config.partial_swath_probability, temporal_variation=config.temporal_variation,
            overcast=config.overcast,
        )
        scl = np.repeat(np.repeat(sc.scl, 2, 0), 2, 1)
        clear = ~np.isin(scl, SCL_MASKED)
        # what the product stores: DN rounding included
        osum += np.where(clear, np.rint(sc.reflectance * 10000.0) / 10000.0, 0.0)
        ocount += clear
    ssum = np.zeros((2, n, n), np.float64)
    scount = np.zeros((n, n), np.int32)
    for acq in sentinel1_schedule(
        truth.city, truth.year, config.months, orbits=config.s1_orbits, gap_months=config.s1_gap_months
    ):
        sc = simulate_sar(truth, acq, seed=config.seed, enl=config.enl, temporal_variation=config.temporal_variation)
        ssum += sc.gamma0
        scount += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        optical = (osum / ocount).astype(np.float32)
        sar = (10.0 * np.log10(ssum / scount)).astype(np.float32)
    optical[:, ocount == 0] = np.nan
    sar[:, scount == 0] = np.nan
    return Composite(optical=optical, sar=sar, optical_count=ocount, sar_count=scount)


def window_starts(n: int, size: int, stride: int) -> list[int]:
    """Window origins along one axis: every ``stride``, plus one flush with the far edge if the last falls short."""
    if n < size:
        return []
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


@dataclass(frozen=True)
class PatchSummary:
    """What :func:`export_patches` wrote."""

    root: Path
    counts: dict[str, int]
    impervious_fraction: dict[str, float]
    patch_size: int
    stride: int
    reused: bool

    def lines(self) -> list[str]:
        out = [f"patch dataset: {self.root} ({self.patch_size}x{self.patch_size}, stride {self.stride})"]
        for s in SPLITS:
            out.append(f"  {s}: {self.counts[s]} patches, impervious fraction {self.impervious_fraction[s]:.3f}")
        if self.reused:
            out.append("  (already complete with these settings: nothing rewritten)")
        return out


def _write_tif(path: Path, data: np.ndarray, gb: GeoBox, nodata: float | int, names: Sequence[str]) -> None:
    import os
    import uuid

    import rasterio

    arr = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.tif")
    try:
        with rasterio.open(
            tmp, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
            dtype=arr.dtype.name, crs=str(gb.crs), transform=gb.affine, nodata=nodata, compress="deflate",
        ) as dst:
            dst.write(arr)
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def export_patches(
    out: Path | str,
    *,
    cities: Sequence[City] = DEFAULT_CITIES,
    years: Sequence[int] = (2021, 2022),
    size_km: float = 10.0,
    seed: int = 0,
    patch_size: int = 128,
    stride: int = 80,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    config: SampleConfig | None = None,
    max_nodata_fraction: float = 0.5,
    progress: bool = False,
) -> PatchSummary:
    """Cut a WHU-IS style dataset ``OUT/{train,val,test}/{optical,sar,label}/<name>.tif`` from the generator.

    ``config`` (optional) supplies the remaining simulation settings (months, clouds, ENL...); ``cities``,
    ``years``, ``size_km`` and ``seed`` override its fields. Patches are named ``<city>_<year>_<row>_<col>``
    (pixel origin), assigned to splits by a seeded random permutation, and patches with more than
    ``max_nodata_fraction`` label nodata (no clear optical view all season) are dropped. Idempotent: a folder
    holding a complete export with the same settings is reused as is.
    """
    from tqdm.auto import tqdm

    from crofuse.synthetic.landcover import generate_truths

    if abs(sum(split) - 1.0) > 1e-6 or any(s < 0 for s in split):
        raise ConfigError(f"split={split} must be three non-negative shares that add up to 1 (e.g. 0.8, 0.1, 0.1)")
    if patch_size < 8 or stride < 1:
        raise ConfigError(f"patch_size={patch_size}, stride={stride}: need patch_size >= 8 and stride >= 1")
    base = config or SampleConfig()
    cfg = SampleConfig(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                          "cities": tuple(cities), "years": tuple(years), "size_km": size_km, "seed": seed})
    out = Path(out).resolve()
    settings = {"config": cfg.to_dict(), "patch_size": patch_size, "stride": stride, "split": list(split),
                "max_nodata_fraction": max_nodata_fraction, "generator": GENERATOR_VERSION}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    manifest = out / "patches.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        if m.get("fingerprint") == fingerprint and all(
            (out / s / mod / f"{name}.tif").exists() for s, names in m["splits"].items() for name in names
            for mod in ("optical", "sar", "label")
        ):
            return PatchSummary(root=out, counts={s: len(m["splits"][s]) for s in SPLITS},
                                impervious_fraction=m["impervious_fraction"], patch_size=patch_size, stride=stride,
                                reused=True)
        manifest.unlink()  # settings changed or files missing: rebuild (files of the same name are overwritten)

    # one pass to decide every patch, so the split is a single seeded permutation over all of them
    patches: list[tuple[str, City, int, int, int]] = []
    composites: dict[tuple[str, int], tuple[Composite, GroundTruth]] = {}
    bar = tqdm(total=len(cfg.cities) * len(cfg.years), desc="composites", unit="city-year", disable=not progress)
    for city in cfg.cities:
        truths = generate_truths(city, cfg.years, size_km=cfg.size_km, seed=cfg.seed, subpixel=cfg.subpixel,
                                 growth_rate=cfg.growth_rate, base_year=cfg.base_year)
        for year, truth in truths.items():
            comp = seasonal_composite(truth, cfg)
            composites[(city.name, year)] = (comp, truth)
            n = truth.shape[0]
            for r in window_starts(n, patch_size, stride):
                for c in window_starts(n, patch_size, stride):
                    patches.append((f"{city.name}_{year}_{r:04d}_{c:04d}", city, year, r, c))
            bar.update(1)
    bar.close()
    if not patches:
        raise ConfigError(f"size_km={size_km} gives fewer than {patch_size} pixels per side: no patch fits")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(patches))
    n_train = int(round(split[0] * len(patches)))
    n_val = int(round(split[1] * len(patches)))
    which = np.empty(len(patches), dtype=object)
    which[order[:n_train]] = "train"
    which[order[n_train : n_train + n_val]] = "val"
    which[order[n_train + n_val :]] = "test"
    names: dict[str, list[str]] = {s: [] for s in SPLITS}
    imp = {s: [0, 0] for s in SPLITS}
    for (name, city, year, r, c), s in tqdm(list(zip(patches, which, strict=True)), desc="patches", unit="patch",
                                             disable=not progress):
        comp, truth = composites[(city.name, year)]
        win = (slice(r, r + patch_size), slice(c, c + patch_size))
        optical = comp.optical[(slice(None), *win)]
        sar = comp.sar[(slice(None), *win)]
        label = truth.label[win].copy()
        missing = np.isnan(optical).any(0) | np.isnan(sar).any(0)
        label[missing] = NODATA_LABEL
        if missing.mean() > max_nodata_fraction:
            continue
        gb = truth.geobox[win]
        _write_tif(out / s / "optical" / f"{name}.tif", optical, gb, float("nan"), ("B02", "B03", "B04", "B08"))
        _write_tif(out / s / "sar" / f"{name}.tif", sar, gb, float("nan"), ("VV", "VH"))
        _write_tif(out / s / "label" / f"{name}.tif", label, gb, NODATA_LABEL, ("impervious",))
        names[s].append(name)
        imp[s][0] += int((label == 1).sum())
        imp[s][1] += int((label != NODATA_LABEL).sum())
    frac = {s: (imp[s][0] / imp[s][1] if imp[s][1] else 0.0) for s in SPLITS}
    write_json(manifest, {"fingerprint": fingerprint, "settings": settings, "splits": names,
                          "impervious_fraction": frac,
                          "units": {"optical": "surface reflectance 0-1 (B02, B03, B04, B08)",
                                    "sar": "gamma0 dB (VV, VH)", "label": "1 impervious, 0 pervious, 255 nodata"}})
    return PatchSummary(root=out, counts={s: len(v) for s, v in names.items()}, impervious_fraction=frac,
                        patch_size=patch_size, stride=stride, reused=False)


__all__ = ["SPLITS", "Composite", "PatchSummary", "export_patches", "seasonal_composite", "window_starts"]
