"""Checkpoint files: reading the shapes people actually have, verifying, fitting and converting.

- :func:`read_state_dict` accepts a raw segment-anything state dict, MedSAM's training
  checkpoint ``{"model": ..., "optimizer": ..., "epoch": ...}``, a ``{"state_dict": ...}``
  wrapper, and ``module.``-prefixed keys from multi-GPU (DataParallel/DDP) training.
- :func:`load_into` loads a state dict into a model and, when it does not fit, raises one
  readable error listing the missing, unexpected and wrongly shaped keys (grouped, not a
  raw dump).
- :func:`hf_to_segment_anything` renames a Hugging Face ``SamModel`` state dict onto
  segment-anything module names so one runtime path serves both.
- :func:`sha256_of` / :func:`verify_file` check downloads and bundled weights.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from pathlib import Path

import torch

from medsam_focus.errors import MedsamFocusError

SA_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


# --------------------------------------------------------------------------- hashing
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | Path) -> str:
    """SHA-256 hex digest of a file (cached per path, size and mtime within the process)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def verify_file(path: str | Path, size: int | None = None, sha256: str | None = None, what: str = "") -> None:
    """Raise MedsamFocusError unless ``path`` exists and has the expected size and SHA-256.

    ``sha256`` may be a prefix (Meta's SAM file names carry the first hex digits of theirs).
    """
    path = Path(path)
    label = what or path.name
    if not path.is_file():
        raise MedsamFocusError(f"{label}: checkpoint file {path} does not exist")
    if size is not None and path.stat().st_size != size:
        raise MedsamFocusError(
            f"{label}: {path} is {path.stat().st_size:,} bytes, expected {size:,}; the file is incomplete "
            "or a different checkpoint: download it again"
        )
    if sha256:
        actual = sha256_of(path)
        if not actual.startswith(sha256.lower()):
            raise MedsamFocusError(
                f"{label}: {path} has SHA-256 {actual}, expected {sha256}; the file is corrupt or a "
                "different checkpoint: download it again"
            )


# --------------------------------------------------------------------------- reading
def read_state_dict(path: str | Path) -> OrderedDict:
    """Read a checkpoint file into a flat state dict with ``module.`` prefixes removed.

    Accepts ``.pth``/``.pt`` (torch) and ``.safetensors`` files.
    """
    path = Path(path)
    if not path.is_file():
        raise MedsamFocusError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise MedsamFocusError(
            f"checkpoint {path} could not be read as a torch or safetensors file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); check that the download completed"
        ) from exc
    return unwrap_state_dict(obj, source=str(path))


def unwrap_state_dict(obj, source: str = "checkpoint") -> OrderedDict:
    """Return the model state dict inside ``obj`` (see module docstring for accepted shapes)."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MedsamFocusError(
            f"{source} does not hold a model state dict (expected a dict of tensors, or one wrapped as "
            "{'model': ...} / {'state_dict': ...})"
        )
    out = OrderedDict()
    for key, value in obj.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    return out


# --------------------------------------------------------------------------- fitting
def _group(keys: list[str], limit: int = 6) -> str:
    """Summarise keys by their first two name parts, e.g. 'image_encoder.blocks (144 keys)'."""
    groups: dict[str, list[str]] = OrderedDict()
    for key in keys:
        stem = ".".join(re.sub(r"\.\d+(?=\.|$)", ".N", key).split(".")[:2])
        groups.setdefault(stem, []).append(key)
    parts = []
    for stem, members in list(groups.items())[:limit]:
        parts.append(f"{stem} ({len(members)} keys, e.g. {members[0]})")
    if len(groups) > limit:
        parts.append(f"... and {len(groups) - limit} more groups")
    return "; ".join(parts)


def describe_mismatch(model: torch.nn.Module, state: dict) -> str | None:
    """None when ``state`` fits ``model`` exactly, else a readable description of why not."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong):
        return None
    lines = [f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} wrongly shaped keys"]
    if missing:
        lines.append(f"missing: {_group(missing)}")
    if unexpected:
        lines.append(f"unexpected: {_group(unexpected)}")
    if wrong:
        lines.append("wrong shape (checkpoint vs model): " + "; ".join(wrong[:4]) + (" ..." if len(wrong) > 4 else ""))
    return "\n  ".join(lines)


def load_into(model: torch.nn.Module, state: dict, source: str, family: str) -> None:
    """Load ``state`` into ``model`` strictly, or raise a readable MedsamFocusError."""
    problem = describe_mismatch(model, state)
    if problem:
        hint = ""
        if any(k.startswith("vision_encoder.") for k in state):
            hint = " It looks like a Hugging Face SamModel checkpoint: use the 'hf-sam' family."
        elif any(k.startswith("image_encoder.layers.") for k in state):
            hint = " It looks like a LiteMedSAM (TinyViT) checkpoint: use the 'litemedsam' family."
        elif any(k.startswith("image_encoder.blocks.") for k in state) and family == "litemedsam":
            hint = " It looks like a ViT (MedSAM/SAM) checkpoint: use 'medsam-vit-b' or 'sam-vit-*'."
        raise MedsamFocusError(
            f"checkpoint {source} does not fit the '{family}' architecture:\n  {problem}\n"
            f"Check that --model matches the checkpoint.{hint}"
        )
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- Hugging Face
# Ordered (pattern, replacement) pairs applied to every key of a transformers SamModel
# state dict. Order matters where one rename would otherwise feed the next (hypernetwork
# MLP layers are shifted by one before proj_in takes index 0).
_HF_RENAMES: list[tuple[str, str]] = [
    (r"^vision_encoder\.", "image_encoder."),
    (r"^image_encoder\.layers\.", "image_encoder.blocks."),
    (r"^image_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^(image_encoder\.blocks\.\d+)\.layer_norm(\d)\.", r"\1.norm\2."),
    (r"^image_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
    (r"^image_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
    (r"^image_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"^image_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
    (
        r"^shared_image_embedding\.positional_embedding$",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    ),
    (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.layer_norm(\d)\.", r"\1.norm\2."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    (
        r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.0\.",
        r"\1.layers.1.",
    ),
    (r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.proj_in\.", r"\1.layers.0."),
    (r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.proj_out\.", r"\1.layers.2."),
]
# present in SamModel but derived/shared, not separate parameters in segment-anything
_HF_DROP = (r"^prompt_encoder\.shared_embedding\.positional_embedding$",)


def hf_to_segment_anything(state: dict) -> OrderedDict:
    """Rename a transformers ``SamModel`` state dict onto segment-anything module names."""
    out = OrderedDict()
    for key, value in state.items():
        if any(re.match(p, key) for p in _HF_DROP):
            continue
        new = key
        for pattern, repl in _HF_RENAMES:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


def vit_size_of(state: dict) -> str:
    """'vit_b', 'vit_l' or 'vit_h' from a segment-anything state dict's encoder width."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state:
        raise MedsamFocusError("this is not a ViT SAM state dict (no image_encoder.patch_embed.proj.weight)")
    width = state[key].shape[0]
    sizes = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
    if width not in sizes:
        raise MedsamFocusError(f"unknown SAM encoder width {width}; expected 768 (B), 1024 (L) or 1280 (H)")
    return sizes[width]
