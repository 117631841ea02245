"""``medsam-focus prepare`` and ``medsam-focus phantoms``: build manifests and synthetic data."""

from __future__ import annotations

from medsam_focus.cli import add_command

PREPARE_EXAMPLES = """
  # BUSI ultrasound (class folders with *_mask.png), 70/15/15 patient-level split
  medsam-focus prepare --layout busi --source Dataset_BUSI_with_GT --modality us --out data/busi.csv
  # LiTS CT, the whole liver (labels 1+2) as the object, every second slice
  medsam-focus prepare --layout lits --source LiTS --modality cta --labels liver --slice-step 2 --out data/lits.csv
  # Medical Segmentation Decathlon liver: liver and tumour as separate objects
  medsam-focus prepare --layout msd --source Task03_Liver --modality ct --labels 1+2,2 --out data/msd.csv
  # ISLES 2022 DWI with one sample per connected lesion
  medsam-focus prepare --layout bids --source ISLES-2022 --modality mri --instances --out data/isles.csv
  # paired folders images/ + masks/, patient id = the part before '_'
  medsam-focus prepare --layout paired --source dsa_data --modality dsa --patient-regex '^([^_]+)_' --out data/dsa.csv
"""

PHANTOM_EXAMPLES = """
  medsam-focus phantoms --out data/phantoms --preview          # the demo set, four modalities
  medsam-focus phantoms --out /tmp/ph --size quick --modalities us,dsa
  medsam-focus phantoms --out data/phantoms --counts us=200,cta=12 --difficulty 1.3
"""


def register(subparsers) -> None:
    prepare = add_command(
        subparsers,
        "prepare",
        help="build a validated manifest (CSV) from a dataset folder in a known layout",
        examples=PREPARE_EXAMPLES,
    )
    prepare.add_argument("--layout", required=True, choices=["paired", "busi", "msd", "lits", "bids", "npz"])
    prepare.add_argument("--source", required=True, help="dataset folder")
    prepare.add_argument("--modality", required=True, help="dsa, cta, ct, mri or us (aliases: ultrasound, mr, xa)")
    prepare.add_argument("--out", required=True, help="manifest CSV to write (a .report.csv is written next to it)")
    prepare.add_argument(
        "--labels",
        default=None,
        help="objects: 'all' (each label), '1', '1+2' (union), '1+2,2' (two objects); lits/msd also know "
        "'liver' (1+2) and 'tumour' (2). Default: liver for lits, all otherwise",
    )
    prepare.add_argument("--instances", action="store_true", help="one sample per connected component")
    prepare.add_argument("--min-pixels", type=int, default=100, help="drop objects smaller on a slice (default 100)")
    prepare.add_argument("--min-voxels", type=int, default=1000, help="drop 3D objects smaller (default 1000)")
    prepare.add_argument("--slice-step", type=int, default=1, help="keep every k-th foreground slice (default 1)")
    prepare.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test patient shares")
    prepare.add_argument(
        "--split-method",
        default="hash",
        choices=["hash", "balanced"],
        help="hash: stable as the dataset grows (default); balanced: exact shares",
    )
    prepare.add_argument("--seed", type=int, default=0, help="split seed")
    prepare.add_argument(
        "--norm",
        default=None,
        help="normalisation written into the manifest: window:liver, window:40,400, "
        "percentile:0.5,99.5, minmax, none (default: the modality's rule)",
    )
    prepare.add_argument(
        "--patient-regex",
        default=None,
        help="regular expression whose first group is the patient id within the case id",
    )
    prepare.add_argument("--bids-suffix", default="dwi", help="bids layout: image suffix (dwi, adc, FLAIR, T1w)")
    prepare.set_defaults(handler=_run_prepare)

    phantoms = add_command(
        subparsers,
        "phantoms",
        help="write realistic synthetic DSA, CTA, MRI and ultrasound datasets with manifests",
        examples=PHANTOM_EXAMPLES,
    )
    phantoms.add_argument("--out", required=True, help="output folder (one sub-folder per modality)")
    phantoms.add_argument("--modalities", default="dsa,cta,mri,us", help="comma-separated subset of dsa,cta,mri,us")
    phantoms.add_argument("--seed", type=int, default=0)
    phantoms.add_argument("--size", default="default", choices=["default", "quick"])
    phantoms.add_argument("--counts", default=None, help="patients per modality over --size, e.g. us=200,cta=12")
    phantoms.add_argument("--difficulty", type=float, default=1.0, help="0 easy .. 1 realistic (default) .. 2 hard")
    phantoms.add_argument("--preview", action="store_true", help="also write OUT/preview.png, a contact sheet")
    phantoms.set_defaults(handler=_run_phantoms)


def _run_prepare(args) -> int:
    from medsam_focus.data.prepare import prepare_manifest

    result = prepare_manifest(
        args.layout,
        args.source,
        args.modality,
        args.out,
        labels=args.labels,
        instances=args.instances,
        min_pixels=args.min_pixels,
        min_voxels=args.min_voxels,
        slice_step=args.slice_step,
        fractions=args.split,
        seed=args.seed,
        norm=args.norm,
        patient_regex=args.patient_regex,
        bids_suffix=args.bids_suffix,
        split_method=args.split_method,
        progress=True,
    )
    print(f"wrote {result.manifest.path}")
    print(result.summary())
    return 0


def _run_phantoms(args) -> int:
    from dataclasses import replace

    from medsam_focus.data.phantoms import PRESETS, generate_phantoms
    from medsam_focus.errors import MedsamFocusError
    from medsam_focus.normalize import canonical_modality

    size = args.size
    if args.counts:
        size = dict(PRESETS[args.size])
        for part in args.counts.split(","):
            name, _, value = part.partition("=")
            try:
                modality, count = canonical_modality(name), int(value)
            except ValueError as error:
                raise MedsamFocusError(f"--counts {args.counts!r}: expected modality=number pairs") from error
            if modality not in size:
                raise MedsamFocusError(f"--counts: no phantom generator for {modality!r}; use dsa, cta, mri, us")
            size[modality] = replace(size[modality], patients=count)
    manifests = generate_phantoms(
        args.out,
        modalities=[m.strip() for m in args.modalities.split(",") if m.strip()],
        seed=args.seed,
        size=size,
        difficulty=args.difficulty,
        preview=args.preview,
        progress=True,
    )
    for modality, path in manifests.items():
        print(f"{modality}: {path}")
    if args.preview:
        print(f"preview: {args.out}/preview.png")
    return 0
