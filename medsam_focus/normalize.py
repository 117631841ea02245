"""Modality-aware intensity normalisation to 8 bits, as MedSAM was trained.

Pure functions over NumPy arrays. :func:`normalize` maps any image or volume to uint8
0..255 with the rule its modality calls for (overridable), keeping the spatial shape and the
channels: grey stays grey, RGB stays RGB (the model frame turns grey into three channels).
Volumes are normalised as a whole, before slicing, so that every slice of a case shares one
mapping, which is what MedSAM's preprocessing does.

Rules (../shared/docs/REFERENCE.md):

``window``
    CT/CTA: clip Hounsfield units to ``[level - width/2, level + width/2]`` and scale to
    0..255. Default preset ``soft_tissue`` (level 40, width 400), MedSAM's CT default. Other
    presets: ``liver`` (30/150), ``vessels`` (300/600, CT angiography), ``brain`` (40/80),
    ``bone`` (400/1800), ``lung`` (-600/1500). Give ``preset=...`` or ``level=..., width=...``.
``percentile``
    MRI, ultrasound, DSA: clip to the ``lower``/``upper`` percentiles (default 0.5 and 99.5)
    of the non-zero values and scale to 0..255; pixels that were exactly zero stay zero
    (``nonzero=True``, MedSAM's rule, so background outside the body stays black). With
    ``nonzero=False`` all values count and nothing is forced to zero.
``minmax``
    Scale the array's minimum to 0 and maximum to 255 (already-normalised data such as
    MedSAM's npz/npy files).
``none``
    The data already is 8-bit: uint8 passes unchanged; other integer or float data must lie
    in 0..255 and is rounded.

Scaling truncates to integers, as MedSAM's ``np.uint8(...)`` cast does. A constant image maps
to zeros under every scaling rule (there is no contrast to stretch). MedSAM pools the
percentiles over ``> 0`` voxels; here "non-zero" is used as the issue specifies, which is the
same for the non-negative data of MRI, ultrasound and DSA.
"""

from __future__ import annotations

import numpy as np

from medsam_focus.errors import MedsamFocusError

__all__ = [
    "normalize",
    "canonical_modality",
    "parse_rule",
    "format_rule",
    "MODALITIES",
    "MODALITY_ALIASES",
    "DEFAULT_RULES",
    "WINDOW_PRESETS",
    "RULES",
]

