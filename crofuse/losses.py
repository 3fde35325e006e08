"""The comprehensive loss of CroFuseNet, eq. (11) with cross entropy (eq. (12)), paper Sec. III-B.

``Loss_total = L_shared(S_shared, G) + alpha * L_optical(S_optical, G) + beta * L_SAR(S_SAR, G)``, with the
paper's ``alpha = 1``, ``beta = 0.8``. For any model that returns a plain logits tensor the loss is plain cross
entropy. Pixels labelled ``ignore_index`` (255, nodata) count in no term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crofuse import NODATA_LABEL
from crofuse.model.crofusenet import CroFuseOutput


def masked_cross_entropy(logits: Tensor, target: Tensor, *, ignore_index: int = NODATA_LABEL) -> Tensor:
    """Mean cross entropy over the pixels whose label is not ``ignore_index``; 0 (with gradient) if there are none.

    ``logits`` ``(N, C, H, W)``, ``target`` ``(N, H, W)`` integer labels. Unlike ``F.cross_entropy`` this never
    returns NaN for an all-nodata batch.
    """
    if logits.ndim != target.ndim + 1 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match; "
            "expected logits (N, C, H, W) and target (N, H, W)"
        )
    target = target.long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= logits.shape[1]))
    if bool(bad.any()):
        values = torch.unique(target[bad]).tolist()
        raise ValueError(
            f"labels {values} are outside 0..{logits.shape[1] - 1} and are not the ignore value {ignore_index}"
        )
    total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    return total / valid.sum().clamp(min=1)


class CroFuseLoss(nn.Module):
    """Eq. (11): ``L_shared + alpha * L_optical + beta * L_sar`` (cross entropy, ``ignore_index`` skipped).

    ``forward(output, target)`` takes a :class:`~crofuse.model.CroFuseOutput` (or a plain logits tensor, then the
    loss is plain cross entropy) and ``target`` ``(N, H, W)`` labels; :meth:`components` returns every term.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.8, *, ignore_index: int = NODATA_LABEL) -> None:
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.ignore_index = int(ignore_index)

    def components(self, output: CroFuseOutput | Tensor, target: Tensor) -> dict[str, Tensor]:
        """``{"shared", "optical", "sar", "total"}`` for CroFuseNet; ``{"shared", "total"}`` for a plain tensor."""
        if isinstance(output, CroFuseOutput):
            parts = {
                "shared": masked_cross_entropy(output.shared, target, ignore_index=self.ignore_index),
                "optical": masked_cross_entropy(output.optical, target, ignore_index=self.ignore_index),
                "sar": masked_cross_entropy(output.sar, target, ignore_index=self.ignore_index),
            }
            parts["total"] = parts["shared"] + self.alpha * parts["optical"] + self.beta * parts["sar"]
            return parts
        if isinstance(output, Tensor):
            shared = masked_cross_entropy(output, target, ignore_index=self.ignore_index)
            return {"shared": shared, "total": shared}
        raise TypeError(f"expected a CroFuseOutput or a Tensor, got {type(output).__name__}")

    def forward(self, output: CroFuseOutput | Tensor, target: Tensor) -> Tensor:
        return self.components(output, target)["total"]

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, ignore_index={self.ignore_index}"


__all__ = ["CroFuseLoss", "masked_cross_entropy"]
