"""Reading and writing medical images and masks with their geometry.

One entry point per direction: :func:`read_image` reads any supported file (or a DICOM
series folder) into an :class:`Image`; :func:`write_mask` and :func:`write_image` write
arrays back, optionally with the geometry of a reference image.

Formats:

- Plain 2D images ``.png .jpg .jpeg .bmp .tif .tiff`` through OpenCV (8- and 16-bit,
  float TIFF; a multi-page TIFF becomes a volume).
- Medical formats through SimpleITK: NIfTI ``.nii .nii.gz``, MetaImage ``.mha .mhd``,
  NRRD ``.nrrd .nhdr``, single DICOM files (any name; recognised by extension or by the
  ``DICM`` marker) and DICOM series (give the folder).
- MedSAM's NumPy files: ``.npz`` (key ``imgs`` for images, ``gts`` for masks, optional
  ``spacing`` in SimpleITK order) and ``.npy``.

Conventions:

- ``array``: 2D images are (H, W) grey or (H, W, 3) RGB; volumes are (Z, Y, X), i.e.
  SimpleITK's array order. Colour is RGB (OpenCV's BGR is converted on reading and writing).
- ``spacing`` is per array axis in ARRAY order, (rows, cols) or (slices, rows, cols): the
  reverse of SimpleITK's ``GetSpacing()``. ``origin`` and ``direction`` keep SimpleITK's own
  (x, y, z) order, because they only travel back to SimpleITK when writing.
- Channels are explicit: an RGB file whose three channels are identical is read as grey
  (BUSI and many exports store grey scans as RGB); RGBA is composited over black (a
  transparent pixel carries no image) and the alpha channel is dropped; two-channel
  (grey + alpha) files likewise become grey.
- 16-bit and float pixels are kept as they are; intensity mapping is
  :mod:`medsam_focus.normalize`'s job.
- Writers never leave a half-written file: they write a temporary file in the target
  folder and rename it over the target.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsam_focus.errors import MedsamFocusError

__all__ = [
    "Image",
    "read_image",
    "read_mask",
    "write_image",
    "write_mask",
    "write_dicom_series",
    "file_suffix",
    "same_geometry",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_csv",
    "PLAIN_2D_SUFFIXES",
    "ITK_SUFFIXES",
]

PLAIN_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ITK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm", ".dicom")
NUMPY_SUFFIXES = (".npy", ".npz")
_UMASK = os.umask(0)
os.umask(_UMASK)
# Writers: 3D needs a single-file format so that the write can be atomic.
MASK_WRITE_SUFFIXES_3D = (".nii", ".nii.gz", ".mha", ".nrrd")
MASK_WRITE_SUFFIXES_2D = (".png", ".bmp", ".tif", ".tiff") + MASK_WRITE_SUFFIXES_3D


@dataclass
class Image:
    """An image or volume with its geometry.

    Attributes:
        array: (H, W) or (H, W, 3) for 2D images, (Z, Y, X) for volumes; dtype as stored.
        spacing: pixel size per array axis in array order ((rows, cols) or (slices, rows,
            cols)), in the file's units (mm for medical formats, 1.0 for plain images).
        origin: physical position of the first pixel, SimpleITK (x, y[, z]) order.
        direction: direction cosines, flattened row-major, SimpleITK order.
        is_3d: True for volumes.
        path: where the image was read from (None for images built in memory).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    is_3d: bool
    path: Path | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """(H, W) or (Z, Y, X): the shape without the colour axis."""
        return tuple(self.array.shape[:2]) if not self.is_3d else tuple(self.array.shape)

    @property
    def is_rgb(self) -> bool:
        return (not self.is_3d) and self.array.ndim == 3

    @classmethod
    def from_array(cls, array: np.ndarray, spacing=None, is_3d: bool | None = None) -> Image:
        """An in-memory image with identity direction and zero origin."""
        array = np.asarray(array)
        if is_3d is None:
            is_3d = array.ndim == 3 and array.shape[-1] not in (3, 4)
        ndim = 3 if is_3d else 2
        spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * ndim
        return cls(array, spacing, (0.0,) * ndim, tuple(np.eye(ndim).ravel().tolist()), bool(is_3d), None)


