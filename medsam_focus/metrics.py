"""Segmentation metrics: Dice, IoU, HD95, ASSD and NSD, with every convention stated here.

Definitions follow DeepMind's ``surface-distance`` package (the reference used by MedSAM's
evaluation); agreement is pinned by ``tests/test_metrics.py`` on a few hundred random shape
pairs. The code is this project's own.

Conventions
-----------
- Masks: numpy arrays (bool, int or float; foreground where ``mask > 0.5``), 2D ``(H, W)`` or
  3D ``(D, H, W)``. A 2D mask is evaluated as 2D (contour lengths), never as a one-slice
  volume, which would change NSD and HD95.
- ``spacing``: one value per array axis in array order ((rows, cols) for 2D, (slices, rows,
  cols) for 3D), the reverse of SimpleITK's ``GetSpacing()``. Default 1. Distances, HD95,
  ASSD and ``tolerance`` are in these units (mm for medical images).
- Dice ``2|P & G| / (|P| + |G|)`` and IoU ``|P & G| / |P | G|`` count voxels.
- Surface: every corner point of the voxel grid gets a neighbour code from the 2^n voxels
  around it (2 x 2 in 2D, 2 x 2 x 2 in 3D; outside the array counts as background). A corner
  whose code is neither all-background nor all-foreground is a surface element; its weight is
  the length of the marching-squares contour through that 2 x 2 cell (2D) or the area of the
  marching-cubes surface through that 2 x 2 x 2 cell (3D, taking the triangulation of the
  side with at most four foreground corners for both a code and its complement), in spacing
  units.
- Directed distances: from each surface element of one mask to the nearest surface element of
  the other (Euclidean, in spacing units, via the package's one EDT in ``sdf``).
- HD95: for each direction, the smallest distance d such that the elements at distance <= d
  carry at least 95 % of that surface's total weight (elements sorted by (distance, weight),
  cumulative weight fraction, first index reaching 0.95); HD95 is the larger of the two
  directed values. Ties in distance cannot change the result by construction.
- ASSD: weight-averaged distance pooled over both surfaces,
  ``(sum_G w d + sum_P w d) / (sum_G w + sum_P w)``.
- NSD (normalised surface Dice) at ``tolerance``: the weight of both surfaces within
  ``tolerance`` (<=) of the other surface, divided by the total weight of both surfaces.

Empty masks (never NaN, never inf; ``empty_rule`` says which rule applied so reports can
count them):

=============  =====  =====  =====  ======  ======
empty_rule     dice   iou    nsd    hd95    assd
=============  =====  =====  =====  ======  ======
``none``       computed as above
``both_empty`` 1      1      1      0       0
``pred_empty`` 0      0      0      D       D
``gt_empty``   0      0      0      D       D
=============  =====  =====  =====  ======  ======

``D = sqrt(sum((n_i * s_i)^2))`` is the diagonal of the array in spacing units, larger than
any distance that can occur inside it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from medsam_focus.errors import MedsamFocusError
from medsam_focus.sdf import check_spacing, distance_to_nearest, foreground, grid_diagonal

__all__ = [
    "EMPTY_RULES",
    "METRIC_NAMES",
    "segmentation_metrics",
    "batch_segmentation_metrics",
    "surface_distances",
    "count_empty_rules",
    "contour_length_table",
    "surface_area_table",
]

EMPTY_RULES = ("none", "both_empty", "pred_empty", "gt_empty")
METRIC_NAMES = ("dice", "iou", "hd95", "assd", "nsd")
HD_PERCENT = 95.0
_CHUNK_VOXELS = 1 << 24  # voxels per chunk of the batch path (about 2 x 16 MiB of corner codes)


# --- surface element weights -------------------------------------------------------------------
# Neighbour code of a grid corner: bit (2a + b) in 2D, bit (4a + 2b + c) in 3D, set when the
# voxel at offset (a, b[, c]) in {0, 1}^n of the 2^n cell around the corner is foreground.


@functools.lru_cache(maxsize=64)
def contour_length_table(spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Marching-squares contour length through a 2 x 2 cell, for each of the 16 codes (2D).

    One or three foreground corners: one cut across a corner, ``0.5 * hypot(sy, sx)``. Two
    corners in the same row: a cut across the cell, ``sx``; in the same column: ``sy``; on a
    diagonal (saddle): two corner cuts. None or all four: no contour.
    """
    sy, sx = (float(s) for s in spacing)
    corner_cut = 0.5 * math.hypot(sy, sx)
    table = np.zeros(16)
    for code in range(1, 15):
        count = bin(code).count("1")
        if count in (1, 3):
            table[code] = corner_cut
        elif code in (0b0011, 0b1100):  # top pair or bottom pair: contour runs along the row
            table[code] = sx
        elif code in (0b0101, 0b1010):  # left pair or right pair: contour runs along the column
            table[code] = sy
        else:  # 0b1001, 0b0110: diagonal pair
            table[code] = 2 * corner_cut
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=1)
def _unit_cube_triangles() -> tuple[np.ndarray, ...]:
    """Marching-cubes triangles (T, 3, 3) in a unit cell for each of the 256 codes."""
    from skimage.measure import marching_cubes

    triangles = [np.zeros((0, 3, 3))]
    for code in range(1, 255):
        # The side with at most four foreground corners decides the triangulation of ambiguous
        # faces, for a code and its complement alike (their surfaces then coincide).
        config = code if bin(code).count("1") <= 4 else 255 - code
        cell = np.zeros((2, 2, 2))
        for a, b, c in np.ndindex(2, 2, 2):
            cell[a, b, c] = (config >> (4 * a + 2 * b + c)) & 1
        vertices, faces, _, _ = marching_cubes(cell, 0.5, method="lorensen", allow_degenerate=True)
        triangles.append(vertices[faces])
    triangles.append(np.zeros((0, 3, 3)))
    return tuple(triangles)


