"""Transfer studies: per-modality fine-tuning, the cross-modality matrix, loss comparison, report."""
