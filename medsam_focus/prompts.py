"""Box prompts: boxes from masks, MedSAM-style jitter, frame conversions, validation, prompt files.

Conventions (shared by the whole toolkit):

- A box is ``[x_min, y_min, x_max, y_max]`` with x the column and y the row. Boxes derived
  from masks use inclusive pixel indices (``x_max`` is the last foreground column), as
  MedSAM does.
- A name says which frame a box lives in: ``box_orig`` in original-image pixels,
  ``box_model`` in the model's input frame. Only the scale factors come from the model
  family (:meth:`medsam_focus.models.frame.ModelFrame.box_scale`); the arithmetic is here.
- Arrays of boxes are float32 ``(N, 4)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsam_focus.errors import MedsamFocusError

SCHEMA_PATH = Path(__file__).with_name("prompt_schema.json")


# --------------------------------------------------------------------------- boxes from masks
def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight box around all foreground of a 2D mask.

    Args:
        mask: (H, W) array, non-zero = foreground.

    Returns:
        (4,) float32 ``[x_min, y_min, x_max, y_max]``, inclusive pixel indices.

    Raises:
        MedsamFocusError: the mask is not 2D or has no foreground.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MedsamFocusError(f"box_from_mask needs a 2D (H, W) mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise MedsamFocusError(
            "cannot derive a box prompt from an empty mask; drop empty masks before prompting "
            "(the data manifest does this with `medsam-focus prepare`)"
        )
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float32)


def boxes_from_components(mask: np.ndarray, min_size: int = 0, connectivity: int = 8) -> np.ndarray:
    """One tight box per connected component of a 2D mask, largest component first.

    Args:
        mask: (H, W) array, non-zero = foreground.
        min_size: components with fewer pixels are ignored (MedSAM drops objects under 100
            pixels per slice).
        connectivity: 4 or 8.

    Returns:
        (N, 4) float32 boxes; N may be 0 when nothing is large enough.
    """
    import cv2

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MedsamFocusError(f"boxes_from_components needs a 2D (H, W) mask, got shape {mask.shape}")
    if connectivity not in (4, 8):
        raise MedsamFocusError(f"connectivity must be 4 or 8, got {connectivity}")
    count, _, stats, _ = cv2.connectedComponentsWithStats((mask != 0).astype(np.uint8), connectivity=connectivity)
    # stats rows: [x, y, width, height, area]; row 0 is the background
    comps = stats[1:]
    comps = comps[comps[:, 4] >= max(min_size, 1)]
    comps = comps[np.argsort(-comps[:, 4], kind="stable")]
    boxes = np.stack([comps[:, 0], comps[:, 1], comps[:, 0] + comps[:, 2] - 1, comps[:, 1] + comps[:, 3] - 1], axis=1)
    return boxes.astype(np.float32).reshape(-1, 4)


# --------------------------------------------------------------------------- jitter
def jitter_box(
    box: np.ndarray,
    max_shift: float,
    bounds_hw: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """Move each side of a box outward by an independent random 0..max_shift pixels, clipped.

    This is MedSAM's training augmentation: the box never shrinks, so the object stays
    inside it. Shifts are integers drawn uniformly from ``0..floor(max_shift)`` as in
    MedSAM (``random.randint(0, bbox_shift)``).

    Args:
        box: (4,) or (N, 4) boxes in the frame where ``max_shift`` is measured (the model
            frame: 20 px at 1024, 5 px at 256).
        max_shift: largest outward move of one side, in pixels of that frame.
        bounds_hw: (H, W) of the valid region in that frame; x is clipped to [0, W] and y to
            [0, H] (MedSAM clips the upper side to the image size).
        rng: numpy Generator, so jitter is reproducible from the run's seed.
    """
    box = np.asarray(box, dtype=np.float32)
    single = box.ndim == 1
    boxes = box.reshape(-1, 4).copy()
    n = int(np.floor(max_shift))
    if n > 0:
        shifts = rng.integers(0, n + 1, size=boxes.shape).astype(np.float32)
        boxes[:, :2] -= shifts[:, :2]
        boxes[:, 2:] += shifts[:, 2:]
    h, w = bounds_hw
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    return boxes[0] if single else boxes


# --------------------------------------------------------------------------- frames
def to_model_frame(boxes_orig: np.ndarray, scale_yx: tuple[float, float]) -> np.ndarray:
    """Original-pixel boxes -> model-frame boxes, given the frame's (scale_y, scale_x).

    ``scale_yx`` comes from ``ModelFrame.box_scale(orig_hw)``: (S/H, S/W) for a stretching
    frame (MedSAM), (S/max(H, W), S/max(H, W)) for a longest-side frame (SAM, LiteMedSAM).
    """
    boxes = np.asarray(boxes_orig, dtype=np.float32)
    sy, sx = scale_yx
    return boxes * np.array([sx, sy, sx, sy], dtype=np.float32)


def to_original_frame(boxes_model: np.ndarray, scale_yx: tuple[float, float]) -> np.ndarray:
    """Inverse of :func:`to_model_frame`."""
    boxes = np.asarray(boxes_model, dtype=np.float32)
    sy, sx = scale_yx
    return boxes / np.array([sx, sy, sx, sy], dtype=np.float32)


# --------------------------------------------------------------------------- validation
def validate_boxes(boxes, image_hw: tuple[int, int], source: str = "box") -> np.ndarray:
    """Check user boxes against an image and return them as float32 (N, 4).

    A box must have 4 finite numbers, lie inside ``[0, W] x [0, H]`` (original pixels), and
    have ``x_max > x_min`` and ``y_max > y_min``.

    Args:
        boxes: anything array-like of shape (4,) or (N, 4).
        image_hw: (H, W) of the image the boxes refer to.
        source: where the boxes came from (a file name or ``--box``), used in messages.

    Raises:
        MedsamFocusError: naming the offending box and what is wrong with it.
    """
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MedsamFocusError(f"{source}: boxes must be numbers [x_min, y_min, x_max, y_max]") from exc
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise MedsamFocusError(
            f"{source}: a box is 4 numbers [x_min, y_min, x_max, y_max], got an array of shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise MedsamFocusError(f"{source}: no boxes given; give at least one [x_min, y_min, x_max, y_max]")
    h, w = image_hw
    for i, (x0, y0, x1, y1) in enumerate(arr):
        shown = f"{source}: box {i} [{x0:g}, {y0:g}, {x1:g}, {y1:g}]"
        if not np.all(np.isfinite([x0, y0, x1, y1])):
            raise MedsamFocusError(f"{shown} has a non-finite coordinate")
        if x1 < x0 or y1 < y0:
            raise MedsamFocusError(
                f"{shown} is inverted: give [x_min, y_min, x_max, y_max] with x the column and y the row"
            )
        if x1 == x0 or y1 == y0:
            raise MedsamFocusError(f"{shown} has zero area; a box must span at least one pixel each way")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise MedsamFocusError(
                f"{shown} lies outside the image (width {w}, height {h}); coordinates are original "
                "pixels with x in [0, width] and y in [0, height]"
            )
    return arr.astype(np.float32)


def parse_box_argument(text: str) -> list[float]:
    """Parse a command-line box ``x0,y0,x1,y1`` into four floats."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError as exc:
        raise MedsamFocusError(f"--box {text!r}: expected four numbers x_min,y_min,x_max,y_max") from exc
    if len(values) != 4:
        raise MedsamFocusError(f"--box {text!r}: expected four numbers x_min,y_min,x_max,y_max, got {len(values)}")
    return values


