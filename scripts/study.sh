#!/usr/bin/env bash
# Run the transfer study described by configs/study.yaml (or the config given first).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/study.yaml}"; shift || true
exec .venv/bin/medsam-focus study --config "$config" "$@"
