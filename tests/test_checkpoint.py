"""safetensors checkpoints with a model card: round trip, refusals, Predictor."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from crofuse import OPTICAL_BANDS, SAR_BANDS
from crofuse.checkpoint import (
    CARD_KEY,
    ModelCard,
    Predictor,
    card_path,
    checkpoint_sha256,
    load_checkpoint,
    read_card,
    save_checkpoint,
)
from crofuse.errors import CheckpointError, CheckpointMismatchError
from crofuse.model import CroFuseOutput, ModelSpec, main_logits
from tests.fixtures.model import TEST_NORMALIZATION, make_checkpoint, randomise_batchnorm, seeded_inputs

SPEC = ModelSpec("crofusenet", {"base_channels": 4})




@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    card = ModelCard(model=SPEC, normalization=TEST_NORMALIZATION, metrics={"miou": 0.9}, training_data={"n": 3})
    model = randomise_batchnorm(card.build_model()).eval()
    return save_checkpoint(tmp_path / "crofusenet.safetensors", model, card), model, card


def test_round_trip_identical_outputs_and_card(saved) -> None:
    path, model, card = saved
    loaded, loaded_card = load_checkpoint(path, expect_model=SPEC, expect_bands=OPTICAL_BANDS + SAR_BANDS)
    assert loaded_card == card
    assert not loaded.training
    optical, sar = seeded_inputs(2, 32, 48)
    with torch.no_grad():
        a, b = model(optical, sar), loaded(optical, sar)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    # one file with the card in its metadata, plus the readable card beside it, no temp files left
    assert sorted(p.name for p in path.parent.iterdir()) == ["crofusenet.card.json", "crofusenet.safetensors"]
    with safe_open(path, framework="pt") as f:
        assert json.loads(f.metadata()[CARD_KEY])["model"] == {"name": "crofusenet", "options": {"base_channels": 4}}
    assert json.loads(card_path(path).read_text())["metrics"] == {"miou": 0.9}
    assert read_card(path) == card


def test_saving_again_replaces_the_file(saved) -> None:
    path, model, card = saved
    before = checkpoint_sha256(path)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_checkpoint(path, model, card)
    assert checkpoint_sha256(path) != before
    assert len(list(path.parent.iterdir())) == 2


def test_sha256(saved) -> None:
    path, *_ = saved
    assert checkpoint_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_other_architecture_refused(saved) -> None:
    path, *_ = saved
    with pytest.raises(CheckpointMismatchError, match=r"mfa: file True, asked False"):
        load_checkpoint(path, expect_model=ModelSpec("crofusenet", {"base_channels": 4, "mfa": False}))
    with pytest.raises(CheckpointMismatchError, match=r"base_channels: file 4, asked 32"):
        load_checkpoint(path, expect_model=ModelSpec("crofusenet"))
    with pytest.raises(CheckpointMismatchError, match="'unet-fusion' asked for"):
        load_checkpoint(path, expect_model=ModelSpec("unet-fusion", {"base_channels": 4}))
    # defaults spelled out are the same architecture
    load_checkpoint(path, expect_model=ModelSpec("crofusenet", {"base_channels": 4, "fusion": "cfm"}))


def test_other_bands_refused(saved) -> None:
    path, *_ = saved
    with pytest.raises(CheckpointMismatchError, match=r"trained on bands .*'VV', 'VH'.*'HH', 'HV'"):
        load_checkpoint(path, expect_bands=(OPTICAL_BANDS, ("HH", "HV")))
    with pytest.raises(CheckpointMismatchError, match="bands"):
        load_checkpoint(path, expect_bands=("B04", "B03", "B02", "B08", "VV", "VH"))
    load_checkpoint(path, expect_bands=(OPTICAL_BANDS, SAR_BANDS))


def test_tampered_tensor_shapes_refused(saved, tmp_path: Path) -> None:
    path, *_ = saved
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    key = "shared_head.block.0.weight"
    state[key] = torch.zeros(3, *state[key].shape[1:])  # a 3-class head under a 2-class card
    tampered = tmp_path / "tampered.safetensors"
    save_file(state, tampered, metadata=metadata)
    with pytest.raises(CheckpointMismatchError, match=r"shared_head\.block\.0\.weight: file \(3, 4, 3, 3\)"):
        load_checkpoint(tampered)
    del state[key]
    save_file(state, tampered, metadata=metadata)
    with pytest.raises(CheckpointMismatchError, match="1 tensors missing"):
        load_checkpoint(tampered)


class _Marker:
    """Unpickling this creates a file: proof that a loader ran pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_pickle_renamed_safetensors_refused_without_unpickling(saved, tmp_path: Path) -> None:
    path, model, _ = saved
    marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"state": model.state_dict(), "x": _Marker(marker)}))
    pickle.loads(evil.read_bytes())  # the marker really works...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match="never unpickles") as err:
        load_checkpoint(evil)
    assert not isinstance(err.value, CheckpointMismatchError)
    assert not marker.exists()  # ...and load_checkpoint never ran it
    torch_saved = tmp_path / "torch.safetensors"
    torch.save(model.state_dict(), torch_saved)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(torch_saved)


def test_missing_corrupt_and_foreign_files_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.safetensors")
    truncated = tmp_path / "t.safetensors"
    make_checkpoint(truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="no crofuse model card"):
        load_checkpoint(foreign)
    bad_card = tmp_path / "badcard.safetensors"
    save_file({"w": torch.zeros(2)}, bad_card, metadata={CARD_KEY: '{"model": 3}'})
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad_card)


