"""Fine-tuning policies: what is frozen, where LoRA adapters go (via peft), and merging them.

Policies (``LoraSettings.mode``):

``encoder`` (default)
    Image encoder base weights frozen; LoRA adapters on its attention projections
    (``qkv`` by default: fused, so q, k and v are adapted together); mask decoder fully
    trainable; prompt encoder frozen.
``none``
    Decoder only: the first MedSAM release's recipe. The encoder is frozen entirely, so
    image embeddings can be computed once and cached.
``encoder+decoder``
    LoRA in the encoder (as above) and on the mask decoder's attention projections
    (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``); all base weights frozen.
``full``
    Image encoder and mask decoder fully trainable, prompt encoder frozen (MedSAM's
    official training), for comparison.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from medsam_focus.errors import MedsamFocusError

MODES = ("encoder", "none", "encoder+decoder", "full")
PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


@dataclass
class LoraSettings:
    """How a run adapts the model (serialised into the run's config and ``model.json``).

    Attributes:
        mode: one of ``encoder``, ``none``, ``encoder+decoder``, ``full`` (module docstring).
        rank: LoRA rank r.
        alpha: LoRA scaling numerator (the update is scaled by alpha / r).
        dropout: dropout on the LoRA input path.
        target_modules: encoder modules to adapt: a list of module-name suffixes
            (``["qkv"]``) or one regular expression matched against the full module name
            inside the image encoder (for example ``"blocks\\.(8|9|10|11)\\.attn\\.qkv"``).
        decoder_target_modules: decoder modules adapted in ``encoder+decoder`` mode, same
            rules, matched inside the mask decoder.
    """

    mode: str = "encoder"
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: ["qkv"])
    decoder_target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj"])

    def validate(self) -> None:
        if self.mode not in MODES:
            raise MedsamFocusError(f"lora.mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.rank < 1:
            raise MedsamFocusError(f"lora.rank must be >= 1, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise MedsamFocusError(f"lora.dropout must be in [0, 1), got {self.dropout}")

    @property
    def uses_lora(self) -> bool:
        return self.mode in ("encoder", "encoder+decoder")


def _part_regex(part: str, targets: list[str] | str) -> str:
    if isinstance(targets, str):
        inner = targets
    else:
        if not targets:
            raise MedsamFocusError(f"LoRA target list for {part} is empty")
        inner = r"(?:.*\.)?(?:" + "|".join(re.escape(t) for t in targets) + ")"
    return rf"{part}\.(?:{inner})"


def target_regex(settings: LoraSettings) -> str:
    """One regular expression (peft full-match) naming every module that gets an adapter."""
    parts = [_part_regex("image_encoder", settings.target_modules)]
    if settings.mode == "encoder+decoder":
        parts.append(_part_regex("mask_decoder", settings.decoder_target_modules))
    return "|".join(f"(?:{p})" for p in parts)


def peft_config(settings: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_regex(settings),
        bias="none",
    )


def inject_lora(model: nn.Module, settings: LoraSettings) -> list[str]:
    """Add LoRA adapters to ``model`` in place; returns the adapted module names."""
    from peft import inject_adapter_in_model

    regex = re.compile(target_regex(settings))
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and regex.fullmatch(n)]
    if not names:
        raise MedsamFocusError(
            f"LoRA targets {settings.target_modules!r} match no linear layer in the '{getattr(model, 'family', '?')}' "
            "image encoder; attention projections are called 'qkv' in SAM, MedSAM and LiteMedSAM"
        )
    inject_adapter_in_model(peft_config(settings), model)
    return names


def apply_policy(model: nn.Module, settings: LoraSettings) -> dict[str, tuple[int, int]]:
    """Freeze and adapt ``model`` according to ``settings``; returns {part: (trainable, total)}."""
    settings.validate()
    for p in model.parameters():
        p.requires_grad_(False)
    if settings.uses_lora:
        inject_lora(model, settings)  # marks the adapters (only) trainable
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
    if settings.mode in ("encoder", "none"):
        for p in model.mask_decoder.parameters():
            p.requires_grad_(True)
    elif settings.mode == "full":
        for part in ("image_encoder", "mask_decoder"):
            for p in getattr(model, part).parameters():
                p.requires_grad_(True)
    return parameter_report(model)


def parameter_report(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{part: (trainable, total)} for the three SAM parts (LoRA weights count in their part)."""
    report = {}
    for part in PARTS:
        params = list(getattr(model, part).parameters())
        report[part] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    return report


def format_report(report: dict[str, tuple[int, int]]) -> str:
    lines = []
    for part, (trainable, total) in report.items():
        share = 100 * trainable / max(total, 1)
        lines.append(f"  {part:15s} trainable {trainable:>11,} of {total:>11,} ({share:5.1f}%)")
    t = sum(v[0] for v in report.values())
    n = sum(v[1] for v in report.values())
    lines.append(f"  {'total':15s} trainable {t:>11,} of {n:>11,} ({100 * t / max(n, 1):5.1f}%)")
    return "\n".join(lines)


def encoder_is_frozen(model: nn.Module) -> bool:
    """True when no image-encoder parameter trains: its embeddings can be cached."""
    return not any(p.requires_grad for p in model.image_encoder.parameters())


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in n for n, _ in model.named_parameters())


def lora_state_dict(model: nn.Module) -> OrderedDict:
    """Adapter weights only, with peft's on-disk names (adapter name removed)."""
    from peft import get_peft_model_state_dict

    return OrderedDict(get_peft_model_state_dict(model))


def load_lora_state_dict(model: nn.Module, state: dict) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise MedsamFocusError(f"adapter weights do not fit this model: unexpected {unexpected[:3]}")


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> OrderedDict:
    """A plain segment-anything/LiteMedSAM state dict with every LoRA update folded in.

    The model is left unchanged: each adapted layer's merged weight is computed as
    ``W + (alpha / r) * B @ A`` by peft's own ``get_delta_weight``.
    """
    from peft.tuners.lora import LoraLayer

    state = OrderedDict()
    lora_layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    for name, tensor in model.state_dict().items():
        if "lora_" in name:
            continue
        owner = next((ln for ln in lora_layers if name.startswith(ln + ".base_layer.")), None)
        if owner is None:
            state[name] = tensor.clone()
            continue
        layer = lora_layers[owner]
        leaf = name[len(owner) + len(".base_layer.") :]
        value = tensor.clone()
        if leaf == "weight":
            for adapter in layer.active_adapters:
                if adapter in layer.lora_A:
                    value = value + layer.get_delta_weight(adapter).to(value.dtype)
        state[f"{owner}.{leaf}"] = value
    return state
