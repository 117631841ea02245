"""Boundary metrics: hand-computed cases, empty-mask rules, and agreement with DeepMind's package."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from medsam_focus.errors import MedsamFocusError
from medsam_focus.metrics import (
    EMPTY_RULES,
    batch_segmentation_metrics,
    contour_length_table,
    count_empty_rules,
    segmentation_metrics,
    surface_area_table,
    surface_distances,
)

# --- the reference library ---------------------------------------------------------------------
# surface-distance 0.1 (DeepMind) predates NumPy 2: it uses ``np.Inf`` (removed in NumPy 2.0)
# where a mask is empty, and the deprecated ``scipy.ndimage.filters``/``morphology`` namespaces
# (still importable, with a DeprecationWarning). Only the test side is adapted: the fixture
# provides ``np.Inf`` for the duration of a test and silences the namespace warnings.


@pytest.fixture
def deepmind(monkeypatch):
    if not hasattr(np, "Inf") or "Inf" not in vars(np):
        monkeypatch.setattr(np, "Inf", np.inf, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import surface_distance

        yield surface_distance


def reference_metrics(sd, pred: np.ndarray, gt: np.ndarray, spacing, tolerance: float) -> dict[str, float]:
    """Our metric definitions evaluated with DeepMind's functions (ASSD pooled over both surfaces)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        distances = sd.compute_surface_distances(gt, pred, list(spacing))
        weight_gt, weight_pred = distances["surfel_areas_gt"], distances["surfel_areas_pred"]
        pooled = np.sum(distances["distances_gt_to_pred"] * weight_gt) + np.sum(
            distances["distances_pred_to_gt"] * weight_pred
        )
        return {
            "dice": float(sd.compute_dice_coefficient(gt, pred)),
            "hd95": float(sd.compute_robust_hausdorff(distances, 95)),
            "assd": float(pooled / (weight_gt.sum() + weight_pred.sum())),
            "nsd": float(sd.compute_surface_dice_at_tolerance(distances, tolerance)),
        }


# --- random shapes -----------------------------------------------------------------------------


def ellipse(rng, shape):
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    cy, cx = rng.uniform(0.3, 0.7) * shape[0], rng.uniform(0.3, 0.7) * shape[1]
    a, b = rng.uniform(4, shape[0] / 3), rng.uniform(4, shape[1] / 3)
    angle = rng.uniform(0, np.pi)
    u = (rows - cy) * np.cos(angle) + (cols - cx) * np.sin(angle)
    v = -(rows - cy) * np.sin(angle) + (cols - cx) * np.cos(angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def ring(rng, shape):
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    cy, cx = rng.uniform(0.35, 0.65) * shape[0], rng.uniform(0.35, 0.65) * shape[1]
    outer = rng.uniform(8, min(shape) / 3)
    inner = outer - rng.uniform(2, outer / 2)
    radius = np.hypot(rows - cy, cols - cx)
    return (radius <= outer) & (radius >= inner)


def blobs(rng, shape):
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    mask = np.zeros(shape, bool)
    for _ in range(rng.integers(2, 6)):
        cy, cx = rng.uniform(0.1, 0.9) * shape[0], rng.uniform(0.1, 0.9) * shape[1]
        mask |= np.hypot(rows - cy, cols - cx) <= rng.uniform(2, min(shape) / 7)
    return mask


def vessel(rng, shape):
    """A thin wavy tube, 1 to 3 pixels wide, sometimes branching."""
    mask = np.zeros(shape, bool)
    for _ in range(rng.integers(1, 3)):
        t = np.linspace(0, 1, 4 * max(shape))
        rows = rng.uniform(0.2, 0.8) * shape[0] + rng.uniform(3, shape[0] / 5) * np.sin(
            2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 6)
        )
        cols = 0.05 * shape[1] + 0.9 * shape[1] * t
        if rng.random() < 0.5:
            rows, cols = cols * shape[0] / shape[1], rows * shape[1] / shape[0]
        inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
        mask[rows[inside].astype(int), cols[inside].astype(int)] = True
    width = rng.integers(0, 2)
    return ndimage.binary_dilation(mask, iterations=int(width)) if width else mask


