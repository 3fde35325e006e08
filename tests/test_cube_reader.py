"""The one cube reader: keyed by path *and* identity (a cube rebuilt at the same path is never read stale), and the
same error type whether a chunk task runs in this process or on a dask worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crofuse.cube.reader import cube_identity, cube_reader
from crofuse.errors import CubeError
from tests.fixtures.tiling import make_cube
from tiling import TilingConfig, predict_cube

CONFIG = TilingConfig(chunk_size=64, device="cpu", torch_threads=1)


def _stamp(path: Path, build_id: str) -> Path:
    import zarr

    zarr.open_group(str(path), mode="r+").attrs.update({"fingerprint": "f" * 16, "build_id": build_id})
    return path


def test_a_cube_rebuilt_at_the_same_path_is_not_read_stale(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Reproduction of the stale cache: read a 64x64 cube, rebuild it at 96x128 at the same path, read it again."""
    path = _stamp(make_cube(tmp_path / "city" / "2024" / "inputs.zarr", (64, 64), seed=1, chunk=64), "a")
    first = predict_cube(path, tiny_checkpoint, tmp_path / "out1", config=CONFIG, progress=False)
    assert cube_reader(path).shape == (64, 64)
    _stamp(make_cube(path, (96, 128), seed=2, chunk=64), "b")
    reader = cube_reader(path)
    assert reader.shape == (96, 128) and reader.identity.endswith("/b")
    second = predict_cube(path, tiny_checkpoint, tmp_path / "out2", config=CONFIG, progress=False)
    import rasterio

    with rasterio.open(second.impervious) as src:
        assert (src.height, src.width) == (96, 128)
    optical, _, _ = reader(slice(0, 96), slice(0, 128))
    assert optical.shape == (4, 96, 128)
    assert first.chunks_total == 1 and second.chunks_total == 4
    with pytest.raises(CubeError, match="changed since the run started"):
        cube_reader(path, cube_identity({"fingerprint": "f" * 16, "build_id": "a"}))


def _corrupt_a_chunk(path: Path) -> None:
    chunk = sorted((path / "optical" / "c").rglob("*"))
    data_files = [c for c in chunk if c.is_file()]
    assert data_files, "the fixture cube has optical chunks on disk"
    data_files[-1].write_bytes(b"not a compressed chunk" * 8)


@pytest.mark.parametrize("with_client", [False, True])
def test_a_damaged_cube_is_a_cube_error_with_or_without_dask(tmp_path: Path, tiny_checkpoint: Path,
                                                            with_client: bool) -> None:
    path = _stamp(make_cube(tmp_path / "inputs.zarr", (128, 128), seed=4, chunk=64), "c")
    _corrupt_a_chunk(path)
    if not with_client:
        with pytest.raises(CubeError, match="the cube was removed or is damaged"):
            predict_cube(path, tiny_checkpoint, tmp_path / "out", config=CONFIG, progress=False)
        return
    from infra.cluster import ClusterConfig, dask_client

    with dask_client(ClusterConfig(kind="cpu", n_workers=1, threads_per_worker=1)) as client:
        with pytest.raises(CubeError, match="the cube was removed or is damaged"):
            predict_cube(path, tiny_checkpoint, tmp_path / "out", config=CONFIG, client=client, progress=False)
