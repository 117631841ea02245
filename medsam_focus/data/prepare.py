"""Build a validated manifest from a source layout (``medsam-focus prepare``).

Steps, for each case an adapter found:

1. Read the image and every mask; a missing mask, an unreadable file, a size or geometry
   mismatch is recorded as dropped with the reason (the run goes on).
2. Choose the objects: every non-zero label on its own (``labels="all"``) or the label
   groups asked for (``"1+2,2"``: liver including tumour, and tumour alone).
3. 2D images give one sample per object. Volumes give one sample per slice (first array
   axis) on which the object has foreground, following MedSAM's rules: an object with fewer
   than ``min_voxels`` voxels in the whole volume is dropped (default 1000), and so is a
   slice where it covers fewer than ``min_pixels`` pixels (default 100; the same rule drops
   tiny 2D objects). ``slice_step=k`` keeps every k-th foreground slice.
4. With ``instances=True`` each 8-connected component (per slice) becomes its own sample, so
   that each box prompt covers one object; components under ``min_pixels`` are dropped.
5. Patient-level splits (:mod:`medsam_focus.data.splits`).

Empty masks (BUSI's normal images, for instance) never become samples: box prompts need an
object. They are listed in the report as dropped with the reason.

Outputs: the manifest CSV and, next to it, ``<name>.report.csv`` with one line per kept case
(how many samples) and per dropped item (why).
"""

from __future__ import annotations

import csv
import io as _io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsam_focus.data.adapters import (
    LAYOUT_DEFAULT_LABELS,
    LAYOUT_DEFAULT_NORM,
    LAYOUT_LABEL_ALIASES,
    SourceCase,
    scan_source,
)
from medsam_focus.data.manifest import (
    Manifest,
    ManifestRow,
    component_areas,
    parse_labels,
    summarise_rows,
    write_manifest,
)
from medsam_focus.data.splits import assign_splits, parse_fractions
from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import atomic_write_text, read_image, read_mask
from medsam_focus.normalize import canonical_modality, parse_rule

__all__ = ["ReportLine", "PrepareResult", "prepare_manifest", "build_manifest", "resolve_label_spec"]


@dataclass
class ReportLine:
    """One line of the prepare report: a kept case or a dropped item, and why."""

    status: str  # "kept" or "dropped"
    case_id: str
    image: str
    mask: str = ""
    slice: str = ""
    label: str = ""
    reason: str = ""


@dataclass
class PrepareResult:
    """What :func:`prepare_manifest` produced."""

    manifest: Manifest
    report: list[ReportLine] = field(default_factory=list)
    report_path: Path | None = None

    @property
    def dropped(self) -> list[ReportLine]:
        return [line for line in self.report if line.status == "dropped"]

    def summary(self) -> str:
        rows = self.manifest.rows
        lines = [
            f"kept {len(rows)} samples from {len({r.case_id for r in rows})} cases "
            f"({len({r.patient_id for r in rows})} patients)",
            "  " + summarise_rows(rows),
        ]
        reasons = Counter(_reason_kind(line.reason) for line in self.dropped)
        if reasons:
            lines.append(f"dropped {len(self.dropped)} items:")
            lines += [f"  {count:5d}  {reason}" for reason, count in reasons.most_common()]
        if self.report_path is not None:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split(" (")[0]


def resolve_label_spec(spec: str | None, layout: str) -> list[tuple[int, ...]] | None:
    """Label groups from a spec; None means every non-zero label separately.

    ``"all"`` -> None; ``"1"`` -> [(1,)]; ``"1+2,2"`` -> [(1, 2), (2,)]; layout aliases
    (``liver``, ``tumour`` for lits/msd) are expanded first.
    """
    spec = (spec or LAYOUT_DEFAULT_LABELS.get(layout, "all")).strip()
    spec = LAYOUT_LABEL_ALIASES.get(layout, {}).get(spec.lower(), spec)
    if spec.lower() == "all":
        return None
    groups = [g.strip() for g in spec.split(",") if g.strip()]
    if not groups:
        raise MedsamFocusError(f"--labels {spec!r}: give 'all', label numbers like 1,2, or unions like 1+2")
    return [parse_labels(g) for g in groups]


def _label_text(group: tuple[int, ...]) -> str:
    return "+".join(str(v) for v in group)


