"""Image-embedding cache for frozen encoders.

When no image-encoder weight trains (decoder-only fine-tuning, zero-shot and decoder-only
evaluation), every image's embedding is computed once and reused by every epoch, every run
and every evaluation that shares the encoder. Entries are fp16 ``.npy`` files (2 MiB for a
256 x 64 x 64 embedding) under ``<root>/<encoder fingerprint>/``, keyed by the content of
the normalised image. The fingerprint hashes the encoder's weights and the family's
preprocessing, so a different checkpoint, a merged LoRA adapter or a changed resize rule
can never be served a stale embedding. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from medsam_focus.io import atomic_write
from medsam_focus.models.segmenter import PromptableSegmenter


def encoder_fingerprint(model: PromptableSegmenter) -> str:
    """SHA-256 over the image encoder's tensors (names, shapes, bytes) and the frame's tag."""
    digest = hashlib.sha256(model.frame.cache_tag().encode())
    for name, tensor in sorted(model.image_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def image_key(image: np.ndarray) -> str:
    """Content key of a normalised image (shape, dtype and pixels)."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha1(f"{image.shape}{image.dtype}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings of one frozen encoder on disk, plus an in-memory copy of those in use.

    Args:
        root: cache folder (shared by runs; safe to delete).
        model: the model whose (frozen) encoder produces the embeddings.
    """

    def __init__(self, root: str | os.PathLike, model: PromptableSegmenter):
        self.fingerprint = encoder_fingerprint(model)
        self.dir = Path(root) / "embeddings" / f"{model.family}-{self.fingerprint[:16]}"
        self.memory: dict[str, torch.Tensor] = {}
        self.computed = 0
        self.loaded = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        """(256, h, w) fp16 embedding, or None when not cached."""
        if key in self.memory:
            return self.memory[key]
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            value = torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError, EOFError):
            return None  # damaged entry: recomputed by the caller
        self.memory[key] = value
        self.loaded += 1
        return value

    def put(self, key: str, embedding: torch.Tensor) -> None:
        value = embedding.detach().to("cpu", torch.float16).contiguous()
        self.memory[key] = value
        atomic_write(self._path(key), lambda temp: np.save(temp, value.numpy()))
        self.computed += 1

    @torch.no_grad()
    def embed(
        self, model: PromptableSegmenter, images: list[np.ndarray], keys: list[str] | None = None
    ) -> torch.Tensor:
        """(B, 256, h, w) float32 embeddings for normalised images, computing the missing ones."""
        keys = keys or [image_key(im) for im in images]
        out = []
        for image, key in zip(images, keys, strict=True):
            value = self.get(key)
            if value is None:
                value = model.encode(model.prepare_image(image))[0]
                self.put(key, value)
                value = self.memory[key]
            out.append(value)
        return torch.stack(out).to(model.device, torch.float32)

    def forget_memory(self) -> None:
        self.memory.clear()
