"""Per-pixel random forest and SVM baselines (paper IV-A2 comparison methods [36], [37]).

The paper compares CroFuseNet with a random forest (Breiman 2001) and a support vector machine (Cortes and Vapnik
1995), "the two most widely used ... machine learning algorithms in IS extraction". Both classify each pixel on its own
from a feature vector. Two feature sets (:data:`FEATURE_SETS`, ``PixelClassifierConfig.features``):

- ``"bands"`` (default, the paper's setting: the same concatenated optical + SAR bands every method gets):
  ``B02 B03 B04 B08`` surface reflectance and ``VV VH`` gamma0 in dB, as stored in the patches;
- ``"bands+indices"`` (a fairness control: hand-made features a per-pixel method is usually given) adds
- NDVI ``(B08 - B04) / (B08 + B04)`` and NDWI ``(B03 - B08) / (B03 + B08)`` (McFeeters);
- an NDBI-like built-up index. The NDBI needs SWIR (B11), which is not among the model's bands, so we use the
  normalised difference of visible brightness and NIR, ``(mean(B02, B03, B04) - B08) / (mean(B02, B03, B04) + B08)``:
  impervious surfaces are bright and spectrally flat, vegetation is dark in the visible and bright in the NIR;
- the VV/VH ratio, i.e. the difference ``VV - VH`` in dB.

Training draws a seeded random sample of labelled (not nodata) pixels from the training patches; prediction classifies
every pixel of whole patches. Features are standardised (``StandardScaler``) before the classifier, which matters for
the RBF SVM. Both are scikit-learn models; nothing here is pretrained.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crofuse import NODATA_LABEL, OPTICAL_BANDS, SAR_BANDS
from crofuse.errors import ConfigError, PatchDatasetError

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SETS",
    "PixelClassifier",
    "PixelClassifierConfig",
    "feature_columns",
    "iter_patches",
    "pixel_features",
    "sample_training_pixels",
    "train_pixel_classifier",
]

FEATURE_NAMES: tuple[str, ...] = (*OPTICAL_BANDS, *SAR_BANDS, "ndvi", "ndwi", "ndbi_like", "vv_minus_vh_db")
"""Names of the per-pixel features :func:`pixel_features` computes, in column order."""

FeatureSet = Literal["bands", "bands+indices"]
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "bands": FEATURE_NAMES[: len(OPTICAL_BANDS) + len(SAR_BANDS)],
    "bands+indices": FEATURE_NAMES,
}
"""The columns each feature set uses: the 6 bands (the paper's setting) or the bands and 4 indices."""

_EPS = 1e-6


@dataclass(frozen=True)
class PixelClassifierConfig:
    """Settings of a per-pixel baseline.

    Args:
        method: ``"rf"`` (random forest) or ``"svm"`` (RBF support vector machine).
        n_samples: labelled training pixels drawn (seeded, uniformly over all labelled training pixels).
        seed: seed of the pixel sample and of the random forest.
        rf_trees: number of trees of the random forest.
        rf_max_depth: maximum tree depth (``None``: grow until pure, scikit-learn's default).
        rf_min_samples_leaf: minimum samples per leaf.
        svm_c: SVM regularisation ``C``.
        svm_gamma: RBF kernel width (``"scale"`` is scikit-learn's default, ``1 / (n_features · var(X))``).
        n_jobs: parallel jobs of the random forest.
        features: ``"bands"`` (the 6 input bands, the paper's setting) or ``"bands+indices"`` (plus NDVI, NDWI,
            the NDBI-like index and VV-VH), see :data:`FEATURE_SETS`.
    """

    method: Literal["rf", "svm"]
    n_samples: int = 20_000
    seed: int = 0
    rf_trees: int = 100
    rf_max_depth: int | None = None
    rf_min_samples_leaf: int = 1
    svm_c: float = 1.0
    svm_gamma: float | str = "scale"
    n_jobs: int = 1
    features: FeatureSet = "bands"

    def __post_init__(self) -> None:
        if self.features not in FEATURE_SETS:
            raise ConfigError(f"pixel features must be one of {sorted(FEATURE_SETS)}, got {self.features!r}")
        if self.method not in ("rf", "svm"):
            raise ConfigError(f"pixel classifier method must be 'rf' or 'svm', got {self.method!r}")
        if self.n_samples < 2:
            raise ConfigError(f"n_samples must be at least 2 labelled pixels, got {self.n_samples}")
        if self.rf_trees < 1:
            raise ConfigError(f"rf_trees must be >= 1, got {self.rf_trees}")
        if self.svm_c <= 0:
            raise ConfigError(f"svm_c must be > 0, got {self.svm_c}")


def pixel_features(optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
    """Per-pixel feature vectors (columns :data:`FEATURE_NAMES`) from ``optical (4, H, W)`` and ``sar (2, H, W)``.

    Optical is surface reflectance (0–1), SAR gamma0 in dB. Returns ``(H · W, 10)`` float32 in row-major pixel
    order. Non-finite inputs give non-finite features; callers mask them.
    """
    optical = np.asarray(optical, dtype=np.float32)
    sar = np.asarray(sar, dtype=np.float32)
    if optical.ndim != 3 or optical.shape[0] != len(OPTICAL_BANDS):
        raise PatchDatasetError(f"optical must be ({len(OPTICAL_BANDS)}, H, W) reflectance, got shape {optical.shape}")
    if sar.ndim != 3 or sar.shape[0] != len(SAR_BANDS) or sar.shape[1:] != optical.shape[1:]:
        raise PatchDatasetError(
            f"sar must be ({len(SAR_BANDS)}, H, W) dB on the optical grid {optical.shape[1:]}, got shape {sar.shape}"
        )
    b02, b03, b04, b08 = optical
    vv, vh = sar
    visible = (b02 + b03 + b04) / 3.0

    def nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        total = a + b
        return (a - b) / np.where(np.abs(total) < _EPS, _EPS, total)

    feats = np.stack([b02, b03, b04, b08, vv, vh, nd(b08, b04), nd(b03, b08), nd(visible, b08), vv - vh])
    return feats.reshape(len(FEATURE_NAMES), -1).T.astype(np.float32, copy=False)


def _read_label(path: Path) -> np.ndarray:
    """The label band only (cheap count of labelled pixels; values are checked later by ``read_patch``)."""
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def list_patches(root: Path | str, split: str) -> list[str]:
    """Sorted patch names of ``root/split`` (WHU-IS layout, checked by :func:`crofuse.data.discover_split`)."""
    from crofuse.data import discover_split

    return [f.name for f in discover_split(root, split)]


def iter_patches(
    root: Path | str, split: str, *, names: list[str] | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(name, optical (4,H,W), sar (2,H,W), label (H,W))`` of a split in model units (reflectance, dB).

    Read with :func:`crofuse.data.read_patch`: missing inputs are NaN and their label is nodata (255).
    """
    from crofuse.data import discover_split, read_patch

    files = discover_split(root, split)
    if names is not None:
        by_name = {f.name: f for f in files}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise PatchDatasetError(f"patches {missing[:5]} are not in {Path(root) / split}")
        files = [by_name[n] for n in names]
    for f in files:
        patch = read_patch(f)
        yield f.name, patch.optical, patch.sar, patch.label


def feature_columns(features: str) -> np.ndarray:
    """Column indices of :data:`FEATURE_NAMES` that feature set ``features`` uses."""
    if features not in FEATURE_SETS:
        raise ConfigError(f"pixel features must be one of {sorted(FEATURE_SETS)}, got {features!r}")
    return np.array([FEATURE_NAMES.index(n) for n in FEATURE_SETS[features]])


def sample_training_pixels(
    root: Path | str, *, n_samples: int, seed: int, split: str = "train", max_patches: int | None = None,
    features: str = "bands+indices",
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded uniform sample of up to ``n_samples`` labelled pixels ``(features, labels)`` from ``split``.

    Two passes keep memory small on large patch sets: the first counts the labelled (not nodata) pixels of every
    patch, one generator seeded by ``seed`` draws pixel indices uniformly over all of them without replacement, and the
    second pass computes features only for the drawn pixels. Drawn pixels whose inputs are not finite are dropped.
    ``max_patches`` keeps the first N patches by name, as the deep models' trainer does. ``features`` picks the
    columns (:data:`FEATURE_SETS`; default all of :data:`FEATURE_NAMES`).
    """
    from crofuse.data import discover_split

    columns = feature_columns(features)
    files = discover_split(root, split)[:max_patches]
    names = [f.name for f in files]
    base = Path(root) / split
    counts = np.array([int((_read_label(f.label) != NODATA_LABEL).sum()) for f in files])
    total = int(counts.sum())
    if total == 0:
        raise PatchDatasetError(f"no labelled pixels in {base}: every label is nodata ({NODATA_LABEL})")
    rng = np.random.default_rng(seed)
    draw = np.sort(rng.choice(total, size=min(n_samples, total), replace=False))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    feats, labels = [], []
    for i, (_, optical, sar, label) in enumerate(iter_patches(root, split, names=names)):
        lo, hi = np.searchsorted(draw, [offsets[i], offsets[i + 1]])
        if lo == hi:
            continue
        # positions counted in pass 1 (raw label file), then dropped where read_patch found missing inputs
        labelled = np.flatnonzero(_read_label(files[i].label).reshape(-1) != NODATA_LABEL)[draw[lo:hi] - offsets[i]]
        flat = label.reshape(-1)[labelled]
        x = pixel_features(optical, sar)[labelled][:, columns]
        ok = np.isfinite(x).all(axis=1) & (flat != NODATA_LABEL)
        feats.append(x[ok])
        labels.append(flat[ok])
    x_all = np.concatenate(feats)
    y_all = np.concatenate(labels)
    if len(np.unique(y_all)) < 2:
        raise PatchDatasetError(
            f"the pixel sample from {base} holds only class {int(y_all[0])}; a classifier needs both classes "
            "(more patches or a larger n_samples)"
        )
    return x_all, y_all


@dataclass
class PixelClassifier:
    """A fitted per-pixel classifier (standardiser + RF/SVM) that predicts whole patches."""

    config: PixelClassifierConfig
    pipeline: Any = field(repr=False)
    fit_seconds: float = 0.0
    n_train_pixels: int = 0

    @classmethod
    def build(cls, config: PixelClassifierConfig) -> PixelClassifier:
        """An unfitted classifier for ``config``."""
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        if config.method == "rf":
            clf: Any = RandomForestClassifier(
                n_estimators=config.rf_trees,
                max_depth=config.rf_max_depth,
                min_samples_leaf=config.rf_min_samples_leaf,
                random_state=config.seed,
                n_jobs=config.n_jobs,
            )
        else:
            clf = SVC(C=config.svm_c, gamma=config.svm_gamma, kernel="rbf", random_state=config.seed)
        return cls(config=config, pipeline=make_pipeline(StandardScaler(), clf))

    def fit(self, features: np.ndarray, labels: np.ndarray) -> PixelClassifier:
        """Fit on ``features (n, len(FEATURE_SETS[config.features]))`` and ``labels (n,)`` (0/1)."""
        t0 = time.perf_counter()
        self.pipeline.fit(features, labels)
        self.fit_seconds = time.perf_counter() - t0
        self.n_train_pixels = int(len(labels))
        return self

    def predict_patch(self, optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
        """Class map ``(H, W)`` uint8 (1 impervious, 0 pervious, 255 where an input is not finite)."""
        x = pixel_features(optical, sar)[:, feature_columns(self.config.features)]
        ok = np.isfinite(x).all(axis=1)
        out = np.full(x.shape[0], NODATA_LABEL, dtype=np.uint8)
        if ok.any():
            out[ok] = self.pipeline.predict(x[ok]).astype(np.uint8)
        return out.reshape(optical.shape[1:])

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (config, fit time, training pixels)."""
        return {"config": asdict(self.config), "fit_seconds": self.fit_seconds, "n_train_pixels": self.n_train_pixels}


def train_pixel_classifier(
    root: Path | str, config: PixelClassifierConfig, *, max_patches: int | None = None
) -> PixelClassifier:
    """Draw the seeded training pixel sample from ``root/train`` (first ``max_patches``) and fit ``config``."""
    features, labels = sample_training_pixels(root, n_samples=config.n_samples, seed=config.seed,
                                              max_patches=max_patches, features=config.features)
    return PixelClassifier.build(config).fit(features, labels)
