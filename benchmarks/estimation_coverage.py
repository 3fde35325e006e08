"""How often the 95 % interval of the estimated gain covers the true gain, over many stratified samples.

The map is a threshold classifier (NDVI < 0.35 and VV > −10 dB) of the input cubes of a sample city: the catalog is
built (``crofuse.synthetic.build_catalog``), served by ``rustac`` on 127.0.0.1 and composited by the mapping
pipeline's own ``crofuse.cube.build_cube``; the truth is the generator's labels on the cube's grid. The map is made
once; each repetition draws a new stratified sample with the default design (``crofuse.statistics.sample
.design_sample``: the four change strata and the buffer stratum), labels it from the truth and estimates, as
``update_statistics`` does with ``reference.tif``.

Cases: Wuhan 2021 → 2022 (the test's map), the same with a stricter map (NDVI < 0.25: more omitted impervious), and
Nanjing 2021 → 2022 (another city). For each, the default design without its buffer (``--buffer-px 0``) for
comparison. Prints coverage, the mean estimate against the truth (in standard errors of the mean) and the mean
estimated SE against the spread of the estimates.

    PYTHONPATH=. .venv/bin/python benchmarks/estimation_coverage.py --repeats 1000

Measured 2026-12-02 22:03 UTC on ``vm`` (x86_64, 2 cores shared with other jobs), 1000 samples per row (seeds
1000–1999), 49 s in all (cubes 17 s, each 1000 samples 6–8 s):

=========================  ===================  ============================  ========  ==========  ==============
map (2021 → 2022)          true / mapped gain   default design (points)       coverage  mean−truth  without buffer
=========================  ===================  ============================  ========  ==========  ==============
Wuhan, NDVI < 0.35         0.0778 / 0.1596 km²  738 (380, 75, 75, 75, 133)    0.943     +1.05 SE    593: 0.890
Wuhan, NDVI < 0.25         0.0778 / 0.1529 km²  719 (383, 58, 75, 75, 128)    0.928     +0.48 SE    577: 0.884
Nanjing, NDVI < 0.35       0.0548 / 0.1102 km²  791 (344, 150, 75, 75, 147)   0.921     +0.94 SE    638: 0.865
=========================  ===================  ============================  ========  ==========  ==============

Points per stratum: stable_pervious, stable_impervious, gain, loss, buffer. The mean SE matched the spread of the
estimates within 1 % in every row (e.g. Wuhan 0.0158 against 0.0159 km²). docs/flows.md (Statistics) discusses them.

``tests/test_estimation.py`` uses :func:`case_from_cubes` and :func:`repeat` on the session catalog's cubes.
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NDVI_MAX = 0.35
VV_MIN_DB = -10.0


@dataclass(frozen=True)
class CoverageCase:
    """A threshold map of two years and the generator's truth on the same grid."""

    name: str
    years: tuple[int, int]
    strata: np.ndarray  # change classes of the map (crofuse.statistics.sample.change_strata)
    area: np.ndarray  # m² per pixel
    gbox: Any
    truth: Mapping[int, np.ndarray]  # 1 impervious, 0 pervious per year, on the map grid
    true_gain_km2: float
    true_impervious_km2: float
    map_accuracy: Mapping[int, float]

    @property
    def mapped_gain_km2(self) -> float:
        return float(self.area[self.strata == 2].sum() / 1e6)


def threshold_map(cube: Any, *, ndvi_max: float = NDVI_MAX, vv_min_db: float = VV_MIN_DB) -> np.ndarray:
    """Impervious (1) where NDVI < ``ndvi_max`` and VV > ``vv_min_db`` on a cube's composite, 0 else, 255 nodata."""
    optical = cube["optical"].values
    vv = cube["sar"].sel(sar_band="VV").values
    red, nir = optical[list(cube["band"].values).index("B04")], optical[list(cube["band"].values).index("B08")]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
    m = ((ndvi < ndvi_max) & (vv > vv_min_db)).astype("uint8")
    m[~(np.isfinite(optical).all(0) & np.isfinite(cube["sar"].values).all(0))] = 255
    return m


