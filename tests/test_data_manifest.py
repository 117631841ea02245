"""Manifest reading/writing/validation and patient-level splits."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_focus.data import Manifest, ManifestRow, assign_splits, load_manifest, object_mask, write_manifest
from medsam_focus.data.splits import parse_fractions, patient_unit
from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import write_image, write_mask

HEADER = "sample_id,case_id,patient_id,modality,image,mask,slice,label,instance,split\n"


def _files(folder):
    write_image(np.zeros((8, 8), np.uint8), folder / "img" / "a.png")
    write_mask(np.ones((8, 8), np.uint8), folder / "msk" / "a.png")


def _row(sid="s1", patient="p1", split="train", **changes):
    values = dict(
        sample_id=sid,
        case_id="a",
        patient_id=patient,
        modality="us",
        image="img/a.png",
        mask="msk/a.png",
        slice=None,
        label="1",
        instance=None,
        split=split,
    )
    values.update(changes)
    return ManifestRow(**values)


def test_round_trip_rebases_relative_paths(tmp_path):
    _files(tmp_path)
    rows = [_row(), _row("s2", "p2", "test", label="1+2", norm="percentile:1,99", area=64, extra={"class": "x"})]
    path = write_manifest(rows, tmp_path / "manifest.csv")
    manifest = load_manifest(path)
    assert [r.sample_id for r in manifest] == ["s1", "s2"]
    assert manifest.rows[1].labels == (1, 2) and manifest.rows[1].area == 64
    assert manifest.rows[1].extra == {"class": "x"} and manifest.rows[1].norm == "percentile:1,99"
    assert manifest.image_path(manifest.rows[0]) == (tmp_path / "img" / "a.png").resolve()
    # written elsewhere, the paths still reach the same files
    moved = load_manifest(write_manifest(manifest, tmp_path / "sub" / "deeper" / "m.csv"))
    assert moved.rows[0].image == "../../img/a.png"
    assert moved.image_path(moved.rows[0]) == manifest.image_path(manifest.rows[0])
    assert manifest.select("test").rows[0].sample_id == "s2"
    assert manifest.counts()["train"] == {"samples": 1, "images": 1, "cases": 1, "patients": 1}


@pytest.mark.parametrize(
    "line, message",
    [
        ("s1,a,p1,us,img/a.png,msk/a.png,,1,,training\n", "split 'training' is not train, val or test"),
        ("s1,a,p1,pet,img/a.png,msk/a.png,,1,,train\n", "unknown modality 'pet'"),
        ("s1,a,p1,us,img/a.png,msk/a.png,x,1,,train\n", "slice 'x' is not an integer"),
        ("s1,a,p1,us,img/a.png,msk/a.png,,0,,train\n", "must be positive"),
        ("s1,a,p1,us,img/b.png,msk/a.png,,1,,train\n", r"image .*b\.png does not exist"),
        ("s1,a,p1,us,img/a.png,msk/a.png,,1,,train\ns1,a,p1,us,img/a.png,msk/a.png,,1,,train\n", "repeats line 2"),
        ("s1,a,p1,us,img/a.png,msk/a.png,,1,,train\ns2,a,p1,us,img/a.png,msk/a.png,,1,,val\n", "several splits"),
    ],
)
def test_validation_names_the_row_and_problem(tmp_path, line, message):
    _files(tmp_path)
    path = tmp_path / "m.csv"
    path.write_text(HEADER + line, encoding="utf-8")
    with pytest.raises(MedsamFocusError, match=message) as error:
        load_manifest(path)
    assert "m.csv" in str(error.value)


def test_missing_columns_and_file(tmp_path):
    (tmp_path / "m.csv").write_text("sample_id,image\nx,y\n", encoding="utf-8")
    with pytest.raises(MedsamFocusError, match="lacks column.*case_id"):
        load_manifest(tmp_path / "m.csv")
    with pytest.raises(MedsamFocusError, match="does not exist"):
        load_manifest(tmp_path / "none.csv")


def test_modality_alias_is_canonicalised(tmp_path):
    _files(tmp_path)
    (tmp_path / "m.csv").write_text(HEADER + "s1,a,p1,Ultrasound,img/a.png,msk/a.png,,1,,train\n", encoding="utf-8")
    assert load_manifest(tmp_path / "m.csv").rows[0].modality == "us"


# --------------------------------------------------------------------------- splits
def test_splits_are_deterministic_patient_level_and_seeded():
    patients = [f"P{i:03d}" for i in range(200)]
    a = assign_splits(patients, (0.7, 0.15, 0.15), seed=0)
    assert a == assign_splits(list(reversed(patients)) + patients[:10], (0.7, 0.15, 0.15), seed=0)
    assert set(a) == set(patients)
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert 120 <= counts["train"] <= 160 and 15 <= counts["val"] <= 45 and 15 <= counts["test"] <= 45
    assert a != assign_splits(patients, (0.7, 0.15, 0.15), seed=1)
    # the rule is the documented hash threshold
    u = patient_unit("P007", 0)
    assert a["P007"] == ("train" if u < 0.7 else "val" if u < 0.85 else "test")


def test_splits_are_stable_when_the_dataset_grows():
    small = [f"case-{i}" for i in range(60)]
    grown = small + [f"case-{i}" for i in range(60, 150)]
    before = assign_splits(small, (0.7, 0.15, 0.15), seed=3)
    after = assign_splits(grown, (0.7, 0.15, 0.15), seed=3)
    assert all(v in ("train", "val", "test") for v in before.values())
    assert all(before[p] == after[p] for p in small)


def test_small_dataset_guard_and_balanced_method():
    few = ["a", "b", "c"]
    splits = assign_splits(few, (0.6, 0.2, 0.2), seed=0)
    assert sorted(splits.values()) == ["test", "train", "val"]
    balanced = assign_splits([f"p{i}" for i in range(10)], (0.6, 0.2, 0.2), seed=0, method="balanced")
    assert sorted(balanced.values()).count("train") == 6 and list(balanced.values()).count("val") == 2
    assert assign_splits(["only"])["only"] in ("train", "val", "test")  # too few patients for the guard
    with pytest.raises(MedsamFocusError):
        parse_fractions("0.7,0.3")
    assert parse_fractions("7,2,1") == pytest.approx((0.7, 0.2, 0.1))


# --------------------------------------------------------------------------- objects
def test_object_mask_labels_and_instances():
    mask = np.zeros((10, 12), np.uint8)
    mask[1:3, 1:3] = 1  # 4 px component of label 1
    mask[5:9, 5:10] = 1  # 20 px component of label 1
    mask[0, 11] = 2
    assert object_mask(mask, (1,)).sum() == 24
    assert object_mask(mask, (1, 2)).sum() == 25
    largest = object_mask(mask, (1,), 0)
    assert largest.sum() == 20 and largest[6, 6]
    assert object_mask(mask, (1,), 1).sum() == 4
    assert not object_mask(mask, (1,), 2).any()


def test_manifest_select_rejects_unknown_split(tmp_path):
    manifest = Manifest([_row()], tmp_path)
    with pytest.raises(MedsamFocusError, match="unknown split"):
        manifest.select("training")
