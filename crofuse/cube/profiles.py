"""Catalog profiles: what differs between STAC catalogs that serve Sentinel-1/2, kept as data, not code.

Pointing the cube builder at another catalog means choosing another profile (and URL); the search, load and
composite code never branch on a catalog's name. A profile maps crofuse's band names (``crofuse.OPTICAL_BANDS``,
``crofuse.SAR_BANDS``, ``SCL``) to the catalog's asset keys, names the collections and properties, and says
whether asset URLs must be signed before reading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from crofuse import OPTICAL_BANDS, SAR_BANDS
from crofuse.errors import ConfigError

Signing = Literal["none", "planetary-computer"]


def _frozen(d: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class CatalogProfile:
    """How one STAC catalog lays out Sentinel-2 L2A and Sentinel-1 RTC.

    Attributes
    ----------
    name: the profile's name (``--profile``).
    default_url: the catalog's STAC API root, used when no URL is given (``None``: a URL is required).
    optical_collection: the Sentinel-2 L2A collection id.
    optical_assets: crofuse band (``B02 B03 B04 B08``) -> asset key.
    scl_asset: asset key of the Sen2Cor scene classification (SCL).
    sar_collection: the Sentinel-1 RTC collection id (``None``: the catalog has no analysis-ready Sentinel-1; take
        SAR from another catalog with ``CubeConfig.sar_catalog``).
    sar_assets: crofuse polarisation (``VV VH``) -> asset key; values are linear gamma0 power.
    cloud_cover_property: item property with the scene cloud percentage.
    baseline_property: item property with the Sentinel-2 processing baseline (``"04.00"`` and later carry the
        +1000 DN offset).
    offset_applied_property: item property that, when true, says the catalog already removed the +1000 offset
        from the pixels (Earth Search's ``earthsearch:boa_offset_applied``); ``None`` when the catalog never does.
    sar_nodata: extra no-data value of the SAR assets besides NaN (Planetary Computer's RTC uses -32768).
    signing: ``"planetary-computer"`` signs asset URLs with SAS tokens (needs the ``planetary-computer`` package).
    """

    name: str
    default_url: str | None
    optical_collection: str
    optical_assets: Mapping[str, str]
    scl_asset: str
    sar_collection: str | None
    sar_assets: Mapping[str, str]
    cloud_cover_property: str = "eo:cloud_cover"
    baseline_property: str = "s2:processing_baseline"
    offset_applied_property: str | None = None
    sar_nodata: float | None = None
    signing: Signing = "none"
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "optical_assets", _frozen(self.optical_assets))
        object.__setattr__(self, "sar_assets", _frozen(self.sar_assets))
        if tuple(self.optical_assets) != OPTICAL_BANDS:
            raise ConfigError(
                f"profile {self.name!r}: optical_assets must map exactly {OPTICAL_BANDS} in that order, "
                f"got {tuple(self.optical_assets)}"
            )
        if tuple(self.sar_assets) != SAR_BANDS:
            raise ConfigError(
                f"profile {self.name!r}: sar_assets must map exactly {SAR_BANDS} in that order, got {tuple(self.sar_assets)}"
            )
        if self.signing not in ("none", "planetary-computer"):
            raise ConfigError(f"profile {self.name!r}: signing={self.signing!r}; use 'none' or 'planetary-computer'")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (what the cube fingerprint hashes); ``notes`` left out."""
        from dataclasses import fields

        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "notes"}
        d["optical_assets"] = dict(self.optical_assets)
        d["sar_assets"] = dict(self.sar_assets)
        return d

    def with_collections(self, *, optical: str | None = None, sar: str | None = None) -> CatalogProfile:
        """A copy with other collection ids (e.g. Earth Search's ``sentinel-2-c1-l2a``)."""
        return replace(
            self,
            optical_collection=optical or self.optical_collection,
            sar_collection=sar if sar is not None else self.sar_collection,
        )

    def item_modifier(self) -> Callable[[Any], None] | None:
        """The pystac-client ``modifier`` that signs items in place, or ``None`` when the catalog needs none."""
        if self.signing == "none":
            return None
        return planetary_computer_signer()


def planetary_computer_signer() -> Callable[[Any], None]:
    """``planetary_computer.sign_inplace``, imported on demand with a clear message when it is missing."""
    try:
        import planetary_computer
    except ImportError as e:
        raise ConfigError(
            "the 'planetary-computer' profile signs asset URLs with the planetary-computer package, which is not "
            "installed: pip install 'crofuse[planetary-computer]'"
        ) from e
    return planetary_computer.sign_inplace


_SENTINEL2_UPPER = {"B02": "B02", "B03": "B03", "B04": "B04", "B08": "B08"}
_SENTINEL1_LOWER = {"VV": "vv", "VH": "vh"}

SAMPLE = CatalogProfile(
    name="sample",
    default_url=None,
    optical_collection="sentinel-2-l2a",
    optical_assets=_SENTINEL2_UPPER,
    scl_asset="SCL",
    sar_collection="sentinel-1-rtc",
    sar_assets=_SENTINEL1_LOWER,
    notes="crofuse's own sample catalog (`crofuse sample-catalog build`, served by `rustac serve`).",
)

PLANETARY_COMPUTER = CatalogProfile(
    name="planetary-computer",
    default_url="https://planetarycomputer.microsoft.com/api/stac/v1",
    optical_collection="sentinel-2-l2a",
    optical_assets=_SENTINEL2_UPPER,
    scl_asset="SCL",
    sar_collection="sentinel-1-rtc",
    sar_assets=_SENTINEL1_LOWER,
    sar_nodata=-32768.0,
    signing="planetary-computer",
    notes="Microsoft Planetary Computer: S2 L2A (not harmonised) and S1 RTC; asset URLs need SAS signing.",
)

EARTH_SEARCH = CatalogProfile(
    name="earth-search",
    default_url="https://earth-search.aws.element84.com/v1",
    optical_collection="sentinel-2-l2a",
    optical_assets={"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"},
    scl_asset="scl",
    sar_collection=None,
    sar_assets=_SENTINEL1_LOWER,
    offset_applied_property="earthsearch:boa_offset_applied",
    notes=(
        "Element 84 Earth Search v1: S2 L2A with asset keys blue/green/red/nir/scl. It serves Sentinel-1 only as GRD "
        "(not terrain corrected), so take SAR from Planetary Computer: sar_catalog=<PC URL>, "
        "sar_profile='planetary-computer'."
    ),
)

PROFILES: Mapping[str, CatalogProfile] = MappingProxyType(
    {p.name: p for p in (SAMPLE, PLANETARY_COMPUTER, EARTH_SEARCH)}
)
"""The built-in profiles by name."""


def get_profile(profile: str | CatalogProfile) -> CatalogProfile:
    """A profile by name (or the profile itself); unknown names list the known ones."""
    if isinstance(profile, CatalogProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ConfigError(f"unknown catalog profile {profile!r}; known profiles: {', '.join(PROFILES)}") from None


__all__ = ["EARTH_SEARCH", "PLANETARY_COMPUTER", "PROFILES", "SAMPLE", "CatalogProfile", "get_profile"]
