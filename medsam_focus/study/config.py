"""Configuration of a transfer study (``configs/study.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medsam_focus.config import DataSettings, ModelSettings, TrainSettings
from medsam_focus.errors import MedsamFocusError
from medsam_focus.losses.focussdf import FOCUSSDF_DEFAULTS
from medsam_focus.models.lora import LoraSettings


@dataclass
class StudySettings:
    """Everything a study needs; the ``train``, ``lora`` and ``data`` groups are applied to
    every fine-tuning run (``data.manifest`` is set per training modality).

    Attributes:
        name: study folder name under ``output_dir``.
        output_dir: parent folder.
        model: the base model every run starts from (and the zero-shot row).
        datasets: ``{modality: manifest CSV}``; each is a training and a test modality.
        objectives: objectives to compare, by name (default ``dice`` and ``dice+focussdf``).
        seeds: every (training modality, objective) is trained once per seed.
        test_split: manifest split used for every evaluation.
        tolerance: NSD tolerance in spacing units (mm for medical files, pixels for PNGs).
        bootstrap_samples: resamples for the 95 % confidence intervals.
        qualitative_cases: cases per modality in the qualitative panel.
        focussdf / loss_warmup_steps: as in a run config.
    """

    name: str = "study"
    output_dir: str = "studies"
    model: ModelSettings = field(default_factory=ModelSettings)
    datasets: dict = field(default_factory=dict)
    objectives: list[str] = field(default_factory=lambda: ["dice", "dice+focussdf"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    test_split: str = "test"
    tolerance: float = 2.0
    bootstrap_samples: int = 2000
    qualitative_cases: int = 3
    focussdf: dict = field(default_factory=lambda: dict(FOCUSSDF_DEFAULTS))
    loss_warmup_steps: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)

    @property
    def study_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def validate(self) -> None:
        if not self.datasets:
            raise MedsamFocusError("the study lists no datasets: give `datasets: {modality: manifest.csv}`")
        for modality, manifest in self.datasets.items():
            if not Path(manifest).is_file():
                raise MedsamFocusError(f"dataset {modality}: manifest {manifest} does not exist")
        if not self.objectives:
            raise MedsamFocusError("the study lists no objectives; e.g. objectives: [dice, dice+focussdf]")
        if not self.seeds:
            raise MedsamFocusError("the study lists no seeds; e.g. seeds: [0, 1, 2]")
        from medsam_focus.losses import build_objective

        for objective in self.objectives:
            build_objective(objective)  # an unknown name fails here, before any training
        self.lora.validate()
