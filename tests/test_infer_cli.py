"""`medsam-focus infer` on the shipped examples, volumes, and bad input."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from medsam_focus.cli import main
from medsam_focus.errors import MedsamFocusError
from medsam_focus.infer import predict_volume
from medsam_focus.metrics import segmentation_metrics
from medsam_focus.prompts import PromptObject


@pytest.fixture(autouse=True)
def _shared_model(monkeypatch, lite_model):
    """Serve the session's LiteMedSAM to the CLI instead of loading it again per test."""
    import medsam_focus.infer as infer_mod
    from medsam_focus.models import registry

    real = registry.build_model

    def build(name="litemedsam", checkpoint=None, random_init=False, device=None):
        if name == "litemedsam" and checkpoint is None and not random_init:
            return lite_model
        return real(name, checkpoint, random_init, device)

    monkeypatch.setattr(infer_mod, "build_model", build)


def test_2d_example_writes_a_label_png_with_one_value_per_box(tmp_path, repo_root):
    out = tmp_path / "us.png"
    assert (
        main(["infer", "--prompts", str(repo_root / "prompts" / "example_2d.json"), "--out", str(out), "--overlay"])
        == 0
    )
    labels = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    truth = cv2.imread(str(repo_root / "prompts" / "samples" / "us_sample_mask.png"), cv2.IMREAD_UNCHANGED) > 0
    assert labels.shape == truth.shape and set(np.unique(labels)) == {0, 1, 2}
    assert segmentation_metrics(labels == 1, truth)["dice"] >= 0.7
    assert (tmp_path / "us_overlay.png").is_file()


def test_3d_box_propagates_and_keeps_the_volume_geometry(tmp_path, repo_root):
    out = tmp_path / "liver.nii.gz"
    assert main(["infer", "--prompts", str(repo_root / "prompts" / "example_3d_box.json"), "--out", str(out)]) == 0
    pred, ref = sitk.ReadImage(str(out)), sitk.ReadImage(str(repo_root / "prompts" / "samples" / "cta_sample.mha"))
    assert pred.GetSize() == ref.GetSize()
    np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing())
    np.testing.assert_allclose(pred.GetOrigin(), ref.GetOrigin())
    np.testing.assert_allclose(pred.GetDirection(), ref.GetDirection())
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(repo_root / "prompts" / "samples" / "cta_sample_labels.mha"))) > 0
    labels = sitk.GetArrayFromImage(pred)
    assert (labels > 0).any(axis=(1, 2)).all()  # every slice of the range was reached by propagation
    assert segmentation_metrics(labels > 0, truth, spacing=ref.GetSpacing()[::-1])["dice"] >= 0.7


def test_per_slice_boxes_only_touch_their_slices(tmp_path, repo_root):
    out = tmp_path / "liver.mha"
    assert main(["infer", "--prompts", str(repo_root / "prompts" / "example_3d_slices.json"), "--out", str(out)]) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert np.flatnonzero(labels.any(axis=(1, 2))).tolist() == [3, 6, 9]


def test_box_and_slices_on_the_command_line(tmp_path, repo_root):
    volume = repo_root / "prompts" / "samples" / "cta_sample.mha"
    out = tmp_path / "liver.nrrd"
    code = main(
        [
            "infer",
            "--image",
            str(volume),
            "--box",
            "16,44,125,142",
            "--slices",
            "4,7",
            "--modality",
            "cta",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert np.flatnonzero(labels.any(axis=(1, 2))).tolist() == [4, 5, 6, 7]


def test_predict_volume_rejects_slices_outside_the_volume(lite_model):
    volume = np.zeros((4, 32, 32), np.uint8)
    with pytest.raises(MedsamFocusError, match="slice 9 is outside the volume"):
        predict_volume(lite_model, volume, [PromptObject(box=[1, 1, 10, 10], label=1, slice=9)])
    with pytest.raises(MedsamFocusError, match="needs one"):
        predict_volume(lite_model, volume, [PromptObject(box=[1, 1, 10, 10], label=1)])


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("unreadable", "notanimage.png"),
        ("outside", "outside the image"),
        ("inverted", "inverted"),
        ("no_box", "no boxes given"),
        ("overwrite", "would overwrite the input"),
        ("wrong_checkpoint", "does not fit the 'medsam-vit-b' architecture"),
    ],
)
def test_bad_input_is_a_clear_error_and_a_non_zero_exit(tmp_path, repo_root, capsys, case, message):
    image = repo_root / "prompts" / "samples" / "us_sample.png"
    args = ["infer", "--image", str(image), "--box", "10,10,60,60", "--out", str(tmp_path / "m.png")]
    if case == "missing":
        args[2] = str(tmp_path / "nothing.png")
    elif case == "unreadable":
        bad = tmp_path / "notanimage.png"
        bad.write_bytes(b"\x89PNG but not really")
        args[2] = str(bad)
    elif case == "outside":
        args[4] = "10,10,600,60"
    elif case == "inverted":
        args[4] = "60,10,10,60"
    elif case == "no_box":
        args = ["infer", "--image", str(image), "--out", str(tmp_path / "m.png")]
    elif case == "overwrite":
        copy = tmp_path / "copy.png"
        copy.write_bytes(image.read_bytes())
        args = ["infer", "--image", str(copy), "--box", "10,10,60,60", "--out", str(copy)]
    elif case == "wrong_checkpoint":
        from medsam_focus.models.registry import litemedsam_bundled_checkpoint

        args += ["--model", "medsam-vit-b", "--checkpoint", str(litemedsam_bundled_checkpoint())]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if case == "overwrite":
        assert (tmp_path / "copy.png").read_bytes() == image.read_bytes()


def test_the_installed_command_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medsam_focus",
            "infer",
            "--image",
            str(tmp_path / "x.png"),
            "--box",
            "1,1,5,5",
            "--out",
            "o.png",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_many_images_at_once_go_to_an_output_folder(tmp_path, repo_root):
    sample = repo_root / "prompts" / "samples" / "us_sample.png"
    images = []
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(sample.read_bytes())
        images.append(str(tmp_path / name))
    out = tmp_path / "masks"
    assert main(["infer", "--image", *images, "--box", "176,46,222,95", "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_mask.png", "b_mask.png", "c_mask.png"]
    first = cv2.imread(str(out / "a_mask.png"), cv2.IMREAD_UNCHANGED)
    assert first.any() and np.array_equal(first, cv2.imread(str(out / "c_mask.png"), cv2.IMREAD_UNCHANGED))
