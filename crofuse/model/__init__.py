"""CroFuseNet (Wu et al., IEEE JSTARS 2023), the paper's UNet, and the model registry.

- :mod:`crofuse.model.blocks`: conv-BN-ReLU, SE channel attention, CFM, MFA, up blocks, heads;
- :mod:`crofuse.model.unet`: :class:`UNet` and :class:`ModalityInput`;
- :mod:`crofuse.model.crofusenet`: :class:`CroFuseNet`, :class:`CroFuseOutput`, :func:`main_logits`;
- :mod:`crofuse.model.registry`: :func:`register_model`, :data:`MODELS`, :class:`ModelSpec`, :data:`ABLATIONS`.
"""

from __future__ import annotations

from crofuse.model.crofusenet import FIRST_SHARED_MODES, FUSION_MODES, CroFuseNet, CroFuseOutput, main_logits
from crofuse.model.registry import (
    ABLATIONS,
    MODEL_MODALITIES,
    MODELS,
    ModelSpec,
    get_factory,
    register_model,
)
from crofuse.model.unet import SIZE_MULTIPLE, ModalityInput, UNet

__all__ = [
    "ABLATIONS",
    "FIRST_SHARED_MODES",
    "FUSION_MODES",
    "MODELS",
    "MODEL_MODALITIES",
    "SIZE_MULTIPLE",
    "CroFuseNet",
    "CroFuseOutput",
    "ModalityInput",
    "ModelSpec",
    "UNet",
    "get_factory",
    "main_logits",
    "register_model",
]
