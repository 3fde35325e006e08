"""Markdown tables laid out like the paper's Tables II, III, IV and Figs. 9 and 11, plus the transfer table.

Each cell is the mean ± sample standard deviation over seeds of this benchmark, next to the paper's value. Per metric,
the best mean is **bold** only when it is separated from every other method by more than the seed spread
(:mod:`crofuse.experiments.stats`); methods within the spread of the best are marked ``≈`` and no ranking is claimed
among them. Under each table, a ranking line shows the order by MIoU with ``>`` only where it is beyond noise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crofuse.experiments.records import load_records
from crofuse.experiments.stats import Summary, compare, rank_chain, summarize
from crofuse.experiments.suites import METRIC_LABELS, PERCENT_METRICS, SUITES, Suite

__all__ = [
    "SuiteResults",
    "aggregate",
    "best_marks",
    "format_cell",
    "format_paper",
    "render_report",
    "render_suite",
    "write_report",
]

COMPREHENSIVE = ("miou", "oa", "mean_f1")
PER_CLASS = ("iou_impervious", "pa_impervious", "ua_impervious", "f1_impervious",
             "iou_pervious", "pa_pervious", "ua_pervious", "f1_pervious")
TRANSFER_DOMAINS = ("spatial", "temporal")


@dataclass
class SuiteResults:
    """The records of one suite, summarised per method (and per transfer domain)."""

    suite: Suite
    metrics: dict[str, dict[str, Summary]] = field(default_factory=dict)
    """``metrics[method][metric]`` over seeds (test split of the source domain)."""
    domains: dict[str, dict[str, dict[str, Summary]]] = field(default_factory=dict)
    """``domains[method][domain][metric]``: transfer targets."""
    drops: dict[str, dict[str, dict[str, Summary]]] = field(default_factory=dict)
    """``drops[method][domain][metric]``: per-seed source minus target, summarised."""
    domain_names: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, list[int]] = field(default_factory=dict)
    profiles: set[str] = field(default_factory=set)
    benchmark: bool = True
    seconds: float = 0.0
    machines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        """Methods with records, in the suite's order."""
        return [k for k in self.suite.keys if k in self.metrics]


def aggregate(records: Iterable[Mapping[str, Any]]) -> dict[str, SuiteResults]:
    """Group records by suite and method and summarise every metric over seeds."""
    grouped: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        grouped[rec["suite"]][rec["method"]].append(rec)
    out: dict[str, SuiteResults] = {}
    for suite_name, by_method in grouped.items():
        if suite_name not in SUITES:
            continue
        res = SuiteResults(SUITES[suite_name])
        for method, recs in by_method.items():
            recs = sorted(recs, key=lambda r: r["seed"])
            res.seeds[method] = [int(r["seed"]) for r in recs]
            keys = sorted({k for r in recs for k, v in r["metrics"].items() if isinstance(v, (int, float))})
            res.metrics[method] = {k: summarize(r["metrics"].get(k, math.nan) for r in recs) for k in keys}
            for r in recs:
                res.profiles.add(str((r.get("profile") or {}).get("name", "?")))
                res.benchmark &= bool((r.get("profile") or {}).get("benchmark", False))
                res.seconds += float((r.get("timings") or {}).get("total_s", 0.0))
                if r.get("machine") and r["machine"] not in res.machines:
                    res.machines.append(r["machine"])
            doms = sorted({d for r in recs for d in (r.get("domains") or {})})
            for dom in doms:
                per = [r for r in recs if dom in (r.get("domains") or {})]
                res.domain_names[dom] = str(per[0]["domains"][dom].get("name", dom))
                mkeys = sorted({k for r in per for k in r["domains"][dom]["metrics"]})
                res.domains.setdefault(method, {})[dom] = {
                    k: summarize(r["domains"][dom]["metrics"].get(k, math.nan) for r in per) for k in mkeys
                }
                res.drops.setdefault(method, {})[dom] = {
                    k: summarize(r["metrics"].get(k, math.nan) - r["domains"][dom]["metrics"].get(k, math.nan)
                                 for r in per)
                    for k in mkeys
                }
        out[suite_name] = res
    return out


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


def best_marks(summaries: Mapping[str, Summary | None]) -> dict[str, str]:
    """Per method: ``"best"`` (clearly best), ``"≈"`` (within the seed spread of the best, best included when tied),
    ``"?"`` (no spread to judge: fewer than two seeds) or ``""``."""
    present = {k: s for k, s in summaries.items() if s is not None and s.n and math.isfinite(s.mean)}
    marks = {k: "" for k in summaries}
    if len(present) < 2:
        return marks
    best = max(present, key=lambda k: present[k].mean)
    outcomes = {k: compare(present[best], s) for k, s in present.items() if k != best}
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


