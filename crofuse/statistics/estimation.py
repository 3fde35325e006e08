"""Stratified random sampling and the stratified estimator of area and accuracy (pure numpy).

Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A. (2014). *Good practices for
estimating area and assessing accuracy of land change.* Remote Sensing of Environment 148: 42–57
(doi:10.1016/j.rse.2014.02.015). Equation numbers below are the paper's.

Notation: ``n_ij`` is the number of sample units of stratum ``i`` whose reference class is ``j``;
``n_i· = Σ_j n_ij``; ``W_i = A_i / A`` is the share of the total area ``A`` in stratum ``i``. In the paper the strata
are the map classes (stratum ``i`` is map class ``i``) and counts are a ``(K, K)`` matrix, rows = map class
(stratum), columns = reference class. A class may have no stratum (its row is all zeros and its mapped area 0): it
can still be found by the reference labels, e.g. loss after a map series was made non-reverting.

Strata may also differ from the map classes, e.g. a *buffer* stratum of stable pixels next to mapped change, where
most of the change a map misses lies (Olofsson, P., Arévalo, P., Espejo, A. B., Green, C., Lindquist, E.,
McRoberts, R. E., Sanz, M. J. 2020, *Mitigating the effects of omission errors on area and area change estimates*,
Remote Sensing of Environment 236: 111492). Areas are then the same stratified estimator with more strata; the
accuracies are ratios of two stratified estimates (Stehman, S. V. 2014, *Estimating area and map accuracy for
stratified random sampling when the strata are different from the map classes*, International Journal of Remote
Sensing 35: 4923–4939, eqs. 2–3 and 24–28). The counts are then ``(H, K, K)``: stratum × map class × reference
class. When the strata are the map classes, Stehman's estimators are the paper's eqs. (1)–(11) exactly (Stehman 2014,
section 4), so one implementation serves both.

Like the paper (and R's ``sits_accuracy``, ``mapaccuracy``), the variances carry no finite-population correction:
with a stratum of ``N_i`` pixels and ``n_i`` sample units they over-state the variance by ``N_i / (N_i − n_i)``,
which is negligible unless a stratum is nearly exhausted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crofuse.errors import DataError

Z95 = 1.96
"""The normal quantile of a two-sided 95 % interval, as the paper's intervals use it."""


class EstimationError(DataError):
    """A sample cannot give a stratified estimate (too few units in a stratum, inconsistent inputs)."""


# --------------------------------------------------------------------------------------------------------------------
# Design: sample size, allocation, drawing
# --------------------------------------------------------------------------------------------------------------------
def sample_size(weights: Sequence[float], expected_user_accuracy: Sequence[float], *, target_se: float = 0.01) -> int:
    """Total sample size for a target standard error of overall accuracy, eq. (13).

    ``n = (Σ_i W_i S_i / S(Ô))²`` with ``S_i = sqrt(U_i (1 − U_i))`` the standard deviation of stratum ``i`` for
    a conjectured user's accuracy ``U_i``, and ``S(Ô)`` the target standard error (0.01 in the paper's example,
    which gives n = 641 for its four strata).
    """
    w = np.asarray(weights, dtype="float64")
    u = np.asarray(expected_user_accuracy, dtype="float64")
    if w.shape != u.shape or w.ndim != 1:
        raise ValueError(f"weights {w.shape} and expected user's accuracies {u.shape} must be 1-D of equal length")
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
        raise ValueError(f"weights must be non-negative area shares that sum to 1; got {w.tolist()}")
    if np.any((u < 0) | (u > 1)):
        raise ValueError(f"expected user's accuracies must lie in [0, 1]; got {u.tolist()}")
    if not target_se > 0:
        raise ValueError(f"target_se must be positive, got {target_se}")
    return int(math.ceil((np.sum(w * np.sqrt(u * (1 - u))) / target_se) ** 2 - 1e-9))


def proportional_allocation(weights: Sequence[float], n: int) -> np.ndarray:
    """``n`` units in proportion to ``weights``, rounded by largest remainder so they sum to exactly ``n``."""
    w = np.asarray(weights, dtype="float64")
    if n < 0 or np.any(w < 0):
        raise ValueError("n and the weights must be non-negative")
    if n == 0 or w.sum() == 0:
        return np.zeros(len(w), dtype="int64")
    exact = w / w.sum() * n
    out = np.floor(exact).astype("int64")
    short = n - int(out.sum())
    order = np.argsort(-(exact - out), kind="stable")
    out[order[:short]] += 1
    return out


