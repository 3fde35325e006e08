"""Calibrated probabilities: temperature scaling, expected calibration error and reliability diagrams.

Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017 (arXiv:1706.04599):

- **Temperature scaling** (Sec. 4.2): one scalar ``T > 0`` divides the logits, ``q = softmax(z / T)``, and is chosen
  to minimise the negative log-likelihood on a held-out split (here the validation split of the training set).
  ``T > 1`` softens over-confident predictions, ``T < 1`` sharpens under-confident ones. ``argmax`` is unchanged for
  every ``T > 0`` (dividing all logits of a pixel by the same positive number keeps their order), so a class map
  made from one forward pass does not move; :func:`fit_temperature` searches ``log T`` in bounds with a bounded
  1-D minimiser (the NLL is convex in ``1 / T``, hence unimodal in ``log T``).
- **Expected calibration error** (Sec. 2, "Expected Calibration Error"): predictions are grouped by their
  confidence (the top-label probability ``max_k q_k``) into ``M`` equal-width bins ``((m-1)/M, m/M]``
  (``M = 15`` in Guo et al.'s experiments) and ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|``.
- **Reliability diagram** (Sec. 2, Fig. 1): accuracy against confidence per bin, with the diagonal a perfectly
  calibrated model would follow; :func:`plot_reliability` draws the model before and after scaling on the same axes.

Everything here works on logits and labels (numpy arrays or torch tensors, pixels already flattened or
``(N, C, H, W)``), ignores the nodata label 255 and runs no model: collecting logits from a model is
:func:`crofuse.training.evaluate.collect_logits`. :class:`Calibration` is what a model card stores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crofuse import NODATA_LABEL
from crofuse.errors import ConfigError, DataError
from crofuse.model.crofusenet import CroFuseOutput

DEFAULT_BINS = 15
"""Equal-width confidence bins of the ECE and the reliability diagram (Guo et al. 2017 use 15)."""

HEADS: tuple[str, ...] = CroFuseOutput._fields
"""CroFuseNet's three heads (paper Sec. III-A, eq. (11)): ``shared`` (the prediction), ``optical``, ``sar``."""

TEMPERATURE_BOUNDS: tuple[float, float] = (1e-2, 1e2)
"""Search interval of the temperature; a fit that ends on a bound is refused (see :func:`fit_temperature`)."""

METHOD = "temperature scaling (Guo et al. 2017)"


def head_logits(output: CroFuseOutput | Tensor) -> dict[str, Tensor]:
    """The logits of every head of a model's output: ``shared``, ``optical``, ``sar`` for CroFuseNet, only
    ``shared`` for single-head models (UNets, baselines)."""
    if isinstance(output, CroFuseOutput):
        return dict(output._asdict())
    if isinstance(output, Tensor):
        return {"shared": output}
    raise TypeError(f"expected a CroFuseOutput or a Tensor, got {type(output).__name__}")


