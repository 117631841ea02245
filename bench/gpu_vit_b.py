"""GPU benchmark: MedSAM ViT-B fine-tuning step (bf16), batch-size sweep, images/s and peak memory.

Meant for one large GPU (an H200: the whole default run takes well under 5 minutes). Cases:

``lora``        the engine's default policy (``lora.mode=encoder``): LoRA on the encoder's
                qkv projections, mask decoder trained, forward and backward through the
                encoder under bf16 autocast;
``lora+ckpt``   the same with gradient checkpointing of the encoder blocks
                (``medsam_focus.engine.train.enable_gradient_checkpointing``);
``decoder``     ``lora.mode=none`` on cached embeddings: fp16 embeddings held in host memory
                (as the engine's ``EmbeddingCache`` holds them), moved to the GPU and cast to
                float32 every step, decoder trained under bf16 autocast.

Each step is the engine's: jittered boxes, ``dice+focussdf`` on logits brought to the loss
frame (1024) by ``frame.logits_to_frame``, AdamW, gradient clipping. For every batch size
(1, 2, 4, ... until the GPU runs out of memory or the list ends) it records the median
step time over the timed steps, images/s and ``torch.cuda.max_memory_allocated``. The model
is MedSAM ViT-B with random weights (the real architecture; speed does not depend on the
weights, and the real checkpoint is not needed).

    python bench/gpu_vit_b.py --out results.json              # on the GPU machine
    python bench/gpu_vit_b.py --dry-run --out /tmp/dry.json   # CPU smoke test with tiny-sam

Without a CUDA GPU (and without ``--dry-run``) it stops at once with exit code 2.
"""

# No ``from __future__ import annotations``: with it, the dataclass below needs this module in
# sys.modules, which a test loading the file with importlib does not always arrange.
import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

NO_GPU_EXIT = 2
VIT_B_FORWARD_TFLOP = 0.97  # ViT-B encoder forward at 1024 x 1024 (REFERENCE.md)


@dataclass
class Settings:
    """What one run measures.

    Attributes:
        family: model family (``medsam-vit-b``; ``tiny-sam`` for the dry run).
        device: ``cuda`` or ``cpu`` (dry run only).
        batch_sizes: encoder (LoRA) batch sizes, tried in order until out of memory.
        decoder_batch_sizes: batch sizes for the cached decoder-only case.
        cases: which of ``lora``, ``lora+ckpt``, ``decoder`` to run.
        warmup: untimed steps per batch size (kernel selection, allocator warm-up).
        steps: timed steps per batch size; the median step time is reported.
        bf16: bf16 autocast around the model's forward pass (as Accelerate's mixed precision).
        time_budget_s: stop starting new measurements after this many seconds.
        seed: torch seed for weights and inputs.
    """

    family: str = "medsam-vit-b"
    device: str = "cuda"
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    decoder_batch_sizes: list[int] = field(default_factory=lambda: [1, 4, 16, 32, 64, 128])
    cases: list[str] = field(default_factory=lambda: ["lora", "lora+ckpt", "decoder"])
    warmup: int = 2
    steps: int = 5
    bf16: bool = True
    time_budget_s: float = 240.0
    seed: int = 0


UNIQUE_OBJECTS = 8  # distinct masks per run; larger batches repeat them (speed does not depend on content)


def _synthetic_objects(frame, count: int, seed: int):
    """``count`` ellipse objects in the frame: (N,1,S,S) masks and reference-frame SDFs, (N,4) boxes (CPU)."""
    import numpy as np
    import torch

    from medsam_focus.sdf import reference_frame_sdf

    rng = np.random.default_rng(seed)
    size = frame.size
    rows, cols = np.mgrid[:size, :size]
    masks, boxes = [], []
    for _ in range(count):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        ry, rx = rng.uniform(0.08, 0.2, 2) * size
        mask = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
        ys, xs = np.nonzero(mask)
        masks.append(mask)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    masks = np.stack(masks)
    sdf = np.asarray(reference_frame_sdf(masks, size), dtype=np.float32)
    return (
        torch.from_numpy(masks.astype(np.float32))[:, None],
        torch.from_numpy(sdf)[:, None],
        torch.tensor(boxes, dtype=torch.float32),
    )


