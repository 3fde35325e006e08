"""Mean ± spread over seeds, and the rule that decides when two methods cannot be ranked.

The seed spread of a method is the sample standard deviation (``ddof=1``) of a metric over its seeds. Two methods
are **within noise** on a metric when the difference of their means is not larger than the larger of their two
spreads: ``|mean_a - mean_b| <= max(std_a, std_b)``. Then the report claims no ranking between them. With fewer than
two seeds a method has no spread estimate, and no ranking is claimed either (the comparison is "unknown").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Comparison", "Summary", "compare", "rank_chain", "summarize"]

Comparison = Literal[">", "<", "≈", "?"]
"""``>``/``<``: a is clearly better/worse; ``≈``: within the seed spread; ``?``: no spread (fewer than 2 seeds)."""


@dataclass(frozen=True)
class Summary:
    """A metric over seeds: mean, sample standard deviation (NaN below 2 seeds) and the values."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...]

    @property
    def has_spread(self) -> bool:
        return self.n >= 2 and math.isfinite(self.std)


def summarize(values: Iterable[float]) -> Summary:
    """Mean and sample standard deviation (``ddof=1``) of the finite ``values``."""
    vals = tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))
    n = len(vals)
    if n == 0:
        return Summary(float("nan"), float("nan"), 0, ())
    mean = math.fsum(vals) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1)) if n >= 2 else float("nan")
    return Summary(mean, std, n, vals)


def compare(a: Summary, b: Summary, *, higher_is_better: bool = True) -> Comparison:
    """How ``a`` ranks against ``b``: ``>``, ``<``, ``≈`` (within seed spread) or ``?`` (spread unknown)."""
    if not (a.has_spread and b.has_spread) or not (math.isfinite(a.mean) and math.isfinite(b.mean)):
        return "?"
    diff = a.mean - b.mean if higher_is_better else b.mean - a.mean
    if abs(diff) <= max(a.std, b.std):
        return "≈"
    return ">" if diff > 0 else "<"


def rank_chain(summaries: Mapping[str, Summary], *, labels: Mapping[str, str] | None = None) -> str:
    """Methods from best to worst mean, joined by ``>`` where adjacent ones are separated, else ``≈`` or ``?``.

    ``"CroFuseNet ≈ UNet > FCN"`` reads: CroFuseNet and UNet cannot be told apart from the seed spread; both are
    clearly above FCN.
    """
    labels = labels or {}
    order: Sequence[str] = sorted(
        (k for k, s in summaries.items() if math.isfinite(s.mean)), key=lambda k: -summaries[k].mean
    )
    if not order:
        return ""
    parts = [labels.get(order[0], order[0])]
    for prev, cur in zip(order, order[1:]):
        parts += [compare(summaries[prev], summaries[cur]), labels.get(cur, cur)]
    return " ".join(parts)