def _legend(res: SuiteResults) -> str:
    n = sorted({len(v) for v in res.seeds.values()})
    seeds = ", ".join(str(x) for x in n)
    return (
        f"Cells: mean ± sample std over seeds (seeds per method: {seeds}); *paper*: the value the paper reports. "
        "**Bold**: best mean, ahead of every other method by more than the seed spread. "
        "≈: within the seed spread of the best (|Δmean| ≤ max std): no ranking is claimed among the ≈ cells. "
        "?: fewer than two seeds, so no spread and no ranking."
    )


def _ranking(res: SuiteResults, metric: str = "miou") -> str:
    labels = {m.key: m.label for m in res.suite.methods}
    sums = {k: res.metrics[k][metric] for k in res.methods if metric in res.metrics[k]}
    lines = [f"- This run, by {METRIC_LABELS[metric]}: {rank_chain(sums, labels=labels) or '–'}"]
    if res.suite.paper_order:
        lines.append("- Paper: " + " > ".join(labels[k] for k in res.suite.paper_order))
    return "\n".join(lines)


# ---- tables --------------------------------------------------------------------------------------------------------


def _metric_rows_table(res: SuiteResults, metrics: Sequence[str]) -> str:
    """Table II layout: one row per metric, one column per method with the paper's value beside it."""
    methods = [res.suite.method(k) for k in res.methods]
    header = ["Metrics"] + [h for m in methods for h in (m.label, f"{m.label} *paper*")]
    rows = []
    for metric in metrics:
        marks = best_marks({m.key: res.metrics[m.key].get(metric) for m in methods})
        row = [METRIC_LABELS[metric]]
        for m in methods:
            row.append(_marked(format_cell(res.metrics[m.key].get(metric), metric), marks[m.key]))
            row.append(format_paper(m.paper.get(metric), metric))
        rows.append(row)
    return _table(header, rows)


def _method_rows_table(res: SuiteResults, metrics: Sequence[str], *, paper: bool = True) -> str:
    """Tables III/IV layout: one row per method, each metric with the paper's value in the next column."""
    methods = [res.suite.method(k) for k in res.methods]

    def title(metric: str) -> str:
        if metric.endswith("_impervious"):
            return f"IS {METRIC_LABELS[metric]}"
        if metric.endswith("_pervious"):
            return f"PS {METRIC_LABELS[metric]}"
        return METRIC_LABELS[metric]

    header = ["Method"]
    for metric in metrics:
        header += [title(metric)] + ([f"{title(metric)} *paper*"] if paper else [])
    marks = {metric: best_marks({m.key: res.metrics[m.key].get(metric) for m in methods}) for metric in metrics}
    rows = []
    for m in methods:
        row = [m.label]
        for metric in metrics:
            row.append(_marked(format_cell(res.metrics[m.key].get(metric), metric), marks[metric][m.key]))
            if paper:
                row.append(format_paper(m.paper.get(metric), metric))
        rows.append(row)
    return _table(header, rows)


def _transfer_table(res: SuiteResults) -> str:
    header = ["Method", "Test domain"] + [METRIC_LABELS[m] for m in COMPREHENSIVE]
    header += [f"Drop {METRIC_LABELS[m]}" for m in COMPREHENSIVE]
    rows = []
    for key in res.methods:
        label = res.suite.method(key).label
        rows.append([label, "source (in-domain test split)"]
                    + [format_cell(res.metrics[key].get(m), m) for m in COMPREHENSIVE] + ["–"] * 3)
        for dom in TRANSFER_DOMAINS:
            if dom not in res.domains.get(key, {}):
                continue
            cells = [format_cell(res.domains[key][dom].get(m), m) for m in COMPREHENSIVE]
            drops = [format_cell(res.drops[key][dom].get(m), m, signed=True) for m in COMPREHENSIVE]
            rows.append([label, f"{dom}: {res.domain_names.get(dom, dom)}"] + cells + drops)
    return _table(header, rows)


def _transfer_verdicts(res: SuiteResults) -> str:
    lines = []
    for key in res.methods:
        for dom in TRANSFER_DOMAINS:
            drop = res.drops.get(key, {}).get(dom, {}).get("miou")
            if drop is None or drop.n == 0:
                continue
            if not drop.has_spread:
                verdict = "one seed: no spread, so no claim whether the drop is real"
            elif drop.std == 0.0:
                verdict = ("identical on every seed (spread 0, e.g. a model that predicts one class everywhere): "
                           "a difference of the test sets, not of training")
            elif abs(drop.mean) <= drop.std:
                verdict = "within the seed spread: no transfer loss can be claimed"
            else:
                verdict = "a drop beyond the seed spread" if drop.mean > 0 else "a gain beyond the seed spread"
            lines.append(f"- {res.suite.method(key).label}, {dom} transfer: MIoU drop "
                         f"{format_cell(drop, 'miou', signed=True)} — {verdict}.")
    return "\n".join(lines)


