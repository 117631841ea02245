"""The fine-tuning loop: one modality, box prompts from masks, Dice + FocusSDF, on Accelerate.

``finetune(cfg)`` runs on one CPU, one GPU, or several GPUs / nodes when started with
``accelerate launch`` or ``torchrun`` (no code change: Accelerate reads the launcher's
environment). Per process, each step takes ``batch_size`` images with all their boxes;
the effective batch is ``batch_size x processes x grad_accum`` images.

Order of work:

1. freeze / adapt the model (``lora.mode``) and report trainable parameters per part;
2. when the encoder is frozen and ``train.cache_embeddings``, encode every training and
   validation image once into the embedding cache (shared by runs with the same encoder);
3. per epoch: shuffle (seeded by (seed, epoch)), jittered boxes from the masks, objective by
   name, AdamW with warm-up + cosine decay, gradient clipping, then validation (Dice, NSD,
   HD95 with tight boxes in original pixels);
4. after each epoch: ``checkpoints/last.pt`` (atomic), the best model's artefacts when the
   chosen metric improved, one row of metrics; early stopping after ``patience`` epochs
   without improvement.

A non-finite loss stops the run with the step and the images named; the last good
checkpoint is left as it was.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medsam_focus.config import RunConfig, dump_config, from_dict, load_config, to_dict
from medsam_focus.engine.cache import EmbeddingCache, image_key
from medsam_focus.engine.evaluate import evaluate_dataset, summarise
from medsam_focus.engine.rundir import (
    DONE,
    MetricsWriter,
    RunLog,
    atomic_torch_save,
    environment_record,
    prepare_run_dir,
)
from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import atomic_write_text
from medsam_focus.models import build_model
from medsam_focus.models.finetuned import save_artifacts
from medsam_focus.models.lora import apply_policy, encoder_is_frozen, format_report

LOWER_IS_BETTER = {"hd95", "assd"}


@dataclass
class RunResult:
    """What :func:`finetune` returns."""

    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_metric: str
    best_value: float
    history: list[dict]
    stopped_early: bool


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch, sharded across processes (padded to equal length)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        self.n, self.seed, self.rank, self.world, self.shuffle = n, seed, rank, world, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 7919]).permutation(self.n).tolist()
        else:
            order = list(range(self.n))
        total = math.ceil(self.n / self.world) * self.world
        order += order[: total - self.n]
        return order[self.rank :: self.world]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _trainable_state(model: torch.nn.Module) -> dict:
    """Trained parameters, plus the buffers (BatchNorm statistics) of parts that train fully."""
    state = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    for part in ("image_encoder", "mask_decoder"):
        module = getattr(model, part)
        if any(p.requires_grad for n, p in module.named_parameters() if "lora_" not in n):
            state.update({f"{part}.{n}": b.detach().cpu().clone() for n, b in module.named_buffers()})
    return state


def set_train_mode(model) -> None:
    """Training mode only where base weights train.

    A part whose base weights are frozen (the encoder under LoRA or decoder-only, the
    prompt encoder) stays in eval mode, so its BatchNorm layers (TinyViT has many) keep
    their pretrained running statistics instead of drifting with every batch, and
    training and inference normalise alike. LoRA dropout inside a frozen part still
    trains.
    """
    model.train()
    for part in (model.image_encoder, model.prompt_encoder, model.mask_decoder):
        base_trains = any(p.requires_grad for n, p in part.named_parameters() if "lora_" not in n)
        if not base_trains:
            part.eval()
            for name, module in part.named_modules():
                if "lora_dropout" in name:
                    module.train()


def build_objective_for(cfg: RunConfig):
    """The objective named by ``cfg.loss`` with the run's FocusSDF parameters and warm-up."""
    from medsam_focus.losses import build_objective
    from medsam_focus.losses.objective import parse_objective

    names = {term.name for term in parse_objective(cfg.loss)}
    options = {"focussdf": dict(cfg.focussdf)} if "focussdf" in names else None
    return build_objective(cfg.loss, warmup_steps=cfg.loss_warmup_steps, term_options=options)


def enable_gradient_checkpointing(model) -> None:
    """Recompute encoder activations in the backward pass (ViT blocks or TinyViT layers)."""
    from torch.utils.checkpoint import checkpoint

    encoder = model.image_encoder
    if hasattr(encoder, "blocks"):  # segment-anything ViT
        for block in encoder.blocks:
            forward = block.forward

            def wrapped(x, _forward=forward):
                return checkpoint(_forward, x, use_reentrant=False) if torch.is_grad_enabled() else _forward(x)

            block.forward = wrapped
    elif hasattr(encoder, "layers"):  # TinyViT: its layers carry a use_checkpoint switch
        for layer in encoder.layers:
            if hasattr(layer, "use_checkpoint"):
                layer.use_checkpoint = True
    else:
        raise MedsamFocusError(f"gradient checkpointing is not supported for the {model.family} encoder")