SHAPES = (ellipse, ring, blobs, vessel)


def perturbed(rng, gt):
    """A plausible prediction for ``gt``: shifted, grown, shrunk, noisy, or another shape."""
    choice = rng.integers(0, 5)
    if choice == 0:
        return np.roll(gt, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
    if choice == 1:
        return ndimage.binary_dilation(gt, iterations=int(rng.integers(1, 4)))
    if choice == 2:
        shrunk = ndimage.binary_erosion(gt, iterations=int(rng.integers(1, 3)))
        return shrunk if shrunk.any() else gt
    if choice == 3:
        edge = gt ^ ndimage.binary_erosion(gt)
        flip = edge & (rng.random(gt.shape) < 0.3)
        noise = rng.random(gt.shape) < 0.002
        return (gt ^ flip) | noise
    return SHAPES[rng.integers(0, len(SHAPES))](rng, gt.shape)


def random_pairs(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < count:
        shape = (int(rng.integers(40, 120)), int(rng.integers(40, 120)))
        gt = SHAPES[len(pairs) % len(SHAPES)](rng, shape)
        pred = perturbed(rng, gt)
        if not gt.any() or not pred.any():
            continue
        spacing = (1.0, 1.0) if len(pairs) % 3 == 0 else tuple(rng.uniform(0.3, 2.5, 2))
        pairs.append((pred, gt, spacing))
    return pairs


# --- hand-computed cases -----------------------------------------------------------------------


def single_pixels(offset: int, shape=(9, 15)):
    gt = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    gt[4, 4] = True
    pred[4, 4 + offset] = True
    return pred, gt


def test_two_single_pixels_by_hand():
    # Each pixel's contour is four corner cuts of equal length. From the pixel 5 columns away,
    # two corners are 4 columns away and two are 5: HD95 = 5, ASSD = (4 + 4 + 5 + 5) / 4.
    pred, gt = single_pixels(5)
    result = segmentation_metrics(pred, gt)
    assert result == {"dice": 0.0, "iou": 0.0, "hd95": 5.0, "assd": 4.5, "nsd": 0.0, "empty_rule": "none"}
    # Rows 2.0 apart, columns 0.5 apart: distances 2.0 and 2.5; half of each contour lies
    # within a tolerance of 2.0 (<= counts).
    result = segmentation_metrics(pred, gt, spacing=(2.0, 0.5), tolerance=2.0)
    assert (result["hd95"], result["assd"], result["nsd"]) == (2.5, 2.25, 0.5)
    # The same spacing read in the wrong axis order gives a four times larger distance.
    assert segmentation_metrics(pred, gt, spacing=(0.5, 2.0))["hd95"] == 10.0


def test_square_shifted_by_one_pixel_by_hand():
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    pred = np.roll(gt, 1, axis=1)
    # Contour of a 10 x 10 square: 36 unit edge elements and 4 corner cuts of sqrt(2)/2.
    # One pixel to the right, the left side (9 units + 2 cuts) and the 9 inner points of the
    # right side are 1 away and everything else 0: exactly half the length, in both directions.
    result = segmentation_metrics(pred, gt)
    assert result["dice"] == pytest.approx(2 * 90 / 200)
    assert result["iou"] == pytest.approx(90 / 110)
    assert result["hd95"] == 1.0
    assert result["assd"] == pytest.approx(0.5, abs=1e-12)
    assert result["nsd"] == 1.0
    assert segmentation_metrics(pred, gt, tolerance=0.5)["nsd"] == pytest.approx(0.5, abs=1e-12)


def test_identical_masks():
    gt = ellipse(np.random.default_rng(1), (50, 60))
    assert segmentation_metrics(gt, gt, spacing=(0.8, 1.7)) == {
        "dice": 1.0,
        "iou": 1.0,
        "hd95": 0.0,
        "assd": 0.0,
        "nsd": 1.0,
        "empty_rule": "none",
    }


def test_percentile_is_the_first_distance_reaching_95_percent_of_the_weight():
    from medsam_focus.metrics import _percentile

    rng = np.random.default_rng(0)
    # 20 equal weights: 19 elements at distance 0 carry exactly 95 %, so the 95th percentile
    # is 0; with 18 of them it is the far distance. Input order does not matter.
    near_19 = np.array([0.0] * 19 + [3.0])
    near_18 = np.array([0.0] * 18 + [3.0, 3.0])
    for distances, expected in ((near_19, 0.0), (near_18, 3.0)):
        order = rng.permutation(20)
        assert _percentile(distances[order], np.full(20, 0.5), 95.0) == expected
    # Weights, not counts, decide: one far element carrying 6 % of the length wins.
    assert _percentile(np.array([0.0, 1.0, 7.0]), np.array([0.5, 0.44, 0.06]), 95.0) == 7.0
    assert _percentile(np.array([0.0, 1.0, 7.0]), np.array([0.5, 0.46, 0.04]), 95.0) == 1.0


def test_2d_masks_are_not_one_slice_volumes():
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    pred = np.roll(gt, 3, axis=1)
    flat = segmentation_metrics(pred, gt)
    slab = segmentation_metrics(pred[None], gt[None], spacing=(1.0, 1.0, 1.0))
    assert flat["nsd"] != pytest.approx(slab["nsd"])


def test_lookup_tables_by_hand():
    table = contour_length_table((2.0, 0.5))
    corner_cut = 0.5 * math.hypot(2.0, 0.5)
    assert table[0] == 0 and table[15] == 0
    assert table[0b0001] == pytest.approx(corner_cut) and table[0b0111] == pytest.approx(corner_cut)
    assert table[0b0011] == 0.5  # top pair: the contour crosses the cell along a row
    assert table[0b0101] == 2.0  # left pair: along a column
    assert table[0b1001] == pytest.approx(2 * corner_cut)
    areas = surface_area_table((1.0, 1.0, 1.0))
    assert areas[0] == 0 and areas[255] == 0
    # One corner: an equilateral triangle on three half-edges; a face pair: a unit square
    # halfway through the cell; two adjacent corners: a 1 x sqrt(1/2) rectangle.
    assert areas[0b00000001] == pytest.approx(math.sqrt(3) / 8)
    assert areas[0b00001111] == pytest.approx(1.0)
    assert areas[0b00000011] == pytest.approx(math.sqrt(0.5))
    # A code and its complement share one surface.
    for code in range(256):
        assert areas[code] == pytest.approx(areas[255 - code])


def test_lookup_tables_match_deepmind(deepmind):
    from surface_distance import lookup_tables

    # DeepMind numbers the cell corners the other way round (bit 2^(n-1-k) for our bit 2^k).
    reverse4 = [int(f"{code:04b}"[::-1], 2) for code in range(16)]
    reverse8 = [int(f"{code:08b}"[::-1], 2) for code in range(256)]
    for spacing in [(1.0, 1.0), (0.7, 1.9)]:
        expected = lookup_tables.create_table_neighbour_code_to_contour_length(spacing)[reverse4]
        np.testing.assert_allclose(contour_length_table(spacing), expected, rtol=1e-14)
    for spacing in [(1.0, 1.0, 1.0), (2.0, 0.5, 0.9)]:
        expected = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)[reverse8]
        np.testing.assert_allclose(surface_area_table(spacing), expected, rtol=1e-12, atol=1e-14)


# --- empty masks -------------------------------------------------------------------------------


def test_empty_mask_rules():
    shape, spacing = (30, 40), (2.0, 0.5)
    diagonal = math.hypot(60.0, 20.0)
    empty = np.zeros(shape, bool)
    full = ellipse(np.random.default_rng(0), shape)
    both = segmentation_metrics(empty, empty, spacing)
    assert both == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0, "nsd": 1.0, "empty_rule": "both_empty"}
    missed = segmentation_metrics(empty, full, spacing)
    assert missed == {
        "dice": 0.0,
        "iou": 0.0,
        "hd95": pytest.approx(diagonal),
        "assd": pytest.approx(diagonal),
        "nsd": 0.0,
        "empty_rule": "pred_empty",
    }
    spurious = segmentation_metrics(full, empty, spacing)
    assert spurious["empty_rule"] == "gt_empty"
    assert (spurious["dice"], spurious["nsd"], spurious["hd95"]) == (0.0, 0.0, pytest.approx(diagonal))
    volume = segmentation_metrics(np.zeros((4, 5, 6)), np.ones((4, 5, 6)), spacing=(3.0, 1.0, 1.0))
    assert volume["hd95"] == pytest.approx(math.sqrt(12.0**2 + 5**2 + 6**2))


