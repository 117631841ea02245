"""Run configuration: plain dataclasses, loadable from YAML, overridable with ``--set a.b=value``.

A resolved config is written verbatim into every run directory (``config.yaml``), so a
run can be evaluated or resumed without its command line. Unknown keys and values of the
wrong type are errors that name the key and the file.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medsam_focus.errors import MedsamFocusError
from medsam_focus.losses.focussdf import FOCUSSDF_DEFAULTS
from medsam_focus.models.lora import LoraSettings


@dataclass
class ModelSettings:
    """Which model to fine-tune.

    Attributes:
        family: model family (``litemedsam``, ``medsam-vit-b``, ``sam-vit-b``, ``hf-sam``,
            ``tiny-sam``, ...).
        checkpoint: base weights; None means the family's default (the bundled weights
            for ``litemedsam``).
        random_init: build the architecture with random weights (tests and benchmarks).
    """

    family: str = "litemedsam"
    checkpoint: str | None = None
    random_init: bool = False


@dataclass
class DataSettings:
    """Which data to train and validate on.

    Attributes:
        manifest: manifest CSV written by ``medsam-focus prepare`` or ``phantoms``.
        train_split / val_split: split names in the manifest's ``split`` column.
        jitter_px: outward box jitter in model-frame pixels; None = 20 px at 1024 scaled
            to the frame (5 px at 256).
        augment: geometric and intensity augmentation (off when embeddings are cached,
            since an augmented image has a different embedding).
        num_workers: DataLoader workers.
        cache_dir: where embeddings and distance maps are cached; None = ``<run>/../.cache``.
        max_train_images / max_val_images: use only the first N images (quick runs).
    """

    manifest: str = ""
    train_split: str = "train"
    val_split: str = "val"
    jitter_px: float | None = None
    augment: bool = False
    num_workers: int = 0
    cache_dir: str | None = None
    max_train_images: int | None = None
    max_val_images: int | None = None


@dataclass
class TrainSettings:
    """Optimisation.

    Attributes:
        epochs: passes over the training images.
        batch_size: images per step (each with all of its boxes).
        grad_accum: gradient accumulation steps.
        lr / weight_decay: AdamW (MedSAM: 1e-4, 0.01).
        warmup_steps: linear learning-rate warm-up steps, then cosine decay to 0.
        max_grad_norm: gradient clipping (0 disables).
        mixed_precision: ``no``, ``bf16`` or ``fp16`` (GPU only; CPU runs in float32).
        gradient_checkpointing: recompute encoder activations in the backward pass.
        seed: seeds model init of adapters, shuffling, jitter and augmentation.
        best_metric: validation metric that picks the best checkpoint (``dice``, ``nsd``,
            ``hd95``; lower is better for ``hd95``).
        patience: stop after this many epochs without improvement (None = never).
        cache_embeddings: when the encoder is frozen, encode each image once and train on
            the cached embeddings.
        device: ``auto`` (GPU when available), ``cpu`` or ``cuda``.
    """

    epochs: int = 10
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    best_metric: str = "dice"
    patience: int | None = None
    cache_embeddings: bool = True
    device: str = "auto"


@dataclass
class RunConfig:
    """Everything a fine-tuning run needs.

    Attributes:
        name: run name; the run directory is ``output_dir/name``.
        output_dir: parent folder of run directories.
        modality: the modality trained on (recorded for the study).
        loss: objective by name from the losses registry (``dice+focussdf``, ...).
        loss_warmup_steps: linear warm-up of the distance-based term(s).
        focussdf: FocusSDF parameters (gamma, lam, eps) passed to the objective.
        model / lora / data / train: see their classes.
    """

    name: str = "run"
    output_dir: str = "runs"
    modality: str = ""
    loss: str = "dice+focussdf"
    loss_warmup_steps: int = 0
    focussdf: dict = field(default_factory=lambda: dict(FOCUSSDF_DEFAULTS))
    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# --------------------------------------------------------------------------- (de)serialisation
def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, where: str):
    """Check/convert a YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except MedsamFocusError as exc:
                errors.append(str(exc))
        raise MedsamFocusError(f"{where}: {value!r} does not fit {' | '.join(_type_name(a) for a in args)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise MedsamFocusError(f"{where}: expected a mapping of settings, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise MedsamFocusError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (typing.Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise MedsamFocusError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise MedsamFocusError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise MedsamFocusError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise MedsamFocusError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise MedsamFocusError(f"{where}: expected text, got {value!r}")
    return value


def from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise MedsamFocusError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested mapping."""
    for item in overrides:
        if "=" not in item:
            raise MedsamFocusError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=5e-5")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise MedsamFocusError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
        # YAML reads 5e-5 as a string (no dot); a number is what anyone means here
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in "eE.") else value
            except ValueError:
                pass
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise MedsamFocusError(f"--set {item!r}: {part} is not a group of settings")
        node[parts[-1]] = value
    return data


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None, cls=RunConfig):
    """Read a YAML config (or start from defaults when ``path`` is None) and apply overrides.

    Relative paths inside (manifest, checkpoint, output folder) are relative to the current
    working directory, as on the command line.
    """
    data: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MedsamFocusError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise MedsamFocusError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise MedsamFocusError(f"config file {path} must hold a mapping of settings")
        source = str(path)
    apply_overrides(data, overrides or [])
    return from_dict(cls, data, where=source)


def dump_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    from medsam_focus.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
