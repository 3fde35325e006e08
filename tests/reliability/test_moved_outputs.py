"""Issue 14, item 14: the resume key is the content (cube identity, checkpoint sha256, options), not a path. A
finished output tree that is copied or moved elsewhere, with its cube, is recognised as finished: no model work,
no COG rewritten."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fixtures.tiling import make_cube
from tiling import TilingConfig, predict_cube

CONFIG = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)


def _cube(path: Path, seed: int) -> Path:
    """A contract cube with the identity :func:`crofuse.cube.store.publish` gives every built cube."""
    import uuid

    import zarr

    make_cube(path, (128, 128), seed=seed, chunk=64)
    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update(fingerprint=f"test-{seed}", build_id=uuid.uuid4().hex)
    zarr.consolidate_metadata(str(path))
    return path


def _maps(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tif"))}


def test_a_moved_finished_tree_is_not_recomputed(tiling_checkpoint: Path, tmp_path: Path) -> None:
    city_year = tmp_path / "first" / "testville" / "2024"
    cube = _cube(city_year / "inputs.zarr", 5)
    first = predict_cube(cube, tiling_checkpoint, city_year, config=CONFIG, progress=False)
    assert first.chunks_computed == first.chunks_total == 4
    before = _maps(city_year)
    assert {"impervious.tif", "probability.tif"} <= set(before)

    moved = tmp_path / "elsewhere" / "testville" / "2024"
    shutil.move(str(tmp_path / "first"), str(tmp_path / "elsewhere"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in moved.glob("*.tif")}
    again = predict_cube(moved / "inputs.zarr", tiling_checkpoint, moved, config=CONFIG, progress=False)
    assert again.chunks_computed == 0 and again.chunks_skipped == 4
    assert _maps(moved) == before
    assert {p.name: p.stat().st_mtime_ns for p in moved.glob("*.tif")} == mtimes  # nothing rewritten

    copied = tmp_path / "copy" / "testville" / "2024"
    shutil.copytree(moved.parent.parent, copied.parent.parent)
    third = predict_cube(copied / "inputs.zarr", tiling_checkpoint, copied, config=CONFIG, progress=False)
    assert third.chunks_computed == 0
    assert _maps(copied) == before

    # the key is content: another cube at the copied path is computed again
    shutil.rmtree(copied / "inputs.zarr")
    _cube(copied / "inputs.zarr", 6)
    fourth = predict_cube(copied / "inputs.zarr", tiling_checkpoint, copied, config=CONFIG, progress=False)
    assert fourth.chunks_computed == 4
    assert _maps(copied)["probability.tif"] != before["probability.tif"]


def test_a_cube_without_identity_is_keyed_by_its_path(tiling_checkpoint: Path, tmp_path: Path) -> None:
    """A hand-made cube with no ``fingerprint``/``build_id`` has no content identity: another one elsewhere must
    not pass for a finished run, so such a tree, moved, is recomputed (the safe side)."""
    city_year = tmp_path / "a" / "testville" / "2024"
    make_cube(city_year / "inputs.zarr", (128, 128), seed=5, chunk=64)
    assert predict_cube(city_year / "inputs.zarr", tiling_checkpoint, city_year, config=CONFIG,
                        progress=False).chunks_computed == 4
    assert predict_cube(city_year / "inputs.zarr", tiling_checkpoint, city_year, config=CONFIG,
                        progress=False).chunks_computed == 0
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    moved = tmp_path / "b" / "testville" / "2024"
    again = predict_cube(moved / "inputs.zarr", tiling_checkpoint, moved, config=CONFIG, progress=False)
    assert again.chunks_computed == 4
