"""The manifest: a CSV that is the single description of a dataset, one row per 2D sample.

Columns (docs/data.md has the full description):

======== =============================================================================
column   meaning
======== =============================================================================
sample_id unique id of the row (one object on one 2D image)
case_id  the scan/image the sample comes from (a volume, or a 2D image file)
patient_id the person; splits are made per patient
modality ``dsa``, ``cta``, ``ct``, ``mri`` or ``us`` (aliases accepted on reading)
image    image path, relative to the manifest's folder (a DICOM series: its folder)
mask     mask path, relative to the manifest's folder
slice    slice index along the first array axis for volumes; empty for 2D images
label    mask value(s) forming the object: ``1``, or ``1+2`` for the union of labels
instance empty = the whole label; ``k`` = the k-th connected component (8-connected,
         largest first) of the label on that slice, for one-box-per-object training
split    ``train``, ``val`` or ``test``
======== =============================================================================

Optional columns: ``norm`` (a normalisation rule as :func:`medsam_focus.normalize.parse_rule`
reads it; empty = the modality's default), ``area`` (object pixels, informational). Unknown
columns are kept in ``ManifestRow.extra`` and written back.
"""

from __future__ import annotations

import csv
import io as _io
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import atomic_write_text
from medsam_focus.normalize import MODALITY_ALIASES, canonical_modality, parse_rule

__all__ = [
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "ManifestRow",
    "Manifest",
    "load_manifest",
    "write_manifest",
    "parse_labels",
    "object_mask",
    "component_masks",
]

REQUIRED_COLUMNS = (
    "sample_id",
    "case_id",
    "patient_id",
    "modality",
    "image",
    "mask",
    "slice",
    "label",
    "instance",
    "split",
)
OPTIONAL_COLUMNS = ("norm", "area")
VALID_SPLITS = ("train", "val", "test")


