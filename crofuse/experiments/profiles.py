"""Experiment profiles: the paper's full recipe (IV-A) and a CPU-sized version of it, as typed settings.

A :class:`Profile` fixes everything a suite run depends on besides the method, the split and the seed: the sample
patch sets (which cities and years, how large, the window and block settings), the training recipe (epochs,
patience, batch, learning rate), the model widths and the per-pixel sample sizes. Every run record stores
``Profile.to_dict()``, so a results table always says what it was computed with. ``docs/results.md`` lists the
differences between ``paper`` and ``cpu-small`` in a table; keep it in step with :data:`PROFILES`.

The split (``blocked``, the default of every suite, or the paper's ``random``) is chosen per run
(``crofuse experiments run SUITE --split random``), not per profile, so that one profile's two Table II column sets
differ in nothing else.

The cities of the transfer and leave-one-city-out suites are read from :data:`crofuse.synthetic.DEFAULT_CITIES`
when a suite runs (``Profile.cities=None``), so a new sample generator with other cities needs no change here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from crofuse.errors import ConfigError

__all__ = ["PROFILES", "SPLITS", "DataSettings", "Domain", "Profile", "get_profile"]

SPLITS: tuple[str, ...] = ("blocked", "random")
"""The splits a suite runs on: ``blocked`` (default: whole CRS-anchored blocks per split, a buffer around val/test;
``docs/training-sets.md``) and ``random`` (the paper's 8:1:1 permutation of overlapping windows)."""


@dataclass(frozen=True)
class Domain:
    """One sample city in one year (a patch set of its own)."""

    city: str
    year: int

    @property
    def slug(self) -> str:
        return f"{self.city}-{self.year}"


@dataclass(frozen=True)
class DataSettings:
    """How a domain's patch set is made: the sample catalog it comes from and the training set cut from it.

    Args:
        size_km: side of the simulated square around the city centre.
        seed: generator seed (fixed per profile: the seeds of a suite vary training, not the data).
        extra: further :class:`crofuse.synthetic.SampleConfig` fields of the sample catalog (``cloud_scale``...).
        training_set: further :class:`crofuse.trainingset.TrainingSetConfig` fields (``block_km``, ``buffer_px``,
            ``patch_size``, ``stride``...) besides the split, which each run chooses; default the paper's 128/80
            windows, 2.56 km blocks and a one-window buffer.
    """

    size_km: float
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    training_set: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "split" in self.training_set:
            raise ConfigError("DataSettings.training_set must not fix the split: each run chooses it "
                              f"(--split {'|'.join(SPLITS)})")

    def training_set_fields(self, split: str) -> dict[str, Any]:
        """The training-set settings of ``split``."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return {**self.training_set, "split": split}


@dataclass(frozen=True)
class Profile:
    """Everything besides method, split and seed that a suite's numbers depend on.

    Training (paper IV-A): ``epochs`` (400), ``patience`` (50 epochs without a better validation MIoU),
    ``batch_size`` (32), ``lr`` (1e-4, Adam, poly schedule), ``limit_batches`` (training iterations per epoch,
    ``None`` = all). ``min_delta`` is the validation-MIoU gain that counts as an improvement for early stopping (the
    paper: any gain, 0): with the poly schedule the validation MIoU keeps creeping up by less than the seed spread
    until the learning rate reaches 0 at the cap, so with 0 a run almost never stops before the cap. ``max_patches`` caps every split of a patch set (first N by name; ``None`` = all).
    ``multi_city_limit_batches`` caps the iterations per epoch of the multi-city training sets of the
    leave-one-city-out suite (``None`` = all): those hold several cities' patches, and the cap keeps an epoch as
    long as a single-city epoch (each epoch draws another random subset; early stopping counts such epochs).

    Widths: ``unet_base_channels`` for CroFuseNet and the UNets (the paper's UNet: 32 channels at 128×128 up to 512
    at 8×8, Sec. III-A), ``fcn_base_channels`` (VGG-16: 64), ``hrnet`` options (W18: width 18, 4 blocks, modules
    1/4/3) and ``deeplab`` options (ResNet-50: bottleneck blocks 3/4/6/3 at 64; ``aspp_rates`` scaled to the
    8×8 maps of 128-pixel patches, :func:`crofuse.baselines.scaled_aspp_rates`).

    Per-pixel baselines: ``rf_samples``/``svm_samples`` labelled training pixels, ``rf_trees`` trees.

    Domains: ``source`` is trained on by the single-city suites (paper: Wuhan). ``cities`` are the cities of the
    transfer and leave-one-city-out suites (``None``: :data:`crofuse.synthetic.DEFAULT_CITIES` at run time);
    ``temporal_year`` is the transfer suite's next year of the source city (paper V-C).
    """

    name: str
    epochs: int
    patience: int
    batch_size: int
    lr: float
    data: DataSettings
    unet_base_channels: int
    fcn_base_channels: int
    hrnet: dict[str, Any]
    deeplab: dict[str, Any]
    rf_samples: int
    svm_samples: int
    rf_trees: int = 100
    min_delta: float = 0.0
    max_patches: int | None = None
    limit_batches: int | None = None
    multi_city_limit_batches: int | None = None
    eval_batch_size: int = 16
    source: Domain = Domain("wuhan", 2021)
    cities: tuple[str, ...] | None = None
    temporal_year: int | None = 2022
    torch_threads: int | None = None
    benchmark: bool = True
    """False for smoke-test profiles: their figures are labelled as micro-runs, never as results."""

    def __post_init__(self) -> None:
        for name in ("epochs", "patience", "batch_size", "unet_base_channels", "fcn_base_channels", "rf_samples",
                     "svm_samples", "rf_trees", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"profile {self.name!r}: {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"profile {self.name!r}: lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_delta < 0.1:
            raise ConfigError(f"profile {self.name!r}: min_delta must be in [0, 0.1) MIoU, got {self.min_delta}")
        for name in ("max_patches", "limit_batches", "multi_city_limit_batches", "torch_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"profile {self.name!r}: {name} must be >= 1 or None, got {value}")
        if self.cities is not None:
            object.__setattr__(self, "cities", tuple(self.cities))
            if len(set(self.cities)) != len(self.cities) or len(self.cities) < 2:
                raise ConfigError(f"profile {self.name!r}: cities must be at least two distinct names, got "
                                  f"{self.cities}")
        if self.temporal_year is not None and self.temporal_year == self.source.year:
            raise ConfigError(f"profile {self.name!r}: temporal_year must differ from the source year")

    def city_names(self) -> tuple[str, ...]:
        """The transfer / leave-one-city-out cities: ``cities``, else the generator's default cities now."""
        if self.cities is not None:
            return self.cities
        from crofuse.synthetic import DEFAULT_CITIES

        return tuple(c.name for c in DEFAULT_CITIES)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (stored in every run record; ``cities`` resolved to the names used)."""
        data = asdict(self)
        data["cities"] = list(self.city_names())
        return data

    def with_changes(self, **changes: Any) -> Profile:
        """A copy with some fields replaced (e.g. for a micro-run in a test)."""
        return replace(self, **changes)


_PAPER_ASPP = [1, 3, 4]  # crofuse.baselines.scaled_aspp_rates(128): the published 6/12/18 degenerate on 8×8 maps

PAPER = Profile(
    name="paper",
    epochs=400,
    patience=50,
    batch_size=32,
    lr=1e-4,
    data=DataSettings(size_km=20.0),
    unet_base_channels=32,
    fcn_base_channels=64,
    hrnet={"width": 18, "stem_channels": 64, "num_blocks": 4, "num_modules": [1, 4, 3]},
    deeplab={"base_channels": 64, "block": "bottleneck", "layers": [3, 4, 6, 3], "aspp_rates": _PAPER_ASPP},
    rf_samples=100_000,
    svm_samples=20_000,
    rf_trees=100,
)
"""The full recipe of paper IV-A at full model width on 20 km × 20 km sample cities (GPU-sized)."""

CPU_SMALL = Profile(
    name="cpu-small",
    epochs=150,
    patience=20,
    batch_size=8,
    lr=1e-3,
    data=DataSettings(size_km=12.0, training_set={"buffer_px": 64}),
    unet_base_channels=8,
    fcn_base_channels=8,
    hrnet={"width": 6, "stem_channels": 16, "num_blocks": 1, "num_modules": [1, 1, 1]},
    deeplab={"base_channels": 8, "block": "basic", "layers": [1, 1, 1, 1], "aspp_rates": _PAPER_ASPP},
    rf_samples=20_000,
    svm_samples=3_000,
    rf_trees=50,
    min_delta=0.002,
    multi_city_limit_batches=12,
    torch_threads=2,
)
"""Scaled for a 2-core CPU (see ``docs/results.md`` for what changes, why, and how long it takes)."""

MICRO = Profile(
    name="micro",
    epochs=2,
    patience=1,
    batch_size=4,
    lr=1e-3,
    data=DataSettings(size_km=2.6, training_set={"patch_size": 32, "stride": 32, "block_km": 0.64}),
    limit_batches=2,
    multi_city_limit_batches=2,
    unet_base_channels=4,
    fcn_base_channels=4,
    hrnet={"width": 4, "stem_channels": 8, "num_blocks": 1, "num_modules": [1, 1, 1]},
    deeplab={"base_channels": 4, "block": "basic", "layers": [1, 1, 1, 1], "aspp_rates": [1, 2]},
    rf_samples=2_000,
    svm_samples=500,
    rf_trees=10,
    eval_batch_size=4,
    torch_threads=1,
    benchmark=False,
)
"""A smoke test of the whole pipeline in seconds per suite; its numbers mean nothing and reports say so."""

PROFILES: dict[str, Profile] = {p.name: p for p in (PAPER, CPU_SMALL, MICRO)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; raises :class:`ConfigError` listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; use one of {', '.join(PROFILES)}") from None
