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
from medsam_focus.errors import MedsamFocusError
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
    rundir.atomic_write_text(yaml.safe_dump(current, sort_keys=False), path)


def _read_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _evaluate_to(path: Path, model, settings: StudySettings, test_modality: str, progress: bool, desc: str) -> None:
    from medsam_focus.data import SegmentationDataset
    from medsam_focus.engine.cache import EmbeddingCache
    from medsam_focus.engine.evaluate import evaluate_dataset, write_rows
    from medsam_focus.models.lora import encoder_is_frozen

    dataset = SegmentationDataset(
        settings.datasets[test_modality],
        model.frame,
        split=settings.test_split,
        jitter_px=0,
        cache_dir=settings.study_dir / ".cache" / "items",
    )
    cache = EmbeddingCache(settings.study_dir / ".cache", model) if encoder_is_frozen(model) else None
    rows = evaluate_dataset(model, dataset, cache=cache, tolerance=settings.tolerance, progress=progress, desc=desc)
    write_rows(rows, path)


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
    base = None
    for test in modalities:
        path = study / "eval" / ZERO_SHOT / f"{test}.csv"
        if path.is_file():
            result.evals_skipped.append(f"{ZERO_SHOT}:{test}")
            continue
        if base is None:
            base = build_model(settings.model.family, settings.model.checkpoint, settings.model.random_init).to(device)
        log(f"[study] zero-shot {settings.model.family} on {test}")
        _evaluate_to(path, base, settings, test, progress, f"zero-shot on {test}")
        result.evals_computed.append(f"{ZERO_SHOT}:{test}")
    del base

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
                model = None
                for test in modalities:
                    path = study / "eval" / name / f"{test}.csv"
                    if path.is_file():
                        result.evals_skipped.append(f"{name}:{test}")
                        continue
                    if model is None:
                        model = load_run_model(cfg.run_dir).to(device)
                    _evaluate_to(path, model, settings, test, progress, f"{name} on {test}")
                    result.evals_computed.append(f"{name}:{test}")

    result.rows = collect_rows(settings)
    _write_per_case(result.rows, study / "per_case.csv")
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


PER_CASE_FIELDS = (
    "model_row",
    "train_modality",
    "objective",
    "seed",
    "test_modality",
    "sample_id",
    "image_id",
    "case_id",
    "patient_id",
    "dice",
    "iou",
    "hd95",
    "assd",
    "nsd",
    "empty_rule",
    "model",
)


def _write_per_case(rows: list[dict], path: Path) -> None:
    import os

    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PER_CASE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def load_study_settings(path, overrides=None) -> StudySettings:
    from medsam_focus.config import load_config

    return load_config(path, overrides, cls=StudySettings)


def settings_from_dir(study_dir: str | Path) -> StudySettings:
    path = Path(study_dir) / "study.yaml"
    if not path.is_file():
        raise MedsamFocusError(f"{study_dir} is not a study folder (no study.yaml)")
    return from_dict(StudySettings, yaml.safe_load(path.read_text(encoding="utf-8")), where=str(path))
