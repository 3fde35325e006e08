"""WHU-IS style patch dataset (paper section II-B): co-registered optical, SAR and label patches.

Layout (``docs/architecture.md``)::

    ROOT/{train,val,test}/optical/<name>.tif   4 bands, Sentinel-2 B02, B03, B04, B08
    ROOT/{train,val,test}/sar/<name>.tif       2 bands, Sentinel-1 VV, VH
    ROOT/{train,val,test}/label/<name>.tif     1 band, 0 pervious, 1 impervious, 255 nodata

Units: optical is read as surface reflectance 0-1 and SAR as gamma0 in dB, the units the input cube hands to the
model at prediction time. Files may hold any numeric dtype; :class:`PatchUnits` converts other encodings (e.g.
Sentinel-2 DN 0-10000 with ``optical_scale=1e-4``, or linear SAR power with ``sar_in_db=False``) so that a real
WHU-IS download can be used without code changes. Pixels equal to a file's declared nodata value, and NaN, are
treated as missing: the label is set to nodata there, and :meth:`crofuse.normalization.Normalization.standardise`
(the rule the Predictor and tiled inference use too) sets the standardised input to 0, the band mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crofuse import NODATA_LABEL, OPTICAL_BANDS, SAR_BANDS
from crofuse.errors import PatchDatasetError

if TYPE_CHECKING:
    import torch

    from crofuse.data.augment import Augmentation
    from crofuse.normalization import Normalization

SPLITS: tuple[str, ...] = ("train", "val", "test")
MODALITIES: tuple[str, ...] = ("optical", "sar", "label")
EXPECTED_BANDS: dict[str, int] = {"optical": len(OPTICAL_BANDS), "sar": len(SAR_BANDS), "label": 1}
SIZE_MULTIPLE = 16
"""Patch sides must be divisible by 16: the UNet encoders pool four times (paper III-A, 128 -> 8)."""
_SUFFIXES = (".tif", ".tiff", ".TIF", ".TIFF")
INCOMPLETE_MARKER = ".incomplete"
"""Left in a training set's folder by ``crofuse.trainingset`` until its ``patches.json`` is written."""
_LAYOUT_HINT = "expected ROOT/{train,val,test}/{optical,sar,label}/<name>.tif with the same <name> in all three"


@dataclass(frozen=True)
class PatchUnits:
    """How the numbers in the patch files map to model units (reflectance 0-1, SAR dB).

    ``reflectance = value * optical_scale + optical_offset``; SAR is converted with ``10*log10`` when
    ``sar_in_db`` is False (linear gamma0 power). Defaults are for files that already hold model units.
    """

    optical_scale: float = 1.0
    optical_offset: float = 0.0
    sar_in_db: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"optical_scale": self.optical_scale, "optical_offset": self.optical_offset, "sar_in_db": self.sar_in_db}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchUnits:
        return cls(
            optical_scale=float(data.get("optical_scale", 1.0)),
            optical_offset=float(data.get("optical_offset", 0.0)),
            sar_in_db=bool(data.get("sar_in_db", True)),
        )


@dataclass(frozen=True)
class PatchFiles:
    """The three co-registered files of one patch."""

    name: str
    optical: Path
    sar: Path
    label: Path


@dataclass(frozen=True)
class RawPatch:
    """One patch in model units before normalisation; ``valid`` is False where any input band is missing."""

    optical: np.ndarray  # (4, H, W) float32, NaN where missing
    sar: np.ndarray  # (2, H, W) float32, NaN where missing
    label: np.ndarray  # (H, W) uint8 in {0, 1, 255}
    valid: np.ndarray = field(repr=False)  # (H, W) bool


def _list_tifs(folder: Path) -> dict[str, Path]:
    # hidden files are temporary outputs of an interrupted writer, never patches
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in _SUFFIXES and not p.name.startswith(".")
    }


