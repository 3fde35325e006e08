"""A registry of model factories, and :class:`ModelSpec`, the JSON-serialisable name + options of one model.

Every registered factory has the signature ``f(*, optical_channels, sar_channels, num_classes, <typed options>)``
(keyword-only options, each with its default) and returns an ``nn.Module`` whose ``forward(optical, sar)`` gives
logits (a :class:`CroFuseOutput` for CroFuseNet). The factories' defaults are what :meth:`ModelSpec.resolved_options`
fills in, so a spec that leaves an option at its default and one that names the default are the same architecture.

Registered here, explicitly, at import: ``"crofusenet"``, ``"unet-fusion"`` (early fusion, 6 stacked channels),
``"unet-optical"``, ``"unet-sar"``, and the paper's deep comparison methods (IV-A2) ``"fcn"``, ``"hrnet"`` and
``"deeplabv3plus"``, whose networks live in :mod:`crofuse.baselines` (which does not import this module). Other code
registers more with :func:`register_model`.

Ablations (paper Sec. IV-C) are options of ``"crofusenet"``, with named presets in :data:`ABLATIONS`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from crofuse.baselines.deeplab import DeepLabV3Plus
from crofuse.baselines.fcn import FCN8s
from crofuse.baselines.hrnet import HRNet
from crofuse.errors import ConfigError
from crofuse.model.crofusenet import CroFuseNet
from crofuse.model.unet import ModalityInput, UNet

ModelFactory = Callable[..., nn.Module]

MODELS: dict[str, ModelFactory] = {}
"""Registered factories by name."""

MODEL_MODALITIES: dict[str, tuple[str, ...]] = {}
"""Which inputs each registered model reads: ``("optical", "sar")``, ``("optical",)`` or ``("sar",)``."""

ABLATIONS: dict[str, dict[str, Any]] = {
    "case1": {"fusion": "none", "mfa": False},  # CFM and MFA removed
    "case2": {"fusion": "none"},  # CFM removed
    "case3": {"mfa": False},  # MFA removed
    "case4": {"fusion": "concat"},  # CFM replaced by concatenation
    "case5": {},  # the proposed CroFuseNet
}
"""Options of ``"crofusenet"`` for the ablation cases of Sec. IV-C / Table IV."""

def register_model(
    name: str, *, modalities: Sequence[str] = ("optical", "sar")
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory`` under ``name``; re-registering a name replaces it."""
    modalities = tuple(modalities)

    def decorator(factory: ModelFactory) -> ModelFactory:
        MODELS[name] = factory
        MODEL_MODALITIES[name] = modalities
        return factory

    return decorator


