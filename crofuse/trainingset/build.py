"""Build a training set from STAC through the mapping pipeline (``crofuse training-set build``).

    for each city-year:  AOI -> crofuse.cube.build_cube (the map-city composite) -> labels on the cube grid
    then:                windows + split (blocked / random / by-city) -> drop mostly-ignored patches -> write patches
    last:                patches.json (split, blocks, label source, cube fingerprints, composite recipe)

The cube of a city-year is the very cube ``map-city`` would build for it (same ``CubeConfig``, same search, loader,
SCL mask, offset handling, reducer and season), and patches are cut from it with the same region reader tiled
inference uses (:mod:`crofuse.cube.reader`): there is no second compositor. Interrupted builds resume city-year by
city-year; a rerun with other settings into the same folder is refused; until ``patches.json`` is written the
folder carries ``.incomplete`` and :class:`crofuse.data.PatchDataset` refuses it.

The folder may be a path or an ``s3://`` URL: everything (cubes, labels, patches, ``patches.json``, ``.progress``,
``.incomplete``) is read and written through :mod:`crofuse.io.store`, so a build on object storage resumes the same
way; :func:`local_training_set` gives the trainer a local copy of the patches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crofuse import NODATA_LABEL
from crofuse.cities import CitySpec
from crofuse.data.patches import INCOMPLETE_MARKER as INCOMPLETE
from crofuse.errors import PatchDatasetError, TrainingSetError
from crofuse.io.store import Location, cached_tree, location, native
from crofuse.trainingset.config import TrainingSetConfig
from crofuse.trainingset.patches import MODALITIES, remove_patch, write_patch
from crofuse.trainingset.splits import (
    SPLITS,
    Grid,
    Window,
    blocked_split,
    by_city_split,
    grid_windows,
    leaked_pixels,
    random_split,
)

log = logging.getLogger(__name__)

MANIFEST = "patches.json"
PROGRESS = ".progress"
FORMAT = "crofuse-training-set"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PreparedCityYear:
    """One city-year's cube and labels, ready to be cut into patches."""

    city: str
    year: int
    cube: Path | Location
    cube_fingerprint: str
    cube_identity: str
    labels: Path | Location
    label_provenance: dict[str, Any]
    grid: Grid
    recipe: dict[str, Any]
    catalog: str
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, root: Path | str | Location) -> dict[str, Any]:
        root = location(root)
        return {
            "city": self.city, "year": self.year, "catalog": self.catalog,
            "cube": location(self.cube).relative_to(root), "cube_fingerprint": self.cube_fingerprint,
            "cube_identity": self.cube_identity, "labels": location(self.labels).relative_to(root),
            "label_provenance": self.label_provenance, "shape": list(self.grid.shape), "crs": self.grid.crs,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class TrainingSetPlan:
    """The windows kept (with their split), what was dropped, and the blocks of a blocked split."""

    windows: tuple[Window, ...]
    dropped: dict[str, int]
    blocks: dict[tuple[str, int, int], str]
    leaked_pixels: int

    def counts(self) -> dict[str, int]:
        return {s: sum(w.split == s for w in self.windows) for s in SPLITS}


@dataclass(frozen=True)
class TrainingSetSummary:
    """What :func:`build_training_set` produced."""

    root: Path | Location
    counts: dict[str, int]
    dropped: dict[str, int]
    impervious_fraction: dict[str, float]
    leaked_pixels: int
    reused: bool
    seconds: dict[str, float]

    def lines(self) -> list[str]:
        out = [f"training set: {self.root}{' (already complete: nothing rewritten)' if self.reused else ''}"]
        for s in SPLITS:
            out.append(f"  {s}: {self.counts[s]} patches (impervious fraction {self.impervious_fraction.get(s, 0):.3f},"
                       f" {self.dropped.get(s, 0)} dropped as mostly ignored)")
        out.append(f"  val/test pixels inside a training patch: {self.leaked_pixels}")
        return out


# ------------------------------------------------------------------------------------------------------ state
def _state_path(root: Location) -> Location:
    return root / INCOMPLETE


def check_settings(config: TrainingSetConfig, *, overwrite: bool = False) -> bool:
    """Refuse a folder that holds (part of) a training set built with other settings; True if it is complete
    with these settings. ``overwrite`` removes the other set's patches and manifest (cubes are keyed and kept)."""
    root = config.root
    settings = config.settings()
    for marker in (root / MANIFEST, _state_path(root)):
        if not marker.exists():
            continue
        try:
            found = json.loads(marker.read_text())
        except json.JSONDecodeError:
            found = {}
        if found.get("fingerprint") == config.fingerprint():
            return marker.name == MANIFEST and _files_complete(root, found)
        if not overwrite:
            other = found.get("settings", {})
            diff = sorted(k for k in set(settings) | set(other) if settings.get(k) != other.get(k))
            shown = "; ".join(f"{k}: {other.get(k)!r} there, {settings.get(k)!r} now" for k in diff[:4])
            raise TrainingSetError(
                f"{root} holds a training set built with other settings ({shown}{'; ...' if len(diff) > 4 else ''}). "
                "Build into another folder, or pass overwrite (--overwrite) to replace it"
            )
        _clear(root)
        return False
    return False


def patch_files(manifest: dict[str, Any]) -> list[str]:
    """The files of every patch a manifest lists, relative to the training set: ``train/optical/<name>.tif``..."""
    return [f"{s}/{m}/{n}.tif" for s, names in manifest.get("splits", {}).items() for n in names for m in MODALITIES]


def _existing(root: Location, split: str) -> set[str]:
    """The files under ``root/split`` (one listing, not a request per file on object storage)."""
    return {f"{split}/{name}" for name in (root / split).listing()}


def _files_complete(root: Location, manifest: dict[str, Any]) -> bool:
    found = set().union(*(_existing(root, s) for s in SPLITS))
    return all(name in found for name in patch_files(manifest))


def _clear(root: Location) -> None:
    for name in (*SPLITS, PROGRESS):
        (root / name).rmtree()
    for name in (MANIFEST, INCOMPLETE):
        (root / name).unlink(missing_ok=True)


def _write_json(path: Location, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))  # atomic (crofuse.io.store)


