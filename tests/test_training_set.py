"""Training sets from STAC: the splits (no val/test pixel inside a training patch), the same cube values as
map-city, the manifest, resume, refusals and the CLI, on the session sample catalog served by rustac."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crofuse.errors import PatchDatasetError, TrainingSetError
from crofuse.trainingset import build_training_set, leaked_pixels, read_manifest, training_set_config
from crofuse.trainingset.splits import (
    SPLITS,
    Grid,
    allocate,
    blocked_split,
    grid_windows,
    random_split,
)


def _grid(city="a", year=2021, shape=(1000, 1000), x0=500_000.0, y0=3_400_000.0) -> Grid:
    return Grid(city=city, year=year, shape=shape, x0=x0, y0=y0, resolution=10.0, crs="EPSG:32650")


# ---------------------------------------------------------------------------------------------------- pure splits
def test_allocate_keeps_every_split() -> None:
    assert allocate(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert allocate(4, (0.8, 0.1, 0.1)) == [2, 1, 1]
    assert allocate(2, (0.8, 0.1, 0.1)) == [2, 0, 0] or sum(allocate(2, (0.8, 0.1, 0.1))) == 2
    assert sum(allocate(97, (0.8, 0.1, 0.1))) == 97


@pytest.mark.parametrize("seed", range(6))
def test_blocked_split_never_puts_a_heldout_pixel_in_a_training_patch(seed: int) -> None:
    grids = [_grid("a", 2021), _grid("a", 2022), _grid("b", 2021, shape=(640, 900), x0=612_340.0)]
    windows, blocks = blocked_split(grids, size=128, stride=80, block_px=256, buffer_px=128,
                                    shares=(0.8, 0.1, 0.1), seed=seed)
    assert leaked_pixels(windows) == 0
    assert {w.split for w in windows} == set(SPLITS)
    for w in windows:  # inside one block, and that block's split
        assert blocks[(w.city, *w.block)] == w.split
        assert (w.row + w.size <= grids[0].shape[0] or w.city == "b")
    # training windows keep the buffer from every val/test block: no held-out pixel within 128 px
    held = {}
    for w in windows:
        if w.split != "train":
            held.setdefault(w.city, np.zeros((1000, 1000), bool))[w.row : w.row + 128, w.col : w.col + 128] = True
    from scipy.ndimage import maximum_filter

    for city, mask in held.items():
        near = maximum_filter(mask.astype(np.uint8), size=2 * 128 + 1) > 0
        assert not any(near[w.row : w.row + 128, w.col : w.col + 128].any() for w in windows
                       if w.city == city and w.split == "train")


def test_random_split_is_the_papers_and_leaks() -> None:
    windows = random_split(grid_windows(_grid(), 128, 80), (0.8, 0.1, 0.1), seed=0)
    counts = {s: sum(w.split == s for w in windows) for s in SPLITS}
    assert counts == {"train": 115, "val": 14, "test": 15} or abs(counts["train"] - 115) <= 1
    heldout = sum(w.size**2 for w in windows if w.split != "train")
    assert leaked_pixels(windows) > 0.5 * heldout, "overlapping windows put most held-out pixels in training"
    assert random_split(grid_windows(_grid(), 128, 80), (0.8, 0.1, 0.1), seed=0) == windows


def test_blocks_are_the_same_ground_in_every_year() -> None:
    """Blocks are anchored to the CRS, so a year whose grid is shifted by a pixel keeps each block's split."""
    a = _grid("a", 2021)
    b = _grid("a", 2022, x0=a.x0 + 10.0)
    windows, blocks = blocked_split([a, b], size=128, stride=80, block_px=256, buffer_px=0,
                                    shares=(0.6, 0.2, 0.2), seed=3)
    assert len({k for k in blocks}) == len(blocks)
    by_year = {y: {w.block for w in windows if w.year == y and w.split == "test"} for y in (2021, 2022)}
    assert by_year[2021] and by_year[2021] & by_year[2022]


# ---------------------------------------------------------------------------------------------------- on STAC
SMALL = {"patch_size": 32, "stride": 32, "block_km": 0.64, "buffer_px": 32}
P = SMALL["patch_size"]


@pytest.fixture(scope="module")
def blocked_set(tmp_path_factory: pytest.TempPathFactory, stac_api: str) -> Path:
    root = tmp_path_factory.mktemp("ts") / "blocked"
    config = training_set_config(out=root, cities=[{"name": "wuhan"}], years=[2021, 2022], catalog=stac_api,
                                 labels="sample", split="blocked", **SMALL)
    build_training_set(config, progress=False)
    return root