def discover_split(root: str | Path, split: str) -> list[PatchFiles]:
    """List the patches of one split, checking that every optical file has its SAR and label partner.

    Raises :class:`PatchDatasetError` naming the first file whose partner is missing, or when the split is empty.
    """
    root = Path(root)
    split_dir = root / split
    if split not in SPLITS:
        raise PatchDatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if (root / INCOMPLETE_MARKER).exists():
        raise PatchDatasetError(
            f"{root} is a training set that is still being built or whose build was interrupted "
            f"({INCOMPLETE_MARKER} is there, patches.json is not): rerun `crofuse training-set build` to finish it"
        )
    if not split_dir.is_dir():
        raise PatchDatasetError(f"split folder {split_dir} does not exist; {_LAYOUT_HINT}")
    listings: dict[str, dict[str, Path]] = {}
    for modality in MODALITIES:
        folder = split_dir / modality
        if not folder.is_dir():
            raise PatchDatasetError(f"folder {folder} does not exist; {_LAYOUT_HINT}")
        listings[modality] = _list_tifs(folder)
    names = sorted(set().union(*(set(v) for v in listings.values())))
    if not names:
        raise PatchDatasetError(f"split {split_dir} is empty: no .tif patches found; {_LAYOUT_HINT}")
    for name in names:
        present = [m for m in MODALITIES if name in listings[m]]
        for modality in MODALITIES:
            if name not in listings[modality]:
                have = listings[present[0]][name]
                raise PatchDatasetError(
                    f"{split_dir / modality / (name + '.tif')} is missing: {have} has no {modality} partner; "
                    f"add it or remove the patch from all of {', '.join(MODALITIES)}"
                )
    return [PatchFiles(n, listings["optical"][n], listings["sar"][n], listings["label"][n]) for n in names]


def check_headers(patches: Sequence[PatchFiles], *, split_dir: Path | None = None) -> tuple[int, int]:
    """Check band counts and sizes from the file headers only (cheap); return the common ``(height, width)``."""
    import rasterio

    size: tuple[int, int] | None = None
    first: Path | None = None
    for patch in patches:
        for modality in MODALITIES:
            path: Path = getattr(patch, modality)
            try:
                with rasterio.open(path) as src:
                    count, shape, descriptions = src.count, (src.height, src.width), src.descriptions
            except rasterio.errors.RasterioError as exc:
                raise PatchDatasetError(f"{path} cannot be read as a raster ({exc}); replace or remove it") from exc
            want = EXPECTED_BANDS[modality]
            if count != want:
                bands = {"optical": ", ".join(OPTICAL_BANDS), "sar": ", ".join(SAR_BANDS), "label": "label"}[modality]
                raise PatchDatasetError(f"{path} has {count} bands; a {modality} patch needs {want} ({bands})")
            _check_band_order(path, modality, descriptions)
            if size is None:
                size, first = shape, path
                if shape[0] % SIZE_MULTIPLE or shape[1] % SIZE_MULTIPLE:
                    raise PatchDatasetError(
                        f"{path} is {shape[0]}x{shape[1]} pixels; patch sides must be divisible by {SIZE_MULTIPLE} "
                        "(the network pools four times); re-cut the patches, e.g. to 128x128"
                    )
            elif shape != size:
                where = f" in {split_dir}" if split_dir else ""
                raise PatchDatasetError(
                    f"{path} is {shape[0]}x{shape[1]} pixels but {first} is {size[0]}x{size[1]}; all patches{where} "
                    "must have the same size"
                )
    assert size is not None
    return size


def _canonical_band(name: str) -> str:
    """``"B2"``/``"b02"`` -> ``"B02"``, ``"vv"`` -> ``"VV"``."""
    name = name.strip().upper()
    if name.startswith("B") and name[1:].isdigit():
        return f"B{int(name[1:]):02d}"
    return name


def _check_band_order(path: Path, modality: str, descriptions: Sequence[str | None]) -> None:
    """When a file names its bands (GeoTIFF band descriptions), they must be the model's bands in model order."""
    expected = {"optical": OPTICAL_BANDS, "sar": SAR_BANDS}.get(modality)
    if expected is None or not descriptions or not all(descriptions):
        return
    found = tuple(_canonical_band(d) for d in descriptions if d)
    if set(found) == set(expected) and found != expected:
        raise PatchDatasetError(
            f"{path} stores its bands in the order {', '.join(found)}; crofuse expects {', '.join(expected)}; "
            "re-export the patches in that order"
        )


def _read_float(path: Path) -> np.ndarray:
    import rasterio

    try:
        with rasterio.open(path) as src:
            data = src.read(out_dtype="float32")
            nodata = src.nodata
    except rasterio.errors.RasterioError as exc:
        raise PatchDatasetError(f"{path} cannot be read ({exc}); replace or remove it") from exc
    if nodata is not None and not np.isnan(nodata):
        data[data == np.float32(nodata)] = np.nan
    return data


