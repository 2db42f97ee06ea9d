"""``semcorr transfer`` (keypoints from a few examples to a folder, :func:`semcorr.transfer.transfer_keypoints`)
and ``semcorr warp`` (a dense warp from A to B, :func:`semcorr.transfer.warp.run_warp`)."""

from __future__ import annotations

import argparse
import sys

from .options import (
    add_match_options,
    add_model_options,
    add_threads_option,
    given,
    match_settings,
    model_arguments,
    warn_random_weights,
)

TRANSFER_OPTIONS = ("min_confidence", "cycle_tolerance", "agreement_tolerance", "batch_size", "on_error")


def run_transfer(args: argparse.Namespace) -> int:
    from ..runtime import load_average, set_threads
    from ..transfer.keypoints import transfer_keypoints
    from ..transfer.labeller import TransferSettings

    settings = TransferSettings(match=match_settings(args), pose_align=args.pose_align, **given(args, TRANSFER_OPTIONS))
    set_threads(args.threads)
    summary = transfer_keypoints(
        args.examples,
        args.images,
        args.out,
        settings=settings,
        left_right=args.left_right,
        show=args.show,
        progress=not args.quiet,
        **model_arguments(args),
    )
    label = summary["model"] + (" (random weights)" if summary["random_weights"] else "")
    rate = f"{summary['images_per_s']:.2f} images/s" if summary["images_per_s"] else "no images labelled by this run"
    resumed = f", {summary['resumed']} done by an earlier run" if summary["resumed"] else ""
    load = load_average()
    print(
        f"labelled {summary['labelled']} of {summary['images']} images from {summary['examples']} example(s) into "
        f"{summary['out']}{resumed}; {100 * summary['visible_fraction']:.1f}% of keypoints visible; {rate} "
        f"({label}, {summary['precision']}, on {summary['device']}"
        + (f", load average {load[0]:.2f}" if load else "")
        + ")"
    )
    if summary["skipped"]:
        print(
            f"semcorr: skipped {len(summary['skipped'])} unreadable image(s), listed under 'skipped' in "
            f"{summary['out']}",
            file=sys.stderr,
        )
    if summary["random_weights"]:
        warn_random_weights("the labels carry")
    return 0


def run_warp(args: argparse.Namespace) -> int:
    from ..transfer.warp import WarpSettings
    from ..transfer.warp import run_warp as warp

    settings = WarpSettings(match=match_settings(args), **given(args, ("cycle_tolerance", "fill_below")))
    summary = warp(
        args.image_a,
        args.image_b,
        args.out,
        mask=args.mask,
        parts=args.parts,
        confidence=args.confidence,
        mapping=args.mapping,
        settings=settings,
        **model_arguments(args),
    )
    print(
        f"{summary['carried']} of {summary['image_a']} warped onto {summary['image_b']}: {summary['out']} "
        f"(mean confidence {summary['mean_confidence']:.3f}, {summary['model']})"
    )
    if summary["random_weights"]:
        warn_random_weights("the warp carries")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    transfer = commands.add_parser(
        "transfer",
        help="label a folder of images with the keypoints of a few annotated examples (COCO out)",
        description="Transfer the keypoints of a few annotated examples to every image of a folder and write COCO "
        "keypoints with a confidence per point. Rerun the same command to resume a killed run.",
    )
    transfer.add_argument(
        "--examples",
        required=True,
        metavar="JSON",
        help='COCO keypoints, or {"image.jpg": {"left_eye": [x, y], ...}, ...}; image names '
        "relative to the file's folder, then to --images",
    )
    transfer.add_argument("--images", required=True, metavar="DIR", help="folder of images (recursive) or a list file")
    transfer.add_argument("--out", required=True, metavar="JSON", help="COCO keypoints file to write")
    transfer.add_argument(
        "--min-confidence",
        type=float,
        help="keypoints below this confidence are written not visible, v=0 (default 0.5)",
    )
    transfer.add_argument(
        "--pose-align",
        action="store_true",
        help="flip-aware: match from each example or its mirror image, whichever agrees better, "
        "with left/right keypoints swapped",
    )
    transfer.add_argument(
        "--left-right",
        metavar="SPEC",
        help="left/right partners for --pose-align: names (default: left_x <-> right_x), a JSON "
        'file {"left_eye": "right_eye"}, or a built-in table spair:CATEGORY, ap10k, cub',
    )
    transfer.add_argument(
        "--cycle-tolerance",
        type=float,
        help="cycle-consistency scale, fraction of the example's longer side (default 0.05)",
    )
    transfer.add_argument(
        "--agreement-tolerance",
        type=float,
        help="agreement scale between examples, fraction of the image's longer side (default 0.05)",
    )
    transfer.add_argument("--batch-size", type=int, help="images per feature extraction (default 8)")
    transfer.add_argument(
        "--on-error", choices=["skip", "stop"], help="an unreadable image: report and skip it (default skip), or stop"
    )
    transfer.add_argument("--show", metavar="DIR", help="write a picture per image and contact_sheet.png here")
    transfer.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(transfer)
    add_match_options(transfer)
    add_threads_option(transfer)
    transfer.set_defaults(run=run_transfer)

    warp = commands.add_parser(
        "warp",
        help="dense warp: every pixel of B matched in A; carry A's image, mask or parts to B",
        description="For every pixel of image B find its match in image A (upsampled features, cycle-consistency "
        "confidence) and carry image A, its mask or its part segmentation onto B.",
    )
    warp.add_argument("image_a", metavar="A", help="the image whose content is carried")
    warp.add_argument("image_b", metavar="B", help="the image whose frame it is carried to")
    warp.add_argument("--out", required=True, metavar="PNG", help="A's image (or mask, or parts) in B's frame")
    carried = warp.add_mutually_exclusive_group()
    carried.add_argument("--mask", metavar="PNG", help="A's mask: --out becomes B's mask (0/255)")
    carried.add_argument(
        "--parts",
        metavar="PNG",
        help="A's part segmentation (colours or grey labels): --out becomes B's, by nearest neighbour",
    )
    warp.add_argument("--confidence", metavar="PNG", help="also write the confidence map (grey, 255 = 1)")
    warp.add_argument("--mapping", metavar="NPY", help="also write the (H_b, W_b, 2) A-pixel coordinates (float32)")
    warp.add_argument(
        "--cycle-tolerance", type=float, help="confidence scale, fraction of B's longer side (default 0.05)"
    )
    warp.add_argument(
        "--fill-below",
        type=float,
        help="cells less confident than this take their confident neighbours' matches (default 0.5; 0: off)",
    )
    add_model_options(warp)
    add_match_options(warp)
    warp.set_defaults(run=run_warp)