def parse_labels(text: str | int) -> tuple[int, ...]:
    """``"1"`` -> (1,), ``"1+2"`` -> (1, 2); labels are positive integers."""
    parts = [p.strip() for p in str(text).split("+")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError as error:
        raise MedsamFocusError(
            f"label {text!r} must be a positive integer or labels joined by '+', e.g. 1+2"
        ) from error
    if not values or any(v <= 0 for v in values):
        raise MedsamFocusError(f"label {text!r} must be positive (0 is the background)")
    return values


@dataclass
class ManifestRow:
    """One 2D sample: one object (a label, or one component of it) on one 2D image."""

    sample_id: str
    case_id: str
    patient_id: str
    modality: str
    image: str
    mask: str
    slice: int | None
    label: str
    instance: int | None
    split: str
    norm: str = ""
    area: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[int, ...]:
        return parse_labels(self.label)

    def as_csv(self, columns: Sequence[str]) -> dict[str, str]:
        values = {
            "sample_id": self.sample_id,
            "case_id": self.case_id,
            "patient_id": self.patient_id,
            "modality": self.modality,
            "image": self.image,
            "mask": self.mask,
            "slice": "" if self.slice is None else str(self.slice),
            "label": self.label,
            "instance": "" if self.instance is None else str(self.instance),
            "split": self.split,
            "norm": self.norm,
            "area": "" if self.area is None else str(self.area),
        }
        values.update(self.extra)
        return {c: values.get(c, "") for c in columns}


@dataclass
class Manifest:
    """Manifest rows plus the folder their relative paths start from.

    Attributes:
        rows: the samples, in file order.
        base_dir: folder that ``image``/``mask`` paths are relative to (the manifest's folder).
        path: the CSV file, when read from or written to disk.
    """

    rows: list[ManifestRow]
    base_dir: Path
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def image_path(self, row: ManifestRow) -> Path:
        return (self.base_dir / row.image).resolve() if not Path(row.image).is_absolute() else Path(row.image)

    def mask_path(self, row: ManifestRow) -> Path:
        return (self.base_dir / row.mask).resolve() if not Path(row.mask).is_absolute() else Path(row.mask)

    def select(self, split: str | Sequence[str] | None = None, modality: str | None = None) -> Manifest:
        """Rows of one split (``train``/``val``/``test``, a list of them, or ``all``/None)."""
        splits = _split_names(split)
        mod = canonical_modality(modality) if modality else None
        rows = [r for r in self.rows if (splits is None or r.split in splits) and (mod is None or r.modality == mod)]
        return Manifest(rows, self.base_dir, self.path)

    def patients(self, split: str | None = None) -> list[str]:
        return sorted({r.patient_id for r in self.rows if split is None or r.split == split})

    def counts(self) -> dict[str, dict[str, int]]:
        """Per split: samples, images (distinct image + slice), cases and patients."""
        out = {}
        for split in VALID_SPLITS:
            rows = [r for r in self.rows if r.split == split]
            out[split] = {
                "samples": len(rows),
                "images": len({(r.image, r.slice) for r in rows}),
                "cases": len({r.case_id for r in rows}),
                "patients": len({r.patient_id for r in rows}),
            }
        return out

    @property
    def modalities(self) -> list[str]:
        return sorted({r.modality for r in self.rows})


def _split_names(split) -> set[str] | None:
    if split is None or split == "all":
        return None
    names = {split} if isinstance(split, str) else set(split)
    unknown = names - set(VALID_SPLITS)
    if unknown:
        raise MedsamFocusError(f"unknown split {sorted(unknown)}; use train, val, test or all")
    return names


# --------------------------------------------------------------------------- reading
def _int_or_none(value: str, what: str, minimum: int) -> int | None:
    value = (value or "").strip()
    if value == "":
        return None
    try:
        number = int(value)
    except ValueError as error:
        raise ValueError(f"{what} {value!r} is not an integer") from error
    if number < minimum:
        raise ValueError(f"{what} {number} must be >= {minimum}")
    return number


def load_manifest(path: str | Path, check_files: bool = True) -> Manifest:
    """Read and validate a manifest CSV.

    Checks: required columns, unique sample ids, known modality, split in train/val/test,
    integer slice/instance, positive labels, readable normalisation rule, the same
    patient never in two splits, and (``check_files``) that every image and mask exists.
    All problems found are reported together (up to 20), each naming the row.

    Raises:
        MedsamFocusError: the file is missing or any check fails.
    """
    path = Path(path)
    if not path.is_file():
        raise MedsamFocusError(
            f"manifest {path} does not exist; build one with `medsam-focus prepare` or `medsam-focus phantoms`"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise MedsamFocusError(f"manifest {path} could not be read as UTF-8 text: {error}") from error
    reader = csv.DictReader(_io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MedsamFocusError(
            f"manifest {path} lacks column(s) {', '.join(missing)}; required: {', '.join(REQUIRED_COLUMNS)}"
        )
    base = path.parent.resolve()
    rows: list[ManifestRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(reader, start=2):  # line 1 is the header
        raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        sid = raw.get("sample_id", "")
        where = f"line {number} (sample_id {sid!r})"
        try:
            if not sid:
                raise ValueError("sample_id is empty")
            if sid in seen:
                raise ValueError(f"sample_id repeats line {seen[sid]}")
            seen[sid] = number
            for column in ("case_id", "patient_id", "image", "mask"):
                if not raw.get(column):
                    raise ValueError(f"{column} is empty")
            modality = raw["modality"].lower()
            if modality not in MODALITY_ALIASES:
                raise ValueError(f"unknown modality {raw['modality']!r}")
            modality = MODALITY_ALIASES[modality]
            if raw["split"] not in VALID_SPLITS:
                raise ValueError(f"split {raw['split']!r} is not train, val or test")
            parse_labels(raw["label"])
            parse_rule(raw.get("norm", ""))
            row = ManifestRow(
                sample_id=sid,
                case_id=raw["case_id"],
                patient_id=raw["patient_id"],
                modality=modality,
                image=raw["image"],
                mask=raw["mask"],
                slice=_int_or_none(raw["slice"], "slice", 0),
                label=raw["label"],
                instance=_int_or_none(raw["instance"], "instance", 0),
                split=raw["split"],
                norm=raw.get("norm", ""),
                area=_int_or_none(raw.get("area", ""), "area", 0),
                extra={k: v for k, v in raw.items() if k not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS},
            )
        except (ValueError, MedsamFocusError) as error:
            problems.append(f"{where}: {error}")
            continue
        rows.append(row)
    manifest = Manifest(rows, base, path)
    if check_files:
        for row in rows:
            for kind, target in (("image", manifest.image_path(row)), ("mask", manifest.mask_path(row))):
                if not target.exists():
                    problems.append(f"sample {row.sample_id!r}: {kind} {target} does not exist")
    splits_of = defaultdict(set)
    for row in rows:
        splits_of[row.patient_id].add(row.split)
    for patient, splits in sorted(splits_of.items()):
        if len(splits) > 1:
            problems.append(
                f"patient {patient!r} is in several splits ({', '.join(sorted(splits))}); a patient's samples must "
                "share one split (re-run `medsam-focus prepare` to assign patient-level splits)"
            )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise MedsamFocusError(f"manifest {path} has {len(problems)} problem(s):\n  {shown}{more}")
    if not rows:
        raise MedsamFocusError(f"manifest {path} has no rows")
    return manifest


# --------------------------------------------------------------------------- writing
def write_manifest(manifest: Manifest | Iterable[ManifestRow], path: str | Path, base_dir: Path | None = None) -> Path:
    """Write a manifest CSV atomically, with paths relative to the CSV's folder.

    Args:
        manifest: a :class:`Manifest`, or rows whose paths are relative to ``base_dir``.
        path: target CSV.
        base_dir: folder the rows' paths are relative to when ``manifest`` is a plain list
            (default: the target's folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(manifest, Manifest):
        rows, base = manifest.rows, manifest.base_dir
    else:
        rows, base = list(manifest), Path(base_dir) if base_dir is not None else path.parent
    target_dir = path.parent.resolve()
    base = Path(base).resolve()
    extra_columns = sorted({k for r in rows for k in r.extra})
    columns = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS) + extra_columns
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        moved = replace(row, image=_relative(base, row.image, target_dir), mask=_relative(base, row.mask, target_dir))
        writer.writerow(moved.as_csv(columns))
    return atomic_write_text(path, buffer.getvalue())


def _relative(base: Path, value: str, target_dir: Path) -> str:
    absolute = Path(value) if Path(value).is_absolute() else base / value
    return Path(os.path.relpath(absolute, target_dir)).as_posix()


# --------------------------------------------------------------------------- objects
def component_masks(binary: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a 2D binary mask as bool masks, largest first.

    Ties in size keep OpenCV's scan order (top-to-bottom, left-to-right by first pixel), so
    the numbering is deterministic; it is the ``instance`` numbering of the manifest.
    """
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(np.asarray(binary, dtype=np.uint8), connectivity=8)
    order = sorted(range(1, count), key=lambda k: (-int(stats[k, cv2.CC_STAT_AREA]), k))
    return [labels == k for k in order]


def component_areas(binary: np.ndarray) -> list[int]:
    """Pixel counts of the 8-connected components, in :func:`component_masks` order."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(np.asarray(binary, dtype=np.uint8), connectivity=8)
    return sorted((int(a) for a in stats[1:, cv2.CC_STAT_AREA]), reverse=True)


def object_mask(mask_2d: np.ndarray, labels: Sequence[int], instance: int | None = None) -> np.ndarray:
    """The object a manifest row names: the union of ``labels``, or its ``instance``-th component.

    Returns:
        (H, W) bool; empty when the instance does not exist (callers treat that as an error).
    """
    binary = np.isin(mask_2d, np.asarray(labels))
    if instance is None:
        return binary
    components = component_masks(binary)
    if instance >= len(components):
        return np.zeros_like(binary)
    return components[instance]


def summarise_rows(rows: Sequence[ManifestRow]) -> str:
    """One line per split: samples / images / patients."""
    counter = Counter(r.split for r in rows)
    parts = []
    for split in VALID_SPLITS:
        subset = [r for r in rows if r.split == split]
        parts.append(
            f"{split}: {counter.get(split, 0)} samples, {len({(r.image, r.slice) for r in subset})} images, "
            f"{len({r.patient_id for r in subset})} patients"
        )
    return "; ".join(parts)
