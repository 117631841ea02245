#!/usr/bin/env bash
# Fine-tune one modality: scripts/finetune.sh us [--set train.lr=5e-5 ...]
# Multi-GPU: NPROC=4 scripts/finetune.sh cta   (runs through torchrun)
set -euo pipefail
cd "$(dirname "$0")/.."
modality="${1:?usage: scripts/finetune.sh MODALITY [--set KEY=VALUE ...]}"; shift
if [[ "${NPROC:-1}" -gt 1 ]]; then
  exec .venv/bin/torchrun --nproc_per_node "$NPROC" -m medsam_focus finetune --config "configs/$modality.yaml" "$@"
fi
exec .venv/bin/medsam-focus finetune --config "configs/$modality.yaml" "$@"
