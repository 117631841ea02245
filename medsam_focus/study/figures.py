"""Figures of a study (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medsam_focus.study.stats import HIGHER_IS_BETTER, transfer_matrix

METRIC_TITLES = {"dice": "Dice", "nsd": "NSD", "hd95": "HD95", "iou": "IoU", "assd": "ASSD"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    _plt().close(fig)
    return path


def transfer_heatmap(rows: list[dict], metric: str, path: Path, unit: str = "") -> Path:
    """Rows: zero-shot and each training modality x objective; columns: test modalities."""
    plt = _plt()
    labels, tests, means, spread = transfer_matrix(rows, metric)
    fig, ax = plt.subplots(figsize=(1.6 * len(tests) + 3.2, 0.48 * len(labels) + 1.4))
    cmap = "viridis" if HIGHER_IS_BETTER[metric] else "viridis_r"
    finite = means[np.isfinite(means)]
    vmin, vmax = (0.0, 1.0) if metric in ("dice", "nsd", "iou") else (float(finite.min()), float(finite.max()))
    image = ax.imshow(means, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(len(labels)):
        for j in range(len(tests)):
            value = means[i, j]
            text = f"{value:.3f}" if metric in ("dice", "nsd", "iou") else f"{value:.1f}"
            if spread[i, j] > 0:
                text += f"\n±{spread[i, j]:.3f}" if metric in ("dice", "nsd", "iou") else f"\n±{spread[i, j]:.1f}"
            shade = (value - vmin) / max(vmax - vmin, 1e-12)
            dark = shade < 0.5 if HIGHER_IS_BETTER[metric] else shade > 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
            train = labels[i].split(" / ")[0]
            if train == tests[j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    ax.set_xticks(range(len(tests)), [t.upper() for t in tests])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("test modality")
    ax.set_ylabel("model (training modality / objective)")
    title = f"Transfer matrix: {METRIC_TITLES[metric]}{f' ({unit})' if unit else ''}"
    ax.set_title(title + ("" if HIGHER_IS_BETTER[metric] else ", lower is better") + "\nred frame: in-domain")
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _save(fig, path)


def box_plots(rows: list[dict], metric: str, path: Path) -> Path:
    """Per test modality, the distribution of per-case values (seed-averaged) of every model row."""
    from medsam_focus.study.stats import case_values, model_rows

    plt = _plt()
    tests = sorted({r["test_modality"] for r in rows})
    labels = model_rows(rows)
    fig, axes = plt.subplots(1, len(tests), figsize=(3.6 * len(tests), 0.28 * len(labels) + 2.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, test in zip(axes, tests, strict=True):
        data, colours = [], []
        for label in labels:
            cell = [r for r in rows if r["model_row"] == label and r["test_modality"] == test]
            data.append(list(case_values(cell, metric).values()) or [np.nan])
            train = label.split(" / ")[0]
            colours.append("#888888" if label == "zero-shot" else ("#d62728" if train == test else "#1f77b4"))
        parts = ax.boxplot(data, orientation="horizontal", patch_artist=True, widths=0.6, showfliers=True)
        for patch, colour in zip(parts["boxes"], colours, strict=True):
            patch.set_facecolor(colour)
            patch.set_alpha(0.55)
        ax.set_title(f"test: {test.upper()}")
        ax.set_xlabel(METRIC_TITLES[metric])
        ax.set_yticks(range(1, len(labels) + 1), labels)
        ax.invert_yaxis()
    fig.suptitle(f"{METRIC_TITLES[metric]} per case (grey: zero-shot, red: in-domain, blue: other training modality)")
    fig.tight_layout()
    return _save(fig, path)


def training_curves(run_dirs: dict[str, Path], path: Path) -> Path:
    """Validation Dice and training loss per epoch of every run, one panel per training modality."""
    plt = _plt()
    by_modality: dict[str, list[tuple[str, list[dict]]]] = {}
    for name, run_dir in run_dirs.items():
        metrics = run_dir / "metrics.jsonl"
        if not metrics.is_file():
            continue
        epochs = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        by_modality.setdefault(name.split("__")[0], []).append((name, epochs))
    modalities = sorted(by_modality)
    fig, axes = plt.subplots(2, max(len(modalities), 1), figsize=(3.8 * max(len(modalities), 1), 6.2), squeeze=False)
    for j, modality in enumerate(modalities):
        for name, epochs in by_modality[modality]:
            label = name.split("__", 1)[1].replace("__", " ")
            x = [e["epoch"] + 1 for e in epochs]
            axes[0, j].plot(x, [e["val_dice"] for e in epochs], marker="o", ms=3, label=label)
            axes[1, j].plot(x, [e["train_loss"] for e in epochs], marker="o", ms=3, label=label)
        axes[0, j].set_title(f"trained on {modality.upper()}")
        axes[0, j].set_ylabel("validation Dice")
        axes[1, j].set_ylabel("training loss")
        axes[1, j].set_xlabel("epoch")
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def error_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB image with false positives in red, false negatives in blue, the true contour in green."""
    import cv2

    grey = image if image.ndim == 2 else image.mean(axis=2)
    grey = grey.astype(np.float32)
    grey = (grey - grey.min()) / max(float(grey.max() - grey.min()), 1e-6)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    fp = pred & ~truth
    fn = truth & ~pred
    rgb[fp] = 0.45 * rgb[fp] + 0.55 * np.array([1.0, 0.1, 0.1])
    rgb[fn] = 0.45 * rgb[fn] + 0.55 * np.array([0.1, 0.3, 1.0])
    contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    canvas = np.ascontiguousarray((rgb * 255).astype(np.uint8))
    cv2.drawContours(canvas, contours, -1, (40, 220, 40), 1)
    return canvas


def qualitative_panel(cases: list[dict], objectives: tuple[str, str], path: Path) -> Path:
    """Rows of (image, ground truth, prediction of objective A, of objective B) with errors shown.

    Each case dict holds ``title``, ``image``, ``truth``, ``preds`` (two masks) and
    ``scores`` (two (dice, nsd) pairs); images are cropped around the object.
    """
    plt = _plt()
    if not cases:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no cases", ha="center")
        return _save(fig, path)
    fig, axes = plt.subplots(len(cases), 4, figsize=(11, 2.8 * len(cases)), squeeze=False)
    for i, case in enumerate(cases):
        image, truth = case["image"], case["truth"]
        rows, cols = np.nonzero(truth | case["preds"][0] | case["preds"][1])
        pad = 24
        r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, truth.shape[0])
        c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, truth.shape[1])
        crop = (slice(r0, r1), slice(c0, c1))
        axes[i, 0].imshow(image[crop], cmap="gray")
        axes[i, 0].set_title(case["title"], fontsize=8)
        axes[i, 1].imshow(error_overlay(image[crop], truth[crop], truth[crop]))
        axes[i, 1].set_title("ground truth (green contour)", fontsize=8)
        for k in range(2):
            dice, nsd = case["scores"][k]
            axes[i, 2 + k].imshow(error_overlay(image[crop], truth[crop], case["preds"][k][crop]))
            axes[i, 2 + k].set_title(f"{objectives[k]}: Dice {dice:.3f}, NSD {nsd:.3f}", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle("red: false positive, blue: false negative, green: true boundary", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