def case_from_cubes(
    name: str, cubes: Mapping[int, Any], truths: Mapping[int, Any], *, ndvi_max: float = NDVI_MAX,
    vv_min_db: float = VV_MIN_DB,
) -> CoverageCase:
    """The case of two years' cubes (opened, loaded) and the generator's truths (``ground_truth``)."""
    from crofuse.statistics import pixel_area
    from crofuse.statistics import sample as smp

    y0, y1 = sorted(cubes)
    gbox = cubes[y1].odc.geobox
    maps, labels, accuracy = {}, {}, {}
    for y in (y0, y1):
        roi = truths[y].geobox.overlap_roi(gbox)
        labels[y] = np.asarray(truths[y].label[roi])
        if labels[y].shape != tuple(gbox.shape):
            raise ValueError(f"the {y} cube is not inside the simulated square")
        maps[y] = threshold_map(cubes[y], ndvi_max=ndvi_max, vv_min_db=vv_min_db)
        accuracy[y] = float(np.mean((maps[y] == labels[y])[maps[y] != 255]))
    area = pixel_area(gbox.crs.to_wkt(), gbox.affine, gbox.shape)
    strata = smp.change_strata(maps[y0], maps[y1])
    population = strata != smp.OUTSIDE
    gained = (labels[y0] == 0) & (labels[y1] == 1) & population
    return CoverageCase(
        name=name, years=(y0, y1), strata=strata, area=area, gbox=gbox, truth=labels,
        true_gain_km2=float(area[gained].sum() / 1e6),
        true_impervious_km2=float(area[(labels[y1] == 1) & population].sum() / 1e6), map_accuracy=accuracy,
    )


def repeat(case: CoverageCase, seeds: Iterable[int], **design_options: Any) -> dict[str, Any]:
    """Draw (``design_sample``), label from the truth and estimate once per seed; coverage and bias of the gain.

    Returns the arrays ``gain``, ``gain_se``, ``gain_ci``, ``imp``, ``imp_ci`` and ``coverage``, ``imp_coverage``,
    ``bias_z`` (mean estimate minus truth, in standard errors of the mean), ``se_ratio`` (mean estimated SE over the
    spread of the estimates), ``design`` (the last one drawn).
    """
    from crofuse.statistics import sample as smp

    y0, y1 = case.years
    out: dict[str, list[float]] = {k: [] for k in ("gain", "gain_se", "gain_ci", "imp", "imp_ci")}
    design = None
    for seed in seeds:
        design = smp.design_sample(case.strata, case.area, case.gbox, classes=smp.CHANGE_CLASSES, city=case.name,
                                   year=y1, previous_year=y0, seed=seed, **design_options)
        cols = smp.estimate_columns(smp.label_from_rasters(design, case.truth[y1], case.truth[y0]))
        out["gain"].append(cols["estimated_gain_km2"])
        out["gain_se"].append(cols["estimated_gain_se_km2"])
        out["gain_ci"].append(cols["estimated_gain_ci95_km2"])
        out["imp"].append(cols["estimated_impervious_km2"])
        out["imp_ci"].append(cols["estimated_impervious_ci95_km2"])
    r: dict[str, Any] = {k: np.array(v) for k, v in out.items()}
    spread = float(r["gain"].std(ddof=1))
    r["coverage"] = float(np.mean(np.abs(r["gain"] - case.true_gain_km2) <= r["gain_ci"]))
    r["imp_coverage"] = float(np.mean(np.abs(r["imp"] - case.true_impervious_km2) <= r["imp_ci"]))
    r["bias_z"] = (float(r["gain"].mean()) - case.true_gain_km2) / (spread / math.sqrt(len(r["gain"])))
    r["se_ratio"] = float(r["gain_se"].mean()) / spread
    r["design"] = design
    return r


def describe(case: CoverageCase, r: Mapping[str, Any]) -> str:
    d = r["design"]
    strata = ", ".join(f"{s} {a}" for s, a in zip(d.strata, d.allocation))
    return (f"{d.n} points ({strata}): coverage {r['coverage']:.3f} (impervious {r['imp_coverage']:.3f}); mean "
            f"{r['gain'].mean():.4f} vs true {case.true_gain_km2:.4f} km² ({r['bias_z']:+.2f} SE of the mean); sd "
            f"{r['gain'].std(ddof=1):.4f}, mean SE {r['gain_se'].mean():.4f} (ratio {r['se_ratio']:.2f})")


