"""The torch Dataset that feeds training: model-frame image, loss-frame masks, boxes, cached SDF.

One item per 2D image (an image file, or one slice of a volume): every manifest row on
that image is one object of the item, so several boxes of an image share one encoder pass.

Pipeline per item::

    read (io) -> normalise the whole image/volume (normalize) -> take the slice
      -> objects from the rows' labels/instances (original pixels)
      -> frame.image_to_model(image)                 (3, S, S) float32
      -> frame.mask_to_frame(mask_k)                 (K, S, S)   loss frame = model frame
      -> reference_frame_sdf(frame mask, S)          (K, S, S)   cached per mask
      -> [augmentation in the frame]                 same affine on image, masks, SDF
      -> box_from_mask(frame mask) + jitter_box      (K, 4)      model-frame pixels

Caching: the normalised 2D image, the original masks, the frame masks and their signed
distance maps are computed once per item and kept in memory (an LRU bounded by
``memory_cache_mb``) and, with ``cache_dir``, on disk (one ``.npz`` per item, keyed by the
files' paths, sizes and modification times, the rows and the frame, so a changed file is
recomputed and never read stale). Volumes are kept normalised in a second memory LRU while
their slices are read. Each DataLoader worker holds its own memory caches; the disk cache is
shared and written atomically.

Randomness: jitter, augmentation and object subsampling of item ``i`` draw from
``SeedSequence([seed, epoch, i])``, so the results do not depend on the number of workers or
on the order of access, and a resumed run at the same epoch sees the same boxes. Call
:meth:`SegmentationDataset.set_epoch` before each epoch (with non-persistent workers, which
copy the dataset when an epoch starts; with ``persistent_workers=True`` the workers would not
see the new epoch).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medsam_focus.data.manifest import Manifest, ManifestRow, load_manifest, object_mask
from medsam_focus.errors import MedsamFocusError
from medsam_focus.models.frame import ModelFrame
from medsam_focus.normalize import normalize, parse_rule
from medsam_focus.prompts import box_from_mask, jitter_box

__all__ = ["Augmentation", "OriginalItem", "SegmentationDataset", "collate_objects", "worker_init"]

CACHE_VERSION = 1


@dataclass
class Augmentation:
    """Random augmentation of training items (set a field to 0 to switch that part off).

    Geometric moves act in the model frame about the centre of the image's unpadded region,
    identically on the image, the masks (nearest neighbour) and the signed distance maps
    (linear; a scale ``s`` multiplies distances by ``s``, rotations and flips keep them).
    Boxes are recomputed from the moved masks before jitter. Intensity changes touch the
    image only (inside the unpadded region, result clipped to [0, 1]).

    Attributes:
        flip_lr: probability of a left-right flip.
        flip_ud: probability of an up-down flip (off by default: ultrasound and most
            radiology images have a meaningful top).
        rotate_deg: rotation angle drawn uniformly in [-rotate_deg, rotate_deg].
        scale: zoom factor drawn uniformly in this range.
        brightness: additive shift drawn in [-brightness, brightness] (image in [0, 1]).
        contrast: multiplicative factor drawn in [1 - contrast, 1 + contrast] about 0.5.
        gamma: gamma = exp(u), u drawn in [-gamma, gamma].
        noise_std: standard deviation of added Gaussian noise.
    """

    flip_lr: float = 0.5
    flip_ud: float = 0.0
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1
    contrast: float = 0.15
    gamma: float = 0.15
    noise_std: float = 0.0

    @classmethod
    def from_value(cls, value) -> Augmentation | None:
        """None/False -> None; True -> defaults; a dict -> fields; an Augmentation -> itself."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise MedsamFocusError(
                    f"unknown augmentation setting(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
                )
            data = dict(value)
            if "scale" in data:
                data["scale"] = tuple(float(v) for v in data["scale"])
            return cls(**data)
        raise MedsamFocusError(f"augment must be True/False, a dict or an Augmentation, got {value!r}")

    @property
    def geometric(self) -> bool:
        return bool(self.flip_lr or self.flip_ud or self.rotate_deg or tuple(self.scale) != (1.0, 1.0))

    @property
    def intensity(self) -> bool:
        return bool(self.brightness or self.contrast or self.gamma or self.noise_std)