# ------------------------------------------------------------------------------------------------------ stage 1
def prepare_city_year(config: TrainingSetConfig, city: CitySpec, year: int, *, progress: bool = False) -> PreparedCityYear:
    """The city-year's cube (``crofuse.cube.build_cube``, reused when built with the same settings) and its labels
    on the cube grid (``labels/<city>/<year>/labels.tif``, reused when the cube and the label source are the same)."""
    import odc.geo.xr  # noqa: F401  (the .odc accessor)

    from crofuse.cube import CubeConfig, build_cube, city_slug, open_cube
    from crofuse.cube.reader import cube_identity
    from crofuse.cube.recipe import composite_recipe
    from crofuse.labels import city_extent, get_label_source, labels_on_grid
    from crofuse.statistics import write_uint8_cog

    slug = city_slug(city.name)
    catalog = config.catalog_for(city)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    aoi = city.aoi if city.aoi is not None else city_extent(catalog, slug)
    cube_config = CubeConfig(city=slug, year=year, aoi=aoi, catalog=catalog, output=(config.root / "cubes").url,
                             **config.cube)
    path = build_cube(cube_config, progress=progress)
    seconds["cube"] = time.perf_counter() - t0
    cube = open_cube(path)
    attrs = dict(cube.attrs)
    geobox = cube.odc.geobox
    t1 = time.perf_counter()
    source = get_label_source(config.labels, **config.label_options)
    label_dir = config.root / "labels" / slug / str(year)
    label_path, record_path = label_dir / "labels.tif", label_dir / "labels.json"
    key = {"source": source.describe(), "year": year, "nearest_year": config.nearest_year,
           "min_coverage": config.min_label_coverage, "cube": cube_identity(attrs), "catalog": catalog}
    provenance: dict[str, Any] | None = None
    if record_path.exists() and label_path.exists():
        recorded = json.loads(record_path.read_text())
        if recorded.get("key") == key:
            provenance = recorded["provenance"]
    if provenance is None:
        labels = labels_on_grid(
            source, geobox, year=year, area=cube_config.area, catalog=catalog,
            aoi_mask=cube["in_aoi"].values, nearest_year=config.nearest_year,
            min_coverage=config.min_label_coverage, what=f"{slug} {year}",
        )
        label_dir.mkdir(parents=True, exist_ok=True)
        write_uint8_cog(labels.data, cube["valid"], label_path)
        provenance = labels.provenance()
        _write_json(record_path, {"key": key, "provenance": provenance})
    seconds["labels"] = time.perf_counter() - t1
    a = geobox.affine
    grid = Grid(city=slug, year=year, shape=(int(geobox.shape[0]), int(geobox.shape[1])), x0=float(a.c),
                y0=float(a.f), resolution=float(a.a), crs=str(attrs.get("crs") or geobox.crs))
    return PreparedCityYear(
        city=slug, year=year, cube=path, cube_fingerprint=str(attrs.get("fingerprint", "")),
        cube_identity=cube_identity(attrs), labels=native(label_path), label_provenance=provenance, grid=grid,
        recipe=composite_recipe(attrs), catalog=catalog, seconds=seconds,
    )


