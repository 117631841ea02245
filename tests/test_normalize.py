"""medsam_focus.normalize: MedSAM's windowing and percentile rules, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_focus.errors import MedsamFocusError
from medsam_focus.normalize import (
    DEFAULT_RULES,
    canonical_modality,
    format_rule,
    normalize,
    parse_rule,
)


def test_ct_default_is_medsam_soft_tissue_window():
    hu = np.array([[-1000, -160, 40, 240, 3000]], dtype=np.int16)
    out = normalize(hu, "ct")
    assert out.dtype == np.uint8
    # level 40, width 400: -160..240 -> 0..255, truncated like MedSAM (200 / 400 * 255 = 127.5 -> 127)
    assert out.tolist() == [[0, 0, 127, 255, 255]]
    np.testing.assert_array_equal(normalize(hu, "cta"), out)


def test_window_matches_formula_on_random_hu():
    hu = np.random.default_rng(0).uniform(-1100, 1500, (20, 30))
    expected = ((np.clip(hu, -45, 105) + 45) / 150 * 255).astype(np.uint8)  # liver 30/150
    np.testing.assert_array_equal(normalize(hu, "ct", preset="liver"), expected)
    np.testing.assert_array_equal(normalize(hu, "ct", level=30, width=150), expected)
    np.testing.assert_array_equal(normalize(hu, "mri", "window", level=30, width=150), expected)


def test_percentile_rule_uses_nonzero_values_and_keeps_zeros():
    rng = np.random.default_rng(1)
    volume = rng.gamma(2.0, 100.0, (6, 20, 20))
    volume[:, :5] = 0  # background
    lo, hi = np.percentile(volume[volume != 0], [0.5, 99.5])
    expected = ((np.clip(volume, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    expected[volume == 0] = 0
    out = normalize(volume, "mri")
    assert out.shape == volume.shape
    np.testing.assert_array_equal(out, expected)
    assert (out[:, :5] == 0).all()


def test_percentile_parameters_and_all_values():
    values = np.arange(1, 101, dtype=np.float64).reshape(10, 10)
    out = normalize(values, "us", lower=10, upper=90)
    lo, hi = np.percentile(values, [10, 90])
    assert out[0, 0] == 0 and out[-1, -1] == 255
    assert out.ravel()[49] == int((50 - lo) / (hi - lo) * 255)
    with_zero = values.copy()
    with_zero[0, 0] = 0
    assert normalize(with_zero, "us", "percentile", nonzero=False)[0, 0] == 0  # zero is the minimum here anyway


def test_rgb_stays_rgb_and_grey_stays_grey():
    rgb = np.random.default_rng(2).integers(1, 256, (8, 9, 3)).astype(np.uint8)
    assert normalize(rgb, "us").shape == (8, 9, 3)
    assert normalize(rgb[..., 0], "dsa").shape == (8, 9)


def test_minmax_none_and_constant_images():
    values = np.array([[2.0, 4.0], [6.0, 10.0]])
    assert normalize(values, "us", "minmax").tolist() == [[0, 63], [127, 255]]
    assert normalize(np.full((3, 3), 7.0), "mri").tolist() == [[0] * 3] * 3
    assert normalize(np.full((3, 3), 7.0), "us", "minmax").max() == 0
    small = np.array([[0.0, 254.6]])
    assert normalize(small, "dsa", "none").tolist() == [[0, 255]]
    with pytest.raises(MedsamFocusError, match="0..255"):
        normalize(np.array([[-1.0, 300.0]]), "dsa", "none")


def test_modalities_aliases_and_errors():
    assert canonical_modality("Ultrasound") == "us"
    assert canonical_modality("MR") == "mri"
    assert set(DEFAULT_RULES) == {"dsa", "cta", "ct", "mri", "us"}
    with pytest.raises(MedsamFocusError, match="unknown modality 'pet'.*dsa, cta, ct, mri, us"):
        normalize(np.zeros((2, 2)), "pet")
    with pytest.raises(MedsamFocusError, match="unknown CT window preset"):
        normalize(np.zeros((2, 2)), "ct", preset="kidney")
    with pytest.raises(MedsamFocusError, match="non-finite"):
        normalize(np.array([[np.nan, 1.0]]), "mri")
    with pytest.raises(MedsamFocusError, match="unknown normalisation rule"):
        normalize(np.zeros((2, 2)), "mri", "zscore")


@pytest.mark.parametrize(
    "text, rule, params",
    [
        ("", None, {}),
        ("window:liver", "window", {"preset": "liver"}),
        ("window:40,400", "window", {"level": 40.0, "width": 400.0}),
        ("percentile", "percentile", {"nonzero": True}),
        ("percentile:1,99", "percentile", {"nonzero": True, "lower": 1.0, "upper": 99.0}),
        ("percentile-all:1,99", "percentile", {"nonzero": False, "lower": 1.0, "upper": 99.0}),
        ("minmax", "minmax", {}),
        ("none", "none", {}),
    ],
)
def test_rule_strings_round_trip(text, rule, params):
    assert parse_rule(text) == (rule, params)
    assert parse_rule(format_rule(rule, params)) == (rule, params)


def test_bad_rule_strings():
    for text in ("window:kidney", "window:a,b", "percentile:1", "gauss"):
        with pytest.raises(MedsamFocusError):
            parse_rule(text)


def test_no_modality_means_percentile_clipping_of_non_zero_values():
    rng = np.random.default_rng(5)
    volume = rng.normal(300, 80, (4, 20, 20))
    volume[:, :3] = 0
    expected = normalize(volume, "mri", rule="percentile")
    np.testing.assert_array_equal(normalize(volume, None), expected)
    assert not np.array_equal(normalize(volume, None), normalize(volume, "ct"))  # not a CT window
    assert (normalize(volume, None)[:, :3] == 0).all()
    np.testing.assert_array_equal(normalize(volume, None, rule="minmax"), normalize(volume, "mri", rule="minmax"))
