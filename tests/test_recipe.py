"""The composite recipe travels from the training set to the model card, and predict_cube checks it against the
cube it maps: another reducer or season warns (naming both values), --strict refuses, other bands are refused, and
nothing is written before the checks pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from crofuse.cube.recipe import compare_recipes, composite_recipe, season_window
from crofuse.errors import CheckpointMismatchError
from tests.fixtures.model import make_checkpoint


def test_recipe_of_cube_attributes_and_comparison() -> None:
    attrs = {"profile": "sample", "optical_reducer": "median", "season": "2021-06-01/2021-06-30",
             "scl_mask": [10, 0, 1, 3, 8, 9], "loader": "odc-stac", "resolution": 10.0, "max_cloud_cover": 80.0}
    recipe = composite_recipe(attrs)
    assert recipe["season"] == "06-01/06-30" and recipe["scl_mask"] == [0, 1, 3, 8, 9, 10]
    assert season_window("2021-12-01/2022-02-28") == "12-01/02-28"
    assert compare_recipes(recipe, composite_recipe(attrs | {"season": "2024-06-01/2024-06-30"})) == []
    diffs = compare_recipes(recipe, composite_recipe(attrs | {"optical_reducer": "mean", "resolution": 20.0,
                                                              "loader": "stackstac"}))
    assert [(d.field, d.severity) for d in diffs] == [("resolution", "refuse"), ("optical_reducer", "warn"),
                                                      ("loader", "info")]
    assert "trained on 'median', this cube has 'mean'" in diffs[1].describe()
    assert compare_recipes(None, recipe) == []


@pytest.fixture(scope="module")
def mean_cube(stac_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from crofuse.cube import CubeConfig, build_cube
    from crofuse.labels import city_extent

    return build_cube(CubeConfig(city="wuhan", year=2021, aoi=city_extent(stac_api, "wuhan"), catalog=stac_api,
                                 output=tmp_path_factory.mktemp("cubes"), optical_reducer="mean"), progress=False)


def _checkpoint(path: Path, mean_cube: Path, **changes: object) -> Path:
    from crofuse.cube import open_cube

    recipe = composite_recipe(open_cube(mean_cube).attrs) | {"optical_reducer": "median"} | changes
    return make_checkpoint(path, training_data={"recipe": recipe})


def test_reducer_mismatch_warns_and_strict_refuses(mean_cube: Path, tmp_path: Path) -> None:
    from tiling import TilingConfig, predict_cube
    from tiling.predict import RecipeWarning

    ckpt = _checkpoint(tmp_path / "median.safetensors", mean_cube)
    config = TilingConfig(device="cpu", chunk_size=256, torch_threads=1)
    with pytest.raises(CheckpointMismatchError, match="optical_reducer: trained on 'median', this cube has 'mean'"):
        predict_cube(mean_cube, ckpt, tmp_path / "strict", config=config, progress=False, strict=True)
    assert not (tmp_path / "strict").exists(), "refused before any output was created"
    with pytest.warns(RecipeWarning, match="trained on 'median', this cube has 'mean'"):
        out = predict_cube(mean_cube, ckpt, tmp_path / "lenient", config=config, progress=False)
    assert out.impervious.exists() and any("'mean'" in w for w in out.warnings)


def test_other_bands_or_resolution_are_refused_even_without_strict(mean_cube: Path, tmp_path: Path) -> None:
    from crofuse.normalization import Normalization
    from tiling import TilingConfig, predict_cube

    config = TilingConfig(device="cpu", chunk_size=256)
    coarse = _checkpoint(tmp_path / "coarse.safetensors", mean_cube, optical_reducer="mean", resolution=20.0)
    with pytest.raises(CheckpointMismatchError, match="resolution: trained on 20.0, this cube has 10.0"):
        predict_cube(mean_cube, coarse, tmp_path / "a", config=config, progress=False)
    hh = make_checkpoint(tmp_path / "hh.safetensors", sar_bands=("VV", "HH"),
                         normalization=Normalization((0.1,) * 4, (0.1,) * 4, (-10.0, -17.0), (4.0, 4.0)))
    with pytest.raises(CheckpointMismatchError, match="was trained on bands"):
        predict_cube(mean_cube, hh, tmp_path / "b", config=config, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_trained_checkpoint_card_records_the_training_set(patch_dataset: Path, tmp_path: Path) -> None:
    from crofuse.checkpoint import read_card
    from crofuse.training import TrainConfig, train

    result = train(TrainConfig(data_root=patch_dataset, out_dir=tmp_path / "run", model="crofusenet",
                               model_options={"base_channels": 4}, max_epochs=1, batch_size=8, max_patches=8,
                               device="cpu", progress=False))
    card = read_card(result.best_checkpoint)
    data = card.training_data
    assert data["recipe"]["optical_reducer"] == "median" and data["recipe"]["season"] == "06-01/06-30"
    assert data["labels"]["name"] == "sample-exact"
    assert data["split"]["kind"] == "blocked" and data["split"]["block_km"] == 0.96
    assert [c["city"] for c in data["training_set"]["city_years"]] == ["wuhan"]
