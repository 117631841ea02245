"""Benchmark: batch_segmentation_metrics against DeepMind's surface-distance, per-mask loop.

The baseline is what an evaluation script does with the reference package: for every pair,
``compute_surface_distances`` then HD95, NSD and the average distances, plus Dice. Both run
on the same N pairs of 256 x 256 masks in the same process; the ratio is baseline time / our
time (> 1 means we are faster). Run:

    .venv/bin/python bench/bench_metrics.py [--count 1000] [--size 256]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import ndimage

from medsam_focus.metrics import batch_segmentation_metrics


def deepmind_loop(preds: np.ndarray, gts: np.ndarray, spacing, tolerance: float) -> np.ndarray:
    # surface-distance 0.1 predates NumPy 2 (np.Inf) and uses deprecated scipy namespaces.
    if "Inf" not in vars(np):
        np.Inf = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import surface_distance as sd

        out = np.zeros((len(preds), 4))
        for index, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
            distances = sd.compute_surface_distances(gt, pred, list(spacing))
            out[index] = (
                sd.compute_dice_coefficient(gt, pred),
                sd.compute_robust_hausdorff(distances, 95),
                sd.compute_surface_dice_at_tolerance(distances, tolerance),
                np.mean(sd.compute_average_surface_distance(distances)),
            )
    return out


def make_pairs(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Organ-like ground truths and imperfect predictions (shifted, grown, noisy boundaries)."""
    rows, cols = np.mgrid[:size, :size] / size
    gts = np.zeros((count, size, size), bool)
    preds = np.zeros_like(gts)
    for index in range(count):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0.25, 0.75, 2)
            ay, ax = rng.uniform(0.05, 0.2, 2)
            gts[index] |= ((rows - cy) / ay) ** 2 + ((cols - cx) / ax) ** 2 <= 1
        pred = np.roll(gts[index], tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
        pred = ndimage.binary_dilation(pred) if index % 2 else pred
        edge = pred ^ ndimage.binary_erosion(pred)
        preds[index] = pred ^ (edge & (rng.random((size, size)) < 0.2))
    return preds, gts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--baseline-count", type=int, default=None, help="pairs for the baseline (default: all)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    preds, gts = make_pairs(args.count, args.size, rng)
    spacing, tolerance = (0.8, 0.8), 2.0

    start = time.perf_counter()
    ours = batch_segmentation_metrics(preds, gts, spacing=spacing, tolerance=tolerance)
    t_ours = time.perf_counter() - start

    n_base = args.baseline_count or args.count
    start = time.perf_counter()
    reference = deepmind_loop(preds[:n_base], gts[:n_base], spacing, tolerance)
    t_base = (time.perf_counter() - start) * args.count / n_base

    hd_diff = np.abs(ours["hd95"][:n_base] - reference[:, 1]).max()
    nsd_diff = np.abs(ours["nsd"][:n_base] - reference[:, 2]).max()
    print(f"{args.count} pairs of {args.size} x {args.size}, spacing {spacing}, NSD tolerance {tolerance}")
    print(f"  DeepMind surface-distance loop: {t_base:7.2f} s" + ("" if n_base == args.count else " (extrapolated)"))
    print(f"  batch_segmentation_metrics:     {t_ours:7.2f} s")
    print(f"  ratio (baseline / ours):        {t_base / t_ours:7.2f}x")
    print(f"  max |diff| vs baseline: hd95 {hd_diff:.1e}, nsd {nsd_diff:.1e}")


if __name__ == "__main__":
    main()