# ------------------------------------------------------------------------------------------------------ stage 2
def _holdout(config: TrainingSetConfig, cities: Sequence[str]) -> dict[str, list[str]]:
    if config.holdout_val or config.holdout_test:
        from crofuse.cube import city_slug

        return {"val": [city_slug(c) for c in config.holdout_val], "test": [city_slug(c) for c in config.holdout_test]}
    if len(cities) < 3:
        raise TrainingSetError(
            f"split='by-city' holds whole cities out for val and test, so it needs at least 3 cities (got "
            f"{list(cities)}), or name them with holdout_val/holdout_test (--holdout-val/--holdout-test)"
        )
    order = np.random.default_rng(config.seed).permutation(len(cities))
    return {"val": [cities[int(order[-2])]], "test": [cities[int(order[-1])]]}


def _windows(config: TrainingSetConfig, grids: Sequence[Grid], *, block_px: int | None = None
             ) -> tuple[list[Window], dict[tuple[str, int, int], str]]:
    size, stride = config.patch_size, config.stride
    if config.split == "blocked":
        return blocked_split(grids, size=size, stride=stride, block_px=block_px or config.block_px,
                             buffer_px=config.effective_buffer_px, shares=config.shares, seed=config.seed)
    windows = [w for g in grids for w in grid_windows(g, size, stride)]
    if config.split == "random":
        return random_split(windows, config.shares, config.seed), {}
    return by_city_split(windows, _holdout(config, sorted({g.city for g in grids}))), {}


def _ignored_share(windows: Sequence[Window], masks: dict[tuple[str, int], np.ndarray]) -> np.ndarray:
    out = np.empty(len(windows))
    for i, w in enumerate(windows):
        ignored = masks[(w.city, w.year)][w.row : w.row + w.size, w.col : w.col + w.size]
        out[i] = ignored.mean()
    return out


def _read_labels(path: Path | Location) -> np.ndarray:
    from crofuse.statistics.maps import read_map

    return np.asarray(read_map(path).values)


def _ignored_masks(prepared: Sequence[PreparedCityYear]) -> dict[tuple[str, int], np.ndarray]:
    from crofuse.cube.reader import cube_reader

    masks = {}
    for p in prepared:
        label = _read_labels(p.labels)
        _, _, valid = cube_reader(p.cube, p.cube_identity)(slice(0, p.grid.shape[0]), slice(0, p.grid.shape[1]))
        masks[(p.city, p.year)] = (label == NODATA_LABEL) | ~valid
    return masks


def plan_training_set(config: TrainingSetConfig, prepared: Sequence[PreparedCityYear]) -> TrainingSetPlan:
    """Windows and splits over every city-year, then mostly-ignored patches dropped (after the split)."""
    grids = [p.grid for p in prepared]
    windows, blocks = _windows(config, grids)
    masks = _ignored_masks(prepared)
    share = _ignored_share(windows, masks)
    keep = share <= config.max_ignored_fraction
    kept = [w for w, k in zip(windows, keep, strict=True) if k]
    dropped = {s: int(sum(1 for w, k in zip(windows, keep, strict=True) if not k and w.split == s)) for s in SPLITS}
    plan = TrainingSetPlan(windows=tuple(kept), dropped=dropped, blocks=blocks, leaked_pixels=leaked_pixels(kept))
    empty = [s for s, n in plan.counts().items() if n == 0 and config.shares[SPLITS.index(s)] > 0]
    if empty:
        raise TrainingSetError(_empty_split_message(config, grids, masks, plan, empty))
    return plan


