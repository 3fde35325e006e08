"""Checkpoints: one ``.safetensors`` file whose metadata holds a JSON :class:`ModelCard`; never a pickle.

- :func:`save_checkpoint` writes ``<name>.safetensors`` (weights + card) and a human-readable ``<name>.card.json``
  beside it, each atomically through :mod:`crofuse.io.store` (a temporary name and a rename on disk, one PUT for an
  ``s3://`` URL), so a half-written file never looks finished.
- :func:`load_checkpoint` reads the card, checks it against what the caller expects (architecture, bands), checks
  every tensor's name and shape against the architecture the card describes, and only then loads the weights.
  Problems raise :class:`~crofuse.errors.CheckpointError` (missing, corrupt, not a crofuse file) or
  :class:`~crofuse.errors.CheckpointMismatchError` (other architecture, bands or tensor shapes).
- :class:`Predictor` turns a checkpoint into ``(optical reflectance, SAR dB) -> impervious probability``, hiding the
  model family and the normalisation, and applying the card's calibration temperature (``card.calibration``,
  :mod:`crofuse.calibration`) to the logits before the softmax.

Cards without a ``calibration`` (all cards written before it existed) load unchanged and predict with ``T = 1``;
a card without one is written without the key, so older crofuse versions still read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import crofuse
from crofuse import IMPERVIOUS, OPTICAL_BANDS, SAR_BANDS
from crofuse.calibration import (
    HEADS,
    Calibration,
    calibrated_probabilities,
    head_logits,
)
from crofuse.errors import CheckpointError, CheckpointMismatchError, ConfigError
from crofuse.model.crofusenet import CroFuseNet
from crofuse.model.registry import ModelSpec
from crofuse.model.unet import SIZE_MULTIPLE
from crofuse.normalization import Normalization

CARD_KEY = "crofuse.card"
"""safetensors metadata key holding the JSON model card."""

FORMAT_VERSION = 1
"""Version of the card layout; bumped on incompatible changes. The optional ``calibration`` (added later) is not
one: version-1 cards without it read as uncalibrated, and an uncalibrated card is written without the key."""

SUFFIX = ".safetensors"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """What a checkpoint is: architecture, input bands and their normalisation, training data and accuracy, and
    optionally the calibration temperature fitted after training (:class:`~crofuse.calibration.Calibration`)."""

    model: ModelSpec
    normalization: Normalization
    optical_bands: tuple[str, ...] = OPTICAL_BANDS
    sar_bands: tuple[str, ...] = SAR_BANDS
    num_classes: int = 2
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    code_version: str = crofuse.__version__
    created: str = field(default_factory=_now)
    format_version: int = FORMAT_VERSION
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSpec):
            raise ConfigError(f"card.model must be a ModelSpec, got {type(self.model).__name__}")
        if not isinstance(self.normalization, Normalization):
            raise ConfigError(f"card.normalization must be a Normalization, got {type(self.normalization).__name__}")
        object.__setattr__(self, "optical_bands", tuple(str(b) for b in self.optical_bands))
        object.__setattr__(self, "sar_bands", tuple(str(b) for b in self.sar_bands))
        if len(self.optical_bands) != self.normalization.optical_channels:
            raise ConfigError(
                f"{len(self.optical_bands)} optical bands {self.optical_bands} but the normalisation has "
                f"{self.normalization.optical_channels}"
            )
        if len(self.sar_bands) != self.normalization.sar_channels:
            raise ConfigError(
                f"{len(self.sar_bands)} SAR bands {self.sar_bands} but the normalisation has "
                f"{self.normalization.sar_channels}"
            )
        if isinstance(self.calibration, Mapping):
            object.__setattr__(self, "calibration", Calibration.from_dict(self.calibration))
        if self.calibration is not None and not isinstance(self.calibration, Calibration):
            raise ConfigError(f"card.calibration must be a Calibration, got {type(self.calibration).__name__}")
        if int(self.num_classes) < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}")
        try:
            json.dumps([self.training_data, self.metrics], allow_nan=True)
        except TypeError as exc:
            raise ConfigError(f"card.training_data and card.metrics must be JSON values: {exc}") from exc

    @property
    def bands(self) -> tuple[str, ...]:
        """All input bands, optical first."""
        return self.optical_bands + self.sar_bands

    def build_model(self) -> nn.Module:
        """An untrained model of the card's architecture."""
        return self.model.build(len(self.optical_bands), len(self.sar_bands), self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format_version": self.format_version,
            "model": self.model.to_dict(),
            "optical_bands": list(self.optical_bands),
            "sar_bands": list(self.sar_bands),
            "normalization": self.normalization.to_dict(),
            "num_classes": self.num_classes,
            "training_data": self.training_data,
            "metrics": self.metrics,
            "code_version": self.code_version,
            "created": self.created,
        }
        if self.calibration is not None:
            data["calibration"] = self.calibration.to_dict()
        return data

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=indent is not None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        data = dict(data)
        version = int(data.get("format_version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"the model card has format version {version}, newer than this crofuse ({crofuse.__version__}) "
                f"reads ({FORMAT_VERSION}); upgrade crofuse"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown model card keys {sorted(unknown)}; known: {sorted(known)}")
        data["model"] = ModelSpec.from_dict(data["model"])
        data["normalization"] = Normalization.from_dict(data["normalization"])
        if data.get("calibration") is not None:
            data["calibration"] = Calibration.from_dict(data["calibration"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        return cls.from_dict(json.loads(text))


class LoadedCheckpoint(NamedTuple):
    """A loaded model (in eval mode, on the requested device) and its card."""

    model: nn.Module
    card: ModelCard


def _check_path_suffix(path: Any) -> None:
    if path.suffix != SUFFIX:
        raise CheckpointError(f"checkpoint paths end in {SUFFIX}; got {str(path)!r}")


def card_path(path: str | os.PathLike[str]) -> Any:
    """The ``<stem>.card.json`` written beside a checkpoint (a Path, or a Location for an ``s3://`` checkpoint)."""
    from crofuse.io.store import location, native

    loc = location(path)
    return native(loc.with_name(f"{loc.stem}.card.json"))


def _state_shapes(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _shape_problems(found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        problems.append(f"{len(missing)} tensors missing (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
    wrong = [f"{k}: file {found[k]} vs model {expected[k]}" for k in sorted(set(found) & set(expected))
             if found[k] != expected[k]]
    if wrong:
        problems.append(f"{len(wrong)} tensors of the wrong shape (e.g. {'; '.join(wrong[:3])})")
    return problems


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, card: ModelCard) -> Any:
    """Write ``model``'s weights and ``card`` to one ``.safetensors`` file (plus ``<stem>.card.json``); ``path``
    may be an ``s3://`` URL. Returns the path (a Location for a URL).

    The card must describe ``model``: its architecture is rebuilt from the card and every tensor name and shape
    compared before anything is written (:class:`~crofuse.errors.CheckpointMismatchError` otherwise).
    """
    from safetensors.torch import save

    from crofuse.io.store import location, native

    path = location(path)
    _check_path_suffix(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    expected = _state_shapes(card.build_model().state_dict())
    problems = _shape_problems(_state_shapes(state), expected)
    if problems:
        raise CheckpointMismatchError(
            f"the model card describes {card.model} but the model being saved differs: {'; '.join(problems)}. "
            "Build the card from the same ModelSpec and band lists the model was built with."
        )
    metadata = {CARD_KEY: card.to_json(), "format": "pt"}
    path.write_bytes(save(state, metadata=metadata))  # the one atomic write (crofuse.io.store)
    location(card_path(path)).write_text(card.to_json(indent=2) + "\n")
    return native(path)


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The model card of a checkpoint (a path or an ``s3://`` URL), read from the safetensors header only."""
    return _open(_local(path))[1]


def _open(path: Path) -> tuple[dict[str, tuple[int, ...]], ModelCard]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}; check the path (train one with `crofuse train`)")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is not a readable safetensors file ({exc}). crofuse never unpickles checkpoints; "
            "if this is a torch.save() pickle, load it in a trusted session and re-save it with "
            "crofuse.checkpoint.save_checkpoint"
        ) from exc
    if CARD_KEY not in metadata:
        raise CheckpointError(
            f"{str(path)!r} is a safetensors file but has no crofuse model card (metadata key {CARD_KEY!r}); "
            "it was not written by crofuse.checkpoint.save_checkpoint"
        )
    try:
        card = ModelCard.from_json(metadata[CARD_KEY])
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"the model card in {str(path)!r} is corrupt: {exc}") from exc
    return shapes, card


def _normalise_expected_bands(expect_bands: Sequence[Any]) -> tuple[str, ...]:
    """Accept a flat band tuple (optical then SAR) or a pair ``(optical_bands, sar_bands)``."""
    items = tuple(expect_bands)
    if len(items) == 2 and all(not isinstance(x, str) for x in items):
        return tuple(str(b) for b in items[0]) + tuple(str(b) for b in items[1])
    return tuple(str(b) for b in items)


def _spec_diff(found: ModelSpec, wanted: ModelSpec) -> str:
    if found.name != wanted.name:
        return f"model {found.name!r} in the file, {wanted.name!r} asked for"
    a, b = found.resolved_options(), wanted.resolved_options()
    diffs = [f"{k}: file {a.get(k, '<unset>')!r}, asked {b.get(k, '<unset>')!r}"
             for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]
    return "; ".join(diffs)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expect_model: ModelSpec | None = None,
    expect_bands: Sequence[Any] | None = None,
    device: str | torch.device = "cpu",
) -> LoadedCheckpoint:
    """Load a checkpoint written by :func:`save_checkpoint`; the model comes back in eval mode on ``device``.

    Args:
        expect_model: refuse a checkpoint of another architecture (defaults of the factory taken into account).
        expect_bands: refuse a checkpoint trained on other bands; a flat tuple (optical then SAR bands, e.g.
            ``OPTICAL_BANDS + SAR_BANDS``) or a pair ``(optical_bands, sar_bands)``.

    Raises:
        CheckpointError: missing, corrupt or non-crofuse file (a pickle is never unpickled).
        CheckpointMismatchError: other architecture, other bands, or tensors whose names/shapes do not fit the
            architecture in the card.
    """
    from safetensors import safe_open

    path = _local(path)
    shapes, card = _open(path)
    if expect_model is not None:
        try:
            same = card.model.same_architecture(expect_model)
        except ConfigError as exc:
            raise CheckpointMismatchError(f"cannot compare {str(path)!r} with {expect_model}: {exc}") from exc
        if not same:
            raise CheckpointMismatchError(
                f"{str(path)!r} holds another architecture than was asked for: {_spec_diff(card.model, expect_model)}"
                f" (file: {card.model.name!r} {card.model.resolved_options()}). Pass the checkpoint's model spec, or "
                "use a checkpoint trained with the one you want"
            )
    if expect_bands is not None:
        wanted = _normalise_expected_bands(expect_bands)
        if wanted != card.bands:
            raise CheckpointMismatchError(
                f"{str(path)!r} was trained on bands {card.bands} (optical {card.optical_bands}, SAR "
                f"{card.sar_bands}), but bands {wanted} were asked for; build the input cube with the checkpoint's "
                "bands in that order, or use a checkpoint trained on yours"
            )
    try:
        model = card.build_model()
    except ConfigError as exc:
        raise CheckpointError(f"cannot build the model described by {str(path)!r}: {exc}") from exc
    problems = _shape_problems(shapes, _state_shapes(model.state_dict()))
    if problems:
        raise CheckpointMismatchError(
            f"the tensors in {str(path)!r} do not fit the architecture its card describes ({card.model}): "
            f"{'; '.join(problems)}. The file was modified after saving or written by other code; re-export it"
        )
    with safe_open(path, framework="pt", device="cpu") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return LoadedCheckpoint(model=model, card=card)


def _local(path: str | os.PathLike[str]) -> Path:
    """The checkpoint as a local file: a path as is, an ``s3://`` URL fetched once into the local cache
    (:func:`crofuse.io.store.cached_copy`)."""
    if "://" in str(path):
        from crofuse.io.store import cached_copy

        try:
            return cached_copy(str(path))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path} does not exist") from None
    return Path(path)


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the checkpoint file (provenance in map attributes)."""
    digest = hashlib.sha256()
    with open(_local(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_heads(model: nn.Module) -> tuple[str, ...]:
    """The heads a model predicts with: ``("shared", "optical", "sar")`` for CroFuseNet (paper Sec. III-A), only
    ``("shared",)`` for single-head models (UNets, baselines)."""
    return HEADS if isinstance(model, CroFuseNet) else ("shared",)


class Predictor:
    """``(optical reflectance, SAR dB) -> impervious probability`` for any crofuse checkpoint.

    ``predictor(optical, sar)`` takes ``(N, n_optical, H, W)`` and ``(N, n_sar, H, W)`` torch tensors or numpy
    arrays in the card's band order and returns ``(N, H, W)`` float32 probabilities of class 1 (impervious), of the
    same kind (torch on the input's device, or numpy). ``autocast=True`` runs the model in ``autocast_dtype``
    (default bf16; fp16 on GPUs without bf16); ``channels_last=True`` uses NHWC memory (faster convs on GPUs).
    Inside: :meth:`~crofuse.normalization.Normalization.standardise` with the card's statistics (non-finite values
    become 0, the band mean; mask them yourself with the cube's ``valid``), pad H and W by edge
    replication up to multiples of 16, run the model under ``torch.inference_mode`` (optionally autocast and
    channels-last), take the shared head's logits (:func:`~crofuse.model.main_logits`), divide them by the card's
    calibration temperature (``T = 1`` when the card has none, or with ``calibrated=False``), softmax, crop.

    :meth:`predict_heads` returns the calibrated impervious probability of every head of the model from the same
    forward pass (``shared``, ``optical``, ``sar`` for CroFuseNet; ``shared`` only for single-head models), each
    head scaled by its own temperature. Temperature scaling never changes a pixel's class: for ``T > 0`` the order
    of a pixel's logits, hence their argmax, is the same.
    """

    def __init__(
        self,
        model: nn.Module,
        card: ModelCard,
        *,
        device: str | torch.device = "cpu",
        autocast: bool = False,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        calibrated: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.card = card
        self.autocast = autocast
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.heads = model_heads(model)
        calibration = card.calibration if calibrated else None
        self.calibration: Calibration | None = calibration
        self.temperatures: dict[str, float] = {
            head: (calibration.temperature_of(head) if calibration is not None else 1.0) for head in self.heads
        }

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        autocast: bool = False,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        expect_bands: Sequence[Any] | None = None,
        calibrated: bool = True,
    ) -> Predictor:
        """Load ``path`` (see :func:`load_checkpoint`; ``expect_bands`` refuses other bands) into a predictor;
        ``calibrated=False`` ignores the card's temperature (raw softmax)."""
        loaded = load_checkpoint(path, expect_bands=expect_bands, device=device)
        return cls(loaded.model, loaded.card, device=device, autocast=autocast, autocast_dtype=autocast_dtype,
                   channels_last=channels_last, calibrated=calibrated)

    @property
    def calibrated(self) -> bool:
        """Whether a fitted temperature is applied (False: the card has none, or ``calibrated=False``)."""
        return self.calibration is not None

    @property
    def temperature(self) -> float:
        """The temperature applied to the shared head (1.0 when not calibrated)."""
        return self.temperatures["shared"]

    def resolved_autocast_dtype(self) -> torch.dtype:
        """``autocast_dtype`` if given, else bf16 (CPU, and GPUs that support it) or fp16 (older GPUs)."""
        if self.autocast_dtype is not None:
            return self.autocast_dtype
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16

    def _autocast(self) -> Any:
        return torch.autocast(device_type=self.device.type, dtype=self.resolved_autocast_dtype(),
                              enabled=self.autocast)

    def __call__(self, optical: Tensor | np.ndarray, sar: Tensor | np.ndarray) -> Tensor | np.ndarray:
        return self._predict(optical, sar, ("shared",))["shared"]

    def predict_heads(self, optical: Tensor | np.ndarray, sar: Tensor | np.ndarray) -> dict[str, Tensor | np.ndarray]:
        """``{head: (N, H, W) calibrated impervious probability}`` for every head in :attr:`heads` (one forward)."""
        return self._predict(optical, sar, self.heads)

    def _predict(self, optical: Tensor | np.ndarray, sar: Tensor | np.ndarray,
                 heads: tuple[str, ...]) -> dict[str, Tensor | np.ndarray]:
        as_numpy = isinstance(optical, np.ndarray)
        out_device = None if as_numpy else optical.device
        optical_t = torch.as_tensor(optical)
        sar_t = torch.as_tensor(sar)
        n_opt, n_sar = len(self.card.optical_bands), len(self.card.sar_bands)
        if optical_t.ndim != 4 or optical_t.shape[1] != n_opt:
            raise ValueError(f"optical must be (N, {n_opt}, H, W) {self.card.optical_bands}; got {tuple(optical_t.shape)}")
        if sar_t.ndim != 4 or sar_t.shape[1] != n_sar:
            raise ValueError(f"sar must be (N, {n_sar}, H, W) {self.card.sar_bands}; got {tuple(sar_t.shape)}")
        if optical_t.shape[0] != sar_t.shape[0] or optical_t.shape[-2:] != sar_t.shape[-2:]:
            raise ValueError(f"optical {tuple(optical_t.shape)} and sar {tuple(sar_t.shape)} differ in N, H or W")
        h, w = optical_t.shape[-2:]
        out: dict[str, Tensor | np.ndarray] = {}
        with torch.inference_mode():
            optical_t = optical_t.to(self.device, torch.float32)
            sar_t = sar_t.to(self.device, torch.float32)
            optical_t, sar_t = self.card.normalization.standardise(optical_t, sar_t)
            pad_h, pad_w = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
            if pad_h or pad_w:
                optical_t = F.pad(optical_t, (0, pad_w, 0, pad_h), mode="replicate")
                sar_t = F.pad(sar_t, (0, pad_w, 0, pad_h), mode="replicate")
            if self.channels_last:
                optical_t = optical_t.contiguous(memory_format=torch.channels_last)
                sar_t = sar_t.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = head_logits(self.model(optical_t, sar_t))
            for head in heads:
                prob = calibrated_probabilities(logits[head], self.temperatures[head])
                prob = prob[:, IMPERVIOUS, :h, :w].contiguous()
                out[head] = prob.cpu().numpy().astype(np.float32, copy=False) if as_numpy else prob.to(out_device)
        return out


__all__ = [
    "CARD_KEY",
    "FORMAT_VERSION",
    "LoadedCheckpoint",
    "ModelCard",
    "Predictor",
    "card_path",
    "checkpoint_sha256",
    "load_checkpoint",
    "model_heads",
    "read_card",
    "save_checkpoint",
]
