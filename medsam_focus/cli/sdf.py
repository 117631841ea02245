"""`medsam-focus plot-sdf`: draw the signed distance, focus weights and target field of a mask."""

from __future__ import annotations

from medsam_focus.cli import add_command

EXAMPLES = """
  medsam-focus plot-sdf --mask m.png --out sdf.png
  medsam-focus plot-sdf --mask lesion_mask.png --out sdf.png --gammas 0.002,0.005,0.01 --eps 4
  medsam-focus plot-sdf --mask liver_seg.nii.gz --slice 42 --label 1 --out liver_sdf.png
  medsam-focus plot-sdf --mask m.png --frame-size 256 --out sdf.pdf    # mask already in LiteMedSAM's 256 frame
"""

ITK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "plot-sdf",
        help="draw a mask's signed distance map, FocusSDF focus weights and target signed field side by side",
        examples=EXAMPLES,
    )
    p.add_argument(
        "--mask", required=True, metavar="FILE", help="mask image (PNG, TIFF, ...) or volume (NIfTI, MHA, NRRD)"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="figure to write (.png, .pdf, .svg)")
    p.add_argument(
        "--gammas",
        default="0.001,0.005,0.02",
        metavar="G1,G2,...",
        help="focus-weight decays to show (default %(default)s)",
    )
    p.add_argument(
        "--eps", type=float, default=2.0, help="target-field width, reference-frame px (default %(default)s)"
    )
    p.add_argument("--frame-size", type=int, help="loss-frame side the mask lives in (default: its longer side)")
    p.add_argument("--slice", type=int, help="volumes: slice index (default: the slice with the most foreground)")
    p.add_argument("--label", type=float, help="label value to draw in a label map (default: everything > 0.5)")
    p.add_argument("--dpi", type=int, default=120, help="resolution of raster output (default %(default)s)")
    p.set_defaults(handler=_run)


def _run(args) -> int:
    from medsam_focus.errors import MedsamFocusError
    from medsam_focus.plots_sdf import save_sdf_figure

    try:
        gammas = [float(value) for value in args.gammas.split(",") if value.strip()]
    except ValueError as error:
        raise MedsamFocusError(f"--gammas {args.gammas!r} must be comma-separated numbers, e.g. 0.001,0.005") from error
    mask = _read_mask(args.mask, args.slice, args.label)
    out = save_sdf_figure(mask, args.out, dpi=args.dpi, gammas=gammas, eps=args.eps, frame_size=args.frame_size)
    print(f"wrote {out}")
    return 0


def _read_mask(path: str, slice_index: int | None, label: float | None):
    """A 2D bool mask from an image or one slice of a volume (OpenCV / SimpleITK)."""
    from pathlib import Path

    import numpy as np

    from medsam_focus.errors import MedsamFocusError

    file = Path(path)
    if not file.is_file():
        raise MedsamFocusError(f"mask file {path} does not exist; give the path of a mask image or volume")
    if file.name.lower().endswith(ITK_SUFFIXES):
        import SimpleITK as sitk

        try:
            array = sitk.GetArrayFromImage(sitk.ReadImage(str(file)))
        except RuntimeError as error:
            raise MedsamFocusError(f"cannot read mask volume {path}: {str(error).strip().splitlines()[-1]}") from error
    else:
        import cv2

        array = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise MedsamFocusError(f"cannot read mask image {path}; is it a PNG/TIFF/JPEG image?")
        if array.ndim == 3:  # colour-coded mask: foreground wherever any colour channel is set
            array = array[..., :3].max(axis=-1)
    array = np.asarray(array)
    mask = array == label if label is not None else array > 0.5
    if mask.ndim == 3:
        if slice_index is None:
            slice_index = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
        if not -mask.shape[0] <= slice_index < mask.shape[0]:
            raise MedsamFocusError(f"--slice {slice_index} is outside the volume's {mask.shape[0]} slices")
        mask = mask[slice_index]
    elif slice_index is not None:
        raise MedsamFocusError(f"--slice is for volumes; {path} is a 2D image")
    if mask.ndim != 2:
        raise MedsamFocusError(f"mask {path} has shape {array.shape}; expected a 2D image or a 3D volume")
    return mask
