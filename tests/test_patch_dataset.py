"""WHU-IS style patch dataset: reading, bad-input errors, normalisation statistics, augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from crofuse.data import Augmentation, PatchDataset, PatchUnits, compute_normalization
from crofuse.errors import ConfigError, PatchDatasetError
from tests.fixtures.patches import make_patch, write_patch, write_patch_set, write_tif


def _small_set(root: Path, *, n: int = 3, size: int = 32) -> Path:
    return write_patch_set(root, counts={"train": n, "val": 2}, size=size, seed=3)


def _names(root: Path, split: str) -> list[str]:
    return sorted(p.stem for p in (root / split / "optical").glob("*.tif"))


def test_reads_generated_patch_set(patch_dataset: Path) -> None:
    ds = PatchDataset(patch_dataset, "train")
    assert len(ds) == len(_names(patch_dataset, "train")) > 20
    assert ds.patch_size == (32, 32)
    item = ds[0]
    assert item["name"] == _names(patch_dataset, "train")[0]
    assert item["optical"].shape == (4, 32, 32) and item["optical"].dtype == torch.float32
    assert item["sar"].shape == (2, 32, 32) and item["sar"].dtype == torch.float32
    assert item["label"].shape == (32, 32) and item["label"].dtype == torch.int64
    labels = torch.stack([ds[i]["label"] for i in range(len(ds))])
    assert set(labels.unique().tolist()) <= {0, 1, 255}
    assert 0.05 < float((labels == 1).sum()) / float((labels != 255).sum()) < 0.95
    # raw mode (no normalisation) returns model units: reflectance 0-1 and SAR dB
    assert 0.0 < float(item["optical"][0].nanmean()) < 0.5
    assert -30.0 < float(item["sar"][0].nanmean()) < 5.0
    assert len(PatchDataset(patch_dataset, "val")) == len(_names(patch_dataset, "val"))
    assert len(PatchDataset(patch_dataset, "test", max_patches=3)) == 3


def test_generated_gaps_become_nodata(patch_dataset: Path) -> None:
    """Wherever the generator left NaN (no clear view all season) the label is nodata and inputs are filled."""
    norm = compute_normalization(patch_dataset)
    raw = PatchDataset(patch_dataset, "train")
    ds = PatchDataset(patch_dataset, "train", normalization=norm)
    for i in range(len(ds)):
        patch, item = raw.read(i), ds[i]
        assert torch.isfinite(item["optical"]).all() and torch.isfinite(item["sar"]).all()
        missing = ~np.isfinite(patch.optical).all(0) | ~np.isfinite(patch.sar).all(0)
        assert (item["label"].numpy()[missing] == 255).all()


def test_batches_through_a_dataloader(patch_dataset: Path) -> None:
    from torch.utils.data import DataLoader

    from crofuse.data import collate_patches

    norm = compute_normalization(patch_dataset)
    loader = DataLoader(PatchDataset(patch_dataset, "val", normalization=norm), batch_size=4, collate_fn=collate_patches)
    batch = next(iter(loader))
    assert batch["optical"].shape == (4, 4, 32, 32)
    assert batch["label"].shape == (4, 32, 32)
    assert batch["name"] == _names(patch_dataset, "val")[:4]


def test_missing_partner_names_the_file(tmp_path: Path) -> None:
    root = _small_set(tmp_path)
    write_patch(root, "train", "orphan", *make_patch(np.random.default_rng(0)), skip=("sar",))
    with pytest.raises(PatchDatasetError, match=r"sar[/\\]orphan\.tif is missing"):
        PatchDataset(root, "train")


def test_wrong_band_count_names_the_file(tmp_path: Path) -> None:
    root = _small_set(tmp_path)
    optical, sar, label = make_patch(np.random.default_rng(0))
    write_patch(root, "train", "threeband", optical[:3], sar, label)
    with pytest.raises(PatchDatasetError, match=r"threeband\.tif has 3 bands; a optical patch needs 4"):
        PatchDataset(root, "train")


def test_patch_sizes_must_agree(tmp_path: Path) -> None:
    root = _small_set(tmp_path)
    write_patch(root, "train", "zbig", *make_patch(np.random.default_rng(0), size=48))
    with pytest.raises(PatchDatasetError, match=r"zbig\.tif is 48x48 pixels but .*p0000\.tif is 32x32"):
        PatchDataset(root, "train")


def test_patch_size_must_be_divisible_by_16(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    write_patch(root, "train", "a", *make_patch(np.random.default_rng(0), size=40))
    with pytest.raises(PatchDatasetError, match=r"a\.tif is 40x40 pixels; patch sides must be divisible by 16"):
        PatchDataset(root, "train")


def test_label_values_checked_when_read(tmp_path: Path) -> None:
    root = _small_set(tmp_path)
    optical, sar, label = make_patch(np.random.default_rng(0))
    label = label.copy()
    label[0, 0] = 7
    write_patch(root, "train", "zbadlabel", optical, sar, label)
    ds = PatchDataset(root, "train")  # headers are fine: construction succeeds
    with pytest.raises(PatchDatasetError, match=r"zbadlabel\.tif holds label values \[7\] outside \{0, 1, 255\}"):
        ds[len(ds) - 1]


def test_empty_or_missing_split(tmp_path: Path) -> None:
    root = _small_set(tmp_path)
    for modality in ("optical", "sar", "label"):
        (root / "test" / modality).mkdir(parents=True)
    with pytest.raises(PatchDatasetError, match=r"test is empty"):
        PatchDataset(root, "test")
    shutil.rmtree(root / "val")
    with pytest.raises(PatchDatasetError, match=r"val does not exist"):
        PatchDataset(root, "val")


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    root = _small_set(tmp_path)
    (root / "train" / "sar" / "p0001.tif").write_bytes(b"not a tiff")
    with pytest.raises(PatchDatasetError, match=r"p0001\.tif cannot be read"):
        PatchDataset(root, "train")


def test_normalisation_statistics_match_numpy(tmp_path: Path) -> None:
    root = _small_set(tmp_path, n=5)
    # a NaN hole and a nodata-valued file must be excluded from the statistics
    rng = np.random.default_rng(9)
    optical, sar, label = make_patch(rng)
    optical[:, :4, :4] = np.nan
    write_patch(root, "train", "holes", optical, sar, label)
    o2, s2, l2 = make_patch(rng)
    o2[2, 5:9, 5:9] = -9999.0
    write_tif(root / "train" / "optical" / "nodata.tif", o2, nodata=-9999.0)
    write_tif(root / "train" / "sar" / "nodata.tif", s2)
    write_tif(root / "train" / "label" / "nodata.tif", l2)

    ds = PatchDataset(root, "train")
    opticals = np.stack([ds.read(i).optical for i in range(len(ds))])
    sars = np.stack([ds.read(i).sar for i in range(len(ds))])
    assert np.isnan(opticals).sum() == 4 * 16 + 16

    norm = compute_normalization(root)
    np.testing.assert_allclose(norm.optical_mean, np.nanmean(opticals, axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(norm.optical_std, np.nanstd(opticals, axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(norm.sar_mean, np.nanmean(sars, axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(norm.sar_std, np.nanstd(sars, axis=(0, 2, 3)), rtol=1e-5)


def test_nan_pixels_become_nodata_and_band_mean(tmp_path: Path) -> None:
    root = _small_set(tmp_path)
    optical, sar, label = make_patch(np.random.default_rng(1))
    sar[1, 10, 11] = np.nan
    write_patch(root, "train", "zhole", optical, sar, label)
    norm = compute_normalization(root)
    ds = PatchDataset(root, "train", normalization=norm)
    item = ds[len(ds) - 1]
    assert int(item["label"][10, 11]) == 255
    assert int((item["label"] == 255).sum()) == 1
    # filled with the band mean, so it normalises to exactly 0 in every band of that modality that was missing
    assert float(item["sar"][1, 10, 11]) == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(item["optical"]).all() and torch.isfinite(item["sar"]).all()
    # normalised train inputs are roughly standardised
    stacked = torch.stack([ds[i]["optical"] for i in range(len(ds))])
    assert stacked.mean(dim=(0, 2, 3)).abs().max() < 0.05
    assert (stacked.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05


def test_units_convert_dn_and_linear_sar(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    optical, sar, label = make_patch(np.random.default_rng(2))
    write_patch(root, "train", "a", (optical.clip(0) * 10000).round().astype(np.uint16), 10 ** (sar / 10), label)
    ds = PatchDataset(root, "train", units=PatchUnits(optical_scale=1e-4, sar_in_db=False))
    patch = ds.read(0)
    np.testing.assert_allclose(patch.optical, optical.clip(0), atol=1e-4)
    np.testing.assert_allclose(patch.sar, sar, atol=1e-3)


def _marker_patch(size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    optical = np.zeros((4, size, size), np.float32)
    sar = np.zeros((2, size, size), np.float32)
    label = np.zeros((size, size), np.uint8)
    optical[:, 3, 7] = 10.0
    sar[:, 3, 7] = 10.0
    label[3, 7] = 1
    return optical, sar, label


def test_augmentation_keeps_modalities_aligned() -> None:
    aug = Augmentation(vflip=0.5, hflip=0.5, rotate90=True, blur=0.0)
    seen = set()
    for seed in range(40):
        optical, sar, label = aug(*_marker_patch(), rng=np.random.default_rng(seed))
        where_label = tuple(np.argwhere(label == 1)[0])
        assert tuple(np.unravel_index(optical[2].argmax(), optical[2].shape)) == where_label
        assert tuple(np.unravel_index(sar[1].argmax(), sar[1].shape)) == where_label
        assert label.sum() == 1
        seen.add(where_label)
    assert len(seen) >= 4  # flips and rotations really move the marker


def test_arbitrary_angle_rotation_aligned_and_labels_stay_valid() -> None:
    aug = Augmentation(vflip=0.0, rotate90=False, max_angle=20.0, blur=0.0)
    optical, sar, label = _marker_patch()
    optical[:, 14:18, 14:18] = 10.0
    sar[:, 14:18, 14:18] = 10.0
    label[14:18, 14:18] = 1
    o, s, lab = aug(optical, sar, label, rng=np.random.default_rng(5))
    assert set(np.unique(lab).tolist()) <= {0, 1, 255}
    assert (lab == 255).any()  # corners rotated in from outside are nodata
    centre = lab[15:17, 15:17]
    assert (centre == 1).all() and (o[:, 15:17, 15:17] > 5).all() and (s[:, 15:17, 15:17] > 5).all()


def test_blur_touches_inputs_never_labels() -> None:
    aug = Augmentation(vflip=0.0, rotate90=False, blur=1.0, blur_sigma=(1.0, 1.0))
    optical, sar, label = _marker_patch()
    o, s, lab = aug(optical, sar, label, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(lab, label)
    assert o[0, 3, 7] < 10.0 and o[0, 3, 8] > 0.0  # spread out
    assert s[0, 3, 7] < 10.0 and s[0, 4, 7] > 0.0


def test_augmentation_is_train_only_and_seeded(patch_dataset: Path) -> None:
    aug = Augmentation()
    with pytest.raises(PatchDatasetError, match="train split only"):
        PatchDataset(patch_dataset, "val", augmentation=aug)
    a = PatchDataset(patch_dataset, "train", augmentation=aug, seed=1)
    b = PatchDataset(patch_dataset, "train", augmentation=aug, seed=1)
    plain = PatchDataset(patch_dataset, "train")
    differs = 0
    for i in range(6):
        torch.testing.assert_close(a[i]["optical"], b[i]["optical"])
        torch.testing.assert_close(a[i]["label"], b[i]["label"])
        differs += int(not torch.equal(a[i]["label"], plain[i]["label"]))
    assert differs >= 2
    first = [a[i]["label"] for i in range(6)]
    a.set_epoch(1)
    assert any(not torch.equal(first[i], a[i]["label"]) for i in range(6))  # new epoch, new draws


def test_bad_augmentation_config() -> None:
    with pytest.raises(ConfigError, match="probability"):
        Augmentation(vflip=1.5)


def test_band_order_from_descriptions_is_checked(tmp_path: Path) -> None:
    import rasterio

    root = _small_set(tmp_path)
    with rasterio.open(root / "train" / "optical" / "p0001.tif", "r+") as dst:
        for i, name in enumerate(("B8", "B4", "B3", "B2"), start=1):
            dst.set_band_description(i, name)
    with pytest.raises(PatchDatasetError, match=r"p0001\.tif stores its bands in the order B08, B04, B03, B02"):
        PatchDataset(root, "train")
    with rasterio.open(root / "train" / "optical" / "p0001.tif", "r+") as dst:
        for i, name in enumerate(("B2", "B3", "B4", "B8"), start=1):
            dst.set_band_description(i, name)
    assert len(PatchDataset(root, "train")) == 3


def test_hidden_temporary_files_are_not_patches(tmp_path: Path) -> None:
    root = _small_set(tmp_path)
    (root / "train" / "optical" / ".p0009.abc.tmp.tif").write_bytes(b"partial")
    assert len(PatchDataset(root, "train")) == 3
