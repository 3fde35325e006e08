"""The model on a worker: loaded once per process (cached by checkpoint hash), device chosen per worker.

Each dask worker process keeps its own cache, so a checkpoint is read once per worker, not once per task.
:class:`LoadedModel` offers ``predict_fn`` (the calibrated shared-head probability) and ``predict_heads_fn`` (every
head's calibrated probability from the same forward pass), both numpy in, numpy out.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crofuse import OPTICAL_BANDS, SAR_BANDS
from crofuse.errors import CheckpointError, ConfigError
from tiling.config import TilingConfig
from tiling.inference import PredictFn

_CACHE: dict[tuple, LoadedModel] = {}
_LOCK = threading.Lock()
LOAD_COUNT = 0
"""How many times this process has loaded a checkpoint (tests check it is once per worker)."""

def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_device(device: str) -> str:
    """``"auto"`` becomes ``"cuda"`` where this process sees a GPU (dask-cuda gives each worker one), else ``"cpu"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but this worker sees no GPU; use device='auto' or 'cpu'")
    return device


def resolve_autocast(device: str, autocast: str):
    """The autocast dtype for ``device`` (None on CPU or when off): bf16 where the GPU supports it, else fp16."""
    import torch

    if not device.startswith("cuda") or autocast == "off":
        return None
    if autocast == "bf16":
        return torch.bfloat16
    if autocast == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class LoadedModel:
    """A ready-to-call model on this worker: ``predict_fn`` returns the shared head's calibrated impervious
    probability ``(N, H, W)``, ``predict_heads_fn`` a ``{head: (N, H, W)}`` mapping of every head in ``heads``;
    ``temperatures`` are the ones applied (all 1.0 when the card is not ``calibrated``)."""

    predict_fn: PredictFn
    device: str
    sha256: str
    predict_heads_fn: PredictFn | None = None
    heads: tuple[str, ...] = ("shared",)
    calibrated: bool = False
    temperatures: dict[str, float] | None = None


def _build(checkpoint: Path, sha256: str, config: TilingConfig) -> LoadedModel:
    device = resolve_device(config.device)
    dtype = resolve_autocast(device, config.autocast)
    on_gpu = device.startswith("cuda")
    from crofuse.checkpoint import Predictor

    predictor = Predictor.from_checkpoint(
        checkpoint,
        device=device,
        autocast=dtype is not None,
        autocast_dtype=dtype,
        channels_last=config.channels_last and on_gpu,
        expect_bands=(OPTICAL_BANDS, SAR_BANDS),
    )

    def to_device(optical: np.ndarray, sar: np.ndarray):
        import torch

        o = torch.from_numpy(optical).pin_memory().to(device, non_blocking=True)
        s = torch.from_numpy(sar).pin_memory().to(device, non_blocking=True)
        return o, s

    def predict_fn(optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
        if not on_gpu:
            return predictor(optical, sar)
        return predictor(*to_device(optical, sar)).cpu().numpy()

    def predict_heads_fn(optical: np.ndarray, sar: np.ndarray) -> dict[str, np.ndarray]:
        if not on_gpu:
            return predictor.predict_heads(optical, sar)
        return {k: v.cpu().numpy() for k, v in predictor.predict_heads(*to_device(optical, sar)).items()}

    return LoadedModel(predict_fn=predict_fn, device=device, sha256=sha256, predict_heads_fn=predict_heads_fn,
                       heads=predictor.heads, calibrated=predictor.calibrated,
                       temperatures=dict(predictor.temperatures))


def load_model(checkpoint: str | Path, sha256: str, *, config: TilingConfig) -> LoadedModel:
    """The model for ``checkpoint`` on this worker, loaded on first use and then reused.

    The file's hash is checked against ``sha256`` (what the client hashed) on first load, so every worker runs the
    same weights even on a cluster whose workers read the checkpoint from a shared file system.
    """
    global LOAD_COUNT
    key = (str(checkpoint), sha256, config.device, config.autocast, config.channels_last)
    with _LOCK:
        model = _CACHE.get(key)
        if model is not None:
            return model
        from crofuse.io.store import cached_copy

        try:
            path = cached_copy(checkpoint)  # an s3:// checkpoint is fetched once into this worker's temporary space
        except FileNotFoundError:
            path = Path(str(checkpoint))
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {checkpoint} is not readable on this worker; give a path every worker sees, or an "
                "s3:// URL (the workers fetch it)"
            )
        found = file_sha256(path)
        if found != sha256:
            raise CheckpointError(
                f"checkpoint {path} on this worker has sha256 {found[:12]}..., the client hashed {sha256[:12]}...; "
                "the file changed during the run or the workers see a different file"
            )
        model = _build(path, sha256, config)
        _CACHE[key] = model
        LOAD_COUNT += 1
        return model


def set_torch_threads(n: int | None) -> None:
    """Set intra-op threads for the calling thread's torch work on CPU (no-op for ``None``)."""
    if n is None:
        return
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
