"""Input checks shared by every loss term: shapes, dtypes, and the cached signed distance."""

from __future__ import annotations

import torch

from medsam_focus.errors import MedsamFocusError
from medsam_focus.sdf import reference_frame_sdf


def prepare(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated ``(z, g)``: logits promoted to float32 (float64 kept), binary target like ``z``.

    Args:
        logits: (B, 1, H, W) mask logits in the loss frame.
        target: (B, 1, H, W) ground truth; foreground where ``target > 0.5``.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise MedsamFocusError("logits and target must be torch tensors of shape (B, 1, H, W)")
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise MedsamFocusError(f"logits have shape {tuple(logits.shape)}; losses take (B, 1, H, W) mask logits")
    if target.shape != logits.shape:
        raise MedsamFocusError(
            f"target shape {tuple(target.shape)} differs from logits shape {tuple(logits.shape)}; "
            "bring the mask into the loss frame first"
        )
    if not logits.is_floating_point():
        raise MedsamFocusError(f"logits have dtype {logits.dtype}; they must be floating point")
    # Half-precision logits (autocast) are evaluated in float32: exp/tanh and the weighted
    # sums lose too much in 16 bits.
    z = logits if logits.dtype == torch.float64 else logits.float()
    g = (target > 0.5).to(z.dtype)
    return z, g


def resolve_phi(target: torch.Tensor, phi, like: torch.Tensor) -> torch.Tensor:
    """The reference-frame signed distance of ``target``: the given (cached) ``phi`` or computed.

    When ``phi`` is None it is computed from ``target`` with the loss frame taken as
    ``max(H, W)`` (``medsam_focus.sdf.reference_frame_sdf``). Returned detached, on ``like``'s
    device and dtype.
    """
    if phi is None:
        phi = reference_frame_sdf(target.detach())
    elif not isinstance(phi, torch.Tensor):
        phi = torch.as_tensor(phi)
    if tuple(phi.shape) != tuple(like.shape):
        raise MedsamFocusError(
            f"phi has shape {tuple(phi.shape)} but the logits have {tuple(like.shape)}; give the reference-frame "
            "signed distance of the target, (B, 1, H, W)"
        )
    return phi.detach().to(device=like.device, dtype=like.dtype)


def has_boundary(phi: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1) bool: whether each image's mask has a boundary (both signs present in phi)."""
    return (phi.amin(dim=(1, 2, 3), keepdim=True) < 0) & (phi.amax(dim=(1, 2, 3), keepdim=True) > 0)
