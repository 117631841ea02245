"""SegmentationDataset: model-frame items, exact masks/SDF/boxes, reproducible randomness, caches."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from medsam_focus.data import ManifestRow, SegmentationDataset, collate_objects, load_manifest, write_manifest
from medsam_focus.data.dataset import Augmentation
from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import write_image, write_mask
from medsam_focus.models.frame import LITEMEDSAM_FRAME, MEDSAM_FRAME
from medsam_focus.normalize import normalize
from medsam_focus.prompts import box_from_mask
from medsam_focus.sdf import reference_frame_sdf

F = LITEMEDSAM_FRAME


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@pytest.fixture
def dataset_dir(tmp_path):
    """a.png (60 x 80, two labels), b.png (RGB, one object), vol.nii.gz (objects on slices 1 and 2)."""
    rng = np.random.default_rng(0)
    write_image(rng.integers(1, 256, (60, 80), dtype=np.uint8), tmp_path / "a.png")
    labels = np.zeros((60, 80), np.uint8)
    labels[_disc((60, 80), (20, 20), 9)] = 1
    labels[_disc((60, 80), (40, 58), 12)] = 2
    write_mask(labels, tmp_path / "a_mask.png")
    rgb = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    write_image(rgb, tmp_path / "b.png")
    write_mask(_disc((50, 50), (25, 25), 10).astype(np.uint8) * 255, tmp_path / "b_mask.png")
    volume = rng.normal(300, 50, (4, 40, 50)).astype(np.int16)
    vol_labels = np.zeros((4, 40, 50), np.uint8)
    vol_labels[1][_disc((40, 50), (15, 20), 8)] = 1
    vol_labels[2][_disc((40, 50), (20, 25), 10)] = 1
    write_image(volume, tmp_path / "vol.nii.gz", spacing=(5.0, 0.8, 0.9))
    write_image(vol_labels, tmp_path / "vol_mask.nii.gz", spacing=(5.0, 0.8, 0.9))

    def row(sid, case, patient, image, mask, z, label, split="train", modality="us"):
        return ManifestRow(sid, case, patient, modality, image, mask, z, label, None, split)

    rows = [
        row("a:l1", "a", "p1", "a.png", "a_mask.png", None, "1"),
        row("a:l2", "a", "p1", "a.png", "a_mask.png", None, "2"),
        row("b:l255", "b", "p2", "b.png", "b_mask.png", None, "255"),
        row("v:z1", "v", "p3", "vol.nii.gz", "vol_mask.nii.gz", 1, "1", modality="mri"),
        row("v:z2", "v", "p3", "vol.nii.gz", "vol_mask.nii.gz", 2, "1", modality="mri"),
    ]
    write_manifest(rows, tmp_path / "manifest.csv")
    return tmp_path


def test_items_group_rows_of_one_image(dataset_dir):
    ds = SegmentationDataset(dataset_dir / "manifest.csv", F, split="train")
    assert len(ds) == 4
    assert ds.image_ids == ["a", "b", "v/z0001", "v/z0002"]
    item = ds[0]
    assert item["sample_ids"] == ["a:l1", "a:l2"]
    assert item["image"].shape == (3, 256, 256) and item["image"].dtype == torch.float32
    assert item["masks"].shape == (2, 1, 256, 256) and item["sdf"].shape == (2, 1, 256, 256)
    assert item["boxes"].shape == (2, 4) and item["boxes"].dtype == torch.float32
    assert item["orig_hw"] == (60, 80) and item["spacing"] == (1.0, 1.0)
    assert (item["case_id"], item["patient_id"], item["modality"]) == ("a", "p1", "us")
    assert ds[2]["spacing"] == pytest.approx((0.8, 0.9))


def test_values_are_exactly_the_frame_and_sdf_functions(dataset_dir):
    from medsam_focus.io import read_image, read_mask

    ds = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", jitter_px=0)
    item = ds[2]  # volume slice 1: normalised as a whole volume, then sliced
    volume = read_image(dataset_dir / "vol.nii.gz").array
    expected_image = F.image_to_model(normalize(volume, "mri")[1])
    np.testing.assert_array_equal(item["image"].numpy(), expected_image)
    obj = read_mask(dataset_dir / "vol_mask.nii.gz").array[1] == 1
    frame_mask = F.mask_to_frame(obj)
    np.testing.assert_array_equal(item["masks"][0, 0].numpy(), frame_mask)
    np.testing.assert_array_equal(item["sdf"][0, 0].numpy(), reference_frame_sdf(frame_mask, 256))
    np.testing.assert_array_equal(item["boxes"][0].numpy(), box_from_mask(frame_mask))
    # the SDF is negative inside, in 1024-frame pixels (4 x the 256 frame)
    assert (item["sdf"][0, 0][item["masks"][0, 0] > 0] < 0).all()
    rgb = ds[1]
    assert rgb["image"].shape == (3, 256, 256) and not torch.equal(rgb["image"][0], rgb["image"][1])


def test_jitter_is_outward_bounded_and_reproducible(dataset_dir):
    ds = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", seed=7)
    tight = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", jitter_px=0)
    assert ds.jitter_px == 5.0  # 20 px at 1024 -> 5 px at 256
    boxes, ref = ds[0]["boxes"].numpy(), tight[0]["boxes"].numpy()
    moved = np.concatenate([ref[:, :2] - boxes[:, :2], boxes[:, 2:] - ref[:, 2:]], axis=1)
    assert (moved >= 0).all() and (moved <= 5).all() and moved.sum() > 0
    h, w = F.resized_hw((60, 80))
    assert (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()
    np.testing.assert_array_equal(ds[0]["boxes"].numpy(), boxes)  # same (seed, epoch, index)
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]["boxes"].numpy(), boxes)
    ds.set_epoch(0)
    np.testing.assert_array_equal(ds[0]["boxes"].numpy(), boxes)


def test_dataloader_workers_do_not_change_the_batches(dataset_dir):
    ds = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", augment=True, seed=3)
    ds.set_epoch(2)

    def run(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate_objects)
        return list(loader)

    serial, parallel = run(0), run(2)
    assert len(serial) == 2
    for a, b in zip(serial, parallel, strict=True):
        for key in ("images", "masks", "sdf", "boxes", "image_index"):
            assert torch.equal(a[key], b[key]), key
        assert a["sample_ids"] == b["sample_ids"]
    first = serial[0]
    assert first["images"].shape == (2, 3, 256, 256)
    assert first["masks"].shape == (3, 1, 256, 256)
    assert first["image_index"].tolist() == [0, 0, 1] and first["num_objects"].tolist() == [2, 1]
    assert first["sample_ids"] == ["a:l1", "a:l2", "b:l255"] and first["image_ids"] == ["a", "b"]


def test_disk_cache_is_reused_and_invalidated_by_file_changes(dataset_dir, monkeypatch):
    cache = dataset_dir / "cache"
    first = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", cache_dir=cache)
    items = [first[i] for i in range(len(first))]
    assert len(list(cache.rglob("*.npz"))) == 4
    calls = []
    original = SegmentationDataset._compute

    def counted(self, index):
        calls.append(index)
        return original(self, index)

    monkeypatch.setattr(SegmentationDataset, "_compute", counted)
    second = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", cache_dir=cache)
    for i, item in enumerate(items):
        again = second[i]
        for key in ("image", "masks", "sdf", "boxes"):
            assert torch.equal(item[key], again[key])
        assert second.original(i).masks.shape[1:] == item["orig_hw"]
    assert calls == []  # everything came from disk
    labels = np.zeros((60, 80), np.uint8)
    labels[_disc((60, 80), (30, 30), 15)] = 1
    labels[_disc((60, 80), (10, 70), 6)] = 2
    write_mask(labels, dataset_dir / "a_mask.png")
    stamp = os.stat(dataset_dir / "a_mask.png").st_mtime_ns + 10**9
    os.utime(dataset_dir / "a_mask.png", ns=(stamp, stamp))
    third = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", cache_dir=cache)
    changed = third[0]
    assert calls == [0]
    assert changed["masks"][0].sum() > items[0]["masks"][0].sum()


def test_flip_moves_image_masks_sdf_and_boxes_together(dataset_dir):
    plain = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", jitter_px=0)
    flip = Augmentation(flip_lr=1.0, rotate_deg=0, scale=(1.0, 1.0), brightness=0, contrast=0, gamma=0)
    flipped = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", jitter_px=0, augment=flip)
    a, b = plain[0], flipped[0]
    nh, nw = F.resized_hw((60, 80))
    assert (nh, nw) == (192, 256)
    assert torch.allclose(b["image"][:, :nh, :nw], a["image"][:, :nh, :nw].flip(-1), atol=1e-6)
    assert torch.equal(b["masks"][:, :, :nh, :nw], a["masks"][:, :, :nh, :nw].flip(-1))
    assert torch.allclose(b["sdf"][:, :, :nh, :nw], a["sdf"][:, :, :nh, :nw].flip(-1), atol=1e-4)
    expected = a["boxes"].clone()
    expected[:, 0], expected[:, 2] = (nw - 1) - a["boxes"][:, 2], (nw - 1) - a["boxes"][:, 0]
    assert torch.equal(b["boxes"], expected)


def test_zoom_multiplies_distances_and_intensity_touches_the_image_only(dataset_dir):
    zoom = Augmentation(flip_lr=0, rotate_deg=0, scale=(1.5, 1.5), brightness=0, contrast=0, gamma=0)
    ds = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", jitter_px=0, augment=zoom)
    plain = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", jitter_px=0)
    item, ref = ds[1], plain[1]
    assert item["masks"].sum() / ref["masks"].sum() == pytest.approx(2.25, rel=0.05)
    mask, sdf = item["masks"][0, 0].numpy(), item["sdf"][0, 0].numpy()
    nh, nw = F.resized_hw((50, 50))
    recomputed = reference_frame_sdf(mask, 256)[:nh, :nw]
    assert np.median(np.abs(sdf[:nh, :nw] - recomputed)) < 4.0  # 1 px of 256 = 4 reference px
    assert np.mean((sdf[:nh, :nw] < 0) == (mask[:nh, :nw] > 0)) > 0.995
    light = Augmentation(flip_lr=0, rotate_deg=0, scale=(1.0, 1.0), brightness=0.2, contrast=0.3, gamma=0.3)
    bright = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", jitter_px=0, augment=light)[0]
    base = plain[0]
    for key in ("masks", "sdf", "boxes"):
        assert torch.equal(bright[key], base[key])
    assert not torch.equal(bright["image"], base["image"])
    assert bright["image"][:, 200:].abs().max() == 0  # the padding stays empty


def test_original_item_is_in_original_pixels(dataset_dir):
    ds = SegmentationDataset(dataset_dir / "manifest.csv", F, split="all", augment=True)
    original = ds.original(0)
    assert original.image.shape == (60, 80) and original.image.dtype == np.uint8
    assert original.masks.shape == (2, 60, 80) and original.masks.dtype == bool
    np.testing.assert_array_equal(original.boxes_orig[0], [11, 11, 29, 29])  # disc r=9 at (20, 20)
    assert original.sample_ids == ["a:l1", "a:l2"] and original.split == "train"
    assert ds.original(2).slice == 1 and ds.original(2).spacing == pytest.approx((0.8, 0.9))


def test_medsam_frame_and_object_subsampling(dataset_dir):
    ds = SegmentationDataset(dataset_dir / "manifest.csv", MEDSAM_FRAME, split="all", max_objects=1, seed=1)
    assert ds.jitter_px == 20.0
    item = ds[0]
    assert item["image"].shape == (3, 1024, 1024) and item["masks"].shape == (1, 1, 1024, 1024)
    assert len(item["sample_ids"]) == 1 and item["sample_ids"][0] in ("a:l1", "a:l2")
    frame_mask = item["masks"][0, 0].numpy()
    np.testing.assert_array_equal(item["sdf"][0, 0].numpy(), reference_frame_sdf(frame_mask, 1024))


def test_errors_name_the_problem(dataset_dir):
    with pytest.raises(MedsamFocusError, match="no rows in split 'val'"):
        SegmentationDataset(dataset_dir / "manifest.csv", F, split="val")
    manifest = load_manifest(dataset_dir / "manifest.csv")
    manifest.rows[0].label = "7"
    with pytest.raises(MedsamFocusError, match="sample 'a:l1': label 7 .* is empty"):
        SegmentationDataset(manifest, F, split="all")[0]
    manifest = load_manifest(dataset_dir / "manifest.csv")
    manifest.rows[1].patient_id = "someone else"
    with pytest.raises(MedsamFocusError, match="share image .* differ in patient_id"):
        SegmentationDataset(manifest, F, split="all")


def test_workers_with_worker_init_do_not_deadlock_after_opencv_ran_in_the_parent(dataset_dir):
    """Regression: cv2.setNumThreads in a forked worker hung once the parent had used OpenCV's pool."""
    import subprocess
    import sys

    script = f"""
import cv2, numpy as np, torch
from medsam_focus.data import SegmentationDataset, collate_objects, worker_init
from medsam_focus.models.frame import LITEMEDSAM_FRAME
cv2.resize(np.random.rand(1500, 1500).astype(np.float32), (2500, 2500), interpolation=cv2.INTER_CUBIC)
ds = SegmentationDataset({str(dataset_dir / "manifest.csv")!r}, LITEMEDSAM_FRAME, split="all", augment=True)
loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_objects,
                                     worker_init_fn=worker_init)
print(sum(b["images"].shape[0] for b in loader))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("4")
