"""The paper's experiments on the sample benchmark: suites, profiles, the runner, and the report.

- :mod:`crofuse.experiments.profiles`: :class:`Profile` (``paper``, ``cpu-small``, ``micro``), the splits;
- :mod:`crofuse.experiments.suites`: :class:`Suite`/:class:`Method` for Tables II-IV, Figs. 9 and 11, transfer and
  leave-one-city-out, with the paper's values, the fairness controls, and :data:`PROGRAM` (the order to run them);
- :mod:`crofuse.experiments.data`: the sample patch sets, built through STAC, and their multi-city unions;
- :mod:`crofuse.experiments.runner`: :func:`run_suite`, :func:`run_program` (one JSON record per method and seed);
- :mod:`crofuse.experiments.report`: :func:`render_report`/:func:`write_report`/:func:`write_docs` (mean ± std over
  seeds, no ranking claimed within the seed spread); :mod:`crofuse.experiments.figure`: the Fig. 7-style PNG.

Training, the generator and plotting are imported inside the functions that need them.
"""

from __future__ import annotations

from crofuse.experiments.profiles import PROFILES, SPLITS, DataSettings, Domain, Profile, get_profile
from crofuse.experiments.report import aggregate, render_report, write_docs, write_report
from crofuse.experiments.runner import run_program, run_suite
from crofuse.experiments.stats import Summary, compare, rank_chain, summarize
from crofuse.experiments.suites import PROGRAM, SUITES, Method, Suite, get_suite

__all__ = [
    "PROFILES",
    "PROGRAM",
    "SPLITS",
    "SUITES",
    "DataSettings",
    "Domain",
    "Method",
    "Profile",
    "Suite",
    "Summary",
    "aggregate",
    "compare",
    "get_profile",
    "get_suite",
    "rank_chain",
    "render_report",
    "run_program",
    "run_suite",
    "summarize",
    "write_docs",
    "write_report",
]
