"""Cities files: the list of cities (name, optional AOI, optional catalog) that flows and training sets work on.

A cities file is YAML or GeoJSON:

```yaml
# cities.yaml
catalog: http://127.0.0.1:8765        # optional default for every city
cities:
  - name: wuhan
    aoi: [114.25, 30.55, 114.35, 30.63]   # bbox (west, south, east, north) in degrees, or a GeoJSON geometry
  - name: nanjing                          # no aoi: taken from the catalog's `labels` items of the city
    catalog: http://other-stac/api         # optional per-city catalog
```

or a GeoJSON ``FeatureCollection`` whose features carry ``properties.name`` (and optionally ``properties.catalog``)
and whose geometries are the AOIs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crofuse.errors import ConfigError


class CitySpec(BaseModel):
    """One city of a cities file. The AOI is validated later, per city, so one bad AOI does not stop the others."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="city name; its slug names the output folder")
    aoi: list[float] | dict[str, Any] | None = Field(default=None, description="bbox or GeoJSON geometry (lon/lat)")
    catalog: str | None = Field(default=None, description="STAC API URL for this city (default: the flow's)")


def read_cities_file(path: str | Path) -> list[CitySpec]:
    """Parse a YAML or GeoJSON cities file (see the module docstring): a path or an ``s3://`` URL."""
    from crofuse.io.store import location

    path = location(path)
    try:
        text = path.read_text()
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"cities file {path} does not exist; give a YAML or GeoJSON file listing the cities") from None
    if path.suffix.lower() in (".geojson", ".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"cities file {path} is not valid JSON: {e}") from e
        return _from_geojson(data, path)
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"cities file {path} is not valid YAML: {e}") from e
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return _from_geojson(data, path)
    if isinstance(data, list):
        data = {"cities": data}
    if not isinstance(data, dict) or not isinstance(data.get("cities"), list) or not data["cities"]:
        raise ConfigError(f"cities file {path} must hold a non-empty `cities:` list of {{name, aoi, catalog}} entries")
    default_catalog = data.get("catalog")
    specs = []
    for i, entry in enumerate(data["cities"]):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"cities file {path}: entry {i} is {entry!r}; give a mapping with at least `name`")
        entry = {"catalog": default_catalog, **entry} if default_catalog else entry
        try:
            specs.append(CitySpec(**entry))
        except ValidationError as e:
            raise ConfigError(f"cities file {path}: entry {i} ({entry.get('name', '?')}) is invalid: {e}") from e
    _check_unique(specs, path)
    return specs


def _from_geojson(data: Any, path: Path) -> list[CitySpec]:
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not data.get("features"):
        raise ConfigError(f"cities file {path} must be a GeoJSON FeatureCollection with one feature per city")
    specs = []
    for i, feature in enumerate(data["features"]):
        props = feature.get("properties") or {}
        name = props.get("name") or props.get("city")
        if not name:
            raise ConfigError(f"cities file {path}: feature {i} has no `name` property")
        specs.append(CitySpec(name=str(name), aoi=feature.get("geometry"), catalog=props.get("catalog")))
    _check_unique(specs, path)
    return specs


def _check_unique(specs: list[CitySpec], path: Path) -> None:
    from crofuse.cube.aoi import city_slug

    seen: dict[str, str] = {}
    for spec in specs:
        slug = city_slug(spec.name)
        if slug in seen:
            raise ConfigError(f"cities file {path}: {spec.name!r} and {seen[slug]!r} share the folder name {slug!r}")
        seen[slug] = spec.name


__all__ = ["CitySpec", "read_cities_file"]
