"""The transfer study: statistics, restartability, report files; the quick demo end to end."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from medsam_focus.config import DataSettings, ModelSettings, TrainSettings
from medsam_focus.errors import MedsamFocusError
from medsam_focus.models.lora import LoraSettings
from medsam_focus.study import stats
from medsam_focus.study.config import StudySettings
from medsam_focus.study.report import write_report
from medsam_focus.study.runner import run_study


# --------------------------------------------------------------------------- statistics
def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = np.random.default_rng(0).normal(0.8, 0.05, 60)
    lo, hi = stats.bootstrap_ci(values, 2000, seed=1)
    assert lo < values.mean() < hi
    assert (lo, hi) == stats.bootstrap_ci(values, 2000, seed=1)
    # the interval of the mean shrinks like 1/sqrt(n): about 2 * 1.96 * sd / sqrt(n)
    assert hi - lo == pytest.approx(2 * 1.96 * values.std(ddof=1) / math.sqrt(60), rel=0.2)


def _rows(values_by_seed: dict[int, list[float]], label="us / dice", test="us"):
    rows = []
    for seed, values in values_by_seed.items():
        for k, v in enumerate(values):
            train, objective = label.split(" / ") if label != "zero-shot" else ("", "zero-shot")
            rows.append(
                {
                    "model_row": label,
                    "train_modality": train,
                    "objective": objective,
                    "objective_order": 0,
                    "seed": seed,
                    "test_modality": test,
                    "sample_id": f"s{k}",
                    "dice": v,
                    "empty_rule": "none",
                }
            )
    return rows


def test_cell_summary_averages_cases_over_seeds_and_reports_seed_spread():
    cell = stats.summarise_cell(_rows({0: [0.8, 0.6], 1: [0.6, 0.4]}), "dice", samples=100)
    assert cell["n"] == 2 and cell["seeds"] == 2
    assert cell["mean"] == pytest.approx(0.6)  # cases: 0.7 and 0.5
    assert cell["std"] == pytest.approx(math.sqrt(0.02))
    assert cell["seed_std"] == pytest.approx(math.sqrt(0.02))  # seed means 0.7 and 0.5


def test_wilcoxon_matches_scipy_and_handles_ties():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(3)
    a = {f"s{i}": float(v) for i, v in enumerate(rng.uniform(0.6, 0.9, 30))}
    b = {k: v - 0.02 + rng.normal(0, 0.01) for k, v in a.items()}
    result = stats.wilcoxon_paired(a, b)
    keys = sorted(a)
    expected = wilcoxon([a[k] for k in keys], [b[k] for k in keys]).pvalue
    assert result["p_value"] == pytest.approx(expected) and result["p_value"] < 0.01
    assert result["mean_diff"] == pytest.approx(np.mean([a[k] - b[k] for k in keys]))
    assert stats.wilcoxon_paired(a, dict(a))["p_value"] == 1.0


# --------------------------------------------------------------------------- the runner
@pytest.fixture(scope="module")
def quick_phantoms(tmp_path_factory):
    from medsam_focus.data.phantoms import generate_phantoms

    return generate_phantoms(tmp_path_factory.mktemp("phantoms"), modalities=("us", "dsa"), size="quick")


def tiny_study(tmp_path, manifests, **changes) -> StudySettings:
    settings = StudySettings(
        name="s",
        output_dir=str(tmp_path),
        model=ModelSettings(family="tiny-sam", random_init=True),
        datasets={m: str(p) for m, p in manifests.items()},
        objectives=["dice", "dice+focussdf"],
        seeds=[0],
        bootstrap_samples=200,
        qualitative_cases=2,
        lora=LoraSettings(mode="none"),
        data=DataSettings(),
        train=TrainSettings(epochs=1, batch_size=2, lr=1e-3, device="cpu"),
    )
    for key, value in changes.items():
        setattr(settings, key, value)
    return settings


def test_a_study_restarts_without_recomputing_finished_work(tmp_path, quick_phantoms, monkeypatch):
    import medsam_focus.engine.train as train_mod

    settings = tiny_study(tmp_path, quick_phantoms)
    real = train_mod.finetune
    calls = []

    def interrupted(cfg, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(cfg.name)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(train_mod, "finetune", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(settings, progress=False, quiet=True, log=lambda m: None)
    monkeypatch.setattr(train_mod, "finetune", real)

    second = run_study(settings, progress=False, quiet=True, log=lambda m: None)
    assert second.runs_skipped == calls  # the run finished before the interruption is reused
    assert len(second.runs_trained) == 3
    assert not any(e.startswith("zero-shot") for e in second.evals_computed)

    third = run_study(settings, progress=False, quiet=True, log=lambda m: None)
    assert third.runs_trained == [] and third.runs_resumed == [] and third.evals_computed == []
    assert len(third.runs_skipped) == 4 and len(third.rows) == len(second.rows) == 5 * len(
        {r["sample_id"] for r in second.rows}
    )


def test_a_restart_with_other_settings_is_refused(tmp_path, quick_phantoms):
    run_study(tiny_study(tmp_path, {"us": quick_phantoms["us"]}), progress=False, quiet=True, log=lambda m: None)
    changed = tiny_study(tmp_path, {"us": quick_phantoms["us"]}, seeds=[0, 1])
    with pytest.raises(MedsamFocusError, match="different settings.*seeds"):
        run_study(changed, progress=False, quiet=True, log=lambda m: None)


def _assert_finite_tables(study_dir):
    for metric in ("dice", "nsd", "hd95"):
        with (study_dir / "tables" / f"transfer_{metric}.csv").open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert rows
        for row in rows:
            for key, value in row.items():
                if key != "model":
                    assert math.isfinite(float(value)), (metric, row)
        with (study_dir / "tables" / f"summary_{metric}.csv").open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for key in ("mean", "std", "ci_low", "ci_high", "seed_std"):
                    assert math.isfinite(float(row[key])), (metric, key, row)


def test_report_tables_figures_and_paragraphs(tmp_path, quick_phantoms):
    settings = tiny_study(tmp_path, quick_phantoms)
    result = run_study(settings, progress=False, quiet=True, log=lambda m: None)
    report = write_report(settings, result.rows, seconds=result.seconds)
    text = report.read_text(encoding="utf-8")
    study = settings.study_dir
    _assert_finite_tables(study)
    for name in (
        "transfer_dice.png",
        "transfer_nsd.png",
        "transfer_hd95.png",
        "boxplot_dice.png",
        "boxplot_nsd.png",
        "training_curves.png",
        "qualitative_us.png",
        "qualitative_dsa.png",
    ):
        path = study / "figures" / name
        assert path.is_file() and path.stat().st_size > 5000, name
        assert f"figures/{name}" in text
    assert "**US**" in text and "**DSA**" in text and "Wilcoxon p =" in text
    # the paragraph's zero-shot number is the table's number
    with (study / "tables" / "transfer_dice.csv").open(encoding="utf-8") as handle:
        zero = next(r for r in csv.DictReader(handle) if r["model"] == "zero-shot")
    assert f"Zero-shot: Dice {float(zero['us']):.3f}" in text
    with (study / "per_case.csv").open(encoding="utf-8") as handle:
        cases = list(csv.DictReader(handle))
    assert {c["model_row"] for c in cases} == {
        "zero-shot",
        "us / dice",
        "us / dice+focussdf",
        "dsa / dice",
        "dsa / dice+focussdf",
    }


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    from medsam_focus.study.demo import run_demo

    out = run_demo(tmp_path / "demo", quick=True, progress=False, quiet=True)
    study = out["study_dir"]
    assert (study / "report.md").is_file() and (study / "per_case.csv").is_file()
    _assert_finite_tables(study)
    printed = capsys.readouterr().out
    assert "DICE transfer matrix" in printed and "report:" in printed