def test_reference_library_gives_inf_or_nan_where_we_define_a_value(deepmind):
    empty = np.zeros((10, 10), bool)
    gt = empty.copy()
    gt[3:6, 3:6] = True
    distances = deepmind.compute_surface_distances(gt, empty, [1.0, 1.0])
    assert math.isinf(deepmind.compute_robust_hausdorff(distances, 95))
    assert math.isfinite(segmentation_metrics(empty, gt)["hd95"])


# --- agreement with DeepMind's surface-distance ------------------------------------------------


def test_agreement_with_deepmind_on_random_shapes(deepmind):
    pairs = random_pairs(240)
    worst = dict.fromkeys(("dice", "hd95", "assd", "nsd"), 0.0)
    for pred, gt, spacing in pairs:
        ours = segmentation_metrics(pred, gt, spacing=spacing, tolerance=2.0)
        reference = reference_metrics(deepmind, pred, gt, spacing, 2.0)
        for name in worst:
            worst[name] = max(worst[name], abs(ours[name] - reference[name]))
        intersection, union = np.count_nonzero(pred & gt), np.count_nonzero(pred | gt)
        assert ours["iou"] == intersection / union
    assert worst["dice"] <= 1e-15
    assert worst["nsd"] <= 1e-6
    assert worst["hd95"] <= 1e-4
    assert worst["assd"] <= 1e-4