def _empty_split_message(config: TrainingSetConfig, grids: Sequence[Grid], masks: dict[tuple[str, int], np.ndarray],
                         plan: TrainingSetPlan, empty: list[str]) -> str:
    counts = plan.counts()
    msg = (f"the {config.split} split leaves no {' and no '.join(empty)} patches (train {counts['train']}, val "
           f"{counts['val']}, test {counts['test']}; {sum(plan.dropped.values())} dropped as mostly ignored) for "
           f"{len(grids)} city-years of {', '.join(sorted({g.city for g in grids}))}.")
    if config.split == "blocked":
        resolution = float(config.cube.get("resolution", 10.0))
        candidates = sorted({int(config.block_px * f) for f in (0.5, 0.75, 1.5, 2.0, 3.0)}
                            | {config.patch_size, 2 * config.patch_size}, key=lambda b: abs(b - config.block_px))
        for block_px in candidates:
            if block_px < config.patch_size or block_px == config.block_px:
                continue
            windows, _ = _windows(config, grids, block_px=block_px)
            kept = [w for w, s in zip(windows, _ignored_share(windows, masks), strict=True)
                    if s <= config.max_ignored_fraction]
            if all(any(w.split == s for w in kept) for s in SPLITS):
                found = {s: sum(w.split == s for w in kept) for s in SPLITS}
                return (f"{msg} block_km={block_px * resolution / 1000:g} would give train {found['train']}, val "
                        f"{found['val']}, test {found['test']}: pass --block-km {block_px * resolution / 1000:g}, "
                        "a smaller --buffer-px, more or larger cities, or --split random")
        return f"{msg} No block size gives all three splits here: add cities or area, or use --split random"
    return f"{msg} Add cities or area, or change the shares"


# ------------------------------------------------------------------------------------------------------ stage 3
def write_city_year(config: TrainingSetConfig, plan: TrainingSetPlan, prepared: PreparedCityYear) -> dict[str, Any]:
    """Write the patches of one city-year (skipped when its progress marker says they are written)."""
    from rasterio.transform import Affine

    from crofuse.cube.reader import cube_reader

    mine = [w for w in plan.windows if (w.city, w.year) == (prepared.city, prepared.year)]
    names = {s: sorted(w.name for w in mine if w.split == s) for s in SPLITS}
    marker = config.root / PROGRESS / f"{prepared.city}-{prepared.year}.json"
    key = {"fingerprint": config.fingerprint(), "cube": prepared.cube_identity, "names": names}
    try:
        done = json.loads(marker.read_text())
    except FileNotFoundError:
        done = {}
    if done.get("key") == key:
        return {k: v for k, v in done.items() if k != "key"} | {"seconds": 0.0, "reused": True}
    t0 = time.perf_counter()
    labels = _read_labels(prepared.labels)
    read = cube_reader(prepared.cube, prepared.cube_identity)
    g = prepared.grid
    stats = {s: [0, 0] for s in SPLITS}
    for w in mine:
        rows, cols = slice(w.row, w.row + w.size), slice(w.col, w.col + w.size)
        optical, sar, valid = read(rows, cols)
        label = labels[rows, cols].copy()
        label[~valid] = NODATA_LABEL
        transform = Affine(g.resolution, 0.0, g.x0 + w.col * g.resolution, 0.0, -g.resolution,
                           g.y0 - w.row * g.resolution)
        write_patch(config.root, w.split, w.name, optical=optical, sar=sar, label=label, crs=g.crs,  # type: ignore[arg-type]
                    transform=transform)
        stats[w.split][0] += int((label == 1).sum())  # type: ignore[index]
        stats[w.split][1] += int((label != NODATA_LABEL).sum())  # type: ignore[index]
    result = {"stats": stats, "seconds": time.perf_counter() - t0, "patches": len(mine)}
    _write_json(marker, {"key": key, **result})
    return result


