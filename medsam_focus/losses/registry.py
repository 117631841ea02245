"""The registry of loss terms: one name per term, so objectives are named by strings.

A term is an ``nn.Module`` whose ``forward(logits, target, phi=None)`` returns a scalar; it is
added with :func:`register_term`. ``distance_based`` terms are the ones the objective's
warm-up ramps in (the region terms, Dice and BCE, are never ramped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class TermSpec:
    """One registered loss term."""

    name: str
    """The name used in objective strings (``dice``, ``focussdf``, ...)."""
    builder: Callable[..., nn.Module]
    """Called with the term's keyword options to build the module."""
    distance_based: bool
    """Whether the term uses the signed distance (ramped in by the objective's warm-up)."""
    summary: str
    """One line for help text."""


_TERMS: dict[str, TermSpec] = {}


def register_term(name: str, *, distance_based: bool, summary: str):
    """Class decorator adding a loss term under ``name``."""

    def decorate(cls):
        if name in _TERMS:
            raise ValueError(f"loss term {name!r} is registered twice")
        _TERMS[name] = TermSpec(name=name, builder=cls, distance_based=distance_based, summary=summary)
        cls.term_name = name
        return cls

    return decorate


def term_spec(name: str) -> TermSpec | None:
    return _TERMS.get(name)


def known_terms() -> dict[str, str]:
    """``{term name: one-line summary}`` of every registered term, in registration order."""
    return {name: spec.summary for name, spec in _TERMS.items()}
