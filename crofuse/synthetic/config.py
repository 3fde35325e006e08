"""Typed settings of the sample generator and the catalog it writes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from crofuse.errors import ConfigError
from crofuse.synthetic.cities import DEFAULT_CITIES, City, grid_pixels

GENERATOR_VERSION = "2"
"""Bumped whenever the generator's output changes for the same settings (invalidates finished files)."""


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

    def __post_init__(self) -> None:
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
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SampleConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["cities"] = tuple(City(**c) for c in d["cities"])
        for k in ("years", "months", "s1_orbits", "s1_gap_months"):
            if k in d:
                d[k] = tuple(d[k])
        if "city_sizes" in d:
            d["city_sizes"] = tuple((str(c), float(k)) for c, k in d["city_sizes"])
        return cls(**d)

    def city_fingerprint(self, city: City, year: int) -> str:
        """Hash of every setting that changes the files of one (city, year): reused files must match it."""
        keys = {k: v for k, v in self.to_dict().items() if k not in ("cities", "years", "city_sizes")}
        keys.update(city=asdict(city), year=year, generator=GENERATOR_VERSION, size_km=self.size_for(city))
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


__all__ = ["GENERATOR_VERSION", "SampleConfig"]
