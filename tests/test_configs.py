"""Every shipped config parses into the documented dataclasses."""

from __future__ import annotations

import pytest

from medsam_focus.config import RunConfig, load_config
from medsam_focus.study.config import StudySettings


@pytest.mark.parametrize("name", ["dsa", "cta", "mri", "us", "default", "medsam_vit_b_gpu"])
def test_run_configs_load(repo_root, name):
    cfg = load_config(repo_root / "configs" / f"{name}.yaml")
    assert isinstance(cfg, RunConfig)
    assert cfg.data.manifest.endswith("manifest.csv")
    cfg.lora.validate()


def test_modality_configs_use_lora_and_focussdf(repo_root):
    for name in ("dsa", "cta", "mri", "us"):
        cfg = load_config(repo_root / "configs" / f"{name}.yaml")
        assert (cfg.modality, cfg.loss, cfg.lora.mode, cfg.lora.target_modules) == (
            name,
            "dice+focussdf",
            "encoder",
            ["qkv"],
        )


def test_study_config_loads(repo_root):
    cfg = load_config(repo_root / "configs" / "study.yaml", cls=StudySettings)
    assert set(cfg.datasets) == {"dsa", "cta", "mri", "us"}
    assert cfg.objectives == ["dice", "dice+focussdf"] and cfg.seeds == [0, 1, 2]


def test_overrides_and_errors_name_the_key(repo_root):
    from medsam_focus.errors import MedsamFocusError

    cfg = load_config(repo_root / "configs" / "us.yaml", ["train.lr=5e-5", "loss=dice+0.5*focussdf"])
    assert cfg.train.lr == 5e-5 and cfg.loss == "dice+0.5*focussdf"
    with pytest.raises(MedsamFocusError, match="train: unknown setting.*lrr"):
        load_config(repo_root / "configs" / "us.yaml", ["train.lrr=1"])
    with pytest.raises(MedsamFocusError, match="train.epochs: expected an integer"):
        load_config(repo_root / "configs" / "us.yaml", ["train.epochs=ten"])
    with pytest.raises(MedsamFocusError, match="does not exist"):
        load_config(repo_root / "configs" / "nope.yaml")
