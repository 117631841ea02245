"""Region losses: soft Dice with squared denominators and binary cross-entropy, as MedSAM trains."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsam_focus.losses._inputs import prepare
from medsam_focus.losses.registry import register_term

DICE_SMOOTH = 1e-5


@register_term("dice", distance_based=False, summary="soft Dice on sigmoid(z), squared denominators (MedSAM)")
class SoftDiceLoss(nn.Module):
    """Soft Dice loss with squared denominators, the definition MedSAM trains with.

    Per image: ``1 - (2 sum(p g) + s) / (sum(p^2) + sum(g^2) + s)`` with ``p = sigmoid(z)``
    and ``s = 1e-5``, then the mean over the batch (MONAI's ``DiceLoss(sigmoid=True,
    squared_pred=True)``, used by MedSAM's training script).

    Shapes: logits and target (B, 1, H, W); returns a scalar.
    """

    def __init__(self, smooth: float = DICE_SMOOTH):
        super().__init__()
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        z, g = prepare(logits, target)
        p = torch.sigmoid(z)
        intersection = (p * g).sum(dim=(1, 2, 3))
        denominator = (p * p).sum(dim=(1, 2, 3)) + (g * g).sum(dim=(1, 2, 3))
        return (1 - (2 * intersection + self.smooth) / (denominator + self.smooth)).mean()


@register_term("bce", distance_based=False, summary="binary cross-entropy with logits, mean over pixels")
class BCELoss(nn.Module):
    """Binary cross-entropy with logits, mean over all pixels of the batch (MedSAM's BCE term).

    Shapes: logits and target (B, 1, H, W); returns a scalar.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        z, g = prepare(logits, target)
        return F.binary_cross_entropy_with_logits(z, g)
