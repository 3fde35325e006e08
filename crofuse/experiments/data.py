"""The sample patch sets the suites train and test on, built with :func:`crofuse.synthetic.export_patches` and cached.

A patch set is keyed by its domain (city, year) and the profile's :class:`DataSettings`; equal keys reuse the folder.
It is exported into a temporary folder and renamed into place with a ``patchset.json`` marker, so an interrupted export
never looks finished and a rerun starts it over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crofuse.errors import DataError
from crofuse.experiments.profiles import DataSettings, Domain

__all__ = ["MARKER", "ensure_patch_set", "patch_set_key"]

MARKER = "patchset.json"


def _generator_version() -> str:
    from crofuse.synthetic import config as synthetic_config

    return str(getattr(synthetic_config, "GENERATOR_VERSION", "unknown"))


def patch_set_key(domain: Domain, settings: DataSettings) -> dict[str, Any]:
    """Everything that determines the files of one patch set."""
    return {"domain": asdict(domain), "data": asdict(settings), "generator": _generator_version()}


def _folder(data_dir: Path, domain: Domain, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return data_dir / f"{domain.slug}-{digest}"


def ensure_patch_set(data_dir: Path | str, domain: Domain, settings: DataSettings) -> Path:
    """The patch set of ``domain`` under ``data_dir``, exported first if no finished one with equal settings exists.

    Returns the dataset root (``ROOT/{train,val,test}/{optical,sar,label}/<name>.tif``).
    """
    from crofuse.synthetic import city_by_name, export_patches

    data_dir = Path(data_dir)
    key = patch_set_key(domain, settings)
    root = _folder(data_dir, domain, key)
    marker = root / MARKER
    if marker.exists():
        recorded = json.loads(marker.read_text())
        if recorded.get("key") != key:
            raise DataError(
                f"{root} was exported with other settings ({recorded.get('key')}); delete it to rebuild"
            )
        return root
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    export_patches(
        tmp, cities=[city_by_name(domain.city)], years=[domain.year], size_km=settings.size_km, seed=settings.seed,
        **settings.extra,
    )
    counts = {s: len(list((tmp / s / "label").glob("*.tif"))) for s in ("train", "val", "test")}
    missing = [s for s, n in counts.items() if n == 0]
    if missing:
        raise DataError(
            f"export_patches wrote no {', '.join(missing)} patches for {domain.slug} at size_km={settings.size_km}; "
            "use a larger size_km in the profile"
        )
    (tmp / MARKER).write_text(json.dumps({"key": key, "patches": counts}, indent=1, sort_keys=True))
    if root.exists():  # a stale unfinished folder (no marker) from an older layout
        shutil.rmtree(root)
    os.replace(tmp, root)
    return root