@dataclass
class OriginalItem:
    """An item in original pixels, un-augmented, for evaluation.

    Attributes:
        image: normalised (H, W) or (H, W, 3) uint8.
        masks: (K, H, W) bool, one per object.
        boxes_orig: (K, 4) float32 tight boxes ``[x_min, y_min, x_max, y_max]`` (inclusive).
        spacing: in-plane spacing (rows, cols).
    """

    image: np.ndarray
    masks: np.ndarray
    boxes_orig: np.ndarray
    spacing: tuple[float, float]
    image_id: str
    sample_ids: list[str]
    case_id: str
    patient_id: str
    modality: str
    orig_hw: tuple[int, int]
    slice: int | None
    image_path: Path
    split: str


@dataclass
class _Prepared:
    """What is cached per item (everything independent of the epoch)."""

    image: np.ndarray  # (H, W) or (H, W, 3) uint8, normalised
    masks: np.ndarray  # (K, H, W) bool
    frame_masks: np.ndarray  # (K, S, S) uint8
    sdf: np.ndarray  # (K, S, S) float32
    spacing: tuple[float, float]

    @property
    def nbytes(self) -> int:
        return self.image.nbytes + self.masks.nbytes + self.frame_masks.nbytes + self.sdf.nbytes


@dataclass
class _ItemSpec:
    image_path: Path
    slice: int | None
    rows: list[ManifestRow]
    image_id: str
    mask_paths: list[Path] = field(default_factory=list)


