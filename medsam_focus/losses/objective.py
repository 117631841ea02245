"""Training objectives named by strings: ``dice+focussdf``, ``dice+0.5*boundary``, ...

One parser and one registry (:mod:`medsam_focus.losses.registry`): an objective is a sum of
registered terms, each with an optional positive weight written ``w*name``. Distance-based
terms can be ramped in linearly over the first ``warmup_steps`` optimiser steps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from medsam_focus.errors import MedsamFocusError
from medsam_focus.losses._inputs import prepare, resolve_phi
from medsam_focus.losses.registry import known_terms, term_spec

OBJECTIVES = (
    "dice",
    "dice+bce",
    "dice+focussdf",
    "dice+bce+focussdf",
    "dice+boundary",
    "dice+hausdorff",
    "dice+sdm",
    "dice+dmp",
)
"""The documented objectives: MedSAM's own, Dice + FocusSDF, and the four distance baselines."""

_TERM = re.compile(r"^(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class ObjectiveTerm:
    """One parsed term of an objective string."""

    name: str
    weight: float


def parse_objective(spec: str) -> list[ObjectiveTerm]:
    """Parse ``"dice+0.5*focussdf"`` into terms; unknown or repeated names raise MedsamFocusError."""
    if not isinstance(spec, str) or not spec.strip():
        raise MedsamFocusError(f"objective {spec!r} is empty; {_known_names_hint()}")
    terms: list[ObjectiveTerm] = []
    for part in spec.split("+"):
        match = _TERM.match(part.strip())
        if match is None:
            raise MedsamFocusError(
                f"objective term {part.strip()!r} in {spec!r} is not of the form NAME or WEIGHT*NAME "
                f"(e.g. dice+0.5*focussdf); {_known_names_hint()}"
            )
        name = match["name"].lower()
        if term_spec(name) is None:
            raise MedsamFocusError(f"unknown loss term {name!r} in objective {spec!r}; {_known_names_hint()}")
        weight = float(match["weight"]) if match["weight"] else 1.0
        if not math.isfinite(weight) or weight <= 0:
            raise MedsamFocusError(f"weight {match['weight']} of {name!r} in {spec!r} must be a positive number")
        if any(term.name == name for term in terms):
            raise MedsamFocusError(f"loss term {name!r} appears twice in objective {spec!r}; combine the weights")
        terms.append(ObjectiveTerm(name=name, weight=weight))
    return terms


def _known_names_hint() -> str:
    return f"known terms: {', '.join(known_terms())}; documented objectives: {', '.join(OBJECTIVES)}"


class Objective(nn.Module):
    """A weighted sum of registered loss terms with a linear warm-up of the distance terms.

    ``forward(logits, target, phi=None, step=None)``: logits and target (B, 1, H, W) in the
    loss frame; ``phi`` the cached reference-frame signed distance of the target (computed
    once per call from ``target`` when None and a term needs it, then shared by all terms);
    ``step`` the optimiser step counted from 0. Returns ``(total, terms)``: the scalar loss and
    ``{term name: weighted value}`` as floats, which add up to ``total``. A distance-based
    term's weight is multiplied by ``min(1, step / warmup_steps)`` (so it is 0 at step 0 and
    full from ``warmup_steps`` on; it is not evaluated while its factor is 0); ``step=None``
    means after the warm-up (use it for validation). Dice and BCE are never ramped.

    After each call ``last_details`` holds finer parts for logging, also weighted: for
    FocusSDF ``focussdf.focus`` and ``focussdf.gradient`` (which add up to ``focussdf``), and
    ``warmup_factor``.
    """

    def __init__(self, terms: list[ObjectiveTerm], warmup_steps: int = 0, term_options: dict | None = None):
        super().__init__()
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise MedsamFocusError(f"warmup_steps={warmup_steps!r} must be a whole number of steps >= 0")
        term_options = dict(term_options or {})
        unknown = set(term_options) - {term.name for term in terms}
        if unknown:
            raise MedsamFocusError(f"options given for {sorted(unknown)}, which are not in the objective")
        self.spec = "+".join(term.name if term.weight == 1 else f"{term.weight:g}*{term.name}" for term in terms)
        self.weights = {term.name: term.weight for term in terms}
        self.distance_based = {term.name: term_spec(term.name).distance_based for term in terms}
        modules = {}
        for term in terms:
            try:
                modules[term.name] = term_spec(term.name).builder(**term_options.get(term.name, {}))
            except TypeError as error:
                raise MedsamFocusError(f"bad options for loss term {term.name!r}: {error}") from error
        self.terms = nn.ModuleDict(modules)
        self.warmup_steps = warmup_steps
        self.last_details: dict[str, float] = {}

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, warmup_steps={self.warmup_steps}"

    def warmup_factor(self, step: int | None) -> float:
        """The multiplier of the distance-based terms at ``step`` (1 when ``step`` is None)."""
        if step is None or self.warmup_steps == 0:
            return 1.0
        if step < 0:
            raise MedsamFocusError(f"step={step} must be >= 0 (steps are counted from 0)")
        return min(1.0, step / self.warmup_steps)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, phi: torch.Tensor | None = None, step: int | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        z, _ = prepare(logits, target)
        factor = self.warmup_factor(step)
        if factor > 0 and any(self.distance_based.values()):
            phi = resolve_phi(target, phi, like=z)
        total = z.new_zeros(())
        contributions: dict[str, torch.Tensor] = {}
        details: dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            scale = self.weights[name] * (factor if self.distance_based[name] else 1.0)
            if scale == 0:
                contributions[name] = z.new_zeros(())
                continue
            value = scale * term(z, target, phi)
            contributions[name] = value
            total = total + value
            if hasattr(term, "last_focus"):
                details[f"{name}.focus"] = scale * term.last_focus
                details[f"{name}.gradient"] = scale * term.lam * term.last_gradient
        # One device-to-host transfer for all logged numbers.
        names = list(contributions) + list(details)
        values = torch.stack([t.detach().reshape(()) for t in [*contributions.values(), *details.values()]])
        numbers = dict(zip(names, values.tolist(), strict=True))
        self.last_details = {name: numbers[name] for name in details} | {"warmup_factor": factor}
        return total, {name: numbers[name] for name in contributions}


def build_objective(spec: str, warmup_steps: int = 0, term_options: dict | None = None) -> Objective:
    """Build the objective named by ``spec`` (e.g. ``"dice+focussdf"``, ``"dice+0.5*boundary"``).

    Args:
        spec: ``+``-separated term names from :func:`known_terms`, each optionally
            ``WEIGHT*NAME``; see :data:`OBJECTIVES` for the documented ones.
        warmup_steps: steps over which distance-based terms ramp linearly from 0 to their weight.
        term_options: keyword options per term, e.g. ``{"focussdf": {"gamma": 0.01}}``.
    """
    return Objective(parse_objective(spec), warmup_steps=warmup_steps, term_options=term_options)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveTerm", "build_objective", "known_terms", "parse_objective"]