# ------------------------------------------------------------------------------------------------------ driver
def start_training_set(config: TrainingSetConfig, *, overwrite: bool = False) -> TrainingSetSummary | None:
    """Check the folder (:func:`check_settings`): the summary of a complete set with these settings (nothing to
    do), or ``None`` after marking the folder ``.incomplete`` for a (resumed) build."""
    root = config.root
    if check_settings(config, overwrite=overwrite):
        manifest = json.loads((root / MANIFEST).read_text())
        return TrainingSetSummary(root=native(root), counts={s: len(manifest["splits"][s]) for s in SPLITS},
                                  dropped=manifest["dropped"], impervious_fraction=manifest["impervious_fraction"],
                                  leaked_pixels=manifest["leaked_pixels"], reused=True, seconds={})
    root.mkdir(parents=True, exist_ok=True)
    _write_json(_state_path(root), {"fingerprint": config.fingerprint(), "settings": config.settings()})
    return None


def finish_training_set(config: TrainingSetConfig, prepared: Sequence[PreparedCityYear], plan: TrainingSetPlan,
                        written: Sequence[dict[str, Any]], *, seconds: dict[str, float] | None = None
                        ) -> TrainingSetSummary:
    """Remove patches of an earlier plan, write ``patches.json`` (last) and clear ``.incomplete``."""
    from crofuse.labels import get_label_source

    root = config.root
    names = {s: sorted(w.name for w in plan.windows if w.split == s) for s in SPLITS}
    for s in SPLITS:  # patches of an earlier, overwritten plan
        for stale in {p.stem for p in (root / s / "label").iterdir() if p.suffix == ".tif"} - set(names[s]):
            remove_patch(root, s, stale)
    stats = {s: [sum(r["stats"][s][0] for r in written), sum(r["stats"][s][1] for r in written)] for s in SPLITS}
    fraction = {s: (stats[s][0] / stats[s][1] if stats[s][1] else 0.0) for s in SPLITS}
    recipes = {json.dumps(p.recipe, sort_keys=True) for p in prepared}
    if len(recipes) > 1:
        raise TrainingSetError(f"the city-years of {root} were composited with different recipes: {sorted(recipes)}")
    seconds = dict(seconds or {})
    seconds.update(cubes=sum(p.seconds.get("cube", 0.0) for p in prepared),
                   labels=sum(p.seconds.get("labels", 0.0) for p in prepared),
                   write=sum(float(r.get("seconds", 0.0)) for r in written))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": config.fingerprint(),
        "settings": config.settings(),
        "recipe": prepared[0].recipe,
        "labels": get_label_source(config.labels, **config.label_options).describe(),
        "split": {
            "kind": config.split, "shares": list(config.shares), "seed": config.seed,
            "block_km": config.block_km if config.split == "blocked" else None,
            "buffer_px": config.effective_buffer_px if config.split == "blocked" else None,
            "blocks": [{"city": c, "block_row": r, "block_col": k, "split": s}
                       for (c, r, k), s in sorted(plan.blocks.items())],
        },
        "patch_size": config.patch_size,
        "stride": config.stride,
        "city_years": [p.record(root) for p in prepared],
        "splits": names,
        "dropped": plan.dropped,
        "leaked_pixels": plan.leaked_pixels,
        "impervious_fraction": fraction,
        "seconds": seconds,
        "units": {"optical": "surface reflectance 0-1 (B02, B03, B04, B08)", "sar": "gamma0 dB (VV, VH)",
                  "label": "1 impervious, 0 pervious, 255 ignored"},
    }
    _write_json(root / MANIFEST, manifest)
    _state_path(root).unlink(missing_ok=True)
    return TrainingSetSummary(root=native(root), counts={s: len(names[s]) for s in SPLITS}, dropped=plan.dropped,
                              impervious_fraction=fraction, leaked_pixels=plan.leaked_pixels, reused=False,
                              seconds=seconds)


