"""The plot-sdf figure and command: panel contents, files written, and user errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from medsam_focus.cli import main
from medsam_focus.errors import MedsamFocusError
from medsam_focus.plots_sdf import save_sdf_figure, sdf_figure, sdf_panels
from medsam_focus.sdf import signed_distance


def ellipse_mask(shape=(60, 80)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (shape[1] // 2, shape[0] // 2), (shape[1] // 4, shape[0] // 5), 25, 0, 360, 255, -1)
    return mask


def test_panels_are_the_loss_quantities_in_the_reference_frame():
    mask = ellipse_mask()
    panels = sdf_panels(mask, gammas=(0.0, 0.005), eps=3.0)
    phi_ref = signed_distance(mask) * 1024 / 80  # longer side of the 60 x 80 mask
    np.testing.assert_allclose(panels["phi_ref"], phi_ref, rtol=1e-6)
    np.testing.assert_array_equal(panels["weights"][0.0], 1.0)
    np.testing.assert_allclose(panels["weights"][0.005], np.exp(-0.005 * np.abs(phi_ref)), rtol=1e-5)
    np.testing.assert_allclose(panels["target_field"], np.tanh(-phi_ref / 6.0), rtol=1e-5, atol=1e-7)
    framed = sdf_panels(mask, gammas=(0.005,), frame_size=256)
    np.testing.assert_allclose(framed["phi_ref"], signed_distance(mask) * 4, rtol=1e-6)


def test_figure_has_one_panel_per_quantity_and_writes_a_png(tmp_path):
    figure = sdf_figure(ellipse_mask(), gammas=(0.001, 0.005, 0.02, 0.1))
    images = [ax for ax in figure.axes if ax.images]
    assert len(images) == 6  # phi, four gammas, target field
    titles = [ax.get_title() for ax in images]
    assert "0.02" in titles[3] and "0.1" in titles[4] and "target" in titles[5]
    out = save_sdf_figure(ellipse_mask(), tmp_path / "sdf.png", dpi=50, gammas=(0.005,))
    written = cv2.imread(str(out))
    assert written is not None and written.shape[0] > 100 and written.shape[1] > 3 * written.shape[0]


def contour_sets(figure) -> int:
    from matplotlib.contour import ContourSet

    return sum(isinstance(item, ContourSet) for ax in figure.axes if ax.images for item in ax.collections)


def test_contour_is_drawn_on_every_panel_and_skipped_for_an_empty_mask():
    assert contour_sets(sdf_figure(ellipse_mask(), gammas=(0.005,))) == 3
    assert contour_sets(sdf_figure(np.zeros((20, 30), bool), gammas=(0.005,))) == 0


def test_library_errors():
    with pytest.raises(MedsamFocusError, match="2D mask"):
        sdf_panels(np.zeros((2, 3, 4)))
    with pytest.raises(MedsamFocusError, match="gammas"):
        sdf_panels(np.zeros((4, 4)), gammas=(-1.0,))
    with pytest.raises(MedsamFocusError, match="eps"):
        sdf_panels(np.zeros((4, 4)), eps=0.0)


def test_command_draws_a_png_mask(tmp_path, capsys):
    mask_path = tmp_path / "mask.png"
    cv2.imwrite(str(mask_path), ellipse_mask())
    out = tmp_path / "sdf.png"
    assert main(["plot-sdf", "--mask", str(mask_path), "--out", str(out), "--gammas", "0.005,0.02", "--dpi", "40"]) == 0
    assert cv2.imread(str(out)) is not None
    assert str(out) in capsys.readouterr().out


def test_command_reads_a_volume_slice_and_label(tmp_path):
    import SimpleITK as sitk

    volume = np.zeros((5, 40, 50), np.uint8)
    volume[3, 10:30, 12:40] = 2
    volume[1, 5:8, 5:8] = 1
    path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(path))
    from medsam_focus.cli.sdf import _read_mask

    np.testing.assert_array_equal(_read_mask(str(path), None, None), volume[3] > 0)  # most foreground
    np.testing.assert_array_equal(_read_mask(str(path), 1, None), volume[1] > 0)
    np.testing.assert_array_equal(_read_mask(str(path), 1, 2.0), np.zeros((40, 50), bool))
    out = tmp_path / "v.png"
    assert main(["plot-sdf", "--mask", str(path), "--slice", "3", "--out", str(out), "--dpi", "30"]) == 0
    assert out.is_file()


def test_command_reports_user_errors_without_a_traceback(tmp_path, capsys):
    missing = tmp_path / "missing.png"
    assert main(["plot-sdf", "--mask", str(missing), "--out", str(tmp_path / "o.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    garbage = tmp_path / "garbage.png"
    garbage.write_text("not an image", encoding="utf-8")
    assert main(["plot-sdf", "--mask", str(garbage), "--out", str(tmp_path / "o.png")]) == 2
    assert "cannot read mask image" in capsys.readouterr().err
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), ellipse_mask())
    assert main(["plot-sdf", "--mask", str(good), "--out", str(tmp_path / "o.png"), "--gammas", "a,b"]) == 2
    assert "--gammas" in capsys.readouterr().err
    assert main(["plot-sdf", "--mask", str(good), "--out", str(tmp_path / "o.png"), "--slice", "2"]) == 2
    assert "--slice is for volumes" in capsys.readouterr().err
    assert main(["plot-sdf", "--mask", str(good), "--out", str(tmp_path / "no" / "o.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