def read_patch(files: PatchFiles, *, units: PatchUnits = PatchUnits()) -> RawPatch:
    """Read one patch in model units, checking label values (paper II-B: 0 pervious, 1 impervious)."""
    import rasterio

    optical = _read_float(files.optical)
    if units.optical_scale != 1.0 or units.optical_offset != 0.0:
        optical = optical * np.float32(units.optical_scale) + np.float32(units.optical_offset)
    sar = _read_float(files.sar)
    if not units.sar_in_db:
        with np.errstate(divide="ignore", invalid="ignore"):
            sar = 10.0 * np.log10(sar)
        sar[~np.isfinite(sar)] = np.nan
    try:
        with rasterio.open(files.label) as src:
            raw = src.read(1)
            label_nodata = src.nodata
    except rasterio.errors.RasterioError as exc:
        raise PatchDatasetError(f"{files.label} cannot be read ({exc}); replace or remove it") from exc
    if np.issubdtype(raw.dtype, np.floating):
        raw = np.where(np.isnan(raw), NODATA_LABEL, raw)
    if label_nodata is not None and not np.isnan(label_nodata) and label_nodata not in (0, 1):
        raw = np.where(raw == label_nodata, NODATA_LABEL, raw)
    bad = ~np.isin(raw, (0, 1, NODATA_LABEL))
    if bad.any():
        values = np.unique(raw[bad])[:5].tolist()
        raise PatchDatasetError(
            f"{files.label} holds label values {values} outside {{0, 1, 255}} "
            f"({int(bad.sum())} pixels); labels must be 0 pervious, 1 impervious, 255 nodata"
        )
    label = raw.astype(np.uint8)
    if optical.shape[1:] != label.shape or sar.shape[1:] != label.shape:
        raise PatchDatasetError(
            f"{files.optical}, {files.sar} and {files.label} differ in size "
            f"({optical.shape[1:]}, {sar.shape[1:]}, {label.shape}); the three must be co-registered"
        )
    valid = np.isfinite(optical).all(axis=0) & np.isfinite(sar).all(axis=0)
    label = np.where(valid, label, np.uint8(NODATA_LABEL)).astype(np.uint8)
    return RawPatch(optical=optical, sar=sar, label=label, valid=valid)


class PatchDataset:
    """A torch map-style dataset over one split of a WHU-IS style patch set (paper II-B).

    Each item is a dict ``{"optical": float32 (4,H,W), "sar": float32 (2,H,W), "label": int64 (H,W),
    "name": str}``. With ``normalization`` given, inputs are standardised per band and missing pixels become 0
    (:meth:`~crofuse.normalization.Normalization.standardise`); without it, inputs are returned in model units with NaN kept. Augmentation
    (paper IV-A: vertical flip, rotation, Gaussian blur) is only allowed on the train split and is seeded per
    ``(seed, epoch, index)``, so a run is reproducible and workers do not repeat each other; call
    :meth:`set_epoch` at the start of every epoch.

    File headers (band counts, sizes, partners) are checked at construction; label values when a patch is read.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        normalization: Normalization | None = None,
        augmentation: Augmentation | None = None,
        units: PatchUnits = PatchUnits(),
        max_patches: int | None = None,
        seed: int = 0,
    ) -> None:
        if augmentation is not None and split != "train":
            raise PatchDatasetError(
                f"augmentation was requested for the {split!r} split; the paper (IV-A) augments the train split only"
            )
        if max_patches is not None and max_patches < 1:
            raise PatchDatasetError(f"max_patches must be at least 1, got {max_patches}")
        self.root = Path(root)
        self.split = split
        self.normalization = normalization
        self.augmentation = augmentation
        self.units = units
        self.seed = seed
        self.epoch = 0
        files = discover_split(self.root, split)
        if max_patches is not None:
            files = files[:max_patches]
        self.files: list[PatchFiles] = files
        self.patch_size: tuple[int, int] = check_headers(files, split_dir=self.root / split)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        h, w = self.patch_size
        return f"PatchDataset({str(self.root)!r}, split={self.split!r}, patches={len(self)}, size={h}x{w})"

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation random stream for this epoch."""
        self.epoch = int(epoch)

    def read(self, index: int) -> RawPatch:
        """The patch at ``index`` in model units, before normalisation and augmentation."""
        return read_patch(self.files[index], units=self.units)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        patch = self.read(index)
        optical, sar, label = patch.optical, patch.sar, patch.label
        if self.normalization is not None:
            optical, sar = self.normalization.standardise(optical, sar)
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            optical, sar, label = self.augmentation(optical, sar, label, rng=rng)
        return {
            "optical": torch.from_numpy(np.ascontiguousarray(optical, dtype=np.float32)),
            "sar": torch.from_numpy(np.ascontiguousarray(sar, dtype=np.float32)),
            "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)),
            "name": self.files[index].name,
        }


def collate_patches(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of items into a batch (names stay a list)."""
    import torch

    return {
        "optical": torch.stack([b["optical"] for b in batch]),
        "sar": torch.stack([b["sar"] for b in batch]),
        "label": torch.stack([b["label"] for b in batch]),
        "name": [b["name"] for b in batch],
    }


def as_tensors(item: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(optical, sar, label)`` of an item or batch, for code that prefers tuples."""
    return item["optical"], item["sar"], item["label"]
