"""`medsam-focus finetune`, `evaluate` and `export`: the fine-tuning engine's commands."""

from __future__ import annotations

from medsam_focus.cli import add_command

FINETUNE_EXAMPLES = """
  medsam-focus finetune --config configs/us.yaml
  medsam-focus finetune --config configs/cta.yaml --set train.lr=5e-5 --set loss=dice+focussdf
  medsam-focus finetune --config configs/us.yaml --set lora.mode=none --set name=us-decoder-only
  medsam-focus finetune --resume runs/us-dice+focussdf
  accelerate launch --num_processes 2 -m medsam_focus finetune --config configs/mri.yaml   # multi-GPU
  torchrun --nproc_per_node 4 -m medsam_focus finetune --config configs/cta.yaml
"""

EVALUATE_EXAMPLES = """
  medsam-focus evaluate --model litemedsam --data data/us/manifest.csv --split test --out eval/us-zero-shot
  medsam-focus evaluate --model runs/us-dice+focussdf --data data/dsa/manifest.csv --split test --out eval/us-on-dsa
"""

EXPORT_EXAMPLES = """
  medsam-focus export runs/us-dice+focussdf --merged us_litemedsam.pth
  medsam-focus infer --model litemedsam --checkpoint us_litemedsam.pth --image us.png --box 40,50,150,140 --out m.png
"""


def register(subparsers) -> None:
    p = add_command(
        subparsers, "finetune", "fine-tune a model on one modality (LoRA + decoder, Dice + FocusSDF)", FINETUNE_EXAMPLES
    )
    p.add_argument("--config", help="YAML run configuration (see configs/)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a setting, e.g. train.lr=5e-5; repeatable",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(handler=_finetune)

    p = add_command(
        subparsers, "evaluate", "score a model on a manifest split (per-case CSV + summary)", EVALUATE_EXAMPLES
    )
    p.add_argument("--model", default="litemedsam", help="family name or run directory")
    p.add_argument("--checkpoint", help="weights for a family (default: its standard location)")
    p.add_argument("--data", required=True, metavar="MANIFEST", help="manifest CSV")
    p.add_argument("--split", default="test", help="split to evaluate (default test; 'all' for every row)")
    p.add_argument("--out", required=True, help="output folder for per_case.csv and summary.json/.md")
    p.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in spacing units (default 2 mm)")
    p.add_argument("--cache-dir", help="embedding cache folder (default: OUT/../.cache)")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.set_defaults(handler=_evaluate)

    p = add_command(
        subparsers, "export", "write a run's model as one segment-anything state dict (LoRA merged)", EXPORT_EXAMPLES
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--merged", required=True, metavar="OUT.pth", help="output state dict")
    p.set_defaults(handler=_export)


def _finetune(args) -> int:
    from medsam_focus.config import load_config
    from medsam_focus.engine.train import finetune
    from medsam_focus.errors import MedsamFocusError

    if args.resume:
        from pathlib import Path

        if args.config or args.overrides:
            raise MedsamFocusError("--resume continues a run with its saved config; drop --config/--set")
        cfg = load_config(Path(args.resume) / "config.yaml")
        result = finetune(cfg, resume=True, progress=not args.no_progress)
    else:
        if not args.config and not args.overrides:
            raise MedsamFocusError("give --config FILE (see configs/) or settings with --set")
        cfg = load_config(args.config, args.overrides)
        if not cfg.data.manifest:
            raise MedsamFocusError("no data: set data.manifest in the config or with --set data.manifest=PATH")
        result = finetune(cfg, progress=not args.no_progress)
    print(f"best {result.best_metric} {result.best_value:.4f} (epoch {result.best_epoch + 1}); run: {result.run_dir}")
    return 0


def _evaluate(args) -> int:
    from pathlib import Path

    from medsam_focus.data import SegmentationDataset
    from medsam_focus.engine.cache import EmbeddingCache
    from medsam_focus.engine.evaluate import evaluate_dataset, summarise, write_rows, write_summary
    from medsam_focus.infer import load_model
    from medsam_focus.models.lora import encoder_is_frozen

    model = load_model(args.model, checkpoint=args.checkpoint, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = SegmentationDataset(args.data, model.frame, split=args.split, jitter_px=0)
    cache_root = Path(args.cache_dir) if args.cache_dir else out.parent / ".cache"
    cache = EmbeddingCache(cache_root, model) if encoder_is_frozen(model) else None
    rows = evaluate_dataset(model, dataset, cache=cache, tolerance=args.tolerance, progress=True)
    write_rows(rows, out / "per_case.csv", extra={"model": str(args.model), "split": args.split})
    summary = summarise(rows)
    summary.update({"model": str(args.model), "data": str(args.data), "split": args.split, "tolerance": args.tolerance})
    write_summary(summary, out / "summary.json", title=f"{args.model} on {args.data} ({args.split})")
    print(
        f"{summary['n']} objects: dice {summary['dice']['mean']:.4f}, nsd {summary['nsd']['mean']:.4f}, "
        f"hd95 {summary['hd95']['mean']:.2f} -> {out / 'per_case.csv'}"
    )
    return 0


def _export(args) -> int:
    from medsam_focus.models.finetuned import export_merged

    out = export_merged(args.run, args.merged)
    print(f"wrote {out} (segment-anything state dict, LoRA merged)")
    return 0
