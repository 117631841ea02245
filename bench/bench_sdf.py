"""Benchmark: medsam_focus.sdf.signed_distance against scipy's exact EDT, same run, same masks.

The baseline computes the same signed distance map (FOCUSSDF.md) with
``scipy.ndimage.distance_transform_edt`` (one transform inside, one outside). The printed
ratio is baseline time / our time (> 1 means we are faster). Run:

    .venv/bin/python bench/bench_sdf.py [--repeats 5] [--batch 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from medsam_focus.sdf import signed_distance


def scipy_signed_distance(mask: np.ndarray) -> np.ndarray:
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return np.where(mask, 0.5 - inside, outside - 0.5).astype(np.float32)


def organ_like_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """A lobed blob covering 5-30 % of the image, the typical case for a segmentation mask."""
    rows, cols = np.mgrid[:size, :size] / size
    mask = np.zeros((size, size), bool)
    for _ in range(3):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        ay, ax = rng.uniform(0.08, 0.25, 2)
        mask |= ((rows - cy) / ay) ** 2 + ((cols - cx) / ax) ** 2 <= 1
    return mask


def best_time(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="masks per timed call")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'size':>6} {'scipy ms/mask':>14} {'ours ms/mask':>13} {'ratio':>7}  max |diff|")
    for size in (256, 512, 1024):
        masks = np.stack([organ_like_mask(size, rng) for _ in range(args.batch)])
        ours = signed_distance(masks)
        reference = np.stack([scipy_signed_distance(m) for m in masks])
        difference = float(np.abs(ours - reference).max())
        t_scipy = best_time(lambda masks=masks: [scipy_signed_distance(m) for m in masks], args.repeats)
        t_ours = best_time(lambda masks=masks: signed_distance(masks), args.repeats)
        print(
            f"{size:>6} {1e3 * t_scipy / args.batch:>14.2f} {1e3 * t_ours / args.batch:>13.2f} "
            f"{t_scipy / t_ours:>6.2f}x  {difference:.1e}"
        )


if __name__ == "__main__":
    main()
