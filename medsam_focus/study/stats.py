"""Statistics of a study: summaries with bootstrap intervals and seed spread, transfer
matrices, paired Wilcoxon tests.

Conventions (stated in the report too):

- A *case* is one object of one test image (one manifest row).
- A model row is ``zero-shot`` or ``<training modality> / <objective>``; with several seeds,
  a case's value is first averaged over seeds, then cases are summarised: mean, standard
  deviation, and a 95 % percentile-bootstrap interval of the mean (cases resampled).
- The seed spread is the standard deviation, over seeds, of each seed's mean over cases: the
  run-to-run noise every comparison between objectives must be read against.
- Paired tests: two-sided Wilcoxon signed-rank on the per-case (seed-averaged) values of the
  same cases; when every difference is zero the p-value is 1.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

METRICS = ("dice", "nsd", "hd95", "iou", "assd")
HIGHER_IS_BETTER = {"dice": True, "nsd": True, "iou": True, "hd95": False, "assd": False}


def bootstrap_ci(values: np.ndarray, samples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1 or samples <= 0:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def row_label(row: dict) -> str:
    return "zero-shot" if row["objective"] == "zero-shot" else f"{row['train_modality']} / {row['objective']}"


def _by(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return groups


def case_values(rows: list[dict], metric: str) -> dict[str, float]:
    """{sample_id: value averaged over seeds} for rows of one model row and test modality."""
    per_case: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per_case[row["sample_id"]].append(float(row[metric]))
    return {k: float(np.mean(v)) for k, v in per_case.items()}


def summarise_cell(rows: list[dict], metric: str, samples: int = 2000) -> dict:
    """Summary of one (model row, test modality) cell for ``metric``."""
    values = np.array(list(case_values(rows, metric).values()))
    seed_means = [np.mean([float(r[metric]) for r in group]) for group in _by(rows, "seed").values()]
    lo, hi = bootstrap_ci(values, samples)
    return {
        "n": int(len(values)),
        "seeds": len(seed_means),
        "mean": float(values.mean()) if len(values) else math.nan,
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "ci_low": lo,
        "ci_high": hi,
        "seed_std": float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else 0.0,
        "empty_cases": int(sum(1 for r in rows if r.get("empty_rule", "none") != "none")),
    }


def model_rows(rows: list[dict]) -> list[str]:
    """Model row labels in report order: zero-shot first, then training modality and objective."""
    seen: list[str] = []
    for row in sorted(rows, key=lambda r: (r["objective"] != "zero-shot", r["train_modality"], r["objective_order"])):
        label = row_label(row)
        if label not in seen:
            seen.append(label)
    return seen


def summary_table(rows: list[dict], metric: str, samples: int = 2000) -> list[dict]:
    """One line per (model row, test modality) with the cell summary."""
    out = []
    groups = _by(rows, "model_row", "test_modality")
    for label in model_rows(rows):
        for test in sorted({r["test_modality"] for r in rows}):
            cell = groups.get((label, test))
            if cell:
                out.append(
                    {"model": label, "test_modality": test, "metric": metric, **summarise_cell(cell, metric, samples)}
                )
    return out


def transfer_matrix(rows: list[dict], metric: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(row labels, test modalities, means, seed spreads) for ``metric``."""
    labels = model_rows(rows)
    tests = sorted({r["test_modality"] for r in rows})
    means = np.full((len(labels), len(tests)), np.nan)
    spread = np.full_like(means, np.nan)
    groups = _by(rows, "model_row", "test_modality")
    for i, label in enumerate(labels):
        for j, test in enumerate(tests):
            cell = groups.get((label, test))
            if cell:
                summary = summarise_cell(cell, metric, samples=0)
                means[i, j], spread[i, j] = summary["mean"], summary["seed_std"]
    return labels, tests, means, spread


def wilcoxon_paired(a: dict[str, float], b: dict[str, float]) -> dict:
    """Two-sided Wilcoxon signed-rank test on the cases present in both ``a`` and ``b``."""
    from scipy.stats import wilcoxon

    common = sorted(set(a) & set(b))
    x = np.array([a[k] for k in common])
    y = np.array([b[k] for k in common])
    diff = x - y
    result = {"n": len(common), "mean_diff": float(diff.mean()) if len(diff) else math.nan}
    result["median_diff"] = float(np.median(diff)) if len(diff) else math.nan
    if len(common) == 0:
        result["p_value"] = math.nan
    elif np.all(diff == 0):
        result["p_value"] = 1.0
    else:
        result["p_value"] = float(wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
    return result


def objective_tests(rows: list[dict], metric: str, objectives: list[str]) -> list[dict]:
    """In-domain paired tests per test modality: every objective pair, and each vs zero-shot."""
    out = []
    tests = sorted({r["test_modality"] for r in rows})
    groups = _by(rows, "model_row", "test_modality")
    for test in tests:
        zero = groups.get(("zero-shot", test), [])
        labels = [f"{test} / {o}" for o in objectives]
        values = {label: case_values(groups.get((label, test), []), metric) for label in labels}
        pairs = [(labels[i], labels[j]) for i in range(len(labels)) for j in range(i + 1, len(labels))]
        pairs += [(label, "zero-shot") for label in labels]
        for first, second in pairs:
            a = values[first]
            b = case_values(zero, metric) if second == "zero-shot" else values[second]
            if not a or not b:
                continue
            spread = max(
                summarise_cell(groups.get((first, test), []), metric, 0)["seed_std"],
                summarise_cell(groups.get((second, test), []) if second != "zero-shot" else zero, metric, 0)[
                    "seed_std"
                ],
            )
            out.append(
                {"test_modality": test, "metric": metric, "a": first, "b": second, "seed_spread": spread}
                | wilcoxon_paired(a, b)
            )
    return out
