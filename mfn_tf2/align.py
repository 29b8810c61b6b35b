"""Align faces onto the ArcFace template: from a detector's 5 landmarks, or found here (--detect).

    # raw photos: find the faces (MTCNN), align the largest of each, keep the landmarks used
    python -m mfn_tf2.align photos/ aligned/ --detect
    python -m mfn_tf2.align photos/ aligned/ --detect --all_faces      # every face: <name>_0.png, _1.png...

    # landmarks from any detector: CSV (path,x1,y1,...,x5,y5) or JSON ({path: [[x, y] x 5]})
    python -m mfn_tf2.align photos/ landmarks.csv aligned/
    python -m mfn_tf2.align photos/ landmarks.json aligned96/ --template 112x96

Landmark order: eye on the image's left, eye on the image's right, nose tip,
mouth corner on the image's left, on the image's right. With --detect, a photo
with no face is named and counted, and no file is written for it; the
landmarks used go to OUT/landmarks.json (the JSON form above, so the same
alignment can be repeated without the detector). The library is
``mfn_tf2.alignment`` and ``mfn_tf2.detection``.
"""
from __future__ import annotations

import argparse

from mfn_tf2 import cli
from mfn_tf2.alignment import TEMPLATES, AlignError, align_folder
from mfn_tf2.detection import DetectionError, align_photos

USAGE = ("python -m mfn_tf2.align IMAGES LANDMARKS OUT [--template T]\n"
         "       python -m mfn_tf2.align PHOTOS OUT --detect [--all_faces] [--min_score S] [--template T]")


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.align``."""
    p = cli.shell_parser("align", __doc__, usage=USAGE)
    p.add_argument("folders", nargs="+", metavar="PATH",
                   help="IMAGES LANDMARKS OUT, or PHOTOS OUT with --detect (outputs: same relative paths, PNG)")
    p.add_argument("--template", choices=sorted(TEMPLATES), default="112x112",
                   help="ArcFace 112x112 (default), its 112x96 variant, or lfw_a (the bundled LFW faces' layout, "
                        "112x112: for models trained on them)")
    p.add_argument("--detect", action="store_true", help="find the faces in the photos (no landmarks file)")
    p.add_argument("--all_faces", action="store_true", help="with --detect: every face, not only the largest")
    p.add_argument("--min_score", type=float, default=0.9,
                   help="with --detect: the detector's confidence a face needs, in (0, 1) (default: 0.9)")
    return p


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.align``."""
    p = build_parser()
    ns = p.parse_args(argv)
    if len(ns.folders) != (2 if ns.detect else 3):
        p.error(f"expected {'PHOTOS OUT with --detect' if ns.detect else 'IMAGES LANDMARKS OUT (or PHOTOS OUT --detect)'}"
                f", got {len(ns.folders)} paths")
    if (ns.all_faces or ns.min_score != 0.9) and not ns.detect:
        p.error("--all_faces and --min_score go with --detect")
    if not 0 < ns.min_score < 1:
        p.error(f"--min_score {ns.min_score}: expected a confidence in (0, 1)")
    try:
        if ns.detect:
            result = align_photos(*ns.folders, ns.template, ns.all_faces, ns.min_score)
        else:
            result = align_folder(*ns.folders, ns.template)
    except (AlignError, DetectionError, OSError) as err:
        cli.fail(str(err))
    for name, why in result["skipped"]:
        print(f"skipped {name}: {why}")
    if ns.detect:
        print(f"{len(result['no_face'])} photos with no face found (nothing written): {', '.join(result['no_face'])}"
              if result["no_face"] else "a face found in every photo")
        several = f"; {result['several_faces']} photos hold several faces" if result["several_faces"] else ""
        kept = "every face" if ns.all_faces else "the largest face of each"
        print(f"aligned {result['written']} faces ({kept}{several}) from {result['photos']} photos onto the "
              f"{ns.template} template in {ns.folders[-1]}; landmarks used: {result['landmarks']}")
    else:
        print(f"aligned {result['written']} faces onto the {ns.template} template in {ns.folders[-1]} "
              f"({len(result['skipped'])} skipped)")


if __name__ == "__main__":
    main()
