"""The paper's experiments as suites of methods, with the values the paper reports for each.

=========  ==============================================================  ===============================
suite      methods (main rows; controls after them)                        paper
=========  ==============================================================  ===============================
table2     RF, SVM, FCN, HRNet, DeepLabv3+, UNet, CroFuseNet;              Tables II and III (IV-B)
           controls: RF and SVM with indices, UNet and CroFuseNet with
           the plain head
ablation   case1 .. case5 (CFM / MFA switched off or replaced);            Table IV (IV-C)
           controls: case 1 and case 2 widened to CroFuseNet's size
loss       main loss only (α=β=0), α=β=1, α=1 β=0.8                        Fig. 9 (V-A)
modality   UNet SAR only, UNet optical only, CroFuseNet fusion             Fig. 11 (V-B)
transfer   CroFuseNet and UNet trained on the source city, tested on       Figs. 12, 13 (V-C, qualitative)
           every other city and on the next year
loco       leave one city out: CroFuseNet and UNet trained on the other    — (the paper's open problem, V-C)
           cities, tested on the held-out one, against a model trained
           on all; mechanisms: per-scene standardisation, radiometric
           and SAR-calibration augmentation, both
=========  ==============================================================  ===============================

Paper values are fractions (OA, PA and UA too; the paper prints them in percent). Fig. 9 has no numbers in the text,
so the loss suite carries only the paper's ordering. Fig. 11's values are derived from the differences the text of
V-B gives against CroFuseNet's Table II values (MIoU 0.9495, OA 97.77 %, F1 0.9770).

A method's ``role`` is ``"main"`` (the paper's rows), ``"control"`` (a fairness or sensitivity row beside the main
one named by ``control_of``) or ``"mechanism"`` (a transfer mechanism applied to ``control_of``). Methods marked
``optional`` run only when named with ``--methods``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from crofuse.errors import ConfigError
from crofuse.experiments.profiles import Profile

__all__ = [
    "METRIC_LABELS",
    "PERCENT_METRICS",
    "PROGRAM",
    "RADIOMETRIC_AUGMENTATION",
    "SUITES",
    "Method",
    "Suite",
    "get_suite",
    "model_options",
]

Kind = Literal["deep", "pixel"]
Role = Literal["main", "control", "mechanism"]


@dataclass(frozen=True)
class Method:
    """One row of a table: how to train it and what the paper reports for it.

    Args:
        key: identifier used in file names and on the command line.
        label: the name the paper's table uses.
        kind: ``"deep"`` (trained by :func:`crofuse.training.train`) or ``"pixel"`` (RF/SVM).
        model: registry name (deep) or ``"rf"``/``"svm"`` (pixel).
        options: model options on top of the profile's width options.
        alpha, beta: loss weights of eq. (11) (only CroFuseNet has the optical and SAR heads they weigh).
        paper: the paper's metrics for this method in this suite (fractions; missing keys are unknown).
        features: per-pixel features of RF/SVM (``"bands"``, the paper's, or ``"bands+indices"``).
        standardisation: the input rule recorded in the card (``"dataset"`` or ``"per-scene"``).
        augmentation: fields of :class:`crofuse.data.Augmentation` on top of the paper's augmentation.
        match_params_of: key of another method of the suite; ``base_channels`` is widened until this model has
            (about) that method's parameter count (a capacity-matched control).
        role, control_of: see the module docstring.
        note: one line for the report.
        optional: run only when named with ``--methods``.
    """

    key: str
    label: str
    kind: Kind
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    alpha: float = 1.0
    beta: float = 0.8
    paper: dict[str, float] = field(default_factory=dict)
    features: str = "bands"
    standardisation: str = "dataset"
    augmentation: dict[str, Any] = field(default_factory=dict)
    match_params_of: str | None = None
    role: Role = "main"
    control_of: str | None = None
    note: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Suite:
    """A named group of methods rendered as one table (or figure) of the paper."""

    name: str
    title: str
    paper_ref: str
    methods: tuple[Method, ...]
    paper_order: tuple[str, ...] = ()
    """Method keys from best to worst as the paper states them (text of the section)."""
    note: str = ""
    splits: tuple[str, ...] = ("blocked",)
    """The splits the full program runs this suite on (the first is its main one)."""

    def method(self, key: str) -> Method:
        for m in self.methods:
            if m.key == key:
                return m
        raise ConfigError(f"suite {self.name!r} has no method {key!r}; it has {', '.join(self.keys)}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.methods)

    @property
    def default_methods(self) -> tuple[Method, ...]:
        """The methods a run without ``--methods`` trains (every method but the optional ones)."""
        return tuple(m for m in self.methods if not m.optional)

    @property
    def main_keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.methods if m.role == "main")


METRIC_LABELS: dict[str, str] = {
    "miou": "MIoU",
    "oa": "OA",
    "mean_f1": "F1-Score",
    "iou_impervious": "IoU",
    "pa_impervious": "PA",
    "ua_impervious": "UA",
    "f1_impervious": "F1-Score",
    "iou_pervious": "IoU",
    "pa_pervious": "PA",
    "ua_pervious": "UA",
    "f1_pervious": "F1-Score",
}
PERCENT_METRICS = frozenset({"oa", "pa_impervious", "ua_impervious", "pa_pervious", "ua_pervious"})

_PER_CLASS = ("iou_impervious", "pa_impervious", "ua_impervious", "f1_impervious",
              "iou_pervious", "pa_pervious", "ua_pervious", "f1_pervious")


def _p(*values: float, keys: tuple[str, ...]) -> dict[str, float]:
    return dict(zip(keys, values, strict=True))


# Table II (MIoU, OA, F1) + Table III (per class), fractions.
_T2 = ("miou", "oa", "mean_f1")
_TABLE2_PAPER = {
    "rf": _p(0.7890, 0.8974, 0.8802, keys=_T2) | _p(0.7165, 0.8367, 0.8331, 0.8349, 0.8614, 0.9246, 0.9264, 0.9255,
                                                     keys=_PER_CLASS),
    "svm": _p(0.7413, 0.8696, 0.8487, keys=_T2) | _p(0.6563, 0.7858, 0.7993, 0.7925, 0.8264, 0.9085, 0.9014, 0.9079,
                                                      keys=_PER_CLASS),
    "fcn": _p(0.8741, 0.9417, 0.9322, keys=_T2) | _p(0.8297, 0.9018, 0.912, 0.9069, 0.9185, 0.96, 0.9551, 0.9575,
                                                      keys=_PER_CLASS),
    "hrnet": _p(0.8951, 0.9526, 0.9442, keys=_T2) | _p(0.8563, 0.9378, 0.9019, 0.9226, 0.9339, 0.9589, 0.9728,
                                                        0.9658, keys=_PER_CLASS),
    "deeplabv3plus": _p(0.9065, 0.9575, 0.9506, keys=_T2) | _p(0.873, 0.9273, 0.9371, 0.9322, 0.94, 0.9714, 0.9668,
                                                                0.9691, keys=_PER_CLASS),
    "unet": _p(0.9355, 0.9712, 0.9665, keys=_T2) | _p(0.9122, 0.9467, 0.9615, 0.9541, 0.9588, 0.9825, 0.9755, 0.979,
                                                       keys=_PER_CLASS),
    "crofusenet": _p(0.9495, 0.9777, 0.9770, keys=_T2) | _p(0.931, 0.9614, 0.9672, 0.9641, 0.968, 0.9851, 0.9824,
                                                             0.9838, keys=_PER_CLASS),
}

# Table IV: per class then MIoU, OA, F1.
_T4 = _PER_CLASS + _T2
_TABLE4_PAPER = {
    "case1": _p(0.9153, 0.9521, 0.9595, 0.9558, 0.9606, 0.9816, 0.9782, 0.9799, 0.9379, 0.9723, 0.9678, keys=_T4),
    "case2": _p(0.9287, 0.9602, 0.9659, 0.963, 0.967, 0.9845, 0.9819, 0.9832, 0.9479, 0.9769, 0.9731, keys=_T4),
    "case3": _p(0.922, 0.9553, 0.9636, 0.9594, 0.9637, 0.9835, 0.9796, 0.9815, 0.9429, 0.9746, 0.9705, keys=_T4),
    "case4": _p(0.929, 0.962, 0.9644, 0.9632, 0.9672, 0.9839, 0.9828, 0.9833, 0.9481, 0.977, 0.9732, keys=_T4),
    "case5": _p(0.931, 0.9614, 0.9672, 0.9641, 0.968, 0.9851, 0.9824, 0.9838, 0.9495, 0.9777, 0.974, keys=_T4),
}

# Fig. 11, from the differences stated in V-B against CroFuseNet (Table II: 0.9495, 97.77 %, 0.9770).
_FIG11_PAPER = {
    "unet-sar": _p(0.9495 - 0.0937, 0.9777 - 0.0454, 0.9770 - 0.0525, keys=_T2),
    "unet-optical": _p(0.9495 - 0.0136, 0.9777 - 0.0063, 0.9770 - 0.0073, keys=_T2),
    "crofusenet": _p(0.9495, 0.9777, 0.9770, keys=_T2),
}

_ABLATION_LABELS = {
    "case1": "Case1 (no CFM, no MFA)",
    "case2": "Case2 (no CFM)",
    "case3": "Case3 (no MFA)",
    "case4": "Case4 (CFM → concat)",
    "case5": "Case5 (CroFuseNet)",
}

RADIOMETRIC_AUGMENTATION: dict[str, float] = {
    "optical_gain": 0.15,
    "optical_offset": 0.3,
    "sar_offset": 0.5,
    "sar_band_offset": 0.15,
}
"""The radiometric and SAR-calibration jitter of the transfer mechanisms (standardised units,
:class:`crofuse.data.Augmentation`): per optical band gains 1 ± 0.15 and offsets ± 0.3 std, a common SAR offset
± 0.5 std and per-polarisation offsets ± 0.15 std."""

_PLAIN_HEAD = "plain 3×3 conv head instead of the paper's conv-BN-ReLU head (whose logits are ≥ 0 and tie at p = 0.5)"


def _ablation_methods() -> tuple[Method, ...]:
    from crofuse.model import ABLATIONS

    cases = tuple(
        Method(case, _ABLATION_LABELS[case], "deep", "crofusenet", dict(ABLATIONS[case]), paper=_TABLE4_PAPER[case])
        for case in ("case1", "case2", "case3", "case4", "case5")
    )
    wide = tuple(
        Method(f"{case}-wide", f"{_ABLATION_LABELS[case]}, widened to CroFuseNet's size", "deep", "crofusenet",
               dict(ABLATIONS[case]), match_params_of="case5", role="control", control_of=case,
               note="capacity-matched: base_channels widened until the parameter count is CroFuseNet's")
        for case in ("case1", "case2")
    )
    return cases + wide


def _loco_methods() -> tuple[Method, ...]:
    out: list[Method] = []
    for base, label, model in (("crofusenet", "CroFuseNet", "crofusenet"), ("unet", "UNet", "unet-fusion")):
        out.append(Method(base, label, "deep", model))
        out.append(Method(f"{base}+scene-std", f"{label} + per-scene standardisation", "deep", model,
                          standardisation="per-scene", role="mechanism", control_of=base))
        out.append(Method(f"{base}+radiometric", f"{label} + radiometric/SAR-calibration augmentation", "deep",
                          model, augmentation=dict(RADIOMETRIC_AUGMENTATION), role="mechanism", control_of=base))
        out.append(Method(f"{base}+scene-std+radiometric", f"{label} + both", "deep", model,
                          standardisation="per-scene", augmentation=dict(RADIOMETRIC_AUGMENTATION),
                          role="mechanism", control_of=base))
    return tuple(out)


def _build_suites() -> dict[str, Suite]:
    table2 = Suite(
        name="table2",
        title="Comparison with six methods",
        paper_ref="Tables II and III (Sec. IV-B)",
        methods=(
            Method("rf", "RF", "pixel", "rf", paper=_TABLE2_PAPER["rf"]),
            Method("svm", "SVM", "pixel", "svm", paper=_TABLE2_PAPER["svm"]),
            Method("fcn", "FCN", "deep", "fcn", paper=_TABLE2_PAPER["fcn"]),
            Method("hrnet", "HRNet", "deep", "hrnet", paper=_TABLE2_PAPER["hrnet"]),
            Method("deeplabv3plus", "Deeplabv3+", "deep", "deeplabv3plus", paper=_TABLE2_PAPER["deeplabv3plus"]),
            Method("unet", "UNet", "deep", "unet-fusion", paper=_TABLE2_PAPER["unet"]),
            Method("crofusenet", "CroFuseNet", "deep", "crofusenet", paper=_TABLE2_PAPER["crofusenet"]),
            Method("rf-indices", "RF + indices", "pixel", "rf", features="bands+indices", role="control",
                   control_of="rf", note="RF on the 6 bands plus NDVI, NDWI, an NDBI-like index and VV−VH"),
            Method("svm-indices", "SVM + indices", "pixel", "svm", features="bands+indices", role="control",
                   control_of="svm", note="SVM on the 6 bands plus the same 4 indices"),
            Method("unet-plain", "UNet, plain head", "deep", "unet-fusion", {"head_relu": False}, role="control",
                   control_of="unet", note=_PLAIN_HEAD),
            Method("crofusenet-plain", "CroFuseNet, plain head", "deep", "crofusenet", {"head_relu": False},
                   role="control", control_of="crofusenet", note=_PLAIN_HEAD),
            Method("unet-wide", "UNet, widened to CroFuseNet's size", "deep", "unet-fusion",
                   match_params_of="crofusenet", role="control", control_of="unet", optional=True,
                   note="capacity-matched: base_channels widened until the parameter count is CroFuseNet's"),
            Method("deeplabv3plus-published", "Deeplabv3+, published ASPP rates 6/12/18", "deep", "deeplabv3plus",
                   {"aspp_rates": [6, 12, 18]}, role="control", control_of="deeplabv3plus", optional=True,
                   note="rates 12 and 18 degenerate to 1×1 convolutions on the 8×8 maps of 128-px patches"),
            Method("fcn-channel-dropout", "FCN, channel dropout", "deep", "fcn", {"dropout_mode": "channel"},
                   role="control", control_of="fcn", optional=True,
                   note="Dropout2d (whole feature maps) after fc6/fc7 instead of the original's element-wise dropout"),
        ),
        paper_order=("crofusenet", "unet", "deeplabv3plus", "hrnet", "fcn", "rf", "svm"),
        splits=("blocked", "random"),
    )
    ablation = Suite(
        name="ablation",
        title="Ablation of CFM and MFA",
        paper_ref="Table IV (Sec. IV-C)",
        methods=_ablation_methods(),
        paper_order=("case5", "case4", "case2", "case3", "case1"),
    )
    loss = Suite(
        name="loss",
        title="Weights of the comprehensive loss, eq. (11)",
        paper_ref="Fig. 9 (Sec. V-A)",
        methods=(
            Method("main-only", "Case1: main loss only (α=β=0)", "deep", "crofusenet", alpha=0.0, beta=0.0),
            Method("equal", "Case2: α=β=1", "deep", "crofusenet", alpha=1.0, beta=1.0),
            Method("proposed", "CroFuseNet: α=1, β=0.8", "deep", "crofusenet", alpha=1.0, beta=0.8),
        ),
        paper_order=("proposed", "main-only", "equal"),
        note="Fig. 9 gives no numbers in the text; the paper states CroFuseNet > Case 1 > Case 2 in all metrics.",
    )
    modality = Suite(
        name="modality",
        title="Optical only, SAR only, and fusion",
        paper_ref="Fig. 11 (Sec. V-B)",
        methods=(
            Method("unet-sar", "UNet (Sentinel-1 only)", "deep", "unet-sar", paper=_FIG11_PAPER["unet-sar"]),
            Method("unet-optical", "UNet (Sentinel-2 only)", "deep", "unet-optical",
                   paper=_FIG11_PAPER["unet-optical"]),
            Method("crofusenet", "CroFuseNet (S1 + S2)", "deep", "crofusenet", paper=_FIG11_PAPER["crofusenet"]),
        ),
        paper_order=("crofusenet", "unet-optical", "unet-sar"),
        note="Paper values derived from the differences stated in Sec. V-B against Table II's CroFuseNet.",
    )
    transfer = Suite(
        name="transfer",
        title="Spatial and temporal transfer from one city",
        paper_ref="Sec. V-C, Figs. 12 and 13 (qualitative only)",
        methods=(Method("crofusenet", "CroFuseNet", "deep", "crofusenet"),
                 Method("unet", "UNet", "deep", "unet-fusion")),
        note="The paper discusses transfer qualitatively (Wuhan 2020, Nanjing 2019 maps); it gives no numbers.",
    )
    loco = Suite(
        name="loco",
        title="Leave one city out",
        paper_ref="the transfer problem of Sec. V-C, measured",
        methods=_loco_methods(),
        note="Not in the paper. Target: a leave-one-city-out MIoU drop of at most 0.03.",
    )
    return {s.name: s for s in (table2, ablation, loss, modality, transfer, loco)}


SUITES: dict[str, Suite] = _build_suites()

PROGRAM: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("table2", "blocked", None),
    ("table2", "random", None),
    ("loco", "blocked", ("crofusenet", "unet")),
    ("ablation", "blocked", None),
    ("modality", "blocked", None),
    ("loss", "blocked", None),
    ("transfer", "blocked", None),
    ("loco", "blocked", None),
)
"""The full program in the order to run it when time is short: ``(suite, split, methods or None = all)``: Table II
on both splits, leave-one-city-out (the plain models first, then the mechanisms), Table IV, modality, loss and the
single-city transfer (whose models are Table II's)."""


def get_suite(name: str) -> Suite:
    """The suite called ``name``; raises :class:`ConfigError` listing the known ones."""
    try:
        return SUITES[name]
    except KeyError:
        raise ConfigError(f"unknown suite {name!r}; use one of {', '.join(SUITES)}") from None


def _width_options(model: str, profile: Profile) -> dict[str, Any]:
    if model == "fcn":
        return {"base_channels": profile.fcn_base_channels}
    if model == "hrnet":
        return dict(profile.hrnet)
    if model == "deeplabv3plus":
        return dict(profile.deeplab)
    return {"base_channels": profile.unet_base_channels}  # crofusenet and the paper's UNets


@functools.lru_cache(maxsize=256)
def _params(model: str, options_json: str) -> int:
    from crofuse.model import ModelSpec

    return ModelSpec(model, json.loads(options_json)).parameter_count()


def parameter_count(model: str, options: dict[str, Any]) -> int:
    """Trainable parameters of a registry model (cached; counted on the meta device)."""
    return _params(model, json.dumps(options, sort_keys=True))


def matched_width(model: str, options: dict[str, Any], target: int) -> int:
    """The ``base_channels`` at which ``model`` with ``options`` has the parameter count closest to ``target``
    (parameters grow monotonically with the width; bisection, then the nearer neighbour)."""
    def count(b: int) -> int:
        return parameter_count(model, {**options, "base_channels": b})

    lo, hi = 1, max(2, int(options.get("base_channels", 1)))
    while count(hi) < target:
        lo, hi = hi, hi * 2
        if hi > 4096:
            raise ConfigError(f"cannot widen {model} {options} to {target} parameters")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda b: abs(count(b) - target))


def model_options(method: Method, profile: Profile, suite: Suite | None = None) -> dict[str, Any]:
    """The registry options of a deep method under ``profile``: the profile's width, then the method's own; a
    capacity-matched method (``match_params_of``) gets the ``base_channels`` that matches the referenced method of
    ``suite`` (default: the suite the method belongs to)."""
    if method.kind != "deep":
        raise ConfigError(f"{method.key} is a per-pixel method; it has no model options")
    options = {**_width_options(method.model, profile), **method.options}
    if method.match_params_of is not None:
        suite = suite or next(s for s in SUITES.values() if method in s.methods)
        ref = suite.method(method.match_params_of)
        target = parameter_count(ref.model, model_options(ref, profile, suite))
        options["base_channels"] = matched_width(method.model, options, target)
    return options
