"""Running a transfer study: zero-shot, one fine-tuning run per (modality, objective, seed),
every model on every modality's test split. Restartable: finished runs and evaluations
are read back, an interrupted run resumes from its last checkpoint.

Study folder::

    <study>/
      study.yaml                 the resolved settings (a restart must use the same ones)
      runs/<modality>__<objective>__seed<k>/   run directories (see engine.rundir)
      eval/<model>/<test modality>.csv         per-case metrics of one model on one split
      per_case.csv               every evaluation row of the study
      tables/, figures/, report.md             written by medsam_focus.study.report
      .cache/                    embeddings and prepared items shared by every run
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medsam_focus.config import RunConfig, from_dict, to_dict
from medsam_focus.engine import rundir
from medsam_focus.engine.evaluate import ROW_FIELDS
from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import atomic_write_csv, atomic_write_text
from medsam_focus.study.config import StudySettings

ZERO_SHOT = "zero-shot"


@dataclass
class StudyResult:
    """Where the study is and what this call did (for logs and the resume test)."""

    study_dir: Path
    rows: list[dict]
    runs_trained: list[str] = field(default_factory=list)
    runs_resumed: list[str] = field(default_factory=list)
    runs_skipped: list[str] = field(default_factory=list)
    evals_computed: list[str] = field(default_factory=list)
    evals_skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_name(modality: str, objective: str, seed: int) -> str:
    safe = objective.replace("*", "x").replace("/", "_").replace(" ", "")
    return f"{modality}__{safe}__seed{seed}"


def run_config(settings: StudySettings, modality: str, objective: str, seed: int) -> RunConfig:
    """The fine-tuning configuration of one study run."""
    data = dataclasses.replace(
        settings.data,
        manifest=str(settings.datasets[modality]),
        cache_dir=str(settings.study_dir / ".cache"),
    )
    return RunConfig(
        name=run_name(modality, objective, seed),
        output_dir=str(settings.study_dir / "runs"),
        modality=modality,
        loss=objective,
        loss_warmup_steps=settings.loss_warmup_steps,
        focussdf=dict(settings.focussdf),
        model=dataclasses.replace(settings.model),
        lora=dataclasses.replace(settings.lora),
        data=data,
        train=dataclasses.replace(settings.train, seed=seed),
    )


def _check_settings(settings: StudySettings) -> None:
    """Write study.yaml, or make sure a restart uses the settings the study started with."""
    path = settings.study_dir / "study.yaml"
    current = to_dict(settings)
    if path.is_file():
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        if saved != current:
            changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise MedsamFocusError(
                f"{settings.study_dir} holds a study started with different settings ({', '.join(changed)}); "
                "finished runs would not be comparable. Use another name (--set name=NEW) or delete that folder."
            )
        return
    settings.study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(current, sort_keys=False))


def _read_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class _Evaluator:
    """Evaluates models on every modality's test split, building each split's dataset once
    (its prepared items stay in memory across the study's models) and fingerprinting each
    model's encoder once for the embedding cache."""

    def __init__(self, settings: StudySettings, result: StudyResult, progress: bool):
        self.settings, self.result, self.progress = settings, result, progress
        self.datasets: dict[tuple[str, str], object] = {}

    def _dataset(self, modality: str, frame):
        from medsam_focus.data import SegmentationDataset

        key = (modality, frame.cache_tag())
        if key not in self.datasets:
            self.datasets[key] = SegmentationDataset(
                self.settings.datasets[modality],
                frame,
                split=self.settings.test_split,
                jitter_px=0,
                cache_dir=self.settings.study_dir / ".cache" / "items",
            )
        return self.datasets[key]

    def everywhere(self, name: str, load_model, log) -> None:
        """Evaluate model ``name`` on each test split that has no CSV yet (``load_model`` is
        called only when one is missing)."""
        from medsam_focus.engine.cache import EmbeddingCache
        from medsam_focus.engine.evaluate import evaluate_dataset, write_rows
        from medsam_focus.models.lora import encoder_is_frozen

        model = cache = None
        for test in self.settings.datasets:
            path = self.settings.study_dir / "eval" / name / f"{test}.csv"
            if path.is_file():
                self.result.evals_skipped.append(f"{name}:{test}")
                continue
            if model is None:
                model = load_model()
                if encoder_is_frozen(model):
                    cache = EmbeddingCache(self.settings.study_dir / ".cache", model)
            log(f"[study] evaluating {name} on {test}")
            rows = evaluate_dataset(
                model,
                self._dataset(test, model.frame),
                cache=cache,
                tolerance=self.settings.tolerance,
                progress=self.progress,
                desc=f"{name} on {test}",
            )
            write_rows(rows, path)
            self.result.evals_computed.append(f"{name}:{test}")


def run_study(
    settings: StudySettings,
    progress: bool = True,
    quiet: bool = False,
    log=print,
) -> StudyResult:
    """Run (or finish) the study described by ``settings``; returns every evaluation row."""
    from medsam_focus.engine.train import finetune
    from medsam_focus.infer import resolve_device
    from medsam_focus.models import build_model
    from medsam_focus.models.finetuned import load_run_model

    start = time.perf_counter()
    settings.validate()
    _check_settings(settings)
    study = settings.study_dir
    result = StudyResult(study_dir=study, rows=[])
    device = resolve_device(None if settings.train.device == "auto" else settings.train.device)
    modalities = list(settings.datasets)

    # 1. zero-shot
    evaluator = _Evaluator(settings, result, progress)
    evaluator.everywhere(
        ZERO_SHOT,
        lambda: build_model(settings.model.family, settings.model.checkpoint, settings.model.random_init).to(device),
        log,
    )

    # 2. fine-tuning runs, then 3. every run on every modality
    total = len(modalities) * len(settings.objectives) * len(settings.seeds)
    done = 0
    for modality in modalities:
        for objective in settings.objectives:
            for seed in settings.seeds:
                done += 1
                cfg = run_config(settings, modality, objective, seed)
                name = cfg.name
                if rundir.is_complete(cfg.run_dir):
                    result.runs_skipped.append(name)
                elif (cfg.run_dir / "checkpoints" / "last.pt").is_file():
                    log(f"[study] run {done}/{total}: resuming {name}")
                    finetune(cfg, resume=True, progress=progress, quiet=quiet)
                    result.runs_resumed.append(name)
                else:
                    if cfg.run_dir.exists():  # interrupted before its first checkpoint: nothing to keep
                        shutil.rmtree(cfg.run_dir)
                    log(f"[study] run {done}/{total}: training {name}")
                    finetune(cfg, progress=progress, quiet=quiet)
                    result.runs_trained.append(name)
                evaluator.everywhere(name, lambda cfg=cfg: load_run_model(cfg.run_dir).to(device), log)

    result.rows = collect_rows(settings)
    atomic_write_csv(study / "per_case.csv", result.rows, list(PER_CASE_FIELDS))
    result.seconds = time.perf_counter() - start
    return result


def collect_rows(settings: StudySettings) -> list[dict]:
    """Every evaluation row of the study, labelled with its model row and seed."""
    from medsam_focus.metrics import METRIC_NAMES

    study = settings.study_dir
    rows: list[dict] = []
    models = [(ZERO_SHOT, "", ZERO_SHOT, "", -1)]
    for modality in settings.datasets:
        for order, objective in enumerate(settings.objectives):
            for seed in settings.seeds:
                models.append((run_name(modality, objective, seed), modality, objective, seed, order))
    for name, train_modality, objective, seed, order in models:
        for test in settings.datasets:
            path = study / "eval" / name / f"{test}.csv"
            if not path.is_file():
                raise MedsamFocusError(f"missing evaluation {path}; run the study again to complete it")
            for row in _read_rows(path):
                for metric in METRIC_NAMES:
                    row[metric] = float(row[metric])
                row.update(
                    model=name,
                    model_row=ZERO_SHOT if objective == ZERO_SHOT else f"{train_modality} / {objective}",
                    train_modality=train_modality,
                    objective=objective,
                    objective_order=order,
                    seed=seed,
                    test_modality=test,
                )
                rows.append(row)
    return rows


# the evaluation columns, led by what identifies the model row
PER_CASE_FIELDS = ("model_row", "train_modality", "objective", "seed", "test_modality", *ROW_FIELDS, "model")


def load_study_settings(path, overrides=None) -> StudySettings:
    from medsam_focus.config import load_config

    return load_config(path, overrides, cls=StudySettings)


def settings_from_dir(study_dir: str | Path) -> StudySettings:
    path = Path(study_dir) / "study.yaml"
    if not path.is_file():
        raise MedsamFocusError(f"{study_dir} is not a study folder (no study.yaml)")
    return from_dict(StudySettings, yaml.safe_load(path.read_text(encoding="utf-8")), where=str(path))
