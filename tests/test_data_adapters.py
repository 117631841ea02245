"""Each dataset adapter on a tiny dataset laid out like the real one, plus prepare's validation."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medsam_focus.data import load_manifest
from medsam_focus.data.prepare import prepare_manifest, resolve_label_spec
from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import write_dicom_series, write_image, write_mask

SPACING = (4.0, 1.5, 1.5)


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _grey(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _liver_volume(seed=0, shape=(6, 40, 40)):
    """HU volume and labels: liver (1) on slices 1-4, a tumour (2) inside it on slices 2-3."""
    hu = np.random.default_rng(seed).normal(40, 10, shape).astype(np.int16)
    labels = np.zeros(shape, np.uint8)
    for z in range(1, 5):
        labels[z][_disc(shape[1:], (20, 20), 12)] = 1
    for z in (2, 3):
        labels[z][_disc(shape[1:], (20, 20), 6)] = 2
    return hu, labels


def _report(result):
    with open(result.report_path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_paired_layout_pngs_names_volumes_dicom_and_patient_regex(tmp_path):
    src = tmp_path / "src"
    mask = np.zeros((32, 32), np.uint8)
    mask[_disc((32, 32), (16, 16), 8)] = 255
    write_image(_grey((32, 32)), src / "images" / "P1_a.png")
    write_mask(mask, src / "masks" / "P1_a.png")  # same name
    write_image(_grey((32, 32), 1), src / "images" / "P1_b.jpg")
    write_mask(mask, src / "masks" / "P1_b_mask.png")  # stem + _mask, other extension
    write_image(_grey((32, 32), 2), src / "images" / "P2_a.png")  # no mask at all
    hu, labels = _liver_volume()
    write_image(hu, src / "images" / "P3_ct_0000.nii.gz", spacing=SPACING)  # nnU-Net channel suffix
    write_image(labels, src / "masks" / "P3_ct.nii.gz", spacing=SPACING)
    write_dicom_series(hu, src / "images" / "P4_ct", spacing=SPACING)  # a DICOM series folder
    write_image(labels, src / "masks" / "P4_ct.nii.gz", spacing=SPACING)
    result = prepare_manifest("paired", src, "ct", tmp_path / "out" / "m.csv", patient_regex=r"^(P\d+)_")
    manifest = load_manifest(result.manifest.path)
    by_case = {}
    for row in manifest:
        by_case.setdefault(row.case_id, []).append(row)
    assert set(by_case) == {"P1_a", "P1_b", "P3_ct", "P4_ct"}
    assert {r.patient_id for r in by_case["P1_a"] + by_case["P1_b"]} == {"P1"}
    # labels "all": label 1 on slices 1-4; label 2 (226 voxels < 1000, MedSAM's 3D rule) is dropped
    assert [(r.slice, r.label) for r in by_case["P3_ct"]] == [(1, "1"), (2, "1"), (3, "1"), (4, "1")]
    assert [r.slice for r in by_case["P4_ct"]] == [1, 2, 3, 4]
    assert by_case["P1_a"][0].label == "255"
    disc, hole = int(_disc((40, 40), (20, 20), 12).sum()), int(_disc((40, 40), (20, 20), 6).sum())
    assert [r.area for r in by_case["P3_ct"]] == [disc, disc - hole, disc - hole, disc]
    assert by_case["P1_b"][0].mask == "../src/masks/P1_b_mask.png"
    dropped = [(r["case_id"], r["reason"].split(":")[0]) for r in _report(result) if r["status"] == "dropped"]
    assert dropped == [("P2_a", "no mask"), ("P3_ct", "small object"), ("P4_ct", "small object")]


def test_busi_layout_extra_lesion_masks_and_normal_images(tmp_path):
    src = tmp_path / "Dataset_BUSI_with_GT"
    first, second = np.zeros((40, 50), np.uint8), np.zeros((40, 50), np.uint8)
    first[_disc((40, 50), (12, 12), 7)] = 255
    second[_disc((40, 50), (28, 36), 6)] = 255
    write_image(_grey((40, 50)), src / "benign" / "benign (1).png")
    write_mask(first, src / "benign" / "benign (1)_mask.png")
    write_mask(second, src / "benign" / "benign (1)_mask_1.png")
    write_image(np.repeat(_grey((40, 50), 3)[:, :, None], 3, axis=2), src / "malignant" / "malignant (1).png")
    write_mask(first, src / "malignant" / "malignant (1)_mask.png")
    write_image(_grey((40, 50), 4), src / "normal" / "normal (1).png")
    write_mask(np.zeros((40, 50), np.uint8), src / "normal" / "normal (1)_mask.png")
    result = prepare_manifest("busi", src, "ultrasound", tmp_path / "busi.csv")
    rows = {r.sample_id: r for r in result.manifest}
    assert set(rows) == {"benign (1):m0:l255", "benign (1):m1:l255", "malignant (1):l255"}
    assert rows["benign (1):m1:l255"].mask.endswith("benign (1)_mask_1.png")
    assert rows["benign (1):m0:l255"].image == rows["benign (1):m1:l255"].image  # one image, two objects
    assert rows["malignant (1):l255"].extra["class"] == "malignant" and rows["malignant (1):l255"].modality == "us"
    normal = [r for r in _report(result) if r["case_id"] == "normal (1)"]
    assert normal[0]["status"] == "dropped" and normal[0]["reason"].startswith("empty mask")


def test_msd_layout_label_groups_skips_macos_junk_and_small_objects(tmp_path):
    src = tmp_path / "Task03_Liver"
    hu, labels = _liver_volume()
    for name in ("liver_0", "liver_1"):
        write_image(hu, src / "imagesTr" / f"{name}.nii.gz", spacing=SPACING)
        write_image(labels, src / "labelsTr" / f"{name}.nii.gz", spacing=SPACING)
    (src / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    result = prepare_manifest("msd", src, "ct", tmp_path / "msd.csv", labels="1+2,2", min_voxels=0)
    rows = [r for r in result.manifest if r.case_id == "liver_0"]
    assert [(r.slice, r.label) for r in rows] == [(1, "1+2"), (2, "1+2"), (3, "1+2"), (4, "1+2"), (2, "2"), (3, "2")]
    tumour_area = int(_disc((40, 40), (20, 20), 6).sum())
    assert [r.area for r in rows if r.label == "2"] == [tumour_area, tumour_area]
    # MedSAM's 3D rule: the tumour (2 x 113 voxels) is under 1000 voxels and goes
    with pytest.raises(MedsamFocusError, match="no usable samples.*small object"):
        prepare_manifest("msd", src, "ct", tmp_path / "msd3.csv", labels="tumour", min_voxels=1000)


def test_lits_layout_defaults_to_the_whole_liver(tmp_path):
    src = tmp_path / "LiTS"
    hu, labels = _liver_volume()
    write_image(hu, src / "Training Batch 1" / "volume-0.nii", spacing=SPACING)
    write_image(labels, src / "Training Batch 1" / "segmentation-0.nii", spacing=SPACING)
    write_image(hu, src / "Training Batch 2" / "volume-10.nii", spacing=SPACING)
    write_image(labels, src / "Training Batch 2" / "segmentation-10.nii", spacing=SPACING)
    result = prepare_manifest("lits", src, "cta", tmp_path / "lits.csv", min_voxels=100)
    assert {r.case_id for r in result.manifest} == {"volume-0", "volume-10"}
    assert {r.label for r in result.manifest} == {"1+2"}
    assert resolve_label_spec("tumour", "lits") == [(2,)]
    assert resolve_label_spec(None, "msd") is None


def test_bids_layouts_isles_and_atlas(tmp_path):
    hu, labels = _liver_volume()
    lesion = (labels > 0).astype(np.uint8)
    isles = tmp_path / "ISLES-2022"
    for k in (1, 2):
        sub, ses = f"sub-strokecase{k:04d}", "ses-0001"
        write_image(hu, isles / sub / ses / "dwi" / f"{sub}_{ses}_dwi.nii.gz", spacing=SPACING)
        write_image(hu, isles / sub / ses / "dwi" / f"{sub}_{ses}_adc.nii.gz", spacing=SPACING)
        write_image(hu[:, :30], isles / sub / ses / "anat" / f"{sub}_{ses}_FLAIR.nii.gz", spacing=SPACING)
        write_image(lesion, isles / "derivatives" / sub / ses / f"{sub}_{ses}_msk.nii.gz", spacing=SPACING)
    result = prepare_manifest("bids", isles, "mri", tmp_path / "isles.csv", min_voxels=100)
    assert {(r.case_id, r.patient_id) for r in result.manifest} == {
        ("sub-strokecase0001_ses-0001", "sub-strokecase0001"),
        ("sub-strokecase0002_ses-0001", "sub-strokecase0002"),
    }
    assert all(r.image.endswith("_dwi.nii.gz") and r.mask.endswith("_msk.nii.gz") for r in result.manifest)
    # FLAIR has another grid: the mask does not fit it and is dropped with the reason
    with pytest.raises(MedsamFocusError, match="2 x size or geometry mismatch"):
        prepare_manifest("bids", isles, "mri", tmp_path / "f.csv", min_voxels=100, bids_suffix="FLAIR")
    atlas = tmp_path / "ATLAS_2" / "Training" / "R001" / "sub-r001s001" / "ses-1" / "anat"
    write_image(hu, atlas / "sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz", spacing=SPACING)
    write_image(
        lesion, atlas / "sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz", spacing=SPACING
    )
    result = prepare_manifest(
        "bids", tmp_path / "ATLAS_2", "mri", tmp_path / "atlas.csv", min_voxels=100, bids_suffix="T1w"
    )
    assert {r.patient_id for r in result.manifest} == {"sub-r001s001"}
    assert result.manifest.rows[0].mask.endswith("desc-T1lesion_mask.nii.gz")


def test_npz_layouts_medsam_npz_and_npy_slices(tmp_path):
    _, labels = _liver_volume()
    imgs = np.random.default_rng(0).integers(0, 256, labels.shape, dtype=np.uint8)
    (tmp_path / "npz").mkdir()
    np.savez_compressed(tmp_path / "npz" / "CT_Liver_001.npz", imgs=imgs, gts=labels, spacing=np.array([1.5, 1.5, 4.0]))
    result = prepare_manifest("npz", tmp_path / "npz", "ct", tmp_path / "npz.csv", labels="1+2", min_voxels=100)
    assert [r.slice for r in result.manifest] == [1, 2, 3, 4]
    assert {r.norm for r in result.manifest} == {"minmax"}  # MedSAM's data is already 0..255
    assert result.manifest.rows[0].image == result.manifest.rows[0].mask == "npz/CT_Liver_001.npz"
    npy = tmp_path / "npy"
    (npy / "imgs").mkdir(parents=True)
    (npy / "gts").mkdir()
    for z in (1, 2):
        np.save(npy / "imgs" / f"CT_Abd_0007-{z:03d}.npy", np.repeat(imgs[z][:, :, None], 3, 2) / 255.0)
        np.save(npy / "gts" / f"CT_Abd_0007-{z:03d}.npy", labels[z])
    result = prepare_manifest("npz", npy, "ct", tmp_path / "npy.csv")
    assert {r.patient_id for r in result.manifest} == {"CT_Abd_0007"}
    assert len({r.split for r in result.manifest}) == 1


def test_prepare_drops_mismatches_and_corrupt_files_with_reasons(tmp_path):
    src = tmp_path / "src"
    good = np.zeros((32, 32), np.uint8)
    good[_disc((32, 32), (16, 16), 8)] = 1
    write_image(_grey((32, 32)), src / "images" / "ok.png")
    write_mask(good, src / "masks" / "ok.png")
    write_image(_grey((32, 40)), src / "images" / "wide.png")
    write_mask(good, src / "masks" / "wide.png")  # 32 x 32 mask for a 32 x 40 image
    (src / "images" / "broken.png").write_bytes(b"not a png")
    write_mask(good, src / "masks" / "broken.png")
    tiny = np.zeros((32, 32), np.uint8)
    tiny[0:5, 0:5] = 1  # 25 px < 100
    write_image(_grey((32, 32)), src / "images" / "tiny.png")
    write_mask(tiny, src / "masks" / "tiny.png")
    result = prepare_manifest("paired", src, "dsa", tmp_path / "m.csv")
    assert [r.case_id for r in result.manifest] == ["ok"]
    reasons = {r["case_id"]: r["reason"] for r in _report(result) if r["status"] == "dropped"}
    assert reasons["wide"].startswith("size or geometry mismatch") and "wide.png" in reasons["wide"]
    assert reasons["broken"].startswith("unreadable image") and "broken.png" in reasons["broken"]
    assert reasons["tiny"] == "small object: 25 px < 100 on this slice"
    assert "dropped 3 items" in result.summary()


def test_instances_give_one_sample_per_component(tmp_path):
    src = tmp_path / "src"
    mask = np.zeros((40, 40), np.uint8)
    mask[_disc((40, 40), (10, 10), 6)] = 1  # 113 px
    mask[_disc((40, 40), (28, 28), 9)] = 1  # 253 px: instance 0
    mask[38:40, 0:3] = 1  # 6 px: dropped
    write_image(_grey((40, 40)), src / "images" / "a.png")
    write_mask(mask, src / "masks" / "a.png")
    result = prepare_manifest("paired", src, "us", tmp_path / "m.csv", instances=True)
    assert [(r.instance, r.area) for r in result.manifest] == [(0, 253), (1, 113)]
    assert [r.sample_id for r in result.manifest] == ["a:l1:i0", "a:l1:i1"]


def test_bad_sources_raise_clear_errors(tmp_path):
    with pytest.raises(MedsamFocusError, match="does not exist"):
        prepare_manifest("busi", tmp_path / "missing", "us", tmp_path / "m.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsamFocusError, match="images folder"):
        prepare_manifest("paired", tmp_path / "empty", "us", tmp_path / "m.csv")
    with pytest.raises(MedsamFocusError, match="unknown layout"):
        prepare_manifest("kaggle", tmp_path / "empty", "us", tmp_path / "m.csv")
    with pytest.raises(MedsamFocusError, match="unknown modality"):
        prepare_manifest("paired", tmp_path / "empty", "pet", tmp_path / "m.csv")