def test_save_refuses_a_card_that_does_not_describe_the_model(tmp_path: Path) -> None:
    card = ModelCard(model=ModelSpec("crofusenet", {"base_channels": 4, "mfa": False}), normalization=TEST_NORMALIZATION)
    model = SPEC.build()
    with pytest.raises(CheckpointMismatchError, match="unexpected tensors"):
        save_checkpoint(tmp_path / "x.safetensors", model, card)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_checkpoint(tmp_path / "x.pt", model, ModelCard(model=SPEC, normalization=TEST_NORMALIZATION))


def test_card_validation_and_json_round_trip() -> None:
    card = ModelCard(model=SPEC, normalization=TEST_NORMALIZATION, metrics={"oa": 0.97})
    assert ModelCard.from_json(card.to_json()) == card
    with pytest.raises(ValueError, match="optical bands"):
        ModelCard(model=SPEC, normalization=TEST_NORMALIZATION, optical_bands=("B02", "B03", "B04"))
    with pytest.raises(ValueError, match="unknown model card keys"):
        ModelCard.from_dict({**card.to_dict(), "epochs": 3})
    with pytest.raises(CheckpointError, match="newer"):
        ModelCard.from_dict({**card.to_dict(), "format_version": 99})


# --- Predictor ----------------------------------------------------------------------------------------------------


def _reference_probability(model, card, optical, sar) -> torch.Tensor:
    o, s = card.normalization.apply(optical, sar)
    with torch.no_grad():
        return torch.softmax(main_logits(model(o, s)), dim=1)[:, 1]


def test_predictor_normalises_and_returns_impervious_probability(saved) -> None:
    path, model, card = saved
    predictor = Predictor.from_checkpoint(path)
    g = torch.Generator().manual_seed(0)
    optical = torch.rand(2, 4, 32, 48, generator=g) * 0.3  # reflectance
    sar = torch.randn(2, 2, 32, 48, generator=g) * 3 - 12  # dB
    prob = predictor(optical, sar)
    assert prob.shape == (2, 32, 48) and prob.dtype == torch.float32
    assert torch.allclose(prob, _reference_probability(model, card, optical, sar), atol=1e-6)
    assert 0 <= prob.min() and prob.max() <= 1
    # the normalisation really is applied: raw inputs give another answer
    with torch.no_grad():
        raw = torch.softmax(main_logits(model(optical, sar)), dim=1)[:, 1]
    assert not torch.allclose(prob, raw, atol=1e-3)
    # numpy in, numpy out
    prob_np = predictor(optical.numpy(), sar.numpy())
    assert isinstance(prob_np, np.ndarray) and prob_np.dtype == np.float32
    assert np.allclose(prob_np, prob.numpy(), atol=1e-6)


def test_predictor_pads_sizes_that_are_not_multiples_of_16_and_handles_nan(saved) -> None:
    path, model, card = saved
    predictor = Predictor.from_checkpoint(path)
    optical, sar = torch.rand(1, 4, 37, 50) * 0.3, torch.randn(1, 2, 37, 50) - 12
    prob = predictor(optical, sar)
    assert prob.shape == (1, 37, 50) and torch.isfinite(prob).all()
    optical[0, :, 5, 5] = float("nan")
    assert torch.isfinite(predictor(optical, sar)).all()
    with pytest.raises(ValueError, match=r"optical must be \(N, 4, H, W\)"):
        predictor(optical[:, :3], sar)
    with pytest.raises(ValueError, match="differ"):
        predictor(optical, sar[..., :20])


def test_predictor_hides_the_model_family(tmp_path: Path) -> None:
    for name in ("unet-fusion", "unet-optical", "unet-sar"):
        path = make_checkpoint(tmp_path / f"{name}.safetensors", ModelSpec(name, {"base_channels": 4}))
        predictor = Predictor.from_checkpoint(path)
        optical, sar = torch.rand(1, 4, 16, 16), torch.randn(1, 2, 16, 16)
        prob = predictor(optical, sar)
        assert prob.shape == (1, 16, 16)
        if name == "unet-optical":
            assert torch.equal(prob, predictor(optical, sar + 3))
        if name == "unet-sar":
            assert torch.equal(prob, predictor(optical + 3, sar))


def test_predictor_autocast_and_channels_last_agree(saved) -> None:
    path, *_ = saved
    optical, sar = torch.rand(1, 4, 32, 32) * 0.3, torch.randn(1, 2, 32, 32) - 12
    reference = Predictor.from_checkpoint(path)(optical, sar)
    assert torch.allclose(Predictor.from_checkpoint(path, channels_last=True)(optical, sar), reference, atol=1e-5)
    predictor = Predictor.from_checkpoint(path, autocast=True)
    assert predictor.resolved_autocast_dtype() == torch.bfloat16
    bf16 = predictor(optical, sar)
    assert bf16.dtype == torch.float32
    assert 0 < (bf16 - reference).abs().max() < 0.05  # really ran in reduced precision, and stayed close
    fp16 = Predictor.from_checkpoint(path, autocast=True, autocast_dtype=torch.float16)
    assert fp16.resolved_autocast_dtype() == torch.float16
    assert (fp16(optical, sar) - reference).abs().max() < 0.01


def test_tiny_checkpoint_fixture(tiny_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint, expect_model=SPEC)
    assert isinstance(loaded.model(*seeded_inputs(1, 16, 16)), CroFuseOutput)
    assert loaded.card.normalization == TEST_NORMALIZATION
