"""Datasets: manifest, adapters for public layouts, patient-level splits, phantoms, the torch Dataset.

Public API::

    load_manifest(path) -> Manifest              # validated CSV, rows + base folder
    write_manifest(manifest, path)
    prepare_manifest(layout, source, modality, out, ...) -> PrepareResult
    assign_splits(patient_ids, fractions, seed) -> {patient: split}
    SegmentationDataset(manifest, frame, split="train", ...)   # torch Dataset
    collate_objects(batch)                        # DataLoader collate_fn
    phantoms.generate_phantoms(out_dir, ...)      # synthetic four-modality data

The torch-dependent names are imported lazily so that reading a manifest stays light.
"""

from __future__ import annotations

from medsam_focus.data.manifest import (
    Manifest,
    ManifestRow,
    load_manifest,
    object_mask,
    parse_labels,
    write_manifest,
)
from medsam_focus.data.splits import assign_splits

__all__ = [
    "Manifest",
    "ManifestRow",
    "load_manifest",
    "write_manifest",
    "object_mask",
    "parse_labels",
    "assign_splits",
    "prepare_manifest",
    "PrepareResult",
    "SegmentationDataset",
    "Augmentation",
    "OriginalItem",
    "collate_objects",
    "worker_init",
    "generate_phantoms",
]

_LAZY = {
    "SegmentationDataset": "medsam_focus.data.dataset",
    "Augmentation": "medsam_focus.data.dataset",
    "OriginalItem": "medsam_focus.data.dataset",
    "collate_objects": "medsam_focus.data.dataset",
    "worker_init": "medsam_focus.data.dataset",
    "prepare_manifest": "medsam_focus.data.prepare",
    "PrepareResult": "medsam_focus.data.prepare",
    "generate_phantoms": "medsam_focus.data.phantoms",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
