"""FocusSDF: a boundary-focused signed-distance loss, in this project's formulation.

The FocusSDF paper (Shafique et al., arXiv 2511.11864) describes the loss only in outline: it
is built on the signed distance function of the ground truth, weights pixel errors by an
exponential of the distance to the boundary (gamma = 0.005 in its figure), adds a
gradient-consistency term weighted by lambda, and is used together with Dice. Its full
equations are not public. The formulation below is this project's (shared/docs/FOCUSSDF.md),
chosen to honour each of those points while staying bounded, differentiable and usable with a
single-output model such as MedSAM:

- ``phi_ref``: signed distance of the ground truth (negative inside) in pixels of the
  1024-pixel reference frame, ``phi * 1024 / S`` for a loss frame of side S;
- focus weights ``w = exp(-gamma * |phi_ref|)``;
- target signed field ``s_g = tanh(-phi_ref / (2 eps))`` (+1 inside, -1 outside, 0 on the
  contour);
- predicted signed field ``s_p = tanh(z / 2) = 2 sigmoid(z) - 1`` (so ``s_p = s_g`` exactly
  when ``z = -phi_ref / eps``: the logits are supervised to act as a scaled signed distance
  near the boundary);
- focus term ``L_F = sum w (s_p - s_g)^2 / sum w`` per image;
- gradient-consistency term ``L_G = sum w |grad s_p - grad s_g|^2 / sum w`` per image, with
  central differences along rows and columns (one-sided at the border), in loss-frame
  pixels;
- ``FocusSDF = mean over the batch of (L_F + lambda L_G)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from medsam_focus.errors import MedsamFocusError
from medsam_focus.losses._inputs import prepare, resolve_phi
from medsam_focus.losses.registry import register_term


def focus_weights(phi_ref, gamma: float = 0.005):
    """``exp(-gamma * |phi_ref|)``: 1 on the contour, decaying with the distance (numpy or torch)."""
    if isinstance(phi_ref, torch.Tensor):
        return torch.exp(-gamma * phi_ref.abs())
    return np.exp(-gamma * np.abs(phi_ref))


def target_signed_field(phi_ref, eps: float = 2.0):
    """``tanh(-phi_ref / (2 eps))``: +1 deep inside, -1 far outside, 0 on the contour (numpy or torch)."""
    if isinstance(phi_ref, torch.Tensor):
        return torch.tanh(-phi_ref / (2 * eps))
    return np.tanh(-np.asarray(phi_ref) / (2 * eps))


def predicted_signed_field(logits: torch.Tensor) -> torch.Tensor:
    """``tanh(z / 2) = 2 sigmoid(z) - 1``: the prediction as a signed field in (-1, 1)."""
    return torch.tanh(logits / 2)


def central_difference(field: torch.Tensor, dim: int) -> torch.Tensor:
    """Central differences ``(f[i+1] - f[i-1]) / 2`` along ``dim``, one-sided at both ends.

    The same scheme as ``torch.gradient(field, dim=dim, edge_order=1)``; zero when the axis
    has a single sample.
    """
    n = field.shape[dim]
    if n < 2:
        return torch.zeros_like(field)
    first = field.narrow(dim, 1, 1) - field.narrow(dim, 0, 1)
    last = field.narrow(dim, n - 1, 1) - field.narrow(dim, n - 2, 1)
    if n == 2:
        return torch.cat([first, last], dim)
    interior = (field.narrow(dim, 2, n - 2) - field.narrow(dim, 0, n - 2)) / 2
    return torch.cat([first, interior, last], dim)


# FOCUSSDF.md's defaults, the one place run and study configs take them from
FOCUSSDF_DEFAULTS = {"gamma": 0.005, "lam": 1.0, "eps": 2.0}


@register_term("focussdf", distance_based=True, summary="FocusSDF: boundary-weighted signed-field + gradient terms")
class FocusSDFLoss(nn.Module):
    """FocusSDF loss (this project's formulation; see the module docstring and FOCUSSDF.md).

    Args:
        gamma: focus-weight decay per reference-frame pixel (0 gives uniform weights).
        lam: weight of the gradient-consistency term.
        eps: width of the target signed field in reference-frame pixels.

    ``forward(logits, target, phi=None)``: logits and target (B, 1, H, W) in the loss frame;
    ``phi`` the reference-frame signed distance of the target (B, 1, H, W), cached by the data
    pipeline, computed from ``target`` with a loss frame of ``max(H, W)`` when None. Returns
    the scalar loss. After each call ``last_focus`` and ``last_gradient`` hold the batch means
    of ``L_F`` and ``L_G`` (unweighted, detached tensors) for logging.
    """

    def __init__(
        self,
        gamma: float = FOCUSSDF_DEFAULTS["gamma"],
        lam: float = FOCUSSDF_DEFAULTS["lam"],
        eps: float = FOCUSSDF_DEFAULTS["eps"],
    ):
        super().__init__()
        for name, value, zero_ok in (("gamma", gamma, True), ("lam", lam, True), ("eps", eps, False)):
            valid = isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 or (zero_ok and value == 0))
            if not valid:
                bound = ">= 0" if zero_ok else "> 0"
                raise MedsamFocusError(f"FocusSDF {name}={value!r} must be a finite number {bound}")
        self.gamma = float(gamma)
        self.lam = float(lam)
        self.eps = float(eps)
        self.last_focus: torch.Tensor | None = None
        self.last_gradient: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, lam={self.lam}, eps={self.eps}"

    def forward(self, logits: torch.Tensor, target: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        z, _ = prepare(logits, target)
        phi = resolve_phi(target, phi, like=z)
        # Each term is a ratio of weighted sums, so a per-image constant factor in w cancels:
        # measuring |phi| from its per-image minimum keeps the largest weight at 1 and the
        # sums away from underflow for any gamma (identical values, no 0 / 0).
        magnitude = phi.abs()
        weights = focus_weights(magnitude - magnitude.amin(dim=(1, 2, 3), keepdim=True), self.gamma)
        # The gradient is linear, so grad s_p - grad s_g = grad (s_p - s_g).
        difference = predicted_signed_field(z) - target_signed_field(phi, self.eps)
        gradient_sq = central_difference(difference, 2) ** 2 + central_difference(difference, 3) ** 2
        total_weight = weights.sum(dim=(1, 2, 3))
        focus = (weights * difference**2).sum(dim=(1, 2, 3)) / total_weight
        gradient = (weights * gradient_sq).sum(dim=(1, 2, 3)) / total_weight
        self.last_focus = focus.mean().detach()
        self.last_gradient = gradient.mean().detach()
        return (focus + self.lam * gradient).mean()
