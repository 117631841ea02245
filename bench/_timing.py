"""Shared helpers for the CPU benchmarks: interleaved timing, medians, tables and synthetic scans.

The benchmark machines are shared, so a timing taken minutes apart from its baseline says
little. Every benchmark here therefore runs its cases *interleaved*: round r runs each case
once (in an order rotated every round, so no case always follows the same neighbour), and
the reported figure is the median over rounds. Warm-up calls are run first and never timed.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np


def interleaved(
    cases: dict[str, Callable[[], object]],
    repeats: int,
    warmup: Sequence[Callable[[], object]] = (),
    rounds_for: dict[str, int] | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Time every case once per round, ``repeats`` rounds, after running ``warmup`` untimed.

    Args:
        cases: name -> zero-argument callable (one timed unit of work).
        repeats: number of rounds.
        warmup: callables run once each before the first round (not timed).
        rounds_for: name -> number of rounds that case takes part in (the first ones); for
            cases too slow to repeat as often as the others. Default: every round.
        progress: print one line per round, so a long run shows it is alive.

    Returns:
        name -> list of wall-clock seconds, one per round the case ran in.
    """
    for function in warmup:
        function()
    rounds_for = rounds_for or {}
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if len(times[name]) >= rounds_for.get(name, repeats):
                continue
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
        if progress:
            done = ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names if len(times[n]) == r + 1)
            print(f"  round {r + 1}/{repeats}: {done}", flush=True)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """'min..max' of the rounds, so the reader sees how noisy the machine was."""
    low, high = min(values), max(values)
    digits = 0 if high >= 100 else 2 if high >= 1 else 3
    return f"{low:.{digits}f}..{high:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table; floats are printed with 4 significant digits."""
    cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def machine_line() -> str:
    """Date, CPU count, torch threads and load average: the context a timing needs."""
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?", "?", "?")
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')} | {platform.machine()} {os.cpu_count()} CPUs | "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads | load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def contention_note() -> str | None:
    """A warning when other jobs load the machine while torch uses several threads.

    Two torch threads on two busy cores wait for each other at every operator; models with
    many small operators (the mask decoder) then get several times slower and erratic.
    """
    import torch

    if not hasattr(os, "getloadavg") or torch.get_num_threads() < 2:
        return None
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load < 0.5 * cpus:
        return None
    return (
        f"note: load average {load:.1f} on {cpus} CPUs before this run: other jobs are running and "
        f"{torch.get_num_threads()} torch threads will wait on each other; small-operator timings get slow and "
        "erratic. For steadier figures on a shared machine use --threads 1."
    )


def synthetic_scan(height: int, width: int, n_objects: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey 0..255 image with ``n_objects`` bright ellipses on smooth noise, and their masks.

    Speed does not depend on image content; the objects only make the boxes and masks
    realistic (an object per box, 1-10 % of the image each).

    Returns:
        image (H, W) uint8 and masks (n_objects, H, W) bool.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    image = rng.normal(60.0, 15.0, (height, width)).astype(np.float32)
    masks = np.zeros((n_objects, height, width), dtype=bool)
    for k in range(n_objects):
        cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
        ry, rx = rng.uniform(0.05, 0.12) * height, rng.uniform(0.05, 0.12) * width
        masks[k] = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0
        image[masks[k]] += rng.uniform(60.0, 120.0)
    return np.clip(image, 0, 255).astype(np.uint8), masks


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) masks -> (N, 4) float32 ``[x_min, y_min, x_max, y_max]`` in the masks' pixels."""
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return np.asarray(boxes, dtype=np.float32)
