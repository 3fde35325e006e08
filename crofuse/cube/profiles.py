"""Catalog profiles: what differs between STAC catalogs that serve Sentinel-1/2, kept as data, not code.

Pointing the cube builder at another catalog means choosing another profile (and URL); the search, load and
composite code never branch on a catalog's name. A profile maps crofuse's band names (``crofuse.OPTICAL_BANDS``,
``crofuse.SAR_BANDS``, ``SCL``) to the catalog's asset keys, names the collections and properties, and says
whether asset URLs must be signed before reading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
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

    def with_signing(self, signing: Signing) -> CatalogProfile:
        """A copy with another asset signing (``"none"`` switches Planetary Computer signing off)."""
        return replace(self, signing=signing)

    def item_modifier(self) -> Callable[[Any], None] | None:
        """The plain ``planetary_computer.sign_inplace`` (or ``None``) for use outside crofuse's searches, which sign
        through :class:`crofuse.cube.stac_client.PlanetaryComputerSigner` (bounded by the search's deadline)."""
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


PROFILE_FILE_KEYS = (
    "base", "name", "default_url", "optical_collection", "optical_assets", "scl_asset", "sar_collection",
    "sar_assets", "cloud_cover_property", "baseline_property", "offset_applied_property", "sar_nodata", "signing",
    "notes",
)
_REQUIRED = ("optical_collection", "optical_assets", "scl_asset", "sar_assets")


@lru_cache(maxsize=1)
def _profile_file_model() -> type:
    """The pydantic model of a profile file (built on first use: importing crofuse does not import pydantic)."""
    from pydantic import BaseModel, ConfigDict

    class ProfileFile(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        base: str | None = None
        name: str | None = None
        default_url: str | None = None
        optical_collection: str | None = None
        optical_assets: dict[str, str] | None = None
        scl_asset: str | None = None
        sar_collection: str | None = None
        sar_assets: dict[str, str] | None = None
        cloud_cover_property: str | None = None
        baseline_property: str | None = None
        offset_applied_property: str | None = None
        sar_nodata: float | None = None
        signing: Signing | None = None
        notes: str | None = None

    assert tuple(ProfileFile.model_fields) == PROFILE_FILE_KEYS
    return ProfileFile


def load_profile_file(path: str | Path) -> CatalogProfile:
    """A custom :class:`CatalogProfile` from a YAML or JSON file (``--profile-file``), e.g.::

        base: planetary-computer          # optional: start from a built-in profile, override what follows
        name: pc-mirror                   # default: the file name
        default_url: https://stac.example.org/v1
        optical_collection: sentinel-2-l2a
        optical_assets: {B02: B02, B03: B03, B04: B04, B08: B08}
        scl_asset: SCL
        sar_collection: sentinel-1-rtc    # null: no Sentinel-1 RTC (take SAR from another catalog)
        sar_assets: {VV: vv, VH: vh}
        sar_nodata: -32768
        baseline_property: s2:processing_baseline
        signing: none                     # or planetary-computer

    Without ``base``, ``optical_collection``, ``optical_assets``, ``scl_asset`` and ``sar_assets`` are required.
    Unknown keys, a wrong band set or an unknown signing are :class:`~crofuse.errors.ConfigError` naming the file
    and the key.
    """
    import json

    import yaml
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"profile file {path} does not exist; give a YAML or JSON file (see docs/cube.md)")
    try:
        raw = json.loads(path.read_text()) if path.suffix.lower() == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"profile file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"profile file {path} must hold a mapping of profile keys, got {type(raw).__name__}")
    try:
        given = _profile_file_model()(**raw).model_dump(exclude_unset=True)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: "
            + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
            for err in e.errors()
        )
        raise ConfigError(f"profile file {path}: {problems}. Allowed keys: {', '.join(PROFILE_FILE_KEYS)}") from None
    base = given.pop("base", None)
    if base is not None:
        try:
            fields = get_profile(base).to_dict()
        except ConfigError as e:
            raise ConfigError(f"profile file {path}: base: {e}") from None
    else:
        fields = {"default_url": None, "sar_collection": None}
        missing = [k for k in _REQUIRED if given.get(k) is None]
        if missing:
            raise ConfigError(
                f"profile file {path} lacks {', '.join(missing)}: give them, or `base: <profile>` to start from one "
                f"of {', '.join(PROFILES)}"
            )
    fields.update(given)
    fields["name"] = given.get("name") or path.stem
    for key, bands in (("optical_assets", OPTICAL_BANDS), ("sar_assets", SAR_BANDS)):
        assets = fields.get(key)
        if not isinstance(assets, Mapping):
            raise ConfigError(f"profile file {path}: {key} must map {bands} to the catalog's asset keys")
        if set(assets) == set(bands):  # the order in the file does not matter
            fields[key] = {b: assets[b] for b in bands}
    for key in ("scl_asset", "optical_collection", "cloud_cover_property", "baseline_property", "signing"):
        if key in fields and fields[key] is None:
            raise ConfigError(f"profile file {path}: {key} cannot be null")
    try:
        return CatalogProfile(**fields)
    except ConfigError as e:
        raise ConfigError(f"profile file {path}: {e}") from None


def get_profile(profile: str | CatalogProfile) -> CatalogProfile:
    """A profile by name (or the profile itself); unknown names list the known ones."""
    if isinstance(profile, CatalogProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ConfigError(f"unknown catalog profile {profile!r}; known profiles: {', '.join(PROFILES)}") from None


__all__ = [
    "EARTH_SEARCH",
    "PLANETARY_COMPUTER",
    "PROFILES",
    "PROFILE_FILE_KEYS",
    "SAMPLE",
    "CatalogProfile",
    "Signing",
    "get_profile",
    "load_profile_file",
]