def allocate(
    stratum_area: Sequence[float],
    stratum_units: Sequence[int],
    n_total: int,
    *,
    rare_share: float = 0.1,
    min_rare: int = 75,
    rare: Sequence[bool] | None = None,
) -> np.ndarray:
    """Units per stratum: at least ``min_rare`` in each rare stratum, the rest in proportion to area.

    Section 5.1.2 of the paper: proportional allocation leaves rare (change) strata with too few units to estimate
    their user's accuracy, so allocate 50–100 units to each rare stratum and the remainder proportionally to the
    others. A stratum is rare when its area share is below ``rare_share`` (the ``rare_class_prop`` of sits'
    ``sits_sampling_design``), or when ``rare`` marks it so whatever its share (a buffer stratum: Olofsson et al.
    2020 and the Open MRV sampling tutorial give it the rare strata's minimum). A rare stratum gets the larger of
    ``min_rare`` and its proportional share. A stratum never gets more units than it has (``stratum_units``, e.g.
    pixels); when the rare minimums exceed ``n_total``, they win and the total grows.
    """
    area = np.asarray(stratum_area, dtype="float64")
    units = np.asarray(stratum_units, dtype="int64")
    if area.shape != units.shape:
        raise ValueError("stratum_area and stratum_units must have the same length")
    if area.sum() <= 0:
        raise ValueError("the strata have no area: nothing to sample")
    w = area / area.sum()
    present = units > 0
    forced = np.zeros(len(w), bool) if rare is None else np.asarray(rare, dtype=bool)
    if forced.shape != w.shape:
        raise ValueError(f"rare needs one flag per stratum ({len(w)}), got {forced.shape}")
    rare = present & ((w < rare_share) | forced)
    out = np.zeros(len(w), dtype="int64")
    proportional = proportional_allocation(w, n_total)
    out[rare] = np.minimum(units[rare], np.maximum(min_rare, proportional[rare]))
    rest = present & ~rare
    remaining = max(0, n_total - int(out.sum()))
    if rest.any():
        out[rest] = np.minimum(units[rest], proportional_allocation(w[rest], remaining))
    return out


