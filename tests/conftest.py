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
