"""One runtime module for every family: image encoder, prompt encoder, mask decoder and a frame.

:class:`PromptableSegmenter` holds exactly the three segment-anything sub-modules under their
segment-anything names, so its ``state_dict()`` is a segment-anything (or LiteMedSAM) state
dict that MedSAM's own code can load. Training, evaluation and inference all go through
:meth:`encode` and :meth:`decode`; several boxes of one image share one encoder pass.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medsam_focus.models.frame import ModelFrame


class PromptableSegmenter(nn.Module):
    """A box-promptable SAM-style model plus the preprocessing of its family.

    Attributes:
        image_encoder: (B, 3, S, S) -> (B, 256, 64, 64) image embeddings.
        prompt_encoder: boxes -> sparse and dense prompt embeddings.
        mask_decoder: embeddings + prompts -> (K, 1, 256, 256) low-resolution logits.
        frame: the family's :class:`ModelFrame` (not a module; no weights).
        family: registry name of the family (``litemedsam``, ``medsam-vit-b``, ...).
        checkpoint: where the weights came from (path or description), for run records.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        frame: ModelFrame,
        family: str,
        checkpoint: str = "",
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.frame = frame
        self.family = family
        self.checkpoint = checkpoint

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) model-frame images -> (B, 256, 64, 64) embeddings."""
        return self.image_encoder(images)

    def decode(
        self,
        embeddings: torch.Tensor,
        boxes: torch.Tensor,
        image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits for K boxes over B images.

        Args:
            embeddings: (B, 256, 64, 64) image embeddings.
            boxes: (K, 4) boxes in model-frame pixels.
            image_index: (K,) long, the image each box belongs to; all zeros when omitted
                (every box on the single image).

        Returns:
            (K, 1, 256, 256) low-resolution logits, in the order of ``boxes``. The decoder
            runs once per image with all of that image's boxes (segment-anything's decoder
            expands one image's embedding over its prompts).
        """
        if image_index is None:
            image_index = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
        dense_pe = self.prompt_encoder.get_dense_pe()
        order = []
        outputs = []
        for b in torch.unique(image_index).tolist():
            sel = torch.nonzero(image_index == b, as_tuple=False).flatten()
            sparse, dense = self.prompt_encoder(points=None, boxes=boxes[sel][:, None, :], masks=None)
            logits, _ = self.mask_decoder(
                image_embeddings=embeddings[b : b + 1],
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            outputs.append(logits)
            order.append(sel)
        logits = torch.cat(outputs, dim=0)
        order = torch.cat(order)
        out = torch.empty_like(logits)
        out[order] = logits
        return out

    def forward(
        self,
        images: torch.Tensor | None,
        boxes: torch.Tensor,
        image_index: torch.Tensor | None = None,
        embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode (unless ``embeddings`` are given, e.g. from a cache) then decode.

        (B, 3, S, S) images or (B, 256, 64, 64) embeddings, (K, 4) boxes, (K,) image index
        -> (K, 1, 256, 256) logits. Training calls the module itself (not ``decode``) so
        that distributed wrappers see the forward pass.
        """
        if embeddings is None:
            if images is None:
                raise ValueError("forward needs images or embeddings")
            embeddings = self.encode(images)
        return self.decode(embeddings, boxes, image_index)

    # ------------------------------------------------------------------ numpy helpers
    def prepare_image(self, image: np.ndarray) -> torch.Tensor:
        """(H, W) or (H, W, 3) 0..255 image -> (1, 3, S, S) tensor on the model's device."""
        return torch.from_numpy(self.frame.image_to_model(image))[None].to(self.device)

    def parameter_counts(self) -> dict[str, tuple[int, int]]:
        """{part: (trainable, total)} for image_encoder, prompt_encoder, mask_decoder."""
        counts = {}
        for name in ("image_encoder", "prompt_encoder", "mask_decoder"):
            params = list(getattr(self, name).parameters())
            counts[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
        return counts
