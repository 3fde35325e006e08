"""PNG quicklooks: one panel per city-year (optical RGB, SAR VV, impervious map, change map and, where the run wrote
them, the impervious probability and its uncertainty) and a change plot.

Matplotlib with the Agg backend (no display needed). Large rasters are decimated to at most ``max_pixels`` per side
before plotting, so a quicklook of a whole city costs a few MB of memory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from crofuse import OPTICAL_BANDS, SAR_BANDS, layout
from crofuse.errors import DataError
from crofuse.io.store import Location, location, output_error, scratch_dir

QUICKLOOK_NAME = layout.QUICKLOOK
CHANGE_PLOT_NAME = layout.CHANGE_PLOT


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def percentile_stretch(rgb: np.ndarray, *, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Stretch each band of ``(H, W, C)`` to 0–1 between its ``low`` and ``high`` percentiles (NaN stays NaN→0)."""
    out = np.zeros(rgb.shape, dtype="float32")
    for c in range(rgb.shape[-1]):
        band = rgb[..., c]
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            continue
        lo, hi = np.percentile(finite, [low, high])
        scale = hi - lo if hi > lo else 1.0
        out[..., c] = np.clip((np.nan_to_num(band, nan=lo) - lo) / scale, 0, 1)
    return out


def _step(shape: tuple[int, ...], max_pixels: int) -> int:
    return max(1, math.ceil(max(shape[-2:]) / max_pixels))


def _band_dim(da) -> str:
    dims = [d for d in da.dims if d not in ("y", "x")]
    if len(dims) != 1:
        raise DataError(f"expected one band dimension besides (y, x), got {da.dims}")
    return dims[0]