@functools.lru_cache(maxsize=64)
def surface_area_table(spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Marching-cubes surface area through a 2 x 2 x 2 cell, for each of the 256 codes (3D)."""
    scale = np.asarray(spacing, dtype=np.float64)
    table = np.zeros(256)
    for code, triangles in enumerate(_unit_cube_triangles()):
        if len(triangles):
            scaled = triangles * scale
            normals = np.cross(scaled[:, 1] - scaled[:, 0], scaled[:, 2] - scaled[:, 0])
            table[code] = 0.5 * np.linalg.norm(normals, axis=1).sum()
    table.setflags(write=False)
    return table


def _weight_table(spacing: tuple[float, ...]) -> np.ndarray:
    return contour_length_table(spacing) if len(spacing) == 2 else surface_area_table(spacing)


def _neighbour_codes(masks: np.ndarray) -> np.ndarray:
    """Codes of all grid corners of a batch of bool masks (N, *spatial) -> (N, *(n_i + 1)).

    Corner k along an axis lies between voxels k - 1 and k; outside the array is background.
    """
    spatial = masks.shape[1:]
    ndim = len(spatial)
    padded = np.pad(masks, ((0, 0),) + ((1, 1),) * ndim).view(np.uint8)
    codes = np.zeros((masks.shape[0],) + tuple(n + 1 for n in spatial), dtype=np.uint8)
    for offset in np.ndindex(*(2,) * ndim):
        bit = sum(o << (ndim - 1 - axis) for axis, o in enumerate(offset))
        window = (slice(None),) + tuple(slice(o, o + n + 1) for o, n in zip(offset, spatial, strict=True))
        codes |= padded[window] << bit
    return codes


def _bounding_boxes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last occupied index per spatial axis, (N, ndim) each (0, -1 for empty masks)."""
    ndim = masks.ndim - 1
    first = np.zeros((masks.shape[0], ndim), dtype=np.int64)
    last = np.full((masks.shape[0], ndim), -1, dtype=np.int64)
    for axis in range(ndim):
        others = tuple(1 + a for a in range(ndim) if a != axis)
        present = masks.any(axis=others)
        occupied = present.any(axis=1)
        first[occupied, axis] = np.argmax(present[occupied], axis=1)
        last[occupied, axis] = present.shape[1] - 1 - np.argmax(present[occupied, ::-1], axis=1)
    return first, last


def _directed_batch(preds: np.ndarray, gts: np.ndarray, indices: np.ndarray, spacing: tuple[float, ...]):
    """Yield (index, d_gt_to_pred, w_gt, d_pred_to_gt, w_pred) for the non-empty pairs ``indices``."""
    table = _weight_table(spacing)
    full = (1 << (1 << len(spacing))) - 1
    # Distances are translation invariant and every surface corner of either mask lies in the
    # corner grid of the pair's union bounding box (corners first .. last + 1), so cropping to
    # it changes nothing but the cost. Codes are computed once for the whole chunk, cropped to
    # the box that holds every pair's box.
    first, last = _bounding_boxes(preds[indices] | gts[indices])
    low, high = first.min(axis=0), last.max(axis=0)
    common = (indices,) + tuple(slice(a, b + 1) for a, b in zip(low, high, strict=True))
    codes_pred = _neighbour_codes(preds[common])
    codes_gt = _neighbour_codes(gts[common])
    first, last = first - low, last - low
    for local, index in enumerate(indices):
        window = (local,) + tuple(slice(a, b + 2) for a, b in zip(first[local], last[local], strict=True))
        code_gt, code_pred = codes_gt[window], codes_pred[window]
        border_gt = (code_gt != 0) & (code_gt != full)
        border_pred = (code_pred != 0) & (code_pred != full)
        yield (
            index,
            distance_to_nearest(border_pred, spacing, at=border_gt),
            table[code_gt[border_gt]],
            distance_to_nearest(border_gt, spacing, at=border_pred),
            table[code_pred[border_pred]],
        )


def _percentile(distances: np.ndarray, weights: np.ndarray, percent: float) -> float:
    """Smallest distance whose cumulative weight fraction reaches ``percent``."""
    order = np.lexsort((weights, distances))
    distances, weights = distances[order], weights[order]
    cumulative = np.cumsum(weights) / np.sum(weights)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[min(index, len(distances) - 1)])