# --------------------------------------------------------------------------- prompt files
@dataclass
class PromptObject:
    """One object to segment: a 2D box, a box on one slice, or a 3D box over a slice range.

    Attributes:
        box: ``[x_min, y_min, x_max, y_max]`` in original pixels.
        label: value written for this object in the output label image.
        slice: slice index for a per-slice box in a volume, else None.
        slice_range: inclusive ``(z_min, z_max)`` for a 3D box, else None.
    """

    box: list[float]
    label: int
    slice: int | None = None
    slice_range: tuple[int, int] | None = None


@dataclass
class PromptFile:
    """A parsed prompt file: an optional image path and the objects to segment."""

    path: Path
    image: Path | None
    objects: list[PromptObject] = field(default_factory=list)
    modality: str | None = None

    @property
    def is_3d(self) -> bool:
        return any(o.slice is not None or o.slice_range is not None for o in self.objects)


def load_schema() -> dict:
    """The JSON schema of prompt files (also shipped as ``prompts/schema.json``)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def load_prompt_file(path: str | Path) -> PromptFile:
    """Read and validate a box-prompt JSON file (see ``prompts/README.md`` for the format).

    Validation covers the structure (against the JSON schema) and the labels; whether the
    boxes fit the image is checked later by :func:`validate_boxes`, once the image is read.
    """
    import jsonschema

    path = Path(path)
    if not path.is_file():
        raise MedsamFocusError(f"prompt file {path} does not exist; see prompts/README.md for examples")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedsamFocusError(f"prompt file {path} is not valid JSON: {exc}") from exc
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise MedsamFocusError(f"prompt file {path}: at {where}: {first.message}")
    image = data.get("image")
    objects = []
    for i, obj in enumerate(data["objects"]):
        label = int(obj.get("label", i + 1))
        slice_range = obj.get("slices")
        if slice_range is not None:
            z0, z1 = int(slice_range[0]), int(slice_range[1])
            if z1 < z0:
                raise MedsamFocusError(f"prompt file {path}: objects/{i}: slices [{z0}, {z1}] is inverted")
            slice_range = (z0, z1)
        objects.append(
            PromptObject(
                box=[float(v) for v in obj["box"]],
                label=label,
                slice=obj.get("slice"),
                slice_range=slice_range,
            )
        )
    return PromptFile(
        path=path, image=(path.parent / image) if image else None, objects=objects, modality=data.get("modality")
    )


def group_by_label(objects: Sequence[PromptObject]) -> dict[int, list[PromptObject]]:
    """Objects sharing a label (for example one lesion boxed on several slices)."""
    groups: dict[int, list[PromptObject]] = {}
    for obj in objects:
        groups.setdefault(obj.label, []).append(obj)
    return groups
