"""``make demo``: the whole system on this machine, offline, in one command.

1. builds the sample catalog (2 mapped cities + 2 training cities × 2 years by default) under
   ``demo-output/catalog`` and serves it with ``rustac serve`` on 127.0.0.1;
2. obtains a checkpoint: reuses ``demo-output/checkpoint/crofuse-demo.safetensors`` or builds a training set from
   that STAC API through the mapping pipeline (``crofuse.trainingset``: the map-city cube composite, the catalog's
   labels, a blocked split) for the *training* cities, and trains a *reduced-width* CroFuseNet on it for a few
   epochs (CPU, a few minutes; a demo model, not the paper's). The cities it maps are never seen in training;
3. starts a Prefect server (SQLite under ``.prefect/``), a ``process`` worker and one local dask cluster, deploys
   ``prefect.yaml`` and runs ``prefect deployment run map-city/map-city -p dask_address=<that cluster>`` for every
   city-year (the runs share the cluster, whose workers keep the model loaded);
4. waits, prints the statistics table, writes quicklooks and the change plot, stops everything it started and says
   where the outputs are.

A rerun reuses the catalog, the checkpoint and every finished city-year. Nothing here reaches the internet.

    python -m infra.demo [--years 2021 2022] [--size-km 4] [--epochs 30] [--width 8] [--fresh-model] [--checkpoint P]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from crofuse.synthetic.cities import NANJING, WUHAN
from infra.prefect_server import REPO_ROOT, PrefectServer, ProcessWorker, deploy, free_port, run_deployment, wait_for_flow_run

DEMO_ROOT = REPO_ROOT / "demo-output"
CATALOG_DIR = DEMO_ROOT / "catalog"
TRAINING_SET_DIR = DEMO_ROOT / "training-set"
TRAIN_DIR = DEMO_ROOT / "training"
CHECKPOINT = DEMO_ROOT / "checkpoint" / "crofuse-demo.safetensors"
MAPS_DIR = DEMO_ROOT / "maps"
PREFECT_HOME = REPO_ROOT / ".prefect"
CATALOG_PORT = 8765  # the default `catalog` of prefect.yaml; another free port is used if it is taken


MAPPED_CITIES = (WUHAN, NANJING)
"""The cities the demo maps (infra/cities.yaml lists the same two); the other default sample cities are left out to
keep the demo a few minutes long."""


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m infra.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--years", type=int, nargs="+", default=[2021, 2022], help="years to simulate and map")
    p.add_argument("--size-km", type=float, default=4.0, help="side of each simulated city that is mapped (km)")
    p.add_argument("--training-km", type=float, default=8.0,
                   help="side of each simulated training city (km): a blocked split needs room for whole blocks")
    p.add_argument("--epochs", type=int, default=30, help="training epochs of the demo model (a few s each on 2 cores)")
    p.add_argument("--width", type=int, default=8, help="base_channels of the demo CroFuseNet (paper: 32)")
    p.add_argument("--fresh-model", action="store_true", help="retrain even if a demo checkpoint exists")
    p.add_argument("--checkpoint", type=Path, default=None, help="map with this checkpoint instead of the demo model")
    p.add_argument("--timeout", type=float, default=1500, help="seconds to wait for the flow runs")
    return p.parse_args(argv)


def build_sample_catalog(years: list[int], size_km: float, training_km: float) -> Path:
    from crofuse.synthetic.catalog import build_catalog
    from crofuse.synthetic.cities import TRAINING_CITIES
    from crofuse.synthetic.config import SampleConfig

    cities = MAPPED_CITIES + TRAINING_CITIES
    say(f"sample catalog: {len(years)} years × {len(cities)} cities ({', '.join(c.name for c in MAPPED_CITIES)} "
        f"mapped, {size_km:g} km; {', '.join(c.name for c in TRAINING_CITIES)} for training, {training_km:g} km) "
        f"-> {CATALOG_DIR}")
    sizes = tuple((c.name, training_km) for c in TRAINING_CITIES)
    summary = build_catalog(CATALOG_DIR, SampleConfig(cities=cities, years=tuple(years), size_km=size_km,
                                                      city_sizes=sizes), progress=True)
    say(f"catalog ready: {summary.written} items written, {summary.reused} reused ({summary.seconds:.0f} s)")
    return CATALOG_DIR


def obtain_checkpoint(*, catalog_url: str, epochs: int, width: int, fresh: bool, years: list[int]) -> Path:
    if CHECKPOINT.exists() and not fresh:
        say(f"checkpoint: reusing {CHECKPOINT} (delete it or pass --fresh-model to retrain)")
        return CHECKPOINT
    from crofuse.cities import CitySpec
    from crofuse.synthetic.cities import TRAINING_CITIES
    from crofuse.training import TrainConfig, train
    from crofuse.trainingset import build_training_set, training_set_config

    say(
        f"training set: {', '.join(c.name for c in TRAINING_CITIES)} {years} from {catalog_url} through the map-city "
        f"cube composite, the catalog's labels and a blocked split -> {TRAINING_SET_DIR}"
    )
    config = training_set_config(out=TRAINING_SET_DIR, cities=[CitySpec(name=c.name) for c in TRAINING_CITIES],
                                 years=years, catalog=catalog_url, labels="sample", split="blocked")
    summary = build_training_set(config, overwrite=True, progress=True)  # the demo owns this folder
    for line in summary.lines():
        say(line)
    say(
        f"checkpoint: training a DEMO CroFuseNet (base_channels={width}, paper uses 32; plain conv head) for {epochs} "
        f"epochs on CPU; expect rough maps, this shows the pipeline, not the paper's accuracy"
    )
    if fresh:
        shutil.rmtree(TRAIN_DIR, ignore_errors=True)
    result = train(
        TrainConfig(
            data_root=TRAINING_SET_DIR,
            out_dir=TRAIN_DIR,
            model="crofusenet",
            # A plain conv head rather than the paper's conv+BN+ReLU: with the ReLU, ~11 % of pixels get both logits
            # clipped to 0 (probability exactly 0.5); docs/model.md measures the two heads.
            model_options={"base_channels": width, "head_relu": False},
            lr=2e-3,  # above the paper's 1e-4: a few minutes on a CPU, not 400 epochs on a GPU
            batch_size=16,
            max_epochs=epochs,
            patience=epochs,
            progress=True,
        )
    )
    CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
    tmp = CHECKPOINT.with_suffix(".tmp")
    shutil.copyfile(result.best_checkpoint, tmp)
    tmp.replace(CHECKPOINT)
    val, test = result.metrics.get("val", {}), result.metrics.get("test", {})
    say(f"checkpoint: {CHECKPOINT} (best epoch {result.metrics.get('best_epoch')}: val MIoU {val.get('miou', 0):.3f}, "
        f"test MIoU {test.get('miou', 0):.3f} on held-out blocks of the training cities)")
    return CHECKPOINT


def _relative(path: Path) -> str:
    """``path`` relative to the repository (the flows' working directory) when inside it, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def city_names() -> list[str]:
    return [c.name for c in MAPPED_CITIES]


def run_flows(
    server: PrefectServer, catalog_url: str, checkpoint: Path, years: list[int], timeout: float, dask_address: str
) -> list[tuple[str, int, object]]:
    runs = []
    for city in city_names():
        for year in years:
            params = {
                "city": city,
                "year": str(year),
                "catalog": catalog_url,
                "checkpoint": _relative(checkpoint),
                "output": _relative(MAPS_DIR),
                "dask_address": dask_address,
            }
            run_id = run_deployment(server, "map-city/map-city", parameters=params)
            say(f"prefect deployment run map-city/map-city -p city={city} -p year={year} -> flow run {run_id}")
            runs.append((city, year, run_id))
    finished = []
    deadline = time.monotonic() + timeout
    for city, year, run_id in runs:
        run = wait_for_flow_run(server, run_id, timeout=max(10.0, deadline - time.monotonic()))
        say(f"{city} {year}: {run.state.name}" + ("" if run.state.is_completed() else f" — {run.state.message}"))
        finished.append((city, year, run))
    return finished


def gain_series(ds) -> str:
    """The impervious gain of each mapped city-year four ways (km²): mapped (raw yearly maps), consistent (the
    non-reverting series), estimated with its 95 % CI from the stratified reference sample (Olofsson et al. 2014),
    and true (the generator's reference labels), and whether the CI covers the truth."""
    import math

    lines = ["Impervious gain (km²): mapped, consistent series, estimated ± 95 % CI (stratified sample), true "
             "(generator's labels):",
             f"{'city':<10} {'year':>4} {'mapped':>8} {'consistent':>10} {'estimated ± CI':>18} {'true':>8}  covered"]

    def value(city: str, year: int, name: str) -> float:
        return float(ds[name].sel(city=city, year=year)) if name in ds else math.nan

    for city in ds.city.values:
        for year in ds.year.values:
            mapped = value(city, year, "gain_km2")
            if math.isnan(mapped):
                continue  # a first year: no change
            est, ci = value(city, year, "estimated_gain_km2"), value(city, year, "estimated_gain_ci95_km2")
            true = value(city, year, "reference_gain_km2")
            covered = "-" if math.isnan(est) or math.isnan(true) else ("yes" if abs(est - true) <= ci else "no")
            lines.append(f"{city:<10} {int(year):>4} {mapped:8.3f} {value(city, year, 'consistent_gain_km2'):10.3f} "
                         f"{est:9.3f} ± {ci:6.3f} {true:8.3f}  {covered}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    from infra.cluster import ClusterConfig, dask_client
    from infra.stac import StacServer

    DEMO_ROOT.mkdir(parents=True, exist_ok=True)
    build_sample_catalog(args.years, args.size_km, args.training_km)

    port = CATALOG_PORT
    try:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    except OSError:
        port = free_port()
    failed = []
    with StacServer(CATALOG_DIR, port=port) as stac:
        say(f"STAC API (rustac serve): {stac.url}")
        if args.checkpoint is not None:
            checkpoint = args.checkpoint.resolve()
            say(f"checkpoint: using {checkpoint}")
        else:
            checkpoint = obtain_checkpoint(catalog_url=stac.url, epochs=args.epochs, width=args.width,
                                           fresh=args.fresh_model, years=args.years)
        say(f"Prefect server: starting with SQLite under {PREFECT_HOME} (first start migrates the database)")
        with PrefectServer(PREFECT_HOME) as server:
            say(f"Prefect API: {server.api_url}; deploying prefect.yaml")
            deploy(server)
            with ProcessWorker(server, extra_env={"CROFUSE_ROOT": str(REPO_ROOT)}), dask_client(ClusterConfig()) as dask:
                say("process worker polling work pool 'crofuse-process'")
                say(f"dask cluster for all runs: {dask.scheduler.address} (dashboard {dask.dashboard_link})")
                finished = run_flows(server, stac.url, checkpoint, args.years, args.timeout, dask.scheduler.address)
                for city, year, run in finished:
                    if not run.state.is_completed():
                        failed.append((city, year, run.state.message))
    say("stopped the dask cluster, the worker, the Prefect server and the STAC API")

    from crofuse.quicklooks import change_plot
    from crofuse.statistics import STATISTICS_CSV, STATISTICS_ZARR, format_table, mapped_cities, update_statistics
    from crofuse.statistics.consistency import consolidate_city

    import xarray as xr

    zarr_path = MAPS_DIR / STATISTICS_ZARR
    if zarr_path.exists():
        for city in mapped_cities(MAPS_DIR):  # the temporal consistency step runs over a city's years, as in remap
            say(f"consistent series: {consolidate_city(MAPS_DIR, city).summary()}")
        ds = update_statistics(MAPS_DIR)
        print()
        print("Impervious-surface statistics (km², equal-area). 'ref gain': from the generator's labels; 'err': "
              "mapped − reference gain; 'bound': the model's error (commission + omission of both years), which "
              "bounds |err|:")
        print(format_table(ds))
        print()
        print(gain_series(ds))
        print()
        plot = change_plot(MAPS_DIR)
        looks = sorted(MAPS_DIR.glob("*/*/quicklook.png"))
        say(f"statistics: {zarr_path} and {MAPS_DIR / STATISTICS_CSV}")
        say(f"change plot: {plot}")
        for look in looks:
            say(f"quicklook: {look}")
        say(f"maps: {MAPS_DIR}/<city>/<year>/impervious.tif, probability.tif, change.tif, maps.zarr")
    say(f"done in {(time.monotonic() - started) / 60:.1f} min; `make clean-demo` removes demo-output/ and .prefect/")
    if failed:
        for city, year, message in failed:
            say(f"FAILED {city} {year}: {message}")
        return 1
    return 0


if __name__ == "__main__":
    from infra.process import Interrupted, stop_on_signals

    try:
        with stop_on_signals():  # SIGTERM runs the same cleanup as Ctrl-C: every `with` above stops what it started
            code = main()
    except Interrupted as exc:
        say(f"interrupted ({exc}): stopped what was started")
        code = exc.exit_code
    sys.exit(code)
