"""Evaluation of a model on a manifest split: per-object metrics in original pixels.

Each object is prompted with the tight box of its ground-truth mask (no jitter), predicted
with the family's official postprocessing, and scored with
:func:`medsam_focus.metrics.segmentation_metrics` at the image's in-plane spacing (so NSD's
tolerance and HD95 are in mm when the files carry a spacing, in pixels for plain PNGs).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from medsam_focus.engine.cache import EmbeddingCache, image_key
from medsam_focus.io import atomic_write_csv, atomic_write_text
from medsam_focus.metrics import METRIC_NAMES, count_empty_rules, segmentation_metrics
from medsam_focus.models.lora import encoder_is_frozen
from medsam_focus.models.segmenter import PromptableSegmenter
from medsam_focus.prompts import to_model_frame

ROW_FIELDS = (
    "sample_id",
    "image_id",
    "case_id",
    "patient_id",
    "modality",
    "dice",
    "iou",
    "hd95",
    "assd",
    "nsd",
    "empty_rule",
)


@torch.no_grad()
def evaluate_dataset(
    model: PromptableSegmenter,
    dataset,
    cache: EmbeddingCache | None = None,
    tolerance: float = 2.0,
    progress: bool = False,
    desc: str = "evaluate",
    indices: Iterable[int] | None = None,
    keep_predictions: bool = False,
) -> list[dict]:
    """Per-object metric rows for ``dataset`` (a :class:`~medsam_focus.data.SegmentationDataset`).

    Args:
        model: model in eval mode.
        dataset: the split to evaluate (its jitter and augmentation are not used: boxes are
            the tight boxes of :meth:`original`).
        cache: embedding cache, used only when the model's encoder is frozen.
        tolerance: NSD tolerance in spacing units.
        indices: evaluate only these items.
        keep_predictions: add ``prediction`` (bool mask) to each row (for figures).
    """
    from tqdm import tqdm

    model.eval()
    use_cache = cache is not None and encoder_is_frozen(model)
    rows: list[dict] = []
    order = list(range(len(dataset))) if indices is None else list(indices)
    for index in tqdm(order, desc=desc, unit="image", disable=not progress, leave=False):
        item = dataset.original(index)
        hw = item.orig_hw
        if use_cache:
            embedding = cache.embed(model, [item.image], [image_key(item.image)])
        else:
            embedding = model.encode(model.prepare_image(item.image))
        boxes = torch.from_numpy(to_model_frame(item.boxes_orig, model.frame.box_scale(hw))).to(embedding.device)
        logits = model.decode(embedding, boxes)
        preds = model.frame.postprocess(logits, hw)
        for k, sample_id in enumerate(item.sample_ids):
            scores = segmentation_metrics(preds[k], item.masks[k], spacing=item.spacing, tolerance=tolerance)
            row = {
                "sample_id": sample_id,
                "image_id": item.image_id,
                "case_id": item.case_id,
                "patient_id": item.patient_id,
                "modality": item.modality,
                **{name: float(scores[name]) for name in METRIC_NAMES},
                "empty_rule": scores["empty_rule"],
            }
            if keep_predictions:
                row["prediction"] = preds[k]
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean, standard deviation and count of every metric, plus empty-rule counts."""
    summary: dict = {"n": len(rows)}
    for name in METRIC_NAMES:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        summary[name] = {
            "mean": float(values.mean()) if len(values) else math.nan,
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "median": float(np.median(values)) if len(values) else math.nan,
        }
    summary["empty_rules"] = count_empty_rules([r["empty_rule"] for r in rows])
    return summary


def write_rows(rows: list[dict], path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write metric rows as CSV (atomically); ``extra`` columns are prepended to every row."""
    extra = extra or {}
    return atomic_write_csv(path, [{**extra, **row} for row in rows], list(extra) + list(ROW_FIELDS))


def write_summary(summary: dict, path: str | os.PathLike, title: str = "") -> None:
    """Summary as JSON (``.json``) and a small Markdown table next to it (``.md``)."""
    path = Path(path)
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    lines = [f"# {title}" if title else "# Evaluation", "", f"{summary['n']} objects", ""]
    lines += ["| metric | mean | std | median |", "| --- | --- | --- | --- |"]
    for name in METRIC_NAMES:
        s = summary[name]
        lines.append(f"| {name} | {s['mean']:.4f} | {s['std']:.4f} | {s['median']:.4f} |")
    rules = summary["empty_rules"]
    lines += ["", "Empty-mask rules applied: " + ", ".join(f"{k} {v}" for k, v in rules.items())]
    atomic_write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")
