"""Patient-level train/val/test splits, deterministic and stable as a dataset grows.

Rule: each patient id is hashed together with the seed (SHA-256, so the result does not
depend on the Python process, the platform or the order of the rows) to a number ``u`` in
[0, 1). The patient goes to ``train`` when ``u < f_train``, to ``val`` when
``u < f_train + f_val`` and to ``test`` otherwise. Every sample of a patient follows the
patient, so no patient appears in two splits.

Stability: a patient's ``u`` depends only on its id and the seed, so adding patients never
moves an existing one. The only exception is the small-dataset guard: when the hash leaves a
split that should have patients empty (likely with fewer than about 15 patients), the
patient whose ``u`` lies closest to that split's interval is moved there, taken from a split
that keeps at least one patient. The guard is deterministic too, and once a dataset is large
enough for every split to be non-empty by hash alone it no longer changes anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from medsam_focus.errors import MedsamFocusError

__all__ = ["SPLITS", "patient_unit", "assign_splits", "parse_fractions"]

SPLITS = ("train", "val", "test")


def patient_unit(patient_id: str, seed: int = 0) -> float:
    """The patient's position in [0, 1), from SHA-256 of ``"<seed>:<patient_id>"``."""
    digest = hashlib.sha256(f"{int(seed)}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def parse_fractions(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.7,0.15,0.15"`` or a 3-sequence -> fractions summing to 1 (normalised)."""
    if isinstance(text, str):
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError as error:
            raise MedsamFocusError(f"split fractions {text!r} must be three numbers train,val,test") from error
    else:
        values = [float(v) for v in text]
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise MedsamFocusError(
            f"split fractions {text!r} must be three non-negative numbers train,val,test (e.g. 0.7,0.15,0.15)"
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def assign_splits(
    patient_ids: Iterable[str],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    ensure_nonempty: bool = True,
    method: str = "hash",
) -> dict[str, str]:
    """Map each distinct patient id to ``train``, ``val`` or ``test``.

    Args:
        patient_ids: ids (duplicates are fine: one decision per patient).
        fractions: (train, val, test) shares; normalised to sum 1.
        seed: changes the whole assignment.
        ensure_nonempty: apply the small-dataset guard described in the module docstring
            (only when there are at least as many patients as splits with a positive share).
        method: ``hash`` (default; stable as the dataset grows, proportions only on average)
            or ``balanced`` (patients ordered by the same hash and cut at the exact quotas
            ``round(n * f)``: exact proportions for a fixed set such as the phantoms, but
            adding patients can move existing ones across a cut).

    Returns:
        dict patient id -> split name.
    """
    f_train, f_val, f_test = parse_fractions(fractions)
    bounds = {"train": (0.0, f_train), "val": (f_train, f_train + f_val), "test": (f_train + f_val, 1.0)}
    units = {pid: patient_unit(pid, seed) for pid in sorted(set(map(str, patient_ids)))}
    if method == "balanced":
        return _balanced(units, (f_train, f_val, f_test), ensure_nonempty)
    if method != "hash":
        raise MedsamFocusError(f"unknown split method {method!r}; use hash or balanced")
    assignment: dict[str, str] = {}
    for pid, u in units.items():
        if u < f_train:
            assignment[pid] = "train"
        elif u < f_train + f_val:
            assignment[pid] = "val"
        else:
            assignment[pid] = "test"
    wanted = [s for s, f in zip(SPLITS, (f_train, f_val, f_test), strict=True) if f > 0]
    if not ensure_nonempty or len(units) < len(wanted):
        return assignment
    for split in wanted:
        members = [p for p, s in assignment.items() if s == split]
        if members:
            continue
        lo, hi = bounds[split]
        counts = {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS}
        donors = [p for p, s in assignment.items() if counts[s] > 1]
        if not donors:
            break
        # nearest to the empty interval; ties broken by id for determinism
        best = min(donors, key=lambda p: (max(lo - units[p], units[p] - hi, 0.0), p))
        assignment[best] = split
    return assignment


def _balanced(units: dict[str, float], fractions: tuple[float, float, float], ensure_nonempty: bool) -> dict[str, str]:
    order = sorted(units, key=lambda p: (units[p], p))
    n = len(order)
    n_train, n_val = round(n * fractions[0]), round(n * fractions[1])
    if ensure_nonempty and n >= sum(1 for f in fractions if f > 0):
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
        n_test = max(n - n_train - n_val, 1 if fractions[2] > 0 else 0)
        n_train = n - n_val - n_test
    names = ["train"] * n_train + ["val"] * n_val
    names += ["test"] * (n - len(names))
    return dict(zip(order, names, strict=True))
