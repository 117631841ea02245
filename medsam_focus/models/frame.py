"""How a model family sees an image: frame size, resize rule, intensity scaling and mask postprocessing.

Every family in the zoo owns one :class:`ModelFrame`. Nothing outside ``medsam_focus.models``
knows whether a model works at 1024 or 256, stretches or pads: the data pipeline, the
engine and the inference code call these methods.

The three procedures reproduce the official ones (see ../shared/docs/REFERENCE.md):

``medsam``  (MedSAM ViT-B, 1024)
    grey -> 3 channels; scikit-image ``resize(order=3, preserve_range=True,
    anti_aliasing=True)`` to 1024 x 1024 (stretched, no padding), cast to uint8; min-max to
    [0, 1]. Boxes scale by (1024/W, 1024/H). Logits: sigmoid, bilinear upsample of the
    probabilities to (H, W), > 0.5.
``litemedsam``  (LiteMedSAM TinyViT, 256)
    grey -> 3 channels; longest side to 256 with OpenCV INTER_AREA; min-max to [0, 1];
    zero padding at bottom/right to 256 x 256. Boxes scale by 256/max(H, W). Logits: crop to
    the unpadded region, bilinear upsample to (H, W), sigmoid, > 0.5.
``sam``  (Meta's SAM, 1024)
    longest side to 1024 with torchvision's resize (as ``ResizeLongestSide``); ImageNet
    mean/std on 0..255; zero padding to 1024 x 1024. Boxes scale by new/old side.
    Logits: upsample to 1024, crop, upsample to (H, W), > 0 (``Sam.postprocess_masks``).

The loss frame is the model frame: low-resolution logits (256 x 256) are bilinearly
upsampled to ``size`` for the loss (a no-op for LiteMedSAM), as MedSAM's training does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medsam_focus.errors import MedsamFocusError

SAM_PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
SAM_PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


@dataclass(frozen=True)
class ModelFrame:
    """Pre- and post-processing of one model family.

    Attributes:
        name: ``medsam``, ``litemedsam`` or ``sam``; names the procedure, stored in run
            directories and embedding-cache keys.
        size: side of the square model input frame (1024 or 256); also the loss frame.
        resize: ``stretch`` (to size x size) or ``longest_side`` (keep aspect, pad).
        interpolation: ``skimage_cubic``, ``cv2_area`` or ``torchvision_bilinear``.
        intensity: ``minmax`` (to [0, 1] after resizing) or ``imagenet`` (SAM's mean/std).
        sigmoid_before_upsample: MedSAM thresholds upsampled probabilities; LiteMedSAM and
            SAM upsample logits first. The order changes the mask, so it is pinned here.
        upsample_to_frame_first: SAM upsamples logits to the frame before cropping the
            padding; LiteMedSAM's logits already are the frame.
        box_scale_from_resized: SAM scales coordinates by new/old side (rounded sizes);
            LiteMedSAM and MedSAM by frame/old side.
        low_res_size: side of the mask decoder's logits (256 for every SAM-style decoder).
    """

    name: str
    size: int
    resize: str
    interpolation: str
    intensity: str
    sigmoid_before_upsample: bool
    upsample_to_frame_first: bool
    box_scale_from_resized: bool
    low_res_size: int = 256

    # ------------------------------------------------------------------ geometry
    def resized_hw(self, orig_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) the image occupies inside the frame before any padding."""
        h, w = int(orig_hw[0]), int(orig_hw[1])
        if self.resize == "stretch":
            return self.size, self.size
        scale = self.size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def box_scale(self, orig_hw: tuple[int, int]) -> tuple[float, float]:
        """(scale_y, scale_x) taking original pixels to model-frame pixels."""
        h, w = int(orig_hw[0]), int(orig_hw[1])
        if self.resize == "stretch":
            return self.size / h, self.size / w
        if self.box_scale_from_resized:
            nh, nw = self.resized_hw(orig_hw)
            return nh / h, nw / w
        s = self.size / max(h, w)
        return s, s

    @property
    def jitter_scale(self) -> float:
        """Frame size relative to MedSAM's 1024 frame: a 20 px jitter at 1024 is 5 px at 256."""
        return self.size / 1024.0

    def cache_tag(self) -> str:
        """A string that changes whenever the preprocessing would change an embedding."""
        return f"{self.name}-{self.size}-{self.resize}-{self.interpolation}-{self.intensity}"

    # ------------------------------------------------------------------ images
    def image_to_model(self, image: np.ndarray) -> np.ndarray:
        """One image in original pixels -> the model's input tensor layout.

        Args:
            image: (H, W) or (H, W, 3), already brought to the 0..255 display range by
                ``medsam_focus.normalize`` (uint8 or float).

        Returns:
            (3, size, size) float32, ready for the image encoder.
        """
        img = _three_channels(image)
        h, w = img.shape[:2]
        nh, nw = self.resized_hw((h, w))
        if self.interpolation == "skimage_cubic":
            from skimage.transform import resize

            img = resize(img, (nh, nw), order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)
        elif self.interpolation == "cv2_area":
            import cv2

            img = cv2.resize(_to_uint8_if_integral(img), (nw, nh), interpolation=cv2.INTER_AREA)
        elif self.interpolation == "torchvision_bilinear":
            from torchvision.transforms.functional import resize, to_pil_image

            img = np.array(resize(to_pil_image(np.ascontiguousarray(img.astype(np.uint8))), [nh, nw]))
        else:  # pragma: no cover - guarded by the registry
            raise MedsamFocusError(f"unknown interpolation {self.interpolation!r}")

        if self.intensity == "minmax":
            lo, hi = float(img.min()), float(img.max())
            out = (img.astype(np.float64) - lo) / max(hi - lo, 1e-8)
        elif self.intensity == "imagenet":
            out = (img.astype(np.float32) - SAM_PIXEL_MEAN) / SAM_PIXEL_STD
        else:  # pragma: no cover
            raise MedsamFocusError(f"unknown intensity rule {self.intensity!r}")
        out = out.astype(np.float32)
        if (nh, nw) != (self.size, self.size):
            out = np.pad(out, ((0, self.size - nh), (0, self.size - nw), (0, 0)))
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def mask_to_frame(self, mask: np.ndarray) -> np.ndarray:
        """A 2D mask in original pixels -> uint8 (size, size) mask in the model/loss frame.

        Nearest-neighbour on pixel centres (OpenCV INTER_NEAREST_EXACT), the same geometry
        as :meth:`image_to_model`, zero in the padding.
        """
        import cv2

        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise MedsamFocusError(f"mask_to_frame needs a 2D mask, got shape {mask.shape}")
        nh, nw = self.resized_hw(mask.shape)
        out = cv2.resize((mask != 0).astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT)
        if (nh, nw) != (self.size, self.size):
            out = np.pad(out, ((0, self.size - nh), (0, self.size - nw)))
        return out

    # ------------------------------------------------------------------ logits
    def logits_to_frame(self, low_res_logits: torch.Tensor) -> torch.Tensor:
        """(N, 1, 256, 256) decoder logits -> (N, 1, size, size) logits in the loss frame."""
        if low_res_logits.shape[-1] == self.size and low_res_logits.shape[-2] == self.size:
            return low_res_logits
        return F.interpolate(low_res_logits, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def probabilities(self, low_res_logits: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """(N, 1, 256, 256) logits -> (N, H, W) foreground probabilities in original pixels,
        following the family's official order of sigmoid, crop and upsampling."""
        h, w = int(orig_hw[0]), int(orig_hw[1])
        x = low_res_logits.float()
        if self.sigmoid_before_upsample:
            x = torch.sigmoid(x)
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
            return x[:, 0]
        nh, nw = self.resized_hw((h, w))
        if self.upsample_to_frame_first:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        else:
            # logits at low_res_size cover the whole frame: crop in low-res pixels
            nh = int(round(nh * x.shape[-2] / self.size))
            nw = int(round(nw * x.shape[-1] / self.size))
        x = x[..., :nh, :nw]
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return torch.sigmoid(x)[:, 0]

    def postprocess(self, low_res_logits: torch.Tensor, orig_hw: tuple[int, int]) -> np.ndarray:
        """(N, 1, 256, 256) logits -> (N, H, W) boolean masks in original pixels (p > 0.5)."""
        return (self.probabilities(low_res_logits, orig_hw) > 0.5).cpu().numpy()


def _three_channels(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    raise MedsamFocusError(
        f"an image for the model must be (H, W) or (H, W, 3), got shape {img.shape}; "
        "convert RGBA or multi-channel images first (medsam_focus.io does this on reading)"
    )


def _to_uint8_if_integral(img: np.ndarray) -> np.ndarray:
    # OpenCV resizes uint8 with integer rounding, float with float maths; the official
    # LiteMedSAM code feeds uint8, so round-trip floats that hold 0..255 integers.
    if img.dtype == np.uint8:
        return img
    if np.issubdtype(img.dtype, np.floating) and np.all(np.mod(img, 1) == 0) and img.min() >= 0 and img.max() <= 255:
        return img.astype(np.uint8)
    return img.astype(np.float32)


MEDSAM_FRAME = ModelFrame(
    name="medsam",
    size=1024,
    resize="stretch",
    interpolation="skimage_cubic",
    intensity="minmax",
    sigmoid_before_upsample=True,
    upsample_to_frame_first=False,
    box_scale_from_resized=False,
)
LITEMEDSAM_FRAME = ModelFrame(
    name="litemedsam",
    size=256,
    resize="longest_side",
    interpolation="cv2_area",
    intensity="minmax",
    sigmoid_before_upsample=False,
    upsample_to_frame_first=False,
    box_scale_from_resized=False,
)
SAM_FRAME = ModelFrame(
    name="sam",
    size=1024,
    resize="longest_side",
    interpolation="torchvision_bilinear",
    intensity="imagenet",
    sigmoid_before_upsample=False,
    upsample_to_frame_first=True,
    box_scale_from_resized=True,
)
FRAMES = {f.name: f for f in (MEDSAM_FRAME, LITEMEDSAM_FRAME, SAM_FRAME)}
