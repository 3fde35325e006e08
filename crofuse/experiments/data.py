"""The sample patch sets the suites train and test on: training sets built from STAC through the mapping pipeline.

For a profile, one sample catalog holds every city and year its domains need (``crofuse.synthetic.build_catalog``);
it is served as a STAC API only while a patch set has to be built (the ``serve`` function is given by the caller:
``infra.stac.StacServer`` from the CLI and the tests), and each domain's patch set is a
:func:`crofuse.trainingset.build_training_set` of that city-year with the sample labels, the profile's split and
window settings. A finished patch set carries ``patchset.json`` and is keyed by the domain, the data settings and the
generator version (not by the catalog's URL, which changes from run to run), so reruns reuse it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crofuse.errors import ConfigError, DataError
from crofuse.experiments.profiles import DataSettings, Domain, Profile

__all__ = ["MARKER", "SampleData", "patch_set_key"]

MARKER = "patchset.json"

ServeCatalog = Callable[[Path], AbstractContextManager[Any]]
"""``serve(catalog_root)`` -> a context manager whose value has ``.url`` (``infra.stac.StacServer``) or is the URL."""


def _generator_version() -> str:
    from crofuse.synthetic import config as synthetic_config

    return str(getattr(synthetic_config, "GENERATOR_VERSION", "unknown"))


def patch_set_key(domain: Domain, settings: DataSettings) -> dict[str, Any]:
    """Everything that determines the files of one patch set."""
    return {"domain": asdict(domain), "data": asdict(settings), "generator": _generator_version()}


def _digest(key: Any) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


class SampleData:
    """Patch sets of one profile's domains under ``data_dir``, built on demand (a context manager)."""

    def __init__(self, data_dir: Path | str, profile: Profile, *, serve: ServeCatalog | None = None,
                 catalog_url: str | None = None, progress: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.profile = profile
        self.settings = profile.data
        self.serve = serve
        self._url = catalog_url
        self._stack = contextlib.ExitStack()
        self.progress = progress

    def __enter__(self) -> SampleData:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # ----------------------------------------------------------------------------------------------- catalog
    def sample_config(self) -> Any:
        from crofuse.synthetic import SampleConfig, city_by_name

        domains = (self.profile.source, self.profile.spatial_target, self.profile.temporal_target)
        cities = tuple(city_by_name(c) for c in sorted({d.city for d in domains}))
        years = tuple(sorted({d.year for d in domains}))
        return SampleConfig(cities=cities, years=years, size_km=self.settings.size_km, seed=self.settings.seed,
                            **self.settings.extra)

    def catalog_root(self) -> Path:
        return self.data_dir / f"catalog-{_digest(self.sample_config().to_dict())}"

    def catalog_url(self) -> str:
        """The STAC API of the profile's sample catalog: built (or reused) and served on first use."""
        if self._url is not None:
            return self._url
        from crofuse.synthetic import build_catalog

        if self.serve is None:
            raise ConfigError(
                "building a sample patch set needs a STAC API over the sample catalog: pass serve= (e.g. "
                "infra.stac.StacServer) or catalog_url=, or run through `crofuse experiments run`"
            )
        root = self.catalog_root()
        build_catalog(root, self.sample_config(), progress=self.progress)
        served = self._stack.enter_context(self.serve(root))
        self._url = served if isinstance(served, str) else served.url
        return self._url

    # ----------------------------------------------------------------------------------------------- patch sets
    def folder(self, domain: Domain) -> Path:
        return self.data_dir / f"{domain.slug}-{_digest(patch_set_key(domain, self.settings))}"

    def patch_set(self, domain: Domain) -> Path:
        """The patch set of ``domain`` (``ROOT/{train,val,test}/{optical,sar,label}/<name>.tif``), built first if
        no finished one with equal settings exists."""
        from crofuse.trainingset import build_training_set, training_set_config

        key = patch_set_key(domain, self.settings)
        root = self.folder(domain)
        marker = root / MARKER
        if marker.exists():
            recorded = json.loads(marker.read_text())
            if recorded.get("key") != key:
                raise DataError(f"{root} was built with other settings ({recorded.get('key')}); delete it to rebuild")
            return root
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = root.with_name(f".{root.name}.tmp")
        config = training_set_config(
            out=tmp, cities=[{"name": domain.city}], years=[domain.year], catalog=self.catalog_url(),
            labels="sample", **self.settings.training_set,
        )
        build_training_set(config, overwrite=True, progress=self.progress)
        counts = {s: len(list((tmp / s / "label").glob("*.tif"))) for s in ("train", "val", "test")}
        missing = [s for s, n in counts.items() if n == 0]
        if missing:
            raise DataError(
                f"the training set of {domain.slug} at size_km={self.settings.size_km} has no {', '.join(missing)} "
                "patches; use a larger size_km in the profile"
            )
        (tmp / MARKER).write_text(json.dumps({"key": key, "patches": counts}, indent=1, sort_keys=True))
        if root.exists():  # a stale unfinished folder (no marker) from an older layout
            shutil.rmtree(root)
        os.replace(tmp, root)
        return root


@contextlib.contextmanager
def sample_data(data_dir: Path | str, profile: Profile, **kwargs: Any) -> Iterator[SampleData]:
    """:class:`SampleData` as a ``with`` block (stops the catalog server it started)."""
    with SampleData(data_dir, profile, **kwargs) as data:
        yield data
