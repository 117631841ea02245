"""Box-prompted prediction for arrays and files, 2D images and 3D volumes.

Python use::

    from medsam_focus.infer import load_model, predict
    model = load_model("litemedsam")                 # or "medsam-vit-b", a run directory, ...
    masks = predict(model, image, boxes)             # (N, H, W) bool, one mask per box

The image is encoded once however many boxes it has. Volumes go through
:func:`predict_volume`, with per-slice boxes or a single 3D box propagated from the middle
slice as LiteMedSAM does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medsam_focus.errors import MedsamFocusError
from medsam_focus.models import DEFAULT_FAMILY, PromptableSegmenter, build_model
from medsam_focus.prompts import (
    PromptObject,
    box_from_mask,
    group_by_label,
    to_model_frame,
    validate_boxes,
)

# LiteMedSAM's 3D inference takes each slice's box from the neighbouring slice's
# prediction, widened by a few pixels of its 256 frame; we keep the same margin,
# expressed relative to a 256 frame so every family widens by the same fraction.
PROPAGATION_MARGIN_AT_256 = 3.0


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'cuda' when available and nothing was asked for, else the requested device."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise MedsamFocusError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedsamFocusError(f"device {device!r} asked for, but no CUDA GPU is available here; use --device cpu")
    return dev


def load_model(
    name: str | os.PathLike = DEFAULT_FAMILY,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> PromptableSegmenter:
    """Load a model for inference.

    Args:
        name: a family name (``litemedsam``, ``medsam-vit-b``, ``sam-vit-b``, ``hf-sam``, ...)
            or the directory of a fine-tuning run (its adapter and decoder are applied on
            top of the base model the run recorded).
        checkpoint: weights for the family; None means the family's default.
        device: torch device; the GPU when available if None.

    Returns:
        The model in eval mode on ``device``.
    """
    dev = resolve_device(device)
    path = Path(name)
    if path.is_dir():
        from medsam_focus.models.finetuned import load_run_model

        model = load_run_model(path)
    else:
        model = build_model(str(name), checkpoint=checkpoint)
    return model.to(dev).eval()


@torch.no_grad()
def predict(model: PromptableSegmenter, image: np.ndarray, boxes) -> np.ndarray:
    """Segment the objects inside ``boxes`` on one 2D image.

    Args:
        model: from :func:`load_model`.
        image: (H, W) or (H, W, 3) array in the 0..255 display range (see
            ``medsam_focus.normalize`` for raw medical intensities).
        boxes: (N, 4) or (4,) ``[x_min, y_min, x_max, y_max]`` in original pixels.

    Returns:
        (N, H, W) boolean masks, one per box.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise MedsamFocusError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}")
    hw = image.shape[:2]
    boxes_orig = validate_boxes(boxes, hw)
    embedding = model.encode(model.prepare_image(image))
    return _decode_boxes(model, embedding, boxes_orig, hw)


def _decode_boxes(model: PromptableSegmenter, embedding: torch.Tensor, boxes_orig: np.ndarray, hw) -> np.ndarray:
    boxes_model = to_model_frame(boxes_orig, model.frame.box_scale(hw))
    logits = model.decode(embedding, torch.from_numpy(boxes_model).to(embedding.device))
    return model.frame.postprocess(logits, hw)


