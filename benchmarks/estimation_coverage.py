"""How often the 95 % interval of the estimated gain covers the true gain, over many stratified samples.

The map is a threshold classifier (NDVI < 0.35 and VV > −10 dB) of the seasonal composites of a sample city
(``crofuse.synthetic.seasonal_composite``: the passes the sample catalog holds), the truth the generator's labels.
The map is made once; each repetition draws a new stratified sample, labels it from the truth and estimates
(``crofuse.statistics.sample``), as ``update_statistics`` does with ``reference.tif``.

Two designs: the default one (eq. 13 of Olofsson et al. 2014 for SE(OA) = 0.01, 75 points per rare stratum), and one
with at least 5 expected points of true gain per stratum (np ≥ 5). Prints coverage, the mean estimate against the
truth (in standard errors of the mean) and the mean estimated SE against the spread of the estimates.

    PYTHONPATH=. .venv/bin/python benchmarks/estimation_coverage.py --repeats 1000 --size-km 2.5
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np


def main() -> None:
    from crofuse.statistics import pixel_area
    from crofuse.statistics import sample as smp
    from crofuse.synthetic import WUHAN, SampleConfig, ground_truth, seasonal_composite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1000)
    ap.add_argument("--size-km", type=float, default=2.5)
    ap.add_argument("--first-seed", type=int, default=1000)
    args = ap.parse_args()

    started = time.perf_counter()
    cfg = SampleConfig(cities=(WUHAN,), years=(2021, 2022), size_km=args.size_km, seed=0)
    truth = {y: ground_truth(cfg, "wuhan", y) for y in cfg.years}
    maps = {}
    for y, t in truth.items():
        c = seasonal_composite(t, cfg)
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = (c.optical[3] - c.optical[2]) / (c.optical[3] + c.optical[2])
        m = ((ndvi < 0.35) & (c.sar[0] > -10.0)).astype("uint8")
        m[~(np.isfinite(c.optical).all(0) & np.isfinite(c.sar).all(0))] = 255
        maps[y] = m
        print(f"{y}: map accuracy {np.mean((m == t.label)[m != 255]):.3f}")
    gbox = truth[2022].geobox
    area = pixel_area(gbox.crs.to_wkt(), gbox.affine, gbox.shape)
    strata = smp.change_strata(maps[2021], maps[2022])
    gained = (truth[2021].label == 0) & (truth[2022].label == 1) & (strata != smp.OUTSIDE)
    true_gain = float(area[gained].sum() / 1e6)
    print(f"true gain {true_gain:.4f} km², mapped gain {area[strata == 2].sum() / 1e6:.4f} km²; "
          f"true gain pixels per stratum {[int((gained & (strata == h)).sum()) for h in range(4)]}")

    def run(allocation=None) -> None:
        est, se, covered = [], [], 0
        for seed in range(args.first_seed, args.first_seed + args.repeats):
            d = smp.design_sample(strata, area, gbox, classes=smp.CHANGE_CLASSES, city="wuhan", year=2022,
                                  previous_year=2021, seed=seed, allocation=allocation)
            cols = smp.estimate_columns(smp.label_from_rasters(d, truth[2022].label, truth[2021].label))
            est.append(cols["estimated_gain_km2"])
            se.append(cols["estimated_gain_se_km2"])
            covered += abs(cols["estimated_gain_km2"] - true_gain) <= cols["estimated_gain_ci95_km2"]
        est_a = np.array(est)
        spread = est_a.std(ddof=1)
        z = (est_a.mean() - true_gain) / (spread / math.sqrt(len(est_a)))
        print(f"  {sum(d.allocation)} points {list(d.allocation)}: coverage {covered / len(est):.3f}; mean "
              f"{est_a.mean():.4f} ({z:+.2f} SE of the mean from the truth); sd {spread:.4f}, mean SE {np.mean(se):.4f}")

    print(f"default design, {args.repeats} samples:")
    run()
    default = smp.design_sample(strata, area, gbox, classes=smp.CHANGE_CLASSES, city="wuhan", year=2022,
                                previous_year=2021, seed=0)
    pixels = np.array(default.stratum_pixels)
    rate = np.array([(gained & (strata == h)).sum() for h in range(4)]) / pixels
    enough = np.where(rate > 0, np.ceil(5 / np.where(rate > 0, rate, 1)), 0)
    print(f"np >= 5 design, {args.repeats} samples:")
    run(np.minimum(pixels, np.maximum(default.allocation, enough)).astype(int).tolist())
    print(f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
