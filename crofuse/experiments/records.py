"""Run records: one JSON file per (suite, method, seed) with every metric, the settings, timings and the machine.

Layout under a results folder::

    RESULTS/<suite>/<method>/seed<k>.json      the record (written under a temporary name, then renamed)
    RESULTS/_runs/<run-id>/                    training output (checkpoints, history) or RF/SVM predictions
    RESULTS/_data/<city>-<year>-<hash>/        the sample patch sets, reused between suites with equal settings

A record that exists is finished: reruns skip it (``--force`` redoes it).
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

__all__ = ["SCHEMA", "iter_records", "load_records", "machine_info", "record_path", "write_json_atomic"]

SCHEMA = "crofuse.experiments.run/1"


def record_path(results: Path, suite: str, method: str, seed: int) -> Path:
    """Where the record of one run lives."""
    return Path(results) / suite / method / f"seed{seed}.json"


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON under a temporary name in the same folder, then rename: a half-written file never looks done."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=True))
    os.replace(tmp, path)
    return path


def iter_records(results: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every run record under ``results`` (``<suite>/<method>/seed*.json``), sorted by path."""
    results = Path(results)
    if not results.is_dir():
        raise DataError(f"results folder {results} does not exist; run `crofuse experiments run SUITE --out {results}`")
    for path in sorted(results.glob("*/*/seed*.json")):
        if path.parts[-3].startswith("_"):
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc}); delete it and rerun that suite") from exc
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise DataError(f"{path} is not a crofuse experiment record (schema {SCHEMA!r}); move it out of {results}")
        for key in ("suite", "method", "seed", "metrics"):
            if key not in data:
                raise DataError(f"{path} lacks {key!r}; delete it and rerun that suite")
        yield path, data


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