# ------------------------------------------------------------------------------------------------ the card record
@dataclass(frozen=True, kw_only=True)
class Calibration:
    """A fitted temperature and what it did, as stored in the model card (``card.calibration``).

    ``temperature`` scales the shared head (the model's prediction, the one the maps use); ``head_temperatures``
    holds the temperatures of CroFuseNet's specific heads (``optical``, ``sar``), fitted the same way, so that the
    heads' probabilities are on one scale when the maps compare them (the ``disagreement`` layer). ``ece_*`` and
    ``nll_*`` are measured on the split the temperature was fitted on (``fitted_on``, ``pixels`` of it), with
    ``bins`` equal-width bins; ``test`` holds the same four figures on the test split when one was evaluated.
    """

    temperature: float
    fitted_on: str = "val"
    bins: int = DEFAULT_BINS
    ece_before: float = math.nan
    ece_after: float = math.nan
    nll_before: float = math.nan
    nll_after: float = math.nan
    pixels: int = 0
    head_temperatures: dict[str, float] = field(default_factory=dict)
    dataset: str | None = None
    test: dict[str, float] | None = None
    method: str = METHOD

    def __post_init__(self) -> None:
        _check_temperature(self.temperature, "temperature")
        temps = {str(k): float(v) for k, v in dict(self.head_temperatures).items()}
        for name, value in temps.items():
            if name not in HEADS:
                raise ConfigError(f"calibration.head_temperatures has an unknown head {name!r}; heads are {HEADS}")
            _check_temperature(value, f"head_temperatures[{name!r}]")
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "head_temperatures", temps)
        if int(self.bins) < 1:
            raise ConfigError(f"calibration.bins must be >= 1, got {self.bins}")
        object.__setattr__(self, "bins", int(self.bins))
        object.__setattr__(self, "pixels", int(self.pixels))
        if self.test is not None:
            object.__setattr__(self, "test", {str(k): float(v) for k, v in dict(self.test).items()})

    def temperature_of(self, head: str) -> float:
        """The temperature of ``head`` (``shared``: :attr:`temperature`; a specific head without one: 1)."""
        if head == "shared":
            return self.temperature
        return self.head_temperatures.get(head, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "temperature": self.temperature,
            "head_temperatures": dict(self.head_temperatures),
            "fitted_on": self.fitted_on,
            "dataset": self.dataset,
            "pixels": self.pixels,
            "bins": self.bins,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "nll_before": self.nll_before,
            "nll_after": self.nll_after,
            "test": self.test,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a calibration record must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown calibration keys {sorted(unknown)}; known: {sorted(known)}")
        if "temperature" not in data:
            raise ConfigError("a calibration record needs a 'temperature'")
        return cls(**dict(data))


def _check_temperature(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"calibration.{name} must be a finite number > 0, got {value!r}")


# ------------------------------------------------------------------------------------------------ fitting
def _flatten(logits: Tensor | np.ndarray, labels: Tensor | np.ndarray,
             ignore_index: int) -> tuple[Tensor, Tensor]:
    """``(M, C)`` float64 logits and ``(M,)`` int64 labels of the labelled pixels."""
    z = torch.as_tensor(logits)
    y = torch.as_tensor(labels)
    if z.ndim == 4:  # (N, C, H, W) -> (N*H*W, C)
        z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        y = y.reshape(-1)
    if z.ndim != 2 or y.ndim != 1 or z.shape[0] != y.shape[0]:
        raise ValueError(f"logits {tuple(z.shape)} and labels {tuple(y.shape)}: expected (M, C) and (M,), "
                         "or (N, C, H, W) and (N, H, W)")
    y = y.long()
    keep = y != ignore_index
    z, y = z[keep].double(), y[keep]
    if bool(((y < 0) | (y >= z.shape[1])).any()):
        raise DataError(f"labels outside 0..{z.shape[1] - 1} that are not the nodata value {ignore_index}: "
                        f"{torch.unique(y[(y < 0) | (y >= z.shape[1])]).tolist()}")
    return z, y


def negative_log_likelihood(logits: Tensor | np.ndarray, labels: Tensor | np.ndarray, *, temperature: float = 1.0,
                            ignore_index: int = NODATA_LABEL) -> float:
    """Mean NLL (cross entropy, nats) of ``softmax(logits / temperature)`` over the labelled pixels."""
    z, y = _flatten(logits, labels, ignore_index)
    if not len(y):
        return math.nan
    return float(torch.nn.functional.cross_entropy(z / temperature, y))


@dataclass(frozen=True)
class TemperatureFit:
    """The temperature minimising the NLL, the NLL before (``T = 1``) and after, and the pixels used."""

    temperature: float
    nll_before: float
    nll_after: float
    pixels: int


def fit_temperature(
    logits: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    ignore_index: int = NODATA_LABEL,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    xatol: float = 1e-6,
) -> TemperatureFit:
    """Temperature scaling (Guo et al. 2017, Sec. 4.2): the ``T > 0`` minimising the NLL of ``softmax(z / T)``.

    ``logits`` ``(M, C)`` (or ``(N, C, H, W)``) and ``labels`` ``(M,)`` (or ``(N, H, W)``), nodata ignored. A
    bounded Brent search over ``log T`` in ``bounds`` (the NLL is convex in ``1/T``, so the search finds the
    global minimum). Raises :class:`~crofuse.errors.DataError` when no pixel is labelled, and when the minimum sits
    on a bound, which happens when the split is separated perfectly (the NLL keeps falling as ``T -> 0``) or when
    the logits carry no information: no finite temperature is then meaningful.
    """
    from scipy.optimize import minimize_scalar

    z, y = _flatten(logits, labels, ignore_index)
    if not len(y):
        raise DataError("no labelled pixel to fit a temperature on (every label is nodata); use a split with labels")
    if not torch.isfinite(z).all():
        raise DataError("the logits hold NaN or inf values; the model or its inputs are broken")

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / math.exp(log_t), y))

    lo, hi = (math.log(b) for b in bounds)
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": xatol})
    log_t = float(result.x)
    best = nll(log_t)
    on_bound = min(log_t - lo, hi - log_t) < 1e-3 or min(nll(lo), nll(hi)) <= best + 1e-12 * max(best, 1.0)
    if on_bound:
        raise DataError(
            f"the best temperature lies on the search bound {math.exp(log_t):.3g} (bounds {bounds}): the split is "
            "separated perfectly or the logits carry no information, so temperature scaling is not defined; "
            "calibrate on a larger split with errors in it"
        )
    return TemperatureFit(temperature=math.exp(log_t), nll_before=nll(0.0), nll_after=best, pixels=len(y))


