"""Fine-tuned model artefacts: save, load and merge.

A run's ``model/`` folder is small enough to share and names everything needed to rebuild
the model::

    model/
      model.json                      family, base checkpoint (+ SHA-256), LoRA settings
      adapter/adapter_config.json     peft LoraConfig
      adapter/adapter_model.safetensors   LoRA weights, peft key names
      mask_decoder.safetensors        the trained mask decoder (modes encoder, none)
      trainable.safetensors           every trained base weight (mode full)

``medsam-focus export RUN --merged OUT.pth`` folds the adapters into the base weights and
writes one segment-anything-format state dict that MedSAM's own code can load.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import atomic_write
from medsam_focus.models import lora as lora_mod
from medsam_focus.models.checkpoints import sha256_of
from medsam_focus.models.registry import build_model
from medsam_focus.models.segmenter import PromptableSegmenter

PEFT_PREFIX = "base_model.model."
RANDOM_BASE = "random initialisation"


def _unmerged_base(model: PromptableSegmenter) -> dict:
    """Base weights of a LoRA-injected model under their original (pre-injection) names."""
    state = {}
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        state[key.replace(".base_layer.", ".")] = value
    return state


def _save_tensors(tensors: dict, path: Path) -> None:
    # written inside the temporary model folder, which is swapped in whole
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def base_checkpoint_record(model: PromptableSegmenter) -> dict:
    """Where the base weights came from, with a digest when they came from a file."""
    source = model.checkpoint
    record = {"path": source, "sha256": None}
    if source and Path(source).is_file():
        record["sha256"] = sha256_of(source)
    return record


def save_artifacts(model: PromptableSegmenter, settings: lora_mod.LoraSettings, out_dir: str | os.PathLike) -> Path:
    """Write the adapter, trained weights and description of ``model`` into ``out_dir``.

    Files are written to a temporary folder first and swapped in, so an interrupted save
    never leaves a half-written model folder behind.
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir(parents=True)
    if settings.uses_lora:
        (tmp / "adapter").mkdir()
        state = {PEFT_PREFIX + k: v for k, v in lora_mod.lora_state_dict(model).items()}
        _save_tensors(state, tmp / "adapter" / "adapter_model.safetensors")
        lora_mod.peft_config(settings).save_pretrained(str(tmp / "adapter"))
    if settings.mode in ("encoder", "none"):
        _save_tensors(model.mask_decoder.state_dict(), tmp / "mask_decoder.safetensors")
    elif settings.mode == "full":
        trained = {
            k: v
            for k, v in model.state_dict().items()
            if k.startswith(("image_encoder.", "mask_decoder.")) and "lora_" not in k
        }
        _save_tensors(trained, tmp / "trainable.safetensors")
    if model.checkpoint == RANDOM_BASE:
        # a randomly initialised base (tests, benchmarks) cannot be rebuilt from a file: keep it
        base = _unmerged_base(model)
        _save_tensors(base, tmp / "base.safetensors")
    record = {
        "format": "medsam-focus-model/1",
        "family": model.family,
        "frame": model.frame.name,
        "base_checkpoint": base_checkpoint_record(model),
        "lora": asdict(settings),
    }
    (tmp / "model.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    old = out_dir.with_name(out_dir.name + ".old")
    if out_dir.exists():
        if old.exists():
            _rmtree(old)
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old.exists():
        _rmtree(old)
    return out_dir


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def find_model_dir(path: str | os.PathLike) -> Path:
    """The ``model/`` folder of a run directory (or the folder itself if it is one)."""
    path = Path(path)
    for candidate in (path, path / "model", path.with_name(path.name + ".old") / "model"):
        if (candidate / "model.json").is_file():
            return candidate
    raise MedsamFocusError(
        f"{path} is not a fine-tuning run (no model/model.json); give a family name or a run directory "
        "written by `medsam-focus finetune`"
    )


def load_run_model(path: str | os.PathLike, verify_base: bool = True) -> PromptableSegmenter:
    """Rebuild a fine-tuned model from a run directory or its ``model/`` folder."""
    from safetensors.torch import load_file

    model_dir = find_model_dir(path)
    record = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    base = record["base_checkpoint"]
    base_path = base.get("path")
    if base_path and base_path != RANDOM_BASE and not Path(base_path).is_file():
        raise MedsamFocusError(
            f"run {path} was trained from {base_path}, which is no longer there; put the base checkpoint back"
        )
    if verify_base and base_path and base.get("sha256") and sha256_of(base_path) != base["sha256"]:
        raise MedsamFocusError(
            f"run {path} was trained from {base_path} with SHA-256 {base['sha256']}, but that file has changed"
        )
    random_init = base_path == RANDOM_BASE
    model = build_model(record["family"], checkpoint=None if random_init else base_path, random_init=random_init)
    if random_init:
        model.load_state_dict(load_file(str(model_dir / "base.safetensors")), strict=True)
    settings = lora_mod.LoraSettings(**record["lora"])
    if settings.uses_lora:
        lora_mod.inject_lora(model, settings)
        adapter = load_file(str(model_dir / "adapter" / "adapter_model.safetensors"))
        lora_mod.load_lora_state_dict(model, {k[len(PEFT_PREFIX) :]: v for k, v in adapter.items()})
    if (model_dir / "mask_decoder.safetensors").is_file():
        model.mask_decoder.load_state_dict(load_file(str(model_dir / "mask_decoder.safetensors")))
    if (model_dir / "trainable.safetensors").is_file():
        missing, unexpected = model.load_state_dict(load_file(str(model_dir / "trainable.safetensors")), strict=False)
        if unexpected:
            raise MedsamFocusError(f"{model_dir}/trainable.safetensors does not fit the model: {unexpected[:3]}")
    for p in model.parameters():
        p.requires_grad_(False)
    model.checkpoint = str(model_dir)
    return model.eval()


def export_merged(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a run's model as one plain state dict (LoRA merged) loadable by segment-anything."""
    model = load_run_model(path)
    state = lora_mod.merged_state_dict(model)
    return atomic_write(out, lambda temp: torch.save(state, temp))
