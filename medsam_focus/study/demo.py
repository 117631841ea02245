"""The main job on the embedded default: phantoms for four modalities, then a small study
on LiteMedSAM with its real weights (zero-shot, ``dice`` and ``dice+focussdf`` per modality,
the full transfer matrix and the report).

Decoder-only fine-tuning (``lora.mode=none``, the first MedSAM release's recipe) keeps the
default demo within 15 minutes on a 2-core CPU: every image is encoded once into the
embedding cache and all eight runs and nine evaluations reuse those embeddings. LoRA runs
use the same command with ``--set lora.mode=encoder`` in a study config.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from medsam_focus.config import DataSettings, ModelSettings, TrainSettings
from medsam_focus.models.lora import LoraSettings
from medsam_focus.study.config import StudySettings

# Patients per modality for the demo: about 40 2D images each (24 train / 8 val / 8-12
# test), so that encoding every image once (~1.7 s each on 2 cores) and eight decoder-only
# runs fit in 15 minutes. The phantoms' own "default" preset is about twice as large.
DEMO_PHANTOMS = {"dsa": 14, "cta": 4, "mri": 7, "us": 40}
PRESETS = {
    "default": {"phantoms": DEMO_PHANTOMS, "epochs": 8, "batch_size": 4, "lr": 1e-4},
    "quick": {"phantoms": "quick", "epochs": 2, "batch_size": 4, "lr": 1e-4},
}


def demo_settings(out: Path, manifests: dict, quick: bool, seed: int, epochs: int | None = None) -> StudySettings:
    preset = PRESETS["quick" if quick else "default"]
    return StudySettings(
        name="study",
        output_dir=str(out),
        model=ModelSettings(family="litemedsam"),
        datasets={m: str(p) for m, p in manifests.items()},
        objectives=["dice", "dice+focussdf"],
        seeds=[seed],
        test_split="test",
        bootstrap_samples=2000,
        qualitative_cases=3,
        lora=LoraSettings(mode="none"),
        data=DataSettings(),
        train=TrainSettings(
            epochs=epochs or preset["epochs"],
            batch_size=preset["batch_size"],
            lr=preset["lr"],
            seed=seed,
            best_metric="dice",
        ),
    )


def _phantoms(out: Path, size: str | dict, seed: int, progress: bool) -> dict:
    """Generate the phantoms once; a later demo with the same size and seed reuses them."""
    from medsam_focus.data.phantoms import generate_phantoms

    stamp = out / "phantoms" / "demo.json"
    wanted = {"size": size, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")).get("request") == wanted:
        manifests = {m: Path(p) for m, p in json.loads(stamp.read_text(encoding="utf-8"))["manifests"].items()}
        if all(p.is_file() for p in manifests.values()):
            return manifests
    manifests = generate_phantoms(out / "phantoms", seed=seed, size=size, preview=True, progress=progress)
    stamp.write_text(
        json.dumps({"request": wanted, "manifests": {m: str(p) for m, p in manifests.items()}}), encoding="utf-8"
    )
    return manifests


def run_demo(
    out: str | Path = "demo_out",
    quick: bool = False,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = True,
    quiet: bool = False,
) -> dict:
    """Run the demo; returns paths and the printed tables."""
    from medsam_focus.study.report import transfer_table_text, write_report
    from medsam_focus.study.runner import run_study

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = PRESETS["quick" if quick else "default"]["phantoms"]
    print(f"[demo] phantoms ({'quick' if quick else 'demo size'}) in {out / 'phantoms'}")
    manifests = _phantoms(out, size, seed, progress)
    settings = demo_settings(out, manifests, quick, seed, epochs)
    result = run_study(settings, progress=progress, quiet=quiet)
    report = write_report(settings, result.rows, seconds=time.perf_counter() - start)
    tables = "\n\n".join(transfer_table_text(result.rows, m) for m in ("dice", "nsd", "hd95"))
    print()
    print(tables)
    minutes = (time.perf_counter() - start) / 60
    print(
        f"\n[demo] {len(result.runs_trained)} runs trained, {len(result.runs_skipped)} reused; "
        f"{len(result.evals_computed)} evaluations computed, {len(result.evals_skipped)} reused; {minutes:.1f} min"
    )
    print(f"[demo] report: {report}")
    return {"report": report, "study_dir": settings.study_dir, "tables": tables, "result": result}
