"""The plot-sdf figure: what the FocusSDF loss sees for one mask, panel by panel.

Side by side: the reference-frame signed distance ``phi_ref`` (negative inside), the focus
weights ``exp(-gamma |phi_ref|)`` for a few gamma values, and the target signed field
``tanh(-phi_ref / (2 eps))``, each with the mask contour. The mask is taken as the loss
frame: distances are scaled to the 1024-pixel reference frame from its longer side (or from
``frame_size``). Drawn with matplotlib's Agg canvas, so no display is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsam_focus.errors import MedsamFocusError

DEFAULT_GAMMAS = (0.001, 0.005, 0.02)


def sdf_panels(
    mask: np.ndarray, gammas: Sequence[float] = DEFAULT_GAMMAS, eps: float = 2.0, frame_size: int | None = None
) -> dict[str, np.ndarray]:
    """The arrays drawn by :func:`sdf_figure`: ``phi_ref``, ``weights[gamma]`` and ``target_field``.

    Returns ``{"phi_ref": (H, W), "weights": {gamma: (H, W)}, "target_field": (H, W)}``.
    """
    from medsam_focus.losses.focussdf import focus_weights, target_signed_field
    from medsam_focus.sdf import reference_frame_sdf

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MedsamFocusError(f"plot-sdf draws one 2D mask; got an array of shape {mask.shape}")
    gammas = tuple(float(g) for g in gammas)
    if not gammas or any(not np.isfinite(g) or g < 0 for g in gammas):
        raise MedsamFocusError(f"gammas {gammas} must be one or more finite numbers >= 0")
    if not (np.isfinite(eps) and eps > 0):
        raise MedsamFocusError(f"eps={eps} must be a finite number > 0 (reference-frame pixels)")
    phi_ref = reference_frame_sdf(mask, frame_size)
    return {
        "phi_ref": phi_ref,
        "weights": {gamma: focus_weights(phi_ref, gamma) for gamma in gammas},
        "target_field": target_signed_field(phi_ref, eps),
    }


def sdf_figure(
    mask: np.ndarray,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    eps: float = 2.0,
    frame_size: int | None = None,
    title: str | None = None,
):
    """A matplotlib ``Figure`` with one row of panels (see the module docstring).

    Args:
        mask: (H, W) mask in the loss frame (foreground where ``mask > 0.5``).
        gammas: focus-weight decays to show, per reference-frame pixel.
        eps: width of the target signed field, reference-frame pixels.
        frame_size: loss-frame side; default ``max(H, W)``.
        title: figure title (default: mask size and frame).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    panels = sdf_panels(mask, gammas, eps, frame_size)
    phi = panels["phi_ref"]
    height, width = phi.shape
    count = 2 + len(panels["weights"])
    panel_width = 3.6 * max(0.6, min(1.6, width / height))
    figure = Figure(figsize=(panel_width * count, 3.9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, count, squeeze=False)[0]
    has_contour = bool((phi < 0).any() and (phi > 0).any())

    def draw(ax, image, panel_title, colorbar_label, **style):
        shown = ax.imshow(image, interpolation="nearest", **style)
        if has_contour:
            ax.contour(phi, levels=[0.0], colors="black", linewidths=0.8)
        ax.set_title(panel_title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        figure.colorbar(shown, ax=ax, shrink=0.85, label=colorbar_label)

    low, high = float(phi.min()), float(phi.max())
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(low, -1e-6), vmax=max(high, 1e-6))
    draw(axes[0], phi, "signed distance $\\phi_{ref}$ (< 0 inside)", "reference-frame px", cmap="RdBu", norm=norm)
    for ax, (gamma, weights) in zip(axes[1:-1], panels["weights"].items(), strict=True):
        label = f"focus weight, $\\gamma$ = {gamma:g}"
        draw(ax, weights, label, "exp(-$\\gamma|\\phi|$)", cmap="magma", vmin=0, vmax=1)
    label = f"target field $s_g$, $\\epsilon$ = {eps:g}"
    draw(axes[-1], panels["target_field"], label, "tanh(-$\\phi$ / 2$\\epsilon$)", cmap="RdBu_r", vmin=-1, vmax=1)
    frame = frame_size or max(height, width)
    figure.suptitle(title or f"FocusSDF view of a {height} x {width} mask (loss frame {frame}, reference 1024)")
    return figure


def save_sdf_figure(mask: np.ndarray, out: str | Path, dpi: int = 120, **options) -> Path:
    """Draw :func:`sdf_figure` and write it to ``out`` (format from the suffix, e.g. .png, .pdf)."""
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise MedsamFocusError(f"output folder {out.parent} does not exist; create it or choose another --out")
    figure = sdf_figure(mask, **options)
    try:
        figure.savefig(out, dpi=dpi)
    except (ValueError, OSError) as error:
        raise MedsamFocusError(f"cannot write figure {out}: {error}") from error
    return out
