"""The sample patch sets the suites train and test on: training sets built from STAC through the mapping pipeline.

For a profile, one sample catalog holds every city and year its suites need (``crofuse.synthetic.build_catalog``:
the profile's cities, by default :data:`crofuse.synthetic.DEFAULT_CITIES`, in the source year and the transfer
year); it is served as a STAC API only while a patch set has to be built (the ``serve`` function is given by the
caller: ``infra.stac.StacServer`` from the CLI and the tests). Each domain's patch set is a
:func:`crofuse.trainingset.build_training_set` of that city-year with the sample labels, the run's split and the
profile's window settings. A finished patch set carries ``patchset.json`` and is keyed by the domain, the split, the
data settings and the generator version (not by the catalog's URL, which changes from run to run), so reruns reuse
it.

The leave-one-city-out suite trains on several cities at once: :meth:`SampleData.combined` lays out a patch set
whose splits are the union of some domains' splits, as symbolic links to their files (``combined.json`` lists the
members). The blocked split assigns blocks city by city from a seed of the city's name, so a city's blocks are the
same alone and in such a union: the held-out city's test blocks are the very pixels the all-city model is tested on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crofuse.errors import ConfigError, DataError
from crofuse.experiments.profiles import DataSettings, Domain, Profile
from crofuse.io.store import rename_into_place

__all__ = ["COMBINED_MARKER", "MARKER", "SampleData", "patch_set_key"]

MARKER = "patchset.json"
COMBINED_MARKER = "combined.json"
_SPLITS = ("train", "val", "test")
_MODALITIES = ("optical", "sar", "label")

ServeCatalog = Callable[[Path], AbstractContextManager[Any]]
"""``serve(catalog_root)`` -> a context manager whose value has ``.url`` (``infra.stac.StacServer``) or is the URL."""


def _generator_version() -> str:
    from crofuse.synthetic import config as synthetic_config

    return str(getattr(synthetic_config, "GENERATOR_VERSION", "unknown"))


def patch_set_key(domain: Domain, settings: DataSettings, split: str) -> dict[str, Any]:
    """Everything that determines the files of one patch set."""
    return {"domain": asdict(domain), "data": asdict(settings), "split": split, "generator": _generator_version()}


def _digest(key: Any) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _city(name: str) -> Any:
    import crofuse.synthetic as synthetic

    known = {c.name: c for c in (*getattr(synthetic, "KNOWN_CITIES", ()), *synthetic.DEFAULT_CITIES)}
    if name not in known:
        raise ConfigError(f"unknown sample city {name!r}; the generator knows {', '.join(sorted(known))}")
    return known[name]


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
    def cities(self) -> tuple[str, ...]:
        """Every city of the profile's suites: the source city and the transfer / leave-one-city-out cities."""
        return tuple(sorted({self.profile.source.city, *self.profile.city_names()}))

    def years(self) -> tuple[int, ...]:
        years = {self.profile.source.year}
        if self.profile.temporal_year is not None:
            years.add(self.profile.temporal_year)
        return tuple(sorted(years))

    def sample_config(self) -> Any:
        from crofuse.synthetic import SampleConfig

        return SampleConfig(cities=tuple(_city(c) for c in self.cities()), years=self.years(),
                            size_km=self.settings.size_km, seed=self.settings.seed, **self.settings.extra)

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
    def folder(self, domain: Domain, split: str) -> Path:
        return self.data_dir / f"{domain.slug}-{split}-{_digest(patch_set_key(domain, self.settings, split))}"

    def patch_set(self, domain: Domain, split: str = "blocked") -> Path:
        """The patch set of ``domain`` under ``split`` (``ROOT/{train,val,test}/{optical,sar,label}/<name>.tif``),
        built first if no finished one with equal settings exists."""
        from crofuse.trainingset import build_training_set, training_set_config

        key = patch_set_key(domain, self.settings, split)
        root = self.folder(domain, split)
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
            labels="sample", **self.settings.training_set_fields(split),
        )
        build_training_set(config, overwrite=True, progress=self.progress)
        counts = {s: len(list((tmp / s / "label").glob("*.tif"))) for s in _SPLITS}
        missing = [s for s, n in counts.items() if n == 0]
        if missing:
            raise DataError(
                f"the training set of {domain.slug} at size_km={self.settings.size_km} has no {', '.join(missing)} "
                "patches; use a larger size_km in the profile"
            )
        (tmp / MARKER).write_text(json.dumps({"key": key, "patches": counts}, indent=1, sort_keys=True))
        if root.exists():  # a stale unfinished folder (no marker) from an older layout
            shutil.rmtree(root)
        rename_into_place(tmp, root)  # a local folder swap (crofuse.io.store's one rename)
        return root

    def combined(self, name: str, parts: Mapping[str, Sequence[tuple[Path, str]]]) -> Path:
        """A patch set whose split ``s`` is the union of ``parts[s]`` (``(patch set root, its split)`` pairs), laid
        out as symbolic links under ``data_dir/<name>-<hash>/`` and reused while the members are the same."""
        missing = [s for s in _SPLITS if not parts.get(s)]
        if missing:
            raise ConfigError(f"a combined patch set needs members for every split; {', '.join(missing)} has none")
        members = {s: [[str(Path(r).resolve()), sp] for r, sp in parts[s]] for s in _SPLITS}
        key = {"members": members}
        root = self.data_dir / f"{name}-{_digest(key)}"
        marker = root / COMBINED_MARKER
        if marker.exists():
            return root
        tmp = root.with_name(f".{root.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        counts = {}
        for split in _SPLITS:
            names: set[str] = set()
            for member_root, member_split in parts[split]:
                labels = sorted((Path(member_root) / member_split / "label").glob("*.tif"))
                if not labels:
                    raise DataError(f"{Path(member_root) / member_split} holds no patches")
                for label in labels:
                    if label.name in names:
                        raise DataError(f"patch {label.name} is in two members of {name}; the members overlap")
                    names.add(label.name)
                    for modality in _MODALITIES:
                        src = (Path(member_root) / member_split / modality / label.name).resolve()
                        dst = tmp / split / modality / label.name
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        os.symlink(src, dst)
            counts[split] = len(names)
        (tmp / COMBINED_MARKER).write_text(json.dumps({**key, "patches": counts}, indent=1, sort_keys=True))
        if root.exists():
            shutil.rmtree(root)
        rename_into_place(tmp, root)  # a local folder swap (crofuse.io.store's one rename)
        return root


@contextlib.contextmanager
def sample_data(data_dir: Path | str, profile: Profile, **kwargs: Any) -> Iterator[SampleData]:
    """:class:`SampleData` as a ``with`` block (stops the catalog server it started)."""
    with SampleData(data_dir, profile, **kwargs) as data:
        yield data
