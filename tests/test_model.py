"""CroFuseNet, its blocks, the paper's UNet, ModalityInput and the registry."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crofuse.errors import ConfigError
from crofuse.losses import CroFuseLoss
from crofuse.model import (
    ABLATIONS,
    MODELS,
    CroFuseNet,
    CroFuseOutput,
    ModalityInput,
    ModelSpec,
    UNet,
    main_logits,
    register_model,
)
from crofuse.model.blocks import (
    ChannelAttention,
    ConcatFusion,
    CrossFusionModule,
    MultimodalFeatureAggregation,
    SegmentationHead,
    SumFusion,
)
from tests.fixtures.model import ModelTester, seeded_inputs

SMALL = 4  # base_channels for tests that are not about the paper's sizes




def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count(model: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


# --- the shared tester, one subclass per model -----------------------------------------------------------------


class TestCroFuseNet(ModelTester):
    spec = ModelSpec("crofusenet", {"base_channels": SMALL})


class TestCroFuseNetCase1(ModelTester):
    spec = ModelSpec("crofusenet", {"base_channels": SMALL, **ABLATIONS["case1"]})


class TestCroFuseNetCase2(ModelTester):
    spec = ModelSpec("crofusenet", {"base_channels": SMALL, **ABLATIONS["case2"]})


class TestCroFuseNetCase3(ModelTester):
    spec = ModelSpec("crofusenet", {"base_channels": SMALL, **ABLATIONS["case3"]})


class TestCroFuseNetCase4(ModelTester):
    spec = ModelSpec("crofusenet", {"base_channels": SMALL, **ABLATIONS["case4"]})


class TestCroFuseNetStemBilinearPlainHead(ModelTester):
    spec = ModelSpec(
        "crofusenet", {"base_channels": SMALL, "first_shared": "stem", "upsample": "bilinear", "head_relu": False}
    )


class TestUNetFusion(ModelTester):
    spec = ModelSpec("unet-fusion", {"base_channels": SMALL})


class TestUNetOptical(ModelTester):
    spec = ModelSpec("unet-optical", {"base_channels": SMALL})


class TestUNetSar(ModelTester):
    spec = ModelSpec("unet-sar", {"base_channels": SMALL})


# --- CroFuseNet structure ----------------------------------------------------------------------------------------


def test_paper_sizes_parameter_count_and_levels() -> None:
    """Base 32: encoder levels 32..512, bottleneck at 1/16 (8x8 for 128x128), three heads, ~36 M parameters."""
    model = CroFuseNet()
    for branch in (model.optical, model.sar):
        outs = [block[1][0].out_channels for block in branch.encoder.blocks]
        assert outs == [32, 64, 128, 256, 512]
        assert [up.conv[1][0].out_channels for up in branch.decoder.ups] == [256, 128, 64, 32]
    assert model.optical.encoder.blocks[0][0][0].in_channels == 4
    assert model.sar.encoder.blocks[0][0][0].in_channels == 2
    # The paper's head: 3x3 conv, BN, ReLU to 2 classes, on all three branches.
    for head in (model.shared_head, model.optical.head, model.sar.head):
        conv, bn, relu = head.block
        assert (conv.kernel_size, conv.out_channels) == ((3, 3), 2)
        assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert count(model, CrossFusionModule) == 5 and count(model, MultimodalFeatureAggregation) == 4
    # the SE attention of the deepest CFM uses r = 16: 512 -> 32 -> 512
    assert model.fusion[4].optical_attention.fc1.out_features == 32
    assert 35_000_000 < n_params(model) < 37_500_000
    seen = []
    hook = model.fusion[4].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model.eval()
    with torch.no_grad():
        out = model(*seeded_inputs(1, 128, 128))
    hook.remove()
    assert seen == [torch.Size([1, 512, 8, 8])]
    assert all(o.shape == (1, 2, 128, 128) for o in out)


def test_one_backward_reaches_every_branch_cfm_and_mfa() -> None:
    torch.manual_seed(0)
    model = CroFuseNet(base_channels=SMALL).train()
    optical, sar = seeded_inputs(2, 64, 64)
    target = torch.randint(0, 2, (2, 64, 64))
    CroFuseLoss()(model(optical, sar), target).backward()
    groups = {
        "optical": model.optical,
        "sar": model.sar,
        "shared_decoder": model.shared_decoder,
        "shared_head": model.shared_head,
        **{f"cfm{i}": m for i, m in enumerate(model.fusion)},
        **{f"mfa{i}": m for i, m in enumerate(model.mfa)},
    }
    for group, module in groups.items():
        params = list(module.named_parameters())
        assert params, group
        for name, p in params:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{group}.{name} got no gradient"


@pytest.mark.parametrize(
    ("case", "cfm", "concat", "sum_", "mfa", "attention"),
    [
        ("case1", 0, 0, 5, 0, 0),
        ("case2", 0, 0, 5, 4, 0),
        ("case3", 5, 0, 0, 0, 10),
        ("case4", 0, 5, 0, 4, 0),
        ("case5", 5, 0, 0, 4, 10),
    ],
)
def test_ablation_switches_remove_their_modules(case, cfm, concat, sum_, mfa, attention) -> None:
    model = ModelSpec("crofusenet", {"base_channels": SMALL, **ABLATIONS[case]}).build()
    assert count(model, CrossFusionModule) == cfm
    assert count(model, ConcatFusion) == concat
    assert count(model, SumFusion) == sum_
    assert count(model, MultimodalFeatureAggregation) == mfa
    assert count(model, ChannelAttention) == attention


def test_ablation_parameter_counts_differ_by_exactly_the_removed_modules() -> None:
    build = {c: ModelSpec("crofusenet", {"base_channels": SMALL, **o}).build() for c, o in ABLATIONS.items()}
    full = build["case5"]
    mfa_params = sum(n_params(m) for m in full.mfa)
    cfm_params = sum(n_params(m) for m in full.fusion)
    concat_params = sum(n_params(m) for m in build["case4"].fusion)
    assert mfa_params > 0 and cfm_params > concat_params > 0
    assert n_params(full) - n_params(build["case3"]) == mfa_params
    assert n_params(full) - n_params(build["case2"]) == cfm_params
    assert n_params(full) - n_params(build["case1"]) == cfm_params + mfa_params
    assert n_params(full) - n_params(build["case4"]) == cfm_params - concat_params
    # the specific branches are untouched by the ablations
    assert all(n_params(m.optical) == n_params(full.optical) for m in build.values())


def test_ablation_none_feeds_the_shared_encoder_the_sum() -> None:
    model = CroFuseNet(base_channels=SMALL, fusion="none", mfa=False).eval()
    optical, sar = seeded_inputs(1, 32, 32)
    captured = []
    hooks = [f.register_forward_hook(lambda m, i, o: captured.append((i, o))) for f in model.fusion]
    with torch.no_grad():
        model(optical, sar)
    for h in hooks:
        h.remove()
    for (f_opt, f_sar, *_), out in captured:
        assert torch.equal(out, f_opt + f_sar)


def test_unknown_options_rejected_with_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"fusion='add'.*'cfm', 'concat', 'none'"):
        CroFuseNet(fusion="add")
    with pytest.raises(ValueError, match="upsample"):
        CroFuseNet(upsample="pixelshuffle")
    with pytest.raises(ValueError, match="first_shared"):
        CroFuseNet(first_shared="input")
    with pytest.raises(ValueError, match="mfa"):
        CroFuseNet(mfa="yes")  # type: ignore[arg-type]


def test_forward_rejects_mismatched_inputs() -> None:
    model = CroFuseNet(base_channels=4).eval()
    optical, sar = seeded_inputs(1, 32, 32)
    with pytest.raises(ValueError, match="channels"):
        model(optical[:, :3], sar)
    with pytest.raises(ValueError, match="share"):
        model(optical, sar[..., :16])
    with pytest.raises(ValueError, match="4-D"):
        model(optical[0], sar[0])


def test_first_shared_options() -> None:
    none = CroFuseNet(base_channels=4)
    stem = CroFuseNet(base_channels=4, first_shared="stem")
    assert none.shared_stem is None and none.fusion[0].out_conv is None
    assert stem.shared_stem is not None and stem.fusion[0].out_conv is not None
    assert all(f.out_conv is not None for f in none.fusion[1:])


def test_head_relu_option() -> None:
    optical, sar = seeded_inputs(2, 32, 32)
    torch.manual_seed(0)
    relu = CroFuseNet(base_channels=4, head_relu=True).train()
    torch.manual_seed(0)
    plain = CroFuseNet(base_channels=4, head_relu=False).train()
    assert all(o.min() >= 0 for o in relu(optical, sar))
    assert any(o.min() < 0 for o in plain(optical, sar))
    assert isinstance(plain.shared_head.block, nn.Conv2d) and plain.shared_head.block.bias is not None


def test_bilinear_upsampling_has_no_transposed_conv() -> None:
    assert count(CroFuseNet(base_channels=4, upsample="bilinear"), nn.ConvTranspose2d) == 0
    assert count(CroFuseNet(base_channels=4), nn.ConvTranspose2d) == 12  # 4 up blocks x 3 decoders


# --- blocks against the paper's equations ------------------------------------------------------------------------


def _randomise(module: nn.Module) -> nn.Module:
    from tests.fixtures.model import randomise_batchnorm

    return randomise_batchnorm(module).eval()


def test_channel_attention_is_eqs_7_to_10() -> None:
    torch.manual_seed(0)
    att = ChannelAttention(256).eval()
    assert (att.fc1.in_features, att.fc1.out_features, att.fc2.out_features) == (256, 16, 256)
    x = torch.randn(2, 256, 5, 7)
    squeeze = x.mean(dim=(2, 3))
    weights = torch.sigmoid(F.linear(F.relu(F.linear(squeeze, att.fc1.weight, att.fc1.bias)), att.fc2.weight,
                                     att.fc2.bias))
    assert torch.allclose(att(x), x * weights[:, :, None, None], atol=1e-6)
    # small channel counts are guarded: at least min(C, 8) hidden units
    assert ChannelAttention(32).fc1.out_features == 8
    assert ChannelAttention(4).fc1.out_features == 4
    assert ChannelAttention(256).fc1.out_features == 16


def _cbr(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    conv, bn, _ = block
    return F.relu(F.batch_norm(F.conv2d(x, conv.weight, padding=conv.padding), bn.running_mean, bn.running_var,
                               bn.weight, bn.bias, eps=bn.eps))


def test_cross_fusion_module_is_eqs_1_to_5() -> None:
    torch.manual_seed(0)
    cfm = _randomise(CrossFusionModule(16, previous_channels=8, reduction=4))
    f_opt, f_sar, prev = torch.randn(2, 16, 6, 6), torch.randn(2, 16, 6, 6), torch.randn(2, 8, 6, 6)
    a = _cbr(cfm.optical_conv, cfm.optical_attention(f_opt))  # eq. (1) + conv
    b = _cbr(cfm.sar_conv, cfm.sar_attention(f_sar))  # eq. (2) + conv
    fuse = torch.cat([a * b, torch.maximum(a, b)], dim=1)  # eqs. (3)-(5)
    expected = _cbr(cfm.out_conv, torch.cat([_cbr(cfm.fuse_conv, fuse), prev], dim=1))
    with torch.no_grad():
        assert torch.allclose(cfm(f_opt, f_sar, prev), expected, atol=1e-5)
        # swapping the modalities changes the result (separate attention/conv per modality)
        assert not torch.allclose(cfm(f_sar, f_opt, prev), expected, atol=1e-3)
    with pytest.raises(ValueError, match="previous"):
        cfm(f_opt, f_sar, None)


def test_mfa_is_concat_1x1_bn_relu() -> None:
    torch.manual_seed(0)
    mfa = _randomise(MultimodalFeatureAggregation(8))
    s, o, r = (torch.randn(1, 8, 4, 4) for _ in range(3))
    conv = mfa.block[0]
    assert conv.kernel_size == (1, 1) and conv.in_channels == 24 and conv.out_channels == 8
    with torch.no_grad():
        assert torch.allclose(mfa(s, o, r), _cbr(mfa.block, torch.cat([s, o, r], dim=1)), atol=1e-5)


def test_segmentation_head_variants() -> None:
    assert isinstance(SegmentationHead(8, 2, relu=True).block[2], nn.ReLU)
    assert isinstance(SegmentationHead(8, 2, relu=False).block, nn.Conv2d)


# --- UNet and ModalityInput --------------------------------------------------------------------------------------


def test_unet_baselines_are_the_same_unet_with_different_inputs() -> None:
    nets = {name: ModelSpec(name, {"base_channels": 4}).build() for name in ("unet-fusion", "unet-optical", "unet-sar")}
    for name, model in nets.items():
        assert isinstance(model, ModalityInput) and type(model.net) is UNet, name
    assert nets["unet-fusion"].net.in_channels == 6
    assert nets["unet-optical"].net.in_channels == 4
    assert nets["unet-sar"].net.in_channels == 2
    # The CroFuseNet branches are that UNet class too.
    assert type(CroFuseNet(base_channels=4).optical) is UNet


def test_modality_input_feeds_only_its_modalities() -> None:
    torch.manual_seed(0)
    optical, sar = seeded_inputs(1, 32, 32)
    opt_model = ModelSpec("unet-optical", {"base_channels": 4}).build().eval()
    sar_model = ModelSpec("unet-sar", {"base_channels": 4}).build().eval()
    fus_model = ModelSpec("unet-fusion", {"base_channels": 4}).build().eval()
    with torch.no_grad():
        assert torch.equal(opt_model(optical, sar), opt_model(optical, sar + 5))
        assert torch.equal(opt_model(optical, sar), opt_model(optical, None))
        assert not torch.equal(opt_model(optical, sar), opt_model(optical + 5, sar))
        assert torch.equal(sar_model(optical, sar), sar_model(optical + 5, sar))
        assert not torch.equal(sar_model(optical, sar), sar_model(optical, sar + 5))
        assert torch.equal(fus_model(optical, sar), fus_model.net(torch.cat([optical, sar], dim=1)))
    with pytest.raises(ValueError, match="modalities"):
        ModalityInput(UNet(4), ("radar",))
    with pytest.raises(ValueError, match="None"):
        sar_model(optical, None)


def test_main_logits() -> None:
    t = torch.zeros(1, 2, 4, 4)
    assert main_logits(t) is t
    out = CroFuseOutput(t + 1, t + 2, t + 3)
    assert main_logits(out) is out.shared
    with pytest.raises(TypeError):
        main_logits([t])  # type: ignore[arg-type]


# --- registry ----------------------------------------------------------------------------------------------------


def test_registry_builtins_and_modalities() -> None:
    assert {"crofusenet", "unet-fusion", "unet-optical", "unet-sar"} <= set(MODELS)
    assert ModelSpec("crofusenet").modalities == ("optical", "sar")
    assert ModelSpec("unet-fusion").modalities == ("optical", "sar")
    assert ModelSpec("unet-optical").modalities == ("optical",)
    assert ModelSpec("unet-sar").modalities == ("sar",)


def test_registry_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'segformer'.*crofusenet.*unet-fusion"):
        ModelSpec("segformer").build()


def test_registry_bad_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not accept"):
        ModelSpec("unet-sar", {"fusion": "cfm"}).build()
    with pytest.raises(ValueError, match="fusion"):
        ModelSpec("crofusenet", {"fusion": "sum"}).build()


def test_register_model_decorator() -> None:
    @register_model("test-tiny", modalities=("sar",))
    def tiny(*, optical_channels: int, sar_channels: int, num_classes: int) -> nn.Module:
        return ModalityInput(nn.Conv2d(sar_channels, num_classes, 1), ("sar",))

    try:
        spec = ModelSpec("test-tiny")
        assert spec.modalities == ("sar",)
        out = spec.build()(torch.zeros(1, 4, 16, 16), torch.zeros(1, 2, 16, 16))
        assert out.shape == (1, 2, 16, 16)
    finally:
        from crofuse.model.registry import MODEL_MODALITIES

        MODELS.pop("test-tiny", None)
        MODEL_MODALITIES.pop("test-tiny", None)


def test_model_spec_json_round_trip_and_equality() -> None:
    spec = ModelSpec.ablation("case4")
    assert spec == ModelSpec("crofusenet", {"fusion": "concat"})
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and hash(again) == hash(spec)
    assert ModelSpec("crofusenet").same_architecture(ModelSpec("crofusenet", {"base_channels": 32, "mfa": True}))
    assert not ModelSpec("crofusenet").same_architecture(ModelSpec.ablation("case3"))
    with pytest.raises(ConfigError):
        ModelSpec("crofusenet", {"x": object()})
    with pytest.raises(ConfigError):
        ModelSpec.from_dict({"options": {}})
    with pytest.raises(ConfigError, match="case6"):
        ModelSpec.ablation("case6")
    assert set(ABLATIONS) == {"case1", "case2", "case3", "case4", "case5"}


def test_same_architecture_treats_a_default_like_the_explicit_default() -> None:
    assert ModelSpec("fcn", {}).same_architecture(ModelSpec("fcn", {"base_channels": 64}))
    assert ModelSpec("fcn", {}).same_architecture(ModelSpec("fcn", {"dropout_mode": "element", "fc_channels": None}))
    assert not ModelSpec("fcn", {}).same_architecture(ModelSpec("fcn", {"base_channels": 8}))
    # a tuple default and the JSON list a card stores are the same value
    assert ModelSpec("deeplabv3plus").same_architecture(ModelSpec("deeplabv3plus", {"layers": [3, 4, 6, 3]}))
    assert ModelSpec("hrnet").same_architecture(ModelSpec("hrnet", {"num_modules": [1, 4, 3], "width": 18}))
    assert not ModelSpec("hrnet").same_architecture(ModelSpec("hrnet", {"num_modules": [1, 1, 1]}))
    assert not ModelSpec("fcn").same_architecture(ModelSpec("hrnet"))


def test_every_registered_factory_is_typed() -> None:
    """No ``**options``: every option has a name and a default, so resolved_options knows them all."""
    import inspect

    from crofuse.model.registry import factory_defaults, get_factory

    for name in ("crofusenet", "unet-fusion", "unet-optical", "unet-sar", "fcn", "hrnet", "deeplabv3plus"):
        params = inspect.signature(get_factory(name)).parameters.values()
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params), name
        assert factory_defaults(name), name
    assert factory_defaults("deeplabv3plus")["aspp_rates"] == [6, 12, 18]
    with pytest.raises(ConfigError, match="does not accept"):
        ModelSpec("fcn", {"widht": 8}).build()


def test_baselines_are_registered_explicitly_without_an_import_cycle() -> None:
    """``crofuse.model`` registers the baselines itself; importing either package first works (fresh interpreters)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for first in ("crofuse.model", "crofuse.baselines"):
        code = (f"import {first}; import crofuse.model as m; import sys; "
                "assert {'fcn', 'hrnet', 'deeplabv3plus'} <= set(m.MODELS), sorted(m.MODELS); "
                "print(m.ModelSpec('fcn', {'base_channels': 4}).build().__class__.__name__)")
        out = subprocess.run([sys.executable, "-c", code], check=False, cwd=root, capture_output=True, text=True,
                             timeout=120, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ModalityInput"


def test_parameter_counts_of_the_paper_widths() -> None:
    """The sizes Table IV reports (meta-device counts equal real ones)."""
    counts = {case: ModelSpec.ablation(case).parameter_count() for case in ABLATIONS}
    assert counts["case5"] == n_params(ModelSpec("crofusenet").build())
    assert round(counts["case1"] / 1e6, 1) == 18.6 and round(counts["case2"] / 1e6, 1) == 18.8
    assert round(counts["case3"] / 1e6, 1) == 35.9 and round(counts["case4"] / 1e6, 1) == 29.8
    assert round(counts["case5"] / 1e6, 1) == 36.2
    small = ModelSpec("crofusenet", {"base_channels": SMALL})
    assert small.parameter_count() == n_params(small.build())