def _cube_layers(cube: Location, step: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    from crofuse.cube import open_cube

    ds = open_cube(cube)
    rgb = vv = None
    if "optical" in ds:
        opt = ds["optical"]
        bdim = _band_dim(opt)
        names = [str(b) for b in opt[bdim].values] if bdim in opt.coords else list(OPTICAL_BANDS)
        idx = [names.index(b) for b in ("B04", "B03", "B02")]
        sub = opt.isel({bdim: idx, "y": slice(None, None, step), "x": slice(None, None, step)})
        rgb = np.moveaxis(np.asarray(sub.values, dtype="float32"), 0, -1)
    if "sar" in ds:
        sar = ds["sar"]
        bdim = _band_dim(sar)
        names = [str(b) for b in sar[bdim].values] if bdim in sar.coords else list(SAR_BANDS)
        sub = sar.isel({bdim: names.index("VV"), "y": slice(None, None, step), "x": slice(None, None, step)})
        vv = np.asarray(sub.values, dtype="float32")
    return rgb, vv


def _label_image(values: np.ndarray, colours: dict[int, tuple[float, float, float]]) -> np.ndarray:
    img = np.ones((*values.shape, 3), dtype="float32")  # nodata: white
    for code, colour in colours.items():
        img[values == code] = colour
    return img


def _percent_layer(values: np.ndarray) -> np.ndarray:
    """A uint8 0..100 layer (255 nodata) as float with NaN where nodata (drawn blank)."""
    out = values.astype("float32")
    out[values > 100] = np.nan
    return out


def _save(fig, path: Location) -> Any:
    """Render in worker-local temporary space, then publish (a rename, or one PUT): nothing half-written, and no
    temporary file, ever appears next to the outputs."""
    with scratch_dir(f"png-{path.stem}") as scratch:
        tmp = scratch / path.name
        try:
            fig.savefig(tmp, dpi=100)
        except OSError as e:
            raise output_error(e, path, scratch=scratch) or e
        path.upload(tmp)
    return path.path if path.is_local else path


def city_year_quicklook(
    output: Path, city: str, year: int, *, cube: Path | None = None, path: Path | None = None, max_pixels: int = 800
) -> Path:
    """Write ``<output>/<city>/<year>/quicklook.png``: RGB composite, VV (dB), impervious map, change map, and a
    third row with the probability and the uncertainty (binary entropy, docs/inference.md) where those COGs exist.

    Args:
        output: output root.
        city, year: the city-year (its ``impervious.tif`` must exist).
        cube: its ``inputs.zarr`` (default ``<output>/<city>/<year>/inputs.zarr``); panels are blank if missing.
        path: where to write (default as above).
        max_pixels: decimate to at most this many pixels per side.
    """
    from crofuse.statistics import (
        CHANGE_NAME,
        GAIN,
        LOSS,
        MAP_NAME,
        NO_CHANGE,
        read_map,
    )

    folder = layout.folder_of(output, city, year)
    impervious = read_map(folder / MAP_NAME)
    step = _step(impervious.shape, max_pixels)
    imp = impervious.values[::step, ::step]
    cube = location(cube) if cube is not None else folder / layout.CUBE
    rgb, vv = _cube_layers(cube, step) if (cube / "zarr.json").exists() else (None, None)
    change = read_map(folder / CHANGE_NAME).values[::step, ::step] if (folder / CHANGE_NAME).exists() else None
    percent = {name: _percent_layer(read_map(folder / name).values[::step, ::step])
               for name in (layout.PROBABILITY, layout.UNCERTAINTY) if (folder / name).exists()}

    plt = _pyplot()
    rows = 3 if percent else 2
    fig, axes = plt.subplots(rows, 2, figsize=(10, 5 * rows), constrained_layout=True)
    panels = axes.ravel()
    if rgb is not None:
        panels[0].imshow(percentile_stretch(rgb))
    panels[0].set_title("Sentinel-2 RGB (B04 B03 B02, 2-98 % stretch)")
    if vv is not None:
        finite = vv[np.isfinite(vv)]
        lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (-25.0, 5.0))
        im = panels[1].imshow(vv, cmap="gray", vmin=lo, vmax=hi)
        fig.colorbar(im, ax=panels[1], shrink=0.7, label="VV gamma0 (dB)")
    panels[1].set_title("Sentinel-1 VV (dB)")
    panels[2].imshow(_label_image(imp, {0: (0.85, 0.9, 0.8), 1: (0.8, 0.1, 0.1)}), interpolation="nearest")
    panels[2].set_title("impervious (red), pervious (green)")
    if change is not None:
        panels[3].imshow(
            _label_image(change, {NO_CHANGE: (0.85, 0.85, 0.85), GAIN: (0.9, 0.1, 0.1), LOSS: (0.1, 0.3, 0.9)}),
            interpolation="nearest",
        )
        panels[3].set_title("change: gain (red), loss (blue)")
    else:
        panels[3].text(0.5, 0.5, "first mapped year:\nno change map", ha="center", va="center")
        panels[3].set_title("change")
    for ax, (name, title, cmap) in zip(panels[4:], (
            (layout.PROBABILITY, "impervious probability (%)", "viridis"),
            (layout.UNCERTAINTY, "uncertainty: entropy (% of 1 bit)", "magma"))):
        if name in percent:
            im = ax.imshow(percent[name], cmap=cmap, vmin=0, vmax=100, interpolation="nearest")
            fig.colorbar(im, ax=ax, shrink=0.7)
        else:
            ax.text(0.5, 0.5, f"no {name}", ha="center", va="center")
        ax.set_title(title)
    for ax in panels:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{city} {year}")
    try:
        return _save(fig, location(path) if path else folder / QUICKLOOK_NAME)
    finally:
        plt.close(fig)


def refresh_stale_quicklooks(output: Path, city: str) -> list[Path]:
    """Redraw the quicklooks of ``city`` whose change map is newer than the picture.

    Mapping an earlier year after a later one rewrites the later year's ``change.tif`` (its previous year changed);
    its ``quicklook.png`` would otherwise still show the old change panel, or none.
    """
    from crofuse.statistics import CHANGE_NAME, mapped_years

    redrawn = []
    for year in mapped_years(output, city):
        folder = layout.folder_of(output, city, year)
        look, change = folder / QUICKLOOK_NAME, folder / CHANGE_NAME
        if not look.exists():
            continue
        if change.exists() and change.stat().mtime_ns > look.stat().mtime_ns:
            redrawn.append(city_year_quicklook(output, city, year))
    return redrawn


