"""Seeded, realistic synthetic data for the four modalities (``medsam-focus phantoms``).

Each generator reproduces the difficulty the FocusSDF paper shows for its modality and
writes the data in that modality's real format and a real layout, so that the readers,
the adapters and ``prepare`` are exercised exactly as with downloaded data:

``dsa`` (2D PNG, ``paired`` layout: ``images/P007_v1.png`` + ``masks/P007_v1.png``)
    Subtracted angiograms of a 3D branching vessel tree, projected from 2-3 view angles per
    patient: line integrals of contrast through tubes (foreshortened vessels are darker,
    crossings add up), saturating attenuation, veiling glare, quantum noise, circular field
    of view. A saccular aneurysm (sphere, sometimes with a daughter bleb) sits on a parent
    vessel, unevenly opacified, with one or two vessel loops of similar contrast passing in
    front of or behind it. Mask = aneurysm sac (parent lumen excluded), 0/255.
``cta`` (3D NIfTI in Hounsfield units, ``msd`` layout: ``imagesTr/liver_N.nii.gz``)
    Portal-venous abdominal CT, spacing 5 x 1.8 x 1.8 mm: body wall fat and muscle, spine,
    aorta, IVC, liver with contrast-filled portal/hepatic veins and sometimes hypodense
    tumours, gallbladder, kidneys, spleen, stomach, bowel, diaphragm with heart and lung
    bases above the dome. The liver touches stomach wall, heart, diaphragm, IVC and kidney,
    all within a few tens of HU of it; partial volume and correlated noise (12-20 HU). Labels
    1 = liver, 2 = tumour; the manifest's object is ``1+2`` (the whole liver).
``mri`` (3D NIfTI, ISLES 2022 BIDS layout, ``sub-strokecaseNNNN/ses-0001/dwi/*_dwi.nii.gz``)
    Diffusion-weighted brain MRI (b=1000 look), spacing 5 x 1.2 x 1.2 mm: scalp, skull,
    CSF, folded cortex with sulci, white matter, ventricles, deep grey matter. One acute
    infarct per patient, irregular and lobulated (union of perturbed ellipsoids), only 20-45 %
    brighter than white matter, so close to cortex; bright distractor spots; multiplicative
    bias field and Rician noise. Mask = lesion, under ``derivatives/`` as ``*_msk.nii.gz``.
``us`` (2D PNG, BUSI layout: ``benign/benign (3).png`` + ``benign (3)_mask.png``)
    Linear-probe breast ultrasound: skin, subcutaneous fat lobules, Cooper's ligaments,
    fibroglandular tissue, pectoral muscle; Rayleigh speckle from a complex scatterer field
    blurred by an anisotropic point-spread function, depth attenuation with imperfect gain
    compensation, log compression. Hypoechoic tumours: benign ones oval and circumscribed
    with posterior enhancement, malignant ones irregular, spiculated, with an echogenic halo
    and posterior acoustic shadowing; refraction shadows at the lateral edges. Some normal
    images (empty masks) are written too, as in BUSI.

Sizes: ``default`` (the demo: about 70-90 2D samples per modality) and ``quick`` (tiny, a
few seconds, for tests), or a dict overriding per modality the number of patients and other
:class:`PhantomSpec` fields. ``difficulty`` scales noise and lowers contrast (1.0 = the
realistic default, 0 = easy). A seeded run is byte-for-byte deterministic: every case draws
from its own ``SeedSequence([seed, modality, case])``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from medsam_focus.errors import MedsamFocusError
from medsam_focus.io import write_image, write_mask
from medsam_focus.normalize import canonical_modality

__all__ = ["PhantomSpec", "PRESETS", "MODALITY_ORDER", "generate_phantoms", "write_preview", "MARKER"]

MODALITY_ORDER = ("dsa", "cta", "mri", "us")
MODALITY_CODE = {"dsa": 11, "cta": 23, "mri": 37, "us": 41}
MARKER = ".medsam-focus-phantoms"


@dataclass(frozen=True)
class PhantomSpec:
    """Size of one modality's phantom set.

    Attributes:
        patients: number of patients (DSA: each seen in ``views`` projections; US: each
            patient is one image, as BUSI has no patient ids).
        shape: (H, W) for 2D, (Z, H, W) for 3D, in pixels.
        spacing: pixel spacing in array order (mm; 2D plain images carry none).
        views: DSA projections per patient.
        normal: US images without a tumour (empty masks, listed but not trained on).
        slice_step: keep every k-th foreground slice in the manifest (3D).
        fractions: train, val, test shares of patients.
        min_pixels, min_voxels: the manifest's object-size rules (MedSAM's 100 and 1000 by
            default; the coarse ``quick`` preset lowers them so that its small images keep
            their objects).
    """

    patients: int
    shape: tuple[int, ...]
    spacing: tuple[float, ...] = ()
    views: int = 1
    normal: int = 0
    slice_step: int = 1
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    min_pixels: int = 100
    min_voxels: int = 1000


PRESETS: dict[str, dict[str, PhantomSpec]] = {
    "default": {
        "dsa": PhantomSpec(patients=26, shape=(256, 256), views=3),
        "cta": PhantomSpec(
            patients=8, shape=(32, 192, 192), spacing=(5.0, 1.8, 1.8), slice_step=2, fractions=(0.5, 0.25, 0.25)
        ),
        "mri": PhantomSpec(patients=14, shape=(24, 192, 192), spacing=(5.0, 1.2, 1.2)),
        "us": PhantomSpec(patients=78, shape=(224, 256), normal=6),
    },
    "quick": {
        "dsa": PhantomSpec(patients=3, shape=(128, 128), views=2, min_pixels=25),
        "cta": PhantomSpec(
            patients=3, shape=(16, 96, 96), spacing=(10.0, 3.6, 3.6), slice_step=2, min_pixels=25, min_voxels=100
        ),
        "mri": PhantomSpec(patients=3, shape=(12, 96, 96), spacing=(10.0, 2.4, 2.4), min_pixels=20, min_voxels=100),
        "us": PhantomSpec(patients=6, shape=(112, 128), normal=1, min_pixels=25),
    },
}


# =========================================================================== shared helpers
def _rng(seed: int, modality: str, case: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), MODALITY_CODE[modality], int(case)]))


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], scale) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with correlation length ``scale`` pixels.

    Drawn on a coarse grid and upsampled (bicubic in-plane, linear across slices), so large
    scales cost nothing. ``scale`` is a number or one value per axis.
    """
    shape = tuple(int(n) for n in shape)
    scales = np.broadcast_to(np.asarray(scale, dtype=np.float64), (len(shape),))
    coarse = tuple(max(4, int(math.ceil(n / max(s / 2.0, 1.0))) + 1) for n, s in zip(shape, scales, strict=True))
    field = gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 1.0, mode="wrap")
    up = _upsample(field, shape)
    return ((up - up.mean()) / (up.std() + 1e-8)).astype(np.float32)