def _tile(tensor, batch: int):
    """The first ``batch`` rows of ``tensor`` repeated as often as needed."""
    import torch

    reps = -(-batch // tensor.shape[0])
    return torch.cat([tensor] * reps)[:batch]


class Step:
    """The engine's training step for a batch of B images with one box each."""

    def __init__(self, model, objective, device, bf16: bool, seed: int):
        import torch

        self.model, self.objective, self.device = model, objective, device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4, weight_decay=0.01)
        self.bf16 = bf16
        self.generator = torch.Generator().manual_seed(seed)
        self.jitter = int(20 * model.frame.jitter_scale)
        self.step = 0

    def __call__(self, images, masks, sdf, boxes, embeddings=None) -> float:
        import torch

        size = self.model.frame.size
        shift = torch.randint(0, self.jitter + 1, boxes.shape, generator=self.generator).float()
        jittered = (boxes + shift * torch.tensor([-1.0, -1.0, 1.0, 1.0])).clamp(0, size).to(self.device)
        index = torch.arange(boxes.shape[0], device=self.device)
        if embeddings is not None:  # the engine's cache: host fp16 -> device float32 every step
            embeddings = embeddings.to(self.device, torch.float32, non_blocking=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(None if embeddings is not None else images, jittered, index, embeddings=embeddings)
        frame_logits = self.model.frame.logits_to_frame(logits.float())
        loss, _ = self.objective(frame_logits, masks, phi=sdf, step=self.step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.detach())


def _build(settings: Settings, mode: str, checkpointing: bool):
    import torch

    from medsam_focus.engine.train import enable_gradient_checkpointing
    from medsam_focus.models import build_model
    from medsam_focus.models.lora import LoraSettings, apply_policy

    torch.manual_seed(settings.seed)
    model = build_model(settings.family, random_init=True)
    report = apply_policy(model, LoraSettings(mode=mode))
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.to(settings.device).train()
    return model, {part: {"trainable": t, "total": n} for part, (t, n) in report.items()}


def _is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_case(settings: Settings, case: str, objective, deadline: float, log=print) -> dict:
    """Sweep the batch sizes of one case; returns {"case", "parameters", "results": [...]}."""
    import torch

    device = torch.device(settings.device)
    mode = "none" if case == "decoder" else "encoder"
    model, parameters = _build(settings, mode, checkpointing=case == "lora+ckpt")
    step = Step(model, objective, device, settings.bf16, settings.seed)
    sizes = settings.decoder_batch_sizes if case == "decoder" else settings.batch_sizes
    size = model.frame.size
    pool_masks, pool_sdf, pool_boxes = _synthetic_objects(model.frame, UNIQUE_OBJECTS, settings.seed)
    bank = None
    if case == "decoder":  # fp16 embeddings in host memory, as the cache holds them
        generator = torch.Generator().manual_seed(settings.seed)
        with torch.no_grad():
            images = torch.rand(UNIQUE_OBJECTS, 3, size, size, generator=generator).to(device)
            bank = model.encode(images).to("cpu", torch.float16)
        del images
    results = []
    for batch in sizes:
        if time.perf_counter() > deadline:
            results.append({"batch_size": batch, "status": "skipped (time budget)"})
            log(f"  {case:10s} batch {batch:4d}: skipped, time budget spent")
            continue
        record = {"batch_size": batch}
        images = embeddings = masks = sdf = None  # free the previous batch before allocating the next
        if device.type == "cuda":
            torch.cuda.empty_cache()
        masks, sdf, boxes = (
            _tile(pool_masks, batch).to(device),
            _tile(pool_sdf, batch).to(device),
            _tile(pool_boxes, batch),
        )
        if bank is not None:
            embeddings = _tile(bank, batch)
        else:
            images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)).to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        failed = None
        try:
            for _ in range(settings.warmup):
                step(images, masks, sdf, boxes, embeddings)
            times, losses = [], []
            for _ in range(settings.steps):
                _sync(device)
                start = time.perf_counter()
                losses.append(step(images, masks, sdf, boxes, embeddings))
                _sync(device)
                times.append(time.perf_counter() - start)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
            if not _is_oom(error):
                raise
            failed = "out of memory"
        if failed:
            # free what the failed step held before the next case builds its model
            step.optimizer.zero_grad(set_to_none=True)
            record["status"] = failed
            results.append(record)
            log(f"  {case:10s} batch {batch:4d}: out of memory; larger batches not tried")
            break
        seconds = statistics.median(times)
        record.update(
            status="ok",
            step_ms=round(1e3 * seconds, 2),
            step_ms_all=[round(1e3 * t, 2) for t in times],
            images_per_s=round(batch / seconds, 2),
            final_loss=round(losses[-1], 5),
        )
        if device.type == "cuda":
            record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        if case != "decoder" and settings.family == "medsam-vit-b":
            # forward + backward to the activations (frozen weights get no weight gradient)
            # is about twice the forward FLOPs; checkpointing adds one more forward
            passes = 3 if case == "lora+ckpt" else 2
            record["approx_encoder_tflop_per_s"] = round(passes * VIT_B_FORWARD_TFLOP * batch / seconds, 1)
        results.append(record)
        memory = f", peak {record['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in record else ""
        log(
            f"  {case:10s} batch {batch:4d}: {record['step_ms']:9.2f} ms/step, "
            f"{record['images_per_s']:8.2f} images/s{memory}"
        )
    del model, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"case": case, "parameters": parameters, "results": results}