def _estimate(sel, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``estimated_<name>_km2`` and its 95 % CI half-width per year (NaN where the table has none)."""
    n = sel.sizes["year"]
    value, ci = f"estimated_{name}_km2", f"estimated_{name}_ci95_km2"
    if value not in sel or ci not in sel:
        return np.full(n, np.nan), np.full(n, np.nan)
    return sel[value].values.astype(float), sel[ci].values.astype(float)


def change_plot(output: Path, *, path: Path | None = None) -> Path:
    """Write ``<output>/change.png``: impervious km² per year per city, and the net change between mapped years.

    Where a city-year has an accuracy sample, its stratified estimates (Olofsson et al. 2014) are drawn next to the
    mapped figures as points with 95 % confidence intervals as error bars (``estimated_impervious_km2``,
    ``estimated_net_km2`` ± their ``_ci95_km2``); the reference labels' net change, where there are any, as crosses.
    """
    import xarray as xr

    from crofuse.statistics import STATISTICS_ZARR

    store = location(output) / STATISTICS_ZARR
    if not (store / "zarr.json").exists():
        raise DataError(f"{store} does not exist; map at least one city-year first")
    plt = _pyplot()
    fig = change_figure(xr.open_zarr(store.zarr_store(read_only=True)).load())
    try:
        return _save(fig, location(path) if path else location(output) / CHANGE_PLOT_NAME)
    finally:
        plt.close(fig)


def change_figure(ds):
    """The figure of :func:`change_plot` for a statistics Dataset (left: area, right: net change)."""
    plt = _pyplot()
    fig, (ax_area, ax_net) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    years = ds["year"].values
    n_cities = max(1, ds.sizes["city"])
    for k, city in enumerate(ds["city"].values):
        sel = ds.sel(city=city)
        mapped = sel["mapped"].values.astype(bool)
        offset = 0.12 + 0.08 * (k - (n_cities - 1) / 2)  # estimates beside the mapped points, one lane per city
        (line,) = ax_area.plot(years[mapped], sel["impervious_km2"].values[mapped], marker="o",
                               label=f"{city} (mapped)")
        colour = line.get_color()
        est, ci = _estimate(sel, "impervious")
        has = mapped & np.isfinite(est)
        if has.any():
            ax_area.errorbar(years[has] + offset, est[has], yerr=ci[has], fmt="D", color=colour, capsize=4,
                             markersize=5, alpha=0.85, label=f"{city} (estimated, 95 % CI)")
        net = sel["net_km2"].values
        has = mapped & np.isfinite(net)
        ax_net.plot(years[has], net[has], marker="s", color=colour, label=f"{city} (mapped)")
        est, ci = _estimate(sel, "net")
        has_est = mapped & np.isfinite(est)
        if has_est.any():
            ax_net.errorbar(years[has_est] + offset, est[has_est], yerr=ci[has_est], fmt="D", color=colour,
                            capsize=4, markersize=5, alpha=0.85, label=f"{city} (estimated, 95 % CI)")
        ref = sel["reference_gain_km2"].values - sel["reference_loss_km2"].values
        if np.isfinite(ref[has]).any():
            ax_net.plot(years[has] - offset, ref[has], linestyle="none", marker="x", markersize=8, color=colour,
                        alpha=0.7, label=f"{city} (reference labels)")
    ax_area.set_title("impervious area (km², equal-area)")
    ax_area.set_xlabel("year")
    ax_net.set_title("net change since previous mapped year (km²)")
    ax_net.set_xlabel("year")
    ax_net.axhline(0, color="k", linewidth=0.5)
    for ax in (ax_area, ax_net):
        ax.set_xticks(years)
        ax.set_xlim(years.min() - 0.5, years.max() + 0.5)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    return fig


__all__ = [
    "CHANGE_PLOT_NAME",
    "QUICKLOOK_NAME",
    "change_figure",
    "change_plot",
    "city_year_quicklook",
    "percentile_stretch",
    "refresh_stale_quicklooks",
]