def surface_distances(pred, gt, spacing: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """Directed surface distances and element weights of two non-empty masks.

    Returns:
        ``{"distances_gt_to_pred", "weights_gt", "distances_pred_to_gt", "weights_pred"}``,
        1D float64 arrays (unsorted), for reports that need more than the summary metrics.
    """
    pred, gt, spacing = _check_pair(pred, gt, spacing, batch=False)
    if not pred.any() or not gt.any():
        raise MedsamFocusError("surface_distances needs two non-empty masks; use segmentation_metrics for empty ones")
    _, d_gt, w_gt, d_pred, w_pred = next(_directed_batch(pred[None], gt[None], np.array([0]), spacing))
    return {"distances_gt_to_pred": d_gt, "weights_gt": w_gt, "distances_pred_to_gt": d_pred, "weights_pred": w_pred}


def segmentation_metrics(pred, gt, spacing: Sequence[float] | None = None, tolerance: float = 2.0) -> dict:
    """Dice, IoU, HD95, ASSD and NSD of one 2D or 3D prediction against its ground truth.

    Args:
        pred, gt: masks of the same shape, (H, W) or (D, H, W).
        spacing: per array axis in array order; default 1.
        tolerance: NSD tolerance in spacing units (MedSAM reports NSD at 2 mm).

    Returns:
        ``{"dice", "iou", "hd95", "assd", "nsd"}`` as Python floats and ``"empty_rule"`` (one of
        :data:`EMPTY_RULES`). See the module docstring for every convention and empty case.
    """
    pred, gt, spacing = _check_pair(pred, gt, spacing, batch=False)
    tolerance = _check_tolerance(tolerance)
    result = _evaluate([pred], [gt], spacing, tolerance, grid_diagonal(gt.shape, spacing))
    return {name: (str(values[0]) if name == "empty_rule" else float(values[0])) for name, values in result.items()}


def batch_segmentation_metrics(
    preds, gts, spacing: Sequence[float] | None = None, tolerance: float = 2.0
) -> dict[str, np.ndarray]:
    """The metrics of :func:`segmentation_metrics` for N mask pairs at once.

    Args:
        preds, gts: (N, H, W) (or (N, D, H, W)) arrays; pair i is ``preds[i]`` vs ``gts[i]``.
        spacing: shared by all pairs, per spatial axis in array order.
        tolerance: NSD tolerance in spacing units.

    Returns:
        ``{"dice", "iou", "hd95", "assd", "nsd"}`` as float64 arrays of length N and
        ``"empty_rule"`` as a str array. Dice and IoU are vectorised over the batch; the
        surface part visits each pair once, cropped to the pair's bounding box.
    """
    preds, gts, spacing = _check_pair(preds, gts, spacing, batch=True)
    tolerance = _check_tolerance(tolerance)
    return _evaluate(preds, gts, spacing, tolerance, grid_diagonal(gts.shape[1:], spacing))


def count_empty_rules(empty_rule) -> dict[str, int]:
    """How many cases hit each empty-mask rule: ``{"none": ..., "both_empty": ..., ...}``."""
    rules = np.atleast_1d(np.asarray(empty_rule, dtype=str))
    unknown = set(rules.tolist()) - set(EMPTY_RULES)
    if unknown:
        raise MedsamFocusError(f"unknown empty_rule values {sorted(unknown)}; expected {EMPTY_RULES}")
    return {rule: int(np.count_nonzero(rules == rule)) for rule in EMPTY_RULES}


def _evaluate(preds, gts, spacing, tolerance: float, diagonal: float) -> dict[str, np.ndarray]:
    preds = np.asarray(preds)
    gts = np.asarray(gts)
    count = preds.shape[0]
    flat_pred = preds.reshape(count, -1)
    flat_gt = gts.reshape(count, -1)
    size_pred = np.count_nonzero(flat_pred, axis=1)
    size_gt = np.count_nonzero(flat_gt, axis=1)
    intersection = np.count_nonzero(flat_pred & flat_gt, axis=1)
    total = size_pred + size_gt
    union = total - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * intersection / np.maximum(total, 1), 1.0)
        iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)

    rule = np.full(count, "none", dtype="<U10")
    rule[(size_pred == 0) & (size_gt == 0)] = "both_empty"
    rule[(size_pred == 0) & (size_gt > 0)] = "pred_empty"
    rule[(size_pred > 0) & (size_gt == 0)] = "gt_empty"

    hd95 = np.where(rule == "both_empty", 0.0, diagonal)
    assd = hd95.copy()
    nsd = np.where(rule == "both_empty", 1.0, 0.0)
    # Chunks bound the memory of the corner-code grids (two uint8 grids per chunk).
    chunk = max(1, _CHUNK_VOXELS // int(np.prod(preds.shape[1:])))
    for start in range(0, count, chunk):
        pairs = np.flatnonzero(rule[start : start + chunk] == "none")
        if not len(pairs):
            continue
        for local, d_gt, w_gt, d_pred, w_pred in _directed_batch(
            preds[start : start + chunk], gts[start : start + chunk], pairs, spacing
        ):
            index = start + local
            total_weight = w_gt.sum() + w_pred.sum()
            nsd[index] = (w_gt[d_gt <= tolerance].sum() + w_pred[d_pred <= tolerance].sum()) / total_weight
            assd[index] = (np.dot(w_gt, d_gt) + np.dot(w_pred, d_pred)) / total_weight
            hd95[index] = max(_percentile(d_gt, w_gt, HD_PERCENT), _percentile(d_pred, w_pred, HD_PERCENT))
    return {"dice": dice, "iou": iou, "hd95": hd95, "assd": assd, "nsd": nsd, "empty_rule": rule}


def _check_pair(pred, gt, spacing, batch: bool):
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise MedsamFocusError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    spatial = pred.ndim - 1 if batch else pred.ndim
    if batch and pred.ndim not in (3, 4):
        raise MedsamFocusError(f"batch masks have shape {pred.shape}; give (N, H, W) or (N, D, H, W) arrays")
    if not batch and pred.ndim not in (2, 3):
        raise MedsamFocusError(f"masks have shape {pred.shape}; give (H, W) or (D, H, W) arrays")
    if min(pred.shape, default=0) == 0:
        raise MedsamFocusError(f"masks have shape {pred.shape}; every axis needs at least one element")
    return foreground(pred), foreground(gt), check_spacing(spacing, spatial)


def _check_tolerance(tolerance) -> float:
    try:
        value = float(tolerance)
    except (TypeError, ValueError) as error:
        raise MedsamFocusError(f"tolerance {tolerance!r} is not a number") from error
    if not math.isfinite(value) or value < 0:
        raise MedsamFocusError(f"tolerance {tolerance!r} must be a finite distance >= 0 in spacing units")
    return value