def calibrated_probabilities(logits: Tensor, temperature: float = 1.0, *, dim: int = 1) -> Tensor:
    """``softmax(logits / temperature)`` along ``dim`` in float32 (the scaling the Predictor applies)."""
    return torch.softmax(logits.float() / float(temperature), dim=dim)


# ------------------------------------------------------------------------------------------------ ECE, reliability
@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin sums over equal-width confidence bins: pixel ``count``, summed ``confidence`` and ``correct``.

    Sums, not means, so the bins of several batches add up exactly (``a + b``); ``ece``, ``accuracy`` and
    ``mean_confidence`` are derived from them.
    """

    count: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray

    @classmethod
    def empty(cls, bins: int = DEFAULT_BINS) -> ReliabilityBins:
        return cls(np.zeros(bins, np.int64), np.zeros(bins, np.float64), np.zeros(bins, np.float64))

    @property
    def bins(self) -> int:
        return len(self.count)

    @property
    def total(self) -> int:
        return int(self.count.sum())

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.bins + 1)

    @property
    def accuracy(self) -> np.ndarray:
        """Share of correct predictions per bin (NaN for an empty bin)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.correct / self.count, np.nan)

    @property
    def mean_confidence(self) -> np.ndarray:
        """Mean confidence per bin (NaN for an empty bin)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.confidence / self.count, np.nan)

    @property
    def ece(self) -> float:
        """Expected calibration error ``sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` (NaN without pixels)."""
        n = self.count.sum()
        if n == 0:
            return math.nan
        return float(np.abs(self.correct - self.confidence).sum() / n)

    def __add__(self, other: ReliabilityBins) -> ReliabilityBins:
        if self.bins != other.bins:
            raise ValueError(f"cannot add reliability bins of {self.bins} and {other.bins} bins")
        return ReliabilityBins(self.count + other.count, self.confidence + other.confidence,
                               self.correct + other.correct)


def reliability_bins(
    probabilities: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    bins: int = DEFAULT_BINS,
    ignore_index: int = NODATA_LABEL,
) -> ReliabilityBins:
    """Top-label confidence bins of class probabilities ``(M, C)`` or ``(N, C, H, W)`` against ``labels``.

    Confidence is ``max_k p_k``, a prediction is correct when its ``argmax`` is the label; bin ``m`` holds the
    confidences in ``((m-1)/M, m/M]`` (Guo et al. 2017, Sec. 2).
    """
    if bins < 1:
        raise ConfigError(f"bins must be >= 1, got {bins}")
    p = torch.as_tensor(probabilities)
    y = torch.as_tensor(labels)
    if p.ndim == 4:
        p = p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])
        y = y.reshape(-1)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities {tuple(p.shape)} and labels {tuple(y.shape)}: expected (M, C) and (M,)")
    y = y.long()
    keep = y != ignore_index
    p, y = p[keep].double(), y[keep]
    confidence, predicted = p.max(dim=1)
    correct = (predicted == y).double()
    index = torch.clamp(torch.ceil(confidence * bins).long() - 1, 0, bins - 1)
    count = torch.bincount(index, minlength=bins)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    correct_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    return ReliabilityBins(count.cpu().numpy().astype(np.int64), conf_sum.cpu().numpy(), correct_sum.cpu().numpy())


def expected_calibration_error(
    probabilities: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    bins: int = DEFAULT_BINS,
    ignore_index: int = NODATA_LABEL,
) -> float:
    """ECE with ``bins`` equal-width confidence bins (Guo et al. 2017, Sec. 2); NaN when nothing is labelled."""
    return reliability_bins(probabilities, labels, bins=bins, ignore_index=ignore_index).ece


def plot_reliability(
    before: ReliabilityBins,
    after: ReliabilityBins,
    path: Any,
    *,
    temperature: float,
    title: str = "reliability diagram",
    classes: int = 2,
) -> Any:
    """Reliability diagram (Guo et al. 2017, Fig. 1 style) of the model before (``T = 1``) and after temperature
    scaling on the same axes, with the share of pixels per bin below; a PNG written atomically through
    :func:`crofuse.io.store.atomic_file` (``path`` may be an ``s3://`` URL). The confidence axis starts at ``1 / classes``, the least a top-class probability can be."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from crofuse.io.store import atomic_file, native

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.2, 6.4), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
    low = 1.0 / max(classes, 1)
    ax.plot([low, 1], [low, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    width = 1.0 / before.bins
    centres = before.edges[:-1] + width / 2
    for bins_, name, colour, marker in ((before, "before", "tab:red", "o"), (after, "after", "tab:blue", "s")):
        label = (f"{name}: T = 1, ECE {bins_.ece:.4f}" if name == "before"
                 else f"{name}: T = {temperature:.3f}, ECE {bins_.ece:.4f}")
        ok = bins_.count > 0
        ax.plot(bins_.mean_confidence[ok], bins_.accuracy[ok], marker=marker, color=colour, lw=1.5, ms=5,
                label=label)
        share = bins_.count / max(bins_.total, 1)
        offset = -width / 4 if name == "before" else width / 4
        hist.bar(centres[ok] + offset, share[ok], width=width / 2, color=colour, alpha=0.7, label=name)
    ax.set_xlim(low - 0.5 / before.bins, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (share of pixels whose class is right)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hist.set_xlabel(f"confidence (top-class probability), {before.bins} equal-width bins")
    hist.set_ylabel("share of pixels")
    hist.set_yscale("log")
    hist.yaxis.set_minor_formatter(NullFormatter())
    hist.grid(alpha=0.3)
    try:
        with atomic_file(path) as tmp:  # the one atomic write (crofuse.io.store): a rename, or one PUT
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return native(path)


__all__ = [
    "DEFAULT_BINS",
    "HEADS",
    "METHOD",
    "TEMPERATURE_BOUNDS",
    "Calibration",
    "ReliabilityBins",
    "TemperatureFit",
    "calibrated_probabilities",
    "expected_calibration_error",
    "fit_temperature",
    "head_logits",
    "negative_log_likelihood",
    "plot_reliability",
    "reliability_bins",
]