def _upsample(field: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    if field.ndim == 1:
        pos = (np.arange(shape[0]) + 0.5) * field.shape[0] / shape[0] - 0.5
        return np.interp(pos, np.arange(field.shape[0]), field).astype(np.float32)
    if field.ndim == 2:
        return cv2.resize(field, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    planes = np.stack([cv2.resize(f, (shape[2], shape[1]), interpolation=cv2.INTER_CUBIC) for f in field])
    pos = np.clip((np.arange(shape[0]) + 0.5) * field.shape[0] / shape[0] - 0.5, 0, field.shape[0] - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, field.shape[0] - 1)
    frac = (pos - lo).astype(np.float32)[:, None, None]
    return planes[lo] * (1 - frac) + planes[hi] * frac


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _soft_inside(signed: np.ndarray, width: float) -> np.ndarray:
    """1 inside (signed < 0), 0 outside, a smooth ramp of ``width`` across the boundary."""
    return _smoothstep(0.5 - signed / max(width, 1e-6))


def _wrap_angle(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def _polar_outline(rng: np.random.Generator, lobes: float, roughness: float, spikes: int, spike_amp: float):
    """A random radius function r(theta) around 1: lobulation, fine roughness and spicules."""
    low = [(k, lobes * rng.uniform(0.3, 1.0) / k, rng.uniform(0, 2 * np.pi)) for k in range(2, 6)]
    high = [(k, roughness * rng.uniform(0.2, 1.0) / math.sqrt(k), rng.uniform(0, 2 * np.pi)) for k in range(7, 19)]
    spk = [
        (rng.uniform(-np.pi, np.pi), spike_amp * rng.uniform(0.4, 1.0), rng.uniform(0.06, 0.16)) for _ in range(spikes)
    ]

    def radius(theta: np.ndarray) -> np.ndarray:
        r = np.ones_like(theta)
        for k, a, p in low + high:
            r = r + a * np.cos(k * theta + p)
        for t0, a, w in spk:
            r = r + a * np.exp(-((_wrap_angle(theta - t0) / w) ** 2))
        return np.maximum(r, 0.35)

    return radius


# =========================================================================== DSA
def _walk(rng, start, direction, length, r0, r1, tortuosity, step=1.0):
    """A smooth 3D random walk: (N, 3) points, (N,) radii, (N, 3) unit directions."""
    n = max(3, int(length / step))
    turns = gaussian_filter1d(rng.standard_normal((n, 3)), sigma=3.5, axis=0, mode="nearest") * tortuosity * 2.2
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    points = np.empty((n, 3))
    dirs = np.empty((n, 3))
    p = np.asarray(start, dtype=np.float64)
    for i in range(n):
        d = d + turns[i]
        d = d / np.linalg.norm(d)
        p = p + d * step
        points[i] = p
        dirs[i] = d
    return points, np.linspace(r0, r1, n), dirs


def _random_unit(rng, base=None, spread=1.0):
    v = rng.standard_normal(3)
    if base is not None:
        v = np.asarray(base, dtype=np.float64) + spread * v
    return v / np.linalg.norm(v)


def _dsa_tree(rng, size: float, s: float, difficulty: float):
    """Vessels as (points, radii, dirs, opacity) in 3D pixel coordinates (x, y, depth)."""
    vessels = []

    def grow(points, radii, dirs, level):
        if level >= 3:
            return
        count = int(rng.integers(2, 5 - level + 1))
        for _ in range(count):
            i = int(rng.integers(int(0.15 * len(points)), max(int(0.9 * len(points)), int(0.15 * len(points)) + 1)))
            r = radii[i] * rng.uniform(0.5, 0.78)
            if r < 0.7 * s:
                continue
            # cerebral branches fan out upwards and sideways from the carotid
            d = _random_unit(rng, dirs[i] + np.array([0.0, -0.45, 0.0]), 0.9)
            if abs(np.dot(d, dirs[i])) > 0.93:
                d = _random_unit(rng, dirs[i] + _random_unit(rng), 0.3)
            length = size * rng.uniform(0.3, 0.7) * (0.8**level)
            p, rr, dd = _walk(rng, points[i], d, length, r, r * rng.uniform(0.55, 0.85), rng.uniform(0.05, 0.14))
            vessels.append((p, rr, dd, rng.uniform(0.85, 1.0)))
            grow(p, rr, dd, level + 1)

    for _ in range(int(rng.integers(1, 3))):
        start = (rng.uniform(0.3, 0.7) * size, size * 1.05, rng.uniform(-0.1, 0.1) * size)
        direction = (rng.uniform(-0.35, 0.35), -1.0, rng.uniform(-0.3, 0.3))
        r0 = rng.uniform(3.6, 4.8) * s
        p, rr, dd = _walk(rng, start, direction, size * rng.uniform(0.75, 1.0), r0, r0 * 0.7, rng.uniform(0.06, 0.12))
        vessels.append((p, rr, dd, 1.0))
        grow(p, rr, dd, 0)
    # tortuous loops (siphon-like) branching off the large vessels
    for _ in range(int(rng.integers(1, 3)) + int(difficulty >= 1.0)):
        host = vessels[int(rng.integers(0, min(len(vessels), 3)))]
        i = int(rng.integers(len(host[0]) // 5, max(len(host[0]) // 5 + 1, 4 * len(host[0]) // 5)))
        r = max(host[1][i] * rng.uniform(0.55, 0.8), 1.6 * s)
        p, rr, dd = _walk(
            rng, host[0][i], _random_unit(rng), size * rng.uniform(0.3, 0.55), r, r * 0.8, rng.uniform(0.28, 0.42)
        )
        vessels.append((p, rr, dd, rng.uniform(0.85, 1.0)))
    return vessels


def _project(points: np.ndarray, angle_deg: float, tilt_deg: float, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the vertical axis through the image centre, then about the horizontal; -> (x, y), depth."""
    a, t = math.radians(angle_deg), math.radians(tilt_deg)
    c = np.array([size / 2.0, size / 2.0, 0.0])
    q = points - c
    x = q[:, 0] * math.cos(a) + q[:, 2] * math.sin(a)
    z = -q[:, 0] * math.sin(a) + q[:, 2] * math.cos(a)
    y = q[:, 1] * math.cos(t) - z * math.sin(t)
    z = q[:, 1] * math.sin(t) + z * math.cos(t)
    return np.stack([x + size / 2.0, y + size / 2.0], axis=1), z


def _rotate_dirs(dirs: np.ndarray, angle_deg: float, tilt_deg: float) -> np.ndarray:
    zero = np.zeros((1, 3))
    p2, z = _project(dirs, angle_deg, tilt_deg, 0.0)
    o2, oz = _project(zero, angle_deg, tilt_deg, 0.0)
    return np.column_stack([p2 - o2, z - oz])


def _stamp_tube(chord: np.ndarray, xy: np.ndarray, radii: np.ndarray, gain: np.ndarray) -> None:
    """chord = max(chord, gain * 2 sqrt(r^2 - d^2)) around each centreline point (in place).

    Vectorised over the points that share a window size.
    """
    h, w = chord.shape
    xy = np.asarray(xy, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    gain = np.asarray(gain, dtype=np.float64)
    windows = np.ceil(radii).astype(int) + 1
    for half in np.unique(windows):
        sel = windows == half
        px, py, r, g = xy[sel, 0], xy[sel, 1], radii[sel], gain[sel]
        offsets = np.arange(-half, half + 1)
        cols = np.floor(px).astype(int)[:, None, None] + offsets[None, None, :]
        rows = np.floor(py).astype(int)[:, None, None] + offsets[None, :, None]
        d2 = (cols - px[:, None, None]) ** 2 + (rows - py[:, None, None]) ** 2
        value = 2 * g[:, None, None] * np.sqrt(np.maximum(r[:, None, None] ** 2 - d2, 0.0))
        cols, rows = np.broadcast_arrays(cols, rows)
        keep = (value > 0) & (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
        np.maximum.at(chord, (rows[keep], cols[keep]), value[keep].astype(np.float32))


def _render_vessels(vessels, angle, tilt, shape, size) -> np.ndarray:
    total = np.zeros(shape, dtype=np.float32)
    for points, radii, dirs, opacity in vessels:
        xy, _ = _project(points, angle, tilt, size)
        in_plane = np.linalg.norm(_rotate_dirs(dirs, angle, tilt)[:, :2], axis=1)
        gain = opacity / np.maximum(in_plane, 0.35)  # foreshortened tubes are crossed lengthwise
        chord = np.zeros(shape, dtype=np.float32)
        _stamp_tube(chord, xy, radii, gain)
        total += chord
    return total


def _dsa_case(rng: np.random.Generator, spec: PhantomSpec, difficulty: float):
    """One patient: a list of (image uint8, mask uint8 0/255), one per view."""
    h, w = spec.shape
    size = float(w)
    s = size / 256.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _attempt in range(20):
        vessels = _dsa_tree(rng, size, s, difficulty)
        # aneurysm on a medium/large vessel in the central part of the field
        candidates = []
        for vi, (points, radii, _dirs, _op) in enumerate(vessels):
            ok = (radii > 2.0 * s) & (np.abs(points[:, 0] - size / 2) < 0.27 * size)
            ok &= np.abs(points[:, 1] - h / 2) < 0.27 * h
            candidates += [(vi, int(i)) for i in np.flatnonzero(ok)[::7]]
        if not candidates:
            continue
        vi, i = candidates[int(rng.integers(len(candidates)))]
        points, radii, dirs, _ = vessels[vi]
        tangent = dirs[i]
        normal = _random_unit(rng)
        normal = normal - np.dot(normal, tangent) * tangent
        normal /= np.linalg.norm(normal)
        sac_r = rng.uniform(7.0, 13.0) * s
        centre = points[i] + normal * (radii[i] + 0.72 * sac_r)
        spheres = [(centre, sac_r)]
        if rng.random() < 0.55:
            m = _random_unit(rng, normal, 0.8)
            bleb_r = sac_r * rng.uniform(0.3, 0.5)
            spheres.append((centre + m * sac_r * 0.9, bleb_r))
        near_parent = np.linalg.norm(points - centre, axis=1) < 1.8 * sac_r
        # bifurcation: daughter branches leave the parent right at the neck
        for _ in range(int(rng.integers(1, 3))):
            j = int(np.clip(i + rng.integers(-6, 7), 0, len(points) - 1))
            d = _random_unit(rng, tangent + 0.8 * _random_unit(rng), 0.5)
            r = radii[j] * rng.uniform(0.6, 0.85)
            pb, rb, db = _walk(rng, points[j], d, size * rng.uniform(0.15, 0.35), r, r * 0.7, rng.uniform(0.08, 0.2))
            vessels.append((pb, rb, db, rng.uniform(0.85, 1.0)))
        # loops of similar contrast crossing in front of / behind the sac
        n_loops = int(rng.random() < 0.5 + 0.5 * difficulty) + int(rng.random() < 0.8 * min(difficulty, 1.5))
        for _ in range(n_loops):
            # through the sac's rim in projection: the loop hides part of the boundary
            phi, rim = rng.uniform(0, 2 * np.pi), rng.uniform(0.45, 1.0) * sac_r
            depth = rng.choice([-1, 1]) * rng.uniform(1.3, 2.0) * sac_r
            offset = np.array([rim * math.cos(phi), rim * math.sin(phi), depth])
            through = centre + offset
            d = _random_unit(rng, np.array([rng.normal(), rng.normal(), 0.0]), 0.2)
            r = rng.uniform(2.4, 3.8) * s
            half = size * rng.uniform(0.15, 0.3)
            pa, ra, da = _walk(rng, through, d, half, r, r * 0.9, rng.uniform(0.1, 0.22))
            pb, rb, db = _walk(rng, through, -d, half, r, r * 0.9, rng.uniform(0.1, 0.22))
            vessels.append(
                (
                    np.vstack([pb[::-1], pa]),
                    np.concatenate([rb[::-1], ra]),
                    np.vstack([-db[::-1], da]),
                    rng.uniform(0.85, 1.0),
                )
            )
        # early arterial phase: the sac fills unevenly, a jet at the neck and a fainter dome (or the reverse)
        fill = (rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.45) * (1 if rng.random() < 0.5 else -1))
        easy = max(0.0, 1.0 - difficulty)  # difficulty < 1: a fuller, more even sac
        fill = (fill[0] + 0.3 * easy, fill[1] * min(difficulty, 1.0))
        views = [0.0] + [float(rng.choice([-1, 1]) * rng.uniform(10, 24)) for _ in range(spec.views - 1)]
        tilts = [0.0] + [float(rng.uniform(-8, 8)) for _ in range(spec.views - 1)]
        out = []
        for angle, tilt in zip(views, tilts, strict=True):
            image, mask = _dsa_view(
                rng, vessels, spheres, near_parent, vi, fill, normal, angle, tilt, (h, w), size, s, yy, xx, difficulty
            )
            if int((mask > 0).sum()) < 110 * s * s:
                break
            out.append((image, mask))
        if len(out) == len(views):
            return out
    raise RuntimeError("could not place an aneurysm; this is a bug in the DSA phantom")  # pragma: no cover


def _dsa_view(
    rng, vessels, spheres, near_parent, parent_index, fill, normal, angle, tilt, shape, size, s, yy, xx, difficulty
):
    h, w = shape
    path = _render_vessels(vessels, angle, tilt, shape, size)
    # sac: projected spheres (chord of a sphere), unevenly opacified from neck to dome
    sac_chord = np.zeros(shape, dtype=np.float32)
    disc = np.zeros(shape, dtype=bool)
    (c2d,), _ = _project(spheres[0][0][None], angle, tilt, size)
    n2d = _rotate_dirs(normal[None], angle, tilt)[0, :2]
    n2d = n2d / (np.linalg.norm(n2d) + 1e-6)
    for centre, r in spheres:
        (cxy,), _ = _project(centre[None], angle, tilt, size)
        d2 = (xx - cxy[0]) ** 2 + (yy - cxy[1]) ** 2
        sac_chord = np.maximum(sac_chord, 2 * np.sqrt(np.maximum(r * r - d2, 0.0)))
        disc |= d2 < r * r
    along = ((xx - c2d[0]) * n2d[0] + (yy - c2d[1]) * n2d[1]) / spheres[0][1]
    swirl = _smooth_noise(rng, shape, 6 * s)
    concentration = np.clip(fill[0] + fill[1] * along + 0.1 * swirl, 0.2, 1.0)
    path += sac_chord * concentration
    # mask: the sac without the parent lumen it sits on
    points, radii, dirs, _ = vessels[parent_index]
    parent = np.zeros(shape, dtype=np.float32)
    xy, _ = _project(points[near_parent], angle, tilt, size)
    _stamp_tube(parent, xy, radii[near_parent], np.ones(int(near_parent.sum())))
    mask = disc & ~(parent > 0)
    # X-ray physics: saturating attenuation on a slightly uneven subtracted background
    k = 0.2 / s
    background = 0.6 + 0.015 * _smooth_noise(rng, shape, 70 * s)
    ring_r = size * rng.uniform(0.38, 0.5)
    radius = np.sqrt((xx - w / 2 + rng.uniform(-10, 10) * s) ** 2 + ((yy - h / 2) * rng.uniform(0.8, 1.0)) ** 2)
    background += rng.choice([-1, 1]) * 0.02 * np.exp(-(((radius - ring_r) / (2.5 * s)) ** 2))  # subtraction residue
    image = background * np.exp(-k * path)
    image = 0.88 * image + 0.12 * gaussian_filter(image, 12 * s)  # veiling glare lifts the blacks
    image = gaussian_filter(image, 0.6 * s)
    noise = rng.standard_normal(shape).astype(np.float32)
    image = image + (0.018 + 0.012 * difficulty) * np.sqrt(np.maximum(image, 0.0) / 0.6) * gaussian_filter(noise, 0.5)
    fov = np.sqrt((xx - w / 2) ** 2 + (yy - h / 2) ** 2) - 0.5 * size * rng.uniform(1.0, 1.12)
    image = image * _soft_inside(fov, 6 * s) + 0.03 * (1 - _soft_inside(fov, 6 * s))
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


# =========================================================================== CTA
def _grid_mm(shape, spacing):
    z, y, x = (np.arange(n, dtype=np.float32) - (n - 1) / 2.0 for n in shape)
    return z[:, None, None] * spacing[0], y[None, :, None] * spacing[1], x[None, None, :] * spacing[2]


def _ellipsoid(z, y, x, centre, radii) -> np.ndarray:
    """Normalised radius: < 1 inside the ellipsoid (broadcast over the grid)."""
    return np.sqrt(
        ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2
    )


def _stamp_spheres(target: np.ndarray, centres_mm, radii_mm, spacing, grid_origin) -> None:
    """target |= union of spheres (physical mm coordinates, array order z, y, x)."""
    shape = target.shape
    for c, r in zip(centres_mm, radii_mm, strict=True):
        idx = [(c[a] - grid_origin[a]) / spacing[a] for a in range(3)]
        lo = [max(int(math.floor(idx[a] - r / spacing[a])) - 1, 0) for a in range(3)]
        hi = [min(int(math.ceil(idx[a] + r / spacing[a])) + 2, shape[a]) for a in range(3)]
        if any(lo[a] >= hi[a] for a in range(3)):
            continue
        axes = [(np.arange(lo[a], hi[a]) * spacing[a] + grid_origin[a] - c[a]) ** 2 for a in range(3)]
        d2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
        target[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] |= d2 < r * r


def _cta_case(rng: np.random.Generator, spec: PhantomSpec, difficulty: float):
    """One abdominal CT volume in HU (int16) and its label volume (1 liver, 2 tumour)."""
    shape = spec.shape
    sp = spec.spacing
    z, y, x = _grid_mm(shape, sp)
    origin = [-(n - 1) / 2.0 * s for n, s in zip(shape, sp, strict=True)]
    zext = (shape[0] - 1) / 2.0 * sp[0]
    ax, ay = rng.uniform(150, 172), rng.uniform(108, 125)
    fat, wall = rng.uniform(10, 28), rng.uniform(7, 12)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    ell = np.sqrt((x / ax) ** 2 + (y / np.where(y > 0, ay * 0.92, ay)) ** 2) + 0 * z
    body = ell < 1
    cavity_r = np.sqrt((x / (ax - fat - wall)) ** 2 + (y / (np.where(y > 0, ay * 0.92, ay) - fat - wall)) ** 2) + 0 * z
    hu[body] = -100 + 10 * _smooth_noise(rng, shape, (2, 20, 20))[body]
    hu[(cavity_r < (ax - fat) / (ax - fat - wall)) & body] = 58
    cavity = cavity_r < 1
    # abdominal background: mesenteric fat with bowel loops
    # mesenteric fat with bowel loops: enhancing walls around fluid- or gas-filled lumens
    loops = _smooth_noise(rng, shape, (1.2, 7, 7))
    gas = _smooth_noise(rng, shape, (2, 20, 20)) > 0.6
    hu[cavity] = -90
    hu[cavity & (loops > 0.35)] = 45
    lumen = cavity & (loops > 0.7)
    hu[lumen] = np.where(gas[lumen], -900, 18)
    # diaphragm dome: thorax above (lung bases, heart)
    z_dome = zext - rng.uniform(18, 32)
    # two hemidomes, the left one a little lower
    left_drop = rng.uniform(5, 15) * _smoothstep(x / 60.0 + 0.5)
    dome = (
        z_dome - left_drop - 30 * (((np.abs(x) - 0.45 * ax) / ax) ** 2 + (y / ay) ** 2) - 25 * np.exp(-((x / 40) ** 2))
    )
    thorax = cavity & (z > dome)
    diaphragm = cavity & (z > dome - 5) & ~thorax
    hu[thorax] = -850 + 30 * _smooth_noise(rng, shape, (2, 6, 6))[thorax]
    hu[diaphragm] = 62
    # the heart rests on the central tendon of the diaphragm, just above the liver dome
    heart = _ellipsoid(z, y, x, (z_dome + 22, -0.25 * ay, 0.12 * ax), (40, 0.5 * ay, 0.42 * ax)) < 1
    heart &= thorax | diaphragm
    hu[heart] = 105
    blood = _ellipsoid(z, y, x, (z_dome + 30, -0.25 * ay, 0.14 * ax), (28, 0.3 * ay, 0.26 * ax)) < 1
    hu[blood & heart] = rng.uniform(150, 210)
    # spine and paraspinal muscle
    spine_c = (0.58 * ay, 0.0)
    d_spine = np.sqrt(((y - spine_c[0]) / 17) ** 2 + ((x - spine_c[1]) / 19) ** 2) + 0 * z
    paraspinal = (np.sqrt(((y - 0.8 * ay) / 22) ** 2 + (np.abs(x) - 28) ** 2 / 24**2) < 1) & body
    hu[paraspinal] = 55
    hu[d_spine < 1] = 230
    hu[(d_spine < 1) & (d_spine > 0.82)] = 650
    # vessels of the retroperitoneum
    aorta_hu = rng.uniform(170, 300)
    aorta = (np.sqrt((y - 0.32 * ay) ** 2 + (x - 10) ** 2) < 11) & np.ones_like(z, dtype=bool)
    ivc = (np.sqrt(((y - 0.22 * ay) / 10) ** 2 + ((x + 24) / 14) ** 2) < 1) & np.ones_like(z, dtype=bool)
    # kidneys
    zk = -zext + rng.uniform(20, 40)
    kid_r = _ellipsoid(z, y, x, (zk, 0.38 * ay, -0.42 * ax), (55, 0.24 * ay, 0.17 * ax))
    kid_l = _ellipsoid(z, y, x, (zk + 10, 0.38 * ay, 0.42 * ax), (55, 0.24 * ay, 0.17 * ax))
    # spleen, stomach
    spleen = _ellipsoid(z, y, x, (z_dome - 35, 0.2 * ay, 0.62 * ax), (45, 0.42 * ay, 0.24 * ax)) < 1
    stomach_r = _ellipsoid(z, y, x, (z_dome - 30, -0.25 * ay, 0.33 * ax), (45, 0.34 * ay, 0.27 * ax))
    # the liver: right lobe + left lobe, warped by a smooth field, clipped by the cavity/diaphragm
    warp = 0.09 * _smooth_noise(rng, shape, (3, 18, 18))
    z_liver = z_dome - rng.uniform(45, 60)
    right = _ellipsoid(z, y, x, (z_liver, -0.02 * ay, -0.4 * ax), (rng.uniform(60, 75), 0.8 * ay, 0.5 * ax))
    left = _ellipsoid(
        z, y, x, (z_dome - 25, -0.45 * ay, 0.02 * ax), (rng.uniform(28, 40), 0.33 * ay, rng.uniform(0.35, 0.48) * ax)
    )
    liver = (np.minimum(right, left) + warp < 1) & cavity & ~thorax & ~diaphragm
    gall = _ellipsoid(z, y, x, (z_liver - 25, -0.32 * ay, -0.28 * ax), (22, 16, 14)) < 1
    liver &= ~gall & ~ivc & ~(kid_r < 1.04) & ~(d_spine < 1.6) & ~aorta & ~(stomach_r < 1.02)
    # organ intensities (portal venous phase)
    liver_hu = rng.uniform(80, 122)  # fatty livers are darker, close to muscle and bowel wall
    contrast = 1.0 - 0.35 * (difficulty - 1.0)  # neighbours' HU distance from the liver, scaled
    hu[spleen & cavity & ~thorax] = liver_hu + contrast * rng.uniform(8, 18)
    stomach = (stomach_r < 1) & cavity & ~thorax
    hu[stomach] = rng.uniform(5, 25)
    hu[stomach & (stomach_r > 0.86)] = liver_hu - contrast * rng.uniform(5, 15)  # enhancing wall
    for kid in (kid_r, kid_l):
        inside = (kid < 1) & cavity
        hu[inside] = 175
        hu[inside & (kid < 0.6)] = liver_hu - contrast * rng.uniform(0, 10)  # medulla
    hu[gall & cavity] = rng.uniform(0, 18)
    hu[liver] = liver_hu + 6 * _smooth_noise(rng, shape, (2, 8, 8))[liver]
    hu[ivc & cavity] = liver_hu + contrast * rng.uniform(12, 30)
    hu[aorta & cavity] = aorta_hu
    # contrast-filled portal and hepatic veins inside the liver
    veins = np.zeros(shape, dtype=bool)
    hilum = np.array([z_liver - 10, -0.05 * ay, -0.22 * ax])
    ivc_top = np.array([z_dome - 15, 0.22 * ay, -24.0])
    for root, count in ((hilum, 6), (ivc_top, 4)):
        for _ in range(count):
            d = _random_unit(rng, np.array([0.2, rng.normal() * 0.5, -1.0]), 0.7)
            pts, radii, dirs = _walk(rng, root, d, rng.uniform(50, 110), rng.uniform(4.5, 6.5), 1.5, 0.08, step=2.0)
            _stamp_spheres(veins, pts, radii, sp, origin)
            for _ in range(2):  # second-order branches
                k = int(rng.integers(len(pts) // 4, max(len(pts) // 4 + 1, 3 * len(pts) // 4)))
                bp, br, _ = _walk(
                    rng,
                    pts[k],
                    _random_unit(rng, dirs[k], 1.0),
                    rng.uniform(25, 50),
                    radii[k] * 0.7,
                    1.2,
                    0.1,
                    step=2.0,
                )
                _stamp_spheres(veins, bp, br, sp, origin)
    veins &= liver
    hu[veins] = liver_hu + contrast * rng.uniform(45, 80)
    labels = liver.astype(np.uint8)
    # hypodense tumours in about half the livers
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 3))):
            inside = np.argwhere(liver[:, ::4, ::4])
            if len(inside) == 0:
                break
            zi, yi, xi = inside[int(rng.integers(len(inside)))]
            centre = (z[zi, 0, 0], y[0, yi * 4, 0], x[0, 0, xi * 4])
            r = rng.uniform(8, 20)
            blob = _ellipsoid(z, y, x, centre, (r * 1.1, r, r * rng.uniform(0.8, 1.2))) + 0.1 * warp / 0.09 < 1
            blob &= liver
            hu[blob] = liver_hu - contrast * rng.uniform(35, 60)
            labels[blob] = 2
    # scanner: partial volume, correlated noise
    hu = gaussian_filter(hu, (0.35, 0.7, 0.7))
    sigma = rng.uniform(12, 20) * (0.6 + 0.4 * difficulty)
    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0.0, 0.7, 0.7))
    hu = hu + noise * (sigma / (noise.std() + 1e-8))
    hu[~body] = -1000 + 6 * noise[~body]
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), labels


# =========================================================================== MRI
def _mri_case(rng: np.random.Generator, spec: PhantomSpec, difficulty: float):
    """One DWI volume (int16) and its lesion mask (uint8 0/1)."""
    shape = spec.shape
    sp = spec.spacing
    z, y, x = _grid_mm(shape, sp)
    zext = (shape[0] - 1) / 2.0 * sp[0]
    ax, ay = rng.uniform(62, 70), rng.uniform(78, 88)
    zc = rng.uniform(-8, 8)
    taper = np.sqrt(np.clip(1 - ((z - zc) / (zext + 22)) ** 2, 0.05, 1))
    head_r = np.sqrt((x / (ax * taper)) ** 2 + (y / (ay * taper)) ** 2)
    surface = 0.025 * _smooth_noise(rng, shape, (2, 10, 10))
    mm_per_r = float(ax)
    depth = (1 - head_r - surface) * mm_per_r  # approximate depth below the brain surface in mm
    brain = depth > 0
    tissue = np.zeros(shape, dtype=np.float32)
    tissue[(depth > -3) & ~brain] = 0.35  # CSF rim (dark on DWI)
    tissue[(depth > -9) & (depth <= -3)] = 0.05  # skull
    tissue[(depth > -14) & (depth <= -9)] = 0.14  # scalp (fat suppressed)
    folds = _smooth_noise(rng, shape, (1.5, 4.5, 4.5))
    band = brain & (depth < 18)
    gm = brain & ((depth < 3.2) | (band & (np.abs(folds) < 0.5)))
    sulci = band & (np.abs(folds) < 0.13) & (depth < 14)
    tissue[brain] = 1.0
    tissue[gm] = 1.15
    tissue[sulci] = 0.35
    # lateral ventricles: frontal horns near the midline, bodies diverging backwards; deep grey nuclei
    vz = zc + rng.uniform(-5, 5)
    zfac = np.clip(1 - ((z - vz) / 26) ** 2, 0, 1)
    y_mid = rng.uniform(-10, 0)
    half_length = rng.uniform(24, 30) * np.sqrt(zfac)
    for side in (-1, 1):
        # ")(": closest at the septum, curving outwards to the frontal horn and the atrium
        centre_x = side * (rng.uniform(3.5, 5.5) + 0.012 * (y - y_mid) ** 2)
        width = (rng.uniform(2.5, 4.0) + 2.0 * np.exp(-(((y - y_mid + 18) / 6) ** 2))) * np.sqrt(zfac)
        vent = (np.abs(x - centre_x) < width) & (np.abs(y - y_mid - 4) < half_length) & (zfac > 0.2)
        deep = _ellipsoid(z, y, x, (vz - 8, 6, side * 20), (14, 16, 8))
        tissue[brain & (deep < 1)] = 1.1
        tissue[brain & vent] = 0.3
    fissure = brain & (np.abs(x + 1.5 * folds) < 1.2) & ((y < -0.45 * ay) | (y > 0.55 * ay))
    tissue[fissure] = 0.35
    # the infarct: lobulated union of perturbed ellipsoids, in one hemisphere, inside parenchyma
    parenchyma = brain & (tissue > 0.9)
    for _attempt in range(30):
        side = rng.choice([-1, 1])
        centre = np.array([zc + rng.uniform(-20, 20), rng.uniform(-40, 40), side * rng.uniform(22, 45)])
        field = np.full(shape, np.inf, dtype=np.float32)
        for _ in range(int(rng.integers(3, 7))):
            c = centre + np.array([rng.uniform(-8, 8), rng.uniform(-13, 13), rng.uniform(-11, 11)])
            radii = (rng.uniform(6, 14), rng.uniform(6, 15), rng.uniform(5, 13))
            field = np.minimum(field, _ellipsoid(z, y, x, c, radii))
        field = field + 0.2 * _smooth_noise(rng, shape, (1.2, 3, 3))
        lesion = (field < 1) & parenchyma
        if lesion.sum() >= 1400 * (1.2 * 1.2 * 5.0) / float(np.prod(sp)):
            break
    # DWI contrast: lesion only moderately brighter than white matter (so close to cortex)
    boost = rng.uniform(0.13, 0.27) * max(1.0 - 0.6 * (difficulty - 1.0), 0.3)
    heterogeneity = 1 + 0.15 * _smooth_noise(rng, shape, (1, 3, 3))
    soft = gaussian_filter(lesion.astype(np.float32), (0.3, 1.2, 1.2))
    tissue = tissue * (1 + boost * soft * heterogeneity * np.clip(1.3 - 0.5 * field, 0.7, 1.1))
    # distractors: small bright spots (shine-through, old lesions), not in the mask
    for _ in range(int(rng.integers(1, 4))):
        c = np.array([zc + rng.uniform(-25, 25), rng.uniform(-50, 50), rng.uniform(-45, 45)])
        spot = (_ellipsoid(z, y, x, c, (rng.uniform(4, 8), rng.uniform(3, 7), rng.uniform(3, 7))) < 1) & parenchyma
        tissue[spot & ~lesion] *= 1 + rng.uniform(0.2, 0.35)
    # scanner: blur, bias field, Rician noise
    signal = gaussian_filter(tissue, (0.2, 0.6, 0.6)) * rng.uniform(450, 650)
    bias = np.exp(0.15 * _smooth_noise(rng, shape, (4, 45, 45)) + 0.1 * (y / ay) * rng.choice([-1, 1]))
    signal = signal * bias
    sigma = rng.uniform(22, 34) * (0.6 + 0.4 * difficulty)
    real = signal + sigma * rng.standard_normal(shape).astype(np.float32)
    imag = sigma * rng.standard_normal(shape).astype(np.float32)
    dwi = np.sqrt(real * real + imag * imag)
    return np.clip(np.rint(dwi), 0, 32767).astype(np.int16), lesion.astype(np.uint8)


# =========================================================================== US
def _us_case(rng: np.random.Generator, spec: PhantomSpec, kind: str, difficulty: float):
    """One breast ultrasound image (uint8) and its tumour mask (0/255); kind benign/malignant/normal."""
    h, w = spec.shape
    s = w / 256.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cols = np.arange(w, dtype=np.float32)

    def curve(mean, amp, scale):
        return mean + amp * _smooth_noise(rng, (w,), scale)[None, :]

    # backscatter power per tissue (linear; 10 dB = factor 10), layered from skin to muscle
    skin = curve(5 * s, 1.0 * s, 40 * s)
    fat_end = curve(rng.uniform(0.15, 0.26) * h, 0.04 * h, 45 * s)
    gland_end = curve(rng.uniform(0.68, 0.8) * h, 0.025 * h, 90 * s)
    muscle_top = gland_end + rng.uniform(0.04, 0.07) * h
    texture = _smooth_noise(rng, (h, w), 5 * s)
    lobules = _smooth_noise(rng, (h, w), (9 * s, 14 * s))
    fat = (yy >= skin + 2 * s) & (yy < fat_end)
    gland = (yy >= fat_end) & (yy < gland_end)
    retro = (yy >= gland_end) & (yy < muscle_top)
    muscle = yy >= muscle_top
    power = np.ones((h, w), dtype=np.float32)
    power[yy < skin] = 5.0
    power[(yy >= skin) & (yy < skin + 2 * s)] = 0.3
    power[fat] = 0.09 * np.exp(0.35 * texture[fat])
    power[gland] = np.exp(0.45 * texture[gland])
    fat_islands = gland & (lobules > rng.uniform(0.6, 0.9))
    power[fat_islands] = 0.09 * np.exp(0.35 * texture[fat_islands])  # hypoechoic fat lobules: tumour look-alikes
    power[retro] = 0.08
    striation = np.sin(2 * np.pi * (yy + rng.uniform(0.1, 0.4) * xx) / (6 * s) + 1.5 * texture)
    power[muscle] = 0.35 * np.exp(0.9 * striation[muscle])
    ligaments = _smooth_noise(rng, (h, w), (8 * s, 14 * s))
    power[(fat | gland) & (np.abs(ligaments) < 0.06)] = 3.0  # Cooper's ligaments
    power[(yy >= muscle_top) & (yy < muscle_top + 2 * s)] = 4.0  # fascia
    mask = np.zeros((h, w), dtype=bool)
    extra_loss = np.zeros((h, w), dtype=np.float32)
    if kind != "normal":
        malignant = kind == "malignant"
        top, bottom = float(fat_end.mean()), float(gland_end.mean())
        signed = None
        for _attempt in range(40):
            r = rng.uniform(14, 36) * s
            ry = r * (rng.uniform(0.8, 1.2) if malignant else rng.uniform(0.5, 0.75))
            rx = r * (rng.uniform(0.8, 1.1) if malignant else 1.0)
            # often just under the subcutaneous fat, whose echo level is close to the tumour's
            cy = (
                top + ry * rng.uniform(0.4, 0.9)
                if rng.random() < 0.5
                else rng.uniform(top + 0.6 * ry, bottom - 0.3 * ry)
            )
            cx = rng.uniform(0.18 * w + 0.6 * rx, 0.82 * w - 0.6 * rx)
            angle = rng.uniform(-0.4, 0.4)
            outline = _polar_outline(
                rng,
                lobes=rng.uniform(0.12, 0.24) if malignant else rng.uniform(0.03, 0.1),
                roughness=rng.uniform(0.04, 0.07) if malignant else 0.012,
                spikes=int(rng.integers(3, 8)) if malignant else 0,
                spike_amp=rng.uniform(0.2, 0.4),
            )
            dx, dy = xx - cx, yy - cy
            u = (dx * math.cos(angle) + dy * math.sin(angle)) / rx
            v = (-dx * math.sin(angle) + dy * math.cos(angle)) / ry
            rho = np.sqrt(u * u + v * v)
            signed = (rho - outline(np.arctan2(v, u))) * min(rx, ry)  # ~ pixels outside the margin
            mask = signed < 0
            touches = mask[:, 0].any() or mask[:, -1].any() or mask[-1].any() or mask[0].any()
            if mask.sum() >= 150 * s * s and not touches:
                break
        margin = rng.uniform(1.5, 3.0) * s if malignant else rng.uniform(1.0, 2.0) * s
        t = _soft_inside(signed, margin)
        cystic = (not malignant) and rng.random() < 0.2
        level = 0.004 if cystic else rng.uniform(0.04, 0.08) * max(1.0 + 0.6 * (difficulty - 1.0), 0.2)
        inside = level * np.exp(0.9 * _smooth_noise(rng, (h, w), 4 * s))
        if malignant:  # microcalcifications: bright echogenic dots inside the mass
            ys, xs = np.nonzero(mask)
            for k in rng.choice(len(ys), size=min(len(ys), int(rng.integers(4, 14))), replace=False):
                inside[max(ys[k] - 1, 0) : ys[k] + 1, max(xs[k] - 1, 0) : xs[k] + 1] = rng.uniform(1.5, 4.0)
        # fat lobules hugging part of the margin: the boundary there is nearly invisible
        hug = (np.abs(signed - rng.uniform(3, 9) * s) < rng.uniform(3, 7) * s) & (lobules > rng.uniform(-0.3, 0.3))
        hug &= rng.random() < 0.4 + 0.6 * difficulty
        power[hug] = 0.09 * np.exp(0.35 * texture[hug])
        power = np.exp(np.log(power) * (1 - t) + np.log(inside) * t)
        if malignant and rng.random() < 0.7:  # echogenic halo, part of the lesion as BI-RADS measures it
            halo = np.exp(-(((signed - 2.5 * s) / (2.0 * s)) ** 2)) * (signed > 0)
            power = power * (1 + rng.uniform(1.0, 2.5) * halo)
            mask = signed < 3.0 * s
        # posterior shadowing (malignant) or enhancement (benign), growing with the path through the tumour
        beta = rng.uniform(0.05, 0.1) / s if malignant else -rng.uniform(0.015, 0.03) / s * (2 if cystic else 1)
        extra_loss = beta * np.cumsum(t, axis=0)
        # refraction shadows below the lateral edges
        xs = np.flatnonzero(mask.any(axis=0))
        widest = int(np.argmax(mask.sum(axis=1)))
        for edge in (xs.min(), xs.max()):
            column = np.exp(-(((cols - edge) / (2.0 * s)) ** 2))[None, :]
            extra_loss = extra_loss + rng.uniform(0.8, 1.6) * column * _smoothstep((yy - widest) / (8 * s))
    # residual depth attenuation after time-gain compensation, plus the extra losses above
    power = power * np.exp(-rng.uniform(0.3, 0.9) * yy / h - np.clip(extra_loss, -1.2, 4.0))
    # speckle: envelope of the point-spread function applied to complex Gaussian scatterers
    amplitude = np.sqrt(power)
    sx, sy = 1.6 * s, 0.8 * s
    real = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32) * amplitude, (sy, sx))
    imag = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32) * amplitude, (sy, sx))
    envelope = np.sqrt(real * real + imag * imag)
    envelope /= np.percentile(envelope, 99.5) + 1e-8
    dynamic_range = rng.uniform(45, 55)
    image = np.clip((20 * np.log10(np.maximum(envelope, 1e-6)) + dynamic_range) / dynamic_range, 0, 1)
    image = gaussian_filter(image, 0.5 * s)  # scan conversion smoothing
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


# =========================================================================== writing
def _prepare_folder(folder: Path) -> None:
    if folder.exists():
        if not (folder / MARKER).exists() and any(folder.iterdir()):
            raise MedsamFocusError(
                f"{folder} exists and was not written by `medsam-focus phantoms`; choose another --out folder"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(
        "written by medsam-focus phantoms; the folder is replaced on the next run\n", encoding="utf-8"
    )


def _write_dsa(folder: Path, spec: PhantomSpec, seed: int, difficulty: float) -> dict:
    for p in range(spec.patients):
        views = _dsa_case(_rng(seed, "dsa", p), spec, difficulty)
        for v, (image, mask) in enumerate(views):
            name = f"P{p + 1:03d}_v{v + 1}.png"
            write_image(image, folder / "images" / name)
            write_mask(mask, folder / "masks" / name)
    return {"layout": "paired", "patient_regex": r"^(P\d+)_v\d+$"}


def _write_cta(folder: Path, spec: PhantomSpec, seed: int, difficulty: float) -> dict:
    for p in range(spec.patients):
        volume, labels = _cta_case(_rng(seed, "cta", p), spec, difficulty)
        name = f"liver_{p}.nii.gz"
        origin = (-(spec.shape[2] - 1) / 2 * spec.spacing[2], -(spec.shape[1] - 1) / 2 * spec.spacing[1], 0.0)
        write_image(volume, folder / "imagesTr" / name, spacing=spec.spacing, origin=origin)
        write_image(labels, folder / "labelsTr" / name, spacing=spec.spacing, origin=origin)
    meta = {
        "name": "LiverPhantom",
        "description": "synthetic portal-venous CT written by medsam-focus phantoms",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "numTraining": spec.patients,
        "training": [
            {"image": f"./imagesTr/liver_{p}.nii.gz", "label": f"./labelsTr/liver_{p}.nii.gz"}
            for p in range(spec.patients)
        ],
    }
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {"layout": "msd", "labels": "liver"}


def _write_mri(folder: Path, spec: PhantomSpec, seed: int, difficulty: float) -> dict:
    for p in range(spec.patients):
        volume, lesion = _mri_case(_rng(seed, "mri", p), spec, difficulty)
        sub, ses = f"sub-strokecase{p + 1:04d}", "ses-0001"
        origin = (-(spec.shape[2] - 1) / 2 * spec.spacing[2], -(spec.shape[1] - 1) / 2 * spec.spacing[1], 0.0)
        write_image(volume, folder / sub / ses / "dwi" / f"{sub}_{ses}_dwi.nii.gz", spacing=spec.spacing, origin=origin)
        write_image(
            lesion, folder / "derivatives" / sub / ses / f"{sub}_{ses}_msk.nii.gz", spacing=spec.spacing, origin=origin
        )
    (folder / "dataset_description.json").write_text(
        json.dumps({"Name": "Stroke DWI phantom (medsam-focus)", "BIDSVersion": "1.6.0"}, indent=2) + "\n",
        encoding="utf-8",
    )
    return {"layout": "bids", "bids_suffix": "dwi"}


def _write_us(folder: Path, spec: PhantomSpec, seed: int, difficulty: float) -> dict:
    counts = {"benign": 0, "malignant": 0, "normal": 0}
    kinds = [("normal" if i >= spec.patients else None) for i in range(spec.patients + spec.normal)]
    for i, kind in enumerate(kinds):
        rng = _rng(seed, "us", i)
        kind = kind or ("malignant" if rng.random() < 0.4 else "benign")
        image, mask = _us_case(rng, spec, kind, difficulty)
        counts[kind] += 1
        stem = f"{kind} ({counts[kind]})"
        write_image(image, folder / kind / f"{stem}.png")
        write_mask(mask, folder / kind / f"{stem}_mask.png")
    return {"layout": "busi"}


WRITERS = {"dsa": _write_dsa, "cta": _write_cta, "mri": _write_mri, "us": _write_us}


def _resolve_size(size) -> dict[str, PhantomSpec]:
    if isinstance(size, str):
        if size not in PRESETS:
            raise MedsamFocusError(f"unknown phantom size {size!r}; use {', '.join(PRESETS)} or a dict of counts")
        return dict(PRESETS[size])
    if isinstance(size, dict):
        specs = dict(PRESETS["default"])
        for modality, value in size.items():
            modality = canonical_modality(modality)
            if modality not in specs:
                raise MedsamFocusError(f"no phantom generator for modality {modality!r}; known: {', '.join(specs)}")
            if isinstance(value, PhantomSpec):
                specs[modality] = value
            elif isinstance(value, int):
                specs[modality] = replace(specs[modality], patients=value)
            elif isinstance(value, dict):
                specs[modality] = replace(specs[modality], **value)
            else:
                raise MedsamFocusError(f"phantom size for {modality}: give a count, a dict of fields or a PhantomSpec")
        return specs
    raise MedsamFocusError(f"phantom size {size!r}: use 'default', 'quick' or a dict of counts per modality")


def generate_phantoms(
    out_dir: str | Path,
    modalities: Sequence[str] = MODALITY_ORDER,
    seed: int = 0,
    size: str | dict = "default",
    difficulty: float = 1.0,
    preview: bool = False,
    progress: bool = False,
) -> dict[str, Path]:
    """Write phantom datasets and their manifests; return modality -> manifest path.

    Args:
        out_dir: parent folder; each modality goes to ``out_dir/<modality>/`` (a folder this
            function wrote before is replaced; any other existing non-empty folder is an error).
        modalities: any of ``dsa``, ``cta``, ``mri``, ``us``.
        seed: base seed; the same seed gives byte-identical files.
        size: ``default``, ``quick``, or a dict {modality: patients | {field: value} |
            PhantomSpec} over the default preset.
        difficulty: 1.0 realistic (default); lower is easier (less noise, more contrast).
        preview: also write ``out_dir/preview.png``, a contact sheet with mask contours.
        progress: print one line per modality.
    """
    from medsam_focus.data.prepare import prepare_manifest

    out_dir = Path(out_dir)
    specs = _resolve_size(size)
    if not 0.0 <= float(difficulty) <= 2.0:
        raise MedsamFocusError(f"difficulty must lie in [0, 2], got {difficulty}")
    chosen = [canonical_modality(m) for m in modalities]
    unknown = [m for m in chosen if m not in WRITERS]
    if unknown:
        raise MedsamFocusError(f"no phantom generator for {unknown}; known: {', '.join(WRITERS)}")
    manifests: dict[str, Path] = {}
    for modality in chosen:
        spec = specs[modality]
        if spec.patients < 1:
            raise MedsamFocusError(f"phantoms for {modality}: need at least one patient")
        folder = out_dir / modality
        _prepare_folder(folder)
        options = WRITERS[modality](folder, spec, int(seed), float(difficulty))
        layout = options.pop("layout")
        result = prepare_manifest(
            layout,
            folder,
            modality,
            folder / "manifest.csv",
            slice_step=spec.slice_step,
            min_pixels=spec.min_pixels,
            min_voxels=spec.min_voxels,
            fractions=spec.fractions,
            seed=int(seed),
            split_method="balanced",  # a fixed synthetic set: exact proportions matter, growth does not
            **options,
        )
        manifests[modality] = result.manifest.path
        if progress:
            counts = result.manifest.counts()
            print(
                f"phantoms {modality}: {len(result.manifest)} samples "
                f"(train {counts['train']['samples']}, val {counts['val']['samples']}, "
                f"test {counts['test']['samples']}) -> {result.manifest.path}"
            )
    if preview:
        write_preview(manifests, out_dir / "preview.png")
    return manifests


# =========================================================================== preview
def write_preview(manifests: dict[str, Path], path: str | Path, columns: int = 6, tile: int = 200) -> Path:
    """Contact sheet: one row per modality, ``columns`` samples from different patients,
    normalised as the model sees them, ground truth outlined in green."""
    import cv2

    from medsam_focus.data.manifest import load_manifest, object_mask
    from medsam_focus.io import read_image, read_mask
    from medsam_focus.normalize import normalize, parse_rule

    label_w = 70
    rows = []
    for modality, manifest_path in manifests.items():
        manifest = load_manifest(manifest_path)
        by_patient: dict[str, list] = {}
        for row in manifest.rows:
            by_patient.setdefault(row.patient_id, []).append(row)
        patients = list(by_patient.values())
        spread = sorted({int(round(k)) for k in np.linspace(0, len(patients) - 1, min(columns, len(patients)))})
        # from patients spread over the set, each at the largest view of its object
        picks = [max(patients[k], key=lambda r: r.area or 0) for k in spread]
        strip = np.zeros((tile, label_w + columns * tile, 3), dtype=np.uint8)
        cv2.putText(strip, modality.upper(), (6, tile // 2 + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        volumes: dict = {}
        for c, row in enumerate(picks):
            key = manifest.image_path(row)
            if key not in volumes:
                rule, params = parse_rule(row.norm)
                image = read_image(key)
                volumes[key] = (
                    normalize(image.array, modality, rule, **params),
                    read_mask(manifest.mask_path(row)).array,
                )
            norm, labels = volumes[key]
            plane = norm if row.slice is None else norm[row.slice]
            mask_plane = labels if row.slice is None else labels[row.slice]
            obj = object_mask(mask_plane, row.labels, row.instance).astype(np.uint8)
            rgb = plane if plane.ndim == 3 else np.repeat(plane[:, :, None], 3, axis=2)
            scale = tile / max(rgb.shape[:2])
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)
            obj = cv2.resize(obj, size, interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(obj, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            rgb = np.ascontiguousarray(rgb)
            cv2.drawContours(rgb, contours, -1, (0, 255, 0), 1)
            x0 = label_w + c * tile
            strip[: rgb.shape[0], x0 : x0 + rgb.shape[1]] = rgb
            cv2.putText(strip, row.sample_id[:26], (x0 + 3, tile - 6), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 0), 1)
        rows.append(strip)
    sheet = np.vstack(rows) if rows else np.zeros((tile, tile, 3), dtype=np.uint8)
    return write_image(sheet, path)