def test_manifest_records_split_blocks_labels_fingerprints_and_recipe(blocked_set: Path) -> None:
    m = read_manifest(blocked_set)
    assert m is not None and m["format"] == "crofuse-training-set"
    assert m["split"]["kind"] == "blocked" and m["split"]["block_km"] == 0.64 and m["split"]["buffer_px"] == 32
    assert {b["split"] for b in m["split"]["blocks"]} == set(SPLITS)
    assert m["labels"]["name"] == "sample" and m["labels"]["exact"] is False  # the annotated reference
    assert [(c["city"], c["year"]) for c in m["city_years"]] == [("wuhan", 2021), ("wuhan", 2022)]
    assert all(len(c["cube_fingerprint"]) == 16 for c in m["city_years"])
    assert m["recipe"]["optical_reducer"] == "median" and m["recipe"]["season"] == "06-01/06-30"
    assert m["recipe"]["scl_mask"] == [0, 1, 3, 8, 9, 10] and m["recipe"]["loader"] == "odc-stac"
    assert m["leaked_pixels"] == 0
    for s in SPLITS:
        files = sorted(p.stem for p in (blocked_set / s / "label").glob("*.tif"))
        assert files == m["splits"][s] and files


def test_patches_hold_the_map_city_cube_and_the_truth(blocked_set: Path, stac_api: str, tmp_path: Path) -> None:
    """The training set's inputs equal the values of the cube map-city builds for the same city-year."""
    import rasterio

    from crofuse.cube import CubeConfig, build_cube, open_cube
    from crofuse.labels import city_extent
    from crofuse.synthetic import ground_truth
    from tests.fixtures.catalog import SMALL_CATALOG

    # map-city's cube: AOI from the catalog's labels (flows.tasks.resolve_aoi), default cube options
    cube = open_cube(build_cube(CubeConfig(city="wuhan", year=2022, aoi=city_extent(stac_api, "wuhan"),
                                           catalog=stac_api, output=tmp_path), progress=False))
    truth = ground_truth(SMALL_CATALOG, "wuhan", 2022)
    t = truth.geobox.affine
    names = [n for s in SPLITS for n in read_manifest(blocked_set)["splits"][s] if n.startswith("wuhan_2022")]
    assert names
    for name in names[:6]:
        split = next(s for s in SPLITS if (blocked_set / s / "label" / f"{name}.tif").exists())
        r, c = (int(v) for v in name.split("_")[2:])
        with rasterio.open(blocked_set / split / "optical" / f"{name}.tif") as src:
            optical = src.read()
            x, y = src.transform * (0, 0)
            assert src.crs.to_epsg() == 32650 and src.count == 4
        with rasterio.open(blocked_set / split / "sar" / f"{name}.tif") as src:
            sar = src.read()
        with rasterio.open(blocked_set / split / "label" / f"{name}.tif") as src:
            label = src.read(1)
        np.testing.assert_array_equal(optical, cube["optical"].values[:, r : r + P, c : c + P])
        np.testing.assert_array_equal(sar, cube["sar"].values[:, r : r + P, c : c + P])
        valid = cube["valid"].values[r : r + P, c : c + P]
        assert (label[~valid] == 255).all()
        # labels: the generator's truth at the same ground position
        tr, tc = int(round((t.f - y) / 10.0)), int(round((x - t.c) / 10.0))
        window = truth.reference[max(tr, 0) : tr + P, max(tc, 0) : tc + P]  # the sample labels (v2: reference)
        if tr >= 0 and tc >= 0 and window.shape == (P, P):
            np.testing.assert_array_equal(label[valid], window[valid])


def test_rerun_reuses_and_other_settings_are_refused(blocked_set: Path, stac_api: str) -> None:
    before = {p: p.stat().st_mtime_ns for p in blocked_set.rglob("*.tif")}
    config = training_set_config(out=blocked_set, cities=[{"name": "wuhan"}], years=[2021, 2022], catalog=stac_api,
                                 labels="sample", split="blocked", **SMALL)
    again = build_training_set(config, progress=False)
    assert again.reused and {p: p.stat().st_mtime_ns for p in blocked_set.rglob("*.tif")} == before
    other = training_set_config(out=blocked_set, cities=[{"name": "wuhan"}], years=[2021, 2022], catalog=stac_api,
                                labels="sample", split="random", patch_size=64, stride=40)
    with pytest.raises(TrainingSetError, match=r"built with other settings \(.*split: 'blocked' there, 'random' now"):
        build_training_set(other, progress=False)


