"""Boxes from masks, jitter, frame conversions, validation and prompt files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsam_focus.errors import MedsamFocusError
from medsam_focus.models.frame import LITEMEDSAM_FRAME, MEDSAM_FRAME, SAM_FRAME
from medsam_focus.prompts import (
    box_from_mask,
    boxes_from_components,
    jitter_box,
    load_prompt_file,
    parse_box_argument,
    to_model_frame,
    to_original_frame,
    validate_boxes,
)


def test_box_from_mask_is_inclusive_x_column_y_row():
    mask = np.zeros((20, 30), bool)
    mask[4:9, 10:25] = True  # rows 4..8, columns 10..24
    np.testing.assert_array_equal(box_from_mask(mask), [10, 4, 24, 8])


def test_box_from_empty_mask_is_a_clear_error():
    with pytest.raises(MedsamFocusError, match="empty mask"):
        box_from_mask(np.zeros((5, 5)))


def test_boxes_per_component_sorted_by_size_and_filtered():
    mask = np.zeros((40, 40), np.uint8)
    mask[2:5, 2:5] = 1  # 9 px
    mask[10:20, 20:30] = 1  # 100 px
    mask[30:31, 30:31] = 1  # 1 px
    boxes = boxes_from_components(mask, min_size=5)
    np.testing.assert_array_equal(boxes, [[20, 10, 29, 19], [2, 2, 4, 4]])
    assert boxes_from_components(mask, min_size=1000).shape == (0, 4)


def test_diagonal_neighbours_join_with_8_but_not_4_connectivity():
    mask = np.zeros((6, 6), np.uint8)
    mask[1, 1] = mask[2, 2] = 1
    assert len(boxes_from_components(mask, connectivity=8)) == 1
    assert len(boxes_from_components(mask, connectivity=4)) == 2


def test_jitter_only_moves_sides_outward_within_bounds_and_is_seeded():
    box = np.array([100, 100, 200, 200], np.float32)
    rng = np.random.default_rng(0)
    out = np.stack([jitter_box(box, 20, (1024, 1024), rng) for _ in range(500)])
    assert np.all(out[:, :2] <= 100) and np.all(out[:, :2] >= 80)
    assert np.all(out[:, 2:] >= 200) and np.all(out[:, 2:] <= 220)
    # every shift 0..20 is reachable (uniform integers, as MedSAM's randint)
    assert set(np.unique(100 - out[:, 0]).astype(int)) == set(range(21))
    again = np.stack([jitter_box(box, 20, (1024, 1024), np.random.default_rng(0)) for _ in range(1)])
    np.testing.assert_array_equal(again[0], out[0])
    edge = jitter_box(np.array([3, 2, 1020, 1022], np.float32), 20, (1024, 1024), np.random.default_rng(1))
    assert edge[0] >= 0 and edge[1] >= 0 and edge[2] <= 1024 and edge[3] <= 1024


def test_frame_conversions_follow_each_family_rule():
    box = np.array([[30, 60, 90, 120]], np.float32)
    # MedSAM stretches: x by 1024/W, y by 1024/H
    np.testing.assert_allclose(
        to_model_frame(box, MEDSAM_FRAME.box_scale((300, 200))),
        [[30 * 1024 / 200, 60 * 1024 / 300, 90 * 5.12, 120 * 1024 / 300]],
    )
    # LiteMedSAM: 256 / longest side, both axes
    np.testing.assert_allclose(to_model_frame(box, LITEMEDSAM_FRAME.box_scale((300, 200))), box * 256 / 300)
    # SAM: resized side / original side (rounded resized size)
    sy, sx = SAM_FRAME.box_scale((300, 200))
    assert SAM_FRAME.resized_hw((300, 200)) == (1024, 683)
    assert sy == pytest.approx(1024 / 300) and sx == pytest.approx(683 / 200)
    for frame in (MEDSAM_FRAME, LITEMEDSAM_FRAME, SAM_FRAME):
        s = frame.box_scale((300, 200))
        np.testing.assert_allclose(to_original_frame(to_model_frame(box, s), s), box, rtol=1e-6)


@pytest.mark.parametrize(
    "box, message",
    [
        ([10, 10, 5, 20], "inverted"),
        ([10, 10, 10, 20], "zero area"),
        ([-1, 0, 10, 10], "outside the image"),
        ([0, 0, 10, 61], "outside the image"),
        ([0, 0, float("nan"), 5], "non-finite"),
        ([1, 2, 3], "4 numbers"),
    ],
)
def test_validate_boxes_rejects_bad_boxes_with_a_clear_message(box, message):
    with pytest.raises(MedsamFocusError, match=message):
        validate_boxes(box, (60, 80), source="--box")


def test_validate_boxes_accepts_boxes_touching_the_border():
    out = validate_boxes([[0, 0, 80, 60], [1, 2, 3, 4]], (60, 80))
    assert out.dtype == np.float32 and out.shape == (2, 4)


def test_parse_box_argument():
    assert parse_box_argument("1, 2,3.5,4") == [1, 2, 3.5, 4]
    with pytest.raises(MedsamFocusError, match="four numbers"):
        parse_box_argument("1,2,3")
    with pytest.raises(MedsamFocusError, match="four numbers"):
        parse_box_argument("a,b,c,d")


def test_prompt_file_examples_in_the_repository_load(repo_root):
    files = sorted((repo_root / "prompts").glob("*.json"))
    examples = [f for f in files if f.name != "schema.json"]
    assert len(examples) >= 3
    kinds = set()
    for path in examples:
        prompt = load_prompt_file(path)
        for obj in prompt.objects:
            kinds.add("3d" if obj.slice_range else "slice" if obj.slice is not None else "2d")
        assert prompt.image is not None
    assert kinds == {"2d", "slice", "3d"}


def test_prompt_file_errors_name_the_file_and_place(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"objects": [{"box": [1, 2, 3]}]}), encoding="utf-8")
    with pytest.raises(MedsamFocusError, match=r"bad.json: at objects/0/box"):
        load_prompt_file(bad)
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"objects": [{"box": [1, 2, 3, 4], "slice": 1, "slices": [0, 2]}]}), encoding="utf-8")
    with pytest.raises(MedsamFocusError, match="both.json"):
        load_prompt_file(both)
    inverted = tmp_path / "inv.json"
    inverted.write_text(json.dumps({"objects": [{"box": [1, 2, 3, 4], "slices": [5, 2]}]}), encoding="utf-8")
    with pytest.raises(MedsamFocusError, match="inverted"):
        load_prompt_file(inverted)
    with pytest.raises(MedsamFocusError, match="does not exist"):
        load_prompt_file(tmp_path / "missing.json")
    (tmp_path / "notjson.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(MedsamFocusError, match="not valid JSON"):
        load_prompt_file(tmp_path / "notjson.json")
