"""Signed distance maps: the exact checks of FOCUSSDF.md, scipy agreement, shapes and kinds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medsam_focus.errors import MedsamFocusError
from medsam_focus.sdf import (
    REFERENCE_FRAME,
    distance_to_nearest,
    grid_diagonal,
    reference_frame_sdf,
    signed_distance,
)


def random_blobs(rng: np.random.Generator, shape: tuple[int, int], count: int = 4) -> np.ndarray:
    """Union of a few random ellipses, never empty and never full."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(count):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ay, ax = rng.uniform(1.5, shape[0] / 3), rng.uniform(1.5, shape[1] / 3)
        mask |= ((rows - cy) / ay) ** 2 + ((cols - cx) / ax) ** 2 <= 1
    mask[0, 0], mask[-1, -1] = True, False
    return mask


def scipy_phi(mask: np.ndarray, spacing=(1.0, 1.0)) -> np.ndarray:
    """The FOCUSSDF.md definition written with scipy's exact EDT (float64)."""
    h = 0.5 * min(spacing)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    return np.where(mask, -(inside - h), outside - h)


@pytest.mark.parametrize("k", [1, 3, 7, 11])
def test_half_plane_is_exact(k):
    mask = np.zeros((9, 12), bool)
    mask[:, :k] = True
    phi = signed_distance(mask)
    expected = np.arange(12) - k + 0.5
    assert phi.dtype == np.float32
    np.testing.assert_array_equal(phi, np.broadcast_to(expected, (9, 12)))
    # Same along rows.
    np.testing.assert_array_equal(signed_distance(mask.T.copy()), phi.T)


@pytest.mark.parametrize("radius", [3.0, 7.5, 20.0])
def test_disk_matches_analytic_distance_within_one_pixel(radius):
    size = 64
    centre = (31, 30)
    rows, cols = np.mgrid[:size, :size]
    distance = np.hypot(rows - centre[0], cols - centre[1])
    mask = distance <= radius
    phi = signed_distance(mask)
    assert np.abs(phi - (distance - radius)).max() <= 1.0
    assert phi[centre] == pytest.approx(-(radius_floor_distance(mask, centre) - 0.5))


def radius_floor_distance(mask: np.ndarray, centre: tuple[int, int]) -> float:
    """Distance from the centre pixel to the nearest outside pixel centre, by brute force."""
    rows, cols = np.nonzero(~mask)
    return float(np.min(np.hypot(rows - centre[0], cols - centre[1])))


def test_empty_and_full_masks_are_plus_and_minus_the_diagonal():
    empty = np.zeros((30, 40), bool)
    np.testing.assert_array_equal(signed_distance(empty), np.full((30, 40), 50.0, np.float32))
    np.testing.assert_array_equal(signed_distance(~empty), np.full((30, 40), -50.0, np.float32))
    # In spacing units: 30 rows of 2.0 and 40 columns of 0.75 -> diagonal 60 x 30.
    expected = math.hypot(60.0, 30.0)
    assert grid_diagonal((30, 40), (2.0, 0.75)) == pytest.approx(expected)
    phi = signed_distance(empty, spacing=(2.0, 0.75))
    assert np.all(np.isfinite(phi))
    np.testing.assert_allclose(phi, expected, rtol=1e-6)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.7, 1.3), (3.0, 0.5), (0.25, 0.25)])
def test_matches_scipy_with_sampling(spacing):
    rng = np.random.default_rng(7)
    for _ in range(5):
        mask = random_blobs(rng, (47, 61))
        phi = signed_distance(mask, spacing=spacing)
        expected = scipy_phi(mask, spacing)
        np.testing.assert_allclose(phi, expected, rtol=1e-6, atol=1e-5)


def test_sign_reproduces_the_mask_and_boundary_pixels_get_half_the_spacing():
    rng = np.random.default_rng(3)
    for spacing in [(1.0, 1.0), (0.6, 2.0)]:
        mask = rng.random((40, 50)) < 0.4
        phi = signed_distance(mask, spacing=spacing)
        np.testing.assert_array_equal(phi < 0, mask)
        assert not np.any(phi == 0)
        # A pixel with a 4-neighbour of the other label along the finer axis sits at +-h.
        h = 0.5 * min(spacing)
        fine_axis = int(np.argmin(spacing))
        touching = mask != np.roll(mask, 1, axis=fine_axis)
        touching[(slice(None), 0) if fine_axis == 1 else (0, slice(None))] = False
        np.testing.assert_allclose(np.abs(phi[touching]), h, rtol=1e-6)