def test_interrupted_build_resumes_city_year_by_city_year(tmp_path: Path, stac_api: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import crofuse.trainingset.build as build_module
    from crofuse.data import PatchDataset

    config = training_set_config(out=tmp_path / "ts", cities=[{"name": "wuhan"}], years=[2021, 2022],
                                 catalog=stac_api, split="random", patch_size=64, stride=64)
    real = build_module.write_city_year
    calls: list[int] = []

    def crash_on_2022(cfg, plan, prepared):
        calls.append(prepared.year)
        if prepared.year == 2022:
            raise KeyboardInterrupt("killed")
        return real(cfg, plan, prepared)

    monkeypatch.setattr(build_module, "write_city_year", crash_on_2022)
    with pytest.raises(KeyboardInterrupt):
        build_training_set(config, progress=False)
    assert (tmp_path / "ts" / ".incomplete").exists() and not (tmp_path / "ts" / "patches.json").exists()
    with pytest.raises(PatchDatasetError, match="still being built or whose build was interrupted"):
        PatchDataset(tmp_path / "ts", "train")
    written_2021 = {p: p.stat().st_mtime_ns for p in (tmp_path / "ts").rglob("wuhan_2021_*.tif")}
    monkeypatch.setattr(build_module, "write_city_year", real)
    summary = build_training_set(config, progress=False)
    assert not summary.reused and not (tmp_path / "ts" / ".incomplete").exists()
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ts").rglob("wuhan_2021_*.tif")} == written_2021
    assert len(PatchDataset(tmp_path / "ts", "train")) == summary.counts["train"] > 0


def test_empty_split_is_refused_with_what_to_change(tmp_path: Path, stac_api: str) -> None:
    """A buffer wider than the town: every training window is near a held-out block, so train comes out empty."""
    config = training_set_config(out=tmp_path / "ts", cities=[{"name": "wuhan"}], years=[2021], catalog=stac_api,
                                 split="blocked", patch_size=64, stride=40, block_km=0.64, buffer_px=250)
    with pytest.raises(TrainingSetError, match=r"leaves no train patches.*(--block-km [0-9.]+|No block size).*"
                                               r"--split random"):
        build_training_set(config, progress=False)
    assert not (tmp_path / "ts" / "patches.json").exists()


def test_by_city_needs_three_cities_or_names(tmp_path: Path, stac_api: str) -> None:
    config = training_set_config(out=tmp_path / "ts", cities=[{"name": "wuhan"}], years=[2021], catalog=stac_api,
                                 split="by-city", patch_size=64, stride=64)
    with pytest.raises(TrainingSetError, match="needs at least 3 cities"):
        build_training_set(config, progress=False)


def test_label_source_that_misses_the_aoi_names_the_city_year(tmp_path: Path, stac_api: str) -> None:
    import rasterio
    from affine import Affine

    from crofuse.errors import LabelError

    far = tmp_path / "elsewhere.tif"
    with rasterio.open(far, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8", crs="EPSG:32650",
                       transform=Affine(10, 0, 100_000, 0, -10, 1_000_000)) as dst:
        dst.write(np.ones((1, 10, 10), np.uint8))
    config = training_set_config(out=tmp_path / "ts", cities=[{"name": "wuhan"}], years=[2021], catalog=stac_api,
                                 labels=str(far), split="random", patch_size=64, stride=64)
    with pytest.raises(LabelError, match=r"labels only 0\.0% of the AOI of wuhan 2021"):
        build_training_set(config, progress=False)
    assert not (tmp_path / "ts" / "patches.json").exists()


def test_cli_builds_and_describes_a_training_set(tmp_path: Path, stac_api: str) -> None:
    from typer.testing import CliRunner

    from crofuse_cli import app

    out = tmp_path / "ts"
    result = CliRunner().invoke(app, ["training-set", "build", str(out), "--city", "wuhan", "--years", "2021",
                                      "--catalog", stac_api, "--split", "random", "--patch-size", "64",
                                      "--stride", "64", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "train:" in result.output and (out / "patches.json").exists()
    info = CliRunner().invoke(app, ["training-set", "info", str(out)])
    assert info.exit_code == 0 and json.loads(info.output)["split"]["kind"] == "random"
    bad = CliRunner().invoke(app, ["training-set", "build", str(tmp_path / "x"), "--city", "wuhan", "--years", "2021",
                                   "--catalog", stac_api, "--labels", "nowhere-labels"])
    assert bad.exit_code == 2 and "unknown label source 'nowhere-labels'" in bad.output
