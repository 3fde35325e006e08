"""Typed settings of the sample generator and the catalog it writes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crofuse.errors import ConfigError
from crofuse.synthetic.cities import DEFAULT_CITIES, City, grid_pixels

GENERATOR_VERSION = "3"
"""Bumped whenever the generator's output changes for the same settings (invalidates finished files). "3" is
generator v2 (``SampleConfig.generator=2``); the v1 generator (``generator=1``) keeps the version string "2" it was
written with, so its files and fingerprints stay what they were."""
GENERATORS: dict[int, str] = {1: "2", 2: GENERATOR_VERSION}
"""``SampleConfig.generator`` -> the version string its items record (``crofuse:generator``) and fingerprint."""
CURRENT_GENERATOR = 2


class Difficulty(BaseModel):
    """The calibrated sources of difficulty of generator v2 (global; the per-city ones are in the palettes).

    Each default is inside the range its source gives (``docs/sample-data.md``, "Generator v2" and "Calibration"):

    label_shift_px: co-registration error of the reference labels (drawn on finer imagery), pixels: one shift of
        this length in a random direction per city, shared by its years (Sentinel-2 absolute geolocation 8-12.5 m
        CE95 plus the finer imagery's own error; each year's reference updates the same registered basemap).
    label_warp_px: standard deviation (pixels) of the smooth local warp on top of it (mosaics of several images).
    label_time_lag: share of the fields that change around the acquisition whose reference shows the other year's
        state (the finer imagery is not from the same month).
    s2_misregistration_px: per-acquisition shift of Sentinel-2 (standard deviation per axis, pixels; multi-temporal
        co-registration 5 m CE95 with the global reference image).
    s1_misregistration_px: per-orbit shift of Sentinel-1 against Sentinel-2 (pixels, per axis).
    s2_scene_gain, s2_scene_offset: per-acquisition atmospheric residual (relative gain, additive offset in blue;
        green, red and NIR get 0.8, 0.6, 0.5 of it).
    s2_city_bias: per-city additive atmospheric bias in blue (times the palette's ``aerosol``; same band shares).
    s1_calibration_db, s1_stability_db: per city-orbit and per-pass Sentinel-1 radiometric offsets (standard
        deviation, dB): the mission's 1 dB (3 sigma) accuracy and 0.5 dB (3 sigma) stability.
    clutter: multiplies each palette's sub-cell clutter (mixed pixels finer than the 5 m material map).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label_shift_px: float = Field(default=0.75, ge=0.0, le=3.0)
    label_warp_px: float = Field(default=0.1, ge=0.0, le=2.0)
    label_time_lag: float = Field(default=0.3, ge=0.0, le=1.0)
    s2_misregistration_px: float = Field(default=0.2, ge=0.0, le=2.0)
    s1_misregistration_px: float = Field(default=0.3, ge=0.0, le=2.0)
    s2_scene_gain: float = Field(default=0.03, ge=0.0, le=0.2)
    s2_scene_offset: float = Field(default=0.006, ge=0.0, le=0.05)
    s2_city_bias: float = Field(default=0.01, ge=0.0, le=0.05)
    s1_calibration_db: float = Field(default=0.33, ge=0.0, le=3.0)
    s1_stability_db: float = Field(default=0.17, ge=0.0, le=3.0)
    clutter: float = Field(default=1.0, ge=0.0, le=3.0)


REFERENCE_FIELDS = ("label_shift_px", "label_warp_px", "label_time_lag")
"""The :class:`Difficulty` fields that change only the reference labels (not the scenes or the exact truth)."""


def difficulty(**fields) -> Difficulty:
    """:class:`Difficulty` with a :class:`~crofuse.errors.ConfigError` that names the bad fields."""
    try:
        return Difficulty(**fields)
    except ValidationError as e:
        why = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid Difficulty settings: {why}") from None


@dataclass(frozen=True)
class SampleConfig:
    """What ``build_catalog`` simulates.

    Attributes
    ----------
    cities: the places to simulate (default Wuhan and Nanjing).
    years: calendar years; each gets its own land cover (urban growth between years) and acquisitions.
    months: months of each year with acquisitions (default June, the paper's season, section IV).
    size_km: side of the square simulated around each city centre.
    city_sizes: ``(city, size_km)`` pairs that override ``size_km`` for some cities (e.g. larger training cities).
    seed: everything is a deterministic function of (city, year, seed).
    subpixel: ground truth is drawn at ``10 m / subpixel`` (default 5 m) and aggregated to 10 m by linear mixing.
    enl: equivalent number of looks of the Sentinel-1 speckle (Gamma shape); RTC products have about 4-5.
    s1_orbits: which Sentinel-1 relative orbits cover the cities.
    s1_gap_months: ``"YYYY-MM"`` months with no Sentinel-1 acquisition at all (mission-planning gaps).
    cloud_scale: multiplies every pass's cloud fraction (0 = clear sky, 1 = June climatology, clipped at 1).
    overcast: every Sentinel-2 pass fully cloudy (an all-cloud season, for testing what consumers do then).
    partial_swath_probability: chance that a Sentinel-2 acquisition only covers part of the area (nodata 0 elsewhere).
    temporal_variation: per-acquisition atmosphere/phenology/wind effects; off = every clear observation equals the
        ground truth (up to DN rounding), which tests can rely on.
    growth_rate: yearly probability that an undeveloped field at the city edge is built on.
    base_year: the year the procedural city is drawn for; growth accumulates from it.
    generator: 2 (default, the current generator: city palettes, reference labels with annotation errors,
        calibrated difficulty) or 1 (the earlier generator, byte for byte: its files and fingerprints are unchanged).
    difficulty: the calibrated sources of difficulty of generator 2 (ignored by generator 1).
    """

    cities: tuple[City, ...] = DEFAULT_CITIES
    years: tuple[int, ...] = (2021, 2022)
    months: tuple[int, ...] = (6,)
    size_km: float = 10.0
    city_sizes: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    subpixel: int = 2
    enl: float = 4.5
    s1_orbits: tuple[str, ...] = ("ascending", "descending")
    s1_gap_months: tuple[str, ...] = ()
    cloud_scale: float = 1.0
    overcast: bool = False
    partial_swath_probability: float = 0.15
    temporal_variation: bool = True
    growth_rate: float = 0.15
    base_year: int = 2018
    generator: int = CURRENT_GENERATOR
    difficulty: Difficulty = field(default_factory=Difficulty)

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ConfigError(f"SampleConfig.generator={self.generator}: use one of {sorted(GENERATORS)}")
        if isinstance(self.difficulty, dict):
            object.__setattr__(self, "difficulty", difficulty(**self.difficulty))
        elif not isinstance(self.difficulty, Difficulty):
            raise ConfigError(f"SampleConfig.difficulty must be a Difficulty, got {type(self.difficulty).__name__}")
        if not self.cities:
            raise ConfigError("SampleConfig.cities is empty: give at least one City")
        names = [c.name for c in self.cities]
        if len(set(names)) != len(names):
            raise ConfigError(f"SampleConfig.cities has duplicate names: {names}")
        if not self.years or any(not (2015 <= y <= 2100) for y in self.years):
            raise ConfigError(f"SampleConfig.years={self.years}: give years from 2015 (Sentinel-1/2 era) on")
        if any(y <= self.base_year for y in self.years):
            raise ConfigError(f"every year must be after base_year={self.base_year}; got {self.years}")
        if not self.months or any(not (1 <= m <= 12) for m in self.months):
            raise ConfigError(f"SampleConfig.months={self.months}: give month numbers 1-12")
        grid_pixels(self.size_km)  # validates size_km
        sizes = tuple((str(c), float(k)) for c, k in dict(self.city_sizes).items())
        for name, km in sizes:
            if name not in names:
                raise ConfigError(f"city_sizes names {name!r}, which is not among the cities {names}")
            grid_pixels(km)
        object.__setattr__(self, "city_sizes", sizes)
        if self.subpixel not in (1, 2, 4, 5):
            raise ConfigError(f"subpixel={self.subpixel}: use 1, 2, 4 or 5 (ground truth at 10, 5, 2.5 or 2 m)")
        if not (1.0 <= self.enl <= 100.0):
            raise ConfigError(f"enl={self.enl}: the equivalent number of looks must be between 1 and 100")
        bad = set(self.s1_orbits) - {"ascending", "descending"}
        if bad or not self.s1_orbits:
            raise ConfigError(f"s1_orbits={self.s1_orbits}: use 'ascending' and/or 'descending'")
        for m in self.s1_gap_months:
            if len(m) != 7 or m[4] != "-":
                raise ConfigError(f"s1_gap_months entry {m!r} is not 'YYYY-MM'")
        if self.cloud_scale < 0:
            raise ConfigError(f"cloud_scale={self.cloud_scale} must be >= 0")
        if not (0.0 <= self.partial_swath_probability <= 1.0):
            raise ConfigError("partial_swath_probability must be between 0 and 1")
        if not (0.0 <= self.growth_rate <= 1.0):
            raise ConfigError("growth_rate must be between 0 and 1")
        object.__setattr__(self, "years", tuple(sorted(self.years)))
        object.__setattr__(self, "months", tuple(sorted(self.months)))

    def size_for(self, city: City | str) -> float:
        """The side (km) simulated around ``city``: its ``city_sizes`` entry, else ``size_km``."""
        name = city if isinstance(city, str) else city.name
        return dict(self.city_sizes).get(name, self.size_km)

    def to_dict(self) -> dict:
        """Plain JSON-able settings (what the build manifest records)."""
        d = asdict(self)
        d["cities"] = [asdict(c) for c in self.cities]
        d["difficulty"] = self.difficulty.model_dump()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SampleConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d.setdefault("generator", 1)  # manifests written before generator 2 existed hold no "generator"
        d["cities"] = tuple(City(**c) for c in d["cities"])
        for k in ("years", "months", "s1_orbits", "s1_gap_months"):
            if k in d:
                d[k] = tuple(d[k])
        if "city_sizes" in d:
            d["city_sizes"] = tuple((str(c), float(k)) for c, k in d["city_sizes"])
        return cls(**d)

    def city_fingerprint(self, city: City, year: int, *, labels: bool = True) -> str:
        """Hash of every setting that changes the files of one (city, year): reused files must match it.

        ``labels=False`` (scenes and weak labels) leaves out the :data:`REFERENCE_FIELDS` of the difficulty, which
        only change the reference labels, so a calibration run that varies them rebuilds the labels items only."""
        skip = ("cities", "years", "city_sizes", "generator", "difficulty")
        keys = {k: v for k, v in self.to_dict().items() if k not in skip}
        city_keys = asdict(city)
        if self.generator == 1:  # v1 fingerprints exactly as v1 computed them (no palette, no difficulty)
            city_keys.pop("palette")
        else:
            d = self.difficulty.model_dump()
            keys["difficulty"] = d if labels else {k: v for k, v in d.items() if k not in REFERENCE_FIELDS}
        keys.update(city=city_keys, year=year, generator=self.version, size_km=self.size_for(city))
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def version(self) -> str:
        """The version string of this config's generator (``crofuse:generator`` of its items)."""
        return GENERATORS[self.generator]


__all__ = ["CURRENT_GENERATOR", "GENERATORS", "GENERATOR_VERSION", "Difficulty", "SampleConfig", "difficulty"]
