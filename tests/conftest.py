"""Shared fixtures: repository root, the real LiteMedSAM model (loaded once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two cores here: keep torch from oversubscribing when pytest runs.
torch.set_num_threads(min(2, os.cpu_count() or 1))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def lite_model():
    """The real pretrained LiteMedSAM from the zoo, eval mode, CPU (shared: do not modify)."""
    from medsam_focus.models import build_model

    return build_model("litemedsam")


def write_toy_dataset(root: Path, n: int = 12, seed: int = 0, size=(96, 128)) -> Path:
    """A paired-folder dataset of bright ellipses on noise, with its manifest; returns the manifest."""
    import cv2
    import numpy as np

    from medsam_focus.data import prepare_manifest

    rng = np.random.default_rng(seed)
    (root / "src" / "images").mkdir(parents=True, exist_ok=True)
    (root / "src" / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
        a, b = rng.uniform(0.12, 0.25) * h, rng.uniform(0.12, 0.25) * w
        mask = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1
        image = 60 + rng.normal(0, 15, (h, w))
        image[mask] += 70
        cv2.imwrite(str(root / "src" / "images" / f"p{i:02d}.png"), np.clip(image, 0, 255).astype(np.uint8))
        cv2.imwrite(str(root / "src" / "masks" / f"p{i:02d}.png"), mask.astype(np.uint8) * 255)
    out = root / "manifest.csv"
    prepare_manifest("paired", root / "src", "us", out, fractions=(0.6, 0.2, 0.2), seed=seed)
    return out


@pytest.fixture(scope="session")
def toy_manifest(tmp_path_factory) -> Path:
    """Twelve small ultrasound-like 2D images with masks, split by patient (shared: read only)."""
    return write_toy_dataset(tmp_path_factory.mktemp("toy"))