def draw_stratified(strata: np.ndarray, allocation: Sequence[int], *, seed: int | np.random.Generator) -> np.ndarray:
    """A stratified random sample: ``allocation[h]`` distinct units drawn at random from stratum ``h``.

    Args:
        strata: stratum code of every unit (e.g. a flattened map), ``0 … K−1``; any other value is outside the
            population (nodata, outside the AOI).
        allocation: units per stratum (:func:`allocate`).
        seed: seed or generator; the same seed gives the same sample.

    Returns:
        Indices into ``strata.ravel()``, grouped by stratum and sorted within each.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    flat = np.asarray(strata).ravel()
    picked = []
    for h, n_h in enumerate(allocation):
        members = np.flatnonzero(flat == h)
        if n_h > len(members):
            raise ValueError(f"stratum {h} has {len(members)} units, cannot draw {n_h}")
        picked.append(np.sort(rng.choice(members, size=int(n_h), replace=False)))
    return np.concatenate(picked) if picked else np.zeros(0, dtype="int64")


def error_matrix(
    stratum: np.ndarray, reference: np.ndarray, n_classes: int, *, n_strata: int | None = None
) -> np.ndarray:
    """Counts ``n_ij`` of the sample units: rows = stratum (the map class, when strata are the classes), columns =
    reference class; ``(n_strata, n_classes)``, square unless ``n_strata`` says otherwise."""
    h = n_classes if n_strata is None else int(n_strata)
    stratum = np.asarray(stratum, dtype="int64")
    reference = np.asarray(reference, dtype="int64")
    if stratum.shape != reference.shape:
        raise ValueError("stratum and reference must have one value per sample unit")
    if np.any((stratum < 0) | (stratum >= h)):
        raise ValueError(f"stratum codes must lie in 0 … {h - 1}")
    if np.any((reference < 0) | (reference >= n_classes)):
        raise ValueError(f"reference codes must lie in 0 … {n_classes - 1}")
    counts = np.zeros((h, n_classes), dtype="int64")
    np.add.at(counts, (stratum, reference), 1)
    return counts


def unit_counts(
    stratum: np.ndarray, map_class: np.ndarray, reference: np.ndarray, *, n_strata: int, n_classes: int
) -> np.ndarray:
    """Counts ``n_hmr`` of the sample units by stratum ``h``, map class ``m`` and reference class ``r``:
    ``(n_strata, n_classes, n_classes)``, the input of :func:`stratified_estimate` when strata are not the map
    classes (Stehman 2014)."""
    stratum, map_class, reference = (np.asarray(a, dtype="int64") for a in (stratum, map_class, reference))
    if not (stratum.shape == map_class.shape == reference.shape):
        raise ValueError("stratum, map class and reference must have one value per sample unit")
    if np.any((stratum < 0) | (stratum >= n_strata)):
        raise ValueError(f"stratum codes must lie in 0 … {n_strata - 1}")
    if np.any((map_class < 0) | (map_class >= n_classes) | (reference < 0) | (reference >= n_classes)):
        raise ValueError(f"map and reference class codes must lie in 0 … {n_classes - 1}")
    counts = np.zeros((n_strata, n_classes, n_classes), dtype="int64")
    np.add.at(counts, (stratum, map_class, reference), 1)
    return counts


# --------------------------------------------------------------------------------------------------------------------
# The stratified estimator
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StratifiedEstimate:
    """Area and accuracy estimated from a stratified random sample (all ``(K,)`` arrays indexed by class).

    Areas are in the unit of the ``stratum_area`` the estimate was made with. NaN marks a figure that the sample
    cannot give (the user's accuracy of a class no sample unit is mapped as, the producer's accuracy of a class
    nobody found).
    """

    counts: np.ndarray  # n_ij: (H, K), stratum × reference class
    stratum_area: np.ndarray  # A_h: (H,)
    mapped_area: np.ndarray  # area mapped as each class: A_i when strata are the classes, else A Σ_j p̂_ij
    proportions: np.ndarray  # p̂_ij, eq. (4): (K, K), map class × reference class
    area: np.ndarray  # Â_k, eq. (9)
    area_se: np.ndarray  # S(Â_k), eqs. (10)-(11)
    user: np.ndarray  # Û_i, eq. (2)
    user_se: np.ndarray  # S(Û_i), eq. (6)
    producer: np.ndarray  # P̂_j, eq. (3)
    producer_se: np.ndarray  # S(P̂_j), eq. (7)
    overall: float  # Ô, eq. (1)
    overall_se: float  # S(Ô), eq. (5)
    z: float = Z95

    @property
    def area_ci(self) -> np.ndarray:
        """Half-width of the confidence interval of each area, ``z · S(Â_k)`` (95 % with the default z)."""
        return self.z * self.area_se

    @property
    def total_area(self) -> float:
        return float(self.stratum_area.sum())


def _check_strata(n_h: np.ndarray, stratum_area: np.ndarray) -> None:
    if np.any(stratum_area < 0) or stratum_area.sum() <= 0:
        raise EstimationError("counts and stratum areas must be non-negative, with some area in the strata")
    short = np.flatnonzero((stratum_area > 0) & (n_h < 2))
    if short.size:
        raise EstimationError(
            f"strata {short.tolist()} have mapped area but {n_h[short].astype(int).tolist()} sample units: each "
            "stratum needs at least 2 labelled units for a variance (and far more for a useful one)"
        )


def _unit_counts(counts: np.ndarray, stratum_area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n_hmr as float (H, K, K), A_h)`` from either form of counts (see :func:`stratified_estimate`)."""
    counts = np.asarray(counts, dtype="float64")
    area = np.asarray(stratum_area, dtype="float64")
    h = len(area)
    if counts.ndim == 2:
        if counts.shape != (h, h):
            raise EstimationError(f"the error matrix must be {h}×{h} (strata = map classes × reference classes), "
                                  f"got {counts.shape}; with strata other than the map classes pass counts by "
                                  "stratum × map class × reference class")
        units = np.zeros((h, h, h))
        units[np.arange(h), np.arange(h), :] = counts  # stratum i holds only units mapped as class i
    elif counts.ndim == 3 and counts.shape[0] == h and counts.shape[1] == counts.shape[2]:
        units = counts
    else:
        raise EstimationError(f"counts must be (strata × reference) = ({h}, {h}) or (strata × map class × "
                              f"reference) = ({h}, K, K), got {counts.shape}")
    if np.any(units < 0):
        raise EstimationError("counts and stratum areas must be non-negative, with some area in the strata")
    _check_strata(units.sum(axis=(1, 2)), area)
    return units, area