def prepare_manifest(
    layout: str,
    source: str | Path,
    modality: str,
    out: str | Path,
    *,
    labels: str | None = None,
    instances: bool = False,
    min_pixels: int = 100,
    min_voxels: int = 1000,
    slice_step: int = 1,
    fractions=(0.7, 0.15, 0.15),
    seed: int = 0,
    norm: str | None = None,
    patient_regex: str | None = None,
    bids_suffix: str = "dwi",
    split_method: str = "hash",
    progress: bool = False,
) -> PrepareResult:
    """Scan ``source`` with the ``layout`` adapter and write a validated manifest to ``out``.

    Args:
        layout: ``paired``, ``busi``, ``msd``, ``lits``, ``bids`` or ``npz``.
        source: the dataset folder.
        modality: ``dsa``, ``cta``, ``ct``, ``mri``, ``us`` (or an alias).
        out: manifest CSV to write; the report goes next to it.
        labels: label spec (see :func:`resolve_label_spec`); default per layout.
        instances: one sample per connected component instead of per label.
        min_pixels, min_voxels: MedSAM's size rules (per slice / per volume).
        slice_step: keep every k-th foreground slice of a volume.
        fractions: train, val, test shares of patients.
        seed: split seed.
        norm: normalisation rule written into every row (empty = the modality's default;
            the ``npz`` layout defaults to ``minmax`` since MedSAM already normalised it).
        patient_regex: regular expression whose first group (or ``(?P<patient>...)``) pulls the
            patient id out of the case id.
        bids_suffix: image suffix for the ``bids`` layout.
        split_method: ``hash`` (stable as the dataset grows) or ``balanced`` (exact
            proportions); see :func:`medsam_focus.data.splits.assign_splits`.
        progress: show a progress bar.
    """
    modality = canonical_modality(modality)
    options = {"patient_regex": patient_regex}
    if layout == "bids":
        options["suffix"] = bids_suffix
    cases = scan_source(layout, source, **options)
    groups = resolve_label_spec(labels, layout)
    norm = LAYOUT_DEFAULT_NORM.get(layout, "") if norm is None else norm
    parse_rule(norm)  # fail early on a bad rule
    return build_manifest(
        cases,
        modality,
        out,
        groups=groups,
        instances=instances,
        min_pixels=min_pixels,
        min_voxels=min_voxels,
        slice_step=slice_step,
        fractions=fractions,
        seed=seed,
        norm=norm,
        split_method=split_method,
        progress=progress,
    )


def build_manifest(
    cases: list[SourceCase],
    modality: str,
    out: str | Path,
    *,
    groups: list[tuple[int, ...]] | None = None,
    instances: bool = False,
    min_pixels: int = 100,
    min_voxels: int = 1000,
    slice_step: int = 1,
    fractions=(0.7, 0.15, 0.15),
    seed: int = 0,
    norm: str = "",
    split_method: str = "hash",
    progress: bool = False,
) -> PrepareResult:
    """Read, validate and expand adapter cases into manifest rows; write manifest + report."""
    out = Path(out)
    if slice_step < 1:
        raise MedsamFocusError(f"slice step must be >= 1, got {slice_step}")
    if min_pixels < 0 or min_voxels < 0:
        raise MedsamFocusError("minimum object sizes must be >= 0")
    fractions = parse_fractions(fractions)
    modality = canonical_modality(modality)
    base = out.parent.resolve()
    rows: list[ManifestRow] = []
    report: list[ReportLine] = []
    iterator = cases
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cases, desc="prepare", unit="case")
    for case in iterator:
        case_rows, case_report = _expand_case(
            case, modality, base, groups, instances, min_pixels, min_voxels, slice_step, norm
        )
        rows += case_rows
        report += case_report
    if not rows:
        reasons = Counter(_reason_kind(line.reason) for line in report if line.status == "dropped")
        top = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(5))
        raise MedsamFocusError(f"no usable samples among {len(cases)} cases ({top}); nothing written to {out}")
    splits = assign_splits([r.patient_id for r in rows], fractions, seed, method=split_method)
    for row in rows:
        row.split = splits[row.patient_id]
    manifest = Manifest(rows, base, out)
    write_manifest(manifest, out)
    report_path = out.with_name(out.stem + ".report.csv")
    _write_report(report, report_path)
    return PrepareResult(manifest, report, report_path)


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()


