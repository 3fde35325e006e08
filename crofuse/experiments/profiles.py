"""Experiment profiles: the paper's full recipe (IV-A) and a CPU-sized version of it, as typed settings.

A :class:`Profile` fixes everything a suite run depends on besides the method and the seed: the sample patch sets
(which cities and years, how large), the training recipe (epochs, patience, batch, learning rate), the model widths
and the per-pixel sample sizes. Every run record stores ``Profile.to_dict()``, so a results table always says what it
was computed with. ``docs/results.md`` lists the differences between ``paper`` and ``cpu-small`` in a table; keep it
in step with :data:`PROFILES`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from crofuse.errors import ConfigError

__all__ = ["PROFILES", "DataSettings", "Domain", "Profile", "get_profile"]


@dataclass(frozen=True)
class Domain:
    """One sample city in one year (a patch set of its own)."""

    city: str
    year: int

    @property
    def slug(self) -> str:
        return f"{self.city}-{self.year}"


def _paper_split() -> dict[str, Any]:
    return {"split": "random"}


@dataclass(frozen=True)
class DataSettings:
    """How a domain's patch set is made: the sample catalog it comes from and the training set cut from it.

    Args:
        size_km: side of the simulated square around the city centre.
        seed: generator seed (fixed per profile: the seeds of a suite vary training, not the data).
        extra: further :class:`crofuse.synthetic.SampleConfig` fields of the sample catalog (``cloud_scale``...).
        training_set: further :class:`crofuse.trainingset.TrainingSetConfig` fields (``split``, ``block_km``,
            ``patch_size``, ``stride``...); default the paper's random 8:1:1 split of 128/80 windows.
    """

    size_km: float
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    training_set: dict[str, Any] = field(default_factory=_paper_split)


@dataclass(frozen=True)
class Profile:
    """Everything besides method and seed that a suite's numbers depend on.

    Training (paper IV-A): ``epochs`` (400), ``patience`` (50 epochs without a better validation MIoU),
    ``batch_size`` (32), ``lr`` (1e-4, Adam, poly schedule), ``limit_batches`` (training iterations per epoch, ``None``
    = all). ``max_patches`` caps every split of the source patch set (first N by name; ``None`` = all).

    Widths: ``unet_base_channels`` for CroFuseNet and the UNets (the paper's UNet: 32 channels at 128×128 up to 512 at 8×8, Sec. III-A),
    ``fcn_base_channels`` (VGG-16: 64), ``hrnet`` options (W18: width 18, 4 blocks, modules 1/4/3) and ``deeplab``
    options (ResNet-50: bottleneck blocks 3/4/6/3 at 64).

    Per-pixel baselines: ``rf_samples``/``svm_samples`` labelled training pixels, ``rf_trees`` trees.

    Domains: ``source`` is trained on (paper: Wuhan); the transfer suite also tests on ``spatial_target`` (another
    city, same year) and ``temporal_target`` (same city, next year), paper V-C.
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
    max_patches: int | None = None
    limit_batches: int | None = None
    eval_batch_size: int = 16
    source: Domain = Domain("wuhan", 2021)
    spatial_target: Domain = Domain("nanjing", 2021)
    temporal_target: Domain = Domain("wuhan", 2022)
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
        for name in ("max_patches", "limit_batches", "torch_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"profile {self.name!r}: {name} must be >= 1 or None, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (stored in every run record)."""
        return asdict(self)

    def with_changes(self, **changes: Any) -> Profile:
        """A copy with some fields replaced (e.g. for a micro-run in a test)."""
        return replace(self, **changes)


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
    deeplab={"base_channels": 64, "block": "bottleneck", "layers": [3, 4, 6, 3]},
    rf_samples=100_000,
    svm_samples=20_000,
    rf_trees=100,
)
"""The full recipe of paper IV-A at full model width on a 20 km × 20 km sample city (GPU-sized)."""

CPU_SMALL = Profile(
    name="cpu-small",
    epochs=15,
    patience=5,
    batch_size=8,
    lr=1e-3,
    data=DataSettings(size_km=8.0),
    unet_base_channels=8,
    fcn_base_channels=8,
    hrnet={"width": 6, "stem_channels": 16, "num_blocks": 1, "num_modules": [1, 1, 1]},
    deeplab={"base_channels": 8, "block": "basic", "layers": [1, 1, 1, 1]},
    rf_samples=20_000,
    svm_samples=3_000,
    rf_trees=50,
    torch_threads=2,
)
"""Scaled for a 2-core CPU: one suite in under an hour (see ``docs/results.md`` for what changes and why)."""

MICRO = Profile(
    name="micro",
    epochs=1,
    patience=1,
    batch_size=4,
    lr=1e-3,
    data=DataSettings(size_km=3.0),
    max_patches=6,
    limit_batches=2,
    unet_base_channels=4,
    fcn_base_channels=4,
    hrnet={"width": 4, "stem_channels": 8, "num_blocks": 1, "num_modules": [1, 1, 1]},
    deeplab={"base_channels": 4, "block": "basic", "layers": [1, 1, 1, 1]},
    rf_samples=2_000,
    svm_samples=500,
    rf_trees=10,
    eval_batch_size=4,
    torch_threads=1,
    benchmark=False,
)
"""A smoke test of the whole pipeline in minutes; its numbers mean nothing and reports say so."""

PROFILES: dict[str, Profile] = {p.name: p for p in (PAPER, CPU_SMALL, MICRO)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; raises :class:`ConfigError` listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; use one of {', '.join(PROFILES)}") from None
