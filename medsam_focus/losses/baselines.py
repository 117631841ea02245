"""The four distance-based losses FocusSDF is compared against, each as its paper defines it.

All four take their distances from the same place: ``phi``, the reference-frame signed
distance of the ground truth (``medsam_focus.sdf``: negative inside, ``+-h`` on the pixels
touching the contour, in pixels of the 1024-pixel reference frame), cached by the data
pipeline or computed from the target when not given. None computes a distance transform of
its own; the Hausdorff loss's prediction distance map also comes from ``sdf``. Every term
takes (B, 1, H, W) logits and target and returns a scalar. The single-output adaptations
(MedSAM predicts one foreground logit map) are stated per class.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medsam_focus.errors import MedsamFocusError
from medsam_focus.losses._inputs import has_boundary, prepare, resolve_phi
from medsam_focus.losses.registry import register_term
from medsam_focus.sdf import signed_distance


@register_term("boundary", distance_based=True, summary="boundary loss (Kervadec et al., MIDL 2019)")
class BoundaryLoss(nn.Module):
    """Boundary loss: Kervadec, Bouchtiba, Desrosiers, Granger, Dolz, Ben Ayed, "Boundary loss for
    highly unbalanced segmentation", MIDL 2019 (extended in Medical Image Analysis 67, 2021).

    ``L_B = mean over pixels of s(x) * phi_G(x)`` with ``s = sigmoid(z)`` the foreground
    probability and ``phi_G`` the level-set (signed distance) of the ground-truth boundary,
    negative inside and positive outside, as in the paper. The paper's integral over the
    image is taken as the mean over pixels (their released code does the same). Distances are
    reference-frame pixels; the contour pixels carry ``+-0.5 * 1024 / S`` (the zero level lies
    between pixel centres; their code puts 0 on the inner contour and 1 on the outer one).
    The loss is negative at its optimum (the predicted region equals the ground truth). For an
    empty ground truth ``phi = +D`` everywhere, so any foreground probability is penalised.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        z, _ = prepare(logits, target)
        phi = resolve_phi(target, phi, like=z)
        return (torch.sigmoid(z) * phi).mean()


