"""A qualitative figure like the paper's Fig. 7: input RGB, SAR, ground truth and each method's map per test patch.

Deep methods are re-run from their saved checkpoints (:class:`crofuse.checkpoint.Predictor`); RF/SVM maps come from
the test-split predictions their run saved (scikit-learn models are not stored, so nothing is unpickled). The patches
are the test patches whose impervious fraction is closest to one half (mixed scenes), the same for every method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crofuse.errors import DataError
from crofuse.experiments.records import load_records
from crofuse.experiments.suites import SUITES

__all__ = ["choose_patches", "figure_name", "render_qualitative_figure"]

FIGURE_SUITES = ("table2", "ablation", "loss", "modality")
"""Suites drawn as a Fig. 7-style grid (the transfer and leave-one-city-out suites are tables only)."""


def figure_name(suite: str, split: str) -> str:
    """``<split>-<suite>-qualitative.png``, the figure's file name in a results folder."""
    return f"{split}-{suite}-qualitative.png"


def _stretch(rgb: np.ndarray) -> np.ndarray:
    """2-98 % percentile stretch per band to 0-1 (NaN shown black)."""
    out = np.zeros_like(rgb, dtype=np.float32)
    for i in range(rgb.shape[0]):
        band = rgb[i]
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            continue
        lo, hi = np.percentile(finite, [2, 98])
        out[i] = np.clip((np.nan_to_num(band, nan=lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.moveaxis(out, 0, -1)


def choose_patches(root: Path, *, n: int, max_patches: int | None = None) -> list[str]:
    """The ``n`` test patches with impervious fraction closest to 0.5 (ties by name)."""
    from crofuse.baselines import iter_patches

    scored = []
    for i, (name, _, _, label) in enumerate(iter_patches(root, "test")):
        if max_patches is not None and i >= max_patches:
            break
        labelled = label != 255
        if labelled.any():
            scored.append((abs(float((label[labelled] == 1).mean()) - 0.5), name))
    if not scored:
        raise DataError(f"no labelled test patches under {root}")
    return [name for _, name in sorted(scored)[:n]]


def _method_maps(
    record: Mapping[str, Any], results: Path, names: Sequence[str], inputs: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    run_dir = results / record["artifacts"]["run_dir"]
    if record["artifacts"].get("checkpoint"):
        from crofuse.checkpoint import Predictor

        predictor = Predictor.from_checkpoint(run_dir / record["artifacts"]["checkpoint"])
        maps = {}
        for name in names:
            optical, sar = inputs[name]
            prob = predictor(optical[None], sar[None])[0]
            maps[name] = (prob > 0.5).astype(np.uint8)  # ties go to pervious, as argmax does
        return maps
    stored = np.load(run_dir / record["artifacts"]["predictions"])
    index = {str(n): i for i, n in enumerate(stored["names"])}
    missing = [n for n in names if n not in index]
    if missing:
        raise DataError(f"{run_dir} has no stored predictions for patches {missing}; rerun that method with --force")
    return {n: stored["maps"][index[n]] for n in names}


def render_qualitative_figure(results: Path | str, suite: str, out_png: Path | str, *, n_patches: int = 4,
                              split: str = "blocked") -> Path:
    """Draw the Fig. 7-style grid of ``suite`` on ``split`` (first seed of each method) into ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from crofuse.baselines import iter_patches

    results = Path(results)
    records = [r for r in load_records(results) if r["suite"] == suite and r.get("split") == split]
    if not records:
        raise DataError(f"no records of suite {suite!r} on the {split} split under {results}; run it first")
    first: dict[str, Mapping[str, Any]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        first.setdefault(r["method"], r)
    order = [k for k in SUITES[suite].keys if k in first]
    root = Path(first[order[0]]["source"]["dataset"])
    max_patches = (first[order[0]].get("profile") or {}).get("max_patches")
    names = choose_patches(root, n=n_patches, max_patches=max_patches)
    inputs, labels = {}, {}
    for name, optical, sar, label in iter_patches(root, "test", names=names):
        inputs[name] = (optical, sar)
        labels[name] = label
    maps = {k: _method_maps(first[k], results, names, inputs) for k in order}

    cols = ["RGB (B04, B03, B02)", "SAR VV (dB)", "Ground truth"] + [str(first[k]["label"]) for k in order]
    fig, axes = plt.subplots(len(names), len(cols), figsize=(1.6 * len(cols), 1.7 * len(names)), squeeze=False)
    cmap = ListedColormap(["#2e7d32", "#e0e0e0", "#000000"])  # pervious green, impervious light, nodata black

    def show_map(ax: Any, m: np.ndarray) -> None:
        ax.imshow(np.where(m == 255, 2, m), cmap=cmap, vmin=0, vmax=2, interpolation="nearest")

    for row, name in enumerate(names):
        optical, sar = inputs[name]
        axes[row, 0].imshow(_stretch(optical[[2, 1, 0]]))
        axes[row, 1].imshow(np.clip(np.nan_to_num(sar[0], nan=-25.0), -25, 5), cmap="gray", vmin=-25, vmax=5)
        show_map(axes[row, 2], labels[name])
        for j, k in enumerate(order):
            show_map(axes[row, 3 + j], maps[k][name])
        axes[row, 0].set_ylabel(f"({chr(97 + row)}) {name}", fontsize=6)
    for j, title in enumerate(cols):
        axes[0, j].set_title(title, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{SUITES[suite].title}, {split} split — qualitative results (light: impervious, green: pervious)",
                 fontsize=8)
    fig.tight_layout()
    from crofuse.io.store import atomic_file

    out_png = Path(out_png)
    try:
        with atomic_file(out_png) as tmp:  # the one atomic write (crofuse.io.store)
            fig.savefig(tmp, dpi=150)
    finally:
        plt.close(fig)
    return out_png