# --------------------------------------------------------------------------- helpers
def file_suffix(path: str | Path) -> str:
    """Lower-case suffix, with ``.nii.gz`` (and other ``.gz``) kept as one suffix."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        inner = Path(name[:-3]).suffix
        return inner + ".gz" if inner else ".gz"
    return Path(name).suffix


def strip_suffix(path: str | Path) -> str:
    """File name without its (possibly double) suffix: ``case_1.nii.gz`` -> ``case_1``."""
    name = Path(path).name
    suffix = file_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def _is_dicom_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _itk_message(error: Exception) -> str:
    # ITK errors are long multi-line dumps; the useful sentence is the last non-empty line
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


# --------------------------------------------------------------------------- reading
def read_image(path: str | Path, *, npz_key: str = "imgs") -> Image:
    """Read a 2D image, a volume, or a DICOM series folder.

    Args:
        path: a file, or a folder holding exactly one DICOM series.
        npz_key: array to read from a ``.npz`` file (MedSAM stores images under ``imgs``
            and masks under ``gts``).

    Returns:
        :class:`Image` with array, spacing (array order), origin, direction, is_3d, path.

    Raises:
        MedsamFocusError: missing file, unknown format, unreadable or corrupt file, more
            than one DICOM series in a folder, 4D data.
    """
    path = Path(path)
    if not path.exists():
        raise MedsamFocusError(f"image {path} does not exist; check the path (relative paths start at {Path.cwd()})")
    if path.is_dir():
        return _read_dicom_series(path)
    suffix = file_suffix(path)
    if suffix in PLAIN_2D_SUFFIXES:
        return _read_plain(path)
    if suffix in NUMPY_SUFFIXES:
        return _read_numpy(path, npz_key)
    if suffix in ITK_SUFFIXES or _is_dicom_file(path):
        return _read_itk(path)
    known = ", ".join(PLAIN_2D_SUFFIXES + ITK_SUFFIXES + NUMPY_SUFFIXES)
    raise MedsamFocusError(
        f"image {path}: unknown file type {suffix or '(no extension)'!r}; supported: {known}, "
        "DICOM files and DICOM series folders"
    )


def _identity_geometry(ndim: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (0.0,) * ndim, tuple(np.eye(ndim).ravel().tolist())


def _colour_to_rgb_or_grey(array: np.ndarray, bgr: bool, path: Path) -> np.ndarray:
    """(H, W, C) -> (H, W) grey or (H, W, 3) RGB, with the channel rules of this module."""
    channels = array.shape[2]
    if channels == 1:
        return array[:, :, 0]
    if channels == 2:  # grey + alpha
        grey, alpha = array[:, :, 0], array[:, :, 1]
        return _composite(grey, alpha)
    if channels not in (3, 4):
        raise MedsamFocusError(
            f"image {path} has {channels} channels; expected grey, RGB or RGBA. Save one channel (or RGB) first"
        )
    rgb = array[:, :, :3]
    if bgr:
        rgb = rgb[:, :, ::-1]
    if channels == 4:
        rgb = _composite(rgb, array[:, :, 3])
    if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2]):
        return np.ascontiguousarray(rgb[:, :, 0])
    return np.ascontiguousarray(rgb)


def _composite(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over black: pixel * alpha / alpha_max, same dtype; opaque images pass unchanged."""
    full = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1.0
    if np.all(alpha == full):
        return pixels
    weight = alpha.astype(np.float64) / full
    if pixels.ndim == 3:
        weight = weight[:, :, None]
    out = pixels.astype(np.float64) * weight
    if np.issubdtype(pixels.dtype, np.integer):
        out = np.rint(out)
    return out.astype(pixels.dtype)


def _read_plain(path: Path) -> Image:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise MedsamFocusError(f"image {path} is empty (0 bytes); the file is corrupt or was not written completely")
    if file_suffix(path) in (".tif", ".tiff"):
        ok, pages = cv2.imdecodemulti(data, cv2.IMREAD_UNCHANGED)
        if ok and len(pages) > 1:
            pages = [_colour_to_rgb_or_grey(p[:, :, None] if p.ndim == 2 else p, True, path) for p in pages]
            if any(p.ndim != 2 or p.shape != pages[0].shape for p in pages):
                raise MedsamFocusError(
                    f"image {path} is a multi-page TIFF whose pages differ in size or are colour; "
                    "a volume needs grey pages of one size"
                )
            origin, direction = _identity_geometry(3)
            return Image(np.stack(pages), (1.0, 1.0, 1.0), origin, direction, True, path)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise MedsamFocusError(
            f"image {path} could not be decoded; the file is corrupt or is not really a {file_suffix(path)} image"
        )
    if array.ndim == 3:
        array = _colour_to_rgb_or_grey(array, True, path)
    origin, direction = _identity_geometry(2)
    return Image(array, (1.0, 1.0), origin, direction, False, path)


