"""When Sentinel-1 and Sentinel-2 pass over a city: revisit cycles, platforms and orbit states."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from crofuse.synthetic.cities import City

S2B_START = dt.date(2017, 7, 1)  # Sentinel-2B operational
S1B_START = dt.date(2016, 9, 26)
S1B_END = dt.date(2021, 12, 23)  # Sentinel-1B power failure; only Sentinel-1A flew in 2022-2024
BASELINE_04 = dt.date(2022, 1, 25)  # from this date on DN = reflectance * 10000 + 1000
BASELINE_05 = dt.date(2023, 12, 13)


@dataclass(frozen=True)
class Acquisition:
    """One overpass of one platform over one city."""

    collection: str  # "sentinel-2-l2a" or "sentinel-1-rtc"
    platform: str  # e.g. "Sentinel-2A", "SENTINEL-1A"
    datetime: dt.datetime  # UTC
    orbit_state: str
    relative_orbit: int

    @property
    def date(self) -> dt.date:
        return self.datetime.date()


def processing_baseline(date: dt.date) -> str:
    """The Sentinel-2 L2A processing baseline in force on ``date`` ("03.01", "04.00" or "05.10")."""
    if date >= BASELINE_05:
        return "05.10"
    if date >= BASELINE_04:
        return "04.00"
    return "03.01"


def boa_offset(baseline: str) -> int:
    """DN offset of the L2A reflectance bands: 1000 from baseline 04.00 on, else 0."""
    return 1000 if tuple(int(p) for p in baseline.split(".")) >= (4, 0) else 0


def _days(year: int, months: tuple[int, ...]):
    """Dates whose overpasses may fall in ``months`` of ``year`` in UTC (one day of slack each side)."""
    d = dt.date(year, 1, 1) - dt.timedelta(days=1)
    while d <= dt.date(year, 12, 31) + dt.timedelta(days=1):
        if any(x.month in months and x.year == year for x in (d - dt.timedelta(days=1), d, d + dt.timedelta(days=1))):
            yield d
        d += dt.timedelta(days=1)


def _in_season(t: dt.datetime, year: int, months: tuple[int, ...]) -> bool:
    return t.year == year and t.month in months


def _at(date: dt.date, local_hour: float, lon: float) -> dt.datetime:
    utc = local_hour - lon / 15.0
    base = dt.datetime.combine(date, dt.time(0), tzinfo=dt.UTC)
    return base + dt.timedelta(hours=utc)


def sentinel2_schedule(city: City, year: int, months: tuple[int, ...]) -> list[Acquisition]:
    """Sentinel-2A every 10 days, Sentinel-2B five days later (about 5-day revisit), ~10:30 local solar time."""
    epoch = dt.date(2015, 7, 1) + dt.timedelta(days=city.key % 10)
    rel = 1 + city.key % 143
    out = []
    for d in _days(year, months):
        k = (d - epoch).days % 10
        if k == 0:
            plat = "Sentinel-2A"
        elif k == 5 and d >= S2B_START:
            plat = "Sentinel-2B"
        else:
            continue
        t = _at(d, 10.5, city.lon)
        if _in_season(t, year, months):
            out.append(Acquisition("sentinel-2-l2a", plat, t, "descending", rel))
    return out


def sentinel1_schedule(
    city: City, year: int, months: tuple[int, ...], *, orbits: tuple[str, ...], gap_months: tuple[str, ...] = ()
) -> list[Acquisition]:
    """Sentinel-1A on a 12-day repeat per relative orbit, Sentinel-1B six days later until 2021-12-23.

    Ascending passes at about 18:20 local solar time, descending ones at about 06:20, three days apart.
    ``gap_months`` ("YYYY-MM") have no acquisition at all.
    """
    epoch = dt.date(2014, 10, 3) + dt.timedelta(days=city.key % 12)
    out = []
    for d in _days(year, months):
        k = (d - epoch).days % 12
        for orbit, shift, hour, rel in (
            ("ascending", 0, 18.33, 1 + city.key % 175),
            ("descending", 3, 6.33, 1 + (city.key // 7) % 175),
        ):
            if orbit not in orbits:
                continue
            if k == shift:
                plat = "SENTINEL-1A"
            elif k == (shift + 6) % 12 and S1B_START <= d < S1B_END:
                plat = "SENTINEL-1B"
            else:
                continue
            t = _at(d, hour, city.lon)
            if _in_season(t, year, months) and f"{t.year:04d}-{t.month:02d}" not in gap_months:
                out.append(Acquisition("sentinel-1-rtc", plat, t, orbit, rel))
    return sorted(out, key=lambda a: a.datetime)