def test_batched_shapes_and_kinds_agree_with_single_images():
    rng = np.random.default_rng(11)
    batch = np.stack([random_blobs(rng, (20, 24)) for _ in range(3)] + [np.zeros((20, 24), bool)])
    singles = np.stack([signed_distance(image) for image in batch])
    np.testing.assert_array_equal(signed_distance(batch), singles)
    np.testing.assert_array_equal(signed_distance(batch[:, None]), singles[:, None])

    tensor = torch.from_numpy(batch[:, None].astype(np.float32)).requires_grad_(True)
    phi = signed_distance(tensor)
    assert isinstance(phi, torch.Tensor)
    assert phi.dtype == torch.float32 and phi.device == tensor.device and phi.shape == tensor.shape
    np.testing.assert_array_equal(phi.numpy(), singles[:, None])
    half = signed_distance(torch.from_numpy(batch).to(torch.bfloat16))
    np.testing.assert_array_equal(half.numpy(), singles)


@pytest.mark.parametrize(
    "convert",
    [
        lambda m: m,
        lambda m: m.astype(np.uint8),
        lambda m: m.astype(np.uint8) * 255,
        lambda m: m.astype(np.int64),
        lambda m: m.astype(np.float64),
    ],
)
def test_mask_dtypes(convert):
    mask = random_blobs(np.random.default_rng(5), (16, 16))
    np.testing.assert_array_equal(signed_distance(convert(mask)), signed_distance(mask))


def test_reference_frame_scaling():
    mask = np.zeros((256, 256), bool)
    mask[100:140, 90:200] = True
    phi_ref = reference_frame_sdf(mask, 256)
    assert phi_ref.dtype == np.float32
    np.testing.assert_allclose(phi_ref, signed_distance(mask) * REFERENCE_FRAME / 256, rtol=1e-7)
    # Default frame: the longer side of the mask (a cropped, non-square loss frame).
    cropped = mask[:200]
    np.testing.assert_allclose(reference_frame_sdf(cropped), signed_distance(cropped) * 1024 / 256)
    tensor = torch.from_numpy(mask)[None, None]
    out = reference_frame_sdf(tensor, 1024)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(out[0, 0].numpy(), signed_distance(mask))


def test_user_errors_raise_the_project_error():
    mask = np.zeros((8, 8), bool)
    with pytest.raises(MedsamFocusError, match="spacing"):
        signed_distance(mask, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(MedsamFocusError, match="positive"):
        signed_distance(mask, spacing=(1.0, 0.0))
    with pytest.raises(MedsamFocusError, match="shape"):
        signed_distance(np.zeros((2, 3, 8, 8)))
    with pytest.raises(MedsamFocusError, match="shape"):
        signed_distance(np.zeros(8))
    with pytest.raises(MedsamFocusError, match="frame"):
        reference_frame_sdf(mask, 4)
    with pytest.raises(MedsamFocusError, match="frame_size"):
        reference_frame_sdf(mask, 0)
    with pytest.raises(MedsamFocusError, match="numpy array or torch tensor"):
        signed_distance("mask.png")


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.8, 1.1)])
def test_distance_to_nearest_matches_scipy_in_3d(spacing):
    rng = np.random.default_rng(2)
    targets = rng.random((9, 17, 13)) < 0.02
    targets[4, 8, 6] = True
    expected = ndimage.distance_transform_edt(~targets, sampling=spacing)
    result = distance_to_nearest(targets, spacing)
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-6)
    assert np.all(np.isinf(distance_to_nearest(np.zeros((3, 4), bool))))


def test_distance_to_nearest_is_exact_on_the_unit_lattice():
    targets = np.zeros((300, 300), bool)
    targets[[3, 150, 290], [7, 151, 10]] = True
    expected = ndimage.distance_transform_edt(~targets)
    np.testing.assert_array_equal(distance_to_nearest(targets), expected)
