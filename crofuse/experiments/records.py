"""Run records: one JSON file per (suite, method, seed) with every metric, the settings, timings and the machine.

Layout under a results folder::

    RESULTS/<split>/<suite>/<method>/seed<k>.json   the record (written under a temporary name, then renamed)
    RESULTS/_runs/<run-id>/                         training output (checkpoints, history) or RF/SVM predictions
    RESULTS/_data/<city>-<year>-<split>-<hash>/     the sample patch sets, reused between suites with equal settings

A record that exists is finished: reruns skip it (``--force`` redoes it).

Records of the first benchmark (schema ``crofuse.experiments.run/1``, layout ``RESULTS/<suite>/<method>/seed<k>.json``,
kept under ``results-v1/``) are read too and upgraded on the fly (:func:`upgrade_record`): they were all made on the
paper's random split, and their RF and SVM used the bands and indices, so they are the ``rf-indices`` /
``svm-indices`` rows of today's tables.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crofuse.errors import DataError

__all__ = ["SCHEMA", "SCHEMA_V1", "iter_records", "load_records", "machine_info", "record_path", "upgrade_record",
           "write_json_atomic"]

SCHEMA = "crofuse.experiments.run/2"
SCHEMA_V1 = "crofuse.experiments.run/1"
_V1_RENAMES = {("table2", "rf"): ("rf-indices", "RF + indices"), ("table2", "svm"): ("svm-indices", "SVM + indices")}


def record_path(results: Path, split: str, suite: str, method: str, seed: int) -> Path:
    """Where the record of one run lives."""
    return Path(results) / split / suite / method / f"seed{seed}.json"


def upgrade_record(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record in today's form (a schema-2 record unchanged): split ``random``, RF/SVM renamed to the
    with-indices rows, the transfer domains given their kind, the role filled in."""
    if data.get("schema") != SCHEMA_V1:
        return data
    data = dict(data)
    data["split"] = "random"  # crofuse.synthetic.export_patches: the paper's random 8:1:1 split
    renamed = _V1_RENAMES.get((data.get("suite"), data.get("method")))
    data["role"], data["control_of"] = "main", None
    if renamed is not None:
        data["control_of"] = data["method"]
        data["method"], data["label"] = renamed
        data["role"] = "control"
    domains = {}
    for key, dom in (data.get("domains") or {}).items():
        domains[key] = {**dom, "kind": dom.get("kind", key)}
    data["domains"] = domains
    data["schema_upgraded_from"] = SCHEMA_V1
    return data


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON atomically through the one I/O layer (:meth:`crofuse.io.store.Location.write_text`: a hidden
    temporary sibling renamed into place): a half-written file never looks done."""
    from crofuse.io.store import location

    path = Path(path)
    location(path).write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=True))
    return path


def iter_records(results: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every run record under ``results`` (``<split>/<suite>/<method>/seed*.json``, and schema-1 records in the old
    ``<suite>/<method>/seed*.json`` layout), sorted by path, upgraded by :func:`upgrade_record`."""
    results = Path(results)
    if not results.is_dir():
        raise DataError(f"results folder {results} does not exist; run `crofuse experiments run SUITE --out {results}`")
    paths = sorted({*results.glob("*/*/seed*.json"), *results.glob("*/*/*/seed*.json")})
    for path in paths:
        if any(part.startswith("_") for part in path.relative_to(results).parts):
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc}); delete it and rerun that suite") from exc
        if not isinstance(data, dict) or data.get("schema") not in (SCHEMA, SCHEMA_V1):
            raise DataError(f"{path} is not a crofuse experiment record (schema {SCHEMA!r}); move it out of {results}")
        for key in ("suite", "method", "seed", "metrics"):
            if key not in data:
                raise DataError(f"{path} lacks {key!r}; delete it and rerun that suite")
        yield path, upgrade_record(data)


def load_records(results: Path) -> list[dict[str, Any]]:
    """All records under ``results`` as dicts."""
    return [data for _, data in iter_records(results)]


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None  # not a git checkout (an installed wheel): the crofuse version is recorded instead
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """The machine a run used: platform, CPU, cores available, torch build and threads, GPU, code version."""
    import torch

    import crofuse

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cores_available": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "crofuse_version": crofuse.__version__,
        "git_commit": _git_commit(),
    }
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        info["load_average"] = None
    return info
