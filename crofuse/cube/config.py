"""Typed settings of one input-cube build (one city, one year)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crofuse.cube.aoi import AOI, city_slug, parse_aoi
from crofuse.cube.profiles import CatalogProfile, Signing, get_profile, load_profile_file
from crofuse.errors import ConfigError

Loader = Literal["odc-stac", "stackstac"]
MissingModalityPolicy = Literal["fail", "continue"]
OpticalReducer = Literal["median", "mean"]

LOADERS: tuple[str, ...] = ("odc-stac", "stackstac")
DEFAULT_SCL_MASK: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
"""SCL classes masked by default: no data, saturated/defective, cloud shadow, cloud medium/high, thin cirrus."""

RESAMPLING = ("nearest", "bilinear", "cubic", "average")


def _parse_month_day(text: str, *, what: str) -> tuple[int, int]:
    try:
        d = dt.datetime.strptime(f"2000-{text}", "%Y-%m-%d")  # leap year: 02-29 is allowed
    except ValueError:
        raise ConfigError(f"season {what} {text!r} is not MM-DD (e.g. '06-01')") from None
    return d.month, d.day


@dataclass(frozen=True)
class Season:
    """A window of the year as ``MM-DD`` days, both ends included; default June (paper section II-A, Table I).

    ``end`` before ``start`` wraps into the next calendar year (``Season("12-01", "02-28")``: a winter season is
    labelled by the year it starts in).
    """

    start: str = "06-01"
    end: str = "06-30"

    def __post_init__(self) -> None:
        _parse_month_day(self.start, what="start")
        _parse_month_day(self.end, what="end")

    def dates(self, year: int) -> tuple[dt.date, dt.date]:
        """First and last day of the season in ``year`` (Feb 29 becomes Feb 28 outside leap years)."""

        def day(text: str, y: int) -> dt.date:
            m, d = _parse_month_day(text, what="day")
            if (m, d) == (2, 29) and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
                d = 28
            return dt.date(y, m, d)

        start = day(self.start, year)
        end = day(self.end, year)
        if end < start:
            end = day(self.end, year + 1)
        return start, end

    def datetime_range(self, year: int) -> str:
        """The STAC ``datetime`` interval string covering whole days (UTC)."""
        start, end = self.dates(year)
        return f"{start.isoformat()}T00:00:00Z/{end.isoformat()}T23:59:59Z"

    def label(self, year: int) -> str:
        """``"2021-06-01/2021-06-30"``: what the cube's ``season`` attribute records."""
        start, end = self.dates(year)
        return f"{start.isoformat()}/{end.isoformat()}"

    @classmethod
    def parse(cls, value: Season | str | tuple[str, str] | None) -> Season:
        """From a Season, ``"06-01/06-30"``, ``("06-01", "06-30")`` or ``None`` (the default June)."""
        if value is None:
            return cls()
        if isinstance(value, Season):
            return value
        if isinstance(value, str):
            parts = value.split("/")
            if len(parts) != 2:
                raise ConfigError(f"season {value!r} must be 'MM-DD/MM-DD' (e.g. '06-01/06-30')")
            return cls(parts[0].strip(), parts[1].strip())
        if len(value) != 2:
            raise ConfigError(f"season {value!r} must be (start, end) as MM-DD strings")
        return cls(str(value[0]), str(value[1]))