@torch.no_grad()
def predict_volume(model: PromptableSegmenter, volume: np.ndarray, objects: Sequence[PromptObject]) -> np.ndarray:
    """Segment objects in a (Z, H, W) volume already in the 0..255 range.

    Objects with ``slice`` are segmented on that slice; objects with ``slice_range`` start
    from the middle slice with their box and propagate outwards, each slice prompted by the
    box of the previous slice's prediction (widened by a small margin), falling back to the
    given box when the previous prediction is empty. Each slice is encoded at most once.

    Returns:
        (Z, H, W) label volume (uint16); later objects overwrite earlier ones where they overlap.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise MedsamFocusError(f"a volume must be (Z, H, W), got shape {volume.shape}")
    depth, h, w = volume.shape
    labels = np.zeros(volume.shape, dtype=np.uint16)
    cache: dict[int, torch.Tensor] = {}

    def embed(z: int) -> torch.Tensor:
        if z not in cache:
            cache[z] = model.encode(model.prepare_image(volume[z]))
        return cache[z]

    for label, group in group_by_label(objects).items():
        for obj in group:
            if obj.slice is None and obj.slice_range is None:
                raise MedsamFocusError(
                    f"object with label {label} has no 'slice' or 'slices'; in a volume every box needs one"
                )
            zs = [obj.slice] if obj.slice is not None else list(obj.slice_range)
            for z in zs:
                if not 0 <= z < depth:
                    raise MedsamFocusError(f"object {label}: slice {z} is outside the volume (0..{depth - 1})")
            box = validate_boxes(obj.box, (h, w), source=f"object {label}")
            if obj.slice is not None:
                mask = _decode_boxes(model, embed(obj.slice), box, (h, w))[0]
                labels[obj.slice][mask] = label
                continue
            z0, z1 = obj.slice_range
            middle = (z0 + z1) // 2
            margin = PROPAGATION_MARGIN_AT_256 * model.frame.size / 256.0
            sy, sx = model.frame.box_scale((h, w))
            pad = np.array([-margin / sx, -margin / sy, margin / sx, margin / sy], dtype=np.float32)
            middle_mask = _decode_boxes(model, embed(middle), box, (h, w))[0]
            labels[middle][middle_mask] = label
            for direction in (range(middle + 1, z1 + 1), range(middle - 1, z0 - 1, -1)):
                previous = middle_mask
                for z in direction:
                    if previous.any():
                        prompt = box_from_mask(previous)[None] + pad
                        prompt[:, [0, 2]] = np.clip(prompt[:, [0, 2]], 0, w)
                        prompt[:, [1, 3]] = np.clip(prompt[:, [1, 3]], 0, h)
                    else:
                        prompt = box
                    mask = _decode_boxes(model, embed(z), prompt, (h, w))[0]
                    labels[z][mask] = label
                    previous = mask
    return labels


# --------------------------------------------------------------------------- files
@dataclass
class InferenceResult:
    """What :func:`segment_file` wrote."""

    image: Path
    output: Path
    overlay: Path | None
    n_objects: int
    foreground_pixels: int


def to_display_range(array: np.ndarray, modality: str | None) -> np.ndarray:
    """Raw pixel data -> 0..255 uint8 for the model.

    8-bit images are used as they are (as MedSAM does for 2D images); anything else goes
    through the modality's rule in :mod:`medsam_focus.normalize` (percentile clipping when
    no modality is given).
    """
    from medsam_focus.normalize import normalize

    if modality is None and array.dtype == np.uint8:
        return array
    return normalize(array, modality)


def segment_file(
    model: PromptableSegmenter,
    image_path: str | os.PathLike,
    objects: Sequence[PromptObject],
    out_path: str | os.PathLike,
    modality: str | None = None,
    overlay_path: str | os.PathLike | None = None,
) -> InferenceResult:
    """Segment one image or volume file and write the label image with the input's geometry.

    Args:
        model: from :func:`load_model`.
        image_path: 2D image (PNG, JPEG, TIFF, BMP, DICOM) or volume (NIfTI, MHA/MHD, NRRD,
            DICOM series directory).
        objects: boxes to segment; for a volume each needs ``slice`` or ``slice_range``.
        out_path: label image to write (PNG for 2D; NIfTI/MHA/NRRD for 3D); written
            atomically, so an existing file is never left half-overwritten.
        modality: intensity rule for non-8-bit data (see :func:`to_display_range`).
        overlay_path: optional PNG with the image, the boxes and the predicted contours
            (for a volume: the slice with the most foreground).
    """
    from medsam_focus import io as mio

    image = mio.read_image(image_path)
    out_path = Path(out_path)
    if image.is_3d:
        volume = to_display_range(image.array, modality)
        labels = predict_volume(model, volume, objects)
        mio.write_mask(labels, out_path, reference=image)
        if overlay_path:
            z = int(np.argmax((labels > 0).sum(axis=(1, 2))))
            boxes = [
                o.box for o in objects if o.slice == z or (o.slice_range and o.slice_range[0] <= z <= o.slice_range[1])
            ]
            write_overlay(volume[z], labels[z], np.array(boxes, dtype=np.float32).reshape(-1, 4), overlay_path)
    else:
        for obj in objects:
            if obj.slice is not None or obj.slice_range is not None:
                raise MedsamFocusError(
                    f"{image_path} is a 2D image but a box has a slice; drop 'slice'/'slices' for 2D images"
                )
        pixels = to_display_range(image.array, modality)
        boxes = validate_boxes([o.box for o in objects], pixels.shape[:2], source=str(image_path))
        masks = predict(model, pixels, boxes)
        dtype = np.uint8 if max(o.label for o in objects) < 256 else np.uint16
        labels = np.zeros(pixels.shape[:2], dtype=dtype)
        for obj, mask in zip(objects, masks, strict=True):
            labels[mask] = obj.label
        mio.write_mask(labels, out_path, reference=image)
        if overlay_path:
            write_overlay(pixels, labels, boxes, overlay_path)
    return InferenceResult(
        image=Path(image_path),
        output=out_path,
        overlay=Path(overlay_path) if overlay_path else None,
        n_objects=len(objects),
        foreground_pixels=int((labels > 0).sum()),
    )


def write_overlay(image: np.ndarray, labels: np.ndarray, boxes: np.ndarray, path: str | os.PathLike) -> None:
    """PNG of the image with boxes (yellow) and predicted contours (one colour per label)."""
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    canvas = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    palette = [(0, 0, 255), (0, 200, 0), (255, 128, 0), (255, 0, 255), (0, 200, 255), (128, 0, 255)]
    for i, value in enumerate(v for v in np.unique(labels) if v != 0):
        contours, _ = cv2.findContours((labels == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, palette[i % len(palette)], 1)
    for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4):
        cv2.rectangle(canvas, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), (0, 255, 255), 1)
    ok, data = cv2.imencode(".png", canvas)
    if not ok:  # pragma: no cover - OpenCV only fails on invalid arrays
        raise MedsamFocusError(f"could not encode the overlay for {path}")
    from medsam_focus.io import atomic_write

    atomic_write(path, lambda temp: temp.write_bytes(data.tobytes()))