def _collapsed(res: SuiteResults) -> str:
    """Methods that predicted a single class on every seed: their F1 mean covers only the class with a defined F1."""
    names = []
    for key in res.methods:
        m = res.metrics[key]
        for cls in ("impervious", "pervious"):
            pa = m.get(f"pa_{cls}")
            if pa is not None and pa.n and max(pa.values) == 0.0:
                names.append(f"{res.suite.method(key).label} (no {cls} pixel predicted)")
    if not names:
        return ""
    return ("Warning: collapsed to one class on every seed: " + "; ".join(names) + ". Their UA and F1 for the "
            "missing class are undefined (–), so their F1-Score mean covers only the other class; read MIoU instead.")


def render_suite(res: SuiteResults) -> str:
    """The Markdown section of one suite."""
    suite = res.suite
    parts = [f"## {suite.title} — paper {suite.paper_ref}", ""]
    if not res.benchmark:
        parts += ["> **Micro-run, not a benchmark**: tiny data, models and epochs; the numbers only show that the "
                  "pipeline runs end to end.", ""]
    parts += [f"Profile: {', '.join(sorted(res.profiles))}; compute time {res.seconds / 60:.1f} min.", ""]
    missing = [m.label for m in suite.methods if m.key not in res.metrics]
    if suite.name == "table2":
        parts += ["### Table II — comprehensive accuracy", "", _metric_rows_table(res, COMPREHENSIVE), "",
                  "### Table III — accuracy per class (IS: impervious surface, PS: pervious surface)", "",
                  _method_rows_table(res, PER_CLASS), ""]
    elif suite.name == "ablation":
        parts += ["### Table IV — ablation of CFM and MFA", "", _method_rows_table(res, PER_CLASS + COMPREHENSIVE), ""]
    elif suite.name == "transfer":
        parts += [_transfer_table(res), "", _transfer_verdicts(res), ""]
    else:  # loss (Fig. 9), modality (Fig. 11)
        parts += [_method_rows_table(res, COMPREHENSIVE, paper=any(m.paper for m in suite.methods)), ""]
    if suite.name != "transfer":
        parts += [_legend(res), "", _ranking(res), ""]
    collapsed = _collapsed(res)
    if collapsed:
        parts += [collapsed, ""]
    if suite.note:
        parts += [f"Note: {suite.note}", ""]
    if missing:
        parts += [f"Not run yet: {', '.join(missing)}.", ""]
    return "\n".join(parts)


def render_report(results: Path | str, *, figures: Mapping[str, Path] | None = None) -> str:
    """The whole Markdown report of every suite with records under ``results``."""
    records = load_records(Path(results))
    by_suite = aggregate(records)
    benchmark = all(r.benchmark for r in by_suite.values())
    parts = ["# CroFuseNet experiments on the sample benchmark", ""]
    if not benchmark:
        parts += ["> **Micro-run — not a benchmark.** At least one suite here was run with a smoke-test profile; "
                  "its numbers say nothing about the methods.", ""]
    parts += [
        "Data: procedural sample cities from `crofuse.synthetic` (WHU-IS layout), **not** the paper's WHU-IS dataset. "
        "Absolute values are not comparable with the paper's; the *paper* columns are there to compare orderings and "
        "gaps.",
        "",
    ]
    machines = [m for r in by_suite.values() for m in r.machines]
    if machines:
        m = machines[0]
        parts += [f"Machine: {m.get('processor')}, {m.get('cores_available')} cores, torch {m.get('torch')} "
                  f"({m.get('torch_threads')} threads), GPU: {m.get('cuda') or 'none'}; code {m.get('git_commit') or m.get('crofuse_version')}.",
                  ""]
    for name in SUITES:
        if name in by_suite:
            parts.append(render_suite(by_suite[name]))
            if figures and name in figures:
                parts += [f"![qualitative results, {name}]({figures[name].name})", ""]
    if not by_suite:
        parts.append("No run records found.")
    return "\n".join(parts).rstrip() + "\n"


def write_report(results: Path | str, *, out: Path | None = None, figures: Mapping[str, Path] | None = None) -> Path:
    """Render the report of ``results`` and write it (default ``results/report.md``, atomically)."""
    import os

    results = Path(results)
    out = Path(out) if out is not None else results / "report.md"
    text = render_report(results, figures=figures)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out