def _ratio(w: np.ndarray, y: np.ndarray, x: np.ndarray, denom: np.ndarray) -> tuple[float, float]:
    """Ratio ``R̂ = Σ_h W_h ȳ_h / Σ_h W_h x̄_h`` of two stratified means of 0/1 unit values with ``y ≤ x`` (so
    ``mean(xy) = ȳ``), and its standard error (Stehman 2014, eqs. 27–28, without the finite-population correction):
    ``V(R̂) = Σ_h W_h² (s²_yh + R̂² s²_xh − 2 R̂ s_xyh) / n_h / X̂²``, with the sample (co)variances of 0/1 values
    written as ``s²_yh / n_h = ȳ(1 − ȳ) / (n_h − 1)`` and ``s_xyh / n_h = ȳ(1 − x̄) / (n_h − 1)``."""
    x_hat = float(np.sum(w * x))
    if x_hat <= 0:
        return math.nan, math.nan
    r = float(np.sum(w * y)) / x_hat
    v = np.sum(w**2 * (y * (1 - y) + r**2 * x * (1 - x) - 2 * r * y * (1 - x)) / denom) / x_hat**2
    return r, math.sqrt(max(0.0, float(v)))


def stratified_estimate(counts: np.ndarray, stratum_area: Sequence[float], *, z: float = Z95) -> StratifiedEstimate:
    """Olofsson et al. (2014) stratified estimator of class areas and accuracies, with standard errors; Stehman
    (2014) when the strata are not the map classes.

    Args:
        counts: ``(K, K)`` sample counts ``n_ij`` when the strata are the map classes (rows: stratum = map class,
            columns: reference class), or ``(H, K, K)`` counts ``n_hmr`` by stratum, map class and reference class
            (:func:`unit_counts`) for any other strata, e.g. with a buffer stratum.
        stratum_area: ``(K,)`` or ``(H,)`` area of each stratum (the mapped areas ``A_i`` when strata are the map
            classes), any unit (pixels, ha, km²).
        z: the normal quantile of the intervals (1.96: 95 %).

    Returns:
        ``p̂_ij = Σ_h W_h n_hij / n_h·`` (eq. 4, a sum over one stratum when strata are classes); overall accuracy
        ``Ô = Σ_j p̂_jj`` (eq. 1) with ``V(Ô) = Σ_h W_h² Ô_h (1 − Ô_h) / (n_h· − 1)`` (eq. 5, ``Ô_h`` the share of
        stratum h's units that are correct: ``Û_i`` when strata are classes); user's accuracy
        ``Û_i = p̂_ii / p̂_i·`` (eq. 2) and producer's ``P̂_j = p̂_jj / p̂_·j`` (eq. 3) with the variances of ratio
        estimators (Stehman 2014, eq. 28), which are eqs. (6) and (7) when strata are classes; area
        ``Â_k = A Σ_h W_h n_h·k / n_h·`` (eq. 9) with ``S(Â_k) = A sqrt(Σ_h W_h² f_hk (1 − f_hk) / (n_h· − 1))``,
        ``f_hk = n_h·k / n_h·`` (eqs. 10–11).
    """
    units, area = _unit_counts(counts, np.asarray(stratum_area))
    k = units.shape[1]
    total = area.sum()
    w = area / total
    n_h = units.sum(axis=(1, 2))
    sampled = n_h > 0
    frac = np.zeros_like(units)
    frac[sampled] = units[sampled] / n_h[sampled, None, None]  # n_hmr / n_h·
    p = np.einsum("h,hmr->mr", w, frac)  # eq. (4)
    by_ref = frac.sum(axis=1)  # f_hk = n_h·k / n_h·
    denom = np.where(n_h > 1, n_h - 1, np.inf)  # strata without area and units contribute nothing

    var_p_col = np.sum((w**2)[:, None] * by_ref * (1 - by_ref) / denom[:, None], axis=0)  # eq. (10)
    correct = np.einsum("hkk->h", frac)  # share of each stratum's units whose map class is right
    overall = float(p.trace())  # eq. (1)
    overall_se = float(np.sqrt(np.sum(w**2 * correct * (1 - correct) / denom)))  # eq. (5)

    user, user_se = np.full(k, np.nan), np.full(k, np.nan)
    producer, producer_se = np.full(k, np.nan), np.full(k, np.nan)
    for j in range(k):
        hit = frac[:, j, j]  # y = 1 where map and reference are both j
        user[j], user_se[j] = _ratio(w, hit, frac[:, j, :].sum(axis=1), denom)  # x: mapped as j; eqs. (2), (6)
        producer[j], producer_se[j] = _ratio(w, hit, by_ref[:, j], denom)  # x: reference j; eqs. (3), (7)

    strata_are_classes = np.asarray(counts).ndim == 2
    return StratifiedEstimate(
        counts=units.sum(axis=1).astype("int64"),
        stratum_area=area,
        mapped_area=area if strata_are_classes else total * p.sum(axis=1),
        proportions=p,
        area=total * p.sum(axis=0),
        area_se=total * np.sqrt(var_p_col),  # eq. (11)
        user=user,
        user_se=user_se,
        producer=producer,
        producer_se=producer_se,
        overall=overall,
        overall_se=overall_se,
        z=z,
    )