def _from_sitk(image, path: Path, force_2d: bool = False) -> Image:
    import SimpleITK as sitk

    dim = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    if dim == 4:
        if image.GetSize()[3] != 1:
            raise MedsamFocusError(
                f"image {path} is 4D ({image.GetSize()}); choose one channel or time point and save it as 3D"
            )
        image = image[:, :, :, 0]
        dim = 3
    if dim == 3 and force_2d and image.GetSize()[2] == 1:
        image = image[:, :, 0]
        dim = 2
    if dim not in (2, 3):
        raise MedsamFocusError(f"image {path} has {dim} dimensions; expected a 2D image or a 3D volume")
    array = sitk.GetArrayFromImage(image)
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    origin = tuple(float(v) for v in image.GetOrigin())
    direction = tuple(float(v) for v in image.GetDirection())
    if dim == 3:
        if components != 1:
            raise MedsamFocusError(
                f"image {path} is a colour volume ({components} components per voxel); volumes must be grey"
            )
        return Image(array, spacing, origin, direction, True, path)
    if components > 1:
        array = _colour_to_rgb_or_grey(array, False, path)
    return Image(array, spacing, origin, direction, False, path)


def _read_itk(path: Path) -> Image:
    import SimpleITK as sitk

    if path.stat().st_size == 0:
        raise MedsamFocusError(f"image {path} is empty (0 bytes); the file is corrupt or was not written completely")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise MedsamFocusError(
            f"image {path} could not be read ({_itk_message(error)}); the file is corrupt, truncated or not "
            f"really {file_suffix(path) or 'DICOM'}"
        ) from error
    is_dicom = file_suffix(path) in (".dcm", ".dicom") or _is_dicom_file(path)
    return _from_sitk(image, path, force_2d=is_dicom)


def _read_dicom_series(folder: Path) -> Image:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # "No Series were found" is our error to word
    try:
        series = reader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if not series:
        raise MedsamFocusError(f"folder {folder} holds no DICOM series; give a DICOM series folder or an image file")
    if len(series) > 1:
        raise MedsamFocusError(
            f"folder {folder} holds {len(series)} DICOM series ({', '.join(series)}); put each series in its own folder"
        )
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise MedsamFocusError(f"DICOM series in {folder} could not be read ({_itk_message(error)})") from error
    return _from_sitk(image, folder, force_2d=len(files) == 1)


def _read_numpy(path: Path, npz_key: str) -> Image:
    try:
        if file_suffix(path) == ".npy":
            array = np.load(path, allow_pickle=False)
            spacing_xyz = None
        else:
            with np.load(path, allow_pickle=False) as data:
                if npz_key in data:
                    array = data[npz_key]
                elif len(data.files) == 1:
                    array = data[data.files[0]]
                else:
                    raise MedsamFocusError(
                        f"{path} has no array {npz_key!r} (it holds {', '.join(data.files)}); MedSAM npz files "
                        "store the image as 'imgs' and the mask as 'gts'"
                    )
                spacing_xyz = data["spacing"] if "spacing" in data else None
    except (OSError, ValueError, EOFError) as error:
        raise MedsamFocusError(f"{path} could not be read as a NumPy file ({error}); the file is corrupt") from error
    is_3d = array.ndim == 3 and not (array.shape[-1] in (3, 4) and array.shape[0] > 4)
    if array.ndim == 3 and not is_3d:
        array = _colour_to_rgb_or_grey(array, False, path)
    elif array.ndim not in (2, 3):
        raise MedsamFocusError(f"{path} holds an array of shape {array.shape}; expected (H, W), (H, W, 3) or (Z, Y, X)")
    ndim = 3 if is_3d else 2
    spacing = (1.0,) * ndim
    if spacing_xyz is not None:
        values = np.asarray(spacing_xyz, dtype=np.float64).reshape(-1)
        # MedSAM saves SimpleITK's GetSpacing(), i.e. (x, y, z): reverse to array order
        if values.size == ndim and np.all(values > 0):
            spacing = tuple(float(v) for v in values[::-1])
    origin, direction = _identity_geometry(ndim)
    return Image(array, spacing, origin, direction, is_3d, path)