def _expand_case(
    case: SourceCase,
    modality: str,
    base: Path,
    groups,
    instances: bool,
    min_pixels: int,
    min_voxels: int,
    slice_step: int,
    norm: str,
) -> tuple[list[ManifestRow], list[ReportLine]]:
    image_rel = _relative(case.image, base)
    report: list[ReportLine] = []
    rows: list[ManifestRow] = []

    def drop(reason: str, mask: str = "", z: int | None = None, label: str = "") -> None:
        report.append(ReportLine("dropped", case.case_id, image_rel, mask, "" if z is None else str(z), label, reason))

    if not case.masks:
        drop("no mask: no mask file matches this image")
        return rows, report
    if "ambiguous_masks" in case.extra:
        drop(f"ambiguous mask: several files match ({case.extra['ambiguous_masks']}); using the first")
    try:
        image = read_image(case.image)
    except MedsamFocusError as error:
        drop(f"unreadable image: {error}")
        return rows, report
    extra = {k: v for k, v in case.extra.items() if k != "ambiguous_masks"}
    several = len(case.masks) > 1
    for m_index, mask_path in enumerate(case.masks):
        mask_rel = _relative(mask_path, base)
        try:
            mask = read_mask(mask_path, reference=image)
        except MedsamFocusError as error:
            text = str(error)
            kind = "size or geometry mismatch" if "does not match" in text else "unreadable mask"
            drop(f"{kind}: {text}", mask_rel)
            continue
        labels_present = np.unique(mask.array)
        labels_present = [int(v) for v in labels_present if v != 0]
        if not labels_present:
            drop("empty mask: no foreground (kept out of box-prompted training)", mask_rel)
            continue
        chosen = [(v,) for v in labels_present] if groups is None else groups
        prefix = case.case_id + (f":m{m_index}" if several else "")
        for group in chosen:
            label = _label_text(group)
            binary = np.isin(mask.array, np.asarray(group))
            total = int(binary.sum())
            if total == 0:
                drop(f"label absent: label {label} does not occur in the mask", mask_rel, label=label)
                continue
            if image.is_3d:
                if total < min_voxels:
                    drop(f"small object: {total} voxels < {min_voxels} in the volume", mask_rel, label=label)
                    continue
                occupied = np.flatnonzero(binary.reshape(binary.shape[0], -1).any(axis=1))
                planes = [(int(z), binary[z]) for k, z in enumerate(occupied) if k % slice_step == 0]
            else:
                planes = [(None, binary)]
            for z, plane in planes:
                where = f"{prefix}" + (f":z{z:04d}" if z is not None else "") + f":l{label}"
                if instances:
                    areas = component_areas(plane)
                    for k, area in enumerate(areas):
                        if area < min_pixels:
                            drop(f"small object: component of {area} px < {min_pixels}", mask_rel, z, label)
                            continue
                        rows.append(
                            _row(case, modality, where + f":i{k}", image_rel, mask_rel, z, label, k, norm, area, extra)
                        )
                else:
                    area = int(plane.sum())
                    if area < min_pixels:
                        drop(f"small object: {area} px < {min_pixels} on this slice", mask_rel, z, label)
                        continue
                    rows.append(_row(case, modality, where, image_rel, mask_rel, z, label, None, norm, area, extra))
    kept = len(rows)
    if kept:
        slices = sorted({r.slice for r in rows if r.slice is not None})
        detail = f" on slices {slices[0]}-{slices[-1]}" if slices else ""
        report.insert(0, ReportLine("kept", case.case_id, image_rel, reason=f"{kept} samples{detail}"))
    return rows, report


def _row(case, modality, sample_id, image_rel, mask_rel, z, label, instance, norm, area, extra) -> ManifestRow:
    return ManifestRow(
        sample_id=sample_id,
        case_id=case.case_id,
        patient_id=case.patient_id,
        modality=modality,
        image=image_rel,
        mask=mask_rel,
        slice=z,
        label=label,
        instance=instance,
        split="",
        norm=norm,
        area=int(area),
        extra=dict(extra),
    )


def _write_report(report: list[ReportLine], path: Path) -> None:
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["status", "case_id", "image", "mask", "slice", "label", "reason"])
    for line in report:
        writer.writerow([line.status, line.case_id, line.image, line.mask, line.slice, line.label, line.reason])
    atomic_write_text(path, buffer.getvalue())
