"""Markdown tables laid out like the paper's Tables II, III, IV and Figs. 9 and 11, plus transfer and
leave-one-city-out.

Each cell is the mean ± sample standard deviation over seeds of this benchmark, next to the paper's value. Per metric,
the best mean is **bold** only when it is separated from every other row by more than the seed spread
(:mod:`crofuse.experiments.stats`); rows within the spread of the best are marked ``≈`` and no ranking is claimed
among them. Under each table, a ranking line shows the order of the paper's methods by MIoU with ``>`` only where it
is beyond noise, and one line per fairness control compares it with the row it controls. Every table of trained
models has a *best epoch* column: the epoch of the checkpoint that was tested, per seed, with ``†`` where a run
ended at the epoch cap instead of by early stopping.

:func:`write_docs` puts the rendered report of a results folder into a page between two marker lines, so
``crofuse experiments report results/ --docs docs/results.md`` rebuilds the numbers of ``docs/results.md`` and keeps
its hand-written sections.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crofuse.errors import DataError
from crofuse.experiments.profiles import SPLITS
from crofuse.experiments.records import load_records
from crofuse.experiments.stats import Summary, compare, rank_chain, summarize
from crofuse.experiments.suites import METRIC_LABELS, PERCENT_METRICS, PROGRAM, SUITES, Method, Suite

__all__ = [
    "LOCO_TARGET",
    "SuiteResults",
    "aggregate",
    "best_marks",
    "format_cell",
    "format_paper",
    "render_report",
    "render_suite",
    "write_docs",
    "write_report",
]

COMPREHENSIVE = ("miou", "oa", "mean_f1")
PER_CLASS = ("iou_impervious", "pa_impervious", "ua_impervious", "f1_impervious",
             "iou_pervious", "pa_pervious", "ua_pervious", "f1_pervious")
LOCO_TARGET = 0.03
"""The leave-one-city-out MIoU drop the transfer mechanisms aim for (the issue's target)."""
SPLIT_ORDER = (*SPLITS, "external")
SPLIT_LABELS = {"blocked": "blocked split", "random": "random split (the paper's)", "external": "given data set"}


@dataclass(frozen=True)
class Epochs:
    """When one run's tested checkpoint was saved: its best epoch, the last epoch run, the cap, early stop."""

    seed: int
    best: int | None
    last: int | None
    cap: int | None
    stopped_early: bool | None


@dataclass
class SuiteResults:
    """The records of one suite on one split, summarised per method (and per test domain)."""

    suite: Suite
    split: str = "blocked"
    metrics: dict[str, dict[str, Summary]] = field(default_factory=dict)
    """``metrics[method][metric]`` over seeds (the suite's own test split)."""
    domains: dict[str, dict[str, dict[str, Summary]]] = field(default_factory=dict)
    """``domains[method][domain][metric]``: transfer targets, held-out cities."""
    in_domain: dict[str, dict[str, dict[str, Summary]]] = field(default_factory=dict)
    """``in_domain[method][domain][metric]``: the all-city model on that city (leave-one-city-out)."""
    drops: dict[str, dict[str, dict[str, Summary]]] = field(default_factory=dict)
    """``drops[method][domain][metric]``: per-seed reference minus domain, summarised."""
    mean_drops: dict[str, dict[str, dict[str, Summary]]] = field(default_factory=dict)
    """``mean_drops[method][kind][metric]``: per seed, the mean drop over the domains of one kind, summarised."""
    domain_names: dict[str, str] = field(default_factory=dict)
    domain_kinds: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, list[int]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    epochs: dict[str, list[Epochs]] = field(default_factory=dict)
    domain_epochs: dict[str, dict[str, list[Epochs]]] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: set[str] = field(default_factory=set)
    benchmark: bool = True
    upgraded: bool = True
    """Every record was upgraded from schema 1 (the first benchmark)."""
    seconds: float = 0.0
    machines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        """Methods with records, in the suite's order (unknown ones last)."""
        known = [k for k in self.suite.keys if k in self.metrics]
        return known + sorted(k for k in self.metrics if k not in self.suite.keys)

    def method(self, key: str) -> Method | None:
        return next((m for m in self.suite.methods if m.key == key), None)

    def label(self, key: str) -> str:
        m = self.method(key)
        return m.label if m is not None else self.labels.get(key, key)

    def role(self, key: str) -> str:
        m = self.method(key)
        return m.role if m is not None else "control"

    def paper(self, key: str) -> dict[str, float]:
        m = self.method(key)
        return m.paper if m is not None else {}


def _epochs(seed: int, train: Mapping[str, Any] | None) -> Epochs | None:
    train = train or {}
    if train.get("kind") == "pixel" or ("best_epoch" not in train and "epochs" not in train):
        return None
    cap = train.get("max_epochs") or (train.get("config") or {}).get("max_epochs")
    return Epochs(seed, train.get("best_epoch"), train.get("epochs"), cap, train.get("stopped_early"))


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def aggregate(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, SuiteResults]]:
    """Group records by suite, split and method and summarise every metric over seeds: ``out[suite][split]``."""
    grouped: dict[tuple[str, str], dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        grouped[(rec["suite"], str(rec.get("split", "random")))][rec["method"]].append(rec)
    out: dict[str, dict[str, SuiteResults]] = {}
    for (suite_name, split), by_method in grouped.items():
        if suite_name not in SUITES:
            continue
        res = SuiteResults(SUITES[suite_name], split)
        for method, recs in by_method.items():
            recs = sorted(recs, key=lambda r: r["seed"])
            _summarise_method(res, method, recs)
        out.setdefault(suite_name, {})[split] = res
    return out


def _summarise_method(res: SuiteResults, method: str, recs: list[Mapping[str, Any]]) -> None:
    res.seeds[method] = [int(r["seed"]) for r in recs]
    res.labels[method] = str(recs[0].get("label", method))
    keys = sorted({k for r in recs for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    res.metrics[method] = {k: summarize(_num(r["metrics"].get(k)) for r in recs) for k in keys}
    res.epochs[method] = [e for r in recs if (e := _epochs(int(r["seed"]), r.get("train"))) is not None]
    train0 = recs[0].get("train") or {}
    if train0.get("parameters"):
        res.parameters[method] = int(train0["parameters"])
    if train0.get("options") is not None:
        res.options[method] = dict(train0["options"])
    for r in recs:
        prof = r.get("profile") or {}
        res.profiles.add(str(prof.get("name", "?")))
        res.benchmark &= bool(prof.get("benchmark", False))
        res.upgraded &= r.get("schema_upgraded_from") is not None
        res.seconds += float((r.get("timings") or {}).get("total_s", 0.0))
        if r.get("machine") and r["machine"] not in res.machines:
            res.machines.append(r["machine"])
    doms = sorted({d for r in recs for d in (r.get("domains") or {})})
    per_kind: dict[str, dict[int, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for dom in doms:
        per = [r for r in recs if dom in (r.get("domains") or {})]
        first = per[0]["domains"][dom]
        res.domain_names[dom] = str(first.get("name", dom))
        res.domain_kinds[dom] = str(first.get("kind", dom))
        mkeys = sorted({k for r in per for k in r["domains"][dom]["metrics"]})
        res.domains.setdefault(method, {})[dom] = {
            k: summarize(_num(r["domains"][dom]["metrics"].get(k)) for r in per) for k in mkeys}
        if any("in_domain" in r["domains"][dom] for r in per):
            res.in_domain.setdefault(method, {})[dom] = {
                k: summarize(_num((r["domains"][dom].get("in_domain") or {}).get(k)) for r in per) for k in mkeys}
        drops_per_seed = []
        for r in per:
            d = r["domains"][dom]
            ref = d.get("in_domain") or r["metrics"]
            drops_per_seed.append({k: _num(ref.get(k)) - _num(d["metrics"].get(k)) for k in mkeys})
            per_kind[res.domain_kinds[dom]][int(r["seed"])].append(drops_per_seed[-1])
        res.drops.setdefault(method, {})[dom] = {k: summarize(s[k] for s in drops_per_seed) for k in mkeys}
        res.domain_epochs.setdefault(method, {})[dom] = [
            e for r in per if (e := _epochs(int(r["seed"]), r["domains"][dom].get("train"))) is not None]
    for kind, by_seed in per_kind.items():
        mkeys = sorted({k for drops in by_seed.values() for d in drops for k in d})
        res.mean_drops.setdefault(method, {})[kind] = {
            k: summarize(math.fsum(d[k] for d in drops) / len(drops) for drops in by_seed.values()) for k in mkeys}


# ---- cells ---------------------------------------------------------------------------------------------------------


def format_cell(s: Summary | None, metric: str, *, signed: bool = False) -> str:
    """``0.9495 ± 0.0012`` (or ``97.77 ± 0.12%`` for OA/PA/UA); one seed: ``0.9495 (n=1)``; none: ``–``."""
    if s is None or s.n == 0:
        return "–"
    pct = metric in PERCENT_METRICS
    scale, digits, unit = (100.0, 2, "%") if pct else (1.0, 4, "")
    sign = "+" if signed else ""
    mean = f"{s.mean * scale:{sign}.{digits}f}"
    if not s.has_spread:
        return f"{mean}{unit} (n={s.n})"
    return f"{mean} ± {s.std * scale:.{digits}f}{unit}"


def format_paper(value: float | None, metric: str) -> str:
    """The paper's value as printed: ``0.9495`` or ``97.77%``; unknown: ``–``."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value * 100:.2f}%" if metric in PERCENT_METRICS else f"{value:.4f}"


def format_epochs(epochs: Sequence[Epochs] | None) -> str:
    """Best epoch per seed, ``†`` after a run that ended at the epoch cap (no early stop); ``–`` for none."""
    if not epochs:
        return "–"
    parts = []
    for e in epochs:
        text = "?" if e.best is None else str(e.best)
        if e.stopped_early is False:
            text += "†"
        parts.append(text)
    return ", ".join(parts)


def best_marks(summaries: Mapping[str, Summary | None], *, higher_is_better: bool = True) -> dict[str, str]:
    """Per method: ``"best"`` (clearly best), ``"≈"`` (within the seed spread of the best, best included when tied),
    ``"?"`` (no spread to judge: fewer than two seeds) or ``""``."""
    present = {k: s for k, s in summaries.items() if s is not None and s.n and math.isfinite(s.mean)}
    marks = {k: "" for k in summaries}
    if len(present) < 2:
        return marks
    sign = 1.0 if higher_is_better else -1.0
    best = max(present, key=lambda k: sign * present[k].mean)
    outcomes = {k: compare(present[best], s, higher_is_better=higher_is_better) for k, s in present.items()
                if k != best}
    if any(o == "?" for o in outcomes.values()):
        return {k: ("?" if k in present else "") for k in summaries}
    tied = [k for k, o in outcomes.items() if o == "≈"]
    if tied:
        for k in [best, *tied]:
            marks[k] = "≈"
    else:
        marks[best] = "best"
    return marks


def _marked(text: str, mark: str) -> str:
    if mark == "best":
        return f"**{text}**"
    if mark == "≈":
        return f"{text} ≈"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


LEGEND = (
    "Cells: mean ± sample std over seeds; *paper*: the value the paper reports. **Bold**: best mean, ahead of every "
    "other row by more than the seed spread. ≈: within the seed spread of the best (|Δmean| ≤ max std): no ranking "
    "is claimed among the ≈ cells. (n=1): one seed, so no spread and no ranking. Best epoch: the epoch of the "
    "tested checkpoint (best validation MIoU), per seed; † = the run reached the epoch cap before the early-stopping "
    "patience ran out, so it may not have converged."
)


def _seeds_line(results: Sequence[SuiteResults]) -> str:
    n = sorted({len(v) for r in results for v in r.seeds.values()})
    return f"Seeds per row: {', '.join(str(x) for x in n)}."


def _metric_title(metric: str) -> str:
    if metric.endswith("_impervious"):
        return f"IS {METRIC_LABELS[metric]}"
    if metric.endswith("_pervious"):
        return f"PS {METRIC_LABELS[metric]}"
    return METRIC_LABELS[metric]


def _ranking(res: SuiteResults, metric: str = "miou", *, prefix: str = "This run") -> list[str]:
    main = [k for k in res.methods if res.role(k) == "main" and metric in res.metrics[k]]
    sums = {k: res.metrics[k][metric] for k in main}
    labels = {k: res.label(k) for k in main}
    return [f"- {prefix}, by {METRIC_LABELS[metric]}: {rank_chain(sums, labels=labels) or '–'}"]


def _paper_order(suite: Suite) -> list[str]:
    if not suite.paper_order:
        return []
    labels = {m.key: m.label for m in suite.methods}
    return ["- Paper: " + " > ".join(labels[k] for k in suite.paper_order)]


def _controls(res: SuiteResults, metric: str = "miou", *, prefix: str = "") -> list[str]:
    """One line per control or mechanism: it against the row it controls (and the row it was sized to match)."""
    lines = []
    for key in res.methods:
        m = res.method(key)
        if m is None or m.role == "main" or m.control_of is None or m.control_of not in res.metrics:
            continue
        if res.suite.name in ("loco", "transfer"):
            continue  # compared on their drops
        a, b = res.metrics[key].get(metric), res.metrics[m.control_of].get(metric)
        if a is None or b is None:
            continue
        text = (f"- {prefix}{res.label(key)} vs {res.label(m.control_of)}: {format_cell(a, metric)} "
                f"{compare(a, b)} {format_cell(b, metric)}")
        if m.match_params_of and m.match_params_of in res.metrics:
            c = res.metrics[m.match_params_of].get(metric)
            if c is not None:
                text += (f"; vs {res.label(m.match_params_of)} (same size): {format_cell(a, metric)} "
                         f"{compare(a, c)} {format_cell(c, metric)}")
        if key in res.parameters:
            text += f" [{res.parameters[key] / 1e6:.2f} M parameters"
            if "base_channels" in res.options.get(key, {}):
                text += f", base_channels {res.options[key]['base_channels']}"
            text += "]"
        lines.append(text)
    return lines


def _convergence(results: Sequence[SuiteResults]) -> str:
    runs = [e for r in results for v in r.epochs.values() for e in v]
    runs += [e for r in results for d in r.domain_epochs.values() for v in d.values() for e in v]
    if not runs:
        return ""
    stopped = sum(1 for e in runs if e.stopped_early)
    capped = [e for e in runs if e.stopped_early is False]
    caps = sorted({e.cap for e in runs if e.cap})
    text = f"Early stopping ended {stopped} of {len(runs)} training runs"
    if caps:
        text += f" (epoch cap {', '.join(str(c) for c in caps)})"
    if capped:
        text += f"; {len(capped)} reached the cap (†)"
    return text + "."


def _all_marks(res: SuiteResults, keys: Sequence[str], metric: str) -> dict[str, str]:
    return best_marks({k: res.metrics[k].get(metric) for k in keys})


# ---- tables --------------------------------------------------------------------------------------------------------


def _table2(by_split: Mapping[str, SuiteResults]) -> str:
    """Table II: one row per method; a column set (MIoU, OA, F1) per split, then the paper's, then best epochs."""
    splits = [s for s in SPLIT_ORDER if s in by_split]
    any_res = by_split[splits[0]]
    keys: list[str] = []
    for s in splits:
        keys += [k for k in by_split[s].methods if k not in keys]
    order = [k for k in any_res.suite.keys if k in keys] + [k for k in keys if k not in any_res.suite.keys]
    header = ["Method"]
    for s in splits:
        header += [f"{METRIC_LABELS[m]} ({s})" for m in COMPREHENSIVE]
    header += [f"{METRIC_LABELS[m]} *paper*" for m in COMPREHENSIVE]
    header += [f"Best epoch ({s})" for s in splits]
    marks = {(s, m): _all_marks(by_split[s], by_split[s].methods, m) for s in splits for m in COMPREHENSIVE}
    rows = []
    for key in order:
        res0 = next(by_split[s] for s in splits if key in by_split[s].metrics)
        label = res0.label(key) if res0.role(key) == "main" else f"*{res0.label(key)}* (control)"
        row = [label]
        for s in splits:
            res = by_split[s]
            for m in COMPREHENSIVE:
                cell = format_cell(res.metrics.get(key, {}).get(m), m)
                row.append(_marked(cell, marks[(s, m)].get(key, "")))
        paper = res0.paper(key)
        row += [format_paper(paper.get(m), m) for m in COMPREHENSIVE]
        row += [format_epochs(by_split[s].epochs.get(key)) if key in by_split[s].metrics else "–" for s in splits]
        rows.append(row)
    return _table(header, rows)


def _method_rows_table(res: SuiteResults, metrics: Sequence[str], *, paper: bool = True,
                       parameters: bool = False) -> str:
    """Tables III/IV layout: one row per method, each metric with the paper's value in the next column."""
    keys = res.methods
    header = ["Method"]
    for metric in metrics:
        header += [_metric_title(metric)] + ([f"{_metric_title(metric)} *paper*"] if paper else [])
    if parameters:
        header.append("Params (M)")
    header.append("Best epoch")
    marks = {metric: _all_marks(res, keys, metric) for metric in metrics}
    rows = []
    for key in keys:
        label = res.label(key) if res.role(key) == "main" else f"*{res.label(key)}* (control)"
        row = [label]
        for metric in metrics:
            row.append(_marked(format_cell(res.metrics[key].get(metric), metric), marks[metric][key]))
            if paper:
                row.append(format_paper(res.paper(key).get(metric), metric))
        if parameters:
            row.append(f"{res.parameters[key] / 1e6:.2f}" if key in res.parameters else "–")
        row.append(format_epochs(res.epochs.get(key)))
        rows.append(row)
    return _table(header, rows)


def _transfer_table(res: SuiteResults) -> str:
    header = ["Method", "Test domain"] + [METRIC_LABELS[m] for m in COMPREHENSIVE]
    header += [f"Drop {METRIC_LABELS[m]}" for m in COMPREHENSIVE] + ["Best epoch"]
    rows = []
    for key in res.methods:
        label = res.label(key)
        rows.append([label, "source (in-domain test split)"]
                    + [format_cell(res.metrics[key].get(m), m) for m in COMPREHENSIVE] + ["–"] * 3
                    + [format_epochs(res.epochs.get(key))])
        doms = sorted(res.domains.get(key, {}), key=lambda d: (res.domain_kinds.get(d) != "spatial", d))
        for dom in doms:
            cells = [format_cell(res.domains[key][dom].get(m), m) for m in COMPREHENSIVE]
            drops = [format_cell(res.drops[key][dom].get(m), m, signed=True) for m in COMPREHENSIVE]
            rows.append([label, f"{res.domain_kinds.get(dom, dom)}: {res.domain_names.get(dom, dom)}"] + cells
                        + drops + ["–"])
        spatial = res.mean_drops.get(key, {}).get("spatial")
        if spatial and sum(1 for d in doms if res.domain_kinds.get(d) == "spatial") > 1:
            rows.append([label, "spatial: mean over cities", "", "", ""]
                        + [format_cell(spatial.get(m), m, signed=True) for m in COMPREHENSIVE] + ["–"])
    return _table(header, rows)


def _drop_verdict(drop: Summary) -> str:
    if not drop.has_spread:
        return "one seed: no spread, so no claim whether the drop is real"
    if drop.std == 0.0:
        return ("identical on every seed (spread 0, e.g. a model that predicts one class everywhere): "
                "a difference of the test sets, not of training")
    if abs(drop.mean) <= drop.std:
        return "within the seed spread: no transfer loss can be claimed"
    return "a drop beyond the seed spread" if drop.mean > 0 else "a gain beyond the seed spread"


def _transfer_verdicts(res: SuiteResults) -> str:
    lines = []
    for key in res.methods:
        for dom in sorted(res.drops.get(key, {})):
            drop = res.drops[key][dom].get("miou")
            if drop is None or drop.n == 0:
                continue
            lines.append(f"- {res.label(key)}, {res.domain_kinds.get(dom, dom)} transfer to "
                         f"{res.domain_names.get(dom, dom)}: MIoU drop {format_cell(drop, 'miou', signed=True)} — "
                         f"{_drop_verdict(drop)}.")
    return "\n".join(lines)


def _target_verdict(drop: Summary, target: float = LOCO_TARGET) -> str:
    if drop.n == 0 or not math.isfinite(drop.mean):
        return "–"
    if not drop.has_spread:
        return f"{'at most' if drop.mean <= target else 'above'} the {target:.2f} target on one seed (no spread)"
    if drop.mean + drop.std <= target:
        return f"meets the {target:.2f} target (mean + std ≤ {target:.2f})"
    if drop.mean - drop.std > target:
        return f"misses the {target:.2f} target (mean − std > {target:.2f})"
    return f"the {target:.2f} target lies within the seed spread"


def _loco_table(res: SuiteResults) -> str:
    header = ["Method", "Held-out city", "In-domain MIoU (all cities)", "Held-out MIoU", "Drop MIoU", "Drop OA",
              "Drop F1-Score", "Best epoch (held-out model)"]
    rows = []
    for key in res.methods:
        label = res.label(key)
        rows.append([label, "all cities: the in-domain reference", format_cell(res.metrics[key].get("miou"), "miou"),
                     "–", "–", "–", "–", format_epochs(res.epochs.get(key))])
        for dom in sorted(res.domains.get(key, {})):
            ref = res.in_domain.get(key, {}).get(dom, {})
            rows.append([label, res.domain_names.get(dom, dom), format_cell(ref.get("miou"), "miou"),
                         format_cell(res.domains[key][dom].get("miou"), "miou")]
                        + [format_cell(res.drops[key][dom].get(m), m, signed=True) for m in COMPREHENSIVE]
                        + [format_epochs(res.domain_epochs.get(key, {}).get(dom))])
        mean = res.mean_drops.get(key, {}).get("held-out", {})
        if mean:
            rows.append([f"**{label}**", "**mean over cities**", "", ""]
                        + [format_cell(mean.get(m), m, signed=True) for m in COMPREHENSIVE] + [""])
    return _table(header, rows)


def _loco_verdicts(res: SuiteResults) -> str:
    lines = []
    means = {k: res.mean_drops.get(k, {}).get("held-out", {}).get("miou") for k in res.methods}
    for key in res.methods:
        drop = means[key]
        if drop is None:
            continue
        line = (f"- {res.label(key)}: mean leave-one-city-out MIoU drop {format_cell(drop, 'miou', signed=True)} — "
                f"{_target_verdict(drop)}")
        m = res.method(key)
        if m is not None and m.control_of in means and means[m.control_of] is not None:
            base = means[m.control_of]
            # lower drop is better: '>' reads "this mechanism closes more of the gap"
            line += (f"; against {res.label(m.control_of)} ({format_cell(base, 'miou', signed=True)}): "
                     f"{compare(drop, base, higher_is_better=False)}")
        lines.append(line + ".")
    if lines:
        lines.append("  (`>` after a mechanism: a smaller drop than without it, beyond the seed spread; `≈`: within "
                     "it.)")
    return "\n".join(lines)


def _multi_city_table(loco: SuiteResults, transfer: SuiteResults | None) -> str:
    """On each held-out city: the single-city model (transfer suite) against the model of the other cities."""
    if transfer is None:
        return ""
    rows = []
    for key in loco.methods:
        if key not in transfer.domains:
            continue
        for dom in sorted(loco.domains.get(key, {})):
            single = transfer.domains[key].get(dom)
            if single is None:
                continue
            ref = loco.in_domain.get(key, {}).get(dom, {}).get("miou")
            held = loco.domains[key][dom].get("miou")
            rows.append([loco.label(key), loco.domain_names.get(dom, dom), format_cell(ref, "miou"),
                         format_cell(single.get("miou"), "miou"), format_cell(held, "miou"),
                         compare(held, single["miou"]) if held is not None and "miou" in single else "?"])
    if not rows:
        return ""
    header = ["Method", "City", "In-domain MIoU (all cities)", "Trained on the source city only",
              "Trained on the other cities", "other cities vs one"]
    return ("Multi-city training: on each held-out city, the model trained on the source city alone (the transfer "
            "suite) against the model trained on all other cities.\n\n" + _table(header, rows))


# ---- sections ----------------------------------------------------------------------------------------------------


def _figure_line(name: str, figures: Mapping[str, Path] | None, link: Any) -> list[str]:
    if figures and name in figures:
        return [f"![qualitative results, {name}]({link(figures[name])})", ""]
    return []


def render_suite(by_split: Mapping[str, SuiteResults], *, figures: Mapping[str, Path] | None = None,
                 level: int = 2, link: Any = None, others: Mapping[str, Mapping[str, SuiteResults]] | None = None
                 ) -> str:
    """The Markdown section of one suite (every split it has records for)."""
    link = link or (lambda p: Path(p).name)
    h = "#" * level
    splits = [s for s in SPLIT_ORDER if s in by_split]
    results = [by_split[s] for s in splits]
    suite = results[0].suite
    parts = [f"{h} {suite.title} — paper {suite.paper_ref}", ""]
    if not all(r.benchmark for r in results):
        parts += ["> **Micro-run, not a benchmark**: tiny data, models and epochs; the numbers only show that the "
                  "pipeline runs end to end.", ""]
    profiles = sorted({p for r in results for p in r.profiles})
    times = "; ".join(f"{SPLIT_LABELS.get(s, s)} {by_split[s].seconds / 60:.1f} min" for s in splits)
    parts += [f"Profile: {', '.join(profiles)}; compute time: {times}. {_seeds_line(results)}", ""]
    if suite.name == "table2":
        parts += [f"{h}# Table II — comprehensive accuracy", "", _table2(by_split), "", LEGEND, ""]
        for s in splits:
            parts += _ranking(by_split[s], prefix=f"This run, {SPLIT_LABELS.get(s, s)}")
        parts += _paper_order(suite)
        for s in splits:
            parts += _controls(by_split[s], prefix=f"({s}) ")
        parts.append("")
        for s in splits:
            parts += [f"{h}# Table III — accuracy per class, {SPLIT_LABELS.get(s, s)} (IS: impervious surface, PS: "
                      "pervious surface)", "", _method_rows_table(by_split[s], PER_CLASS), ""]
            parts += _figure_line(f"{s}-{suite.name}", figures, link)
    else:
        for s in splits:
            res = by_split[s]
            if len(splits) > 1 or s != "blocked":
                parts += [f"**{SPLIT_LABELS.get(s, s).capitalize()}**", ""]
            if suite.name == "ablation":
                parts += [f"{h}# Table IV — ablation of CFM and MFA", "",
                          _method_rows_table(res, PER_CLASS + COMPREHENSIVE, parameters=True), ""]
            elif suite.name == "transfer":
                parts += [_transfer_table(res), "", _transfer_verdicts(res), ""]
            elif suite.name == "loco":
                parts += [_loco_table(res), "", _loco_verdicts(res), ""]
                multi = _multi_city_table(res, (others or {}).get("transfer", {}).get(s))
                if multi:
                    parts += [multi, ""]
            else:  # loss (Fig. 9), modality (Fig. 11)
                parts += [_method_rows_table(res, COMPREHENSIVE, paper=any(m.paper for m in suite.methods)), ""]
            if suite.name not in ("transfer", "loco"):
                parts += [LEGEND, ""] + _ranking(res) + _paper_order(suite) + _controls(res) + [""]
            else:
                parts += ["Drops: per seed, the reference's metric minus the domain's, then mean ± std over seeds. "
                          "Best epoch and † as in the other tables.", ""]
            parts += _figure_line(f"{s}-{suite.name}", figures, link)
    conv = _convergence(results)
    if conv:
        parts += [conv, ""]
    for res in results:
        collapsed = _collapsed(res)
        if collapsed:
            parts += [collapsed, ""]
    if suite.note:
        parts += [f"Note: {suite.note}", ""]
    notes = [f"{m.label}: {m.note}" for m in suite.methods if m.note and any(m.key in r.metrics for r in results)]
    if notes:
        parts += ["Controls: " + "; ".join(notes) + ".", ""]
    ran = {k for r in results for k in r.metrics}
    missing = [m.label for m in suite.default_methods if m.key not in ran]
    if missing and not all(r.upgraded for r in results):  # the first benchmark had other rows: nothing is missing
        parts += [f"Not run yet: {', '.join(missing)}.", ""]
    return "\n".join(parts)


def _collapsed(res: SuiteResults) -> str:
    """Methods that predicted a single class on every seed: their F1 mean covers only the class with a defined F1."""
    names = []
    for key in res.methods:
        m = res.metrics[key]
        for cls in ("impervious", "pervious"):
            pa = m.get(f"pa_{cls}")
            if pa is not None and pa.n and max(pa.values) == 0.0:
                names.append(f"{res.label(key)} (no {cls} pixel predicted)")
    if not names:
        return ""
    return ("Warning: collapsed to one class on every seed: " + "; ".join(names) + ". Their UA and F1 for the "
            "missing class are undefined (–), so their F1-Score mean covers only the other class; read MIoU instead.")


def program_status(by_suite: Mapping[str, Mapping[str, SuiteResults]], *, seeds: int | None = None) -> str:
    """What of :data:`~crofuse.experiments.suites.PROGRAM` has records, in its order, and what is left."""
    if seeds is None:
        counts = [len(v) for d in by_suite.values() for r in d.values() for v in r.seeds.values()]
        seeds = max(counts, default=3)
    rows = []
    for i, (suite_name, split, keys) in enumerate(PROGRAM):
        suite = SUITES[suite_name]
        methods = [suite.method(k) for k in keys] if keys else list(suite.default_methods)
        res = by_suite.get(suite_name, {}).get(split)
        done = [m for m in methods if res is not None and len(res.seeds.get(m.key, [])) >= seeds]
        partial = [m for m in methods if res is not None and 0 < len(res.seeds.get(m.key, [])) < seeds]
        left = [m for m in methods if m not in done]
        runs = sum(len(res.seeds.get(m.key, [])) for m in methods) if res is not None else 0
        minutes = res.seconds / 60 if res is not None else 0.0
        status = "done" if not left else ("started" if done or partial else "not started")
        rows.append([str(i + 1), suite_name, split, "all" if keys is None else ", ".join(keys),
                     f"{runs} / {len(methods) * seeds}", f"{minutes:.0f}", status,
                     ", ".join(m.key for m in left) or "–"])
    header = ["#", "suite", "split", "methods", "records (method × seed)", "compute min", "status", "left"]
    return (f"The program in its order (`crofuse experiments program`), {seeds} seed{'s' if seeds != 1 else ''} per "
            "method. A record that "
            "several stages share counts in each; the compute minutes add every record's time.\n\n"
            + _table(header, rows))


def render_report(results: Path | str, *, figures: Mapping[str, Path] | None = None, level: int = 1,
                  link: Any = None, status: bool = True) -> str:
    """The whole Markdown report of every suite with records under ``results``. ``level`` is the heading level of
    the title (``2`` and more: no title, for a docs page); ``link(path)`` turns a figure path into the link text."""
    records = load_records(Path(results))
    by_suite = aggregate(records)
    everything = [r for d in by_suite.values() for r in d.values()]
    benchmark = all(r.benchmark for r in everything)
    h = "#" * level
    parts = [f"{h} CroFuseNet experiments on the sample benchmark", ""] if level == 1 else []
    sub = level + 1 if level == 1 else level
    if not benchmark:
        parts += ["> **Micro-run — not a benchmark.** At least one suite here was run with a smoke-test profile; "
                  "its numbers say nothing about the methods.", ""]
    current = any(r.get("schema_upgraded_from") is None for r in records)
    if current:
        data = ("Data: procedural sample cities from `crofuse.synthetic`, cut into WHU-IS style training sets through "
                "the mapping pipeline (`crofuse.trainingset`)")
    else:
        data = ("Data (the first benchmark, records of schema 1): the procedural sample cities of the generator of "
                "that time, cut into the WHU-IS layout by `crofuse.synthetic.export_patches` with the paper's random "
                "split")
    parts += [
        f"{data}, **not** the paper's WHU-IS dataset. Absolute values are not comparable with the paper's; the "
        "*paper* columns are there to compare orderings and gaps.",
        "",
    ]
    machines = [m for r in everything for m in r.machines]
    if machines:
        m = machines[0]
        parts += [f"Machine: {m.get('processor')}, {m.get('cores_available')} cores, torch {m.get('torch')} "
                  f"({m.get('torch_threads')} threads), GPU: {m.get('cuda') or 'none'}; code "
                  f"{m.get('git_commit') or m.get('crofuse_version')}.", ""]
    if status and current and by_suite:
        parts += [f"{'#' * sub} Program status", "", program_status(by_suite), ""]
    for name in SUITES:
        if name in by_suite:
            parts.append(render_suite(by_suite[name], figures=figures, level=sub, link=link, others=by_suite))
    if not by_suite:
        parts.append("No run records found.")
    return "\n".join(parts).rstrip() + "\n"


def _atomic_write(path: Path, text: str) -> None:
    from crofuse.io.store import location

    location(path).write_text(text)  # the one atomic write (crofuse.io.store)


def write_report(results: Path | str, *, out: Path | None = None, figures: Mapping[str, Path] | None = None) -> Path:
    """Render the report of ``results`` and write it (default ``results/report.md``, atomically)."""
    results = Path(results)
    out = Path(out) if out is not None else results / "report.md"
    _atomic_write(out, render_report(results, figures=figures))
    return out


def _marker_name(results: Path | str) -> str:
    return Path(results).as_posix().rstrip("/")


def begin_marker(results: Path | str) -> str:
    return f"<!-- BEGIN GENERATED REPORT: {_marker_name(results)} (crofuse experiments report --docs) -->"


def end_marker(results: Path | str) -> str:
    return f"<!-- END GENERATED REPORT: {_marker_name(results)} -->"


def write_docs(docs: Path | str, results: Path | str, *, figures: Mapping[str, Path] | None = None,
               level: int = 3) -> Path:
    """Replace the block between :func:`begin_marker` and :func:`end_marker` of ``results`` in the page ``docs``
    with the rendered report (headings from ``level``, figure links relative to the page); everything outside the
    block is kept. A page without the block is refused, naming the two lines to add."""
    docs = Path(docs)
    if not docs.is_file():
        raise DataError(f"{docs} does not exist; create it with the lines {begin_marker(results)!r} and "
                        f"{end_marker(results)!r} where the report goes")
    text = docs.read_text()
    begin, end = begin_marker(results), end_marker(results)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        present = re.findall(r"<!-- BEGIN GENERATED REPORT: (.*?) \(", text)
        raise DataError(
            f"{docs} has no generated block for {_marker_name(results)!r} (it has: {', '.join(present) or 'none'}); "
            f"add the two lines\n{begin}\n{end}\nwhere its report goes"
        )
    base = docs.parent.resolve()

    def link(path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()

    body = render_report(results, figures=figures, level=level, link=link)
    new = pattern.sub(lambda _: f"{begin}\n\n{body.rstrip()}\n\n{end}", text, count=1)
    _atomic_write(docs, new)
    return docs
