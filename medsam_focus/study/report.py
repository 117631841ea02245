"""The study report: tables (Markdown + CSV), figures and ``report.md``.

Every sentence of the report that states a result is generated from the numbers in the
tables written next to it; nothing is hand-written about outcomes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medsam_focus.io import atomic_write_csv, atomic_write_text
from medsam_focus.study.config import StudySettings
from medsam_focus.study.stats import (
    case_values,
    objective_tests,
    summary_table,
    transfer_matrix,
)

TABLE_METRICS = ("dice", "nsd", "hd95")


def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if metric in ("dice", "nsd", "iou") else f"{value:.2f}"


def summary_markdown(table: list[dict], metric: str) -> str:
    lines = [
        "| model | test | n | seeds | mean | std | 95% CI | seed spread | empty-mask cases |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table:
        lines.append(
            f"| {r['model']} | {r['test_modality']} | {r['n']} | {r['seeds']} | {_fmt(r['mean'], metric)} | "
            f"{_fmt(r['std'], metric)} | [{_fmt(r['ci_low'], metric)}, {_fmt(r['ci_high'], metric)}] | "
            f"{_fmt(r['seed_std'], metric)} | {r['empty_cases']} |"
        )
    return "\n".join(lines)


def matrix_markdown(rows: list[dict], metric: str) -> tuple[str, list[dict]]:
    labels, tests, means, spread = transfer_matrix(rows, metric)
    header = "| model | " + " | ".join(t.upper() for t in tests) + " |"
    lines = [header, "| --- |" + " --- |" * len(tests)]
    records = []
    for i, label in enumerate(labels):
        cells = []
        record = {"model": label}
        for j, test in enumerate(tests):
            text = _fmt(means[i, j], metric)
            if spread[i, j] > 0:
                text += f" ± {_fmt(spread[i, j], metric)}"
            if label.split(" / ")[0] == test:
                text = f"**{text}**"
            cells.append(text)
            record[test] = means[i, j]
            record[f"{test}_seed_std"] = spread[i, j]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        records.append(record)
    return "\n".join(lines), records


def tests_markdown(tests: list[dict]) -> str:
    lines = [
        "| test | metric | A | B | n | mean A−B | median A−B | p (Wilcoxon) | seed spread |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in tests:
        m = t["metric"]
        lines.append(
            f"| {t['test_modality']} | {m} | {t['a']} | {t['b']} | {t['n']} | {_fmt(t['mean_diff'], m)} | "
            f"{_fmt(t['median_diff'], m)} | {t['p_value']:.3g} | {_fmt(t['seed_spread'], m)} |"
        )
    return "\n".join(lines)


def _paragraph(modality: str, rows: list[dict], settings: StudySettings, tests: list[dict]) -> str:
    """One generated paragraph: what the numbers say for one test modality."""
    labels, mods, dice, dice_spread = transfer_matrix(rows, "dice")
    _, _, nsd, _ = transfer_matrix(rows, "nsd")
    _, _, hd, _ = transfer_matrix(rows, "hd95")
    j = mods.index(modality)
    row_of = {label: i for i, label in enumerate(labels)}
    n = len(case_values([r for r in rows if r["model_row"] == "zero-shot" and r["test_modality"] == modality], "dice"))
    z = row_of["zero-shot"]
    parts = [
        f"**{modality.upper()}** ({n} test objects). Zero-shot: Dice {dice[z, j]:.3f}, NSD {nsd[z, j]:.3f}, "
        f"HD95 {hd[z, j]:.2f}."
    ]
    in_domain = [(o, row_of.get(f"{modality} / {o}")) for o in settings.objectives]
    in_domain = [(o, i) for o, i in in_domain if i is not None]
    for objective, i in in_domain:
        seeds = len(settings.seeds)
        spread = f" (seed spread ±{dice_spread[i, j]:.3f} over {seeds} seeds)" if seeds > 1 else " (one seed)"
        delta = dice[i, j] - dice[z, j]
        parts.append(
            f"Fine-tuned on {modality.upper()} with `{objective}`: Dice {dice[i, j]:.3f}{spread}, "
            f"{'+' if delta >= 0 else '−'}{abs(delta):.3f} over zero-shot; NSD {nsd[i, j]:.3f}, HD95 {hd[i, j]:.2f}."
        )
    for t in tests:
        if t["test_modality"] != modality or t["b"] == "zero-shot" or t["metric"] not in ("dice", "nsd"):
            continue
        verdict = "a significant" if t["p_value"] < 0.05 else "no significant"
        within = (
            "smaller than the between-seed spread"
            if abs(t["mean_diff"]) <= t["seed_spread"]
            else "larger than the between-seed spread"
            if t["seed_spread"] > 0
            else "not comparable with a seed spread (one seed)"
        )
        parts.append(
            f"`{t['a'].split(' / ')[1]}` vs `{t['b'].split(' / ')[1]}` on {t['metric'].upper()}: mean paired "
            f"difference {t['mean_diff']:+.3f} over {t['n']} objects, Wilcoxon p = {t['p_value']:.3g} "
            f"({verdict} difference at 0.05; the difference is {within})."
        )
    others = [
        (label, dice[i, j])
        for label, i in row_of.items()
        if label != "zero-shot" and label.split(" / ")[0] != modality and np.isfinite(dice[i, j])
    ]
    if others:
        best_label, best_value = max(others, key=lambda x: x[1])
        worst_label, worst_value = min(others, key=lambda x: x[1])
        parts.append(
            f"Transfer from other modalities ranges from Dice {worst_value:.3f} ({worst_label}) to "
            f"{best_value:.3f} ({best_label}); zero-shot is {dice[z, j]:.3f}."
        )
    return " ".join(parts)


def _qualitative_cases(settings: StudySettings, rows: list[dict], modality: str, per_modality: int) -> list[dict]:
    """Cases for the panel: the median case of the last objective and the largest NSD
    differences in each direction between the first two objectives (seed 0, in-domain)."""
    from medsam_focus.data import SegmentationDataset
    from medsam_focus.infer import predict
    from medsam_focus.metrics import segmentation_metrics
    from medsam_focus.models.finetuned import load_run_model
    from medsam_focus.study.runner import run_name

    if len(settings.objectives) < 2 or per_modality <= 0:
        return []
    first, second = settings.objectives[0], settings.objectives[1]
    seed = settings.seeds[0]
    names = [run_name(modality, o, seed) for o in (first, second)]
    cell = {
        name: {r["sample_id"]: r for r in rows if r["model"] == name and r["test_modality"] == modality}
        for name in names
    }
    common = sorted(set(cell[names[0]]) & set(cell[names[1]]))
    if not common:
        return []
    diff = {k: cell[names[1]][k]["nsd"] - cell[names[0]][k]["nsd"] for k in common}
    by_dice = sorted(common, key=lambda k: cell[names[1]][k]["dice"])
    chosen: list[tuple[str, str]] = [(by_dice[len(by_dice) // 2], f"median {second} Dice")]
    ordered = sorted(common, key=lambda k: diff[k])
    for key, why in ((ordered[-1], f"largest NSD gain of {second}"), (ordered[0], f"largest NSD loss of {second}")):
        if key not in [c for c, _ in chosen]:
            chosen.append((key, why))
    chosen = chosen[:per_modality]
    models = [load_run_model(settings.study_dir / "runs" / name) for name in names]
    dataset = SegmentationDataset(settings.datasets[modality], models[0].frame, split=settings.test_split, jitter_px=0)
    where = {}
    for i in range(len(dataset)):
        for k, sample in enumerate(dataset.rows(i)):
            where[sample.sample_id] = (i, k)
    cases = []
    for sample_id, why in chosen:
        if sample_id not in where:
            continue
        i, k = where[sample_id]
        item = dataset.original(i)
        preds, scores = [], []
        for model in models:
            mask = predict(model, item.image, item.boxes_orig[k : k + 1])[0]
            m = segmentation_metrics(mask, item.masks[k], spacing=item.spacing, tolerance=settings.tolerance)
            preds.append(mask)
            scores.append((m["dice"], m["nsd"]))
        cases.append(
            {
                "title": f"{modality.upper()} {sample_id} ({why})",
                "image": item.image,
                "truth": item.masks[k],
                "preds": preds,
                "scores": scores,
            }
        )
    return cases


def write_report(settings: StudySettings, rows: list[dict], seconds: float | None = None) -> Path:
    """Write tables, figures and report.md into the study folder; returns report.md's path."""
    from medsam_focus.study import figures
    from medsam_focus.study.runner import run_name

    study = settings.study_dir
    tables, figs = study / "tables", study / "figures"
    modalities = list(settings.datasets)
    unit = "spacing units (mm for medical files, pixels for PNG)"

    sections: dict[str, str] = {}
    all_tests: list[dict] = []
    for metric in TABLE_METRICS:
        table = summary_table(rows, metric, settings.bootstrap_samples)
        atomic_write_csv(tables / f"summary_{metric}.csv", table)
        md = summary_markdown(table, metric)
        atomic_write_text(tables / f"summary_{metric}.md", md + "\n")
        matrix_md, records = matrix_markdown(rows, metric)
        atomic_write_csv(tables / f"transfer_{metric}.csv", records)
        atomic_write_text(tables / f"transfer_{metric}.md", matrix_md + "\n")
        sections[metric] = matrix_md
        figures.transfer_heatmap(rows, metric, figs / f"transfer_{metric}.png", unit="" if metric != "hd95" else "")
        all_tests += objective_tests(rows, metric, settings.objectives)
    atomic_write_csv(tables / "wilcoxon.csv", all_tests)
    atomic_write_text(tables / "wilcoxon.md", tests_markdown(all_tests) + "\n")
    for metric in ("dice", "nsd"):
        figures.box_plots(rows, metric, figs / f"boxplot_{metric}.png")
    run_dirs = {
        run_name(m, o, s): study / "runs" / run_name(m, o, s)
        for m in modalities
        for o in settings.objectives
        for s in settings.seeds
    }
    figures.training_curves(run_dirs, figs / "training_curves.png")
    panels = []
    if len(settings.objectives) >= 2:
        for modality in modalities:
            cases = _qualitative_cases(settings, rows, modality, settings.qualitative_cases)
            path = figs / f"qualitative_{modality}.png"
            figures.qualitative_panel(cases, (settings.objectives[0], settings.objectives[1]), path)
            panels.append(path)

    empty = {}
    for r in rows:
        empty[r["empty_rule"]] = empty.get(r["empty_rule"], 0) + 1
    lines = [
        f"# Transfer study: {settings.name}",
        "",
        f"Base model `{settings.model.family}`"
        + (f" ({settings.model.checkpoint})" if settings.model.checkpoint else " (default weights)")
        + f"; fine-tuning policy `lora.mode={settings.lora.mode}`; objectives "
        + ", ".join(f"`{o}`" for o in settings.objectives)
        + f"; seeds {settings.seeds}; {settings.train.epochs} epochs, lr {settings.train.lr:g}, "
        f"batch {settings.train.batch_size}; test split `{settings.test_split}`; NSD tolerance "
        f"{settings.tolerance:g} {unit}.",
        "",
        "How to read this: a case is one test object, prompted with the tight box of its ground-truth mask. "
        "Cells are means over cases (per-case values first averaged over seeds); ± is the between-seed "
        "spread (standard deviation of the per-seed means), which any difference between objectives must "
        "exceed to mean much. In-domain cells (trained and tested on the same modality) are bold / framed. "
        "Empty-mask rules applied: " + ", ".join(f"{k}: {v}" for k, v in sorted(empty.items())) + ".",
        "",
        "## What the numbers show",
        "",
    ]
    paragraph_tests = [t for t in all_tests if t["metric"] in ("dice", "nsd")]
    for modality in modalities:
        lines += [_paragraph(modality, rows, settings, paragraph_tests), ""]
    for metric in TABLE_METRICS:
        title = {"dice": "Dice", "nsd": "NSD", "hd95": f"HD95 ({unit}, lower is better)"}[metric]
        lines += [
            f"## Transfer matrix: {title}",
            "",
            sections[metric],
            "",
            f"![{metric} transfer matrix](figures/transfer_{metric}.png)",
            "",
            f"Full summary with 95% bootstrap intervals: [tables/summary_{metric}.md](tables/summary_{metric}.md)",
            "",
        ]
    lines += [
        "## Paired tests between objectives (in-domain)",
        "",
        (tables / "wilcoxon.md").read_text(encoding="utf-8"),
        "## Distributions",
        "",
        "![Dice per case](figures/boxplot_dice.png)",
        "",
        "![NSD per case](figures/boxplot_nsd.png)",
        "",
    ]
    if panels:
        lines += [
            "## Qualitative comparison",
            "",
            f"Seed {settings.seeds[0]}, in-domain models, `{settings.objectives[0]}` vs `{settings.objectives[1]}`. "
            "Cases: the median case and the largest NSD differences in each direction (chosen by rule, "
            "not by eye).",
            "",
        ]
        lines += [f"![{p.stem}](figures/{p.name})\n" for p in panels]
    lines += ["## Training curves", "", "![training curves](figures/training_curves.png)", ""]
    if seconds is not None:
        lines += [f"Study wall time: {seconds / 60:.1f} min.", ""]
    report = study / "report.md"
    atomic_write_text(report, "\n".join(lines))
    return report


def transfer_table_text(rows: list[dict], metric: str = "dice") -> str:
    """A plain-text transfer matrix for the terminal."""
    labels, tests, means, spread = transfer_matrix(rows, metric)
    width = max(len(label) for label in labels) + 2
    out = [f"{metric.upper()} transfer matrix (rows: model, columns: test modality)"]
    out.append(" " * width + "".join(f"{t.upper():>16s}" for t in tests))
    for i, label in enumerate(labels):
        cells = []
        for j in range(len(tests)):
            text = _fmt(means[i, j], metric) + (f"±{_fmt(spread[i, j], metric)}" if spread[i, j] > 0 else "")
            cells.append(f"{text:>16s}")
        out.append(f"{label:<{width}s}" + "".join(cells))
    return "\n".join(out)