@register_term("hausdorff", distance_based=True, summary="Hausdorff DT loss, alpha=2 (Karimi & Salcudean, TMI 2019)")
class HausdorffDTLoss(nn.Module):
    """Two-sided distance-transform Hausdorff loss: Karimi and Salcudean, "Reducing the
    Hausdorff distance in medical image segmentation with convolutional neural networks",
    IEEE TMI 39(2), 2019 (the ``Loss_DT`` variant).

    ``L = mean over pixels of (p - g)^2 * (d_g^alpha + d_p^alpha)``, ``alpha = 2``, with ``p =
    sigmoid(z)``, ``d_g`` the unsigned distance to the ground-truth boundary and ``d_p`` the
    unsigned distance to the boundary of the thresholded prediction ``p > 0.5``, recomputed at
    every call and treated as a constant (no gradient), as in the paper. Distances are
    ``|phi|`` in reference-frame pixels (contour pixels ``0.5 * 1024 / S``). The prediction's
    map is put in the same units as the given ``phi`` by reading the scale off ``phi`` itself
    (its contour pixels sit at ``+-0.5 * scale``; without a contour, ``|phi| = diagonal *
    scale``), so it matches whatever loss frame the data pipeline cached ``phi`` for. A mask
    without a boundary (empty or full) contributes ``d = 0`` (no boundary, no distance
    penalty), so an all-background prediction is still penalised through ``d_g``.
    """

    def __init__(self, alpha: float = 2.0):
        super().__init__()
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise MedsamFocusError(f"Hausdorff loss alpha={alpha!r} must be > 0 (the paper uses 2)")
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def forward(self, logits: torch.Tensor, target: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        z, g = prepare(logits, target)
        phi = resolve_phi(target, phi, like=z)
        p = torch.sigmoid(z)
        with torch.no_grad():
            magnitude = phi.abs()
            boundary = has_boundary(phi)
            scale = torch.where(
                boundary,
                magnitude.amin(dim=(1, 2, 3), keepdim=True) / 0.5,
                magnitude.amax(dim=(1, 2, 3), keepdim=True) / math.hypot(*z.shape[-2:]),
            )
            phi_pred = signed_distance(p > 0.5).to(device=z.device, dtype=z.dtype) * scale
            d_pred = torch.where(has_boundary(phi_pred), phi_pred.abs(), torch.zeros_like(phi_pred))
            d_target = torch.where(boundary, magnitude, torch.zeros_like(phi))
            penalty = d_target**self.alpha + d_pred**self.alpha
        return ((p - g) ** 2 * penalty).mean()


@register_term(
    "sdm", distance_based=True, summary="signed-distance-map regression, tanh, L1 + product (Xue et al., AAAI 2020)"
)
class SignedDistanceRegressionLoss(nn.Module):
    """Signed distance map regression: Xue, Tang, Qiao, Gong, Yin, Qian, Huang, Fan, Huang,
    "Shape-aware organ segmentation by predicting signed distance maps", AAAI 2020.

    The network's output passes through tanh to predict the ground truth's signed distance map
    normalised to [-1, 1] (negative inside, positive outside, as in the paper): each side of
    ``phi`` is divided by its own largest magnitude, so the deepest inside pixel is -1 and the
    farthest outside pixel +1. The loss per image is the L1 term plus the product term

        ``mean |f - y|  -  sum(f y) / (sum(f f) + sum(y y) + sum(f y))``

    (the L1 norm taken as a mean so it does not grow with the image size; the product term
    with sums over the image, i.e. inner products), then the batch mean. Its minimum, at
    ``f = y``, is -1/3. Single-output adaptation: our logits are positive inside while the
    SDM is negative inside, so the predicted SDM is ``f = tanh(-z)``. Empty or full masks have
    ``y = +1`` or ``-1`` everywhere.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        z, _ = prepare(logits, target)
        phi = resolve_phi(target, phi, like=z)
        f = torch.tanh(-z)
        with torch.no_grad():
            inside = phi < 0
            deepest = torch.where(inside, -phi, torch.zeros_like(phi)).amax(dim=(1, 2, 3), keepdim=True)
            farthest = torch.where(inside, torch.zeros_like(phi), phi).amax(dim=(1, 2, 3), keepdim=True)
            y = torch.where(inside, phi / deepest.clamp_min(1e-12), phi / farthest.clamp_min(1e-12))
        l1 = (f - y).abs().mean(dim=(1, 2, 3))
        dot = (f * y).sum(dim=(1, 2, 3))
        product = -dot / ((f * f).sum(dim=(1, 2, 3)) + (y * y).sum(dim=(1, 2, 3)) + dot)
        return (l1 + product).mean()


@register_term("dmp", distance_based=True, summary="distance-map-penalised cross-entropy (Caliva et al., MIDL 2019)")
class DistancePenalisedCELoss(nn.Module):
    """Distance-map-penalised cross-entropy: Caliva, Iriondo, Martinez, Majumdar, Pedoia,
    "Distance map loss penalty term for semantic segmentation", MIDL 2019 (extended abstract).

    ``L = mean over pixels of (1 + Phi) * CE(z, g)`` with binary cross-entropy on the logits
    and ``Phi`` the ground-truth distance map inverted so that the boundary gets the largest
    penalty, as the paper describes: on each side of the contour separately, ``Phi = (d_max -
    d) / (d_max - d_min)`` with ``d = |phi|`` (1 on the pixels touching the contour, 0 on the
    farthest pixel of that side; 1 where a side is a single distance deep). Pixel weights thus
    run from 1 to 2. A mask without a boundary gets ``Phi = 0``: plain BCE.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        z, g = prepare(logits, target)
        phi = resolve_phi(target, phi, like=z)
        with torch.no_grad():
            distance = phi.abs()
            penalty = torch.zeros_like(phi)
            for side in (phi < 0, phi > 0):
                far = torch.where(side, distance, -torch.inf).amax(dim=(1, 2, 3), keepdim=True)
                near = torch.where(side, distance, torch.inf).amin(dim=(1, 2, 3), keepdim=True)
                span = far - near
                inverted = torch.where(span > 0, (far - distance) / span.clamp_min(1e-12), torch.ones_like(distance))
                penalty = torch.where(side, inverted, penalty)
            penalty = torch.where(has_boundary(phi), penalty, torch.zeros_like(penalty))
        cross_entropy = F.binary_cross_entropy_with_logits(z, g, reduction="none")
        return ((1 + penalty) * cross_entropy).mean()
