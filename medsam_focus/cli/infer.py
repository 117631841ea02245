"""`medsam-focus infer`: box-prompted segmentation of images and volumes."""

from __future__ import annotations

from medsam_focus.cli import add_command

EXAMPLES = """
  medsam-focus infer --image scan.png --box 30,40,120,160 --out scan_mask.png --overlay
  medsam-focus infer --image scan.png --box 30,40,120,160 --box 150,20,200,90 --out scan_mask.png
  medsam-focus infer --prompts prompts/example_2d.json --out out/
  medsam-focus infer --image ct.nii.gz --box 60,70,140,150 --slices 10,24 --out ct_liver.nii.gz
  medsam-focus infer --model medsam-vit-b --image a.png --box 1,2,50,60 --out m.png
  medsam-focus infer --model runs/us-dice+focussdf --image us.png --box 40,50,150,140 --out us_mask.png
"""

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


def register(subparsers) -> None:
    p = add_command(subparsers, "infer", "segment the objects inside boxes on 2D images or 3D volumes", EXAMPLES)
    p.add_argument(
        "--model", default="litemedsam", help="family name or fine-tuning run directory (default litemedsam)"
    )
    p.add_argument("--checkpoint", help="weights for the family (default: the family's standard location)")
    p.add_argument(
        "--image", nargs="+", default=[], metavar="FILE", help="image(s) or volume(s); a DICOM series is a folder"
    )
    p.add_argument(
        "--box", action="append", default=[], metavar="X0,Y0,X1,Y1", help="box in original pixels; repeatable"
    )
    p.add_argument("--slice", type=int, help="volumes: the slice index the --box boxes are on")
    p.add_argument("--slices", metavar="Z0,Z1", help="volumes: --box is one 3D box over slices Z0..Z1 (inclusive)")
    p.add_argument("--prompts", nargs="+", default=[], metavar="JSON", help="prompt file(s); see prompts/README.md")
    p.add_argument("--out", required=True, help="output label file for one input, or a folder for several")
    p.add_argument("--overlay", action="store_true", help="also write OUT_overlay.png with boxes and contours")
    p.add_argument("--modality", help="intensity rule for non-8-bit data: ct, cta, mri, us, dsa (default: percentiles)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: GPU when available)")
    p.set_defaults(handler=_run)


def _output_for(image: str, out: str, many: bool) -> str:
    from pathlib import Path

    if not many and not out.endswith(("/", "\\")) and not Path(out).is_dir():
        return out
    name = Path(image.rstrip("/")).name
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return str(Path(out) / (name[: -len(suffix)] + "_mask" + suffix))
    if Path(image).is_dir():  # DICOM series
        return str(Path(out) / (name + "_mask.nii.gz"))
    return str(Path(out) / (Path(name).stem + "_mask.png"))


def _run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from medsam_focus.errors import MedsamFocusError
    from medsam_focus.infer import load_model, segment_file
    from medsam_focus.prompts import PromptObject, load_prompt_file, parse_box_argument

    jobs: list[tuple[str, list[PromptObject], str | None]] = []
    if args.box:
        if not args.image:
            raise MedsamFocusError("--box needs --image (or give boxes in a --prompts file)")
        if args.slice is not None and args.slices:
            raise MedsamFocusError("give either --slice (per-slice boxes) or --slices (one 3D box), not both")
        slice_range = None
        if args.slices:
            try:
                z0, z1 = (int(v) for v in args.slices.split(","))
            except ValueError as exc:
                raise MedsamFocusError(f"--slices {args.slices!r}: expected two slice indices Z0,Z1") from exc
            slice_range = (z0, z1)
        objects = [
            PromptObject(box=parse_box_argument(b), label=i + 1, slice=args.slice, slice_range=slice_range)
            for i, b in enumerate(args.box)
        ]
        jobs += [(image, objects, None) for image in args.image]
    elif args.image and not args.prompts:
        raise MedsamFocusError("no boxes given: add --box X0,Y0,X1,Y1 or --prompts FILE.json")
    for prompt_path in args.prompts:
        prompt = load_prompt_file(prompt_path)
        if args.image and len(args.prompts) == 1 and not args.box:
            images = args.image
        elif prompt.image is not None:
            images = [str(prompt.image)]
        else:
            raise MedsamFocusError(f'prompt file {prompt_path} names no image; add "image" to it or pass --image')
        jobs += [(image, prompt.objects, prompt.modality) for image in images]
    if not jobs:
        raise MedsamFocusError("nothing to do: give --image with --box, or --prompts")
    for image, _, _ in jobs:
        if not Path(image).exists():
            raise MedsamFocusError(f"image {image} does not exist")
    many = len(jobs) > 1
    outputs = [_output_for(image, args.out, many) for image, _, _ in jobs]
    for (image, _, _), out in zip(jobs, outputs, strict=True):
        if Path(out).resolve() == Path(image).resolve():
            raise MedsamFocusError(f"--out {out} would overwrite the input image; choose another path")
    if len(set(outputs)) != len(outputs):
        raise MedsamFocusError("several inputs would write the same output file; give --out a folder")

    model = load_model(args.model, checkpoint=args.checkpoint, device=args.device)
    progress = tqdm(list(zip(jobs, outputs, strict=True)), desc="infer", unit="image", disable=not many)
    for (image, objects, file_modality), out in progress:
        overlay = None
        if args.overlay:
            base = out
            for suffix in VOLUME_SUFFIXES + (".png", ".tif", ".tiff"):
                if base.endswith(suffix):
                    base = base[: -len(suffix)]
                    break
            overlay = base + "_overlay.png"
        modality = args.modality or file_modality
        result = segment_file(model, image, objects, out, modality=modality, overlay_path=overlay)
        print(
            f"{result.image}: {result.n_objects} object(s), {result.foreground_pixels} foreground pixels -> "
            f"{result.output}" + (f" (overlay {result.overlay})" if result.overlay else "")
        )
    return 0