def run(settings: Settings, log=print) -> dict:
    """Run every case of ``settings``; returns the JSON-ready result document."""
    import torch

    from medsam_focus.config import RunConfig
    from medsam_focus.engine.train import build_objective_for

    start = time.perf_counter()
    deadline = start + settings.time_budget_s
    device = torch.device(settings.device)
    objective = build_objective_for(RunConfig())  # dice+focussdf with the engine's default settings
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "settings": asdict(settings),
        "objective": objective.spec,
        "notes": "random weights, real architecture; median step time over the timed steps; "
        "peak memory is torch.cuda.max_memory_allocated per batch size",
    }
    log(f"{settings.family} on {meta['device']} | torch {meta['torch']} | bf16 autocast {settings.bf16}")
    cases = []
    for case in settings.cases:
        if case not in ("lora", "lora+ckpt", "decoder"):
            raise ValueError(f"unknown case {case!r}; use lora, lora+ckpt or decoder")
        cases.append(measure_case(settings, case, objective, deadline, log=log))
    meta["wall_seconds"] = round(time.perf_counter() - start, 1)
    summary = {}
    for entry in cases:
        ok = [r for r in entry["results"] if r.get("status") == "ok"]
        if ok:
            best = max(ok, key=lambda r: r["images_per_s"])
            summary[entry["case"]] = {
                "best_images_per_s": best["images_per_s"],
                "at_batch_size": best["batch_size"],
                "peak_memory_gib": best.get("peak_memory_gib"),
                "largest_batch_that_fit": max(r["batch_size"] for r in ok),
            }
    for case, best in summary.items():
        log(f"{case:10s}: best {best['best_images_per_s']:.1f} images/s at batch {best['at_batch_size']}")
    return {"meta": meta, "summary": summary, "cases": cases}


def _sizes(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--dry-run", action="store_true", help="one tiny step per case on CPU with tiny-sam")
    parser.add_argument("--batch-sizes", type=_sizes, default=None, help="LoRA batch sizes (1,2,4,8,16,32)")
    parser.add_argument("--decoder-batch-sizes", type=_sizes, default=None, help="decoder-only (1,4,16,32,64,128)")
    parser.add_argument("--cases", default="lora,lora+ckpt,decoder", help="comma list of lora, lora+ckpt, decoder")
    parser.add_argument("--no-checkpointing", action="store_true", help="drop the lora+ckpt case")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per batch size (5)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per batch size (2)")
    parser.add_argument("--time-budget", type=float, default=240.0, help="seconds; later batch sizes are skipped")
    parser.add_argument("--no-bf16", action="store_true", help="float32 instead of bf16 autocast")
    args = parser.parse_args(argv)

    import torch

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.no_checkpointing:
        cases = [c for c in cases if c != "lora+ckpt"]
    if args.dry_run:
        settings = Settings(
            family="tiny-sam",
            device="cpu",
            batch_sizes=args.batch_sizes or [1, 2],
            decoder_batch_sizes=args.decoder_batch_sizes or [1, 2],
            cases=cases,
            warmup=args.warmup if args.warmup is not None else 0,
            steps=args.steps or 1,
            bf16=not args.no_bf16,
            time_budget_s=args.time_budget,
        )
    else:
        if not torch.cuda.is_available():
            print(
                "error: no CUDA GPU is visible (torch.cuda.is_available() is False). This benchmark measures "
                "MedSAM ViT-B training on a GPU; run it on the GPU machine, or use --dry-run for a CPU smoke test.",
                file=sys.stderr,
            )
            return NO_GPU_EXIT
        settings = Settings(cases=cases, bf16=not args.no_bf16, time_budget_s=args.time_budget)
        if args.batch_sizes:
            settings.batch_sizes = args.batch_sizes
        if args.decoder_batch_sizes:
            settings.decoder_batch_sizes = args.decoder_batch_sizes
        if args.steps:
            settings.steps = args.steps
        if args.warmup is not None:
            settings.warmup = args.warmup
    document = run(settings)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