def _labels_from(array: np.ndarray, path: Path | None) -> np.ndarray:
    """A mask array as non-negative integers (uint8 when the labels fit, else int32)."""
    where = f"mask {path}" if path is not None else "mask"
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.all(np.mod(array, 1) == 0):
            raise MedsamFocusError(
                f"{where} holds non-integer values; masks must be label images (0 = background), "
                "threshold or round it first"
            )
    elif not np.issubdtype(array.dtype, np.integer):
        raise MedsamFocusError(f"{where} has pixel type {array.dtype}; masks must be integer label images")
    if array.size and array.min() < 0:
        raise MedsamFocusError(f"{where} holds negative labels; use 0 for background and positive labels for objects")
    top = array.max() if array.size else 0
    return array.astype(np.uint8 if top <= 255 else np.int32)


def read_mask(path: str | Path, reference: Image | None = None, *, npz_key: str = "gts") -> Image:
    """Read a label image (0 = background) and optionally check it against its image.

    Args:
        path: mask file (same formats as :func:`read_image`).
        reference: the image the mask belongs to; when given, the spatial shape must match
            and, for medical formats, spacing, origin and direction must agree within a
            small tolerance (:func:`same_geometry`).
        npz_key: array to read from a MedSAM ``.npz`` file.

    Returns:
        :class:`Image` whose array is uint8 (or int32 for labels above 255), (H, W) or
        (Z, Y, X).

    Raises:
        MedsamFocusError: colour masks with differing channels, non-integer or negative
            values, size or geometry mismatch with ``reference``.
    """
    mask = read_image(path, npz_key=npz_key)
    if mask.is_rgb:
        raise MedsamFocusError(
            f"mask {mask.path} has colour channels that differ; save masks as single-channel label images"
        )
    mask.array = _labels_from(mask.array, mask.path)
    if reference is not None:
        problem = same_geometry(reference, mask)
        if problem:
            raise MedsamFocusError(f"mask {mask.path} does not match image {reference.path}: {problem}")
    return mask


def same_geometry(image: Image, mask: Image, spacing_tol: float = 1e-3, origin_tol: float = 1e-2) -> str | None:
    """None when a mask lies on its image's grid, else a sentence saying what differs.

    Shapes must be equal. Spacing and direction are compared with an absolute tolerance of
    ``spacing_tol`` and origins with ``origin_tol`` (file units, usually mm) because
    annotation tools often round the geometry they write; plain 2D files carry no geometry
    and pass once their sizes agree.
    """
    if image.is_3d != mask.is_3d:
        kinds = ("a volume" if image.is_3d else "a 2D image", "a volume" if mask.is_3d else "a 2D image")
        return f"the image is {kinds[0]} but the mask is {kinds[1]}"
    if image.spatial_shape != mask.spatial_shape:
        return f"size {mask.spatial_shape} differs from the image's {image.spatial_shape} (array order)"
    if len(image.spacing) == len(mask.spacing) and not np.allclose(image.spacing, mask.spacing, atol=spacing_tol):
        return f"spacing {mask.spacing} differs from the image's {image.spacing} (array order)"
    if len(image.origin) == len(mask.origin) and not np.allclose(image.origin, mask.origin, atol=origin_tol):
        return f"origin {mask.origin} differs from the image's {image.origin}"
    if len(image.direction) == len(mask.direction) and not np.allclose(
        image.direction, mask.direction, atol=spacing_tol
    ):
        return "direction cosines differ from the image's"
    return None


