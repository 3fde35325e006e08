"""Stratified random sampling and the stratified estimator of area and accuracy (pure numpy).

Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A. (2014). *Good practices for
estimating area and assessing accuracy of land change.* Remote Sensing of Environment 148: 42–57
(doi:10.1016/j.rse.2014.02.015). Equation numbers below are the paper's.

Notation: the map classes are the strata (stratum ``i`` is map class ``i``); ``n_ij`` is the number of sample units of
stratum ``i`` whose reference class is ``j``; ``n_i· = Σ_j n_ij``; ``W_i = A_i / A`` is the share of the total area
``A`` mapped as class ``i``. Counts are a ``(K, K)`` matrix, rows = map class (stratum), columns = reference class.
A class may have no stratum (its row is all zeros and its mapped area 0): it can still be found by the reference
labels, e.g. loss after a map series was made non-reverting.

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
) -> np.ndarray:
    """Units per stratum: at least ``min_rare`` in each rare stratum, the rest in proportion to area.

    Section 5.1.2 of the paper: proportional allocation leaves rare (change) strata with too few units to estimate
    their user's accuracy, so allocate 50–100 units to each rare stratum and the remainder proportionally to the
    others. A stratum is rare when its area share is below ``rare_share`` (the ``rare_class_prop`` of sits'
    ``sits_sampling_design``). A stratum never gets more units than it has (``stratum_units``, e.g. pixels); when the
    rare minimums exceed ``n_total``, they win and the total grows.
    """
    area = np.asarray(stratum_area, dtype="float64")
    units = np.asarray(stratum_units, dtype="int64")
    if area.shape != units.shape:
        raise ValueError("stratum_area and stratum_units must have the same length")
    if area.sum() <= 0:
        raise ValueError("the strata have no area: nothing to sample")
    w = area / area.sum()
    present = units > 0
    rare = present & (w < rare_share)
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


def error_matrix(stratum: np.ndarray, reference: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``n_ij`` of the sample units: rows = stratum (map class), columns = reference class."""
    stratum = np.asarray(stratum, dtype="int64")
    reference = np.asarray(reference, dtype="int64")
    if stratum.shape != reference.shape:
        raise ValueError("stratum and reference must have one value per sample unit")
    if np.any((stratum < 0) | (stratum >= n_classes) | (reference < 0) | (reference >= n_classes)):
        raise ValueError(f"stratum and reference codes must lie in 0 … {n_classes - 1}")
    counts = np.zeros((n_classes, n_classes), dtype="int64")
    np.add.at(counts, (stratum, reference), 1)
    return counts


# --------------------------------------------------------------------------------------------------------------------
# The stratified estimator
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StratifiedEstimate:
    """Area and accuracy estimated from a stratified random sample (all arrays indexed by class).

    Areas are in the unit of the ``stratum_area`` the estimate was made with. NaN marks a figure that the sample
    cannot give (the user's accuracy of a class that is not a stratum, the producer's accuracy of a class nobody
    found).
    """

    counts: np.ndarray  # n_ij
    mapped_area: np.ndarray  # A_i
    proportions: np.ndarray  # p̂_ij, eq. (4)
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
        return float(self.mapped_area.sum())


def _check_counts(counts: np.ndarray, mapped_area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype="float64")
    mapped_area = np.asarray(mapped_area, dtype="float64")
    k = len(mapped_area)
    if counts.shape != (k, k):
        raise EstimationError(f"the error matrix must be {k}×{k} (strata × reference classes), got {counts.shape}")
    if np.any(counts < 0) or np.any(mapped_area < 0) or mapped_area.sum() <= 0:
        raise EstimationError("counts and mapped areas must be non-negative, with some area mapped")
    n_i = counts.sum(axis=1)
    short = np.flatnonzero((mapped_area > 0) & (n_i < 2))
    if short.size:
        raise EstimationError(
            f"strata {short.tolist()} have mapped area but {n_i[short].astype(int).tolist()} sample units: each "
            "stratum needs at least 2 labelled units for a variance (and far more for a useful one)"
        )
    return counts, mapped_area


