#!/usr/bin/env bash
# Box-prompted inference: scripts/infer.sh --image scan.png --box 30,40,120,160 --out mask.png [--model RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/medsam-focus infer "$@"