# --------------------------------------------------------------------------- writing
def _atomic_target(path: Path):
    """A temporary path next to ``path`` with the same suffix (writers pick the format by it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = file_suffix(path)
    handle, temp = tempfile.mkstemp(prefix=f".{strip_suffix(path)}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(handle)
    os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the written file normal permissions
    return Path(temp)


def _replace_or_clean(temp: Path, path: Path) -> None:
    try:
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def atomic_write(path: str | Path, write) -> Path:
    """Write ``path`` through ``write(temp_path)`` on a temporary file next to it, then rename.

    The one mechanism behind every file the toolkit writes (images, CSVs, checkpoints,
    caches): a crash or an error inside ``write`` leaves the previous ``path`` as it was
    and no temporary file behind. The temporary file keeps ``path``'s suffix, so writers
    that choose the format by suffix (SimpleITK, OpenCV, ``np.save``) behave as for ``path``.
    """
    path = Path(path)
    temp = _atomic_target(path)
    try:
        write(temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _replace_or_clean(temp, path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def atomic_write_csv(path: str | Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    """:func:`atomic_write` of dict rows as CSV; ``fields`` default to every key, first seen first.

    Keys of a row that are not in ``fields`` are left out.
    """
    import csv
    import io as _stringio

    if fields is None:
        fields = []
        for row in rows:
            fields += [k for k in row if k not in fields]
    buffer = _stringio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def write_image(
    array: np.ndarray,
    path: str | Path,
    reference: Image | None = None,
    *,
    spacing=None,
    origin=None,
    direction=None,
    is_3d: bool | None = None,
    compress: bool = True,
) -> Path:
    """Write an image or volume atomically (temporary file, then rename).

    Args:
        array: (H, W), (H, W, 3) RGB, or (Z, Y, X).
        path: target; the suffix picks the format (PNG/JPEG/BMP/TIFF through OpenCV, NIfTI,
            MHA, NRRD through SimpleITK).
        reference: copy spacing, origin and direction from this image (its spatial shape must
            match).
        spacing: per array axis in array order (ignored by plain formats); overrides
            ``reference``. ``origin``/``direction`` in SimpleITK order likewise.
        is_3d: whether a 3-axis array is a volume; default: True unless the last axis has 3
            channels and there is a reference saying 2D.
        compress: compress MHA/NRRD payloads (``.nii.gz`` is always compressed).

    Returns:
        the written path.
    """
    path = Path(path)
    array = np.asarray(array)
    suffix = file_suffix(path)
    if is_3d is None:
        is_3d = reference.is_3d if reference is not None else (array.ndim == 3 and array.shape[-1] != 3)
    spatial = tuple(array.shape) if is_3d else tuple(array.shape[:2])
    if reference is not None and tuple(reference.spatial_shape) != spatial:
        raise MedsamFocusError(
            f"cannot write {path}: array size {spatial} differs from the reference image "
            f"{reference.path}'s {reference.spatial_shape}"
        )
    if suffix in PLAIN_2D_SUFFIXES:
        if is_3d:
            raise MedsamFocusError(f"cannot write a volume to {path}: use .nii.gz, .mha or .nrrd for 3D data")
        return _write_plain(array, path)
    if suffix not in MASK_WRITE_SUFFIXES_3D:
        raise MedsamFocusError(
            f"cannot write {path}: unsupported suffix {suffix!r}; use .png (2D) or .nii.gz/.nii/.mha/.nrrd"
        )
    import SimpleITK as sitk

    rgb = (not is_3d) and array.ndim == 3
    image = sitk.GetImageFromArray(array, isVector=rgb)
    ndim = 3 if is_3d else 2
    if spacing is None and reference is not None:
        spacing = reference.spacing
    if origin is None and reference is not None:
        origin = reference.origin
    if direction is None and reference is not None:
        direction = reference.direction
    if spacing is not None:
        if len(spacing) != ndim:
            raise MedsamFocusError(f"cannot write {path}: spacing {tuple(spacing)} needs {ndim} values (array order)")
        image.SetSpacing([float(s) for s in reversed(tuple(spacing))])
    if origin is not None and len(origin) == ndim:
        image.SetOrigin([float(v) for v in origin])
    if direction is not None and len(direction) == ndim * ndim:
        image.SetDirection([float(v) for v in direction])
    temp = _atomic_target(path)
    try:
        sitk.WriteImage(image, str(temp), useCompression=compress or suffix == ".nii.gz")
    except RuntimeError as error:
        temp.unlink(missing_ok=True)
        raise MedsamFocusError(f"cannot write {path}: {_itk_message(error)}") from error
    _replace_or_clean(temp, path)
    return path


def _write_plain(array: np.ndarray, path: Path) -> Path:
    import cv2

    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 3:
        if array.shape[2] != 3:
            raise MedsamFocusError(f"cannot write {path}: a 2D image is (H, W) or (H, W, 3), got {array.shape}")
        array = np.ascontiguousarray(array[:, :, ::-1])  # RGB -> OpenCV's BGR
    suffix = file_suffix(path)
    if array.dtype not in (np.uint8, np.uint16) and not (suffix in (".tif", ".tiff") and array.dtype == np.float32):
        raise MedsamFocusError(
            f"cannot write {path}: {suffix} stores uint8 or uint16 pixels (float32 only in TIFF), got {array.dtype}"
        )
    ok, encoded = cv2.imencode(suffix, array)
    if not ok:
        raise MedsamFocusError(f"cannot encode {path} as {suffix}")
    temp = _atomic_target(path)
    try:
        encoded.tofile(str(temp))
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise MedsamFocusError(f"cannot write {path}: {error}") from error
    _replace_or_clean(temp, path)
    return path


def write_mask(mask: np.ndarray, path: str | Path, reference: Image | None = None) -> Path:
    """Write a label image (0 = background) with the geometry of its image, atomically.

    Args:
        mask: (H, W) or (Z, Y, X), bool or non-negative integers. Values are written as
            given (a bool mask becomes 0/1).
        path: ``.png`` (2D; uint8, or uint16 when a label exceeds 255), ``.bmp``/``.tif``
            (2D), or ``.nii.gz``/``.nii``/``.mha``/``.nrrd`` (2D or 3D).
        reference: the image the mask belongs to; its spatial shape must match and its
            spacing, origin and direction are written with the mask.

    Returns:
        the written path.
    """
    path = Path(path)
    array = _labels_from(np.asarray(mask), None)
    if array.ndim not in (2, 3):
        raise MedsamFocusError(f"cannot write mask {path}: expected (H, W) or (Z, Y, X), got shape {array.shape}")
    is_3d = array.ndim == 3
    suffix = file_suffix(path)
    if is_3d and suffix not in MASK_WRITE_SUFFIXES_3D:
        raise MedsamFocusError(f"cannot write a 3D mask to {path}: use .nii.gz, .nii, .mha or .nrrd")
    if not is_3d and suffix not in MASK_WRITE_SUFFIXES_2D:
        raise MedsamFocusError(f"cannot write mask {path}: use .png (or .nii.gz/.mha/.nrrd) for 2D masks")
    if suffix in PLAIN_2D_SUFFIXES:
        if array.max(initial=0) > 65535:
            raise MedsamFocusError(f"cannot write mask {path}: labels above 65535 do not fit a PNG; use .nii.gz")
        array = array.astype(np.uint8 if array.max(initial=0) <= 255 else np.uint16)
    elif array.dtype == np.int32:
        array = array.astype(np.uint16 if array.max(initial=0) <= 65535 else np.uint32)
    return write_image(array, path, reference, is_3d=is_3d)


def write_dicom_series(
    volume: np.ndarray,
    folder: str | Path,
    spacing=(1.0, 1.0, 1.0),
    origin=(0.0, 0.0, 0.0),
    *,
    patient_id: str = "ANON",
    series_description: str = "medsam-focus",
    modality: str = "CT",
) -> Path:
    """Write a (Z, Y, X) int16/uint16/uint8 volume as a DICOM series (one file per slice).

    Geometry is axial with identity direction; ``spacing`` in array order (slice, row, col).
    Meant for exporting and for building test data; the files carry the minimum tags that
    readers (SimpleITK/GDCM, pydicom) need to stack them back into the same volume.
    """
    import SimpleITK as sitk

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise MedsamFocusError(f"write_dicom_series needs a (Z, Y, X) volume, got shape {volume.shape}")
    if volume.dtype not in (np.int16, np.uint16, np.uint8):
        raise MedsamFocusError(f"write_dicom_series stores int16, uint16 or uint8 voxels, got {volume.dtype}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing([float(s) for s in reversed(tuple(spacing))])
    image.SetOrigin([float(v) for v in origin])
    # Deterministic UIDs from the content so that a seeded export is reproducible.
    import hashlib

    digest = int(hashlib.sha256(volume.tobytes()).hexdigest()[:24], 16)
    study_uid = f"1.2.826.0.1.3680043.10.1234.1.{digest}"
    series_uid = f"1.2.826.0.1.3680043.10.1234.2.{digest}"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for z in range(volume.shape[0]):
        plane = image[:, :, z]
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        tags = {
            "0008|0060": modality,
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{z + 1}",
            "0008|103e": series_description,
            "0010|0020": patient_id,
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0013": str(z + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "\\".join(
                f"{v:.6f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7])
            ),
            "0018|0050": f"{float(spacing[0]):.6f}",
            "0028|0030": f"{float(spacing[1]):.6f}\\{float(spacing[2]):.6f}",
        }
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        target = folder / f"slice_{z:04d}.dcm"
        temp = _atomic_target(target)
        writer.SetFileName(str(temp))
        try:
            writer.Execute(plane)
        except RuntimeError as error:
            temp.unlink(missing_ok=True)
            raise MedsamFocusError(f"cannot write DICOM slice {target}: {_itk_message(error)}") from error
        _replace_or_clean(temp, target)
    return folder