def test_agreement_with_deepmind_in_3d(deepmind):
    rng = np.random.default_rng(4)
    for index in range(8):
        shape = tuple(int(n) for n in rng.integers(8, 24, 3))
        gt = ndimage.binary_opening(rng.random(shape) < 0.5, iterations=2)
        pred = ndimage.binary_dilation(gt) if index % 2 else np.roll(gt, 1, axis=index % 3)
        if not gt.any():
            continue
        spacing = tuple(rng.uniform(0.4, 3.0, 3))
        ours = segmentation_metrics(pred, gt, spacing=spacing, tolerance=1.5)
        reference = reference_metrics(deepmind, pred, gt, spacing, 1.5)
        for name, value in reference.items():
            assert ours[name] == pytest.approx(value, abs=1e-4 if name in ("hd95", "assd") else 1e-9), name


# --- anisotropic volume read from disk ----------------------------------------------------------


def test_anisotropic_volume_read_through_io_gets_array_order_spacing(tmp_path):
    import SimpleITK as sitk

    from medsam_focus import io as mio

    gt = np.zeros((8, 14, 14), np.uint8)
    gt[2:6, 2:12, 2:12] = 1  # 4 slices of 10 x 10
    pred = np.roll(gt, 1, axis=0)  # one slice higher
    paths = []
    for name, array in (("gt", gt), ("pred", pred)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.0, 3.0))  # SimpleITK order: x (cols), y (rows), z (slices)
        paths.append(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(image, str(paths[-1]))
    images = [mio.read_image(path) for path in paths]
    gt_read, pred_read = (image.array for image in images)
    spacing = tuple(images[0].spacing)  # the io layer converts to array order: (slices, rows, cols)
    assert spacing == (3.0, 1.0, 1.0)
    result = segmentation_metrics(pred_read, gt_read, spacing=spacing, tolerance=2.0)
    # By hand: overlap 3 of 4 slices -> Dice 2 * 300 / 800, IoU 300 / 500. The bottom face of
    # the ground truth and the top face of the prediction (about 15 % of each surface) lie one
    # slice, 3 mm, from the other surface; nothing lies farther: HD95 = 3 mm.
    assert result["dice"] == pytest.approx(0.75)
    assert result["iou"] == pytest.approx(0.6)
    assert result["hd95"] == pytest.approx(3.0)
    assert 0 < result["nsd"] < 0.9
    # Reading the spacing in SimpleITK's order would put the 3 mm along the columns.
    sitk_order = sitk.ReadImage(str(paths[0])).GetSpacing()
    assert segmentation_metrics(pred_read, gt_read, spacing=sitk_order)["hd95"] == pytest.approx(1.0)


# --- batch path ----------------------------------------------------------------------------------


def test_batch_equals_single_calls_including_empty_cases():
    rng = np.random.default_rng(9)
    shape = (64, 64)
    gts = [ellipse(rng, shape), ring(rng, shape), vessel(rng, shape), np.zeros(shape, bool), blobs(rng, shape)]
    preds = [perturbed(rng, gts[0]), np.zeros(shape, bool), perturbed(rng, gts[2]), np.zeros(shape, bool)]
    preds.append(blobs(rng, shape))
    gts.append(np.zeros(shape, bool))
    preds.append(ellipse(rng, shape))
    spacing = (0.9, 1.4)
    batch = batch_segmentation_metrics(np.stack(preds), np.stack(gts), spacing=spacing, tolerance=1.5)
    assert set(batch) == {"dice", "iou", "hd95", "assd", "nsd", "empty_rule"}
    for index, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        single = segmentation_metrics(pred, gt, spacing=spacing, tolerance=1.5)
        for name, value in single.items():
            assert batch[name][index] == value, (index, name)
    assert batch["dice"].dtype == np.float64
    assert list(batch["empty_rule"]) == ["none", "pred_empty", "none", "both_empty", "none", "gt_empty"]
    assert count_empty_rules(batch["empty_rule"]) == {"none": 3, "both_empty": 1, "pred_empty": 1, "gt_empty": 1}
    for name in ("dice", "iou", "hd95", "assd", "nsd"):
        assert np.all(np.isfinite(batch[name]))


def test_mask_dtypes_are_accepted():
    pred, gt = single_pixels(3)
    expected = segmentation_metrics(pred, gt)
    assert segmentation_metrics(pred.astype(np.uint8) * 255, gt.astype(np.int32)) == expected
    assert segmentation_metrics(pred.astype(np.float32), gt.astype(np.float64)) == expected


def test_user_errors_raise_the_project_error():
    pred, gt = single_pixels(3)
    with pytest.raises(MedsamFocusError, match="shape"):
        segmentation_metrics(pred, gt[:-1])
    with pytest.raises(MedsamFocusError, match="spacing"):
        segmentation_metrics(pred, gt, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(MedsamFocusError, match="tolerance"):
        segmentation_metrics(pred, gt, tolerance=-1)
    with pytest.raises(MedsamFocusError, match="shape"):
        segmentation_metrics(pred[0], gt[0])
    with pytest.raises(MedsamFocusError, match=r"\(N, H, W\)"):
        batch_segmentation_metrics(pred, gt)
    with pytest.raises(MedsamFocusError, match="non-empty"):
        surface_distances(np.zeros_like(pred), gt)
    with pytest.raises(MedsamFocusError, match="empty_rule"):
        count_empty_rules(["none", "half_empty"])
    assert set(count_empty_rules([])) == set(EMPTY_RULES)
