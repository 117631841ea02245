"""`medsam-focus study` and `medsam-focus demo`."""

from __future__ import annotations

from medsam_focus.cli import add_command

STUDY_EXAMPLES = """
  medsam-focus study --config configs/study.yaml
  medsam-focus study --config configs/study.yaml --set seeds=[0,1,2] --set objectives=[dice,dice+focussdf,dice+boundary]
  medsam-focus study --config configs/study.yaml --report-only     # rewrite tables, figures and report.md
"""

DEMO_EXAMPLES = """
  medsam-focus demo                      # the full demo: about 15 min on a 2-core CPU
  medsam-focus demo --quick --out /tmp/demo   # a minute-scale smoke run
  medsam-focus demo --epochs 10 --seed 1
"""


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "study",
        "fine-tune per modality and objective, evaluate every model on every modality, write the report",
        STUDY_EXAMPLES,
    )
    p.add_argument("--config", required=True, help="study YAML (see configs/study.yaml)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override a setting; repeatable",
    )
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from finished evaluations")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_study)

    p = add_command(
        subparsers, "demo", "the main job: four-modality phantoms and a LiteMedSAM transfer study", DEMO_EXAMPLES
    )
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--quick", action="store_true", help="tiny phantoms and 2 epochs (about a minute or two)")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_demo)


def _study(args) -> int:
    import time

    from medsam_focus.study.report import transfer_table_text, write_report
    from medsam_focus.study.runner import collect_rows, load_study_settings, run_study

    start = time.perf_counter()
    settings = load_study_settings(args.config, args.overrides)
    if args.report_only:
        rows = collect_rows(settings)
    else:
        rows = run_study(settings, progress=not args.no_progress).rows
    report = write_report(settings, rows, seconds=None if args.report_only else time.perf_counter() - start)
    print(transfer_table_text(rows, "dice"))
    print(f"report: {report}")
    return 0


def _demo(args) -> int:
    from medsam_focus.study.demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, epochs=args.epochs, progress=not args.no_progress)
    return 0
