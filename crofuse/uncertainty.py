"""Per-pixel uncertainty of an impervious-surface map, and whether the error rate follows it.

Two measures, both in 0..1 (the maps store them as percent of the maximum, ``docs/model.md`` says what each means):

- :func:`binary_entropy`: the entropy ``H(p) = -p log2 p - (1-p) log2 (1-p)`` of the calibrated impervious
  probability ``p`` of the shared head, in bits. 0 where the model is certain (``p`` = 0 or 1), 1 at ``p = 0.5``.
  With calibrated probabilities (:mod:`crofuse.calibration`) the expected error rate of a pixel is
  ``min(p, 1 - p)``, a monotone function of ``H``: entropy is the model's own estimate of how likely its class is
  wrong.
- :func:`head_disagreement`: the range ``max - min`` of the impervious probabilities of CroFuseNet's three heads
  (shared, optical-only, SAR-only; paper Sec. III-A), each with its own calibration temperature. 0 where the
  optical and SAR evidence and their fusion agree, 1 where one head is sure of impervious and another sure of
  pervious. It measures conflict between the modalities, which the shared head's entropy can hide (the fusion may
  be confident while one modality says otherwise: a cloud-shadowed roof, a bright wet field in SAR).

:func:`error_by_decile` cuts pixels into equal-count groups by uncertainty and reports the error rate of each,
the table ``benchmarks/uncertainty.py`` prints; :func:`bootstrap_top_minus_bottom` resamples whole patches to test
that the top group's error rate exceeds the bottom one's (pixels of a patch are not independent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MEASURES: tuple[str, ...] = ("entropy", "disagreement")


def binary_entropy(probability: np.ndarray) -> np.ndarray:
    """Entropy in bits (0..1) of a Bernoulli(p) per pixel; NaN stays NaN (nodata). ``0 log 0 = 0``."""
    p = np.asarray(probability, dtype=np.float64)
    q = np.clip(p, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(_xlog2x(q) + _xlog2x(1.0 - q))
    h = np.clip(h, 0.0, 1.0)
    return np.where(np.isfinite(p), h, np.nan).astype(np.float32)


def _xlog2x(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log2(np.where(x > 0, x, 1.0)), 0.0)


def head_disagreement(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """``max - min`` over heads of the impervious probability per pixel (0..1); NaN where any head is NaN.

    Needs at least two heads (a single-head model has no disagreement).
    """
    if len(probabilities) < 2:
        raise ValueError(f"head disagreement needs at least two heads, got {len(probabilities)}")
    stack = np.stack([np.asarray(p, dtype=np.float32) for p in probabilities])
    with np.errstate(invalid="ignore"):
        spread = stack.max(axis=0) - stack.min(axis=0)
    nodata = ~np.isfinite(stack).all(axis=0)
    return np.where(nodata, np.nan, np.clip(spread, 0.0, 1.0)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ error vs uncertainty
@dataclass(frozen=True)
class DecileRow:
    """One equal-count group of pixels ranked by uncertainty: its uncertainty range and mean, error rate, size."""

    group: int
    pixels: int
    low: float
    high: float
    mean: float
    error_rate: float


def decile_groups(uncertainty: np.ndarray, groups: int = 10) -> np.ndarray:
    """Group index 0..groups-1 per pixel: pixels ranked by uncertainty (ties broken by position, stable) and cut
    into ``groups`` groups of equal count (sizes differ by at most one)."""
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    order = np.argsort(u, kind="stable")
    index = np.empty(len(u), dtype=np.int64)
    index[order] = (np.arange(len(u)) * groups) // max(len(u), 1)
    return index


def error_by_decile(uncertainty: np.ndarray, error: np.ndarray, *, groups: int = 10) -> list[DecileRow]:
    """Error rate per equal-count uncertainty group (deciles by default), lowest uncertainty first.

    ``uncertainty`` and ``error`` (bool: the map's class differs from the label) are per labelled pixel; pixels
    with a non-finite uncertainty are left out.
    """
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    e = np.asarray(error, dtype=bool).ravel()
    if u.shape != e.shape:
        raise ValueError(f"uncertainty {u.shape} and error {e.shape} differ in size")
    keep = np.isfinite(u)
    u, e = u[keep], e[keep]
    if len(u) < groups:
        raise ValueError(f"{len(u)} pixels cannot be cut into {groups} groups")
    index = decile_groups(u, groups)
    rows = []
    for g in range(groups):
        m = index == g
        rows.append(DecileRow(group=g + 1, pixels=int(m.sum()), low=float(u[m].min()), high=float(u[m].max()),
                              mean=float(u[m].mean()), error_rate=float(e[m].mean())))
    return rows


def format_decile_table(tables: dict[str, list[DecileRow]]) -> str:
    """A markdown table with one row per decile and, per measure, its uncertainty range and error rate."""
    names = list(tables)
    header = "| decile | " + " | ".join(f"{n} range | {n} error rate" for n in names) + " |"
    rule = "|---|" + "---|---|" * len(names)
    lines = [header, rule]
    for i in range(len(next(iter(tables.values())))):
        cells = []
        for n in names:
            r = tables[n][i]
            cells.append(f"{r.low:.3f}–{r.high:.3f} | {r.error_rate:.2%}")
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    pixels = ", ".join(f"{n}: {sum(r.pixels for r in tables[n])}" for n in names)
    lines.append(f"\npixels per measure: {pixels}")
    return "\n".join(lines)


def bootstrap_top_minus_bottom(
    uncertainty: np.ndarray,
    error: np.ndarray,
    patch: np.ndarray,
    *,
    groups: int = 10,
    resamples: int = 500,
    seed: int = 0,
) -> np.ndarray:
    """Cluster bootstrap of ``error rate(top group) - error rate(bottom group)``: whole patches (``patch`` ids per
    pixel) are drawn with replacement, the groups recomputed on each resample. Returns the ``resamples``
    differences (their share ``<= 0`` is a one-sided p-value for "error rises with uncertainty")."""
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    e = np.asarray(error, dtype=bool).ravel()
    ids = np.asarray(patch).ravel()
    keep = np.isfinite(u)
    u, e, ids = u[keep], e[keep], ids[keep]
    unique, inverse = np.unique(ids, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(unique))]
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for b in range(resamples):
        take = np.concatenate([members[k] for k in rng.integers(0, len(unique), len(unique))])
        index = decile_groups(u[take], groups)
        eb = e[take]
        out[b] = eb[index == groups - 1].mean() - eb[index == 0].mean()
    return out


@dataclass(frozen=True)
class PixelUncertainty:
    """Per labelled pixel of a patch split: the calibrated shared probability, its entropy, the heads'
    disagreement (``None`` for single-head models), whether the class is wrong, and the patch it belongs to."""

    probability: np.ndarray
    entropy: np.ndarray
    disagreement: np.ndarray | None
    error: np.ndarray
    patch: np.ndarray
    label: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[PixelUncertainty]) -> PixelUncertainty:
        """Pixels of several splits together; patch ids are renumbered so patches of different splits differ."""
        offsets = np.cumsum([0] + [int(p.patch.max()) + 1 if len(p.patch) else 0 for p in parts[:-1]])
        has_d = all(p.disagreement is not None for p in parts)
        return cls(
            probability=np.concatenate([p.probability for p in parts]),
            entropy=np.concatenate([p.entropy for p in parts]),
            disagreement=np.concatenate([p.disagreement for p in parts]) if has_d else None,  # type: ignore[misc]
            error=np.concatenate([p.error for p in parts]),
            patch=np.concatenate([p.patch + o for p, o in zip(parts, offsets, strict=True)]),
            label=np.concatenate([p.label for p in parts]),
        )

    def measures(self) -> dict[str, np.ndarray]:
        """``{"entropy": ..., "disagreement": ...}`` (without disagreement for single-head models)."""
        out = {"entropy": self.entropy}
        if self.disagreement is not None:
            out["disagreement"] = self.disagreement
        return out


def patch_uncertainty(predictor, dataset, *, batch_size: int = 16, threshold: float = 0.5) -> PixelUncertainty:
    """Run ``predictor`` (:class:`crofuse.checkpoint.Predictor`, calibrated by its card) over every patch of
    ``dataset`` (a :class:`crofuse.data.PatchDataset` *without* normalisation: the Predictor standardises) and
    return the per-pixel uncertainty of the labelled pixels. The class is ``p > threshold``, as in the maps."""
    from crofuse import NODATA_LABEL

    if getattr(dataset, "normalization", None) is not None:
        raise ValueError("give patch_uncertainty a PatchDataset without normalization: the Predictor applies the "
                         "card's own")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "h", "d", "e", "patch", "y")}
    multi = len(predictor.heads) > 1
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        optical = np.stack([it["optical"].numpy() for it in items])
        sar = np.stack([it["sar"].numpy() for it in items])
        label = np.stack([it["label"].numpy() for it in items])
        heads = predictor.predict_heads(optical, sar)
        shared = heads["shared"]
        keep = label != NODATA_LABEL
        patch_ids = np.broadcast_to(np.arange(start, start + len(items))[:, None, None], label.shape)
        parts["p"].append(shared[keep])
        parts["h"].append(binary_entropy(shared)[keep])
        if multi:
            parts["d"].append(head_disagreement([heads[k] for k in predictor.heads])[keep])
        parts["e"].append((shared > threshold)[keep] != (label[keep] == 1))
        parts["patch"].append(patch_ids[keep])
        parts["y"].append(label[keep].astype(np.uint8))
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}
    return PixelUncertainty(probability=cat["p"], entropy=cat["h"], disagreement=cat["d"] if multi else None,
                            error=cat["e"].astype(bool), patch=cat["patch"], label=cat["y"])


__all__ = [
    "MEASURES",
    "DecileRow",
    "PixelUncertainty",
    "binary_entropy",
    "bootstrap_top_minus_bottom",
    "decile_groups",
    "error_by_decile",
    "format_decile_table",
    "head_disagreement",
    "patch_uncertainty",
]
