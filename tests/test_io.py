"""medsam_focus.io: round trips keep pixels and geometry; bad inputs name the file."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import (
    Image,
    file_suffix,
    read_image,
    read_mask,
    same_geometry,
    write_dicom_series,
    write_image,
    write_mask,
)

# a non-trivial direction: 90 degree rotation in-plane
DIRECTION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _volume(seed=0, shape=(5, 12, 9)):
    return np.random.default_rng(seed).integers(-1024, 2000, shape).astype(np.int16)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_volume_round_trip_keeps_pixels_and_geometry(tmp_path, suffix):
    volume = _volume()
    path = write_image(
        volume, tmp_path / f"v{suffix}", spacing=(3.0, 0.5, 0.75), origin=(10.0, -5.0, 2.5), direction=DIRECTION
    )
    image = read_image(path)
    assert image.is_3d and image.array.dtype == np.int16
    np.testing.assert_array_equal(image.array, volume)
    np.testing.assert_allclose(image.spacing, (3.0, 0.5, 0.75), rtol=1e-6)
    np.testing.assert_allclose(image.origin, (10.0, -5.0, 2.5), atol=1e-5)
    np.testing.assert_allclose(image.direction, DIRECTION, atol=1e-6)
    # write back with the image as reference, read again: same again
    again = read_image(write_image(image.array, tmp_path / f"w{suffix}", reference=image))
    np.testing.assert_array_equal(again.array, volume)
    assert same_geometry(image, again) is None


def test_spacing_is_in_array_order_the_reverse_of_simpleitk(tmp_path):
    path = write_image(_volume(), tmp_path / "v.nii.gz", spacing=(3.0, 0.5, 0.75))
    assert sitk.ReadImage(str(path)).GetSpacing() == pytest.approx((0.75, 0.5, 3.0))
    assert read_image(path).spacing == pytest.approx((3.0, 0.5, 0.75))


def test_dicom_series_folder_reads_as_volume(tmp_path):
    volume = _volume(1, (4, 10, 8))
    write_dicom_series(volume, tmp_path / "series", spacing=(2.5, 0.7, 0.8), origin=(1.0, 2.0, 3.0))
    image = read_image(tmp_path / "series")
    assert image.is_3d
    np.testing.assert_array_equal(image.array, volume)
    np.testing.assert_allclose(image.spacing, (2.5, 0.7, 0.8), rtol=1e-5)
    np.testing.assert_allclose(image.origin, (1.0, 2.0, 3.0), atol=1e-4)
    # one file of the series is a 2D image with in-plane spacing
    single = read_image(tmp_path / "series" / "slice_0002.dcm")
    assert not single.is_3d and single.spacing == pytest.approx((0.7, 0.8))
    np.testing.assert_array_equal(single.array, volume[2])
    # a mask written against the series keeps its geometry
    mask = (volume > 0).astype(np.uint8)
    back = read_mask(write_mask(mask, tmp_path / "m.nii.gz", reference=image), reference=image)
    np.testing.assert_array_equal(back.array, mask)


def test_folder_with_two_series_is_refused(tmp_path):
    write_dicom_series(_volume(1, (2, 6, 6)), tmp_path / "s", patient_id="A")
    other = tmp_path / "other"
    write_dicom_series(_volume(2, (2, 6, 6)), other)
    for f in other.iterdir():
        os.replace(f, tmp_path / "s" / f"b_{f.name}")
    with pytest.raises(MedsamFocusError, match="2 DICOM series"):
        read_image(tmp_path / "s")


def test_png_grey_8_and_16_bit_round_trip(tmp_path):
    grey8 = np.random.default_rng(0).integers(0, 256, (13, 17), dtype=np.uint8)
    grey16 = np.random.default_rng(1).integers(0, 65536, (13, 17), dtype=np.uint16)
    a = read_image(write_image(grey8, tmp_path / "a.png"))
    b = read_image(write_image(grey16, tmp_path / "b.png"))
    assert a.array.dtype == np.uint8 and b.array.dtype == np.uint16
    np.testing.assert_array_equal(a.array, grey8)
    np.testing.assert_array_equal(b.array, grey16)
    assert a.spacing == (1.0, 1.0) and not a.is_3d


def test_rgb_channel_order_is_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    rgb[0, 0] = (10, 20, 30)
    path = write_image(rgb, tmp_path / "rgb.png")
    assert cv2.imread(str(path))[0, 0].tolist() == [30, 20, 10]  # OpenCV stores BGR
    image = read_image(path)
    assert image.array.shape == (4, 5, 3) and image.is_rgb
    np.testing.assert_array_equal(image.array, rgb)


def test_rgb_with_identical_channels_reads_as_grey(tmp_path):
    grey = np.random.default_rng(3).integers(0, 256, (6, 7), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), np.repeat(grey[:, :, None], 3, axis=2))
    image = read_image(tmp_path / "g.png")
    assert image.array.ndim == 2
    np.testing.assert_array_equal(image.array, grey)


def test_rgba_is_composited_over_black(tmp_path):
    bgra = np.zeros((2, 2, 4), dtype=np.uint8)
    bgra[..., :3] = (0, 0, 200)  # red in BGR
    bgra[..., 3] = [[255, 0], [51, 255]]
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    image = read_image(tmp_path / "a.png")
    assert image.array.shape == (2, 2, 3)
    assert image.array[0, 0].tolist() == [200, 0, 0]
    assert image.array[0, 1].tolist() == [0, 0, 0]
    assert image.array[1, 0].tolist() == [40, 0, 0]  # 200 * 51 / 255


def test_float_tiff_and_multipage_tiff(tmp_path):
    values = np.random.default_rng(4).normal(size=(5, 6)).astype(np.float32)
    image = read_image(write_image(values, tmp_path / "f.tif"))
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, values)
    pages = [np.full((4, 5), k * 10, dtype=np.uint16) for k in range(3)]
    cv2.imwritemulti(str(tmp_path / "stack.tif"), pages)
    stack = read_image(tmp_path / "stack.tif")
    assert stack.is_3d and stack.array.shape == (3, 4, 5)
    assert stack.array[:, 0, 0].tolist() == [0, 10, 20]


def test_medsam_npz_spacing_is_reversed_to_array_order(tmp_path):
    imgs = np.random.default_rng(5).integers(0, 256, (3, 8, 9), dtype=np.uint8)
    gts = (imgs > 128).astype(np.uint8)
    np.savez_compressed(tmp_path / "case.npz", imgs=imgs, gts=gts, spacing=np.array([0.8, 0.7, 2.5]))
    image = read_image(tmp_path / "case.npz")
    mask = read_mask(tmp_path / "case.npz", reference=image)
    assert image.is_3d and image.spacing == pytest.approx((2.5, 0.7, 0.8))
    np.testing.assert_array_equal(mask.array, gts)
    rgb = np.random.default_rng(6).integers(0, 256, (9, 10, 3), dtype=np.uint8)
    np.savez(tmp_path / "two_d.npz", imgs=rgb, gts=np.zeros((9, 10), np.uint8))
    assert not read_image(tmp_path / "two_d.npz").is_3d


def test_write_mask_png_and_label_depth(tmp_path):
    labels = np.zeros((5, 6), dtype=np.int32)
    labels[1, 1], labels[2, 2] = 3, 300
    back = read_mask(write_mask(labels, tmp_path / "m.png"))
    assert back.array.dtype == np.int32  # labels above 255 are kept (16-bit PNG)
    np.testing.assert_array_equal(back.array, labels)
    boolean = read_mask(write_mask(labels > 0, tmp_path / "b.png"))
    np.testing.assert_array_equal(boolean.array, (labels > 0).astype(np.uint8))


def test_write_mask_checks_reference_and_format(tmp_path):
    reference = read_image(write_image(_volume(), tmp_path / "v.nii.gz"))
    with pytest.raises(MedsamFocusError, match="differs from the reference"):
        write_mask(np.zeros((5, 12, 8), np.uint8), tmp_path / "m.nii.gz", reference=reference)
    with pytest.raises(MedsamFocusError, match="3D mask"):
        write_mask(np.zeros((5, 12, 9), np.uint8), tmp_path / "m.png")
    with pytest.raises(MedsamFocusError, match="negative"):
        write_mask(-np.ones((3, 3), np.int16), tmp_path / "n.png")


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = write_mask(np.ones((4, 4, 4), np.uint8), tmp_path / "mask.nii.gz")
    before = target.read_bytes()

    def broken_write(image, name, useCompression=False):
        with open(name, "wb") as handle:
            handle.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(MedsamFocusError, match="disk full"):
        write_mask(np.zeros((4, 4, 4), np.uint8), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("bad.png", b"\x89PNG not really", "could not be decoded"),
        ("empty.png", b"", "empty"),
        ("bad.nii.gz", b"\x1f\x8b\x08 truncated gzip", "could not be read"),
        ("image.xyz", b"data", "unknown file type"),
    ],
)
def test_corrupt_or_unknown_files_name_the_file(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MedsamFocusError, match=pattern) as error:
        read_image(path)
    assert name in str(error.value)


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(MedsamFocusError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "folder").mkdir()
    with pytest.raises(MedsamFocusError, match="no DICOM series"):
        read_image(tmp_path / "folder")


def test_read_mask_rejects_non_labels_and_mismatches(tmp_path):
    write_image(np.full((4, 4), 0.5, np.float32), tmp_path / "soft.tif")
    with pytest.raises(MedsamFocusError, match="non-integer"):
        read_mask(tmp_path / "soft.tif")
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    write_image(colour, tmp_path / "colour.png")
    with pytest.raises(MedsamFocusError, match="colour channels"):
        read_mask(tmp_path / "colour.png")
    image = read_image(write_image(_volume(), tmp_path / "v.nii.gz", spacing=(3, 1, 1)))
    write_mask(np.zeros((5, 12, 9), np.uint8), tmp_path / "m.nii.gz")  # spacing 1, 1, 1
    with pytest.raises(MedsamFocusError, match=r"m\.nii\.gz does not match image .*v\.nii\.gz: spacing"):
        read_mask(tmp_path / "m.nii.gz", reference=image)


def test_helpers():
    assert file_suffix("a/b/CASE.NII.GZ") == ".nii.gz"
    assert file_suffix("x.png") == ".png"
    built = Image.from_array(np.zeros((3, 4, 5)), spacing=(2, 1, 1))
    assert built.is_3d and built.spatial_shape == (3, 4, 5)
