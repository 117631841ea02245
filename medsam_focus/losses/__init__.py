"""Loss terms and training objectives: Dice, BCE, FocusSDF and four distance-based baselines.

Objectives are named by strings (``dice+focussdf``, ``dice+0.5*boundary``) and built with
:func:`build_objective`; every term shares the signed distances of :mod:`medsam_focus.sdf`
(``phi``: reference-frame signed distance of the target, cached by the data pipeline).
Conventions and citations: docs/losses_and_metrics.md.
"""

from __future__ import annotations

# Importing the term modules registers their terms, in this order (the order of known_terms()).
from medsam_focus.losses.region import BCELoss, SoftDiceLoss  # isort: skip
from medsam_focus.losses.focussdf import (  # isort: skip
    FocusSDFLoss,
    central_difference,
    focus_weights,
    predicted_signed_field,
    target_signed_field,
)
from medsam_focus.losses.baselines import (  # isort: skip
    BoundaryLoss,
    DistancePenalisedCELoss,
    HausdorffDTLoss,
    SignedDistanceRegressionLoss,
)
from medsam_focus.losses.objective import (  # isort: skip
    OBJECTIVES,
    Objective,
    ObjectiveTerm,
    build_objective,
    parse_objective,
)
from medsam_focus.losses.registry import known_terms, register_term  # isort: skip

__all__ = [
    "OBJECTIVES",
    "BCELoss",
    "BoundaryLoss",
    "DistancePenalisedCELoss",
    "FocusSDFLoss",
    "HausdorffDTLoss",
    "Objective",
    "ObjectiveTerm",
    "SignedDistanceRegressionLoss",
    "SoftDiceLoss",
    "build_objective",
    "central_difference",
    "focus_weights",
    "known_terms",
    "parse_objective",
    "predicted_signed_field",
    "register_term",
    "target_signed_field",
]