def build_training_set(
    config: TrainingSetConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    on_city_year: Callable[[PreparedCityYear], None] | None = None,
) -> TrainingSetSummary:
    """Build (or resume, or reuse) the training set ``config`` describes; see the module docstring.

    Raises :class:`~crofuse.errors.LabelError` (labels that do not cover a city-year, unknown codes, a missing
    year), :class:`~crofuse.errors.TrainingSetError` (an empty split, other settings in the folder) and the cube's
    errors (:mod:`crofuse.cube`), each naming the city-year and what to do.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    done = start_training_set(config, overwrite=overwrite)
    if done is not None:
        return done
    prepared: list[PreparedCityYear] = []
    bar = tqdm([(c, y) for c in config.cities for y in config.years], desc="cubes and labels", unit="city-year",
               disable=not progress)
    for city, year in bar:
        bar.set_postfix_str(f"{city.name} {year}")
        prepared.append(prepare_city_year(config, city, year, progress=False))
        if on_city_year is not None:
            on_city_year(prepared[-1])
    bar.close()
    t_plan = time.perf_counter()
    plan = plan_training_set(config, prepared)
    plan_s = time.perf_counter() - t_plan
    written = [write_city_year(config, plan, p) for p in tqdm(prepared, desc="patches", unit="city-year",
                                                              disable=not progress)]
    return finish_training_set(config, prepared, plan, written,
                               seconds={"plan": plan_s, "total": time.perf_counter() - started})


def read_manifest(root: str | Path | Location) -> dict[str, Any] | None:
    """The ``patches.json`` of a crofuse training set (a path or an ``s3://`` URL), or ``None`` for other folders
    (e.g. a WHU-IS download)."""
    try:
        manifest = json.loads((location(root) / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    return manifest if manifest.get("format") == FORMAT else None


def local_training_set(root: str | Path | Location, *, progress: bool = False) -> Path:
    """A training set (or any WHU-IS folder) as a local folder :class:`crofuse.data.PatchDataset` reads: a local
    path as is; on object storage a local copy of its patches and ``patches.json`` (not its cubes and labels) in
    worker-local temporary space (:func:`crofuse.io.store.cached_tree`), fetched once and reused while the objects
    are the same. The key of the copy is the listing of the patch folders (one ``ListObjects`` per split, no request
    per file): every patch's name and etag, and the etag of ``patches.json``, so a rerun downloads nothing and a
    rebuilt set is fetched anew. Only the patches the manifest lists are fetched (a WHU-IS folder without
    ``patches.json``: every file of its splits). A set still being built (``.incomplete``) is refused, as on disk."""
    loc = location(root)
    if loc.is_local:
        return loc.path
    if (loc / INCOMPLETE).is_file():
        raise PatchDatasetError(
            f"{loc} holds a training set still being built or whose build was interrupted ({INCOMPLETE} is "
            "there): finish it with `crofuse training-set build` (it resumes) before training on it"
        )
    found = {f"{s}/{name}": version for s in SPLITS for name, version in (loc / s).listing().items()}
    manifest_version = (loc / MANIFEST).version()
    if manifest_version is not None:
        names = [*patch_files(json.loads((loc / MANIFEST).read_text())), MANIFEST]
        found[MANIFEST] = manifest_version
        missing = [n for n in names if n not in found]
        if missing:
            raise PatchDatasetError(
                f"{loc} lacks {len(missing)} files its {MANIFEST} lists (e.g. {missing[0]}): the set was changed "
                "after it was built; rebuild it with `crofuse training-set build --overwrite`"
            )
    else:
        names = sorted(n for n in found if n.endswith(".tif"))
        if not names:
            raise PatchDatasetError(f"{loc} holds no patches (no {'/'.join(SPLITS)}/{{optical,sar,label}}/*.tif): "
                                    "give the folder of a training set (`crofuse training-set build`)")
    listing = "\n".join(f"{n}:{found[n]}" for n in sorted(names))
    key = hashlib.sha256(f"{loc.url}\n{listing}".encode()).hexdigest()[:32]
    return cached_tree(loc, names, key=f"training-set-{key}", progress=progress)


__all__ = [
    "INCOMPLETE",
    "MANIFEST",
    "PreparedCityYear",
    "TrainingSetPlan",
    "TrainingSetSummary",
    "build_training_set",
    "check_settings",
    "finish_training_set",
    "local_training_set",
    "patch_files",
    "plan_training_set",
    "prepare_city_year",
    "read_manifest",
    "start_training_set",
    "write_city_year",
]