def _make_dataset(
    cfg: RunConfig,
    frame,
    split: str,
    train: bool,
    cache_root: Path,
    limit: int | None,
    augment=None,
    load_images: bool = True,
):
    from medsam_focus.data import SegmentationDataset

    dataset = SegmentationDataset(
        cfg.data.manifest,
        frame,
        split=split,
        jitter_px=cfg.data.jitter_px if train else 0.0,
        augment=augment if train else None,
        cache_dir=cache_root / "items",
        seed=cfg.train.seed,
        load_images=load_images,
    )
    if limit is not None and limit < len(dataset):
        dataset = _Subset(dataset, limit)
    return dataset


class _Subset(torch.utils.data.Dataset):
    """The first ``limit`` items of a SegmentationDataset, keeping its extra methods."""

    def __init__(self, dataset, limit: int):
        self.dataset, self.limit = dataset, limit

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, index: int):
        if index >= self.limit:
            raise IndexError(index)
        return self.dataset[index]

    def original(self, index: int):
        return self.dataset.original(index)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    @property
    def image_ids(self) -> list[str]:
        return self.dataset.image_ids[: self.limit]


def _fill_cache(cache: EmbeddingCache, model, datasets, log, progress: bool) -> dict[str, str]:
    """Encode every image of ``datasets`` that is not cached yet; {image_id: cache key}."""
    from tqdm import tqdm

    keys: dict[str, str] = {}
    todo = [(ds, i) for ds in datasets for i in range(len(ds))]
    start = time.perf_counter()
    for ds, i in tqdm(todo, desc="encoding images (once)", unit="image", disable=not progress, leave=False):
        item = ds.original(i)
        key = image_key(item.image)
        cache.embed(model, [item.image], [key])
        keys[item.image_id] = key
    log(
        f"embedding cache {cache.dir}: {cache.computed} computed, {cache.loaded} read from disk "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return keys


def finetune(
    cfg: RunConfig,
    resume: bool = False,
    progress: bool = True,
    quiet: bool = False,
    stop_after_epochs: int | None = None,
) -> RunResult:
    """Fine-tune one model as configured; see the module docstring.

    Args:
        cfg: the run configuration (its ``run_dir`` is created; an existing one is refused
            unless ``resume``).
        resume: continue the run in ``cfg.run_dir`` from ``checkpoints/last.pt``.
        progress: show progress bars.
        quiet: do not print the log (it is still written to ``log.txt``).
        stop_after_epochs: stop (as if interrupted) after this many epochs in this call;
            used to test resume.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from tqdm import tqdm

    from medsam_focus.data import collate_objects

    run_dir = cfg.run_dir
    device = cfg.train.device
    use_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise MedsamFocusError("train.device=cuda but no CUDA GPU is available; use train.device=cpu or auto")
    if cfg.train.mixed_precision not in ("no", "bf16", "fp16"):
        raise MedsamFocusError(f"train.mixed_precision must be no, bf16 or fp16, got {cfg.train.mixed_precision!r}")
    if cfg.train.best_metric not in ("dice", "nsd", "hd95", "iou", "assd"):
        raise MedsamFocusError(f"train.best_metric {cfg.train.best_metric!r} is not one of dice, nsd, hd95, iou, assd")
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision="no" if use_cpu else cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.grad_accum,
        # with multimask_output=False the decoder's IoU head and three of its four
        # hypernetwork MLPs get no gradient; DDP must be told that this is expected
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    main = accelerator.is_main_process
    if main:
        prepare_run_dir(run_dir, resume)
    accelerator.wait_for_everyone()
    log = RunLog(run_dir, enabled=main, quiet=quiet)
    show = progress and main
    if resume:
        saved = load_config(run_dir / "config.yaml")
        if to_dict(saved) != to_dict(cfg):
            cfg = saved  # the run's own config wins: a resume continues the same experiment
            log("resume: using the configuration saved in the run directory")
    elif main:
        dump_config(cfg, run_dir / "config.yaml")
        atomic_write_text(run_dir / "environment.json", _json(environment_record()))

    set_seed(cfg.train.seed)
    objective = build_objective_for(cfg)
    model = build_model(cfg.model.family, cfg.model.checkpoint, random_init=cfg.model.random_init)
    report = apply_policy(model, cfg.lora)
    log(f"run {run_dir} | model {model.family} ({model.checkpoint}) | lora.mode={cfg.lora.mode} | loss={cfg.loss}")
    log("parameters:\n" + format_report(report))
    if not any(p.requires_grad for p in model.parameters()):
        raise MedsamFocusError("nothing to train: the policy froze every parameter")
    if cfg.train.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.to(accelerator.device)

    cache_root = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir.parent / ".cache"
    frozen = encoder_is_frozen(model)
    use_cache = frozen and cfg.train.cache_embeddings
    augment = cfg.data.augment
    if use_cache and augment:
        log("augmentation is off: with a frozen encoder the run trains on cached embeddings of the original images")
        augment = False
    train_set = _make_dataset(
        cfg,
        model.frame,
        cfg.data.train_split,
        True,
        cache_root,
        cfg.data.max_train_images,
        augment=augment,
        load_images=not use_cache,
    )
    val_set = _make_dataset(cfg, model.frame, cfg.data.val_split, False, cache_root, cfg.data.max_val_images)
    if accelerator.num_processes > 1:
        log(
            f"distributed: {accelerator.num_processes} processes ({accelerator.distributed_type}), "
            f"device {accelerator.device}"
        )
    log(f"data: {len(train_set)} training and {len(val_set)} validation images from {cfg.data.manifest}")

    cache = None
    keys: dict[str, str] = {}
    if use_cache:
        cache = EmbeddingCache(cache_root, model)
        model.eval()
        with accelerator.main_process_first():
            keys = _fill_cache(cache, model, [train_set, val_set], log if main else (lambda m: None), show)

    sampler = EpochSampler(len(train_set), cfg.train.seed, accelerator.process_index, accelerator.num_processes)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        collate_fn=collate_objects,
        num_workers=cfg.data.num_workers,
        worker_init_fn=_worker_init,
        persistent_workers=False,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / cfg.train.grad_accum)
    total_steps = max(1, steps_per_epoch * cfg.train.epochs)
    from transformers import get_cosine_schedule_with_warmup

    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.train.warmup_steps, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)

    metrics = MetricsWriter(run_dir)
    start_epoch, global_step = 0, 0
    best = {"metric": cfg.train.best_metric, "value": None, "epoch": -1}
    bad_epochs = 0
    last_path = run_dir / "checkpoints" / "last.pt"
    if resume:
        if not last_path.is_file():
            raise MedsamFocusError(f"--resume {run_dir}: no checkpoints/last.pt yet; start the run again instead")
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        missing = accelerator.unwrap_model(model).load_state_dict(state["model"], strict=False)
        if missing.unexpected_keys:
            raise MedsamFocusError(f"{last_path} does not fit this run's model: {missing.unexpected_keys[:3]}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, global_step = state["epoch"], state["global_step"]
        best, bad_epochs = state["best"], state["bad_epochs"]
        _set_rng_state(state["rng"])
        metrics.truncate_after(start_epoch - 1)
        log(f"resumed after epoch {start_epoch} (step {global_step})")
        if (run_dir / DONE).exists():
            (run_dir / DONE).unlink()

    writer = _tensorboard(run_dir) if main else None
    history = metrics.rows()
    stopped_early = False
    epochs_this_call = 0
    lower = cfg.train.best_metric in LOWER_IS_BETTER
    for epoch in range(start_epoch, cfg.train.epochs):
        set_train_mode(accelerator.unwrap_model(model))
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        count = 0
        seen = 0
        t0 = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="batch", disable=not show, leave=False)
        for batch in bar:
            with accelerator.accumulate(model):
                boxes = batch["boxes"].to(accelerator.device)
                index = batch["image_index"].to(accelerator.device)
                masks = batch["masks"].to(accelerator.device)
                sdf = batch["sdf"].to(accelerator.device)
                if use_cache:
                    embeddings = torch.stack([cache.get(keys[i]) for i in batch["image_ids"]]).to(
                        accelerator.device, torch.float32
                    )
                    logits = model(None, boxes, index, embeddings=embeddings)
                else:
                    logits = model(batch["images"].to(accelerator.device), boxes, index)
                frame_logits = accelerator.unwrap_model(model).frame.logits_to_frame(logits.float())
                loss, terms = objective(frame_logits, masks, phi=sdf, step=global_step)
                if not torch.isfinite(loss):
                    raise MedsamFocusError(
                        f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {global_step}, images "
                        f"{', '.join(batch['image_ids'])}; terms {terms}. The last good checkpoint "
                        f"({last_path if last_path.exists() else 'none yet'}) is unchanged. Lower train.lr or "
                        "check these images and masks."
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.train.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, cfg.train.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if accelerator.sync_gradients:
                    scheduler.step()
                    global_step += 1
            count += 1
            seen += len(batch["image_ids"])
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            details = getattr(objective, "last_details", {}) or {}
            for name, value in {**terms, **details}.items():
                if name != "warmup_factor":
                    sums[name] = sums.get(name, 0.0) + float(value)
            bar.set_postfix(loss=f"{sums['loss'] / count:.4f}", img_s=f"{seen / (time.perf_counter() - t0):.2f}")
        train_time = time.perf_counter() - t0
        row = {"epoch": epoch, "step": global_step, "lr": scheduler.get_last_lr()[0]}
        row.update({f"train_{k}": v / max(count, 1) for k, v in sums.items()})
        row["train_images_per_s"] = seen * accelerator.num_processes / max(train_time, 1e-9)

        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        val_rows = evaluate_dataset(unwrapped, val_set, cache=cache, progress=show, desc="validate")
        summary = summarise(val_rows)
        for name in ("dice", "nsd", "hd95"):
            row[f"val_{name}"] = summary[name]["mean"]
        row["val_seconds"] = time.perf_counter() - t0 - train_time
        value = summary[cfg.train.best_metric]["mean"]
        improved = best["value"] is None or (value < best["value"] if lower else value > best["value"])
        if improved:
            best = {"metric": cfg.train.best_metric, "value": value, "epoch": epoch}
            bad_epochs = 0
            if main:
                save_artifacts(unwrapped, cfg.lora, run_dir / "model")
        else:
            bad_epochs += 1
        row["best"] = improved
        log(
            f"epoch {epoch + 1}/{cfg.train.epochs}: loss {row['train_loss']:.4f} "
            + " ".join(
                f"{k[6:]} {v:.4f}"
                for k, v in row.items()
                if k.startswith("train_") and k not in ("train_loss", "train_images_per_s")
            )
            + f" | val dice {row['val_dice']:.4f} nsd {row['val_nsd']:.4f} hd95 {row['val_hd95']:.2f}"
            + (" (best)" if improved else "")
            + f" | {train_time:.1f} s"
        )
        if main:
            metrics.append(row)
            if writer is not None:
                for k, v in row.items():
                    if isinstance(v, (int, float)) and k not in ("epoch", "best"):
                        writer.add_scalar(k, v, epoch)
                writer.flush()
            atomic_torch_save(
                {
                    "model": _trainable_state(unwrapped),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "global_step": global_step,
                    "best": best,
                    "bad_epochs": bad_epochs,
                    "rng": _rng_state(),
                    "config": to_dict(cfg),
                },
                last_path,
            )
        accelerator.wait_for_everyone()
        history.append(row)
        epochs_this_call += 1
        if cfg.train.patience is not None and bad_epochs >= cfg.train.patience:
            log(f"early stop: no {cfg.train.best_metric} improvement for {bad_epochs} epochs")
            stopped_early = True
            break
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            if writer is not None:
                writer.close()
            return RunResult(run_dir, epoch + 1, best["epoch"], best["metric"], best["value"], history, False)

    if writer is not None:
        writer.close()
    result = RunResult(
        run_dir,
        len(history),
        best["epoch"],
        best["metric"],
        best["value"],
        history,
        stopped_early,
    )
    if main:
        atomic_write_text(
            run_dir / DONE,
            _json(
                {
                    "epochs_run": result.epochs_run,
                    "best_epoch": result.best_epoch,
                    "best_metric": result.best_metric,
                    "best_value": result.best_value,
                    "stopped_early": stopped_early,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
            ),
        )
    log(f"done: best {best['metric']} {best['value']:.4f} at epoch {best['epoch'] + 1}; model in {run_dir / 'model'}")
    accelerator.wait_for_everyone()
    return result


def _worker_init(worker_id: int) -> None:
    from medsam_focus.data import worker_init

    worker_init(worker_id)


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, default=str) + "\n"


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def config_from_run(run_dir: str | Path) -> RunConfig:
    """The configuration a run was started with."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise MedsamFocusError(f"{run_dir} is not a run directory (no config.yaml)")
    return from_dict(RunConfig, yaml.safe_load(path.read_text(encoding="utf-8")), where=str(path))