def stratified_combination(
    counts: np.ndarray, stratum_area: Sequence[float], coefficients: Sequence[float]
) -> tuple[float, float]:
    """Estimate and standard error of the area of ``Σ_k c_k · (reference class k)``, e.g. net change (gain − loss).

    ``counts``: ``(H, K)`` units by stratum and reference class (square when strata are the map classes), or
    ``(H, K, K)`` by stratum, map class and reference class. The area of a single class (``c = e_k``) is eq. (9)
    with eqs. (10)–(11); for any other combination the same stratified estimator of a total applies to the unit
    value ``y = c_{ref(u)}``: ``Â = A Σ_h W_h ȳ_h`` and ``V(Â) = A² Σ_h W_h² s_h² / n_h·`` with ``s_h²`` the sample
    variance of ``y`` in stratum ``h`` (for ``c = e_k``, ``s_h² / n_h· = p(1 − p) / (n_h· − 1)``: eq. 10 again).
    """
    counts = np.asarray(counts, dtype="float64")
    area = np.asarray(stratum_area, dtype="float64")
    if counts.ndim == 3:
        counts = counts.sum(axis=1)
    if counts.ndim != 2 or counts.shape[0] != len(area):
        raise EstimationError(f"counts must have one row per stratum ({len(area)}), got {counts.shape}")
    if np.any(counts < 0):
        raise EstimationError("counts and stratum areas must be non-negative, with some area in the strata")
    n_i = counts.sum(axis=1)
    _check_strata(n_i, area)
    c = np.asarray(coefficients, dtype="float64")
    if c.shape != (counts.shape[1],):
        raise EstimationError(f"need one coefficient per class ({counts.shape[1]}), got {c.shape}")
    total = area.sum()
    w = area / total
    sampled = n_i > 0
    mean = np.zeros(len(w))
    mean_sq = np.zeros(len(w))
    mean[sampled] = counts[sampled] @ c / n_i[sampled]
    mean_sq[sampled] = counts[sampled] @ (c**2) / n_i[sampled]
    var_mean = np.zeros(len(w))
    many = n_i > 1
    var_mean[many] = (mean_sq[many] - mean[many] ** 2) / (n_i[many] - 1)  # s_i² / n_i· (s_i² with n_i· − 1)
    return float(total * np.sum(w * mean)), float(total * math.sqrt(max(0.0, np.sum(w**2 * var_mean))))


__all__ = [
    "Z95",
    "EstimationError",
    "StratifiedEstimate",
    "allocate",
    "draw_stratified",
    "error_matrix",
    "proportional_allocation",
    "sample_size",
    "stratified_combination",
    "stratified_estimate",
    "unit_counts",
]