@dataclass(frozen=True)
class CubeConfig:
    """Everything that decides one input cube ``<output>/<city-slug>/<year>/inputs.zarr``.

    Attributes
    ----------
    city: city name (slugged for the folder: ``"São Paulo" -> "sao-paulo"``).
    year: calendar year of the season.
    aoi: the area: GeoJSON polygon (dict, string or file path), shapely polygon, :class:`AOI`, or a bbox
        ``(west, south, east, north)`` in degrees. Parsed and validated on construction.
    catalog: STAC API root URL; ``None`` takes the profile's ``default_url``.
    profile: catalog profile name (``"sample"``, ``"planetary-computer"``, ``"earth-search"``) or a
        :class:`CatalogProfile`.
    sar_catalog, sar_profile: take Sentinel-1 from another catalog (Earth Search has no RTC collection).
    optical_collection, sar_collection: override the profile's collection ids.
    season: the compositing window in the year (default June, as the paper).
    output: output root; the cube goes to ``<output>/<city-slug>/<year>/inputs.zarr``.
    chunk_size: spatial chunk (pixels) of the dask arrays and of the zarr store; pick the tiling stage's window.
    loader: ``"odc-stac"`` (default) or ``"stackstac"``: both produce the same pixels (tested).
    missing_modality: ``"fail"`` raises :class:`~crofuse.errors.MissingModalityError` when the season has only
        optical or only SAR items; ``"continue"`` writes the missing one as NaN and records it in the attributes.
    min_valid_fraction: least fraction of AOI pixels that must be valid, else
        :class:`~crofuse.errors.InsufficientDataError` (e.g. an all-cloud season).
    max_cloud_cover: drop Sentinel-2 scenes whose ``eo:cloud_cover`` is above this percentage before loading.
    scl_mask: SCL classes treated as not clear (default 0, 1, 3, 8, 9, 10).
    optical_reducer: ``"median"`` (default, robust to residual clouds) or ``"mean"`` (the paper's GEE averaging).
    resolution: output pixel size in metres (10: the Sentinel-2 10 m band grid).
    epsg: output CRS; ``None`` picks the UTM zone of the AOI centroid.
    resampling: resampling of reflectance and backscatter onto the grid (SCL always uses nearest).
    check_assets: open every asset's header before loading, so a corrupt or unreachable COG is named up front.
    http_timeout, http_retries: timeout (s) of one STAC API request and its retries (HTTP 429/5xx, connection
        errors and timeouts; backoff with jitter).
    catalog_deadline: total seconds one catalog interaction (a season search: both catalogs, every retry, page and
        signing request) may take before :class:`~crofuse.errors.CatalogDeadlineError` (default 120).
    signing: override the profile's asset signing (``"none"`` or ``"planetary-computer"``; ``None``: the
        profile's), for the optical and the SAR profile alike.
    profile_file: a YAML/JSON file describing a custom :class:`CatalogProfile` (see
        :func:`~crofuse.cube.profiles.load_profile_file`), used instead of ``profile``.
    max_items: refuse searches that return more items than this per collection (a sign of a wrong AOI or season).
    verify_checksums: check every asset's ``file:size``/``file:checksum`` (where the catalog has them) before loading.
    max_impossible_fraction: physically impossible values become nodata; an (item, asset) with more than this
        fraction of them in any ``chunk_size`` window fails the build (a damaged tile, see docs/cube.md).
    """

    city: str
    year: int
    aoi: Any
    catalog: str | None = None
    profile: str | CatalogProfile = "sample"
    sar_catalog: str | None = None
    sar_profile: str | CatalogProfile | None = None
    optical_collection: str | None = None
    sar_collection: str | None = None
    season: Season | str | tuple[str, str] | None = None
    output: Path | str = Path("outputs")
    chunk_size: int = 512
    loader: Loader = "odc-stac"
    missing_modality: MissingModalityPolicy = "fail"
    min_valid_fraction: float = 0.3
    max_cloud_cover: float = 80.0
    scl_mask: tuple[int, ...] = DEFAULT_SCL_MASK
    optical_reducer: OpticalReducer = "median"
    resolution: float = 10.0
    epsg: int | None = None
    resampling: str = "nearest"
    check_assets: bool = True
    http_timeout: float = 30.0
    http_retries: int = 4
    catalog_deadline: float = 120.0
    signing: Signing | None = None
    profile_file: Path | str | None = None
    max_items: int = 1000
    verify_checksums: bool = True
    max_impossible_fraction: float = 1e-3
    _slug: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "_slug", city_slug(self.city))
        if not isinstance(self.year, int) or not (2015 <= self.year <= 2100):
            raise ConfigError(f"year={self.year!r}: give a calendar year from 2015 (Sentinel-1/2 era) on")
        set_(self, "aoi", parse_aoi(self.aoi))
        if self.profile_file is not None:
            if self.profile != "sample":
                raise ConfigError(f"give either profile={self.profile!r} or profile_file={str(self.profile_file)!r}")
            set_(self, "profile", load_profile_file(self.profile_file))
        set_(self, "profile", get_profile(self.profile))
        prof: CatalogProfile = self.profile  # type: ignore[assignment]
        if self.optical_collection or self.sar_collection:
            set_(self, "profile", prof.with_collections(optical=self.optical_collection, sar=self.sar_collection))
            prof = self.profile  # type: ignore[assignment]
        if self.catalog is None:
            if prof.default_url is None:
                raise ConfigError(
                    f"profile {prof.name!r} has no default catalog URL: give the STAC API URL (--catalog URL), "
                    "e.g. the one `crofuse sample-catalog serve` prints"
                )
            set_(self, "catalog", prof.default_url)
        if self.sar_profile is not None:
            set_(self, "sar_profile", get_profile(self.sar_profile))
        if self.signing is not None:
            set_(self, "profile", prof.with_signing(self.signing))
            prof = self.profile  # type: ignore[assignment]
            if self.sar_profile is not None:
                set_(self, "sar_profile", self.sar_profile.with_signing(self.signing))  # type: ignore[union-attr]
        sar_prof = self.sar_source_profile
        if self.sar_catalog is None and self.sar_profile is not None:
            set_(self, "sar_catalog", sar_prof.default_url)
        if sar_prof.sar_collection is None and self.missing_modality == "fail":
            raise ConfigError(
                f"profile {sar_prof.name!r} has no analysis-ready Sentinel-1 collection ({sar_prof.notes}) "
                "Set sar_catalog/sar_profile (--sar-catalog/--sar-profile), or missing_modality='continue' "
                "for an optical-only cube"
            )
        set_(self, "season", Season.parse(self.season))
        # an object-store URL (s3://bucket/prefix) stays a string: Path() would fold its "//"
        set_(self, "output", self.output if "://" in str(self.output) else Path(self.output))
        if not (64 <= self.chunk_size <= 8192):
            raise ConfigError(f"chunk_size={self.chunk_size}: use 64-8192 pixels (e.g. 512 or 1024)")
        if self.loader not in LOADERS:
            raise ConfigError(f"loader={self.loader!r}: use one of {LOADERS}")
        if self.missing_modality not in ("fail", "continue"):
            raise ConfigError(f"missing_modality={self.missing_modality!r}: use 'fail' or 'continue'")
        if not (0.0 <= self.min_valid_fraction <= 1.0):
            raise ConfigError(f"min_valid_fraction={self.min_valid_fraction}: use a fraction between 0 and 1")
        if not (0.0 <= self.max_cloud_cover <= 100.0):
            raise ConfigError(f"max_cloud_cover={self.max_cloud_cover}: use a percentage between 0 and 100")
        mask = tuple(sorted({int(c) for c in self.scl_mask}))
        if any(not (0 <= c <= 11) for c in mask):
            raise ConfigError(f"scl_mask={self.scl_mask}: SCL classes are 0-11")
        set_(self, "scl_mask", mask)
        if self.optical_reducer not in ("median", "mean"):
            raise ConfigError(f"optical_reducer={self.optical_reducer!r}: use 'median' or 'mean'")
        if not (0 < self.resolution <= 1000):
            raise ConfigError(f"resolution={self.resolution}: give the pixel size in metres (10 for Sentinel-2)")
        if self.resampling not in RESAMPLING:
            raise ConfigError(f"resampling={self.resampling!r}: use one of {RESAMPLING}")
        if self.http_timeout <= 0 or self.http_retries < 0:
            raise ConfigError("http_timeout must be > 0 and http_retries >= 0")
        if not (0 < self.catalog_deadline <= 3600):
            raise ConfigError(
                f"catalog_deadline={self.catalog_deadline}: give the seconds a catalog search may take in all, "
                "0-3600 (default 120)"
            )
        if self.max_items < 1:
            raise ConfigError("max_items must be >= 1")
        if not (0.0 <= self.max_impossible_fraction <= 1.0):
            raise ConfigError(f"max_impossible_fraction={self.max_impossible_fraction}: use a fraction between 0 and 1")

    # --------------------------------------------------------------------------------------------------- derived
    @property
    def slug(self) -> str:
        """The city's folder name."""
        return self._slug

    @property
    def area(self) -> AOI:
        """The parsed AOI."""
        return self.aoi  # type: ignore[return-value]

    @property
    def catalog_profile(self) -> CatalogProfile:
        """The resolved optical (and default SAR) catalog profile."""
        return self.profile  # type: ignore[return-value]

    @property
    def sar_source_profile(self) -> CatalogProfile:
        """The profile SAR is searched with (``sar_profile`` if set, else ``profile``)."""
        return self.sar_profile or self.profile  # type: ignore[return-value]

    @property
    def sar_source_url(self) -> str:
        """The STAC API SAR is searched in."""
        return self.sar_catalog or self.catalog  # type: ignore[return-value]

    @property
    def season_window(self) -> Season:
        """The parsed season."""
        return self.season  # type: ignore[return-value]

    @property
    def output_root(self) -> Path:
        """The output root: a Path, or an object-store URL string (``s3://bucket/prefix``)."""
        return self.output  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Hash of every setting that changes the cube's pixels (a finished cube with the same one is reused)."""
        from crofuse import __version__

        def prof(p: CatalogProfile) -> dict[str, Any]:
            return p.to_dict()

        keys = {
            "city": self.slug,
            "year": self.year,
            "aoi": self.area.geojson,
            "catalog": self.catalog,
            "profile": prof(self.catalog_profile),
            "sar_catalog": self.sar_source_url,
            "sar_profile": prof(self.sar_source_profile),
            "season": self.season_window.label(self.year),
            "chunk_size": self.chunk_size,
            "loader": self.loader,
            "missing_modality": self.missing_modality,
            "max_cloud_cover": self.max_cloud_cover,
            "scl_mask": list(self.scl_mask),
            "optical_reducer": self.optical_reducer,
            "resolution": self.resolution,
            "epsg": self.epsg,
            "resampling": self.resampling,
            "crofuse": __version__,
        }
        return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


__all__ = ["DEFAULT_SCL_MASK", "LOADERS", "CubeConfig", "Season"]