class _LRU:
    """A byte-bounded least-recently-used cache."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.data: OrderedDict = OrderedDict()
        self.sizes: dict = {}
        self.total = 0

    def get(self, key):
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def put(self, key, value, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        if key in self.data:
            self.total -= self.sizes.pop(key)
            del self.data[key]
        self.data[key] = value
        self.sizes[key] = nbytes
        self.total += nbytes
        while self.total > self.max_bytes and self.data:
            old, _ = self.data.popitem(last=False)
            self.total -= self.sizes.pop(old)


class SegmentationDataset(torch.utils.data.Dataset):
    """Box-prompted segmentation items for one model frame (one item per 2D image).

    Args:
        manifest: a :class:`~medsam_focus.data.manifest.Manifest` or the path of its CSV.
        frame: the model family's :class:`~medsam_focus.models.frame.ModelFrame`.
        split: ``train``, ``val``, ``test``, ``all`` or a list of splits.
        jitter_px: largest outward move of each box side in model-frame pixels; default
            ``20 * frame.jitter_scale`` (MedSAM's 20 px at 1024, 5 px at 256); 0 = tight boxes.
        augment: None/False (default), True (default :class:`Augmentation`), a dict of its
            fields, or an :class:`Augmentation`.
        cache_dir: folder for the on-disk item cache (created when missing).
        seed: base of every random draw.
        max_objects: keep at most this many objects per item (a random subset per epoch);
            None keeps all.
        memory_cache_mb: bound of the in-memory item cache per process.
        volume_cache_mb: bound of the in-memory cache of normalised volumes per process.
        load_images: False skips the model-frame image (``image`` is then None): training on
            cached embeddings needs only masks, boxes and distance maps, and the image
            resize (seconds per item at 1024) would otherwise dominate the step.

    ``__getitem__`` returns a dict: ``image`` (3, S, S) float32; ``masks`` and ``sdf``
    (K, 1, S, S) float32; ``boxes`` (K, 4) float32 in model-frame pixels; ``sample_ids``;
    ``image_id``; ``case_id``; ``patient_id``; ``modality``; ``orig_hw``; ``spacing``
    (in-plane, array order).
    """

    def __init__(
        self,
        manifest: Manifest | str | Path,
        frame: ModelFrame,
        split: str | Sequence[str] | None = "train",
        jitter_px: float | None = None,
        augment=None,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        max_objects: int | None = None,
        memory_cache_mb: float = 1024,
        volume_cache_mb: float = 768,
        load_images: bool = True,
    ):
        if not isinstance(manifest, Manifest):
            manifest = load_manifest(manifest)
        self.manifest = manifest
        self.frame = frame
        self.split = split
        self.jitter_px = 20.0 * frame.jitter_scale if jitter_px is None else float(jitter_px)
        if self.jitter_px < 0:
            raise MedsamFocusError(f"jitter_px must be >= 0, got {jitter_px}")
        self.augment = Augmentation.from_value(augment)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.seed = int(seed)
        self.max_objects = max_objects
        self.load_images = bool(load_images)
        if self.augment is not None and not self.load_images:
            raise MedsamFocusError("augmentation needs the images: use load_images=True with augment")
        self.epoch = 0
        self._items = self._group(manifest.select(split))
        if not self._items:
            where = manifest.path or manifest.base_dir
            raise MedsamFocusError(f"manifest {where} has no rows in split {split!r}")
        self._memory = _LRU(int(memory_cache_mb * 2**20))
        self._volumes = _LRU(int(volume_cache_mb * 2**20))

    # ------------------------------------------------------------------ structure
    def _group(self, manifest: Manifest) -> list[_ItemSpec]:
        groups: dict[tuple[Path, int | None], list[ManifestRow]] = {}
        for row in manifest.rows:
            groups.setdefault((manifest.image_path(row), row.slice), []).append(row)
        items = []
        for (image_path, z), rows in groups.items():
            first = rows[0]
            for row in rows[1:]:
                for attr in ("case_id", "patient_id", "modality", "norm", "split"):
                    if getattr(row, attr) != getattr(first, attr):
                        raise MedsamFocusError(
                            f"samples {first.sample_id!r} and {row.sample_id!r} share image {image_path} "
                            f"(slice {z}) but differ in {attr}; one image must belong to one case, patient and split"
                        )
            image_id = first.case_id if z is None else f"{first.case_id}/z{z:04d}"
            mask_paths = [manifest.mask_path(r) for r in rows]
            items.append(_ItemSpec(image_path, z, rows, image_id, mask_paths))
        counts: dict[str, int] = {}
        for item in items:
            counts[item.image_id] = counts.get(item.image_id, 0) + 1
        for item in items:  # two files under one case id: fall back to the path
            if counts[item.image_id] > 1:
                rel = Path(os.path.relpath(item.image_path, manifest.base_dir)).as_posix()
                item.image_id = rel if item.slice is None else f"{rel}/z{item.slice:04d}"
        return items

    def __len__(self) -> int:
        return len(self._items)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose jitter/augmentation draws the next items use."""
        self.epoch = int(epoch)

    @property
    def image_ids(self) -> list[str]:
        return [item.image_id for item in self._items]

    def num_objects(self, index: int) -> int:
        return len(self._items[index].rows)

    def rows(self, index: int) -> list[ManifestRow]:
        return list(self._items[index].rows)

    # ------------------------------------------------------------------ loading
    def _read_volume(self, path: Path, modality: str, norm: str, kind: str):
        """(array, spacing) of a normalised image (kind='image') or a label image (kind='mask')."""
        from medsam_focus.io import read_image, read_mask

        key = (kind, str(path), modality if kind == "image" else "", norm if kind == "image" else "")
        hit = self._volumes.get(key)
        if hit is not None:
            return hit
        if kind == "image":
            image = read_image(path)
            rule, params = parse_rule(norm)
            array = normalize(image.array, modality, rule, **params)
        else:
            image = read_mask(path)
            array = image.array
        value = (array, tuple(image.spacing), image.is_3d)
        if image.is_3d:
            self._volumes.put(key, value, array.nbytes)
        return value

    def _slice_of(self, array: np.ndarray, is_3d: bool, z: int | None, what: Path) -> np.ndarray:
        if z is None:
            if is_3d:
                raise MedsamFocusError(f"{what} is a volume but the manifest gives no slice; fill the slice column")
            return array
        if not is_3d:
            raise MedsamFocusError(f"{what} is a 2D image but the manifest gives slice {z}; leave the slice empty")
        if not 0 <= z < array.shape[0]:
            raise MedsamFocusError(f"slice {z} is outside {what}, which has {array.shape[0]} slices")
        return array[z]

    def _compute(self, index: int) -> _Prepared:
        from medsam_focus.sdf import reference_frame_sdf

        item = self._items[index]
        first = item.rows[0]
        volume, spacing, is_3d = self._read_volume(item.image_path, first.modality, first.norm, "image")
        image = np.ascontiguousarray(self._slice_of(volume, is_3d, item.slice, item.image_path))
        hw = image.shape[:2]
        masks = []
        for row, mask_path in zip(item.rows, item.mask_paths, strict=True):
            labels, _, mask_3d = self._read_volume(mask_path, "", "", "mask")
            plane = self._slice_of(labels, mask_3d, item.slice, mask_path)
            if plane.shape != hw:
                raise MedsamFocusError(f"mask {mask_path} has size {plane.shape}, its image {item.image_path} {hw}")
            obj = object_mask(plane, row.labels, row.instance)
            if not obj.any():
                raise MedsamFocusError(
                    f"sample {row.sample_id!r}: label {row.label} (instance {row.instance}) is empty in {mask_path}"
                    + (f" slice {item.slice}" if item.slice is not None else "")
                    + "; the manifest is stale, re-run `medsam-focus prepare`"
                )
            masks.append(obj)
        masks = np.stack(masks)
        frame_masks = np.stack([self.frame.mask_to_frame(m) for m in masks]).astype(np.uint8)
        sdf = np.asarray(reference_frame_sdf(frame_masks, self.frame.size), dtype=np.float32)
        in_plane = tuple(float(s) for s in spacing[-2:])
        return _Prepared(image, masks, frame_masks, sdf, in_plane)

    def _cache_key(self, index: int) -> str:
        item = self._items[index]

        def stamp(path: Path):
            try:
                if path.is_dir():  # DICOM series: the newest file and the file count
                    files = [p.stat() for p in path.iterdir() if p.is_file()]
                    return [len(files), max((s.st_mtime_ns for s in files), default=0), sum(s.st_size for s in files)]
                info = path.stat()
                return [info.st_size, info.st_mtime_ns]
            except OSError:
                return None

        payload = {
            "version": CACHE_VERSION,
            "frame": self.frame.cache_tag(),
            "image": [str(item.image_path), stamp(item.image_path)],
            "slice": item.slice,
            "modality": item.rows[0].modality,
            "norm": item.rows[0].norm,
            "objects": [
                [str(p), stamp(p), r.label, r.instance] for r, p in zip(item.rows, item.mask_paths, strict=True)
            ],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def _prepared(self, index: int) -> _Prepared:
        hit = self._memory.get(index)
        if hit is not None:
            return hit
        prepared = None
        path = None
        if self.cache_dir is not None:
            key = self._cache_key(index)
            path = self.cache_dir / key[:2] / f"{key}.npz"
            prepared = _load_cached(path)
        if prepared is None:
            prepared = self._compute(index)
            if path is not None:
                _save_cached(path, prepared)
        self._memory.put(index, prepared, prepared.nbytes)
        return prepared

    # ------------------------------------------------------------------ items
    def _rngs(self, index: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
        seq = np.random.SeedSequence([self.seed, self.epoch, index])
        aug, jitter, subset = seq.spawn(3)
        return np.random.default_rng(aug), np.random.default_rng(jitter), np.random.default_rng(subset)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self._items):
            raise IndexError(index)
        item = self._items[index]
        prepared = self._prepared(index)
        aug_rng, jitter_rng, subset_rng = self._rngs(index)
        orig_hw = tuple(int(v) for v in prepared.image.shape[:2])
        valid_hw = self.frame.resized_hw(orig_hw)
        image = self.frame.image_to_model(prepared.image) if self.load_images else None
        frame_masks, sdf = prepared.frame_masks, prepared.sdf
        keep = np.arange(len(item.rows))
        if self.max_objects is not None and len(keep) > self.max_objects:
            keep = np.sort(subset_rng.choice(len(keep), size=self.max_objects, replace=False))
            frame_masks, sdf = frame_masks[keep], sdf[keep]
        if self.augment is not None:
            image, frame_masks, sdf = _augment(self.augment, aug_rng, image, frame_masks, sdf, valid_hw)
        boxes = np.stack([box_from_mask(m) for m in frame_masks]).astype(np.float32)
        if self.jitter_px > 0:
            boxes = jitter_box(boxes, self.jitter_px, valid_hw, jitter_rng)
        first = item.rows[0]
        return {
            "image": None if image is None else torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "masks": torch.from_numpy(frame_masks.astype(np.float32)[:, None]),
            "boxes": torch.from_numpy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "sdf": torch.from_numpy(np.ascontiguousarray(sdf, dtype=np.float32)[:, None]),
            "sample_ids": [item.rows[k].sample_id for k in keep],
            "image_id": item.image_id,
            "case_id": first.case_id,
            "patient_id": first.patient_id,
            "modality": first.modality,
            "orig_hw": orig_hw,
            "spacing": prepared.spacing,
        }

    def original(self, index: int) -> OriginalItem:
        """The item in original pixels, without augmentation, jitter or subsampling."""
        item = self._items[index]
        prepared = self._prepared(index)
        first = item.rows[0]
        boxes = np.stack([box_from_mask(m) for m in prepared.masks]).astype(np.float32)
        return OriginalItem(
            image=prepared.image,
            masks=prepared.masks.copy(),
            boxes_orig=boxes,
            spacing=prepared.spacing,
            image_id=item.image_id,
            sample_ids=[r.sample_id for r in item.rows],
            case_id=first.case_id,
            patient_id=first.patient_id,
            modality=first.modality,
            orig_hw=tuple(int(v) for v in prepared.image.shape[:2]),
            slice=item.slice,
            image_path=item.image_path,
            split=first.split,
        )


# --------------------------------------------------------------------------- disk cache
def _save_cached(path: Path, prepared: _Prepared) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.{id(prepared)}.tmp.npz")
    try:
        np.savez(
            temp,
            image=prepared.image,
            masks=np.packbits(prepared.masks, axis=-1),
            mask_width=np.array(prepared.masks.shape[-1]),
            frame_masks=np.packbits(prepared.frame_masks.astype(bool), axis=-1),
            frame_width=np.array(prepared.frame_masks.shape[-1]),
            sdf=prepared.sdf,
            spacing=np.asarray(prepared.spacing, dtype=np.float64),
        )
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)  # a full or read-only cache disk only costs speed


def _load_cached(path: Path) -> _Prepared | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            width = int(data["mask_width"])
            frame_width = int(data["frame_width"])
            masks = np.unpackbits(data["masks"], axis=-1, count=width).astype(bool)
            frame_masks = np.unpackbits(data["frame_masks"], axis=-1, count=frame_width)
            return _Prepared(
                image=data["image"],
                masks=masks,
                frame_masks=frame_masks,
                sdf=data["sdf"],
                spacing=tuple(float(s) for s in data["spacing"]),
            )
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a damaged cache entry is recomputed and overwritten


# --------------------------------------------------------------------------- augmentation
def _augment(aug: Augmentation, rng: np.random.Generator, image, frame_masks, sdf, valid_hw):
    """Apply one random draw of ``aug`` in the model frame (see :class:`Augmentation`)."""
    import cv2

    # every draw happens whatever the settings, so that the stream is stable
    flip_lr = rng.random() < aug.flip_lr
    flip_ud = rng.random() < aug.flip_ud
    angle = rng.uniform(-aug.rotate_deg, aug.rotate_deg) if aug.rotate_deg else 0.0
    scale = rng.uniform(*aug.scale) if tuple(aug.scale) != (1.0, 1.0) else 1.0
    brightness = rng.uniform(-aug.brightness, aug.brightness) if aug.brightness else 0.0
    contrast = 1.0 + (rng.uniform(-aug.contrast, aug.contrast) if aug.contrast else 0.0)
    gamma = float(np.exp(rng.uniform(-aug.gamma, aug.gamma))) if aug.gamma else 1.0
    noise_seed = int(rng.integers(0, 2**31 - 1))

    nh, nw = valid_hw
    size = image.shape[-1]
    if flip_lr or flip_ud or angle or scale != 1.0:
        # source -> destination affine about the centre of the unpadded region
        cx, cy = (nw - 1) / 2.0, (nh - 1) / 2.0
        flip = np.array([[-1.0 if flip_lr else 1.0, 0, 0], [0, -1.0 if flip_ud else 1.0, 0], [0, 0, 1]])
        flip[0, 2] = (nw - 1) if flip_lr else 0.0
        flip[1, 2] = (nh - 1) if flip_ud else 0.0
        rot = np.vstack([cv2.getRotationMatrix2D((cx, cy), angle, scale), [0, 0, 1]])
        matrix = (rot @ flip)[:2]
        moved_masks = np.stack(
            [_warp(m[:nh, :nw], matrix, (nh, nw), size, cv2.INTER_NEAREST, cv2.BORDER_CONSTANT) for m in frame_masks]
        )
        if all(m.any() for m in moved_masks):  # an object pushed out of view keeps the item un-moved
            channels = np.ascontiguousarray(image[:, :nh, :nw].transpose(1, 2, 0))
            warped = cv2.warpAffine(channels, matrix, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            image = np.zeros_like(image)
            image[:, :nh, :nw] = warped.reshape(nh, nw, -1).transpose(2, 0, 1)
            frame_masks = moved_masks
            # distances inside the unpadded region move with it and scale with the zoom; the
            # padding of a longest-side frame keeps its own values (it holds no image content)
            moved_sdf = sdf.copy()
            for k, d in enumerate(sdf):
                moved_sdf[k, :nh, :nw] = _warp(
                    d[:nh, :nw], matrix, (nh, nw), size, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE
                )[:nh, :nw] * np.float32(scale)
            sdf = moved_sdf
    if aug.intensity:
        region = image[:, :nh, :nw]
        region = np.clip(region, 0.0, 1.0) ** gamma
        region = (region - 0.5) * contrast + 0.5 + brightness
        if aug.noise_std:
            region = region + np.random.default_rng(noise_seed).normal(0, aug.noise_std, region.shape)
        image = image.copy()
        image[:, :nh, :nw] = np.clip(region, 0.0, 1.0)
    return image.astype(np.float32), frame_masks, sdf.astype(np.float32)


def _warp(plane: np.ndarray, matrix: np.ndarray, valid_hw, size: int, interpolation: int, border: int) -> np.ndarray:
    import cv2

    nh, nw = valid_hw
    moved = cv2.warpAffine(np.ascontiguousarray(plane), matrix, (nw, nh), flags=interpolation, borderMode=border)
    out = np.zeros((size, size), dtype=plane.dtype)
    out[:nh, :nw] = moved
    return out


# --------------------------------------------------------------------------- batching
def collate_objects(batch: list[dict]) -> dict:
    """Batch items with different object counts: images stacked, objects concatenated.

    Returns:
        ``images`` (B, 3, S, S), or None for items built without images; ``masks`` and
        ``sdf`` (N, 1, S, S) with N = sum of K; ``boxes`` (N, 4); ``image_index`` (N,) long,
        the batch position of each object's image; ``num_objects`` (B,) long;
        ``sample_ids`` (N); ``image_ids``, ``case_ids``, ``patient_ids``, ``modalities``,
        ``orig_hw``, ``spacing`` (B each).
    """
    counts = torch.tensor([int(b["masks"].shape[0]) for b in batch], dtype=torch.long)
    return {
        "images": None if any(b["image"] is None for b in batch) else torch.stack([b["image"] for b in batch]),
        "masks": torch.cat([b["masks"] for b in batch]),
        "sdf": torch.cat([b["sdf"] for b in batch]),
        "boxes": torch.cat([b["boxes"] for b in batch]),
        "image_index": torch.repeat_interleave(torch.arange(len(batch)), counts),
        "num_objects": counts,
        "sample_ids": [s for b in batch for s in b["sample_ids"]],
        "image_ids": [b["image_id"] for b in batch],
        "case_ids": [b["case_id"] for b in batch],
        "patient_ids": [b["patient_id"] for b in batch],
        "modalities": [b["modality"] for b in batch],
        "orig_hw": [b["orig_hw"] for b in batch],
        "spacing": [b["spacing"] for b in batch],
    }


def worker_init(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per worker.

    Workers are processes already; letting each also start a torch thread pool oversubscribes
    small machines. OpenCV's pool is left alone on purpose: ``cv2.setNumThreads`` in a forked
    worker deadlocks when the parent used OpenCV's threads before the fork. Randomness needs no
    seeding here (it derives from seed, epoch and index).
    """
    torch.set_num_threads(1)
