"""Dataset adapters: find (image, mask) pairs in the folder layouts public datasets use.

Each adapter scans a source folder and returns :class:`SourceCase` records (case id,
patient id, image path, mask paths); :mod:`medsam_focus.data.prepare` then reads and
validates them and writes the manifest. Layouts (docs/data.md shows each tree):

``paired``
    ``images/`` and ``masks/`` (or ``labels/``) with matching names: the same name, the same
    stem with another extension, or the image stem plus ``_mask``/``_seg``/``_label``/``_gt``.
    nnU-Net channel suffixes (``case_0000.nii.gz``) are ignored when matching. An entry of
    ``images/`` that is a folder is read as a DICOM series. Optional ``patient_regex``.
``busi``
    Breast Ultrasound Images: class folders (``benign/``, ``malignant/``, ``normal/``)
    with ``name.png``, ``name_mask.png`` and ``name_mask_1.png``... for extra lesions. Each
    image is its own patient (BUSI has no patient ids).
``msd``
    Medical Segmentation Decathlon: ``imagesTr/`` and ``labelsTr/`` with equal names
    (``liver_3.nii.gz``; ``liver_3_0000.nii.gz`` images also match). macOS ``._*`` files
    are skipped.
``lits``
    LiTS: ``volume-N.nii[.gz]`` and ``segmentation-N.nii[.gz]`` anywhere below the source
    (the training batches are two folders). Labels 1 = liver, 2 = tumour.
``bids``
    ISLES 2022 / ATLAS 2.0: ``sub-X/[ses-Y/]<dwi|anat>/sub-X_ses-Y_<suffix>.nii.gz`` with
    the lesion mask under ``derivatives/`` (``sub-X_ses-Y_msk.nii.gz``, or any file of that
    subject and session with ``mask``/``msk``/``lesion`` in its name), or next to the image
    (ATLAS' ``..._label-L_desc-T1lesion_mask.nii.gz``). ``suffix`` picks the image: ``dwi``
    (default), ``adc``, ``FLAIR``, ``T1w``. Patient = subject.
``npz``
    MedSAM's preprocessed data: ``*.npz`` files holding ``imgs``, ``gts`` (and ``spacing``),
    or the ``imgs/`` + ``gts/`` folders of per-slice ``.npy`` files written by MedSAM's
    ``npz2npy`` (``CASE-012.npy``: case ``CASE``, slice 12).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import ITK_SUFFIXES, PLAIN_2D_SUFFIXES, file_suffix, strip_suffix

__all__ = [
    "SourceCase",
    "ADAPTERS",
    "LAYOUT_LABEL_ALIASES",
    "LAYOUT_DEFAULT_LABELS",
    "LAYOUT_DEFAULT_NORM",
    "scan_source",
    "scan_paired",
    "scan_busi",
    "scan_msd",
    "scan_lits",
    "scan_bids",
    "scan_npz",
]

IMAGE_SUFFIXES = PLAIN_2D_SUFFIXES + ITK_SUFFIXES + (".npy", ".npz")
MASK_NAME_SUFFIXES = ("_mask", "_masks", "_seg", "_segmentation", "_label", "_labels", "_gt")
LIVER_ALIASES = {"liver": "1+2", "tumour": "2", "tumor": "2", "liver,tumour": "1+2,2", "liver,tumor": "1+2,2"}
LAYOUT_LABEL_ALIASES: dict[str, dict[str, str]] = {"lits": LIVER_ALIASES, "msd": LIVER_ALIASES}
LAYOUT_DEFAULT_LABELS = {"paired": "all", "busi": "all", "msd": "all", "lits": "liver", "bids": "all", "npz": "all"}
LAYOUT_DEFAULT_NORM = {"npz": "minmax"}


@dataclass
class SourceCase:
    """One image with its mask file(s), as an adapter found it.

    Attributes:
        case_id: unique within the dataset (a file stem, ``sub-X_ses-Y``...).
        patient_id: the person; equal to ``case_id`` when the layout has no patient ids.
        image: image file or DICOM series folder.
        masks: mask files (several for BUSI's extra-lesion masks); empty = none found.
        extra: extra manifest columns (for example BUSI's ``class``).
    """

    case_id: str
    patient_id: str
    image: Path
    masks: list[Path] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _image_like(path: Path) -> bool:
    return _visible(path) and (path.is_dir() or file_suffix(path) in IMAGE_SUFFIXES)


def _require_dir(path: Path, what: str, layout: str) -> Path:
    if not path.is_dir():
        raise MedsamFocusError(f"{what} {path} is not a folder; the {layout!r} layout expects it (see docs/data.md)")
    return path


def _apply_patient_regex(cases: list[SourceCase], patient_regex: str | None) -> list[SourceCase]:
    if not patient_regex:
        return cases
    try:
        pattern = re.compile(patient_regex)
    except re.error as error:
        raise MedsamFocusError(
            f"--patient-regex {patient_regex!r} is not a valid regular expression: {error}"
        ) from error
    for case in cases:
        match = pattern.search(case.case_id)
        if match:
            groups = match.groupdict()
            case.patient_id = groups.get("patient") or (match.group(1) if pattern.groups else match.group(0))
    return cases


def _check_unique(cases: list[SourceCase]) -> list[SourceCase]:
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case_id in seen:
            raise MedsamFocusError(
                f"two images share the case id {case.case_id!r}: {seen[case.case_id]} and {case.image}; rename one"
            )
        seen[case.case_id] = case.image
    return cases


# --------------------------------------------------------------------------- paired
def _match_key(name: str) -> str:
    stem = strip_suffix(name)
    return re.sub(r"_\d{4}$", "", stem)  # nnU-Net channel suffix


def scan_paired(source: Path, patient_regex: str | None = None, **_) -> list[SourceCase]:
    """``images/`` + ``masks/`` (or ``labels/``) with matching names."""
    images_dir = _require_dir(source / "images", "images folder", "paired")
    masks_dir = next((source / n for n in ("masks", "labels") if (source / n).is_dir()), None)
    if masks_dir is None:
        raise MedsamFocusError(f"{source} has no masks/ (or labels/) folder; the 'paired' layout expects one")
    masks_by_key: dict[str, list[Path]] = {}
    for mask in sorted(p for p in masks_dir.iterdir() if _image_like(p) and p.is_file()):
        masks_by_key.setdefault(strip_suffix(mask.name), []).append(mask)
    cases = []
    for image in sorted(p for p in images_dir.iterdir() if _image_like(p)):
        key = _match_key(image.name) if image.is_file() else image.name
        found = masks_by_key.get(strip_suffix(image.name)) or masks_by_key.get(key)
        if not found:
            for suffix in MASK_NAME_SUFFIXES:
                found = masks_by_key.get(key + suffix)
                if found:
                    break
        cases.append(SourceCase(case_id=key, patient_id=key, image=image, masks=list(found or [])[:1]))
        if found and len(found) > 1:
            cases[-1].extra["ambiguous_masks"] = ";".join(p.name for p in found)
    return _check_unique(_apply_patient_regex(cases, patient_regex))


# --------------------------------------------------------------------------- BUSI
_BUSI_MASK = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<k>\d+))?$")


def scan_busi(source: Path, patient_regex: str | None = None, **_) -> list[SourceCase]:
    """Class folders with ``name.png`` + ``name_mask.png`` (+ ``name_mask_1.png``...)."""
    _require_dir(source, "source", "busi")
    class_dirs = sorted(p for p in source.iterdir() if p.is_dir() and _visible(p))
    if not class_dirs:
        raise MedsamFocusError(f"{source} has no class folders (benign/, malignant/, normal/); see docs/data.md")
    cases = []
    for folder in class_dirs:
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and _visible(p) and file_suffix(p) in PLAIN_2D_SUFFIXES
        )
        masks: dict[str, list[tuple[int, Path]]] = {}
        images = []
        for path in files:
            match = _BUSI_MASK.match(strip_suffix(path.name))
            if match:
                masks.setdefault(match["stem"], []).append((int(match["k"] or 0), path))
            else:
                images.append(path)
        for image in images:
            stem = strip_suffix(image.name)
            found = [p for _, p in sorted(masks.get(stem, []))]
            cases.append(SourceCase(stem, stem, image, found, {"class": folder.name}))
    return _check_unique(_apply_patient_regex(cases, patient_regex))


# --------------------------------------------------------------------------- MSD
def scan_msd(source: Path, patient_regex: str | None = None, **_) -> list[SourceCase]:
    """``imagesTr/`` + ``labelsTr/`` with equal names."""
    images_dir = _require_dir(source / "imagesTr", "images folder", "msd")
    labels_dir = _require_dir(source / "labelsTr", "labels folder", "msd")
    labels = {strip_suffix(p.name): p for p in labels_dir.iterdir() if p.is_file() and _visible(p)}
    cases = []
    for image in sorted(p for p in images_dir.iterdir() if p.is_file() and _image_like(p)):
        key = _match_key(image.name)
        mask = labels.get(strip_suffix(image.name)) or labels.get(key)
        cases.append(SourceCase(key, key, image, [mask] if mask else []))
    return _check_unique(_apply_patient_regex(cases, patient_regex))


# --------------------------------------------------------------------------- LiTS
_LITS_VOLUME = re.compile(r"^volume-(\d+)$")


def scan_lits(source: Path, patient_regex: str | None = None, **_) -> list[SourceCase]:
    """``volume-N.nii`` + ``segmentation-N.nii`` anywhere below ``source``."""
    _require_dir(source, "source", "lits")
    segmentations = {}
    volumes = []
    for path in sorted(source.rglob("*")):
        if not path.is_file() or not _visible(path) or file_suffix(path) not in (".nii", ".nii.gz"):
            continue
        stem = strip_suffix(path.name)
        if stem.startswith("segmentation-"):
            segmentations[stem.split("-", 1)[1]] = path
        elif _LITS_VOLUME.match(stem):
            volumes.append(path)
    cases = []
    for volume in sorted(volumes, key=lambda p: int(_LITS_VOLUME.match(strip_suffix(p.name)).group(1))):
        number = _LITS_VOLUME.match(strip_suffix(volume.name)).group(1)
        mask = segmentations.get(number)
        cases.append(SourceCase(f"volume-{number}", f"volume-{number}", volume, [mask] if mask else []))
    return _check_unique(_apply_patient_regex(cases, patient_regex))


# --------------------------------------------------------------------------- BIDS
def _entity(path: Path, prefix: str) -> str | None:
    for part in path.parts:
        if part.startswith(prefix) and "_" not in part and "." not in part:
            return part
    return None


def scan_bids(source: Path, patient_regex: str | None = None, suffix: str = "dwi", **_) -> list[SourceCase]:
    """ISLES 2022 / ATLAS 2.0 BIDS trees; ``suffix`` chooses the image (dwi, adc, FLAIR, T1w)."""
    _require_dir(source, "source", "bids")
    wanted = f"_{suffix.lower()}"
    images, derivative_masks = [], []
    for path in sorted(source.rglob("*.nii*")):
        if not path.is_file() or not _visible(path):
            continue
        stem = strip_suffix(path.name)
        if "derivatives" in path.relative_to(source).parts:
            derivative_masks.append(path)
        elif stem.lower().endswith(wanted) and _entity(path, "sub-"):
            images.append(path)
    if not images:
        raise MedsamFocusError(
            f"{source}: no BIDS images named sub-*_{suffix}.nii(.gz) outside derivatives/; check --bids-suffix "
            "(dwi, adc, FLAIR, T1w) and see docs/data.md"
        )
    cases = []
    for image in images:
        subject = _entity(image, "sub-")
        session = _entity(image, "ses-")
        candidates = [
            m
            for m in derivative_masks
            if (subject in m.parts or m.name.startswith(subject + "_"))
            and (session is None or session in m.parts or f"_{session}_" in m.name)
            and _looks_like_mask(m.name)
        ]
        if not candidates:  # ATLAS keeps the lesion mask next to the T1w image
            candidates = [m for m in sorted(image.parent.glob("*.nii*")) if m != image and _looks_like_mask(m.name)]
        case_id = f"{subject}_{session}" if session else subject
        case = SourceCase(case_id, subject, image, sorted(candidates)[:1])
        if len(candidates) > 1:
            case.extra["ambiguous_masks"] = ";".join(p.name for p in sorted(candidates))
        cases.append(case)
    return _check_unique(_apply_patient_regex(cases, patient_regex))


def _looks_like_mask(name: str) -> bool:
    lower = name.lower()
    return any(token in lower for token in ("_msk", "mask", "lesion", "_dseg", "_label"))


# --------------------------------------------------------------------------- MedSAM npz / npy
_NPY_SLICE = re.compile(r"^(?P<case>.+)-(?P<z>\d{3,})$")


def scan_npz(source: Path, patient_regex: str | None = None, **_) -> list[SourceCase]:
    """MedSAM ``*.npz`` (imgs + gts in one file) or ``imgs/`` + ``gts/`` per-slice ``.npy``."""
    _require_dir(source, "source", "npz")
    cases = []
    if (source / "imgs").is_dir() and (source / "gts").is_dir():
        for image in sorted((source / "imgs").glob("*.npy")):
            mask = source / "gts" / image.name
            stem = strip_suffix(image.name)
            match = _NPY_SLICE.match(stem)
            patient = match["case"] if match else stem
            cases.append(SourceCase(stem, patient, image, [mask] if mask.is_file() else []))
    else:
        for path in sorted(source.rglob("*.npz")):
            if _visible(path):
                stem = strip_suffix(path.name)
                cases.append(SourceCase(stem, stem, path, [path]))
    return _check_unique(_apply_patient_regex(cases, patient_regex))


ADAPTERS: dict[str, Callable[..., list[SourceCase]]] = {
    "paired": scan_paired,
    "busi": scan_busi,
    "msd": scan_msd,
    "lits": scan_lits,
    "bids": scan_bids,
    "npz": scan_npz,
}


def scan_source(layout: str, source: str | Path, **options) -> list[SourceCase]:
    """Run the adapter of ``layout`` on ``source``; raise when it finds no image at all."""
    if layout not in ADAPTERS:
        raise MedsamFocusError(f"unknown layout {layout!r}; known layouts: {', '.join(ADAPTERS)}")
    source = Path(source)
    if not source.exists():
        raise MedsamFocusError(f"source folder {source} does not exist")
    cases = ADAPTERS[layout](source, **options)
    if not cases:
        raise MedsamFocusError(
            f"the {layout!r} adapter found no images under {source}; see docs/data.md for the layout"
        )
    return cases