def get_factory(name: str) -> ModelFactory:
    """The factory registered as ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def _json_canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_CHANNEL_ARGS = ("optical_channels", "sar_channels", "num_classes")


def factory_defaults(name: str) -> dict[str, Any]:
    """The keyword-only options of factory ``name`` with their defaults (JSON values: tuples become lists)."""
    factory = get_factory(name)
    defaults = {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
        and p.default is not inspect.Parameter.empty
        and p.name not in _CHANNEL_ARGS
    }
    return json.loads(_json_canonical(defaults))


@dataclass(frozen=True)
class ModelSpec:
    """A model's registry name and constructor options, e.g. ``ModelSpec("crofusenet", {"mfa": False})``.

    Options must be JSON values; ``to_dict``/``from_dict`` round-trip through JSON (the checkpoint card).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a model name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"model options must be a dict, got {type(self.options).__name__}")
        try:
            _json_canonical(dict(self.options))
        except TypeError as exc:
            raise ConfigError(f"model options must be JSON values: {exc}") from exc
        object.__setattr__(self, "options", dict(self.options))

    def __hash__(self) -> int:
        return hash((self.name, _json_canonical(self.options)))

    @classmethod
    def ablation(cls, case: str) -> ModelSpec:
        """The CroFuseNet ablation ``"case1"`` .. ``"case5"`` of Sec. IV-C."""
        if case not in ABLATIONS:
            raise ConfigError(f"unknown ablation {case!r}; use one of {sorted(ABLATIONS)}")
        return cls("crofusenet", dict(ABLATIONS[case]))

    @property
    def modalities(self) -> tuple[str, ...]:
        """The inputs this model reads."""
        get_factory(self.name)
        return MODEL_MODALITIES[self.name]

    def resolved_options(self) -> dict[str, Any]:
        """The options with the factory's defaults filled in, as JSON values (a tuple default and the list a JSON
        card holds compare equal); for comparing two specs."""
        return json.loads(_json_canonical({**factory_defaults(self.name), **self.options}))

    def same_architecture(self, other: ModelSpec) -> bool:
        """True when both specs build the same architecture: an option left at its default equals the explicit
        default (``ModelSpec("fcn")`` and ``ModelSpec("fcn", {"base_channels": 64})``)."""
        return self.name == other.name and self.resolved_options() == other.resolved_options()

    def parameter_count(self, optical_channels: int = 4, sar_channels: int = 2, num_classes: int = 2) -> int:
        """Trainable parameters of the model, counted on the ``meta`` device (no memory, no initialisation cost)."""
        with torch.device("meta"):
            model = self.build(optical_channels, sar_channels, num_classes)
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def build(self, optical_channels: int = 4, sar_channels: int = 2, num_classes: int = 2) -> nn.Module:
        """Instantiate the model; bad options raise :class:`~crofuse.errors.ConfigError` (a ``ValueError``)."""
        factory = get_factory(self.name)
        try:
            return factory(
                optical_channels=optical_channels, sar_channels=sar_channels, num_classes=num_classes, **self.options
            )
        except TypeError as exc:
            raise ConfigError(
                f"model {self.name!r} does not accept options {self.options}: {exc}; "
                f"see the signature of {getattr(factory, '__qualname__', factory)}"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        if not isinstance(data, Mapping) or "name" not in data:
            raise ConfigError(f"a model spec needs a 'name' (and optional 'options'), got {data!r}")
        unknown = set(data) - {"name", "options"}
        if unknown:
            raise ConfigError(f"unknown keys in model spec: {sorted(unknown)}")
        return cls(str(data["name"]), dict(data.get("options") or {}))


@register_model("crofusenet")
def crofusenet(
    *,
    optical_channels: int,
    sar_channels: int,
    num_classes: int,
    base_channels: int = 32,
    fusion: str = "cfm",
    mfa: bool = True,
    upsample: str = "transpose",
    head_relu: bool = True,
    first_shared: str = "none",
    reduction: int = 16,
) -> nn.Module:
    """CroFuseNet (three branches, CFM, MFA); see :class:`~crofuse.model.crofusenet.CroFuseNet`."""
    return CroFuseNet(
        optical_channels, sar_channels, num_classes, base_channels=base_channels, fusion=fusion, mfa=mfa,
        upsample=upsample, head_relu=head_relu, first_shared=first_shared, reduction=reduction,
    )


def _unet_factory(modalities: tuple[str, ...]) -> ModelFactory:
    def factory(
        *,
        optical_channels: int,
        sar_channels: int,
        num_classes: int,
        base_channels: int = 32,
        upsample: str = "transpose",
        head_relu: bool = True,
    ) -> nn.Module:
        in_channels = {"optical": optical_channels, "sar": sar_channels}
        net = UNet(sum(in_channels[m] for m in modalities), num_classes, base_channels=base_channels,
                   upsample=upsample, head_relu=head_relu)
        return ModalityInput(net, modalities)

    factory.__doc__ = f"The paper's UNet reading {' + '.join(modalities)} (stacked along channels)."
    return factory


register_model("unet-fusion", modalities=("optical", "sar"))(_unet_factory(("optical", "sar")))
register_model("unet-optical", modalities=("optical",))(_unet_factory(("optical",)))
register_model("unet-sar", modalities=("sar",))(_unet_factory(("sar",)))


# ---- the paper's deep comparison methods (IV-A2): the 6 bands stacked, as the paper feeds them ----------------------
_FUSED = ("optical", "sar")


@register_model("fcn")
def fcn(
    *,
    optical_channels: int,
    sar_channels: int,
    num_classes: int,
    base_channels: int = 64,
    fc_channels: int | None = None,
    dropout: float = 0.5,
    dropout_mode: Literal["element", "channel"] = "element",
) -> nn.Module:
    """FCN-8s on a VGG-16-like encoder over the stacked bands; see :class:`~crofuse.baselines.fcn.FCN8s`."""
    return ModalityInput(FCN8s(optical_channels + sar_channels, num_classes, base_channels=base_channels,
                               fc_channels=fc_channels, dropout=dropout, dropout_mode=dropout_mode), _FUSED)


@register_model("hrnet")
def hrnet(
    *,
    optical_channels: int,
    sar_channels: int,
    num_classes: int,
    width: int = 18,
    stem_channels: int = 64,
    num_blocks: int = 4,
    num_modules: Sequence[int] = (1, 4, 3),
) -> nn.Module:
    """HRNetV2 (W18 by default) over the stacked bands; see :class:`~crofuse.baselines.hrnet.HRNet`."""
    return ModalityInput(HRNet(optical_channels + sar_channels, num_classes, width=width, stem_channels=stem_channels,
                               num_blocks=num_blocks, num_modules=tuple(num_modules)), _FUSED)  # type: ignore[arg-type]


@register_model("deeplabv3plus")
def deeplabv3plus(
    *,
    optical_channels: int,
    sar_channels: int,
    num_classes: int,
    base_channels: int = 64,
    block: Literal["basic", "bottleneck"] = "bottleneck",
    layers: Sequence[int] = (3, 4, 6, 3),
    aspp_rates: Sequence[int] = (6, 12, 18),
    aspp_channels: int | None = None,
    low_level_channels: int | None = None,
) -> nn.Module:
    """DeepLabv3+ with a ResNet-50-like encoder over the stacked bands; see
    :class:`~crofuse.baselines.deeplab.DeepLabV3Plus` (and :func:`~crofuse.baselines.deeplab.scaled_aspp_rates` for
    rates that suit 128-pixel patches)."""
    return ModalityInput(DeepLabV3Plus(optical_channels + sar_channels, num_classes, base_channels=base_channels,
                                       block=block, layers=tuple(layers), aspp_rates=tuple(aspp_rates),  # type: ignore[arg-type]
                                       aspp_channels=aspp_channels, low_level_channels=low_level_channels), _FUSED)

__all__ = [
    "ABLATIONS",
    "MODELS",
    "MODEL_MODALITIES",
    "ModelFactory",
    "ModelSpec",
    "crofusenet",
    "deeplabv3plus",
    "factory_defaults",
    "fcn",
    "get_factory",
    "hrnet",
    "register_model",
]