MODALITIES = ("dsa", "cta", "ct", "mri", "us")
MODALITY_ALIASES = {
    "dsa": "dsa",
    "xa": "dsa",
    "angiography": "dsa",
    "angio": "dsa",
    "cta": "cta",
    "ct": "ct",
    "mri": "mri",
    "mr": "mri",
    "us": "us",
    "ultrasound": "us",
}
WINDOW_PRESETS = {
    "soft_tissue": (40.0, 400.0),
    "liver": (30.0, 150.0),
    "vessels": (300.0, 600.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
}
DEFAULT_RULES: dict[str, tuple[str, dict]] = {
    "ct": ("window", {"preset": "soft_tissue"}),
    "cta": ("window", {"preset": "soft_tissue"}),
    "mri": ("percentile", {"lower": 0.5, "upper": 99.5, "nonzero": True}),
    "us": ("percentile", {"lower": 0.5, "upper": 99.5, "nonzero": True}),
    "dsa": ("percentile", {"lower": 0.5, "upper": 99.5, "nonzero": True}),
}
RULES = ("window", "percentile", "minmax", "none")


def canonical_modality(modality: str) -> str:
    """``ultrasound`` -> ``us``, ``MR`` -> ``mri``...; unknown names raise with the known list."""
    key = str(modality).strip().lower()
    if key not in MODALITY_ALIASES:
        raise MedsamFocusError(
            f"unknown modality {modality!r}; known modalities: {', '.join(MODALITIES)} "
            f"(aliases: {', '.join(sorted(k for k in MODALITY_ALIASES if k not in MODALITIES))})"
        )
    return MODALITY_ALIASES[key]


def normalize(array: np.ndarray, modality: str | None, rule: str | None = None, **params) -> np.ndarray:
    """Map an image or volume to uint8 0..255 by its modality's rule.

    Args:
        array: (H, W), (H, W, 3) or (Z, Y, X), any numeric dtype (HU for CT).
        modality: ``dsa``, ``cta``, ``ct``, ``mri``, ``us`` or an alias (``ultrasound``,
            ``mr``, ``xa``...); None when unknown: the modality-agnostic ``percentile`` rule
            (0.5-99.5 % of non-zero values) unless ``rule`` says otherwise.
        rule: ``window``, ``percentile``, ``minmax`` or ``none``; default from the modality
            (:data:`DEFAULT_RULES`).
        **params: rule parameters; for the modality's default rule they override its
            defaults (``window``: ``preset`` or ``level``/``width``; ``percentile``:
            ``lower``, ``upper``, ``nonzero``).

    Returns:
        uint8 array of the same shape.
    """
    if modality is None:
        default_rule, default_params = "percentile", {}
    else:
        default_rule, default_params = DEFAULT_RULES[canonical_modality(modality)]
    if rule is None or rule == default_rule:
        rule = default_rule
        merged = dict(default_params)
        if "level" in params or "width" in params:
            merged.pop("preset", None)
        merged.update(params)
        params = merged
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise MedsamFocusError(f"cannot normalise an array of dtype {array.dtype}; images must be numeric")
    if array.size == 0:
        raise MedsamFocusError("cannot normalise an empty array")
    if rule == "window":
        return _window(array, **params)
    if rule == "percentile":
        return _percentile(array, **params)
    if rule == "minmax":
        _no_params("minmax", params)
        return _scale(array.astype(np.float64), float(array.min()), float(array.max()))
    if rule == "none":
        _no_params("none", params)
        return _as_uint8(array)
    raise MedsamFocusError(f"unknown normalisation rule {rule!r}; known rules: {', '.join(RULES)}")


def _no_params(rule: str, params: dict) -> None:
    if params:
        raise MedsamFocusError(f"normalisation rule {rule!r} takes no parameters, got {sorted(params)}")


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip to [lo, hi] and map linearly to 0..255, truncating to integers as MedSAM does.

    The operation order (divide by the range, then multiply by 255, then cast) is MedSAM's, so
    ``hi`` maps to exactly 255 and values land on the same integers as in its preprocessing.
    """
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise MedsamFocusError("cannot normalise an image with non-finite values (NaN or inf)")
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    out = (np.clip(values, lo, hi) - lo) / (hi - lo) * 255.0
    return out.astype(np.uint8)


def _window(array: np.ndarray, preset: str | None = None, level: float | None = None, width: float | None = None):
    if level is None and width is None:
        preset = preset or "soft_tissue"
        if preset not in WINDOW_PRESETS:
            raise MedsamFocusError(
                f"unknown CT window preset {preset!r}; known presets: {', '.join(WINDOW_PRESETS)}, "
                "or give level and width in HU"
            )
        level, width = WINDOW_PRESETS[preset]
    elif level is None or width is None:
        raise MedsamFocusError("a CT window needs both level and width (HU), or a preset name")
    level, width = float(level), float(width)
    if width <= 0:
        raise MedsamFocusError(f"CT window width must be positive, got {width}")
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise MedsamFocusError("cannot normalise an image with non-finite values (NaN or inf)")
    return _scale(values, level - width / 2.0, level + width / 2.0)


def _percentile(array: np.ndarray, lower: float = 0.5, upper: float = 99.5, nonzero: bool = True) -> np.ndarray:
    lower, upper = float(lower), float(upper)
    if not 0.0 <= lower < upper <= 100.0:
        raise MedsamFocusError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {lower} and {upper}")
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise MedsamFocusError("cannot normalise an image with non-finite values (NaN or inf)")
    zero = values == 0
    pool = values[~zero] if nonzero else values.ravel()
    if pool.size == 0:
        return np.zeros(array.shape, dtype=np.uint8)
    lo, hi = np.percentile(pool, [lower, upper])
    out = _scale(values, float(lo), float(hi))
    if nonzero:
        out[zero] = 0
    return out


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    lo, hi = float(array.min()), float(array.max())
    if lo < 0 or hi > 255 or not np.isfinite(lo) or not np.isfinite(hi):
        raise MedsamFocusError(
            f"normalisation rule 'none' needs values in 0..255, got {lo:g}..{hi:g}; use 'minmax', 'percentile' "
            "or a CT window"
        )
    return np.rint(array).astype(np.uint8)


# --------------------------------------------------------------------------- rule strings
def parse_rule(text: str | None) -> tuple[str | None, dict]:
    """Parse a rule written in a manifest or on the command line.

    Forms: ``""`` (modality default), ``window:liver``, ``window:40,400`` (level, width),
    ``percentile`` or ``percentile:1,99`` (lower, upper; non-zero values),
    ``percentile-all:1,99`` (all values), ``minmax``, ``none``.

    Returns:
        (rule or None, params) for :func:`normalize`.
    """
    text = (text or "").strip()
    if not text:
        return None, {}
    name, _, arg = text.partition(":")
    name = name.strip().lower()
    args = [a.strip() for a in arg.split(",") if a.strip()] if arg else []
    try:
        if name == "window":
            if len(args) == 1:
                if args[0] not in WINDOW_PRESETS:
                    raise MedsamFocusError(
                        f"normalisation {text!r}: unknown window preset {args[0]!r}; known: {', '.join(WINDOW_PRESETS)}"
                    )
                return "window", {"preset": args[0]}
            if len(args) == 2:
                return "window", {"level": float(args[0]), "width": float(args[1])}
            if not args:
                return "window", {}
        elif name in ("percentile", "percentile-all"):
            params: dict = {"nonzero": name == "percentile"}
            if len(args) == 2:
                params.update(lower=float(args[0]), upper=float(args[1]))
            elif args:
                raise ValueError
            return "percentile", params
        elif name in ("minmax", "none") and not args:
            return name, {}
    except ValueError as error:
        raise MedsamFocusError(f"normalisation {text!r}: parameters must be numbers") from error
    raise MedsamFocusError(
        f"normalisation {text!r} not understood; use window:PRESET, window:LEVEL,WIDTH, percentile[:LO,HI], "
        "percentile-all[:LO,HI], minmax or none"
    )


def format_rule(rule: str | None, params: dict | None = None) -> str:
    """Inverse of :func:`parse_rule` (for writing manifests)."""
    params = params or {}
    if rule is None:
        return ""
    if rule == "window":
        if "level" in params:
            return f"window:{params['level']:g},{params['width']:g}"
        return f"window:{params.get('preset', 'soft_tissue')}"
    if rule == "percentile":
        name = "percentile" if params.get("nonzero", True) else "percentile-all"
        if "lower" in params:
            return f"{name}:{params['lower']:g},{params['upper']:g}"
        return name
    return rule