def stratified_estimate(counts: np.ndarray, mapped_area: Sequence[float], *, z: float = Z95) -> StratifiedEstimate:
    """Olofsson et al. (2014) stratified estimator of class areas and accuracies, with standard errors.

    Args:
        counts: ``(K, K)`` sample counts ``n_ij`` (rows: stratum = map class, columns: reference class).
        mapped_area: ``(K,)`` area mapped as each class (the stratum sizes ``A_i``), any unit (pixels, ha, km²).
        z: the normal quantile of the intervals (1.96: 95 %).

    Returns:
        ``p̂_ij = W_i n_ij / n_i·`` (eq. 4); overall accuracy ``Ô = Σ_j p̂_jj`` (eq. 1) with
        ``V(Ô) = Σ_i W_i² Û_i (1 − Û_i) / (n_i· − 1)`` (eq. 5); user's accuracy ``Û_i = p̂_ii / p̂_i·`` (eq. 2) with
        ``V(Û_i) = Û_i (1 − Û_i) / (n_i· − 1)`` (eq. 6); producer's accuracy ``P̂_j = p̂_jj / p̂_·j`` (eq. 3) with its
        variance (eq. 7); area ``Â_k = A Σ_i p̂_ik`` (eq. 9) with
        ``S(Â_k) = A sqrt(Σ_i W_i² (n_ik/n_i·)(1 − n_ik/n_i·) / (n_i· − 1))`` (eqs. 10–11).
    """
    counts, area = _check_counts(counts, np.asarray(mapped_area))
    total = area.sum()
    w = area / total
    n_i = counts.sum(axis=1)
    sampled = n_i > 0
    frac = np.zeros_like(counts)
    frac[sampled] = counts[sampled] / n_i[sampled, None]  # n_ij / n_i·
    p = w[:, None] * frac  # eq. (4)
    p_col = p.sum(axis=0)  # p̂_·k, eq. (9)

    denom = np.where(n_i > 1, n_i - 1, np.inf)  # strata without area and units contribute nothing
    var_p_col = np.sum((w**2)[:, None] * frac * (1 - frac) / denom[:, None], axis=0)  # eq. (10)

    diag = np.diag(p)
    user = np.full(len(w), np.nan)
    user[sampled] = np.diag(frac)[sampled]  # eq. (2): p̂_ii / p̂_i· = n_ii / n_i·
    user_se = np.full(len(w), np.nan)
    user_se[sampled] = np.sqrt(user[sampled] * (1 - user[sampled]) / denom[sampled])  # eq. (6)
    overall = float(diag.sum())  # eq. (1)
    u0 = np.nan_to_num(user)
    overall_se = float(np.sqrt(np.sum(w**2 * u0 * (1 - u0) / denom)))  # eq. (5)

    producer = np.full(len(w), np.nan)
    producer_se = np.full(len(w), np.nan)
    found = p_col > 0
    producer[found] = diag[found] / p_col[found]  # eq. (3)
    for j in np.flatnonzero(found):  # eq. (7), with the stratum sizes N_i· as areas (the ratio is scale-free)
        n_dot_j = np.sum(area * frac[:, j])  # N̂_·j
        own = 0.0 if not sampled[j] else area[j] ** 2 * (1 - producer[j]) ** 2 * user[j] * (1 - user[j]) / denom[j]
        others = sum(
            area[i] ** 2 * frac[i, j] * (1 - frac[i, j]) / denom[i] for i in range(len(w)) if i != j and sampled[i]
        )
        producer_se[j] = math.sqrt((own + producer[j] ** 2 * others) / n_dot_j**2)

    return StratifiedEstimate(
        counts=counts.astype("int64"),
        mapped_area=area,
        proportions=p,
        area=total * p_col,
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
    counts: np.ndarray, mapped_area: Sequence[float], coefficients: Sequence[float]
) -> tuple[float, float]:
    """Estimate and standard error of the area of ``Σ_k c_k · (reference class k)``, e.g. net change (gain − loss).

    The area of a single class (``c = e_k``) is eq. (9) with eqs. (10)–(11); for any other combination the same
    stratified estimator of a total applies to the unit value ``y = c_{ref(u)}``: ``Â = A Σ_i W_i ȳ_i`` and
    ``V(Â) = A² Σ_i W_i² s_i² / n_i·`` with ``s_i²`` the sample variance of ``y`` in stratum ``i`` (for ``c = e_k``,
    ``s_i² / n_i· = p(1 − p) / (n_i· − 1)``: eq. 10 again).
    """
    counts, area = _check_counts(counts, np.asarray(mapped_area))
    c = np.asarray(coefficients, dtype="float64")
    if c.shape != (len(area),):
        raise EstimationError(f"need one coefficient per class ({len(area)}), got {c.shape}")
    total = area.sum()
    w = area / total
    n_i = counts.sum(axis=1)
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
]
