"""The model zoo: families, their frames, checkpoint handling and the runtime segmenter.

Import from here: ``build_model``, ``FAMILIES``, ``DEFAULT_FAMILY``, ``PromptableSegmenter``,
``ModelFrame``. See :mod:`medsam_focus.models.registry` for the families.
"""

from medsam_focus.models.frame import FRAMES, LITEMEDSAM_FRAME, MEDSAM_FRAME, SAM_FRAME, ModelFrame
from medsam_focus.models.registry import (
    DEFAULT_FAMILY,
    FAMILIES,
    KNOWN_CHECKPOINTS,
    build_model,
    checkpoint_dir,
    get_family,
)
from medsam_focus.models.segmenter import PromptableSegmenter

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "FRAMES",
    "KNOWN_CHECKPOINTS",
    "LITEMEDSAM_FRAME",
    "MEDSAM_FRAME",
    "SAM_FRAME",
    "ModelFrame",
    "PromptableSegmenter",
    "build_model",
    "checkpoint_dir",
    "get_family",
]