def omission_by_stratum(case: CoverageCase, *, buffer_px: int) -> str:
    """Where the true gain lies: pixels and true-gain pixels per stratum of the default design."""
    from crofuse.statistics import sample as smp

    strata = smp.buffer_strata(case.strata, smp.CHANGE_CLASSES, width=buffer_px)
    names = (*smp.CHANGE_CLASSES, smp.BUFFER) if buffer_px else smp.CHANGE_CLASSES
    y0, y1 = case.years
    gained = (case.truth[y0] == 0) & (case.truth[y1] == 1) & (strata != smp.OUTSIDE)
    return "; ".join(f"{n} {int((strata == h).sum())} px, {int((gained & (strata == h)).sum())} gain"
                     for h, n in enumerate(names))


def build_cubes(root: Path, city: Any, years: tuple[int, int], size_km: float) -> tuple[dict, dict]:
    """Build the sample catalog of ``city``, serve it, and build each year's cube over (most of) its square."""
    from crofuse.cube import CubeConfig, build_cube, open_cube
    from crofuse.synthetic import SampleConfig, build_catalog, ground_truth
    from infra.stac import StacServer

    cfg = SampleConfig(cities=(city,), years=years, size_km=size_km, seed=0)
    build_catalog(root / "catalog", cfg)
    cubes = {}
    with StacServer(root / "catalog") as api:
        for y in years:
            cc = CubeConfig(city=city.name, year=y, aoi=inner_bbox(city, size_km), catalog=api.url,
                            output=root / "cubes", chunk_size=256)
            cubes[y] = open_cube(build_cube(cc, progress=False)).load()
    return cubes, {y: ground_truth(cfg, city.name, y) for y in years}


def inner_bbox(city: Any, size_km: float, margin: float = 0.04) -> tuple[float, float, float, float]:
    """A lon/lat bbox inside the city's simulated square (so every cube pixel has a truth)."""
    w, s, e, n = city.geobox(size_km).extent.to_crs("EPSG:4326").boundingbox
    dx, dy = (e - w) * margin, (n - s) * margin
    return (w + dx, s + dy, e - dx, n - dy)


def main() -> None:
    from crofuse.statistics import sample as smp
    from crofuse.synthetic import NANJING, WUHAN

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1000)
    ap.add_argument("--size-km", type=float, default=2.5)
    ap.add_argument("--first-seed", type=int, default=1000)
    args = ap.parse_args()

    started = time.perf_counter()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {platform.machine()}, "
          f"{__import__('os').cpu_count()} cores")
    seeds = range(args.first_seed, args.first_seed + args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        wuhan = build_cubes(Path(tmp) / "wuhan", WUHAN, (2021, 2022), args.size_km)
        nanjing = build_cubes(Path(tmp) / "nanjing", NANJING, (2021, 2022), args.size_km)
    cases = [
        case_from_cubes("wuhan", *wuhan),
        case_from_cubes("wuhan", *wuhan, ndvi_max=0.25),
        case_from_cubes("nanjing", *nanjing),
    ]
    labels = ["Wuhan, NDVI < 0.35 (the test's map)", "Wuhan, NDVI < 0.25", "Nanjing, NDVI < 0.35"]
    print(f"cubes built in {time.perf_counter() - started:.1f} s")
    for label, case in zip(labels, cases):
        acc = ", ".join(f"{y} {a:.3f}" for y, a in case.map_accuracy.items())
        print(f"\n{label}: map accuracy {acc}; true gain {case.true_gain_km2:.4f} km², mapped gain "
              f"{case.mapped_gain_km2:.4f} km²")
        print(f"  strata: {omission_by_stratum(case, buffer_px=smp.BUFFER_PIXELS)}")
        t0 = time.perf_counter()
        print(f"  default design ({smp.BUFFER_PIXELS} px buffer), {args.repeats} samples: "
              f"{describe(case, repeat(case, seeds))} [{time.perf_counter() - t0:.1f} s]")
        print(f"  without the buffer, {args.repeats} samples: {describe(case, repeat(case, seeds, buffer_px=0))}")
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
